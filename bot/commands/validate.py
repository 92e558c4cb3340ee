"""`hubbot validate [HUB ...] [--env ENV] [--format text|github]`."""

from __future__ import annotations

import argparse

from bot import actions, helm, startup
from bot.errors import HubbotError
from bot.hubploy import SchemaErrors, discover_hubs, load_deployment
from bot.infra import cross_check, has_infra
from bot.source import WorkTree
from bot.validation import check
from bot.values import CHART_DIR, build


def register(verbs: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = verbs.add_parser("validate", help="check every layer of the selected hubs")
    parser.add_argument("hubs", nargs="*", metavar="HUB", help="default: every hub")
    parser.add_argument("--env", help="one environment (default: every environment of the hub)")
    parser.add_argument("--format", choices=("text", "github"), default="text")
    parser.add_argument(
        "--no-startup",
        action="store_true",
        help="skip the start-up check (the real JupyterHub loading each pair's config)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace, found: list[tuple[str, HubbotError]] | None = None) -> int:
    """Validate, printing each problem; `found` also receives each (where, problem)."""
    collected = found if found is not None else []
    source = WorkTree(args.repo)
    hubs = args.hubs or discover_hubs(source)
    failed = 0
    pairs = 0
    for hub in hubs:
        try:
            envs = [args.env] if args.env else list(load_deployment(source, hub).environments)
        except SchemaErrors as exc:
            report(f"{hub}", exc.problems, args.format, collected)
            failed += 1
            pairs += 1
            continue
        for env in envs:
            pairs += 1
            warnings: list[HubbotError] = []
            verdict = None
            try:
                values = build(source, hub, env)
                problems = check(source, values)
                if not problems and not args.no_startup:
                    result = startup.check(source, values)
                    problems, warnings, verdict = result.errors, result.warnings, result.verdict
            except SchemaErrors as exc:
                problems = exc.problems
            except HubbotError as exc:
                problems = [exc]
            report(f"{hub}/{env}", problems, args.format, collected)
            report_warnings(f"{hub}/{env}", warnings, args.format)
            if verdict is not None:
                print(f"        start-up: {verdict}")
            failed += bool(problems)
    chart_problems = chart_lock_problems(source)
    report(f"{CHART_DIR}/ chart lock", chart_problems, args.format, collected)
    print(f"{pairs - failed} of {pairs} hub environments valid")
    failed += bool(chart_problems)
    if has_infra(source):
        try:
            mismatches = cross_check(source, hubs, [args.env] if args.env else None)
        except HubbotError as exc:
            mismatches = [exc]
        report("infra/ cross-check", mismatches, args.format, collected)
        failed += bool(mismatches)
    return 1 if failed else 0


def chart_lock_problems(source: WorkTree) -> list[HubbotError]:
    """Chart.lock must pin what Chart.yaml asks for, or deploys would fail later."""
    try:
        helm.locked_dependencies(source.root / CHART_DIR)
    except HubbotError as exc:
        return [exc]
    return []


def report(
    name: str,
    problems: list[HubbotError],
    output_format: str,
    found: list[tuple[str, HubbotError]] | None = None,
) -> None:
    if found is not None:
        found += [(name, problem) for problem in problems]
    if not problems:
        print(f"ok      {name}")
        return
    print(f"FAILED  {name}: {len(problems)} problem(s)")
    for problem in problems:
        if output_format == "github":
            print(annotation(problem, name))
        else:
            print(f"  {problem}")


def report_warnings(name: str, warnings: list[HubbotError], output_format: str) -> None:
    for warning in warnings:
        if output_format == "github":
            print(annotation(warning, name, "warning"))
        else:
            print(f"  warning: {warning}")


def annotation(problem: HubbotError, name: str, level: actions.Level = "error") -> str:
    """A GitHub Actions annotation (workflow command) for one problem."""
    location = problem.location
    return actions.annotation(
        level,
        problem.message,
        file=location.file if location else None,
        line=location.line if location else None,
        title=f"hubbot validate {name}",
    )
