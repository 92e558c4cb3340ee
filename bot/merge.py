"""Merging value layers by helm's rules, recording which file and line set what.

Helm merges `-f` files in order: maps merge key by key, anything else (lists,
scalars, null) replaces. A null survives the merge and then deletes the key
from the chart's defaults, so the merged document keeps nulls: it is exactly
what helm would have built from the separate files.
"""

from __future__ import annotations

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
    # Per path: the origins this layer records for the value there and everything below it.
    # A layer (hub/values.yaml, a common.yaml) is merged into many pairs: made once.
    recorded: dict[Path_, list[tuple[Path_, Origin]]] = field(
        default_factory=dict, compare=False, repr=False
    )

    def records(self, path: Path_, value: Any) -> list[tuple[Path_, Origin]]:
        """(path, origin) for `value`, set at `path`, and every value below it."""
        found = self.recorded.get(path)
        if found is None:
            found = self.recorded[path] = []
            _record(value, path, self, found)
        return found

    def origin(self, path: Path_, value: Any) -> Origin:
        """This layer's origin of `value`, set at `path`."""
        found = self.recorded.get(path)
        if found is not None:
            return found[0][1]
        return _origin(self, path, MAP if isinstance(value, dict) else value)


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
    owned = {id(merged.document)}
    for layer in layers:
        _merge_map(merged.document, layer.data, (), layer, merged.origins, owned)
    return merged


def _merge_map(
    dest: dict[str, Any],
    src: dict[str, Any],
    path: Path_,
    layer: Layer,
    origins: dict[Path_, list[Origin]],
    owned: set[int],
) -> None:
    """Merge `src` into `dest`. Values are shared with the layers, not copied: a map is
    copied only when a higher layer merges into it (`owned` holds the ids of the copies),
    so no layer's data is ever changed."""
    for key, value in src.items():
        here = (*path, key)
        current = dest.get(key)
        if isinstance(value, dict) and isinstance(current, dict):
            origins.setdefault(here, []).append(layer.origin(here, value))
            if id(current) not in owned:
                current = dest[key] = dict(current)
                owned.add(id(current))
            _merge_map(current, value, here, layer, origins, owned)
            continue
        if key in dest:
            _forget_below(here, current, origins)
        dest[key] = value
        for below, origin in layer.records(here, value):
            origins.setdefault(below, []).append(origin)


def _record(value: Any, path: Path_, layer: Layer, out: list[tuple[Path_, Origin]]) -> None:
    out.append((path, _origin(layer, path, MAP if isinstance(value, dict) else value)))
    if isinstance(value, dict):
        for key, item in value.items():
            _record(item, (*path, key), layer, out)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _record(item, (*path, index), layer, out)


def _origin(layer: Layer, path: Path_, value: Any) -> Origin:
    return Origin(layer.file, layer.lines.get(path), value, layer.secret, layer.note)


def _forget_below(path: Path_, replaced: Any, origins: dict[Path_, list[Origin]]) -> None:
    """A replaced value takes its descendants with it: the paths inside the value replaced
    are all the origins below `path` there can be."""
    if isinstance(replaced, dict):
        items: Any = replaced.items()
    elif isinstance(replaced, list):
        items = enumerate(replaced)
    else:
        return
    for key, item in items:
        below = (*path, key)
        origins.pop(below, None)
        _forget_below(below, item, origins)


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
