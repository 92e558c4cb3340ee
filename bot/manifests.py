"""Manifest diffs: what `helm template` renders for two values documents, minus the noise.

Only rendering runs helm (bot/helm.py); the rest is plain data in, plain data out.
Resources are sorted by kind, namespace and name, CRDs last. Named rules take
out what would only be noise, and every diff line a rule hides is counted.
Instead of checksums, the diff says what restarts.
"""

from __future__ import annotations

import base64
import binascii
import copy
import difflib
import json
import re
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bot import git, helm
from bot.disguise import for_helm, new_key
from bot.errors import HubbotError
from bot.helm import DEFAULT_KUBE_VERSION, ChartUnavailable
from bot.hubploy import Deployment
from bot.imagetag import reads_as_non_string
from bot.previewchart import PreviewChart, marked_paths, preview_chart
from bot.source import GitCommit, Source, directory_tree_id
from bot.values import CHART_DIR, HubValues
from bot.yamlfile import YAML11_BOOLEANS

# PyYAML reads YAML 1.1 as helm and Kubernetes do, and with libyaml it reads a full
# z2jh rendering fast enough to do it twice per hub and environment.
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

__all__ = [
    "RULES",
    "ChartUnavailable",
    "ManifestDiff",
    "chart_at",
    "manifest_diff",
    "pair_manifest_diff",
    "previews",
    "render",
]

Doc = dict[str, Any]
Key = tuple[str, str, str]  # kind, namespace, name
Path_ = tuple[str | int, ...]
Redact = Callable[[str], str]

CRD = "CustomResourceDefinition"
WORKLOADS = ("Deployment", "StatefulSet", "DaemonSet")
CONFIG_KINDS = ("ConfigMap", "Secret")
DATA_FIELDS = ("data", "stringData", "binaryData")
VALUES_KEY = "values.yaml"

RULES = {
    "z2jh-values": "the chart values the hub Secret embeds as values.yaml (diffed by key below)",
    "random": "values generated afresh on every render, such as tokens (compared by presence)",
    "checksum": (
        "checksum/* annotations and checksum_* ConfigMap keys (their effect is listed under "
        "what restarts)"
    ),
    "chart-version": (
        "the chart's name-version label (`chart`, `helm.sh/chart`) on each resource, which "
        "a chart bump changes everywhere"
    ),
}
# Resource labels naming the chart and its version, as helm charts set them.
CHART_LABELS = ("chart", "helm.sh/chart")
CHART_LABEL = "<chart name-version>"
# Not a noise rule: Secret data is always replaced, so no value is ever shown.
SECRET = "<secret>"  # noqa: S105 (a placeholder, not a password)
SECRET_CHANGED = "<secret, changed>"  # noqa: S105
RANDOM = "<random>"
CHECKSUM = "<checksum>"
VALUES = "<values.yaml: see the key diff below>"
PLACEHOLDERS = (SECRET, SECRET_CHANGED, RANDOM, CHECKSUM, VALUES, CHART_LABEL)


@dataclass
class ManifestDiff:
    changed: list[str] = field(default_factory=list)
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    text: dict[str, str] = field(default_factory=dict)  # per resource title, sorted
    hidden_lines: dict[str, int] = field(default_factory=dict)  # per rule in RULES
    restarts: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)  # changes Kubernetes would refuse

    @property
    def diff(self) -> str:
        """Every resource's diff, in order."""
        return "".join(self.text.values())

    @property
    def hidden(self) -> dict[str, int]:
        return self.hidden_lines

    def hidden_summary(self) -> list[str]:
        return [
            f"{count} lines hidden by rule {rule}: {RULES[rule]}"
            for rule, count in self.hidden_lines.items()
            if count
        ]


def kube_version(deployment: Deployment) -> str:
    """The Kubernetes version to render for: hubploy.yaml's cluster.kube_version, or the default."""
    return str(deployment.cluster.get("kube_version") or DEFAULT_KUBE_VERSION)


