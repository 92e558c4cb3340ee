"""Checking one hub and environment: schema, house policy, image tags.

Every problem is pinned to the file and line of the layer that set the
offending value, or of the nearest enclosing key when a value is missing.
Validation sees secrets only in shape-only form, so no message can hold one.
"""

from __future__ import annotations

from typing import Any

from bot.errors import HubbotError, Location
from bot.imagetag import reads_as_non_string
from bot.manifests import RESIZE_REFUSED
from bot.merge import effective
from bot.schemas import Violation, load_validator, violations
from bot.sops_format import SecretLeaf
from bot.source import Source
from bot.values import HubValues, layer_files
from bot.yamlfile import Path_

SAMPLE_FOR_SOPS_TYPE: dict[str, Any] = {"int": 0, "float": 0.0, "bool": False}
MOVING_TAGS = frozenset({"latest", "main", "master", "stable", "edge"})


def check(source: Source, values: HubValues) -> list[HubbotError]:
    """Every problem with `values` (built without decryption)."""
    if values.decrypted:
        raise ValueError("validation must run on shape-only values, never on decrypted ones")
    document, secret_paths = _checkable(effective(values.document))
    schemas = [("values", "values schema"), ("policy", "house policy")]
    if values.env == "prod":
        schemas.append(("policy-prod", "prod policy"))
    found: list[Violation] = []
    for name, title in schemas:
        found += violations(document, load_validator(source, name), title)
    problems = []
    for v in found:
        if v.path in secret_paths:
            # Without keys only a secret's type is known: its value constraints cannot be checked.
            if v.keyword != "type":
                continue
            message = (
                f"`{'.'.join(str(p) for p in v.path)}` is encrypted as sops type "
                f"{secret_paths[v.path]}, which the schema does not allow here"
            )
            problems.append(HubbotError(message, _locate(values, v.path)))
        else:
            problems.append(HubbotError(v.message, _locate(values, v.path)))
    problems += _tag_problems(values)
    return problems


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


def _checkable(node: Any, path: Path_ = ()) -> tuple[Any, dict[Path_, str]]:
    """Replace secret leaves with a sample of their type, noting where they were."""
    if isinstance(node, SecretLeaf):
        return SAMPLE_FOR_SOPS_TYPE.get(node.sops_type, "secret"), {path: node.sops_type}
    secrets: dict[Path_, str] = {}
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for key, value in node.items():
            out[key], found = _checkable(value, (*path, key))
            secrets.update(found)
        return out, secrets
    if isinstance(node, list):
        items = []
        for index, value in enumerate(node):
            item, found = _checkable(value, (*path, index))
            items.append(item)
            secrets.update(found)
        return items, secrets
    return node, secrets


def _locate(values: HubValues, path: Path_) -> Location:
    found = values.merged.nearest(path)
    if found is None:
        # No layer sets anything on the way: point at the environment's own file.
        return Location(layer_files(values.hub, values.env)[2])
    _, origin = found
    return Location(origin.file, origin.line)


def _tag_problems(values: HubValues) -> list[HubbotError]:
    """Image tags: computed ones are not set by hand; others stay strings, pinned in prod."""
    problems = []
    managed = {
        (*config.helm_path, key): config
        for config in values.deployment.images
        for key in ("name", "tag")
    }
    for managed_path, config in managed.items():
        for setting in values.merged.origins.get(managed_path, []):
            if setting.note is None:
                problems.append(
                    HubbotError(
                        f"{'.'.join(map(str, managed_path))} is set by hubbot from the content "
                        f"of {config.path} ({config.location}): remove it from this file",
                        Location(setting.file, setting.line),
                    )
                )
    for path, tag in _image_tags(effective(values.document)):
        origin = values.merged.winner(path)
        if origin is None or path in managed:
            continue
        where = Location(origin.file, origin.line)
        if isinstance(tag, str) and reads_as_non_string(tag):
            problems.append(
                HubbotError(
                    f'image tag "{tag}" looks like a number to YAML: tools that re-read it '
                    "unquoted will break it; use a tag with a letter or dash",
                    where,
                )
            )
        elif values.env == "prod" and tag in MOVING_TAGS:
            problems.append(
                HubbotError(f'image tag "{tag}" moves: prod must run a pinned image tag', where)
            )
    return problems


def _image_tags(node: Any, path: Path_ = ()) -> list[tuple[Path_, Any]]:
    """Every `image: {tag: ...}` in the values (the z2jh convention for images)."""
    found: list[tuple[Path_, Any]] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "image" and isinstance(value, dict) and "tag" in value:
                found.append(((*path, key, "tag"), value["tag"]))
            found += _image_tags(value, (*path, key))
    return found
