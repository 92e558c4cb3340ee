"""deployments/<hub>/hubploy.yaml: which images, registry, cluster and environments."""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from bot.errors import HubbotError, Location, did_you_mean
from bot.schemas import load_checker
from bot.source import Source, memoized, prefetch
from bot.yamlfile import Path_, YamlDoc, load_yaml

DEPLOYMENTS = "deployments"
# A hub's name is its directory's, and is part of the deploy matrix, GitHub environment
# (`<hub>-<env>`), artifact, outcome file and rollback branch names, printed in logs and
# workflow commands; each environment's release and namespace are set in hubploy.yaml. So:
# ASCII letters, digits, `-`, `_` and `.` (the characters a Kubernetes label value takes),
# starting and ending with a letter or digit, no `..` (git refuses it in a branch name): no
# path separator, leading `-`, space, control or non-ASCII character. `hubbot new-hub`,
# which names releases and namespaces after the hub, asks more (bot.newhub).
HUB_NAME = re.compile(r"(?!.*\.\.)[A-Za-z0-9]([-_.A-Za-z0-9]*[A-Za-z0-9])?")


@dataclass(frozen=True)
class ImageConfig:
    name: str
    path: str  # repo-relative, normalised
    helm_path: tuple[str, ...]
    location: Location  # the `- name:` line of this image
    path_location: Location  # its `path:` line
    scan_fail_on: str | None


@dataclass(frozen=True)
class Environment:
    name: str
    namespace: str
    release: str
    url: str
    timeout: str
    location: Location


@dataclass(frozen=True)
class Deployment:
    hub: str
    file: str
    images: tuple[ImageConfig, ...]
    registry: dict[str, Any]
    cluster: dict[str, Any]
    environments: dict[str, Environment]
    doc: YamlDoc

    def kube_version(self, default: str) -> tuple[str, str, Location]:
        """The Kubernetes version the hub is rendered for (cluster.kube_version, else
        `default`), how a message names it, and the line of hubploy.yaml that decides it."""
        configured = self.cluster.get("kube_version")
        if configured:
            where = Location(self.file, self.doc.lines.get(("cluster", "kube_version")))
            return str(configured), f'cluster.kube_version "{configured}"', where
        described = f'Kubernetes "{default}" (the default; cluster.kube_version is unset)'
        return default, described, Location(self.file, self.doc.lines.get(("cluster",)))


class SchemaErrors(HubbotError):
    """Several violations at once; each is reported on its own line."""

    def __init__(self, problems: list[HubbotError]) -> None:
        super().__init__(f"{len(problems)} problem(s)")
        self.problems = problems


def printable(hub: str) -> str:
    """`hub` as it may be printed: a name that is not valid escaped, so that no newline or
    other control character of it reaches a log (where `::` starts a workflow command)."""
    return hub if HUB_NAME.fullmatch(hub) else repr(hub)


def _check_directory_name(hub: str) -> None:
    if not HUB_NAME.fullmatch(hub):
        # The location stays the directory's path, where an annotation can point; it is
        # escaped only for a name that would put a newline or other control character into
        # the output. The message names the directory quoted, odd characters shown.
        path = hub if hub.isprintable() else repr(hub)[1:-1]
        raise HubbotError(
            f"{hub!r} is not a valid hub name: use ASCII letters, digits, `-`, `_` and `.`, "
            "starting and ending with a letter or digit, without `..` (it is part of GitHub "
            "environment, artifact, file and branch names); rename the directory",
            Location(f"{DEPLOYMENTS}/{path}"),
        )


def discover_hubs(source: Source) -> list[str]:
    """Every directory under deployments/ that holds a hubploy.yaml."""
    return memoized(source, "hubs", lambda: _discover_hubs(source))


def _discover_hubs(source: Source) -> list[str]:
    names = _directories(source)
    prefetch(source, [f"{DEPLOYMENTS}/{name}/hubploy.yaml" for name in names])
    return [name for name in names if _has_hubploy(source, name)]


def _directories(source: Source) -> list[str]:
    """The names in deployments/, listed once per source (each hub loaded asks)."""
    return memoized(source, ("children", DEPLOYMENTS), lambda: source.children(DEPLOYMENTS))


