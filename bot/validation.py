"""Checking one hub and environment: schema, house policy, image tags.

Every problem is pinned to the file and line of the layer that set the
offending value, or of the nearest enclosing key when a value is missing.
Validation sees secrets only in shape-only form, so no message can hold one.
"""

from __future__ import annotations

from typing import Any

from bot.errors import HubbotError, Location
from bot.imagetag import reads_as_non_string
from bot.merge import effective
from bot.schemas import Violation, load_schema, violations
from bot.sops_format import SecretLeaf
from bot.source import Source
from bot.values import HubValues, layer_files
from bot.yamlfile import Path_

SAMPLE_FOR_SOPS_TYPE: dict[str, Any] = {"int": 0, "float": 0.0, "bool": False}


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
        found += violations(document, load_schema(source, name), title)
    problems = [
        HubbotError(v.message, _locate(values, v.path))
        for v in found
        # Without keys only a secret's type is known: its value constraints cannot be checked.
        if not (v.path in secret_paths and v.keyword != "type")
    ]
    problems += _tag_problems(values)
    return problems


def _checkable(node: Any, path: Path_ = ()) -> tuple[Any, set[Path_]]:
    """Replace secret leaves with a sample of their type, noting where they were."""
    if isinstance(node, SecretLeaf):
        return SAMPLE_FOR_SOPS_TYPE.get(node.sops_type, "secret"), {path}
    secrets: set[Path_] = set()
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for key, value in node.items():
            out[key], found = _checkable(value, (*path, key))
            secrets |= found
        return out, secrets
    if isinstance(node, list):
        items = []
        for index, value in enumerate(node):
            item, found = _checkable(value, (*path, index))
            items.append(item)
            secrets |= found
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
    """Image tags a layer set by hand must stay strings to every YAML reader."""
    problems = []
    for config in values.deployment.images:
        path = (*config.helm_path, "tag")
        origin = values.merged.winner(path)
        if origin is None:
            continue
        tag = origin.value
        if isinstance(tag, str) and reads_as_non_string(tag):
            problems.append(
                HubbotError(
                    f'image tag "{tag}" looks like a number to YAML: tools that re-read it '
                    "unquoted will break it; use a tag with a letter or dash",
                    Location(origin.file, origin.line),
                )
            )
    return problems
