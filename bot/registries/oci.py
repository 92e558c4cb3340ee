"""Any OCI registry through the distribution HTTP API (requests), no container engine.

Credentials come from the engine's own login files (DOCKER_CONFIG or
~/.docker/config.json, and Podman's REGISTRY_AUTH_FILE), read only.
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass

import requests

from bot import engine
from bot.errors import HubbotError
from bot.registries import Credentials, split_name

MANIFEST_TYPES = ", ".join(
    (
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    )
)
TIMEOUT_SECONDS = 30
_CHALLENGE = re.compile(r'(\w+)\s*=\s*(?:"([^"]*)"|([^,\s]*))')


@dataclass(frozen=True)
class Challenge:
    """A parsed WWW-Authenticate header: `Bearer realm="...",service="...",scope="..."`."""

    scheme: str
    params: dict[str, str]


def parse_challenge(header: str) -> Challenge:
    scheme, _, rest = header.strip().partition(" ")
    params = {key.lower(): quoted or bare for key, quoted, bare in _CHALLENGE.findall(rest)}
    return Challenge(scheme.lower(), params)


class OciRegistry:
    def __init__(self, insecure: bool = False) -> None:
        self.scheme = "http" if insecure else "https"
        self._session = requests.Session()
        self._auth: dict[str, str] = {}  # repository -> Authorization header

    def exists(self, name: str, tag: str) -> bool:
        return self.digest(name, tag) is not None

    def digest(self, name: str, tag: str) -> str | None:
        response = self._request("HEAD", name, f"manifests/{tag}")
        if response.status_code == 404:
            return None
        self._raise_for(response, name)
        digest = response.headers.get("Docker-Content-Digest")
        if digest:
            return digest
        # The header is optional in the OCI spec: hash the manifest itself.
        body = self._request("GET", name, f"manifests/{tag}")
        self._raise_for(body, name)
        return "sha256:" + hashlib.sha256(body.content).hexdigest()

    def credentials(self, name: str) -> Credentials | None:
        host, _ = split_name(name)
        return engine.stored_credentials(host)

    def prepare(self, name: str) -> None:
        """OCI registries create repositories on first push."""

    def check_scan(self, name: str, tag: str, fail_on: str) -> None:
        raise HubbotError(
            f"scan.fail_on is set for {name}, but only the aws registry provider reports "
            "scan findings: remove scan from hubploy.yaml or use ECR"
        )

    def _request(self, method: str, name: str, path: str) -> requests.Response:
        host, repository = split_name(name)
        url = f"{self.scheme}://{host}/v2/{repository}/{path}"
        headers = {"Accept": MANIFEST_TYPES}
        if repository in self._auth:
            headers["Authorization"] = self._auth[repository]
        response = self._send(method, url, headers, host)
        if response.status_code != 401:
            return response
        challenge = parse_challenge(response.headers.get("WWW-Authenticate", ""))
        credentials = self.credentials(name)
        self._auth[repository] = self._authorize(challenge, credentials, host, repository)
        headers["Authorization"] = self._auth[repository]
        response = self._send(method, url, headers, host)
        if response.status_code == 401:
            raise HubbotError(_rejected(host, credentials))
        return response

    def _authorize(
        self, challenge: Challenge, credentials: Credentials | None, host: str, repository: str
    ) -> str:
        if challenge.scheme == "basic":
            if credentials is None:
                raise HubbotError(_no_login(host))
            return _basic(credentials)
        if challenge.scheme != "bearer" or "realm" not in challenge.params:
            raise HubbotError(
                f"registry {host} asked for an unsupported authentication: "
                f"{challenge.scheme or 'no WWW-Authenticate header'}"
            )
        query = {"scope": challenge.params.get("scope", f"repository:{repository}:pull")}
        if "service" in challenge.params:
            query["service"] = challenge.params["service"]
        auth = (credentials.username, credentials.password) if credentials else None
        token = self._send_token(challenge.params["realm"], query, auth, host)
        if token.status_code in (401, 403):
            raise HubbotError(_rejected(host, credentials))
        self._raise_for(token, host)
        body = token.json()
        value = body.get("token") or body.get("access_token")
        if not value:
            raise HubbotError(f"registry {host}'s token service answered without a token")
        return f"Bearer {value}"

    def _send(self, method: str, url: str, headers: dict[str, str], host: str) -> requests.Response:
        try:
            return self._session.request(method, url, headers=headers, timeout=TIMEOUT_SECONDS)
        except requests.RequestException as exc:
            raise HubbotError(f"registry {host} is unreachable ({url}): {_reason(exc)}") from None

    def _send_token(
        self,
        realm: str,
        query: dict[str, str],
        auth: tuple[str, str] | None,
        host: str,
    ) -> requests.Response:
        try:
            return self._session.get(realm, params=query, auth=auth, timeout=TIMEOUT_SECONDS)
        except requests.RequestException as exc:
            raise HubbotError(
                f"registry {host}'s token service is unreachable ({realm}): {_reason(exc)}"
            ) from None

    @staticmethod
    def _raise_for(response: requests.Response, what: str) -> None:
        if response.status_code >= 400:
            raise HubbotError(
                f"registry answered {response.status_code} {response.reason} for {what} "
                f"({response.request.method} {response.url})"
            )


def _basic(credentials: Credentials) -> str:
    pair = f"{credentials.username}:{credentials.password}".encode()
    return "Basic " + base64.b64encode(pair).decode()


def _no_login(host: str) -> str:
    return (
        f"registry {host} needs a login and none was found: log in with `docker login {host}` "
        "or `podman login` (DOCKER_CONFIG or REGISTRY_AUTH_FILE select the file)"
    )


def _rejected(host: str, credentials: Credentials | None) -> str:
    if credentials is None:
        return _no_login(host)
    return (
        f"registry {host} rejected the credentials of user {credentials.username!r} "
        f"(from {credentials.origin}): log in again"
    )


def _reason(exc: requests.RequestException) -> str:
    text = str(exc)
    if "Connection refused" in text:
        return "connection refused"
    return type(exc).__name__
