"""Where hubbot keeps what it can always make again from its inputs (never a secret):
the start-up check's JupyterHub environments and the preview copies of chart packages.

`$HUBBOT_CACHE_DIR`, else `$XDG_CACHE_HOME/hubbot`, else `~/.cache/hubbot`.

Each entry has a marker file, written when it is complete and touched when it is used.
An entry unused for UNUSED_DAYS is removed the next time its kind of entry is looked up:
a chart bump leaves the old version's JupyterHub environment (about 250 MB) behind.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from pathlib import Path

CACHE_ENV = "HUBBOT_CACHE_DIR"
UNUSED_DAYS = 30


def cache_root() -> Path:
    configured = os.environ.get(CACHE_ENV)
    if configured:
        return Path(configured)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "hubbot"


def look_up(entry: Path, marker: str, kind: str) -> bool:
    """Whether `entry` is complete (holds its `marker`). Notes its use if so, then removes
    the entries beside it matching `kind` that were unused for UNUSED_DAYS: never it."""
    complete = (entry / marker).is_file()
    if complete:
        used(entry / marker)
    prune(entry.parent, kind, marker)
    return complete


def used(marker: Path) -> None:
    """Note that the entry holding `marker` is used now."""
    with contextlib.suppress(OSError):  # a read-only cache still serves
        os.utime(marker)


def prune(directory: Path, pattern: str, marker: str) -> list[Path]:
    """Remove the entries of `directory` matching `pattern` whose `marker` was last used
    more than UNUSED_DAYS ago; the entries removed. An entry without its marker is left
    alone: it is being made, or it is not one of ours."""
    removed = []
    oldest = time.time() - UNUSED_DAYS * 24 * 3600
    for entry in sorted(directory.glob(pattern)):
        try:
            unused = (entry / marker).stat().st_mtime < oldest
        except OSError:
            continue
        if unused:
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
    return removed
