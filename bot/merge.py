"""Merging value layers by helm's rules, recording which file and line set what.

Helm merges `-f` files in order: maps merge key by key, anything else (lists,
scalars, null) replaces. A null survives the merge and then deletes the key
from the chart's defaults, so the merged document keeps nulls: it is exactly
what helm would have built from the separate files.
"""

from __future__ import annotations

from collections.abc import Callable
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

    def origin(self, path: Path_, value: Any) -> Origin:
        """This layer's origin of `value`, set at `path`."""
        return Origin(
            self.file,
            self.lines.get(path),
            MAP if isinstance(value, dict) else value,
            self.secret,
            self.note,
        )


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
    """The merged document, and which layers set each path in it.

    Provenance is worked out per path when asked for: a command asks about a few
    paths (those with a problem), and recording every path of every pair up front was
    a fifth of `hubbot validate`.
    """

    document: dict[str, Any]
    layers: tuple[Layer, ...] = ()
    _chains: dict[Path_, tuple[Origin, ...]] = field(
        default_factory=dict, compare=False, repr=False
    )

    def chain(self, path: Path_) -> tuple[Origin, ...]:
        """The layers that set `path`, the winner last; empty if it is not in the document."""
        found = self._chains.get(path)
        if found is None:
            found = self._chains[path] = _chain(self.layers, path)
        return found

    @property
    def origins(self) -> dict[Path_, tuple[Origin, ...]]:
        """The chain of every path in the document (and no other)."""
        return {path: self.chain(path) for path in _paths(self.document, ())}

    def winner(self, path: Path_) -> Origin | None:
        chain = self.chain(path)
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
            chain = self.chain(path[:end])
            null = next((origin for origin in reversed(chain) if origin.value is None), None)
            if null is not None:
                return path[:end], null
        return None


def merge_layers(layers: list[Layer]) -> Merged:
    merged = Merged(document={}, layers=tuple(layers))
    owned = {id(merged.document)}
    for layer in layers:
        _merge_map(merged.document, layer.data, owned)
    return merged


def _merge_map(dest: dict[str, Any], src: dict[str, Any], owned: set[int]) -> None:
    """Merge `src` into `dest`. Values are shared with the layers, not copied: a map is
    copied only when a higher layer merges into it (`owned` holds the ids of the copies),
    so no layer's data is ever changed."""
    for key, value in src.items():
        current = dest.get(key)
        if isinstance(value, dict) and isinstance(current, dict):
            if id(current) not in owned:
                current = dest[key] = dict(current)
                owned.add(id(current))
            _merge_map(current, value, owned)
        else:
            dest[key] = value


_ABSENT = object()


def _chain(layers: tuple[Layer, ...], path: Path_) -> tuple[Origin, ...]:
    """The merge replayed along `path` alone.

    A layer reaching `path` through maps that merge into maps adds its origin to the
    chain. One that replaces a value on the way (anything but a map merging into a map)
    takes what was below with it: the chain starts again with its own setting, if it has
    one. Whether the merged value at each depth is a map decides which happens.
    """
    size = len(path)
    is_map = [True] + [False] * size  # at each depth of `path`, as merged so far
    chain: list[Origin] = []
    for layer in layers:
        node: Any = layer.data
        for depth, key in enumerate(path, 1):
            if key not in node:
                break  # this layer does not reach `path`
            node = node[key]
            if isinstance(node, dict) and is_map[depth]:
                if depth == size:
                    chain.append(layer.origin(path, node))
                continue
            if depth < size:
                chain.clear()
            for deeper in range(depth, size + 1):
                if deeper > depth:
                    node = _step(node, path[deeper - 1])
                is_map[deeper] = isinstance(node, dict)
            if node is not _ABSENT:
                chain.append(layer.origin(path, node))
            break
    return tuple(chain)


def _step(node: Any, key: str | int) -> Any:
    if isinstance(node, dict):
        return node.get(key, _ABSENT)
    if isinstance(node, list) and type(key) is int and 0 <= key < len(node):
        return node[key]
    return _ABSENT


def _paths(node: Any, path: Path_) -> list[Path_]:
    """Every path inside `node` (at `path`), enclosing paths first."""
    if isinstance(node, dict):
        items: Any = node.items()
    elif isinstance(node, list):
        items = enumerate(node)
    else:
        return []
    found = []
    for key, item in items:
        here = (*path, key)
        found.append(here)
        found += _paths(item, here)
    return found


def effective(document: Any) -> Any:
    """The document with null-deleted keys removed: what templates will see."""
    # Scalars are taken as they are, without a call each (most of a document is scalars).
    if isinstance(document, dict):
        return {
            k: effective(v) if isinstance(v, dict | list) else v
            for k, v in document.items()
            if v is not None
        }
    if isinstance(document, list):
        return [effective(v) if isinstance(v, dict | list) else v for v in document]
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
    return replace_secrets(merged, lambda _: MASK)


def replace_secrets(merged: Merged, replace: Callable[[Any], Any]) -> Any:
    """The merged document with `replace(value)` for every value a secrets layer set."""
    return _replace(merged.document, (), merged, replace)


def _replace(node: Any, path: Path_, merged: Merged, replace: Callable[[Any], Any]) -> Any:
    origin = merged.winner(path) if path else None
    if origin is not None and origin.secret and not isinstance(node, dict | list):
        return replace(node)
    if isinstance(node, dict):
        return {key: _replace(value, (*path, key), merged, replace) for key, value in node.items()}
    if isinstance(node, list):
        return [_replace(value, (*path, i), merged, replace) for i, value in enumerate(node)]
    return node
