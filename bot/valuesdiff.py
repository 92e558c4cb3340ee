"""The effective-values diff of one hub and environment between two refs.

Each row is one key whose merged value changed: its old and new value and the
layer (file:line) that set the new one. A key changed in a lower layer but
decided by a higher one is listed apart, as having no effect. Secret values are
never held here: a secret row only says added, removed or changed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from bot.merge import Layer, Merged, Origin
from bot.sops_format import SecretLeaf
from bot.values import HubValues
from bot.yamlfile import Path_

MASKED = "<secret>"
ABSENT = object()


@dataclass(frozen=True)
class Row:
    """One key whose merged value changed. `old`/`new` are display text, None when absent."""

    path: str
    old: str | None
    new: str | None
    layer: str  # file:line that set the new value (the old one when the key was removed)
    secret: bool = False
    note: str | None = None  # how a computed layer got its value
    # When `layer` removed its override: the file:line whose value applies now.
    decided_by: str | None = None

    @property
    def change(self) -> str:
        if self.old is None:
            return "added"
        if self.new is None:
            return "removed"
        return "changed"


@dataclass(frozen=True)
class Overridden:
    """A change in one layer that a higher layer decides: it has no effect."""

    path: str
    file: str  # the layer file that changed (file:line)
    old: str | None
    new: str | None
    by: str  # file:line of the layer whose value wins


@dataclass(frozen=True)
class ValuesDiff:
    hub: str
    env: str
    rows: tuple[Row, ...]
    overridden: tuple[Overridden, ...]
    changed_files: tuple[str, ...]  # layer files whose text differs between the refs
    # Secrets files whose text changed while read without keys: values may have changed.
    secret_files_changed: tuple[str, ...]
    decrypted: bool

    @property
    def empty(self) -> bool:
        return not (self.rows or self.secret_files_changed)

    def files_with_effect(self) -> set[str]:
        return {row.layer.rsplit(":", 1)[0] for row in self.rows}


def unchanged(hub: str, env: str) -> ValuesDiff:
    """The diff of a pair whose every value input is identical at both refs."""
    return ValuesDiff(hub, env, (), (), (), (), decrypted=False)


def dotted(path: Path_) -> str:
    """`a.b.c`, quoting keys that hold a dot (like `hub.jupyter.org/x`)."""
    return ".".join(
        json.dumps(part) if isinstance(part, str) and ("." in part or not part) else str(part)
        for part in path
    )


def show(value: Any) -> str:
    """A value as one line of JSON, so `"true"` and `true` read differently."""
    return json.dumps(value, sort_keys=True, default=str)


def diff_values(base: HubValues | None, head: HubValues | None) -> ValuesDiff:
    """The rows for one pair; a side is None when the pair does not exist at that ref."""
    some = head if head is not None else base
    assert some is not None, "a pair exists at one ref at least"
    old_leaves = _leaves(base.merged.document) if base else {}
    new_leaves = _leaves(head.merged.document) if head else {}
    old_layers = {layer.file: layer for layer in base.layers} if base else {}
    new_layers = {layer.file: layer for layer in head.layers} if head else {}
    changed_files = tuple(
        file
        for file in dict.fromkeys([*old_layers, *new_layers])
        if _layer_text_key(old_layers.get(file)) != _layer_text_key(new_layers.get(file))
    )
    decrypted = bool((base is None or base.decrypted) and (head is None or head.decrypted))
    rows = []
    for path in sorted(set(old_leaves) | set(new_leaves), key=_sort_key):
        old = old_leaves.get(path, ABSENT)
        new = new_leaves.get(path, ABSENT)
        old_origin = base.merged.winner(path) if base else None
        new_origin = head.merged.winner(path) if head else None
        secret = bool((old_origin and old_origin.secret) or (new_origin and new_origin.secret))
        if not _differs(old, new, secret, decrypted):
            continue
        side = head if new is not ABSENT else base
        assert side is not None
        origin = new_origin if new is not ABSENT else old_origin
        layer, decided_by = _where(side.merged, path), None
        if (
            new is not ABSENT
            and old_origin is not None
            and new_origin is not None
            and old_origin.file != new_origin.file
            and not _sets(new_layers.get(old_origin.file), path)
        ):
            # The layer that decided it dropped its override: that is the change.
            layer, decided_by = _at_origin(old_origin), layer
        rows.append(
            Row(
                dotted(path),
                _display(old, secret),
                _display(new, secret),
                layer,
                secret,
                origin.note if origin else None,
                decided_by,
            )
        )
    secret_files = tuple(
        file
        for file in changed_files
        if not decrypted and file in old_layers and file in new_layers and new_layers[file].secret
    )
    return ValuesDiff(
        some.hub,
        some.env,
        tuple(rows),
        _overridden(base, head, old_leaves, new_leaves),
        changed_files,
        secret_files,
        decrypted,
    )


def _sets(layer: Layer | None, path: Path_) -> bool:
    """Whether `layer` sets a value at `path`."""
    node: Any = None if layer is None else layer.data
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return False
        node = node[key]
    return True


def _at_origin(origin: Origin) -> str:
    return f"{origin.file}:{origin.line}" if origin.line is not None else origin.file


def _layer_text_key(layer: Layer | None) -> Any:
    """What identifies a layer's content: its data (secret leaves carry a ciphertext hash)."""
    if layer is None:
        return None
    return json.dumps(layer.data, sort_keys=True, default=repr)