# --- rendering -------------------------------------------------------------------------


@contextmanager
def chart_at(source: Source) -> Iterator[Path]:
    """The hub chart directory as `source` has it: in place, or exported from a commit
    unless the work tree's holds exactly the commit's files (in CI, the head's)."""
    in_place = source.root / CHART_DIR
    if not isinstance(source, GitCommit):
        yield in_place
        return
    committed = source.tree_hash(CHART_DIR)
    if committed is not None and directory_tree_id(in_place) == committed:
        yield in_place
        return
    with tempfile.TemporaryDirectory(prefix="hubbot-chart-") as tmp:
        yield git.export(source.root, source.commit, CHART_DIR, Path(tmp))


def pair_manifest_diff(
    old_source: Source,
    new_source: Source,
    old: HubValues | None,
    new: HubValues | None,
    redact: Redact,
    register: Callable[[str], object] = lambda _: None,
) -> ManifestDiff:
    """manifest_diff for one hub and environment between two refs (None: not there);
    `register` learns the pseudonyms decrypted secrets get (bot/disguise.py)."""
    current = new or old
    if current is None:
        return ManifestDiff()
    same_chart = old_source.tree_hash(CHART_DIR) == new_source.tree_hash(CHART_DIR)
    with ExitStack() as stack:
        old_chart = stack.enter_context(chart_at(old_source))
        new_chart = old_chart if same_chart else stack.enter_context(chart_at(new_source))
        key = new_key()
        return manifest_diff(
            new_chart,
            None if old is None else for_helm(old, key, register),
            None if new is None else for_helm(new, key, register),
            current.environment.release,
            current.environment.namespace,
            redact,
            kube_version=kube_version(current.deployment),
            old_chart_dir=old_chart,
        )


class Previews:
    """Charts prepared for rendering and renders already made, within one run.

    Each chart directory is made ready (bot/helm.py) and copied for previews
    (bot/previewchart.py) once; each render is kept by its inputs, so the same values
    of the same chart are rendered once however often they are asked for.
    """

    def __init__(self, stack: ExitStack) -> None:
        self._stack = stack
        self._charts: dict[Path, PreviewChart] = {}
        self._renders: dict[tuple[str, ...], tuple[dict[Key, Doc], dict[Key, set[Path_]]]] = {}
        self._documents: dict[str, Any] = {}  # rendered document text -> what it holds
        self._marks: dict[int, set[Path_]] = {}  # id of a document held above -> its marks

    def chart(self, directory: Path) -> PreviewChart:
        if directory not in self._charts:
            ready = self._stack.enter_context(helm.ready_chart(directory))
            self._charts[directory] = self._stack.enter_context(preview_chart(ready))
        return self._charts[directory]

    def resources(
        self,
        directory: Path,
        values: dict[str, Any],
        release: str,
        namespace: str,
        kube_version: str,
        redact: Redact,
    ) -> tuple[dict[Key, Doc], dict[Key, set[Path_]]]:
        """The resources the chart renders for `values`, and per resource its random paths."""
        chart = self.chart(directory)
        # JSON is YAML with no ambiguous scalars: helm reads back exactly these values.
        # Without keys, secrets are SecretLeaf shapes, rendered as their placeholder text.
        text = json.dumps(values, default=str)
        key = (str(chart.path), text, release, namespace, kube_version)
        if key not in self._renders:
            rendered = _template(chart.path, text, release, namespace, kube_version, redact)
            first = parse(rendered, self._documents)
            if chart.deterministic:
                random = {k: paths for k, doc in first.items() if (paths := self._marked(doc))}
            else:
                second = _template(chart.path, text, release, namespace, kube_version, redact)
                random = random_paths(first, parse(second))
            self._renders[key] = first, random
        return self._renders[key]

    def _marked(self, doc: Doc) -> set[Path_]:
        # A document rendered alike for several pairs or refs is one object: walked once.
        if id(doc) not in self._marks:
            self._marks[id(doc)] = marked_paths(doc)
        return self._marks[id(doc)]


