"""How long hubbot takes, as users run it: a new process per command.

Each command runs several times as a subprocess (so interpreter start-up and
imports count, as they do in CI), and reports min, median and max wall-clock
seconds, and the median CPU seconds the process used (wall time on a shared
machine also measures the neighbours).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from bot.manifests import pair_manifest_diff
from bot.plan import plan as plan_of
from bot.source import open_source
from bot.values import build

HUBBOT = str(Path(sys.executable).parent / "hubbot")
FILLER_COMMITS = 1000


@dataclass(frozen=True)
class Timing:
    wall: tuple[float, ...]
    cpu: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.wall)

    @property
    def cpu_median(self) -> float:
        return statistics.median(self.cpu)

    def cell(self) -> str:
        """Wall seconds: median (min-max), then the median CPU seconds."""
        spread = f"{self.median:.2f} ({min(self.wall):.2f}-{max(self.wall):.2f})"
        return f"{spread} {self.cpu_median:5.2f}"


def run_timed(argv: list[str]) -> tuple[float, float]:
    """Wall and CPU (user + system) seconds of one run of `argv`; fails if it fails."""
    start = time.perf_counter()
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert process.stderr is not None
    errors = process.stderr.read()
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({process.returncode}): {errors.decode()}")
    return wall, usage.ru_utime + usage.ru_stime


def measure(argv: list[str], runs: int) -> Timing:
    results = [run_timed(argv) for _ in range(runs)]
    return Timing(tuple(wall for wall, _ in results), tuple(cpu for _, cpu in results))


def git(repo: Path, *args: str, stdin: bytes | None = None) -> str:
    return (
        subprocess.run(
            ["git", "-C", str(repo), *args], input=stdin, capture_output=True, check=True
        )
        .stdout.decode()
        .strip()
    )


def one_file_change(repo: Path, hub: str) -> str:
    """Commit a one-key change to `hub`'s common.yaml (both its pairs are affected)."""
    path = repo / "deployments" / hub / "config" / "common.yaml"
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    for number, line in enumerate(lines):
        if line.strip().startswith("concurrency:"):
            value = int(line.split(":", 1)[1])
            lines[number] = line.replace(str(value), str(value + 1))
            break
    else:
        raise RuntimeError(f"{path} has no `concurrency:` key for the benchmark to change")
    path.write_text("".join(lines), encoding="utf-8")
    git(repo, "commit", "-q", "-am", f"bench: one-file change to {hub}")
    return git(repo, "rev-parse", "HEAD")


def add_history(repo: Path, count: int) -> None:
    """`count` README-only commits on top of HEAD, written in one git fast-import."""
    branch = git(repo, "symbolic-ref", "HEAD")
    head = git(repo, "rev-parse", "HEAD")
    chunks = []
    for number in range(count):
        text = f"# Synthetic tess-hubs repository\n\nfiller {number}\n".encode()
        message = f"bench: filler {number}\n".encode()
        stamp = f"{1_700_000_000 + number} +0000"
        chunks.append(
            f"commit {branch}\ncommitter bench <bench@tess-hubs.invalid> {stamp}\n".encode()
            + b"data %d\n" % len(message)
            + message
            + (f"from {head}\n".encode() if number == 0 else b"")
            + b"M 100644 inline README.md\ndata %d\n" % len(text)
            + text
            + b"\n"
        )
    git(repo, "fast-import", "--quiet", "--force", stdin=b"".join(chunks))
    git(repo, "reset", "-q", "--hard", branch)


def manifests(repo: Path) -> list[str]:
    """A process that plans HEAD~1..HEAD and renders the manifest diff of each affected pair."""
    return [sys.executable, "-m", "bench.speed", "manifests", str(repo)]


def manifest_diffs(repo: Path) -> int:
    """What `manifests` runs: the number of changed resources, over every affected pair."""
    base, head = open_source(repo, "HEAD~1"), open_source(repo, "HEAD")
    changed = 0
    for pair in plan_of(base, head).deployable():
        old = build(base, pair.hub, pair.env)
        new = build(head, pair.hub, pair.env)
        changed += len(pair_manifest_diff(base, head, old, new, str).changed)
    return changed


def validate(repo: Path) -> list[str]:
    return [HUBBOT, "--repo", str(repo), "validate"]


def plan(repo: Path) -> list[str]:
    return [HUBBOT, "--repo", str(repo), "plan", "--base", "HEAD~1", "--head", "HEAD"]


def values_diff(repo: Path) -> list[str]:
    return [
        HUBBOT,
        "--repo",
        str(repo),
        "diff",
        "--base",
        "HEAD~1",
        "--head",
        "HEAD",
        "--format",
        "text",
    ]


if __name__ == "__main__":
    if sys.argv[1:2] != ["manifests"] or len(sys.argv) != 3:
        sys.exit("usage: python -m bench.speed manifests REPO")
    print(manifest_diffs(Path(sys.argv[2])))
