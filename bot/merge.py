"""Merging value layers by helm's rules, recording which file and line set what.

Helm merges `-f` files in order: maps merge key by key, anything else (lists,
scalars, null) replaces. A null survives the merge and then deletes the key
from the chart's defaults, so the merged document keeps nulls: it is exactly
what helm would have built from the separate files.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from bot.yamlfile import Path_

# What reviewers and logs see in place of a value a secrets layer set.
MASK = "<secret>"


@dataclass(frozen=True)
class Layer:
    """One source of values, lowest precedence first in a stack."""

    file: str
    data: dict[str, Any]
    lines: dict[Path_, int]
    secret: bool = False
    note: str | None = None  # how a computed layer got its values


@dataclass(frozen=True)
class Origin:
    """One layer's setting of one path."""

    file: str
    line: int | None
    value: Any  # the value set (a map is recorded as MAP)
    secret: bool = False
    note: str | None = None


MAP = "<map>"


@dataclass
class Merged:
    document: dict[str, Any]
    # For every path any surviving layer set: the layers that set it, the winner last.
    origins: dict[Path_, list[Origin]] = field(default_factory=dict)

    def winner(self, path: Path_) -> Origin | None:
        chain = self.origins.get(path)
        return chain[-1] if chain else None

    def nearest(self, path: Path_) -> tuple[Path_, Origin] | None:
        """The origin of `path` or of its nearest enclosing path that has one."""
        for end in range(len(path), 0, -1):
            origin = self.winner(path[:end])
            if origin is not None:
                return path[:end], origin
        return None

    def deleted_by(self, path: Path_) -> tuple[Path_, Origin] | None:
        """The null that deleted `path` or a key enclosing it, and where that null is.

        A later layer may set keys under a deleted one again: the null still took the rest.
        """
        for end in range(len(path), 0, -1):
            chain = self.origins.get(path[:end], [])
            null = next((origin for origin in reversed(chain) if origin.value is None), None)
            if null is not None:
                return path[:end], null
        return None


def merge_layers(layers: list[Layer]) -> Merged:
    merged = Merged(document={})
    for layer in layers:
        _merge_map(merged.document, layer.data, (), layer, merged.origins)
    return merged


def _merge_map(
    dest: dict[str, Any],
    src: dict[str, Any],
    path: Path_,
    layer: Layer,
    origins: dict[Path_, list[Origin]],
) -> None:
    for key, value in src.items():
        here = (*path, key)
        if isinstance(value, dict) and isinstance(dest.get(key), dict):
            origins.setdefault(here, []).append(_origin(layer, here, MAP))
            _merge_map(dest[key], value, here, layer, origins)
            continue
        if key in dest:
            _forget_below(here, origins)
        dest[key] = copy.deepcopy(value)
        _record(value, here, layer, origins)


def _record(value: Any, path: Path_, layer: Layer, origins: dict[Path_, list[Origin]]) -> None:
    origins.setdefault(path, []).append(
        _origin(layer, path, MAP if isinstance(value, dict) else value)
    )
    if isinstance(value, dict):
        for key, item in value.items():
            _record(item, (*path, key), layer, origins)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _record(item, (*path, index), layer, origins)


def _origin(layer: Layer, path: Path_, value: Any) -> Origin:
    return Origin(layer.file, layer.lines.get(path), value, layer.secret, layer.note)


def _forget_below(path: Path_, origins: dict[Path_, list[Origin]]) -> None:
    """A replaced value takes its descendants with it."""
    depth = len(path)
    for stale in [p for p in origins if len(p) > depth and p[:depth] == path]:
        del origins[stale]


def effective(document: Any) -> Any:
    """The document with null-deleted keys removed: what templates will see."""
    if isinstance(document, dict):
        return {k: effective(v) for k, v in document.items() if v is not None}
    if isinstance(document, list):
        return [effective(v) for v in document]
    return document


def set_path(data: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    """A nested mapping holding `value` at `path` (for computed layers)."""
    node = data
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node[path[-1]] = value
    return data


def masked(merged: Merged) -> Any:
    """The merged document with every value a secrets layer set replaced by MASK."""
    return _mask(merged.document, (), merged)


def _mask(node: Any, path: Path_, merged: Merged) -> Any:
    origin = merged.winner(path) if path else None
    if origin is not None and origin.secret and not isinstance(node, dict | list):
        return MASK
    if isinstance(node, dict):
        return {key: _mask(value, (*path, key), merged) for key, value in node.items()}
    if isinstance(node, list):
        return [_mask(value, (*path, index), merged) for index, value in enumerate(node)]
    return node
