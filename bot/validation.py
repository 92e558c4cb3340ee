"""Checking one hub and environment: the chart's own schema, house schema and policy,
isolation, image tags.

The house schemas are the tree's own and, for a pull request, also its base's. A
pair's release, namespace and URL must be its own.

Every problem is pinned to the file and line of the layer that set the
offending value, or of the nearest enclosing key when a value is missing.
Validation sees secrets only in shape-only form, so no message can hold one.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from bot.chartschema import (
    chart_values,
    contract,
    kube_version_problem,
    limit_problems,
    schema_violations,
)
from bot.errors import HubbotError, Location
from bot.hubploy import clashes, kubeconfig_path
from bot.imagetag import reads_as_non_string
from bot.manifests import RESIZE_REFUSED
from bot.merge import Origin, effective
from bot.schemas import SCHEMA_DIR, Checker, Violation, load_checker
from bot.sops_format import SecretLeaf
from bot.source import Source
from bot.values import CHART_VALUES, HubValues
from bot.yamlfile import Path_

SAMPLE_FOR_SOPS_TYPE: dict[str, Any] = {"int": 0, "float": 0.0, "bool": False}
MOVING_TAGS = frozenset({"latest", "main", "master", "stable", "edge"})
# Constraints on a value itself, which a secret's ciphertext hides without keys.
VALUE_KEYWORDS = frozenset(
    {"pattern", "format", "minLength", "maxLength", "enum", "const", "not", "minimum",
     "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"}
)


def check(source: Source, values: HubValues, trusted: Source | None = None) -> list[HubbotError]:
    """Every problem with `values` (built without decryption).

    With `trusted` (a pull request's base), the values and hubploy.yaml must also
    pass the schemas there: a change cannot loosen the policy it is judged by.
    """
    if values.decrypted:
        raise ValueError("validation must run on shape-only values, never on decrypted ones")
    # Nulls stay until the chart's defaults are coalesced: there they delete a default.
    with_nulls, secret_paths = _checkable(values)
    document = effective(with_nulls)
    schemas = [("values", "values schema"), ("policy", "house policy")]
    if values.env == "prod":
        schemas.append(("policy-prod", "prod policy"))
    found: list[Violation] = []
    trusted_found: list[tuple[Violation, str, Source]] = []
    for name, title in schemas:
        found += load_checker(source, name).violations(document, title)
        checker = None if trusted is None else _checker(trusted, name)
        if checker is not None and trusted is not None:
            trusted_found += [(v, name, trusted) for v in checker.violations(document, title)]
    problems = []
    try:
        problems += _chart_problems(source, values, with_nulls, secret_paths, found)
    except HubbotError as exc:
        problems.append(exc)
    seen: set[tuple[Path_, str]] = set()
    deletions: dict[tuple[Path_, Origin], list[Violation]] = {}
    for v in found:
        if (v.path, v.message) not in seen and not _unknowable(v, secret_paths):
            seen.add((v.path, v.message))
            deleted = _deleted_by(values, v)
            if deleted is not None:
                deletions.setdefault(deleted, []).append(v)
            else:
                problems.append(_problem(values, v, secret_paths))
    problems += [_deletion_problem(*deleted, vs) for deleted, vs in deletions.items()]
    for v, name, base in trusted_found:
        if (v.path, v.message) not in seen and not _unknowable(v, secret_paths):
            seen.add((v.path, v.message))
            problems.append(_by_trusted(_problem(values, v, secret_paths), base, name))
    if trusted is not None:
        problems += _trusted_hubploy_problems(values, trusted)
    problems += clashes(source).get((values.hub, values.env), [])
    problems += _input_problems(source, values)
    problems += _tag_problems(values, document)
    # The house and the chart schema may say the same of one secret: say it once.
    unique = {(str(p.location), p.message): p for p in problems}
    return list(unique.values())


def _chart_problems(
    source: Source,
    values: HubValues,
    document: dict[str, Any],
    secret_paths: dict[Path_, str],
    found: list[Violation],
) -> list[HubbotError]:
    """The jupyterhub chart's own schema and kubeVersion, and limits Kubernetes enforces.

    Adds the schema's violations to `found`; returns the other problems.
    """
    chart = contract(source)
    if chart is None:
        return []
    problems = []
    kube = kube_version_problem(chart, values.deployment)
    if kube is not None:
        problems.append(kube)
    parent = next(layer.data for layer in values.layers if layer.file == CHART_VALUES)
    chart_document = chart_values(chart, parent, document)
    if chart_document is not None:
        # Where the house schema already explains a value, the chart's word is noise.
        explained = {v.path for v in found}
        found += [v for v in schema_violations(chart, chart_document) if v.path not in explained]
        problems += limit_problems(chart, chart_document, values, set(secret_paths))
    return problems


def _checker(trusted: Source, name: str) -> Checker | None:
    """The trusted side's checker; None for a schema it does not have yet."""
    if trusted.read(f"{SCHEMA_DIR}/{name}.schema.yaml") is None:
        return None
    return load_checker(trusted, name)


def _unknowable(v: Violation, secret_paths: dict[Path_, str]) -> bool:
    """Without keys a secret's value is unknown: only its value constraints go unchecked.

    Its type (from sops) and its key are known, so an unknown key is still an error.
    """
    return v.path in secret_paths and v.keyword in VALUE_KEYWORDS


def _problem(values: HubValues, v: Violation, secret_paths: dict[Path_, str]) -> HubbotError:
    if v.path in secret_paths and v.keyword == "type":
        message = (
            f"`{'.'.join(str(p) for p in v.path)}` is encrypted as sops type "
            f"{secret_paths[v.path]}, which the schema does not allow here"
        )
        return HubbotError(message, _locate(values, v.path))
    return HubbotError(v.message, _locate(values, v.path, v.missing))


def _deleted_by(values: HubValues, v: Violation) -> tuple[Path_, Origin] | None:
    """For a missing required key: the null (in this key or one enclosing it) that deleted it."""
    if v.keyword != "required" or v.missing is None:
        return None
    return values.merged.deleted_by((*v.path, v.missing))


def _deletion_problem(path: Path_, null: Origin, found: list[Violation]) -> HubbotError:
    """One message for everything a null took that a schema requires."""
    keys = [f"`{_dotted((*v.path, v.missing or ''))}`" for v in found]
    titles = list(dict.fromkeys(_judge(v.title) for v in found))
    judges = " and the ".join(titles) + (" requires" if len(titles) == 1 else " require")
    if len(keys) == 1:
        what = f"{keys[0]}, which the {judges}: remove the null, or set it"
    else:
        what = f"{len(keys)} keys the {judges} ({', '.join(keys)}): remove the null, or set them"
    return HubbotError(f"`{_dotted(path)}: null` deletes {what}", Location(null.file, null.line))


def _judge(title: str) -> str:
    return title if title.endswith(("schema", "policy")) else f"{title} schema"


def _dotted(path: Path_) -> str:
    return ".".join(str(part) for part in path)


def _by_trusted(problem: HubbotError, trusted: Source, name: str) -> HubbotError:
    return HubbotError(
        f"{problem.message}; so says {SCHEMA_DIR}/{name}.schema.yaml at {trusted.label}, the "
        "base this change is also checked against",
        problem.location,
    )


def _trusted_hubploy_problems(values: HubValues, trusted: Source) -> list[HubbotError]:
    checker = _checker(trusted, "hubploy")
    doc = values.deployment.doc
    found = checker.violations(doc.data, "hubploy.yaml") if checker else []
    return [
        _by_trusted(HubbotError(v.message, Location(doc.file, doc.line_of(v.path) or 1)),
                    trusted, "hubploy")
        for v in found
    ]


def _input_problems(source: Source, values: HubValues) -> list[HubbotError]:
    """Inputs read only at deploy time, checked now: the kubeconfig must not be a link."""
    file = kubeconfig_path(values.deployment)
    try:
        if file is not None:
            source.read(file)
    except HubbotError as exc:
        return [exc]
    return []


HOME_CAPACITY = ("homeStorage", "capacity")


def resize_problems(base: HubValues, values: HubValues) -> list[HubbotError]:
    """A new homeStorage.capacity for the static EFS volume (hub/templates/home-storage.yaml).

    Kubernetes refuses the resize at upgrade time, after the merge; compared with
    the base ref, the pull request fails instead. EFS grows by itself: the
    capacity is only a label, so keeping it loses nothing.
    """
    old, new = effective(base.document), effective(values.document)
    sizes = [(doc.get("homeStorage") or {}) for doc in (old, new)]
    if not all(size.get("enabled") for size in sizes):
        return []
    before, after = (size.get("capacity") for size in sizes)
    if before == after:
        return []
    origin = values.merged.winner(HOME_CAPACITY)
    where = Location(origin.file, origin.line) if origin else _locate(values, HOME_CAPACITY)
    volume = f"PersistentVolume {values.environment.release}-home"
    return [
        HubbotError(
            f"{RESIZE_REFUSED} ({volume}: {before} -> {after}): keep homeStorage.capacity at "
            f"{before} (EFS grows by itself; the capacity is only a label)",
            where,
        )
    ]


def _checkable(values: HubValues) -> tuple[Any, dict[Path_, str]]:
    """The document with secret leaves replaced by a sample of their type, and where they
    were. Only the secrets layers hold them: the paths they set are copied, not the rest."""
    document: Any = values.document
    secrets: dict[Path_, str] = {}
    for layer in values.layers:
        if not layer.secret:
            continue
        for path, leaf in _secret_leaves(layer.data, ()):
            if _at(document, path) is leaf:  # not replaced by a higher layer
                secrets[path] = leaf.sops_type
    for path, sops_type in secrets.items():
        document = _replaced(document, path, SAMPLE_FOR_SOPS_TYPE.get(sops_type, "secret"))
    return document, secrets


def _secret_leaves(node: Any, path: Path_) -> Iterator[tuple[Path_, SecretLeaf]]:
    if isinstance(node, SecretLeaf):
        yield path, node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield from _secret_leaves(value, (*path, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _secret_leaves(value, (*path, index))


def _at(node: Any, path: Path_) -> Any:
    for step in path:
        in_list = isinstance(node, list) and isinstance(step, int) and step < len(node)
        if not (in_list or (isinstance(node, dict) and step in node)):
            return None
        node = node[step]
    return node


def _replaced(node: Any, path: Path_, value: Any) -> Any:
    """A copy of `node` with `value` at `path` (which exists), sharing everything else."""
    if not path:
        return value
    copy: Any = dict(node) if isinstance(node, dict) else list(node)
    copy[path[0]] = _replaced(node[path[0]], path[1:], value)
    return copy


def _locate(values: HubValues, path: Path_, missing: str | None = None) -> Location:
    if missing is not None:
        # A required key a layer deleted with null: point at that null.
        deleted = values.merged.deleted_by((*path, missing))
        if deleted is not None:
            return Location(deleted[1].file, deleted[1].line)
    return values.location(path)


def _tag_problems(values: HubValues, document: dict[str, Any]) -> list[HubbotError]:
    """Image tags: computed ones are not set by hand; others stay strings, pinned in prod.

    `document` is the effective values, secrets replaced by a sample of their type (which
    no check of a tag can take for a problem).
    """
    problems = []
    managed = {
        (*config.helm_path, key): config
        for config in values.deployment.images
        for key in ("name", "tag")
    }
    for managed_path, config in managed.items():
        for setting in values.merged.chain(managed_path):
            if setting.note is None:
                problems.append(
                    HubbotError(
                        f"{'.'.join(map(str, managed_path))} is set by hubbot from the content "
                        f"of {config.path} ({config.location}): remove it from this file",
                        Location(setting.file, setting.line),
                    )
                )
    tags: list[tuple[Path_, Any]] = []
    _image_tags(document, (), tags)
    for path, tag in tags:
        if path in managed:
            continue
        if isinstance(tag, str) and reads_as_non_string(tag):
            message = (
                f'image tag "{tag}" looks like a number to YAML: tools that re-read it '
                "unquoted will break it; use a tag with a letter or dash"
            )
        elif values.env == "prod" and tag in MOVING_TAGS:
            message = f'image tag "{tag}" moves: prod must run a pinned image tag'
        else:
            continue
        origin = values.merged.winner(path)
        if origin is not None:
            problems.append(HubbotError(message, Location(origin.file, origin.line)))
    return problems


def _image_tags(node: dict[str, Any], path: Path_, found: list[tuple[Path_, Any]]) -> None:
    """Every `image: {tag: ...}` in the values (the z2jh convention for images)."""
    for key, value in node.items():
        if isinstance(value, dict):
            if key == "image" and "tag" in value:
                found.append(((*path, key, "tag"), value["tag"]))
            _image_tags(value, (*path, key), found)
