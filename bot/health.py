"""After a deploy: does the hub answer, and can somebody log in?

`GET <url>/hub/api/` answers `{"version": "..."}` without authentication once
the hub and proxy are up. Right after a rollout the proxy or DNS may lag, so
the check retries with exponential backoff until a deadline.

A hub that answers but admits nobody is not healthy, so login is exercised as a
browser would, without starting a user server: tmpauthenticator's `/hub/tmplogin`
must establish a user; an OAuthenticator's `/hub/oauth_login` must send the
browser to the provider's authorize URL with the configured client id and a
callback on the hub's own URL. Which login to try comes from the hub's
`hub.config` (traitlets sections, as z2jh takes them), given as plain data.
"""

from __future__ import annotations

import html
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import requests

from bot.errors import HubbotError

API_PATH = "/hub/api/"
TMP_LOGIN_PATH = "/hub/tmplogin"
OAUTH_LOGIN_PATH = "/hub/oauth_login"
OAUTH_CALLBACK_PATH = "/hub/oauth_callback"
USER_API_PATH = "/hub/api/user"
CHART_DEFAULT_AUTHENTICATOR = "dummy"  # the jupyterhub chart's hub.config default
GITHUB_URL = "https://github.com"
LOGIN_ATTEMPTS = 3  # login answers right away once the API does; only a blip is retried
MAX_HOPS = 5
TRANSIENT = {502, 503, 504}


@dataclass(frozen=True)
class Patience:
    """How long to keep asking, and how; the clock and sleep are injectable for tests."""

    deadline: float = 300.0  # seconds
    first_wait: float = 2.0
    max_wait: float = 30.0
    request_timeout: float = 10.0
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    login_attempts: int = LOGIN_ATTEMPTS


@dataclass(frozen=True)
class TmpLogin:
    """jupyterhub-tmpauthenticator: `/hub/tmplogin` makes a new temporary user."""


@dataclass(frozen=True)
class OAuthLogin:
    """An OAuthenticator: `/hub/oauth_login` redirects to the provider's authorize URL."""

    authorize_url: str | None  # None: not in the config (the hub's environment may set it)
    client_id: str | None  # None: not known here, so it must only be present and non-empty


@dataclass(frozen=True)
class Unchecked:
    """An authenticator with no login probe here."""

    authenticator: str


Login = TmpLogin | OAuthLogin | Unchecked

# Names JupyterHub accepts for authenticator_class (entry points and import paths).
TMP_NAMES = {"tmp", "tmpauthenticator.TmpAuthenticator"}
GITHUB_NAMES = {
    "github", "oauthenticator.github.GitHubOAuthenticator", "oauthenticator.GitHubOAuthenticator",
}
GENERIC_NAMES = {
    "generic-oauth", "oauthenticator.generic.GenericOAuthenticator",
    "oauthenticator.GenericOAuthenticator",
}


def login_for(hub_config: Mapping[str, Any], secrets_known: bool = True) -> Login:
    """The login a hub with this `hub.config` offers (`secrets_known`: values decrypted)."""
    name = _setting(hub_config, ("JupyterHub",), "authenticator_class")
    authenticator = name if isinstance(name, str) and name else CHART_DEFAULT_AUTHENTICATOR
    if authenticator in TMP_NAMES:
        return TmpLogin()
    if authenticator in GITHUB_NAMES:
        sections: tuple[str, ...] = ("GitHubOAuthenticator", "OAuthenticator")
    elif authenticator in GENERIC_NAMES:
        sections = ("GenericOAuthenticator", "OAuthenticator")
    else:
        return Unchecked(authenticator)
    # traitlets: a subclass's section wins over its parent's.
    authorize = _text(_setting(hub_config, sections, "authorize_url"))
    if authorize is None and sections[0] == "GitHubOAuthenticator":
        github = _text(_setting(hub_config, sections, "github_url")) or GITHUB_URL
        if "://" not in github:
            github = "https://" + github
        authorize = github.rstrip("/") + "/login/oauth/authorize"
    client_id = _text(_setting(hub_config, sections, "client_id")) if secrets_known else None
    return OAuthLogin(authorize, client_id)


