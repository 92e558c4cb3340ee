"""The container engine (Docker or Podman) through its Docker-compatible API.

DOCKER_HOST selects the engine, as for every Docker client. Builds go through
repo2docker with the `hubbot` engine plugin below (registered in
pyproject.toml under `repo2docker.engines`, repo2docker's documented
extension point): it builds with the engine's API instead of calling a
`docker`/`podman buildx` command line, so it works with any engine the
Docker SDK reaches, including Podman's API service (podman >= 4.3).

Registry logins are passed to the engine per request (X-Registry-Auth) from
memory: nothing is written to the user's ~/.docker/config.json.
"""

from __future__ import annotations

import io
import logging
import os
import tarfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import docker.auth
import docker.errors
import requests
from repo2docker.app import Repo2Docker
from repo2docker.engine import BuildError, ContainerEngine, Image

from bot.errors import HubbotError
from bot.registries import Credentials

ENGINE_NAME = "hubbot"  # the repo2docker.engines entry point
IMAGE_USER_ID = 1000  # the uid z2jh runs user pods as
TEST_DIR = "/hubbot-image-test"

LineSink = Callable[[str], None]


def stored_credentials(host: str) -> Credentials | None:
    """A login for `host` from the engine's own files, read only.

    Podman's REGISTRY_AUTH_FILE first, then Docker's DOCKER_CONFIG/config.json
    or ~/.docker/config.json (including its credential helpers).
    """
    files: list[str | None] = []
    if os.environ.get("REGISTRY_AUTH_FILE"):
        files.append(os.environ["REGISTRY_AUTH_FILE"])
    files.append(None)  # the SDK's own lookup: DOCKER_CONFIG, then ~/.docker/config.json
    for path in files:
        try:
            config = docker.auth.load_config(config_path=path)
            found = config.resolve_authconfig(host)
        except docker.errors.DockerException:
            continue
        if found and found.get("username") is not None:
            origin = path or docker.utils.config.find_config_file() or "the Docker config"
            return Credentials(host, found["username"], found.get("password", ""), str(origin))
    return None


def connect() -> docker.DockerClient:
    """A client for the engine DOCKER_HOST names, or an error saying to set it."""
    host = os.environ.get("DOCKER_HOST") or "the default socket /var/run/docker.sock"
    try:
        client = docker.from_env(timeout=600)
        client.ping()
    except (docker.errors.DockerException, requests.RequestException) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise HubbotError(
            f"cannot reach a container engine at {host} ({reason}): set DOCKER_HOST to a "
            "Docker or Podman API socket, e.g. unix:///run/podman/podman.sock after "
            "`podman system service --time=0 &`"
        ) from None
    return client


@dataclass(frozen=True)
class TestRun:
    status: int
    output: str


class Engine:
    """The operations the builder needs from a container engine."""

    def __init__(self, client: docker.DockerClient) -> None:
        self.client = client

    def has_image(self, reference: str) -> bool:
        with _engine_errors(f"looking up {reference} in the engine"):
            try:
                self.client.images.get(reference)
            except docker.errors.ImageNotFound:
                return False
        return True

    def pull(self, name: str, tag: str, credentials: Credentials | None) -> bool:
        """Fetch `name:tag` into the engine; False when the registry refuses."""
        try:
            for event in self.client.api.pull(
                name, tag=tag, stream=True, decode=True, auth_config=_auth(credentials)
            ):
                if "error" in event:
                    return False
        except docker.errors.APIError:
            return False
        return self.has_image(f"{name}:{tag}")

    def build(
        self,
        directory: Path,
        reference: str,
        labels: dict[str, str],
        cache_from: list[str],
        on_line: LineSink,
    ) -> None:
        """Build `directory` with repo2docker into `reference`; each log line goes to on_line.

        Raises BuildError (with the engine's message) when the build fails.
        """
        # A logger of its own, outside logging's registry: repo2docker's lines go only here.
        log = logging.Logger("hubbot.repo2docker", logging.INFO)
        log.addHandler(_LineHandler(on_line))
        app = Repo2Docker(
            engine=ENGINE_NAME,
            repo=str(directory),
            output_image_spec=reference,
            labels=labels,
            cache_from=cache_from,
            user_id=IMAGE_USER_ID,
            user_name="jovyan",
        )
        app.log = log
        app.build()

    def push(self, name: str, tag: str, credentials: Credentials | None) -> str | None:
        """Push `name:tag`; the digest the engine reports, if it reports one."""
        digest = None
        with _engine_errors(f"pushing {name}:{tag}"):
            for event in self.client.api.push(
                name, tag=tag, stream=True, decode=True, auth_config=_auth(credentials)
            ):
                if "error" in event:
                    raise HubbotError(f"pushing {name}:{tag} failed: {event['error'].strip()}")
                digest = _digest_of(event) or digest
        return digest

    def run_command(self, reference: str, command: list[str]) -> TestRun:
        """Run `command` in a new container of `reference`; its status and combined output."""
        return self.run_test(reference, {}, command)

    def image_size(self, reference: str) -> int | None:
        """The image's size in bytes as the engine reports it."""
        with _engine_errors(f"inspecting {reference}"):
            size = self.client.images.get(reference).attrs.get("Size")
        return int(size) if isinstance(size, int) else None

    def run_test(self, reference: str, files: dict[str, Path], command: list[str]) -> TestRun:
        """Copy `files` (name in TEST_DIR -> host path) into a container of `reference`,
        run `command` there, and return its status and combined output."""
        with _engine_errors(f"running the self-test in {reference}"):
            container = self.client.api.create_container(
                reference, command=command, working_dir=TEST_DIR
            )
            try:
                if files:
                    # Not an empty archive: podman's extractor may exit at its end marker
                    # while the engine still writes the padding ("write |1: broken pipe").
                    self.client.api.put_archive(container, "/", _tar(files))
                self.client.api.start(container)
                status = int(self.client.api.wait(container)["StatusCode"])
                output = self.client.api.logs(container, stdout=True, stderr=True)
                return TestRun(status, output.decode(errors="replace"))
            finally:
                self.client.api.remove_container(container, force=True)