@contextmanager
def previews() -> Iterator[Previews]:
    with ExitStack() as stack:
        yield Previews(stack)


def manifest_diff(
    chart_dir: Path,
    old_values: dict[str, Any] | None,
    new_values: dict[str, Any] | None,
    release: str,
    namespace: str,
    redact: Redact,
    *,
    kube_version: str = DEFAULT_KUBE_VERSION,
    old_chart_dir: Path | None = None,
    renders: Previews | None = None,
) -> ManifestDiff:
    """The manifest diff between rendering `old_values` and `new_values` (None: not deployed).

    `old_chart_dir` is the chart at the old ref when it differs from `chart_dir`;
    `renders` shares prepared charts and renders across the pairs of a run.
    Raises ChartUnavailable when a locked dependency cannot be fetched.
    """
    with ExitStack() as stack:
        shared = renders or stack.enter_context(previews())

        def rendered(
            directory: Path, values: dict[str, Any] | None
        ) -> tuple[dict[Key, Doc], dict[Key, set[Path_]]]:
            if values is None:
                return {}, {}
            return shared.resources(directory, values, release, namespace, kube_version, redact)

        new, new_random = rendered(chart_dir, new_values)
        try:
            old, old_random = rendered(old_chart_dir or chart_dir, old_values)
        except ChartUnavailable:
            raise
        except HubbotError as exc:
            # A broken chart at the base (say, before Chart.lock existed) is no error of the
            # change under review: there is just no manifest diff to show.
            raise ChartUnavailable(f"the chart at the base cannot be rendered: {exc}") from None
    return compare(old, new, old_random, new_random, redact)


def _template(
    chart: Path, values: str, release: str, namespace: str, kube_version: str, redact: Redact
) -> str:
    try:
        return helm.template(chart, release, namespace, values, kube_version)
    except HubbotError as exc:  # helm may quote a value in its error
        raise HubbotError(redact(exc.message), exc.location) from None


def render(
    chart_dir: Path,
    values: dict[str, Any],
    release: str,
    namespace: str,
    redact: Redact,
    kube_version: str = DEFAULT_KUBE_VERSION,
) -> str:
    """The sorted manifests for `values`, every Secret value and random token masked."""
    with previews() as renders:
        resources, random = renders.resources(
            chart_dir, values, release, namespace, kube_version, redact
        )
    parts = []
    for key, doc in resources.items():
        masked = _mask_paths(copy.deepcopy(doc), random.get(key, set()), RANDOM)
        if masked.get("kind") == "Secret":
            masked = _mask_secret(masked, None)[0]
        masked = _redact_tree(masked, redact)
        parts.append(f"# {title(key)}\n" + "".join(f"{line}\n" for line in yaml_lines(masked)))
    return redact("---\n".join(parts))


# --- parsing ---------------------------------------------------------------------------


def sort_key(key: Key) -> tuple[bool, str, str, str]:
    kind, namespace, name = key
    return (kind == CRD, kind, namespace, name)


def title(key: Key) -> str:
    kind, namespace, name = key
    return f"{kind}/{namespace}/{name}" if namespace else f"{kind}/{name}"


# YAML forbids `---` at the start of a line inside a document ("c-forbidden"), so
# each one starts a document: split before it, keeping the marker.
_DOCUMENT_START = re.compile(r"^(?=---(?:[ \t]|$))", re.MULTILINE)