def describe(url: str, login: Login) -> str:
    """What the login check will ask of the hub at `url`, for a dry run."""
    hub = url.rstrip("/")
    if isinstance(login, TmpLogin):
        return f"GET {hub}{TMP_LOGIN_PATH} must log in a temporary user (no server started)"
    if isinstance(login, OAuthLogin):
        provider = login.authorize_url or "the login provider"
        return (
            f"GET {hub}{OAUTH_LOGIN_PATH} must redirect to {provider} with the client id and "
            f"redirect_uri {hub}{OAUTH_CALLBACK_PATH}"
        )
    return f"none (no login probe for authenticator_class {login.authenticator!r})"


def _setting(config: Mapping[str, Any], sections: tuple[str, ...], key: str) -> Any:
    for section in sections:
        values = config.get(section)
        if isinstance(values, Mapping) and key in values:
            return values[key]
    return None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def api_url(url: str) -> str:
    return url.rstrip("/") + API_PATH


def check(url: str, patience: Patience | None = None) -> str:
    """The running JupyterHub's version, or a HubbotError with the last problem seen."""
    patience = patience or Patience()
    target = api_url(url)
    start = patience.clock()
    wait = patience.first_wait
    attempts = 0
    while True:
        attempts += 1
        version, problem = _ask(target, patience.request_timeout)
        if version is not None:
            return version
        elapsed = patience.clock() - start
        if elapsed + wait > patience.deadline:
            raise HubbotError(
                f"health check failed: {target} gave no JupyterHub version after {attempts} "
                f"attempt(s) in {elapsed:.0f}s (last: {problem})"
            )
        patience.sleep(wait)
        wait = min(wait * 2, patience.max_wait)


def _ask(target: str, timeout: float) -> tuple[str | None, str]:
    try:
        response = requests.get(target, timeout=timeout, allow_redirects=True)
    except requests.RequestException as exc:
        return None, f"no answer: {type(exc).__name__}"
    if response.status_code != 200:
        return None, f"HTTP {response.status_code}"
    try:
        body = response.json()
    except ValueError:
        return None, "HTTP 200 but not JSON"
    version = body.get("version") if isinstance(body, dict) else None
    if not isinstance(version, str) or not version:
        return None, "HTTP 200 but no `version` in the JSON"
    return version, ""


def check_login(url: str, login: Login, patience: Patience | None = None) -> str:
    """What logging in does (`login: ...`), or a HubbotError saying why nobody can.

    Only a hub that gave no answer (or a gateway error) is asked again, a few
    times: a definite refusal is the hub's configuration and will not change.
    """
    patience = patience or Patience()
    if isinstance(login, Unchecked):
        return f"login not checked: no login probe for authenticator_class {login.authenticator!r}"
    hub = url.rstrip("/")
    path = TMP_LOGIN_PATH if isinstance(login, TmpLogin) else OAUTH_LOGIN_PATH
    wait = patience.first_wait
    for attempt in range(1, patience.login_attempts + 1):
        try:
            if isinstance(login, TmpLogin):
                return "login: " + _tmp_login(hub, patience.request_timeout)
            return "login: " + _oauth_login(hub, login, patience.request_timeout)
        except _Transient as exc:
            problem = str(exc)
        except _Refused as exc:
            raise _failed(hub, str(exc)) from None
        if attempt < patience.login_attempts:
            patience.sleep(wait)
            wait = min(wait * 2, patience.max_wait)
    raise _failed(
        hub, f"{path} gave no answer after {patience.login_attempts} attempt(s) (last: {problem})"
    )


class _Transient(Exception):
    """No answer, or a gateway's error: worth asking again."""


class _Refused(Exception):
    """The hub answered, and nobody gets in (the message says how)."""


def _failed(hub: str, problem: str) -> HubbotError:
    return HubbotError(f"health check failed: {api_url(hub)} answers, but login: {problem}")


def _get(session: requests.Session, url: str, timeout: float) -> requests.Response:
    try:
        response = session.get(url, timeout=timeout, allow_redirects=False)
    except requests.RequestException as exc:
        raise _Transient(type(exc).__name__) from exc
    if response.status_code in TRANSIENT:
        raise _Transient(f"HTTP {response.status_code}")
    return response


