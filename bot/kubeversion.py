"""A chart's `kubeVersion` constraint, checked the way helm checks it.

Helm (Masterminds semver v3) reads a constraint as alternatives separated by
`||`, each a list of comparisons separated by commas or spaces that must all
hold: `>=1.28.0-0`, `>= 1.19.0-0 < 1.31`, `~1.29`, `^1.28`, `1.28.x`,
`1.27 - 1.30`. A version with a prerelease (`1.30.1-eks-1`) satisfies only a
comparison whose own version has one, which is why charts write `-0`.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

_NUMBER = r"0|[1-9][0-9]*"
_VERSION = re.compile(
    rf"^v?(?P<major>{_NUMBER}|[xX*])(?:\.(?P<minor>{_NUMBER}|[xX*]))?"
    rf"(?:\.(?P<patch>{_NUMBER}|[xX*]))?"
    r"(?:-(?P<pre>[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?(?:\+[0-9A-Za-z.-]+)?$"
)
_COMPARISON = re.compile(r"(!=|>=|=>|<=|=<|~>|=|>|<|~|\^)?\s*([^\s,|<>=!~^][^\s,|]*)")
_HYPHEN = re.compile(r"^\s*([^\s,|]+)\s+-\s+([^\s,|]+)\s*$")


class ConstraintError(ValueError):
    """The constraint is not one helm can read."""


@dataclass(frozen=True)
class Version:
    major: int
    minor: int
    patch: int
    pre: tuple[str, ...] = ()
    # How many of major, minor, patch were given as numbers (a wildcard or a missing
    # part makes a range: `1.28` and `1.28.x` mean any 1.28 patch for `=`).
    given: int = 3

    @property
    def key(self) -> tuple[int, int, int]:
        return (self.major, self.minor, self.patch)


def parse_version(text: str) -> Version:
    match = _VERSION.match(text.strip())
    if match is None:
        raise ConstraintError(f"{text!r} is not a version")
    parts = [match["major"], match["minor"], match["patch"]]
    given = 0
    for part in parts:
        if part is None or not part.isdigit():
            break
        given += 1
    numbers = [int(part) if part is not None and part.isdigit() else 0 for part in parts]
    pre = tuple(match["pre"].split(".")) if match["pre"] else ()
    return Version(numbers[0], numbers[1], numbers[2], pre, given)


def compare(a: Version, b: Version) -> int:
    """-1, 0 or 1 by semver precedence (a release sorts after its prereleases)."""
    if a.key != b.key:
        return -1 if a.key < b.key else 1
    if a.pre == b.pre:
        return 0
    if not a.pre or not b.pre:
        return 1 if not a.pre else -1
    for x, y in zip(a.pre, b.pre, strict=False):
        if x == y:
            continue
        if x.isdigit() and y.isdigit():
            return -1 if int(x) < int(y) else 1
        if x.isdigit() != y.isdigit():
            return -1 if x.isdigit() else 1  # numeric identifiers sort first
        return -1 if x < y else 1
    return -1 if len(a.pre) < len(b.pre) else 1


def _next(version: Version, position: int) -> Version:
    """The first release above every version that agrees with `version` up to `position`."""
    if position == 0:
        return Version(version.major + 1, 0, 0)
    if position == 1:
        return Version(version.major, version.minor + 1, 0)
    return Version(version.major, version.minor, version.patch + 1)


def _holds(operator: str, bound: Version, version: Version) -> bool:
    if version.pre and not bound.pre:
        return False
    if operator in ("", "="):
        if bound.given == 3:
            return compare(version, bound) == 0
        return _in_range(version, bound, _next(bound, max(bound.given - 1, 0)), bound.given)
    if operator == "!=":
        return not _holds("=", bound, version)
    if operator == ">":
        if bound.given == 3:
            return compare(version, bound) > 0
        return bound.given > 0 and compare(version, _next(bound, bound.given - 1)) >= 0
    if operator == "<":
        return compare(version, bound) < 0
    if operator in (">=", "=>"):
        return compare(version, bound) >= 0
    if operator in ("<=", "=<"):
        if bound.given == 3:
            return compare(version, bound) <= 0
        return bound.given == 0 or compare(version, _next(bound, bound.given - 1)) < 0
    if operator in ("~", "~>"):
        # ~1.2.3 and ~1.2 allow patch updates, ~1 minor ones.
        return (
            compare(version, bound) >= 0
            and compare(version, _next(bound, 0 if bound.given == 1 else 1)) < 0
        )
    # ^: updates that keep the left-most non-zero part (^0.2.3 stays below 0.3.0).
    if bound.major > 0 or bound.given == 1:
        position = 0
    elif bound.minor > 0 or bound.given == 2:
        position = 1
    else:
        position = 2
    return compare(version, bound) >= 0 and compare(version, _next(bound, position)) < 0


def _in_range(version: Version, low: Version, high: Version, given: int) -> bool:
    if given == 0:
        return True
    return compare(version, low) >= 0 and compare(version, high) < 0


@functools.lru_cache(maxsize=64)
def satisfies(version: str, constraint: str) -> bool:
    """Whether Kubernetes `version` (`1.31`, `v1.31.2`) meets the chart's `constraint`.

    Raises ConstraintError for a constraint or version helm could not read.
    """
    target = parse_version(version)
    alternatives = constraint.split("||")
    if not constraint.strip():
        raise ConstraintError("the constraint is empty")
    return any(_group_holds(group, target) for group in alternatives)


def _group_holds(group: str, version: Version) -> bool:
    hyphen = _HYPHEN.match(group)
    if hyphen:
        low, high = parse_version(hyphen[1]), parse_version(hyphen[2])
        return _holds(">=", low, version) and _holds("<=", high, version)
    comparisons = [(m[1] or "", m[2]) for m in _COMPARISON.finditer(group)]
    leftover = _COMPARISON.sub("", group).replace(",", "").strip()
    if not comparisons or leftover:
        raise ConstraintError(f"cannot read {group.strip()!r}")
    return all(_holds(operator, parse_version(text), version) for operator, text in comparisons)