def parse(rendered: str, known: dict[str, Any] | None = None) -> dict[Key, Doc]:
    """The resources of a rendering, keyed by (kind, namespace, name) in sorted order.

    `known` maps document texts already read to what they hold: a resource rendered
    the same at both refs (most of them) is read once, and both sides hold the same
    object, which callers must not change.
    """
    memo: dict[str, Any] = {} if known is None else known
    docs = []
    for text in _DOCUMENT_START.split(rendered):
        if text not in memo:
            try:
                memo[text] = yaml.load(text, Loader=_Loader)  # noqa: S506 (a safe loader)
            except yaml.YAMLError as exc:
                raise HubbotError(f"helm rendered YAML that cannot be read: {exc}") from None
        docs.append(memo[text])
    resources: dict[Key, Doc] = {}
    for doc in docs:
        if not isinstance(doc, dict):
            continue
        meta = doc.get("metadata") or {}
        base = (str(doc.get("kind", "")), str(meta.get("namespace") or ""), str(meta.get("name")))
        key, number = base, 1
        while key in resources:  # the same resource twice (e.g. a hook): keep both
            number += 1
            key = (base[0], base[1], f"{base[2]} #{number}")
        resources[key] = doc
    return {key: resources[key] for key in sorted(resources, key=sort_key)}


def random_paths(first: dict[Key, Doc], second: dict[Key, Doc]) -> dict[Key, set[Path_]]:
    """Per resource, the paths whose values differ between two renders of the same values."""
    found: dict[Key, set[Path_]] = {}
    for key in first.keys() & second.keys():
        paths: set[Path_] = set()
        _differences(first[key], second[key], (), paths)
        if paths:
            found[key] = paths
    return found


def _differences(a: Any, b: Any, path: Path_, out: set[Path_]) -> None:
    if isinstance(a, dict) and isinstance(b, dict):
        for name in a.keys() | b.keys():
            if name in a and name in b:
                _differences(a[name], b[name], (*path, name), out)
            else:
                out.add((*path, name))
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for index, (x, y) in enumerate(zip(a, b, strict=True)):
            _differences(x, y, (*path, index), out)
    elif a != b:
        out.add(path)


# --- normalising -----------------------------------------------------------------------


@dataclass
class _Pair:
    """One resource at both sides, as each rule leaves it."""

    old: Doc | None
    new: Doc | None
    values_diff: list[str] = field(default_factory=list)
    singleuser: set[str] = field(default_factory=set)  # changed keys under singleuser


def compare(
    old: dict[Key, Doc],
    new: dict[Key, Doc],
    old_random: dict[Key, set[Path_]],
    new_random: dict[Key, set[Path_]],
    redact: Redact,
) -> ManifestDiff:
    """The diff of two parsed renderings; `*_random` are the paths random on each side."""
    result = ManifestDiff(hidden_lines=dict.fromkeys(RULES, 0))
    pairs: dict[Key, _Pair] = {}
    for key in sorted(old.keys() | new.keys(), key=sort_key):
        random = (old_random.get(key, set()), new_random.get(key, set()))
        if key in old and key in new and old[key] == new[key] and random[0] == random[1]:
            # Unchanged (most resources): nothing to show or hide, and no rule needs to
            # copy it. _restarts only reads it, for the config it refers to.
            pairs[key] = _Pair(old[key], new[key])
            continue
        pair = _normalise(key, old.get(key), new.get(key), random, result, redact)
        pairs[key] = pair
        if pair.old == pair.new and not pair.values_diff:
            continue
        name = title(key)
        if pair.old is None:
            result.added.append(name)
        elif pair.new is None:
            result.removed.append(name)
        else:
            result.changed.append(name)
        shown = _Pair(_redact_tree(pair.old, redact), _redact_tree(pair.new, redact))
        shown.values_diff = pair.values_diff
        result.text[name] = redact(_diff_text(name, shown))
    result.restarts = _restarts(pairs)
    result.refused = [
        message for key in sorted(old.keys() & new.keys(), key=sort_key)
        if (message := _static_resize(key, old[key], new[key])) is not None
    ]
    return result


RESIZE_REFUSED = "Kubernetes refuses to resize a statically provisioned volume"
_STORAGE_PATHS = {
    "PersistentVolume": ("capacity", "storage"),
    "PersistentVolumeClaim": ("resources", "requests", "storage"),
}


