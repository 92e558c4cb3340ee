"""The deployment policies hubbot is compared with, and how each push is scored.

Each policy looks at one push (a merge to staging) and decides which images to
build and which (hub, environment) pairs to deploy. They are written from the
documented behaviour of the tools people would otherwise use:

- hubploy: an image's tag is the last commit that touched its directory; the
  image is built when the registry lacks that tag; every hub is deployed on
  every push.
- path globs (CI path filters): a hub is deployed when any file under its
  directory, or under the shared chart hub/, changed; an image is built (tagged
  with the pushed commit) when any file under its directory changed.

Scoring compares a decision with the ground truth of that push: an image build
is redundant when the registry already holds that content under any tag; a
deploy is redundant when the pair's rendered values and chart did not change;
a deploy is missed when they changed and the pair was not deployed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

Pair = tuple[str, str]  # (hub, environment)

DEPLOYMENTS = "deployments"
CHART_DIR = "hub"


@dataclass(frozen=True)
class ImageUse:
    """One image a hub runs at the pushed commit."""

    name: str  # repository, no tag
    directory: str  # repo path of its build directory
    content: str  # what is in it (the git tree id): equal content, equal image
    last_commit: str  # the last commit that touched the directory


@dataclass(frozen=True)
class Build:
    name: str
    tag: str
    content: str


@dataclass(frozen=True)
class Decision:
    builds: tuple[Build, ...]
    deploys: frozenset[Pair]


@dataclass
class Registry:
    """A simulated image registry: which tags hold which content, per repository."""

    tags: dict[str, dict[str, str]] = field(default_factory=dict)

    def has_tag(self, name: str, tag: str) -> bool:
        return tag in self.tags.get(name, {})

    def has_content(self, name: str, content: str) -> bool:
        return content in self.tags.get(name, {}).values()

    def push(self, build: Build) -> None:
        self.tags.setdefault(build.name, {})[build.tag] = build.content


@dataclass
class Tally:
    """What one policy did over a replay, against the ground truth."""

    builds: int = 0
    redundant_builds: int = 0
    deploys: int = 0
    redundant_deploys: int = 0
    missed_deploys: int = 0

    def add(self, decision: Decision, needed: frozenset[Pair], registry: Registry) -> None:
        """Score one push's decision, then push its builds to `registry`."""
        for build in decision.builds:
            self.builds += 1
            self.redundant_builds += registry.has_content(build.name, build.content)
        for build in decision.builds:
            registry.push(build)
        self.deploys += len(decision.deploys)
        self.redundant_deploys += len(decision.deploys - needed)
        self.missed_deploys += len(needed - decision.deploys)


def hubploy_tag(last_commit: str) -> str:
    """hubploy tags an image with the short id of the last commit touching its directory."""
    return last_commit[:7]


def hubploy(images: Iterable[ImageUse], pairs: Iterable[Pair], registry: Registry) -> Decision:
    """Build each image whose last-commit tag is missing; deploy every pair."""
    builds = {
        (image.name, hubploy_tag(image.last_commit)): Build(
            image.name, hubploy_tag(image.last_commit), image.content
        )
        for image in images
        if not registry.has_tag(image.name, hubploy_tag(image.last_commit))
    }
    return Decision(tuple(builds.values()), frozenset(pairs))


def path_globs(
    changed: Iterable[str], images: Iterable[ImageUse], pairs: Iterable[Pair], commit: str
) -> Decision:
    """Deploy pairs whose hub directory or hub/ has a changed file; build changed image dirs."""
    files = list(changed)
    chart = any(_under(file, CHART_DIR) for file in files)
    deploys = frozenset(
        (hub, env)
        for hub, env in pairs
        if chart or any(_under(file, f"{DEPLOYMENTS}/{hub}") for file in files)
    )
    builds = {
        (image.name, commit): Build(image.name, commit, image.content)
        for image in images
        if any(_under(file, image.directory) for file in files)
    }
    return Decision(tuple(builds.values()), deploys)


def _under(file: str, directory: str) -> bool:
    return file.startswith(directory.rstrip("/") + "/")