def prefetch_hubs(source: Source, hubs: Iterable[str]) -> None:
    """Read ahead, in one request where `source` is a commit, the files that make `hubs`'
    values (bot.source.prefetch): for a caller about to build them all."""
    hubs = list(hubs)
    prefetch(
        source,
        [f"{DEPLOYMENTS}/{hub}/hubploy.yaml" for hub in hubs],
        [f"{DEPLOYMENTS}/{hub}/{part}" for hub in hubs for part in ("config", "secrets")],
    )


def _has_hubploy(source: Source, name: str) -> bool:
    try:
        return source.read(f"{DEPLOYMENTS}/{name}/hubploy.yaml") is not None
    except HubbotError:
        return True  # there but unreadable (a symbolic link): load_deployment says why


def load_deployment(source: Source, hub: str) -> Deployment:
    return memoized(source, ("deployment", hub), lambda: _load_deployment(source, hub))


def _load_deployment(source: Source, hub: str) -> Deployment:
    # The one hub asked for is looked at first: listing them all reads every hubploy.yaml.
    if hub not in _directories(source) or not _has_hubploy(source, hub):
        hubs = discover_hubs(source)
        known = ", ".join(map(printable, hubs)) or "none"
        close = did_you_mean(hub, map(printable, hubs))
        raise HubbotError(
            f"unknown hub {hub!r}{f' ({close})' if close else ''}: the hubs in deployments/ "
            f"are {known}"
        )
    file = f"{DEPLOYMENTS}/{hub}/hubploy.yaml"
    text = source.read(file)
    if text is None:
        raise HubbotError("is not a file", Location(file))
    doc = load_yaml(file, text)
    problems = [
        HubbotError(v.message, Location(file, doc.line_of(v.path) or 1))
        for v in load_checker(source, "hubploy").violations(doc.data, "hubploy.yaml")
    ]
    if problems:
        raise SchemaErrors(problems)
    data: dict[str, Any] = doc.data
    base = f"{DEPLOYMENTS}/{hub}"
    images = tuple(
        ImageConfig(
            name=image["name"],
            path=_image_directory(source, doc, base, i, image["path"]),
            helm_path=tuple(image["helm_path"].split(".")),
            location=Location(file, doc.lines[("images", i)]),
            path_location=Location(file, doc.line_of(("images", i, "path"))),
            scan_fail_on=image.get("scan", {}).get("fail_on"),
        )
        for i, image in enumerate(data["images"])
    )
    _refuse_shared_helm_paths(images)
    if data["cluster"]["provider"] == "kubeconfig":
        kubeconfig = ("cluster", "kubeconfig", "file")
        inside_repo(doc, base, kubeconfig, data["cluster"]["kubeconfig"]["file"])
    environments = {
        name: Environment(
            name=name,
            namespace=env["namespace"],
            release=env["release"],
            url=env["url"],
            timeout=env.get("timeout", "10m"),
            location=Location(file, doc.lines[("environments", name)]),
        )
        for name, env in data["environments"].items()
    }
    _check_directory_name(hub)
    return Deployment(hub, file, images, data["registry"], data["cluster"], environments, doc)


def _refuse_shared_helm_paths(images: tuple[ImageConfig, ...]) -> None:
    """Two images at one helm_path (or one inside the other's): the later would silently
    replace the earlier, and a change to the losing one would rebuild and redeploy for
    nothing."""
    for number, image in enumerate(images):
        for earlier in images[:number]:
            shorter = min(len(image.helm_path), len(earlier.helm_path))
            if image.helm_path[:shorter] == earlier.helm_path[:shorter]:
                raise HubbotError(
                    f"image {image.name} is set at {'.'.join(image.helm_path)}, where image "
                    f"{earlier.name} ({earlier.location}) is set too: only one would reach "
                    "helm; give each image a helm_path of its own",
                    image.location,
                )


