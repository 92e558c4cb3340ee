"""What a change between two refs means: which images to build, which pairs to deploy.

A (hub, environment) pair is affected when what it would receive differs:
its merged values with the image references, its secrets file, its deployment
settings, or the chart. Both refs are rendered and compared; path globs are
never used. Only the two refs are read, and a hub whose inputs (hubploy.yaml,
layer files, image directory trees) are byte-identical is not rendered at all.
"""

from __future__ import annotations

import contextlib
import posixpath
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import Any, TypeVar

import yaml

from bot.errors import HubbotError
from bot.hubploy import DEPLOYMENTS, Deployment, discover_hubs, load_deployment, prefetch_hubs
from bot.imagetag import tag_for_tree
from bot.source import GitCommit, Source, memoized
from bot.values import (
    CHART_DIR,
    CHART_VALUES,
    Decryptor,
    HubValues,
    ImageRef,
    build,
    image_refs,
    layer_files,
)
from bot.valuesdiff import ValuesDiff, diff_values, unchanged

# Asks a registry whether an image tag exists: True/False, or None when it cannot tell.
ImageCheck = Callable[[Deployment, ImageRef], bool | None]

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_T = TypeVar("_T")

# Reason kinds, in the order they are reported.
ADDED = "added"
REMOVED = "removed"
VALUES = "values"
IMAGE = "image"
SECRETS = "secrets"
CHART = "chart"
SETTINGS = "settings"
KINDS = (ADDED, REMOVED, IMAGE, CHART, VALUES, SECRETS, SETTINGS)


@dataclass(frozen=True)
class Reason:
    kind: str  # one of KINDS
    detail: str
    files: tuple[str, ...] = ()


@dataclass(frozen=True)
class Pair:
    hub: str
    env: str
    reasons: tuple[Reason, ...]

    @property
    def added(self) -> bool:
        """The pair exists at head only."""
        return any(reason.kind == ADDED for reason in self.reasons)

    @property
    def removed(self) -> bool:
        """The pair exists at base only: there is nothing to deploy."""
        return any(reason.kind == REMOVED for reason in self.reasons)


@dataclass(frozen=True)
class NoEffect:
    """A file that changed for a pair without changing what the pair receives."""

    hub: str
    env: str
    file: str
    reason: str
    keys: tuple[str, ...] = ()


@dataclass(frozen=True)
class HubFailure:
    """A hub left out of the plan: the error (with its file and line) to fix."""

    hub: str
    error: str


@dataclass(frozen=True)
class ImagePlan:
    name: str
    tag: str
    directory: str
    hubs: tuple[str, ...]
    changed: bool  # new content: no hub used this name and tag at base
    exists: bool | None = None  # in the registry; None: not checked or cannot tell

    @property
    def reference(self) -> str:
        return f"{self.name}:{self.tag}"

    @property
    def build(self) -> bool | None:
        """Whether it must be built: known from the registry, else assumed when it changed."""
        if self.exists is not None:
            return not self.exists
        return True if self.changed else None


@dataclass(frozen=True)
class Plan:
    base: str
    head: str
    images: tuple[ImagePlan, ...]
    pairs: tuple[Pair, ...]  # affected pairs, sorted by hub then env
    no_effect: tuple[NoEffect, ...]
    # The values diff of every affected pair, for reports; not part of the JSON plan.
    diffs: dict[tuple[str, str], ValuesDiff] = field(default_factory=dict, compare=False)
    # The two sources compared, so a report can render both refs' manifests.
    sources: tuple[Source, Source] | None = field(default=None, compare=False, repr=False)
    failed: tuple[HubFailure, ...] = ()  # hubs whose files could not be read or merged

    def deployable(self) -> list[Pair]:
        """Affected pairs that exist at head (a removed pair has nothing to deploy)."""
        return [pair for pair in self.pairs if not pair.removed]

    def matrix(self) -> dict[str, list[dict[str, str]]]:
        """The GitHub Actions matrix of pairs to deploy."""
        return {"include": [{"hub": p.hub, "env": p.env} for p in self.deployable()]}

    def to_json(self) -> dict[str, Any]:
        return {
            "base": self.base,
            "head": self.head,
            "images": [
                {
                    "name": image.name,
                    "tag": image.tag,
                    "reference": image.reference,
                    "directory": image.directory,
                    "hubs": list(image.hubs),
                    "changed": image.changed,
                    "exists": "unknown" if image.exists is None else image.exists,
                    "build": "unknown" if image.build is None else image.build,
                }
                for image in self.images
            ],
            "pairs": [
                {
                    "hub": pair.hub,
                    "env": pair.env,
                    "reasons": [
                        {"kind": r.kind, "detail": r.detail, "files": list(r.files)}
                        for r in pair.reasons
                    ],
                }
                for pair in self.pairs
            ],
            "no_effect": [
                {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(item).items()}
                for item in self.no_effect
            ],
            "failed": [asdict(failure) for failure in self.failed],
        }


