"""What a changed user image contains that its previous version did not: packages and size.

Read from the images themselves when both versions are in the container
engine (the package records conda and pip leave in the image: each
environment's `conda-meta/<name>-<version>-<build>.json` and each
`<name>-<version>.dist-info` whose INSTALLER is not conda), else from the
environment spec (environment.yml, requirements.txt) at both refs, and the
report says which.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass

import yaml

from bot.engine import Engine
from bot.errors import HubbotError
from bot.markdown import escape_cell, inline_code
from bot.source import Source

CONDA = "conda"
PIP = "pip"
SPEC_FILES = ("environment.yml", "requirements.txt")

# Lists the package records of every environment in the image, one per line:
# `conda PATH` or `pip INSTALLER PATH`. Needs only sh and find (busybox has both).
LIST_PACKAGES = (
    "find / -xdev \\( -path '*/conda-meta/*.json' -o -path '*.dist-info/INSTALLER' \\) "
    '2>/dev/null | while read -r f; do case "$f" in '
    '*INSTALLER) echo "pip $(head -n 1 "$f") $f";; *) echo "conda $f";; esac; done'
)

_REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?\s*(.*?)\s*$")

# (kind, environment prefix, name) -> version
Packages = dict[tuple[str, str, str], str]


@dataclass(frozen=True)
class Change:
    kind: str  # CONDA or PIP
    environment: str  # the environment's prefix in the image ("" for a spec)
    name: str
    old: str | None  # None: added
    new: str | None  # None: removed


@dataclass(frozen=True)
class ImageDiff:
    reference: str  # name:tag at head
    previous: str | None  # name:tag at base; None for a new image
    hubs: tuple[str, ...]
    origin: str  # where the packages were read
    changes: tuple[Change, ...]
    size_before: int | None = None
    size_after: int | None = None
    note: str | None = None  # why the packages come from the spec, or what is unknown

    def counts(self) -> str:
        added = sum(1 for c in self.changes if c.old is None)
        removed = sum(1 for c in self.changes if c.new is None)
        changed = len(self.changes) - added - removed
        return f"{added} added, {removed} removed, {changed} changed"


# --- from the images ----------------------------------------------------------------------


def parse_listing(text: str) -> Packages:
    """The packages in the output of LIST_PACKAGES."""
    found: Packages = {}
    for line in text.splitlines():
        kind, _, rest = line.partition(" ")
        if kind == CONDA:
            directory, name = posixpath.split(rest.strip())
            parts = name.removesuffix(".json").rsplit("-", 2)
            if len(parts) == 3:
                found[(CONDA, posixpath.dirname(directory), parts[0])] = parts[1]
        elif kind == PIP:
            installer, _, path = rest.partition(" ")
            if installer == CONDA or not path:
                continue  # conda's own record already lists it
            info = posixpath.basename(posixpath.dirname(path)).removesuffix(".dist-info")
            name, _, version = info.partition("-")
            prefix = path.split("/lib/", 1)[0]
            if name and version:
                found[(PIP, prefix, name)] = version
    return found


def image_packages(engine: Engine, reference: str) -> Packages:
    result = engine.run_command(reference, ["/bin/sh", "-c", LIST_PACKAGES])
    if result.status != 0:
        raise HubbotError(
            f"cannot list the packages in {reference}: the listing exited with {result.status}"
        )
    return parse_listing(result.output)


def from_images(
    engine: Engine, previous: str | None, reference: str, hubs: tuple[str, ...]
) -> ImageDiff:
    """Compare two images in the engine (`previous` None: a new image, all added)."""
    after = image_packages(engine, reference)
    before = image_packages(engine, previous) if previous else {}
    return ImageDiff(
        reference,
        previous,
        hubs,
        "the built images",
        _changes(before, after),
        engine.image_size(previous) if previous else None,
        engine.image_size(reference),
    )


# --- from the environment spec ------------------------------------------------------------


def spec_packages(source: Source, directory: str) -> Packages:
    """Package specs of an image directory: `name -> spec` (e.g. `=1.26`, `>=2`, `any`)."""
    found: Packages = {}
    environment = source.read(f"{directory}/environment.yml")
    if environment is not None:
        try:
            data = yaml.safe_load(environment)
        except yaml.YAMLError as exc:
            raise HubbotError(f"{directory}/environment.yml is not valid YAML: {exc}") from None
        dependencies = data.get("dependencies") if isinstance(data, dict) else None
        for item in dependencies or []:
            if isinstance(item, dict):
                for line in item.get(PIP) or []:
                    _add(found, PIP, str(line))
            else:
                _add(found, CONDA, str(item).split("::")[-1])
    requirements = source.read(f"{directory}/requirements.txt")
    for line in (requirements or "").splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            _add(found, PIP, line)
    return found


def _add(found: Packages, kind: str, requirement: str) -> None:
    matched = _REQUIREMENT.match(requirement)
    if matched:
        found[(kind, "", matched.group(1).lower())] = matched.group(2) or "any"


def from_specs(
    base: Source,
    head: Source,
    previous: tuple[str, str] | None,
    current: tuple[str, str],
    hubs: tuple[str, ...],
    why: str,
) -> ImageDiff:
    """Compare the environment specs of (reference, directory) `previous` and `current`."""
    reference, directory = current
    before = spec_packages(base, previous[1]) if previous else {}
    after = spec_packages(head, directory)
    return ImageDiff(
        reference,
        previous[0] if previous else None,
        hubs,
        "the environment spec (" + ", ".join(SPEC_FILES) + ")",
        _changes(before, after),
        note=why,
    )


def _changes(before: Packages, after: Packages) -> tuple[Change, ...]:
    keys = sorted(set(before) | set(after), key=lambda k: (k[0], k[2].lower(), k[1]))
    return tuple(
        Change(key[0], key[1], key[2], before.get(key), after.get(key))
        for key in keys
        if before.get(key) != after.get(key)
    )


# --- for people ---------------------------------------------------------------------------


def size_text(before: int | None, after: int | None) -> str:
    if after is None:
        return "size unknown (not built)"
    if before is None:
        return f"size {_bytes(after)}"
    delta = after - before
    sign = "+" if delta >= 0 else "-"
    return f"size {_bytes(before)} → {_bytes(after)} ({sign}{_bytes(abs(delta))})"


def _bytes(count: int) -> str:
    size = float(count)
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    raise AssertionError("unreachable")


def short_reference(reference: str) -> str:
    """`host/path/name:tag` -> `name:tag`: enough to tell images apart in a comment."""
    return reference.rsplit("/", 1)[-1]


def markdown(diffs: list[ImageDiff]) -> str:
    out = ["**Image contents**", ""]
    for diff in diffs:
        was = f" (was {inline_code(short_reference(diff.previous))})" if diff.previous else " (new)"
        out.append(
            f"{inline_code(short_reference(diff.reference))}{was} for "
            f"{escape_cell(', '.join(diff.hubs))}: packages read from {diff.origin}: "
            f"{diff.counts()}; {size_text(diff.size_before, diff.size_after)}"
        )
        if diff.note:
            out += ["", f"_{escape_cell(diff.note)}_"]
        out.append("")
        if diff.changes:
            several = len({c.environment for c in diff.changes}) > 1
            out += ["| package | kind | before | after |", "|---|---|---|---|"]
            for change in diff.changes:
                name = change.name + (f" ({change.environment})" if several else "")
                out.append(
                    f"| {escape_cell(name)} | {change.kind} | {_cell(change.old)} | "
                    f"{_cell(change.new)} |"
                )
            out.append("")
    return "\n".join(out)


def _cell(value: str | None) -> str:
    return "—" if value is None else inline_code(value, in_table=True)
