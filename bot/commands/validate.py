"""`hubbot validate [HUB ...] [--env ENV] [--format text|github]`."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from bot import actions, chartschema, helm, startup
from bot.errors import HubbotError
from bot.hubploy import DEPLOYMENTS, SchemaErrors, discover_hubs, load_deployment
from bot.infra import cross_check, has_infra
from bot.scope import Scope, scope
from bot.source import GitCommit, Source, WorkTree
from bot.validation import check, resize_problems
from bot.values import CHART_DIR, HubValues, build


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
    parser.add_argument(
        "--base",
        metavar="REF",
        help="also check against the schemas at REF (a pull request's base), which the "
        "change under review cannot loosen, and refuse what Kubernetes would refuse in the "
        "change from REF (a resized static volume)",
    )
    parser.add_argument(
        "--only-changed",
        action="store_true",
        help="with --base: check fully only the pairs whose inputs differ from REF; the "
        "others are proven unchanged by their inputs' fingerprints (a pull request's check)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    source = WorkTree(args.repo)
    trusted = trusted_base(args.repo, args.base) if args.base else None
    if args.only_changed and trusted is None:
        raise HubbotError("--only-changed needs --base REF: the ref to compare the inputs with")
    limited: Scope | None = scope(trusted, source) if args.only_changed and trusted else None
    hubs = args.hubs or discover_hubs(source)
    if not hubs:
        raise HubbotError(
            f"nothing to validate: no hub in {DEPLOYMENTS}/ (each is a directory with a "
            "hubploy.yaml)"
        )
    failed = 0
    pairs = 0
    for hub in hubs:
        if limited is not None and limited.hub_unchanged(hub):
            continue
        try:
            envs = [args.env] if args.env else list(load_deployment(source, hub).environments)
        except HubbotError as exc:
            # This hub's pairs fail; the other hubs are still validated.
            report(f"{hub}", exc.problems if isinstance(exc, SchemaErrors) else [exc], args.format)
            failed += 1
            pairs += 1
            continue
        for env in envs:
            if limited is not None and not limited.checks(hub, env):
                continue
            pairs += 1
            warnings: list[HubbotError] = []
            verdict = None
            try:
                values = build(source, hub, env)
                problems = check(source, values, trusted) + against_base(trusted, values)
                if not problems and not args.no_startup:
                    result = startup.check(source, values)
                    problems, warnings, verdict = result.errors, result.warnings, result.verdict
            except SchemaErrors as exc:
                problems = exc.problems
            except HubbotError as exc:
                problems = [exc]
            report(f"{hub}/{env}", problems, args.format, checked_by(source))
            report_warnings(f"{hub}/{env}", warnings, args.format)
            if verdict is not None:
                print(f"        start-up: {verdict}")
            failed += bool(problems)
    chart_problems = chart_lock_problems(source)
    report(f"{CHART_DIR}/ chart lock", chart_problems, args.format)
    print(f"{pairs - failed} of {pairs} hub environments valid")
    if limited is not None:
        print(limited.summary(pairs))
    failed += bool(chart_problems)
    if has_infra(source):
        try:
            mismatches = cross_check(source, hubs, [args.env] if args.env else None)
        except HubbotError as exc:
            mismatches = [exc]
        report("infra/ cross-check", mismatches, args.format)
        failed += bool(mismatches)
    return 1 if failed else 0


def trusted_base(repo: Path, ref: str) -> GitCommit:
    """The commit whose schemas also judge the work tree, labelled by the ref given
    (a full commit id, as CI passes, shortened)."""
    return GitCommit(repo, ref, label="" if re.fullmatch("[0-9a-f]{40}", ref) else ref)
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
        source.tree_hash(CHART_DIR)  # refuses a symbolic link among the chart's files
        helm.locked_dependencies(source.root / CHART_DIR)
    except HubbotError as exc:
        return [exc]
    return []


def checked_by(source: WorkTree) -> str:
    """What a pair that passed was checked against, for the `ok` line."""
    try:
        chart = chartschema.contract(source)
    except HubbotError:
        return ""
    return "house schema and policy" + (f", {chart.title} schema" if chart else "")


def report(
    name: str, problems: list[HubbotError], output_format: str, checked: str = ""
) -> None:
    if not problems:
        print(f"ok      {name}" + (f" ({checked})" if checked else ""))
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
