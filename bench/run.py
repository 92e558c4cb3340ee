"""`make bench`: speed at 2, 50 and 200 hubs, and work avoided on replayed histories.

Prints one table, the ratios of issue 15 beside their targets, and a final summary
line that says whether each target was met. Absolute seconds do not travel between
machines, so the targets are ratios of CPU seconds measured in the same run (see
RATIO_TARGETS) and, on every replayed history, no redundant build, no redundant
deploy and no missed deploy. The seconds are printed for context.

    python -m bench.run [--hubs 2 50 200] [--runs 3] [--replay-hubs 50] [REPO ...]
"""

from __future__ import annotations

import argparse
import compileall
import datetime
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from bench import replay, speed
from bench.generate import KINDS, PROJECT, generate, hub_name
from bench.speed import Timing

# Runs of each plan timing for the history ratio (at least; --runs may ask more).
HISTORY_RUNS = 11
# Runs of the pull request's path at each size: most of its CPU is the start-up check's
# JupyterHub probe, whose cost varies by a third from run to run on a shared machine.
PULL_REQUEST_RUNS = 7
# Runs of each single-process figure of the render and diff ratios (at least): tenths of
# a second, whose 3-run medians put the diff ratio at 1.36x and 1.45x in two runs of the
# same code. They are timed in turns too.
RENDER_RUNS = 7
# The hubs a fleet-wide change touches for the "diff more" ratio (2 pairs each).
MORE_HUBS = 10
# Ratios of CPU seconds measured in the same run (issue 15): they travel between machines.
RATIO_TARGETS = {
    "validate": ("validate, every pair / reading its files with libyaml alone", 2.0),
    "pull request": ("PR path of a one-file change, {large} hubs / {small} hubs", 1.2),
    "render": ("render --manifests of one pair / one bare helm template", 1.3),
    "diff": ("manifest diff of one pair / two bare helm templates", 1.5),
    # The same, for each further pair of a run: what a fleet-wide change costs per pair
    # once the process, the plan and the charts are paid for.
    "diff more": ("manifest diff, each further pair of a run / two bare helm templates", 1.5),
    "history": ("plan at {long} commits / at {short} commits", 1.05),
}


@dataclass
class Results:
    machine: str
    hubs: list[int]
    runs: int
    timings: dict[tuple[str, int], Timing] = field(default_factory=dict)
    history: dict[int, Timing] = field(default_factory=dict)  # commits -> plan timing
    replays: list[tuple[str, replay.Replay]] = field(default_factory=list)
    # For the ratios: timings by name at the largest (and, for the PR path, smallest) size.
    extra: dict[tuple[str, int], Timing] = field(default_factory=dict)


def machine() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return (
        f"{os.cpu_count()} x {model}, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}, load average {load}"
    )


