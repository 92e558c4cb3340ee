"""Where hubbot keeps what it can always make again from its inputs (never a secret):
the start-up check's JupyterHub environments and the preview copies of chart packages.

`$HUBBOT_CACHE_DIR`, else `$XDG_CACHE_HOME/hubbot`, else `~/.cache/hubbot`.
"""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "HUBBOT_CACHE_DIR"


def cache_root() -> Path:
    configured = os.environ.get(CACHE_ENV)
    if configured:
        return Path(configured)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "hubbot"
