"""`hubbot validate [HUB ...] [--env ENV] [--format text|github]`."""

from __future__ import annotations

import argparse

from bot import actions, helm
from bot.errors import HubbotError
from bot.hubploy import SchemaErrors, discover_hubs, load_deployment
from bot.infra import cross_check, has_infra
from bot.source import GitCommit, Source, WorkTree
from bot.validation import check, resize_problems
from bot.values import CHART_DIR, HubValues, build


def register(verbs: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = verbs.add_parser("validate", help="check every layer of the selected hubs")
    parser.add_argument("hubs", nargs="*", metavar="HUB", help="default: every hub")
    parser.add_argument("--env", help="one environment (default: every environment of the hub)")
    parser.add_argument("--format", choices=("text", "github"), default="text")
    parser.add_argument(
        "--base",
        metavar="REF",
        default=None,
        help="also refuse changes Kubernetes would refuse against REF (a resized static volume)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    source = WorkTree(args.repo)
    base = GitCommit(args.repo, args.base, label=args.base) if args.base else None
    hubs = args.hubs or discover_hubs(source)
    failed = 0
    pairs = 0
    for hub in hubs:
        try:
            envs = [args.env] if args.env else list(load_deployment(source, hub).environments)
        except SchemaErrors as exc:
            report(f"{hub}", exc.problems, args.format)
            failed += 1
            pairs += 1
            continue
        for env in envs:
            pairs += 1
            try:
                values = build(source, hub, env)
                problems = check(source, values) + against_base(base, values)
            except SchemaErrors as exc:
                problems = exc.problems
            except HubbotError as exc:
                problems = [exc]
            report(f"{hub}/{env}", problems, args.format)
            failed += bool(problems)
    chart_problems = chart_lock_problems(source)
    report(f"{CHART_DIR}/ chart lock", chart_problems, args.format)
    print(f"{pairs - failed} of {pairs} hub environments valid")
    failed += bool(chart_problems)
    if has_infra(source):
        try:
            mismatches = cross_check(source, hubs, [args.env] if args.env else None)
        except HubbotError as exc:
            mismatches = [exc]
        report("infra/ cross-check", mismatches, args.format)
        failed += bool(mismatches)
    return 1 if failed else 0


def against_base(base: Source | None, values: HubValues) -> list[HubbotError]:
    """What Kubernetes would refuse in the change from `base`.

    A pair that is new, or broken, at the base has nothing to compare with.
    """
    if base is None:
        return []
    try:
        before = build(base, values.hub, values.env)
    except HubbotError:
        return []
    return resize_problems(before, values)


def chart_lock_problems(source: WorkTree) -> list[HubbotError]:
    """Chart.lock must pin what Chart.yaml asks for, or deploys would fail later."""
    try:
        helm.locked_dependencies(source.root / CHART_DIR)
    except HubbotError as exc:
        return [exc]
    return []


def report(name: str, problems: list[HubbotError], output_format: str) -> None:
    if not problems:
        print(f"ok      {name}")
        return
    print(f"FAILED  {name}: {len(problems)} problem(s)")
    for problem in problems:
        if output_format == "github":
            print(annotation(problem, name))
        else:
            print(f"  {problem}")


def annotation(problem: HubbotError, name: str) -> str:
    """A GitHub Actions error annotation (workflow command) for one problem."""
    location = problem.location
    return actions.annotation(
        "error",
        problem.message,
        file=location.file if location else None,
        line=location.line if location else None,
        title=f"hubbot validate {name}",
    )