def _static_resize(key: Key, old: Doc, new: Doc) -> str | None:
    """Why a changed size of a statically provisioned volume cannot be deployed, if it is one.

    With storageClassName "" no provisioner can grow (or shrink) the volume: the
    API server refuses the claim's new size, and `helm upgrade` fails there.
    """
    kind, _, name = key
    path = _STORAGE_PATHS.get(kind)
    if path is None or (new.get("spec") or {}).get("storageClassName") != "":
        return None
    sizes = [_get(doc.get("spec"), path) for doc in (old, new)]
    if sizes[0] is None or sizes[0] == sizes[1]:
        return None
    return f"{RESIZE_REFUSED} ({kind} {name}: {sizes[0]} -> {sizes[1]})"


def _get(node: Any, path: tuple[str, ...]) -> Any:
    for step in path:
        if not isinstance(node, dict):
            return None
        node = node.get(step)
    return node


def _normalise(
    key: Key,
    old: Doc | None,
    new: Doc | None,
    random: tuple[set[Path_], set[Path_]],
    result: ManifestDiff,
    redact: Redact,
) -> _Pair:
    pair = _Pair(copy.deepcopy(old), copy.deepcopy(new))
    stages: list[tuple[str, Callable[[_Pair], None]]] = [
        ("z2jh-values", lambda p: _embedded_values(key, p, redact)),
        ("checksum", lambda p: _checksums(key, p)),
        ("random", lambda p: _random(p, random)),
        ("chart-version", _chart_labels),
    ]
    shown = _changed_lines(pair)
    for rule, apply in stages:
        apply(pair)
        now = _changed_lines(pair)
        result.hidden_lines[rule] += max(shown - now, 0)
        shown = now
    if key[0] == "Secret":
        pair.old, pair.new = _mask_secret(pair.old, pair.new)
    return pair


def _embedded_values(key: Key, pair: _Pair, redact: Redact) -> None:
    """The values.yaml a (z2jh hub) Secret holds: replaced, and diffed key by key."""
    if key[0] != "Secret":
        return
    old = _decoded_values(pair.old)
    new = _decoded_values(pair.new)
    if old is None and new is None:
        return
    for doc, decoded in ((pair.old, old), (pair.new, new)):
        if doc is not None and decoded is not None:
            doc["data"][VALUES_KEY] = VALUES
    changes = list(_leaf_changes(old or {}, new or {}, ()))
    pair.values_diff = [_format_change(path, a, b, redact) for path, a, b in changes]
    if old is not None and new is not None:  # a hub being added or removed restarts nothing
        pair.singleuser = {
            ".".join(map(str, path[1:])) for path, _, _ in changes if path[:1] == ("singleuser",)
        }


def _decoded_values(doc: Doc | None) -> Any:
    if doc is None:
        return None
    encoded = (doc.get("data") or {}).get(VALUES_KEY)
    if not isinstance(encoded, str) or encoded == VALUES:
        return None
    try:
        text = base64.b64decode(encoded, validate=True).decode("utf-8")
        values = yaml.load(text, Loader=_Loader)  # noqa: S506 (a safe loader)
    except (binascii.Error, UnicodeDecodeError, yaml.YAMLError):
        return None
    return values if isinstance(values, dict) else None


_MISSING = object()


def _leaf_changes(old: Any, new: Any, path: Path_) -> Iterator[tuple[Path_, Any, Any]]:
    if isinstance(old, dict) and isinstance(new, dict):
        for name in sorted(old.keys() | new.keys(), key=str):
            yield from _leaf_changes(
                old.get(name, _MISSING), new.get(name, _MISSING), (*path, name)
            )
    elif isinstance(old, dict) and new is _MISSING:
        for name in sorted(old, key=str):
            yield from _leaf_changes(old[name], _MISSING, (*path, name))
    elif old is _MISSING and isinstance(new, dict):
        for name in sorted(new, key=str):
            yield from _leaf_changes(_MISSING, new[name], (*path, name))
    elif old != new:
        yield path, old, new