def _differs(old: Any, new: Any, secret: bool, decrypted: bool) -> bool:
    if old is ABSENT or new is ABSENT:
        return old is not new
    if secret and not decrypted and isinstance(old, SecretLeaf) and isinstance(new, SecretLeaf):
        # Every re-encryption changes the ciphertext, so without keys only a changed
        # type is known to be a change; the file-level note covers the rest.
        return old.sops_type != new.sops_type
    return bool(show(old) != show(new))


def _display(value: Any, secret: bool) -> str | None:
    if value is ABSENT:
        return None
    return MASKED if secret else show(value)


def _where(merged: Merged, path: Path_) -> str:
    found = merged.nearest(path)
    if found is None:
        return "?"
    origin = found[1]
    return f"{origin.file}:{origin.line}" if origin.line is not None else origin.file


def _overridden(
    base: HubValues | None,
    head: HubValues | None,
    old_leaves: dict[Path_, Any],
    new_leaves: dict[Path_, Any],
) -> tuple[Overridden, ...]:
    """Keys changed in a layer that a higher layer decides at head."""
    if base is None or head is None:
        return ()
    old_layers = {layer.file: layer for layer in base.layers}
    found = []
    for layer in head.layers:
        before = old_layers.get(layer.file)
        if before is None:
            continue
        mine_old = _leaves(before.data)
        mine_new = _leaves(layer.data)
        for path in sorted(set(mine_old) | set(mine_new), key=_sort_key):
            old = mine_old.get(path, ABSENT)
            new = mine_new.get(path, ABSENT)
            if not _differs(old, new, layer.secret, head.decrypted and base.decrypted):
                continue
            if new is ABSENT:
                # A removed key has no effect when the merged value stays the same.
                if show(old_leaves.get(path)) != show(new_leaves.get(path)):
                    continue
                if path not in new_leaves:
                    continue
            winner = head.merged.nearest(path)
            if winner is None or winner[1].file == layer.file:
                continue
            found.append(
                Overridden(
                    dotted(path),
                    _at(layer, before, path),
                    _display(old, layer.secret),
                    _display(new, layer.secret),
                    _where(head.merged, path),
                )
            )
    return tuple(found)


def _at(layer: Layer, before: Layer, path: Path_) -> str:
    line = layer.lines.get(path) or before.lines.get(path)
    return f"{layer.file}:{line}" if line is not None else layer.file


def _leaves(node: Any, path: Path_ = ()) -> dict[Path_, Any]:
    """Every leaf by path; a list or an empty map is one leaf."""
    if isinstance(node, dict) and node:
        out: dict[Path_, Any] = {}
        for key, value in node.items():
            out.update(_leaves(value, (*path, key)))
        return out
    return {path: node} if path else {}


def _sort_key(path: Path_) -> tuple[str, ...]:
    return tuple(str(part) for part in path)
