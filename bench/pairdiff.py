"""One pair's manifest diff between HEAD~1 and HEAD, as a process of its own: what the
bench times against two bare `helm template` runs. It imports what the diff needs and
nothing of the bench's own, whose imports are no part of a diff's cost, and runs as a
hubbot command's process does (bot/main.py: its collector settings).

    python -m bench.pairdiff REPO HUB ENV   (prints how many resources changed)
"""

from __future__ import annotations

import sys
from pathlib import Path

from bot.main import fewer_collections
from bot.manifests import pair_manifest_diff
from bot.source import open_source
from bot.values import build


def changed(repo: Path, hub: str, env: str) -> int:
    base, head = open_source(repo, "HEAD~1"), open_source(repo, "HEAD")
    old, new = build(base, hub, env), build(head, hub, env)
    return len(pair_manifest_diff(base, head, old, new, str).changed)


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit("usage: python -m bench.pairdiff REPO HUB ENV")
    fewer_collections()
    print(changed(Path(sys.argv[1]), sys.argv[2], sys.argv[3]))