def _format_change(path: Path_, old: Any, new: Any, redact: Redact) -> str:
    where = ".".join(map(str, path))

    def shown(value: Any) -> str:
        # Redacted before quoting too, so no escaping can hide a secret from `redact`.
        return redact(_scalar(_redact_tree(value, redact)))

    if old is _MISSING:
        return f"+ {where}: {shown(new)}"
    if new is _MISSING:
        return f"- {where}: {shown(old)}"
    if isinstance(old, str) and isinstance(new, str) and "\n" in old + new:
        lines = difflib.unified_diff(
            redact(old).splitlines(), redact(new).splitlines(), lineterm="", n=2
        )
        return f"~ {where}:\n" + "\n".join(f"    {line}" for line in list(lines)[2:])
    return f"~ {where}: {shown(old)} -> {shown(new)}"


def _redact_tree(node: Any, redact: Redact) -> Any:
    if isinstance(node, str):
        return redact(node)
    if isinstance(node, dict):
        return {key: _redact_tree(value, redact) for key, value in node.items()}
    if isinstance(node, list):
        return [_redact_tree(value, redact) for value in node]
    return node


def _scalar(value: Any) -> str:
    if isinstance(value, str):
        return _plain_or_quoted(value)
    if isinstance(value, dict | list) and not value:
        return "{}" if isinstance(value, dict) else "[]"
    return json.dumps(value, sort_keys=True, default=str)


def _random(pair: _Pair, paths: tuple[set[Path_], set[Path_]]) -> None:
    pair.old = _mask_paths(pair.old, paths[0], RANDOM)
    pair.new = _mask_paths(pair.new, paths[1], RANDOM)


def _mask_paths(doc: Any, paths: Iterable[Path_], mask: str) -> Any:
    for path in paths:
        parent = doc
        for step in path[:-1]:
            try:
                parent = parent[step]
            except (KeyError, IndexError, TypeError):
                parent = None
                break
        last = path[-1]
        in_list = isinstance(parent, list) and isinstance(last, int) and last < len(parent)
        present = in_list or (isinstance(parent, dict) and last in parent)
        if present and parent[last] not in PLACEHOLDERS:  # not replaced by an earlier rule
            parent[last] = mask
    return doc


def _checksums(key: Key, pair: _Pair) -> None:
    for doc in (pair.old, pair.new):
        for notes in _annotation_maps(doc):
            for name in notes:
                if str(name).startswith("checksum/"):
                    notes[name] = CHECKSUM
        # z2jh's hub ConfigMap carries checksum_hook-image-puller: a hash of the hook
        # puller, whose own diff is shown. The hub Secret's values.yaml changes whenever
        # it does, so what restarts stays the same without it.
        data = (doc or {}).get("data") if key[0] == "ConfigMap" else None
        if isinstance(data, dict):
            for name in data:
                if str(name).startswith("checksum_"):
                    data[name] = CHECKSUM


def _chart_labels(pair: _Pair) -> None:
    """The resource's own chart label, where the two sides differ; a pod template's labels
    are left, since a change there restarts pods."""
    old, new = (((doc or {}).get("metadata") or {}).get("labels") for doc in (pair.old, pair.new))
    if not (isinstance(old, dict) and isinstance(new, dict)):
        return
    for name in CHART_LABELS:
        if name in old and name in new and old[name] != new[name]:
            old[name] = new[name] = CHART_LABEL


