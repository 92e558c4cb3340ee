"""How long hubbot takes, as users run it: a new process per command.

Each command runs several times as a subprocess (so interpreter start-up and
imports count, as they do in CI), and reports min, median and max wall-clock
seconds, and the median CPU seconds the process used (wall time on a shared
machine also measures the neighbours).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from bot import helm
from bot.manifests import kube_version, pair_manifest_diff
from bot.plan import plan as plan_of
from bot.source import WorkTree, open_source
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
    return measure_in_turn([argv], runs)[0]


def measure_in_turn(argvs: list[list[str]], runs: int) -> list[Timing]:
    """Each of `argvs` `runs` times, taking turns (in reverse order every other round, so
    that none always follows the same one): load that comes and goes on a shared machine
    then weighs on all of them alike, which keeps it out of their ratios."""
    results: list[list[tuple[float, float]]] = [[] for _ in argvs]
    turns = list(zip(results, argvs, strict=True))
    for round_ in range(runs):
        for timed, argv in turns if round_ % 2 == 0 else reversed(turns):
            timed.append(run_timed(argv))
    return [
        Timing(tuple(wall for wall, _ in timed), tuple(cpu for _, cpu in timed))
        for timed in results
    ]


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
    return change_hubs(repo, [hub])


def change_hubs(repo: Path, hubs: list[str]) -> str:
    """Commit a one-key change to each hub's common.yaml, in one commit."""
    for hub in hubs:
        _bump_concurrency(repo / "deployments" / hub / "config" / "common.yaml")
    git(repo, "commit", "-q", "-am", f"bench: one-key change to {', '.join(hubs)}")
    return git(repo, "rev-parse", "HEAD")


def _bump_concurrency(path: Path) -> None:
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    for number, line in enumerate(lines):
        if line.strip().startswith("concurrency:"):
            value = int(line.split(":", 1)[1])
            lines[number] = line.replace(str(value), str(value + 1))
            break
    else:
        raise RuntimeError(f"{path} has no `concurrency:` key for the benchmark to change")
    path.write_text("".join(lines), encoding="utf-8")


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


def pair_diff(repo: Path, hub: str, env: str) -> list[str]:
    """A process that renders one pair's manifest diff between HEAD~1 and HEAD."""
    return [sys.executable, "-m", "bench.pairdiff", str(repo), hub, env]


def floor(repo: Path) -> list[str]:
    """A process that reads, with libyaml alone, every YAML file `validate` reads."""
    return [sys.executable, "-m", "bench.speed", "floor", str(repo)]


def read_with_libyaml(repo: Path) -> int:
    files = [
        *sorted(repo.glob("hub/*.yaml")),
        *sorted(repo.glob("hub/Chart.lock")),
        *sorted(repo.glob("schemas/*.yaml")),
        *sorted(repo.glob("deployments/*/hubploy.yaml")),
        *sorted(repo.glob("deployments/*/config/*.yaml")),
        *sorted(repo.glob("deployments/*/secrets/*.yaml")),
    ]
    for file in files:
        yaml.load(file.read_text(encoding="utf-8"), Loader=yaml.CSafeLoader)
    return len(files)


def fork_pull_request(repo: Path, event: Path) -> list[str]:
    """`hubbot ci` for a pull request from a fork (no comment, no build: nothing needs
    GitHub or a registry) whose base is HEAD~1: validate what it affects, check secrets,
    plan, start-up check and manifest diff of the affected pairs."""
    head = git(repo, "rev-parse", "HEAD")
    payload = {
        "number": 1,
        "pull_request": {
            "number": 1,
            "base": {"ref": "staging", "sha": git(repo, "rev-parse", "HEAD~1"),
                     "repo": {"full_name": "tess/hubs"}},
            "head": {"ref": "change", "sha": head, "repo": {"full_name": "fork/hubs"}},
        },
    }
    event.write_text(json.dumps(payload), encoding="utf-8")
    return [HUBBOT, "--repo", str(repo), "ci", "--event", "pull_request", "--event-path",
            str(event)]


def render_manifests(repo: Path, hub: str, env: str) -> list[str]:
    return [HUBBOT, "--repo", str(repo), "render", hub, env, "--manifests"]


def bare_template(repo: Path, hub: str, env: str, values_file: Path) -> list[str]:
    """One `helm template` of the pair's merged values (as `hubbot render` prints them)."""
    values = build(WorkTree(repo), hub, env)
    rendered = subprocess.run(
        [HUBBOT, "--repo", str(repo), "render", hub, env], capture_output=True, check=True
    ).stdout
    values_file.write_bytes(rendered)
    return [
        helm.binary(), "template", values.environment.release, str(repo / "hub"),
        "--namespace", values.environment.namespace,
        "--kube-version", kube_version(values.deployment), "--include-crds",
        "-f", str(values_file),
    ]


def hubbot_template(bare: list[str]) -> list[str]:
    """The same `helm template` as `bare`, run as hubbot runs a render (bot/helm.py)."""
    settings = [f"{name}={value}" for name, value in helm.short_lived_go().items()]
    return ["env", *settings, *bare]


# Imports what every hubbot command imports to read the layers (PyYAML; ruamel.yaml,
# whose rules say what a plain scalar means; jsonschema-rs, which checks hubploy.yaml),
# reads a saved `helm template` output with libyaml, and does nothing else.
_READ_RENDERED = (
    "import sys, yaml, ruamel.yaml, jsonschema_rs\n"
    "with open(sys.argv[1], encoding='utf-8') as f:\n"
    "    print(sum(1 for _ in yaml.load_all(f.read(), Loader=yaml.CSafeLoader)))\n"
)


def read_rendered(rendered: Path) -> list[str]:
    """A Python process that starts as any hubbot command must, then only reads a saved
    `helm template` output with libyaml: what a render that masks secrets does at least,
    beside running helm."""
    return [sys.executable, "-c", _READ_RENDERED, str(rendered)]


def validate_pair(repo: Path, hub: str, env: str, startup: bool) -> list[str]:
    flags = [] if startup else ["--no-startup"]
    return [HUBBOT, "--repo", str(repo), "validate", hub, "--env", env, *flags]


def validate_all(repo: Path) -> list[str]:
    """Every pair, with the start-up check."""
    return [HUBBOT, "--repo", str(repo), "validate"]


def validate(repo: Path) -> list[str]:
    """Every pair, without the start-up check (timed per pair on its own)."""
    return [HUBBOT, "--repo", str(repo), "validate", "--no-startup"]


def plan(repo: Path, head: str = "HEAD") -> list[str]:
    """`hubbot plan` of the commit `head` against its parent."""
    return [HUBBOT, "--repo", str(repo), "plan", "--base", f"{head}~1", "--head", head]


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
    verb, arguments = sys.argv[1:2], sys.argv[2:]
    if verb == ["manifests"] and len(arguments) == 1:
        print(manifest_diffs(Path(arguments[0])))
    elif verb == ["floor"] and len(arguments) == 1:
        print(read_with_libyaml(Path(arguments[0])))
    else:
        sys.exit("usage: python -m bench.speed manifests|floor REPO")