def run_speed(results: Results, work: Path, runs: int) -> None:
    small, large = min(results.hubs), max(results.hubs)
    pulls: dict[int, list[str]] = {}  # the PR path at both ends, timed in turns at the end
    for count in results.hubs:
        generated = generate(work / f"speed-{count}", count, 2 * len(KINDS))
        repo = generated.root
        speed.one_file_change(repo, hub_name(count // 2))
        for name, argv in (
            ("validate", speed.validate(repo)),
            ("plan", speed.plan(repo)),
            ("diff", speed.values_diff(repo)),
            ("manifests", speed.manifests(repo)),
        ):
            results.timings[(name, count)] = speed.measure(argv, runs)
        if count in (small, large):
            pulls[count] = speed.fork_pull_request(repo, work / f"pull-request-{count}.json")
        if count == large:
            timings = speed.measure_in_turn(
                [pulls[small], pulls[large]], max(runs, PULL_REQUEST_RUNS)
            )
            for size, timing in zip((small, large), timings, strict=True):
                results.extra[("pull request", size)] = timing
            run_ratios(results, repo, work, runs, count)
            run_history(results, repo, runs, count)
        if count != small:
            shutil.rmtree(repo)
    shutil.rmtree(work / f"speed-{small}", ignore_errors=True)


def run_history(results: Results, repo: Path, runs: int, count: int) -> None:
    """Plan of a change with a short history, and of one after a thousand more commits:
    both in the end repository, timed in turns (a ratio of two figures under a second)."""
    short = speed.one_file_change(repo, hub_name((count // 2 + 1) % count))
    speed.add_history(repo, speed.FILLER_COMMITS)
    long = speed.one_file_change(repo, hub_name(count // 3))
    plans = [speed.plan(repo, short), speed.plan(repo, long)]
    timings = speed.measure_in_turn(plans, max(runs, HISTORY_RUNS))
    for head, timing in zip((short, long), timings, strict=True):
        results.history[int(speed.git(repo, "rev-list", "--count", head))] = timing


def run_ratios(results: Results, repo: Path, work: Path, runs: int, count: int) -> None:
    """The measurements of the issue's ratios, at the largest size."""
    hub, env = hub_name(count // 2), "staging"
    # A change of the pair's own values: its diff renders both refs, as a pull request's.
    speed.one_file_change(repo, hub)
    bare = speed.bare_template(repo, hub, env, work / "values.yaml")
    rendered = work / "rendered.yaml"
    rendered.write_bytes(subprocess.run(bare, capture_output=True, check=True).stdout)
    for name, argv in (
        ("floor", speed.floor(repo)),
        ("startup pair", speed.validate_pair(repo, hub, env, startup=True)),
        ("no startup pair", speed.validate_pair(repo, hub, env, startup=False)),
    ):
        results.extra[(name, count)] = speed.measure(argv, runs)
    # The render and diff ratios' processes, in turns.
    in_turn = {
        "render": speed.render_manifests(repo, hub, env),
        "helm template": bare,
        "hubbot's helm": speed.hubbot_template(bare),
        "read rendered": speed.read_rendered(rendered),
        "pair diff": speed.pair_diff(repo, hub, env),
    }
    timings = speed.measure_in_turn(list(in_turn.values()), max(runs, RENDER_RUNS))
    for name, timing in zip(in_turn, timings, strict=True):
        results.extra[(name, count)] = timing
    # Once: it runs JupyterHub's start-up for every pair (minutes).
    results.extra[("startup sweep", count)] = speed.measure(speed.validate_all(repo), 1)
    speed.change_hubs(repo, [hub_name(index) for index in range(1, 1 + MORE_HUBS)])
    results.extra[("diff more", count)] = speed.measure(speed.values_diff(repo), runs)


def ratios(results: Results) -> list[tuple[str, float, float]]:
    """(figure, measured ratio of median CPU seconds, target) for each of the issue's ratios."""
    large, small = max(results.hubs), min(results.hubs)

    def cpu_of(name: str, hubs: int = large) -> float:
        timing = results.extra.get((name, hubs)) or results.timings[(name, hubs)]
        return timing.cpu_median

    short, long = sorted(results.history)
    measured = {
        "validate": cpu_of("validate") / cpu_of("floor"),
        "pull request": cpu_of("pull request") / cpu_of("pull request", small),
        "render": cpu_of("render") / cpu_of("helm template"),
        "diff": cpu_of("pair diff") / (2 * cpu_of("helm template")),
        "diff more": (cpu_of("diff more") - cpu_of("diff")) / (2 * (MORE_HUBS - 1))
        / (2 * cpu_of("helm template")),
        "history": results.history[long].cpu_median / results.history[short].cpu_median,
    }
    names = {"large": large, "small": small, "long": long, "short": short}
    return [
        (title.format(**names), measured[key], target)
        for key, (title, target) in RATIO_TARGETS.items()
    ]


def ratio_table(results: Results) -> str:
    large = max(results.hubs)
    lines = [
        f"ratios of median CPU seconds in this run ({large} hubs x 2 envs unless named)",
        f"{'':70}{'measured':>10}{'target':>10}{'met':>6}",
    ]
    for title, value, target in ratios(results):
        met = "yes" if value <= target else "no"
        lines.append(f"{title:70}{value:>9.2f}x{f'<= {target}x':>10}{met:>6}")
    startup = (
        results.extra[("startup pair", large)].cpu_median
        - results.extra[("no startup pair", large)].cpu_median
    )
    sweep = (
        results.extra[("startup sweep", large)].cpu_median
        - results.timings[("validate", large)].cpu_median
    )
    context = {
        "validate": results.timings[("validate", large)].cpu_median,
        "floor": results.extra[("floor", large)].cpu_median,
        "render": results.extra[("render", large)].cpu_median,
        "helm template": results.extra[("helm template", large)].cpu_median,
        "pair diff": results.extra[("pair diff", large)].cpu_median,
    }
    small = min(results.hubs)
    helm = context["helm template"]
    # What no render by hubbot can go below (see speed.read_rendered).
    hubbots_helm = results.extra[("hubbot's helm", large)].cpu_median
    read_rendered = results.extra[("read rendered", large)].cpu_median
    lines += [
        "CPU seconds: " + ", ".join(f"{name} {value:.2f}" for name, value in context.items())
        + f", PR path {results.extra[('pull request', large)].cpu_median:.2f} at {large} hubs "
        f"and {results.extra[('pull request', small)].cpu_median:.2f} at {small}",
        "the least a hubbot render can cost, helm as hubbot runs it "
        f"({hubbots_helm:.2f}) plus a Python process that imports what every hubbot command "
        "needs to read the layers and only reads helm's output with libyaml "
        f"({read_rendered:.2f}): {(hubbots_helm + read_rendered) / helm:.2f}x one bare helm "
        "template",
        f"start-up check: {startup:.2f} CPU s for one pair (validate of one pair with it, "
        f"minus without); a sweep of all {2 * large} pairs in one run: {sweep:.0f} CPU s, "
        f"{sweep / (2 * large):.2f} per pair",
    ]
    return "\n".join(lines)


def run_replays(results: Results, work: Path, hubs: int, repos: list[Path]) -> None:
    generated = generate(work / f"replay-{hubs}", hubs, 2 * len(KINDS), seed=1)
    results.replays.append(
        (f"synthetic, {hubs} hubs", replay.replay(generated.root, "staging", generated.age_key))
    )
    for repo in repos:
        title = "of this repository" if repo.resolve() == PROJECT else str(repo)
        results.replays.append((title, replay.replay(repo.resolve(), "HEAD")))


def table(results: Results) -> str:
    width = 30
    head = f"{'':40}" + "".join(f"{f'{n} hubs':>{width}}" for n in results.hubs)
    lines = [
        f"hubbot benchmark, {datetime.date.today()}: {results.machine}",
        f"times: wall seconds median (min-max) of {results.runs} runs, then median CPU seconds;"
        " each a new process",
        "",
        head,
    ]
    titles = {
        "validate": "validate, all hubs (s)",
        "plan": "plan, one-file change (s)",
        "diff": "diff --format text, same change (s)",
    }
    for name, title in (*titles.items(), ("manifests", "plan + manifest diff, same change (s)")):
        cells = [results.timings[(name, n)].cell() for n in results.hubs]
        lines.append(f"{title:40}" + "".join(f"{c:>{width}}" for c in cells))
    sums = [f"{total(results, n):.2f} {cpu(results, n):5.2f}" for n in results.hubs]
    lines.append(f"{'validate + plan + diff (s)':40}" + "".join(f"{c:>{width}}" for c in sums))
    for length, timing in sorted(results.history.items()):
        lines.append(
            f"{f'plan, {max(results.hubs)} hubs, {length} commits (s)':40}"
            + " " * (width * (len(results.hubs) - 1))
            + f"{timing.cell():>{width}}"
        )
    for title, result in results.replays:
        secrets = "decrypted" if result.decrypted else "by ciphertext"
        lines += [
            "",
            f"replay {title} ({result.ref}): {result.pushes} pushes, "
            f"{result.skipped} unreadable, secrets {secrets}",
            _replay_rows(result),
        ]
        lines += [f"  hubbot off target: {note}" for note in result.notes]
    return "\n".join(lines)


def _replay_rows(result: replay.Replay) -> str:
    tallies = result.tallies
    ours = tallies["hubbot"]
    header = (
        f"{'':40}{'hubbot':>12}{'hubploy':>12}{'path globs':>12}"
        f"{'hubploy/hubbot':>16}{'globs/hubbot':>14}"
    )
    rows = [header]
    for title, attribute in (
        ("image builds", "builds"),
        ("  redundant builds", "redundant_builds"),
        ("hub deploys", "deploys"),
        ("  redundant deploys", "redundant_deploys"),
        ("  missed deploys", "missed_deploys"),
    ):
        values = [getattr(tallies[p], attribute) for p in replay.POLICIES]
        ratios = ("", "")
        if attribute in ("builds", "deploys"):
            ratios = (
                _ratio(values[1], getattr(ours, attribute)),
                _ratio(values[2], getattr(ours, attribute)),
            )
        rows.append(
            f"{title:40}" + "".join(f"{v:>12}" for v in values) + f"{ratios[0]:>16}{ratios[1]:>14}"
        )
    return "\n".join(rows)


def _ratio(theirs: int, ours: int) -> str:
    if ours == 0:
        return "-" if theirs == 0 else "all avoided"
    return f"{theirs / ours:.1f}x"


def total(results: Results, hubs: int) -> float:
    return sum(results.timings[(k, hubs)].median for k in ("validate", "plan", "diff"))


def cpu(results: Results, hubs: int) -> float:
    return sum(results.timings[(k, hubs)].cpu_median for k in ("validate", "plan", "diff"))


def summary(results: Results) -> str:
    largest = max(results.hubs)
    parts = []
    misses = []
    all_total = total(results, largest)
    plan_time = results.timings[("plan", largest)].median
    plan_cpu = results.timings[("plan", largest)].cpu_median
    parts.append(
        f"{largest} hubs x 2 envs: validate+plan+diff {all_total:.2f} s wall, "
        f"{cpu(results, largest):.2f} s CPU"
    )
    parts.append(f"plan {plan_time:.2f} s wall, {plan_cpu:.2f} s CPU")
    redundant_builds = sum(r.tallies["hubbot"].redundant_builds for _, r in results.replays)
    redundant_deploys = sum(r.tallies["hubbot"].redundant_deploys for _, r in results.replays)
    missed = sum(r.tallies["hubbot"].missed_deploys for _, r in results.replays)
    parts.append(
        f"replays: {redundant_builds} redundant builds, {redundant_deploys} redundant deploys, "
        f"{missed} missed deploys (targets 0)"
    )
    for name, count in (
        ("redundant builds", redundant_builds),
        ("redundant deploys", redundant_deploys),
        ("missed deploys", missed),
    ):
        if count:
            misses.append(name)
    first = results.replays[0][1].tallies
    parts.append(
        f"deploys vs hubploy {_ratio(first['hubploy'].deploys, first['hubbot'].deploys)} fewer, "
        f"path globs missed {first['path globs'].missed_deploys}"
    )
    misses += [f"ratio {title}" for title, value, target in ratios(results) if value > target]
    verdict = "all targets met" if not misses else "MISSED: " + ", ".join(misses)
    return "bench: " + "; ".join(parts) + f" -> {verdict}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("repos", nargs="*", type=Path, help="more repositories to replay")
    parser.add_argument("--hubs", type=int, nargs="+", default=[2, 50, 200])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--replay-hubs", type=int, default=50)
    parser.add_argument("--results", type=Path, help="also write the table to this file")
    args = parser.parse_args()
    results = Results(machine(), sorted(args.hubs), args.runs)
    # Timed as installed: bytecode compiled (PYTHONDONTWRITEBYTECODE would otherwise have
    # every run compile the modules changed since it was last written).
    compileall.compile_dir(PROJECT / "bot", quiet=1)
    with tempfile.TemporaryDirectory(prefix="hubbot-bench-") as work:
        run_speed(results, Path(work), args.runs)
        run_replays(results, Path(work), args.replay_hubs, [PROJECT, *args.repos])
    report = table(results) + "\n\n" + ratio_table(results) + "\n\n" + summary(results)
    print(report)
    if args.results:
        args.results.write_text(f"```\n{report}\n```\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