def _annotation_maps(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        for name, value in node.items():
            if name == "annotations" and isinstance(value, dict):
                yield value
            else:
                yield from _annotation_maps(value)
    elif isinstance(node, list):
        for item in node:
            yield from _annotation_maps(item)


def _mask_secret(old: Doc | None, new: Doc | None) -> tuple[Doc | None, Doc | None]:
    """Every Secret value replaced; the new side says which ones changed."""
    for data_field in DATA_FIELDS:
        old_data = (old or {}).get(data_field)
        new_data = (new or {}).get(data_field)
        before = dict(old_data) if isinstance(old_data, dict) else {}
        if isinstance(old_data, dict):
            for name, value in old_data.items():
                old_data[name] = _secret_mask(value, changed=False)
        if isinstance(new_data, dict):
            for name, value in new_data.items():
                changed = name in before and before[name] != value
                new_data[name] = _secret_mask(value, changed)
    return old, new


def _secret_mask(value: Any, changed: bool) -> Any:
    if value in (VALUES, RANDOM):  # replaced by a rule already
        return value
    return SECRET_CHANGED if changed else SECRET


# --- showing ---------------------------------------------------------------------------


def _lines(doc: Doc | None) -> list[str]:
    return [] if doc is None else list(yaml_lines(doc))


def yaml_lines(node: Any, indent: str = "") -> Iterator[str]:
    """Block YAML for reading in a diff: lists in kubectl's style, multi-line text as `|`."""
    if isinstance(node, dict):
        for key, value in node.items():
            head = f"{indent}{_plain_or_quoted(str(key))}:"
            if isinstance(value, dict) and value:
                yield head
                yield from yaml_lines(value, indent + "  ")
            elif isinstance(value, list) and value:
                yield head
                yield from yaml_lines(value, indent)
            else:
                yield from _scalar_lines(head, value, indent + "  ")
    elif isinstance(node, list):
        for item in node:
            if isinstance(item, dict | list) and item:
                nested = list(yaml_lines(item, indent + "  "))
                yield f"{indent}- {nested[0][len(indent) + 2 :]}"
                yield from nested[1:]
            else:
                yield from _scalar_lines(f"{indent}-", item, indent + "  ")
    else:
        yield from _scalar_lines(indent.rstrip(), node, indent)


def _scalar_lines(head: str, value: Any, indent: str) -> Iterator[str]:
    if isinstance(value, str) and "\n" in value.rstrip("\n"):
        yield f"{head} |" + ("" if value.endswith("\n") else "-")
        for line in value.splitlines():
            yield f"{indent}{line}" if line else ""
    else:
        yield f"{head} {_scalar(value)}".rstrip() if head else _scalar(value)


_PLAIN = re.compile(r"(-(?=[A-Za-z]))?[A-Za-z0-9_./<$(][A-Za-z0-9_./<>$() ,=+@:-]*")


def _plain_or_quoted(text: str) -> str:
    plain = (
        _PLAIN.fullmatch(text)
        and not reads_as_non_string(text)
        and text not in YAML11_BOOLEANS
        and ": " not in text
        and not text.endswith((" ", ":"))
    )
    return text if plain else json.dumps(text, ensure_ascii=False)


def _changed_lines(pair: _Pair) -> int:
    if pair.old == pair.new:  # most resources, and much cheaper than lines and a matcher
        return 0
    if pair.old is None or pair.new is None:
        return len(_lines(pair.old if pair.new is None else pair.new))
    matcher = difflib.SequenceMatcher(None, _lines(pair.old), _lines(pair.new), autojunk=False)
    return sum(
        (i2 - i1) + (j2 - j1) for tag, i1, i2, j1, j2 in matcher.get_opcodes() if tag != "equal"
    )


def _diff_text(name: str, pair: _Pair) -> str:
    diff = difflib.unified_diff(
        _lines(pair.old),
        _lines(pair.new),
        fromfile=f"old/{name}" if pair.old is not None else "/dev/null",
        tofile=f"new/{name}" if pair.new is not None else "/dev/null",
        lineterm="",
    )
    text = "\n".join(diff) or f"--- old/{name}\n+++ new/{name}"
    if pair.values_diff:
        text += f"\n# {VALUES_KEY} by key (secrets redacted):\n" + "\n".join(pair.values_diff)
    return text + "\n"


# --- what restarts ---------------------------------------------------------------------


def _restarts(pairs: dict[Key, _Pair]) -> list[str]:
    changed_config = _changed_config(pairs)
    restarts: list[str] = []
    for key, pair in pairs.items():
        if key[0] not in WORKLOADS or pair.old is None or pair.new is None:
            continue
        old_template = (pair.old.get("spec") or {}).get("template")
        new_template = (pair.new.get("spec") or {}).get("template") or {}
        reloads = _has_checksums(new_template) and any(
            ref in changed_config for ref in _config_refs(key[1], new_template)
        )
        if old_template != new_template or reloads:
            restarts.append(_restart_message(key, pair.new))
    singleuser = set().union(*(pair.singleuser for pair in pairs.values()))
    if any(name.startswith("image.") for name in singleuser):
        restarts.append("new user servers get the new image")
    if any(not name.startswith("image.") for name in singleuser):
        restarts.append("new user servers get the new settings; running servers keep theirs")
    return sorted(set(restarts), key=restarts.index)


def _changed_config(pairs: dict[Key, _Pair]) -> set[tuple[str, str, str, str | None]]:
    """(kind, namespace, name, data key or None for any) of each ConfigMap or Secret changed."""
    changed: set[tuple[str, str, str, str | None]] = set()
    for (kind, namespace, name), pair in pairs.items():
        if kind not in CONFIG_KINDS or pair.old is None or pair.new is None:
            continue
        keys = {VALUES_KEY} if pair.values_diff else set()
        for data_field in DATA_FIELDS:
            old = pair.old.get(data_field) or {}
            new = pair.new.get(data_field) or {}
            keys |= {k for k in old.keys() | new.keys() if old.get(k) != new.get(k)}
        if keys or pair.old != pair.new:
            changed.add((kind, namespace, name, None))
            changed |= {(kind, namespace, name, k) for k in keys}
    return changed


def _has_checksums(template: Doc) -> bool:
    annotations = (template.get("metadata") or {}).get("annotations") or {}
    return any(str(name).startswith("checksum/") for name in annotations)


def _config_refs(namespace: str, template: Doc) -> Iterator[tuple[str, str, str, str | None]]:
    """The ConfigMaps and Secrets (or single keys of them) a pod template reads."""
    spec = template.get("spec") or {}
    for volume in spec.get("volumes") or []:
        sources = [volume, *((volume.get("projected") or {}).get("sources") or [])]
        for source in sources:
            if "configMap" in source:
                yield ("ConfigMap", namespace, source["configMap"].get("name", ""), None)
            if "secret" in source:
                secret = source["secret"]
                yield ("Secret", namespace, secret.get("secretName", secret.get("name", "")), None)
    for container in [*(spec.get("containers") or []), *(spec.get("initContainers") or [])]:
        for env_from in container.get("envFrom") or []:
            if "configMapRef" in env_from:
                yield ("ConfigMap", namespace, env_from["configMapRef"].get("name", ""), None)
            if "secretRef" in env_from:
                yield ("Secret", namespace, env_from["secretRef"].get("name", ""), None)
        for env in container.get("env") or []:
            source = env.get("valueFrom") or {}
            for ref_field, kind in (("configMapKeyRef", "ConfigMap"), ("secretKeyRef", "Secret")):
                if ref_field in source:
                    ref = source[ref_field]
                    yield (kind, namespace, ref.get("name", ""), ref.get("key"))


def _restart_message(key: Key, doc: Doc) -> str:
    kind, _, name = key
    labels = (doc.get("metadata") or {}).get("labels") or {}
    component = str(labels.get("component") or labels.get("app.kubernetes.io/component") or name)
    if kind == "DaemonSet" and "image-puller" in component:
        return "image puller runs on every node"
    if component in ("hub", "proxy"):
        return f"{component} pod restarts"
    return f"{kind} {name} pods restart"
