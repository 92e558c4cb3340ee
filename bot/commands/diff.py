"""`hubbot diff --base REF [--head REF] [--format markdown|text|json]`: what each pair receives."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from bot import actions, diffreport, sops
from bot.diffreport import DiffReport, PairReport
from bot.plan import Plan, plan
from bot.source import Source, open_source
from bot.values import Decryptor, build
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
    report = build_report(result, _values_diffs(base, head, result, decrypt))
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


def _values_diffs(
    base: Source, head: Source, result: Plan, decrypt: Decryptor | None
) -> dict[tuple[str, str], ValuesDiff]:
    """The plan's values diffs, or with `decrypt`, each re-made from decrypted secrets."""
    if decrypt is None:
        return result.diffs
    diffs = {}
    for pair in result.pairs:
        old = None if pair.added else build(base, pair.hub, pair.env, decrypt)
        new = None if pair.removed else build(head, pair.hub, pair.env, decrypt)
        diffs[(pair.hub, pair.env)] = diff_values(old, new)
    return diffs


def build_report(result: Plan, diffs: dict[tuple[str, str], ValuesDiff]) -> DiffReport:
    pairs = tuple(
        PairReport(pair, diffs.get((pair.hub, pair.env)) or unchanged(pair.hub, pair.env), None)
        for pair in result.pairs
    )
    warnings = []
    if any(item.values.secret_files_changed for item in pairs):
        warnings.append(
            "secrets were read without keys: a changed secrets file is shown as a whole"
        )
    if any(image.exists is None and image.changed for image in result.images):
        warnings.append("the registry was not asked: whether changed images exist is unknown")
    return DiffReport(result, pairs, tuple(warnings))