@contextmanager
def _engine_errors(doing: str) -> Iterator[None]:
    """The engine's refusals as one clear message instead of a traceback."""
    try:
        yield
    except docker.errors.APIError as exc:
        raise HubbotError(f"{doing} failed: the engine said: {exc.explanation or exc}") from None
    except requests.RequestException as exc:
        raise HubbotError(
            f"{doing} failed: lost the container engine ({type(exc).__name__}); check DOCKER_HOST"
        ) from None


def _auth(credentials: Credentials | None) -> dict[str, str] | None:
    if credentials is None:
        return None
    return {"username": credentials.username, "password": credentials.password}


def _digest_of(event: dict[str, Any]) -> str | None:
    aux = event.get("aux")
    if isinstance(aux, dict) and aux.get("Digest"):
        return str(aux["Digest"])
    # Both engines also print "<tag>: digest: sha256:... size: N".
    words = str(event.get("status", "")).split()
    if "digest:" in words and words.index("digest:") + 1 < len(words):
        return words[words.index("digest:") + 1]
    return None


def _tar(files: dict[str, Path]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, path in files.items():
            archive.add(path, f"{TEST_DIR.strip('/')}/{name}", filter=_world_readable)
    return buffer.getvalue()


def _world_readable(info: tarfile.TarInfo) -> tarfile.TarInfo:
    # The image's user (not root) runs the tests.
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mode |= 0o555 if info.isdir() or info.mode & 0o100 else 0o444
    return info


class _LineHandler(logging.Handler):
    def __init__(self, sink: LineSink) -> None:
        super().__init__()
        self.sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        for line in record.getMessage().splitlines():
            if line.strip():
                self.sink(line.rstrip())


class HubbotEngine(ContainerEngine):  # type: ignore[misc]
    """repo2docker's engine plugin: builds through the Docker API of DOCKER_HOST."""

    string_output = True

    def __init__(self, *, parent: Any) -> None:
        super().__init__(parent=parent)
        self.client = docker.from_env(timeout=600)

    def build(
        self,
        *,
        push: bool = False,
        load: bool = False,
        buildargs: dict[str, str] | None = None,
        cache_from: list[str] | None = None,
        container_limits: dict[str, int] | None = None,
        tag: str = "",
        custom_context: bool = False,
        dockerfile: str = "",
        fileobj: Any = None,
        path: str = "",
        labels: dict[str, str] | None = None,
        platform: str | None = None,
        **kwargs: Any,
    ) -> Iterator[str]:
        if push:
            raise BuildError("the hubbot engine pushes separately, after the image self-test")
        events = self.client.api.build(
            path=path or None,
            fileobj=fileobj,
            custom_context=custom_context,
            dockerfile=dockerfile or None,
            tag=tag,
            buildargs=buildargs or None,
            container_limits=container_limits or None,
            cache_from=cache_from or None,
            labels=labels or None,
            platform=platform,
            rm=True,
            forcerm=True,
            decode=True,
        )
        try:
            for event in events:
                if "error" in event:
                    raise BuildError(str(event["error"]).strip())
                if "stream" in event:
                    yield str(event["stream"])
        except docker.errors.APIError as exc:
            raise BuildError(str(exc.explanation or exc)) from None

    def inspect_image(self, image: str) -> Image | None:
        try:
            found = self.client.images.get(image)
        except docker.errors.ImageNotFound:
            return None
        config = dict(found.attrs.get("Config") or {})
        config.setdefault("WorkingDir", "")
        return Image(tags=found.tags, config=config)