def kubeconfig_path(deployment: Deployment) -> str | None:
    """The repo path of the sops-encrypted kubeconfig, for the kubeconfig cluster provider."""
    if deployment.cluster["provider"] != "kubeconfig":
        return None
    key = ("cluster", "kubeconfig", "file")
    base = posixpath.dirname(deployment.file)
    return inside_repo(deployment.doc, base, key, deployment.cluster["kubeconfig"]["file"])


def inside_repo(doc: YamlDoc, base: str, key: Path_, relative: str) -> str:
    """The repo path `relative` (set at `key`) names from `base`; an error if it leaves."""
    path = posixpath.normpath(posixpath.join(base, relative))
    if posixpath.isabs(relative) or path == ".." or path.startswith("../"):
        raise HubbotError(
            f"`{'.'.join(map(str, key))}: {relative}` leaves the repository: name a path "
            f"inside it, relative to {base}",
            Location(doc.file, doc.line_of(key)),
        )
    return path


def _image_directory(source: Source, doc: YamlDoc, base: str, index: int, relative: str) -> str:
    """The repo path of image `index`'s directory; an error if its build context would take in
    secrets (the repository root, deployments/, a hub's directory or its secrets/)."""
    key = ("images", index, "path")
    path = inside_repo(doc, base, key, relative)
    parts = path.split("/")
    if path == ".":
        problem = "is the repository root, with every hub's secrets and .sops.yaml"
    elif parts[0] != DEPLOYMENTS:
        return path
    elif len(parts) == 1:
        problem = "is deployments/, with every hub's secrets"
    elif len(parts) == 2 and "secrets" in source.children(path):
        problem = f"holds {path}/secrets"
    elif len(parts) > 2 and parts[2] == "secrets":
        problem = f"is {path}" if len(parts) == 3 else f"is inside {'/'.join(parts[:3])}"
    else:
        return path
    raise HubbotError(
        f"`{'.'.join(map(str, key))}: {relative}` {problem}: an image's build context must "
        "hold no secrets (an image may be public); name a directory of the image's own "
        "files, such as images/default",
        Location(doc.file, doc.line_of(key)),
    )


UNIQUE_SETTINGS = ("release", "namespace", "url")


def clashes(source: Source) -> dict[tuple[str, str], list[HubbotError]]:
    """Per (hub, env): the release, namespace or url it shares with another pair.

    Each pair gets its own helm release in its own namespace behind its own URL,
    or one deploy would upgrade, or route to, another hub. A hub whose
    hubploy.yaml cannot be read fails on its own and is left out here.
    """
    return memoized(source, "clashes", lambda: _clashes(source))


def _clashes(source: Source) -> dict[tuple[str, str], list[HubbotError]]:
    users: dict[tuple[str, str], list[tuple[str, str, Location, str]]] = {}
    for hub in discover_hubs(source):
        try:
            deployment = load_deployment(source, hub)
        except HubbotError:
            continue
        for env, settings in deployment.environments.items():
            for setting in UNIQUE_SETTINGS:
                value = str(getattr(settings, setting))
                key = value.lower().rstrip("/") if setting == "url" else value
                line = deployment.doc.line_of(("environments", env, setting))
                users.setdefault((setting, key), []).append(
                    (hub, env, Location(deployment.file, line), value)
                )
    found: dict[tuple[str, str], list[HubbotError]] = {}
    for (setting, _), pairs in users.items():
        for hub, env, where, value in pairs:
            others = ", ".join(
                f"{other_hub}/{other_env} at {other_where}"
                for other_hub, other_env, other_where, _ in pairs
                if (other_hub, other_env) != (hub, env)
            )
            if others:
                found.setdefault((hub, env), []).append(
                    HubbotError(
                        f"{setting} {value} is also used by {others}: every hub and "
                        f"environment needs its own {setting}",
                        where,
                    )
                )
    return found


def environment(deployment: Deployment, env: str) -> Environment:
    if env not in deployment.environments:
        known = ", ".join(deployment.environments)
        close = did_you_mean(env, deployment.environments)
        raise HubbotError(
            f"unknown environment {env!r}{f' ({close})' if close else ''} for hub "
            f"{deployment.hub}: "
            f"{deployment.file} defines {known}"
        )
    return deployment.environments[env]