def plan(
    base: Source,
    head: Source,
    check: ImageCheck | None = None,
    decrypt: Decryptor | None = None,
) -> Plan:
    """Compare `base` and `head` (bot.source Sources) and say what to build and deploy.

    Stable interface, used by `hubbot plan`, `hubbot diff`, `hubbot ci` and the
    benchmarks:
        plan(base_source, head_source, check=None, decrypt=None) -> Plan
    `check(deployment, image_ref)` asks a registry whether an image tag exists;
    without it `ImagePlan.exists` is None ("unknown"). Secrets are read without
    keys; with `decrypt` (bot.sops), a secrets file whose ciphertext changed is
    decrypted at both refs, so a re-encryption with the same values deploys
    nothing. A hub whose files cannot be read or merged at either ref is listed in
    `failed`, with the error, and the other hubs are still planned; raises
    HubbotError when what every hub shares (deployments/, the chart) cannot be read.
    """
    chart = _chart_changes(base, head)
    pairs: list[Pair] = []
    no_effect: list[NoEffect] = []
    diffs: dict[tuple[str, str], ValuesDiff] = {}
    failed: list[HubFailure] = []
    base_hubs = set(discover_hubs(base))
    head_hubs = set(discover_hubs(head))
    alike = _alike_hubs(base, head, base_hubs & head_hubs)
    # Every hub is compared: its files at a commit are read in one request, not one each.
    # A hub git holds alike at both needs only its hubploy.yaml, which discover_hubs read.
    prefetch_hubs(base, base_hubs - alike)
    prefetch_hubs(head, head_hubs - alike)
    for hub in sorted(base_hubs | head_hubs):
        try:
            hub_pairs, quiet, hub_diffs = _plan_hub(
                base, head, hub, (hub in base_hubs, hub in head_hubs, hub in alike), chart,
                decrypt,
            )
        except HubbotError as exc:
            # This hub's pairs fail; the others are still planned.
            failed.append(HubFailure(hub, str(exc)))
            continue
        pairs += hub_pairs
        no_effect += quiet
        diffs.update(hub_diffs)
    broken = {failure.hub for failure in failed}
    return Plan(
        base.label,
        head.label,
        _images(base, head, head_hubs - broken, check, broken),
        tuple(sorted(pairs, key=lambda pair: (pair.hub, pair.env))),
        tuple(sorted(no_effect, key=lambda item: (item.hub, item.env, item.file))),
        diffs,
        (base, head),
        tuple(failed),
    )


