"""deployments/<hub>/hubploy.yaml: which images, registry, cluster and environments."""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from typing import Any

from bot.errors import HubbotError, Location
from bot.schemas import load_validator, violations
from bot.source import Source, memoized
from bot.yamlfile import YamlDoc, load_yaml

DEPLOYMENTS = "deployments"


@dataclass(frozen=True)
class ImageConfig:
    name: str
    path: str  # repo-relative, normalised
    helm_path: tuple[str, ...]
    location: Location  # the `- name:` line of this image
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


class SchemaErrors(HubbotError):
    """Several violations at once; each is reported on its own line."""

    def __init__(self, problems: list[HubbotError]) -> None:
        super().__init__(f"{len(problems)} problem(s)")
        self.problems = problems


def discover_hubs(source: Source) -> list[str]:
    """Every directory under deployments/ that holds a hubploy.yaml."""
    return memoized(source, "hubs", lambda: _discover_hubs(source))


def _discover_hubs(source: Source) -> list[str]:
    return [
        name
        for name in source.children(DEPLOYMENTS)
        if source.read(f"{DEPLOYMENTS}/{name}/hubploy.yaml") is not None
    ]


def load_deployment(source: Source, hub: str) -> Deployment:
    return memoized(source, ("deployment", hub), lambda: _load_deployment(source, hub))


def _load_deployment(source: Source, hub: str) -> Deployment:
    hubs = discover_hubs(source)
    if hub not in hubs:
        known = ", ".join(hubs) or "none"
        raise HubbotError(f"unknown hub {hub!r}: the hubs in deployments/ are {known}")
    file = f"{DEPLOYMENTS}/{hub}/hubploy.yaml"
    text = source.read(file)
    assert text is not None  # discover_hubs found it
    doc = load_yaml(file, text)
    problems = [
        HubbotError(v.message, Location(file, doc.line_of(v.path) or 1))
        for v in violations(doc.data, load_validator(source, "hubploy"), "hubploy.yaml")
    ]
    if problems:
        raise SchemaErrors(problems)
    data: dict[str, Any] = doc.data
    base = f"{DEPLOYMENTS}/{hub}"
    images = tuple(
        ImageConfig(
            name=image["name"],
            path=posixpath.normpath(posixpath.join(base, image["path"])),
            helm_path=tuple(image["helm_path"].split(".")),
            location=Location(file, doc.lines[("images", i)]),
            scan_fail_on=image.get("scan", {}).get("fail_on"),
        )
        for i, image in enumerate(data["images"])
    )
    for image in images:
        if image.path.startswith(("../", "/")) or image.path == "..":
            raise HubbotError(f"image path {image.path!r} leaves the repository", image.location)
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
    return Deployment(hub, file, images, data["registry"], data["cluster"], environments, doc)


def environment(deployment: Deployment, env: str) -> Environment:
    if env not in deployment.environments:
        known = ", ".join(deployment.environments)
        raise HubbotError(
            f"unknown environment {env!r} for hub {deployment.hub}: "
            f"{deployment.file} defines {known}"
        )
    return deployment.environments[env]
