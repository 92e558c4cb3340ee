"""bot/cachedir.py: entries unused for UNUSED_DAYS are removed; the rest are left alone."""

from __future__ import annotations

import os
import time
from pathlib import Path

from bot.cachedir import UNUSED_DAYS, prune, used

MARKER = ".complete"


def entry(root: Path, name: str, days_unused: float | None) -> Path:
    """An entry; with its marker last used `days_unused` ago (None: no marker yet)."""
    path = root / name
    (path / "bin").mkdir(parents=True)
    (path / "bin" / "python").write_text("")
    if days_unused is not None:
        (path / MARKER).write_text("")
        then = time.time() - days_unused * 24 * 3600
        os.utime(path / MARKER, (then, then))
    return path


def test_only_entries_unused_too_long_are_removed(tmp_path: Path) -> None:
    old = entry(tmp_path, "jupyterhub-4.2.0-aaaa", UNUSED_DAYS + 1)
    recent = entry(tmp_path, "jupyterhub-4.4.0-bbbb", UNUSED_DAYS - 1)
    being_made = entry(tmp_path, "jupyterhub-4.5.0-cccc", None)
    other_kind = entry(tmp_path, "preview-charts", UNUSED_DAYS + 1)
    assert prune(tmp_path, "jupyterhub-*", MARKER) == [old]
    assert not old.exists()
    assert all(path.is_dir() for path in (recent, being_made, other_kind))


def test_an_entry_used_now_is_kept(tmp_path: Path) -> None:
    old = entry(tmp_path, "jupyterhub-4.2.0-aaaa", UNUSED_DAYS + 1)
    used(old / MARKER)
    assert prune(tmp_path, "jupyterhub-*", MARKER) == []
    used(tmp_path / "absent" / MARKER)  # nothing to note: no error either


def test_a_link_in_an_entry_is_removed_not_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "kept.txt").write_text("not the cache's")
    old = entry(tmp_path / "cache", "jupyterhub-4.2.0-aaaa", UNUSED_DAYS + 1)
    (old / "lib").symlink_to(outside)
    assert prune(tmp_path / "cache", "jupyterhub-*", MARKER) == [old]
    assert (outside / "kept.txt").read_text() == "not the cache's"