def _plan_hub(
    base: Source,
    head: Source,
    hub: str,
    present: tuple[bool, bool, bool],
    chart: list[str],
    decrypt: Decryptor | None,
) -> tuple[list[Pair], list[NoEffect], dict[tuple[str, str], ValuesDiff]]:
    """The affected pairs of one hub, present at (base, head), its directory alike at both
    or not."""
    pairs: list[Pair] = []
    no_effect: list[NoEffect] = []
    diffs: dict[tuple[str, str], ValuesDiff] = {}
    at_base, at_head, alike = present
    new = _outline(head, hub) if at_head else None
    old = None
    if alike:
        old = new
    elif at_base:
        old = _at_base(base, lambda: _outline_at_base(base, head, hub, new))
    for env in list(dict.fromkeys([*(old.envs if old else ()), *(new.envs if new else ())])):
        if old is None or env not in old.envs:
            assert new is not None
            reason = Reason(ADDED, f"{hub}/{env} is new at {head.label}", (new.file,))
            diffs[(hub, env)] = diff_values(None, build(head, hub, env))
            pairs.append(Pair(hub, env, (reason, *_chart_reasons(chart))))
            continue
        if new is None or env not in new.envs:
            reason = Reason(REMOVED, f"{hub}/{env} is gone at {head.label}", (old.file,))
            diffs[(hub, env)] = diff_values(_at_base(base, partial(build, base, hub, env)), None)
            pairs.append(Pair(hub, env, (reason,)))
            continue
        if _same_inputs(base, head, old, new, env, alike):
            if chart:
                diffs[(hub, env)] = unchanged(hub, env)
                pairs.append(Pair(hub, env, tuple(_chart_reasons(chart))))
            continue
        pair, quiet, diff = _compare(base, head, hub, env, chart, decrypt)
        no_effect.extend(quiet)
        if pair is not None:
            pairs.append(pair)
            diffs[(hub, env)] = diff
    return pairs, no_effect, diffs


@dataclass(frozen=True)
class _Outline:
    """What planning needs of a hubploy.yaml: its environments and image directories."""

    hub: str
    file: str
    envs: tuple[str, ...]
    images: tuple[tuple[str, str], ...]  # (name, repo-relative directory)


def _outline(source: Source, hub: str) -> _Outline:
    return memoized(source, ("plan-outline", hub), lambda: _read_outline(source, hub))


def _read_outline(source: Source, hub: str) -> _Outline:
    # libyaml reads the few keys planning needs far faster than the full, line-tracking
    # parse; a hub that is then found changed is fully loaded (and validated) to render it.
    file = f"{DEPLOYMENTS}/{hub}/hubploy.yaml"
    try:
        data = yaml.load(source.read(file) or "", Loader=_Loader)  # noqa: S506 (a safe loader)
        base = posixpath.dirname(file)
        # Only strings are taken: anything else (an alias bomb, say) is left to the bounded,
        # validating reading below.
        images = tuple(
            (_string(image["name"]), _inside(posixpath.join(base, _string(image["path"]))))
            for image in data["images"]
        )
        return _Outline(hub, file, tuple(_string(env) for env in data["environments"]), images)
    except (yaml.YAMLError, KeyError, TypeError, AttributeError):
        deployment = load_deployment(source, hub)  # raises the error, naming file and line
        images = tuple((image.name, image.path) for image in deployment.images)
        return _Outline(hub, file, tuple(deployment.environments), images)


def _inside(path: str) -> str:
    normal = posixpath.normpath(path)
    if normal.startswith(("../", "/")) or normal == "..":
        raise TypeError(path)  # load_deployment names the image path that leaves the repository
    return normal


