"""`hubbot diff --base REF [--head REF] [--format markdown|text|json]`: what each pair receives."""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

from bot import actions, diffreport, git, helm, manifests, sops
from bot.diffreport import DiffReport, PairReport
from bot.plan import Plan, plan
from bot.source import GitCommit, Source, open_source
from bot.values import CHART_DIR, Decryptor, build
from bot.valuesdiff import ValuesDiff, diff_values, unchanged

FORMATS = ("markdown", "text", "json")
ARTIFACT = "hubbot-diff.md"


def register(verbs: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = verbs.add_parser(
        "diff", help="show, per affected hub and env, the effective-values and manifest diff"
    )
    parser.add_argument("--base", required=True, metavar="REF", help="the ref to compare with")
    parser.add_argument(
        "--head", metavar="REF", default=None, help="the ref to show (default: the working tree)"
    )
    parser.add_argument("--format", choices=FORMATS, default="markdown")
    parser.add_argument(
        "--decrypt",
        action="store_true",
        help="decrypt secrets with sops to tell which changed (values are never shown)",
    )
    parser.add_argument(
        "--output",
        type=Path,
        metavar="FILE",
        default=None,
        help=f"also write the full markdown report to FILE (in GitHub Actions: {ARTIFACT})",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    base = open_source(args.repo, args.base)
    head = open_source(args.repo, args.head)
    result = plan(base, head)
    decrypt = sops.decryptor(args.redactor, cwd=args.repo) if args.decrypt else None
    with tempfile.TemporaryDirectory(prefix="hubbot-diff-") as tmp:
        report = assemble(base, head, result, decrypt, args.redactor.redact, Path(tmp))
    if args.format == "json":
        print(json.dumps(diffreport.as_json(report), indent=2))
    elif args.format == "text":
        print(diffreport.text(report), end="")
    else:
        print(diffreport.markdown(report), end="")
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    output = args.output or (Path(ARTIFACT) if summary else None)
    if output is not None or summary:
        full = diffreport.markdown(report)
        args.redactor.assert_clean(full, "the diff report")
        if output is not None:
            output.write_text(full, encoding="utf-8")
        actions.append_summary(full, assert_clean=args.redactor.assert_clean)
    return 0


def assemble(
    base: Source,
    head: Source,
    result: Plan,
    decrypt: Decryptor | None,
    redact: Callable[[str], str],
    scratch: Path,
) -> DiffReport:
    """Per affected pair: the values diff and the manifest diff of both refs' charts.

    Secrets are decrypted only with `decrypt`; the chart of a commit is exported
    into `scratch`. When the chart's dependency cannot be fetched, every pair keeps
    its values diff and says so in one line.
    """
    unavailable: str | None = None
    pairs = []
    with ExitStack() as charts:
        head_chart = base_chart = scratch
        try:
            # Dependencies are fetched once per ref, not once per pair.
            if result.pairs:
                head_dir = _chart_dir(head, scratch / "head")
                head_chart = base_chart = charts.enter_context(helm.ready_chart(head_dir))
            if result.pairs and base.tree_hash(CHART_DIR) != head.tree_hash(CHART_DIR):
                base_dir = _chart_dir(base, scratch / "base")
                base_chart = charts.enter_context(helm.ready_chart(base_dir))
        except helm.ChartUnavailable as exc:
            unavailable = f"not rendered: {exc.message}"
        for pair in result.pairs:
            old = None if pair.added else build(base, pair.hub, pair.env, decrypt)
            new = None if pair.removed else build(head, pair.hub, pair.env, decrypt)
            manifests_diff = None
            if unavailable is None:
                some = new or old
                assert some is not None
                manifests_diff = manifests.manifest_diff(
                    head_chart if new else base_chart,
                    old.document if old else None,
                    new.document if new else None,
                    some.environment.release,
                    some.environment.namespace,
                    redact,
                    kube_version=manifests.kube_version(some.deployment),
                    old_chart_dir=base_chart,
                )
            pairs.append(PairReport(pair, diff_values(old, new), manifests_diff, unavailable))
    return _report(result, pairs, unavailable)


def build_report(result: Plan, diffs: dict[tuple[str, str], ValuesDiff]) -> DiffReport:
    """A report of values diffs only (no manifests), from `diffs` by (hub, env)."""
    pairs = [
        PairReport(pair, diffs.get((pair.hub, pair.env)) or unchanged(pair.hub, pair.env), None)
        for pair in result.pairs
    ]
    return _report(result, pairs, None)


def _report(result: Plan, pairs: list[PairReport], unavailable: str | None) -> DiffReport:
    warnings = []
    if unavailable:
        warnings.append(f"manifests {unavailable}; the values diff is complete")
    if any(item.values.secret_files_changed for item in pairs):
        warnings.append(
            "secrets were read without keys: a changed secrets file is shown as a whole"
        )
    if any(image.exists is None and image.changed for image in result.images):
        warnings.append("the registry was not asked: whether changed images exist is unknown")
    return DiffReport(result, tuple(pairs), tuple(warnings))


def _chart_dir(source: Source, scratch: Path) -> Path:
    """The chart as `source` has it, on disk for helm."""
    if isinstance(source, GitCommit):
        return git.export(source.root, source.commit, CHART_DIR, scratch)
    return source.root / CHART_DIR