def _tmp_login(hub: str, timeout: float) -> str:
    """Follow `/hub/tmplogin`'s redirects on the hub until a user is logged in.

    Stops there: the next hop (`/hub/spawn`) would start a server for the user.
    """
    with requests.Session() as session:
        target = hub + TMP_LOGIN_PATH
        for _ in range(MAX_HOPS):
            response = _get(session, target, timeout)
            if not response.is_redirect and response.status_code != 200:
                raise _Refused(
                    f"{TMP_LOGIN_PATH} gave HTTP {response.status_code} ({_error_text(response)}) "
                    "instead of a user: nobody can log in"
                )
            location = urljoin(target, response.headers.get("location", ""))
            if response.is_redirect and urlsplit(location).path.rstrip("/").endswith("/hub/login"):
                raise _Refused(
                    f"{TMP_LOGIN_PATH} sent the browser back to the login page "
                    f"({_path(location)}): nobody can log in"
                )
            if _logged_in(session, hub, timeout):
                return "a temporary user is admitted"
            if not response.is_redirect:
                raise _Refused(f"{TMP_LOGIN_PATH} gave a page but no user: nobody can log in")
            if urlsplit(location).netloc != urlsplit(hub).netloc:
                raise _Refused(
                    f"{TMP_LOGIN_PATH} sent the browser off the hub, to {_path(location)}, "
                    "with no user logged in"
                )
            target = location
    raise _Refused(f"{TMP_LOGIN_PATH} redirected {MAX_HOPS} times without logging anyone in")


def _logged_in(session: requests.Session, hub: str, timeout: float) -> bool:
    """Whether the session's cookies are a user's: the hub's REST API names them."""
    response = _get(session, hub + USER_API_PATH, timeout)
    if response.status_code != 200:
        return False
    try:
        body = response.json()
    except ValueError:
        return False
    return isinstance(body, dict) and isinstance(body.get("name"), str) and bool(body["name"])


def _oauth_login(hub: str, login: OAuthLogin, timeout: float) -> str:
    with requests.Session() as session:
        response = _get(session, hub + OAUTH_LOGIN_PATH, timeout)
    location = response.headers.get("location", "")
    if not response.is_redirect or not location:
        raise _Refused(
            f"{OAUTH_LOGIN_PATH} gave HTTP {response.status_code} ({_error_text(response)}) "
            "instead of a redirect to the login provider: nobody can log in"
        )
    parts = urlsplit(urljoin(hub + OAUTH_LOGIN_PATH, location))
    provider = f"{parts.scheme}://{parts.netloc}{parts.path}"
    sends = f"{OAUTH_LOGIN_PATH} sends users to {provider}"
    expected = login.authorize_url
    if expected is not None and provider.rstrip("/") != expected.rstrip("/"):
        raise _Refused(f"{sends}, not to the configured {expected}")
    if expected is None and parts.netloc == urlsplit(hub).netloc:
        raise _Refused(f"{sends}, on the hub itself, not to a login provider")
    query = parse_qs(parts.query)
    client_id = query.get("client_id", [""])[0]
    if not client_id:
        raise _Refused(f"{sends} with no client_id: nobody can log in")
    # client_id is not a secret, but it comes from a secrets file: compare, never show.
    if login.client_id is not None and client_id != login.client_id:
        raise _Refused(f"{sends} with a client_id that is not the configured one")
    callback = hub + OAUTH_CALLBACK_PATH
    redirect_uri = query.get("redirect_uri", [""])[0]
    if redirect_uri != callback:
        elsewhere = (
            "another host" if urlsplit(redirect_uri).netloc != urlsplit(hub).netloc
            else "the wrong page"
        )
        provider_name = "GitHub" if parts.netloc == "github.com" else "the login provider"
        raise _Refused(
            f"{sends} with redirect_uri {redirect_uri or '(none)'}, not {callback}: "
            f"{provider_name} would send them to {elsewhere}"
        )
    client = "the configured client id" if login.client_id is not None else "a client id"
    return f"{sends} with {client} and the callback {callback}"


def _path(url: str) -> str:
    """A URL without its query: enough to say where, and no state or tokens."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}" if parts.netloc else parts.path


ERROR_DIV = re.compile(r'<div class="error">(.*?)</div>', re.DOTALL)
TAG = re.compile(r"<[^>]+>")


def _error_text(response: requests.Response) -> str:
    """JupyterHub's error page says `<code> : <reason>` and any message; else the reason."""
    found = ERROR_DIV.search(response.text) if "html" in response.headers.get(
        "content-type", "") else None
    if found is None:
        return response.reason or "no reason given"
    chunks = [html.unescape(chunk).strip() for chunk in TAG.split(found[1])]
    text = ": ".join(" ".join(chunk.split()) for chunk in chunks if chunk.strip())
    text = re.sub(r"^\d{3}\s*:\s*", "", text)
    return text[:200] or response.reason or "no reason given"