def _string(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(value)
    return value


def _outline_at_base(base: Source, head: Source, hub: str, at_head: _Outline | None) -> _Outline:
    """The hub's outline at base; an unchanged hubploy.yaml is read once."""
    if at_head is not None and base.read(at_head.file) == head.read(at_head.file):
        return at_head
    return _outline(base, hub)


def pair_inputs(source: Source, hub: str) -> dict[str, tuple[str, ...]]:
    """Per environment of the hub: the files and image directories its render reads."""
    outline = _outline(source, hub)
    directories = tuple(path for _, path in outline.images)
    return {env: (outline.file, *layer_files(hub, env), *directories) for env in outline.envs}


def _same_inputs(
    base: Source, head: Source, old: _Outline, new: _Outline, env: str, alike: bool
) -> bool:
    """Every input of the pair's render is byte-identical: no need to render it. With
    `alike`, the files in the hub's own directory are known to be."""
    files = [CHART_VALUES] if alike else [old.file, *layer_files(old.hub, env)]
    if any(base.read(file) != head.read(file) for file in files):
        return False
    return [(path, base.tree_hash(path)) for _, path in old.images] == [
        (path, head.tree_hash(path)) for _, path in new.images
    ]


def _compare(
    base: Source, head: Source, hub: str, env: str, chart: list[str], decrypt: Decryptor | None
) -> tuple[Pair | None, list[NoEffect], ValuesDiff]:
    old = _at_base(base, lambda: build(base, hub, env))
    new = build(head, hub, env)
    diff = diff_values(old, new)
    reasons = [*_image_reasons(old, new), *_chart_reasons(chart)]
    value_rows = [row for row in diff.rows if not row.secret and row.note is None]
    if value_rows:
        files = sorted({row.layer.rsplit(":", 1)[0] for row in value_rows})
        count = len(value_rows)
        reasons.append(Reason(VALUES, f"{count} key{'s' * (count != 1)} changed", tuple(files)))
    secrets_file = layer_files(hub, env)[-1]
    secret_rows = [row for row in diff.rows if row.secret]
    file_changed = base.read(secrets_file) != head.read(secrets_file)
    reencrypted = (
        file_changed
        and not secret_rows
        and decrypt is not None
        and _same_secrets(base, head, secrets_file, decrypt)
    )
    if (file_changed and not reencrypted) or secret_rows:
        detail = (
            f"{len(secret_rows)} secret key(s) added, removed or retyped"
            if secret_rows
            else "secrets file changed (re-encrypted or edited): values may have changed"
        )
        reasons.append(Reason(SECRETS, detail, (secrets_file,)))
    settings = _settings_changes(old, new)
    if settings:
        reasons.append(Reason(SETTINGS, f"{', '.join(settings)} changed", (new.deployment.file,)))
    quiet = _no_effect(base, head, old, new, diff, settings)
    if reencrypted:
        quiet.append(NoEffect(hub, env, secrets_file, "re-encrypted with the same values"))
    reasons.sort(key=lambda reason: KINDS.index(reason.kind))
    pair = Pair(hub, env, tuple(reasons)) if reasons else None
    return pair, quiet, diff


def _alike_hubs(base: Source, head: Source, hubs: set[str]) -> set[str]:
    """The hubs whose directory git holds alike at two commits: its id digests every file
    below it, so none of them need be read at base. Between other sources, none: a work
    tree's id would mean reading every file."""
    if not (isinstance(base, GitCommit) and isinstance(head, GitCommit)):
        return set()
    alike = set()
    for hub in hubs:
        directory = f"{DEPLOYMENTS}/{hub}"
        with contextlib.suppress(HubbotError):  # a link: the full comparison names it
            if (found := base.object_id(directory)) and found == head.object_id(directory):
                alike.add(hub)
    return alike


def _at_base(base: Source, read: Callable[[], _T]) -> _T:
    """`read()` of the base ref, whose error is named as the base's, not the change's."""
    try:
        return read()
    except HubbotError as exc:
        raise HubbotError(f"at {base.label} (the base): {exc}") from None


def _same_secrets(base: Source, head: Source, file: str, decrypt: Decryptor) -> bool:
    """Whether both refs' secrets decrypt to the same values; compared in memory only.

    A file that cannot be decrypted counts as changed: deploying is the safe side.
    """
    try:
        return decrypt(file, base.read(file) or "") == decrypt(file, head.read(file) or "")
    except HubbotError:
        return False


def _image_reasons(old: HubValues, new: HubValues) -> list[Reason]:
    before = {image.name: image for image in old.images}
    reasons = []
    for image in new.images:
        previous = before.get(image.name)
        if previous is None or previous.tag != image.tag:
            was = previous.tag if previous else "none"
            reasons.append(
                Reason(
                    IMAGE,
                    f"{image.name}: {was} -> {image.tag}",
                    (image.directory, new.deployment.file),
                )
            )
    gone = sorted(set(before) - {image.name for image in new.images})
    reasons.extend(
        Reason(IMAGE, f"{name}: no longer used", (new.deployment.file,)) for name in gone
    )
    return reasons


def _settings_changes(old: HubValues, new: HubValues) -> list[str]:
    """Deployment settings in hubploy.yaml that change where or how the pair deploys."""
    changes = []
    a, b = old.environment, new.environment
    for name in ("namespace", "release", "url", "timeout"):
        if getattr(a, name) != getattr(b, name):
            changes.append(name)
    for name in ("cluster", "registry"):
        if getattr(old.deployment, name) != getattr(new.deployment, name):
            changes.append(name)
    return changes


def _no_effect(
    base: Source,
    head: Source,
    old: HubValues,
    new: HubValues,
    diff: ValuesDiff,
    settings: list[str],
) -> list[NoEffect]:
    """Changed value files of the pair that change nothing it receives, and why."""
    hub, env = new.hub, new.env
    with_effect = diff.files_with_effect()
    found = []
    overridden: dict[str, list[str]] = {}
    by: dict[str, set[str]] = {}
    for item in diff.overridden:
        file = item.file.rsplit(":", 1)[0]
        overridden.setdefault(file, []).append(item.path)
        by.setdefault(file, set()).add(item.by.rsplit(":", 1)[0])
    for file in [*layer_files(hub, env)[:-1], new.deployment.file]:
        if base.read(file) == head.read(file) or file in with_effect:
            continue
        if file in overridden:
            winners = ", ".join(sorted(by[file]))
            found.append(
                NoEffect(hub, env, file, f"overridden by {winners}", tuple(overridden[file]))
            )
        elif file == new.deployment.file:
            if not settings:
                found.append(NoEffect(hub, env, file, "no deployment setting or image changed"))
        elif file not in diff.changed_files:
            found.append(NoEffect(hub, env, file, "no value changed (comments or formatting)"))
        else:
            found.append(NoEffect(hub, env, file, "every changed key is decided elsewhere"))
    return found


def _chart_changes(base: Source, head: Source) -> list[str]:
    """The entries of the chart directory (all but its values.yaml) that differ."""
    names = sorted(set(base.children(CHART_DIR)) | set(head.children(CHART_DIR)))
    changed = []
    for name in names:
        path = f"{CHART_DIR}/{name}"
        if path == CHART_VALUES:
            continue  # a values layer: compared as values, pair by pair
        if _fingerprint(base, path) != _fingerprint(head, path):
            changed.append(path)
    return changed


def _fingerprint(source: Source, path: str) -> str | None:
    """A chart entry's content: the text of a file, the tree id of a directory."""
    try:
        text = source.read(path)
    except UnicodeDecodeError:
        return "binary"  # charts keep archives under charts/, compared by tree id
    return text if text is not None else source.tree_hash(path)


def _chart_reasons(chart: list[str]) -> list[Reason]:
    if not chart:
        return []
    return [Reason(CHART, "chart changed: " + ", ".join(chart), tuple(chart))]


def _images(
    base: Source, head: Source, hubs: set[str], check: ImageCheck | None, broken: set[str]
) -> tuple[ImagePlan, ...]:
    # An image is new when no hub used that name and tag at base.
    at_base = {
        ref
        for hub in set(discover_hubs(base)) - broken
        for ref in _tags(
            base, _outline_at_base(base, head, hub, _outline(head, hub) if hub in hubs else None)
        )
    }
    users: dict[tuple[str, str], list[str]] = {}
    directories: dict[tuple[str, str], str] = {}
    for hub in sorted(hubs):
        outline = _outline(head, hub)
        for ref, (_, path) in zip(_tags(head, outline), outline.images, strict=True):
            users.setdefault(ref, []).append(hub)
            directories.setdefault(ref, path)
    return tuple(
        ImagePlan(
            name,
            tag,
            directories[(name, tag)],
            tuple(users[(name, tag)]),
            (name, tag) not in at_base,
            _check(head, users[(name, tag)][0], name, check) if check else None,
        )
        for name, tag in sorted(users)
    )


def _tags(source: Source, outline: _Outline) -> list[tuple[str, str]]:
    """(name, tag) of each image of the hub, the tag being its directory's content address."""
    tags = []
    for name, path in outline.images:
        tree = source.tree_hash(path)
        if tree is None:  # image_refs names the hubploy.yaml line that points there
            image_refs(source, load_deployment(source, outline.hub))
            raise AssertionError(f"{path} has no files, yet image_refs found it")
        tags.append((name, tag_for_tree(tree)))
    return tags


def _check(head: Source, hub: str, name: str, check: ImageCheck) -> bool | None:
    deployment = load_deployment(head, hub)
    ref = next(ref for ref in image_refs(head, deployment) if ref.name == name)
    return check(deployment, ref)
