"""Container registries behind one small protocol.

`registry.provider` in hubploy.yaml picks the module: `aws` (ECR through
boto3) or `oci` (any registry through its HTTP API). None of them needs a
container engine to answer whether a tag exists.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from bot.errors import HubbotError, Location
from bot.hubploy import Deployment


@dataclass(frozen=True)
class Credentials:
    """A login for one registry host; the password never shows in a repr."""

    registry: str
    username: str
    password: str = field(repr=False)
    origin: str  # where they came from, for messages


class Registry(Protocol):
    """What the builder asks of a registry. `name` is an image name without a tag."""

    def exists(self, name: str, tag: str) -> bool:
        """Whether `name:tag` is in the registry."""

    def digest(self, name: str, tag: str) -> str | None:
        """The manifest digest of `name:tag`, or None when it is absent."""

    def credentials(self, name: str) -> Credentials | None:
        """The login the engine needs to push or pull `name`, if any."""

    def prepare(self, name: str) -> None:
        """Make `name` ready to receive a push (create the repository where needed)."""

    def check_scan(self, name: str, tag: str, fail_on: str) -> None:
        """Raise when the pushed image's scan findings reach the `fail_on` severity."""


def split_name(name: str) -> tuple[str, str]:
    """`host[:port]/path` -> (host, path). hubploy.yaml's schema demands a host part."""
    host, _, path = name.partition("/")
    return host, path


def registry_for(deployment: Deployment) -> Registry:
    """The registry that `deployment`'s hubploy.yaml names."""
    settings = deployment.registry
    provider = settings["provider"]
    if provider == "aws":
        from bot.registries.ecr import EcrRegistry

        aws = settings["aws"]
        return EcrRegistry(aws["account_id"], aws["region"], _where(deployment))
    if provider == "oci":
        from bot.registries.oci import OciRegistry

        return OciRegistry(insecure=bool(settings.get("oci", {}).get("insecure", False)))
    raise HubbotError(f"unknown registry provider {provider!r}", _where(deployment))


def _where(deployment: Deployment) -> Location:
    return Location(deployment.file, deployment.doc.line_of(("registry",)) or 1)
