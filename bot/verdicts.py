"""Validating a work tree's hubs: each pair's verdict, printed as it comes.

`hubbot validate` and `hubbot ci`'s validate step both run `validate`: the
house schema and policy, the chart's own schema, what Kubernetes would refuse
in the change from a base, and the start-up check of every pair that passed,
all in one probe process; then the chart lock and the infra cross-check.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from bot import chartschema, helm
from bot.errors import HubbotError
from bot.hubploy import (
    DEPLOYMENTS,
    SchemaErrors,
    discover_hubs,
    load_deployment,
    prefetch_hubs,
    printable,
)
from bot.infra import cross_check, has_infra
from bot.source import GitCommit, Source, WorkTree
from bot.validation import check, resize_problems
from bot.values import CHART_DIR, HubValues, build

# Imported where they are needed, by the options that need them: each costs every run.
if TYPE_CHECKING:
    from bot import actions
    from bot.scope import Scope


def validate(
    repo: Path,
    *,
    hubs: list[str] | None = None,
    env: str | None = None,
    output_format: str = "text",
    base: str | None = None,
    no_startup: bool = False,
    only_changed: bool = False,
    found: list[tuple[str, HubbotError]] | None = None,
) -> int:
    """Validate the work tree's hubs (all by default), printing each verdict as it comes in
    `output_format`; the exit status. `found` also receives each (where, problem)."""
    source = WorkTree(repo)
    trusted = trusted_base(repo, base) if base else None
    if only_changed and trusted is None:
        raise HubbotError("--only-changed needs --base REF: the ref to compare the inputs with")
    limited: Scope | None = None
    if only_changed and trusted:
        from bot.scope import scope

        limited = scope(trusted, source)
    hubs = hubs or discover_hubs(source)
    if not hubs:
        raise HubbotError(
            f"nothing to validate: no hub in {DEPLOYMENTS}/ (each is a directory with a "
            "hubploy.yaml)"
        )
    if trusted is not None:
        # Each pair validated is compared with the base (against_base): read its hubs at once.
        prefetch_hubs(trusted, [h for h in hubs if limited is None or not limited.hub_unchanged(h)])
    out = Report(output_format, found)
    # Pairs in order; those that passed wait for the start-up check, which runs them all
    # in one probe process (JupyterHub is imported once, not once per pair).
    results: list[Checked | HubValues] = []
    for hub in hubs:
        if limited is not None and limited.hub_unchanged(hub):
            continue
        try:
            envs = [env] if env else list(load_deployment(source, hub).environments)
        except HubbotError as exc:
            # This hub's pairs fail; the other hubs are still validated.
            problems = exc.problems if isinstance(exc, SchemaErrors) else [exc]
            results.append(Checked(hub, None, problems))
            continue
        for name in envs:
            if limited is not None and not limited.checks(hub, name):
                continue
            try:
                values = build(source, hub, name)
                problems = check(source, values, trusted) + against_base(trusted, values)
            except SchemaErrors as exc:
                problems = exc.problems
            except HubbotError as exc:
                problems = [exc]
            if problems or no_startup:
                results.append(Checked(hub, name, problems, checked=checked_by(source)))
            else:
                results.append(values)
    for checked in with_startup(source, results):
        out.pair(checked)
    out.check(f"{CHART_DIR}/ chart lock", chart_lock_problems(source))
    out.summary()
    if limited is not None and output_format != "json":
        print(limited.summary(len(out.pairs)))
    if has_infra(source):
        try:
            mismatches = cross_check(source, hubs, [env] if env else None)
        except HubbotError as exc:
            mismatches = [exc]
        out.check("infra/ cross-check", mismatches)
    return out.finish()


@dataclass(frozen=True)
class Checked:
    """One hub environment's verdict (`env` None: the hub's hubploy.yaml failed)."""

    hub: str
    env: str | None
    problems: list[HubbotError]
    warnings: list[HubbotError] = field(default_factory=list)
    checked: str = ""
    startup: str | None = None

    @property
    def name(self) -> str:
        hub = printable(self.hub)
        return hub if self.env is None else f"{hub}/{self.env}"


class Report:
    """Prints each verdict as it comes (text, github), or all at the end as one JSON document."""

    def __init__(
        self, output_format: str, found: list[tuple[str, HubbotError]] | None = None
    ) -> None:
        self.format = output_format
        self.pairs: list[Checked] = []
        self.checks: list[tuple[str, list[HubbotError]]] = []
        # Also receives each (where, problem), for a caller that shows them elsewhere.
        self.found = found if found is not None else []

    def pair(self, checked: Checked) -> None:
        self.pairs.append(checked)
        self.found += [(checked.name, problem) for problem in checked.problems]
        if self.format != "json":
            report(checked.name, checked.problems, self.format, checked.checked)
            report_warnings(checked.name, checked.warnings, self.format)
            if checked.startup is not None:
                print(f"        start-up: {checked.startup}")

    def check(self, name: str, problems: list[HubbotError]) -> None:
        self.checks.append((name, problems))
        self.found += [(name, problem) for problem in problems]
        if self.format != "json":
            report(name, problems, self.format)

    def summary(self) -> None:
        if self.format != "json":
            valid = sum(not pair.problems for pair in self.pairs)
            print(f"{valid} of {len(self.pairs)} hub environments valid")

    def finish(self) -> int:
        """The exit status; the JSON document when that is the format."""
        failed = any(pair.problems for pair in self.pairs) or any(p for _, p in self.checks)
        if self.format == "json":
            document = {
                "valid": not failed,
                "pairs": [
                    {
                        "hub": pair.hub,
                        "env": pair.env,
                        "status": "failed" if pair.problems else "ok",
                        "checked_against": pair.checked or None,
                        "problems": [problem.as_json() for problem in pair.problems],
                        "warnings": [warning.as_json() for warning in pair.warnings],
                        "startup": pair.startup,
                    }
                    for pair in self.pairs
                ],
                "checks": [
                    {
                        "name": name,
                        "status": "failed" if problems else "ok",
                        "problems": [problem.as_json() for problem in problems],
                    }
                    for name, problems in self.checks
                ],
                "summary": {
                    "pairs": len(self.pairs),
                    "valid": sum(not pair.problems for pair in self.pairs),
                },
            }
            print(json.dumps(document, indent=2))
        return 1 if failed else 0


def with_startup(source: WorkTree, results: list[Checked | HubValues]) -> list[Checked]:
    """`results` with each waiting pair's start-up check done (all in one probe run)."""
    waiting = [item for item in results if isinstance(item, HubValues)]
    if not waiting:  # --no-startup, or no pair passed
        return [item for item in results if isinstance(item, Checked)]
    from bot import startup

    try:
        reports = dict(zip(map(id, waiting), startup.check_many(source, waiting), strict=True))
    except HubbotError as exc:  # the check itself could not run: every waiting pair fails
        failed = startup.StartupReport("", "", errors=[exc])
        reports = dict.fromkeys(map(id, waiting), failed)
    done = []
    for item in results:
        if isinstance(item, Checked):
            done.append(item)
            continue
        report = reports[id(item)]
        verdict = None if report.errors and not report.verdict else report.verdict
        done.append(
            Checked(
                item.hub, item.env, report.errors, report.warnings, checked_by(source), verdict
            )
        )
    return done


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
    name: str,
    problems: list[HubbotError],
    output_format: str,
    checked: str = "",
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
    from bot import actions

    location = problem.location
    return actions.annotation(
        level,
        problem.message,
        file=location.file if location else None,
        line=location.line if location else None,
        title=f"hubbot validate {name}",
    )
