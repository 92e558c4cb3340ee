"""`hubbot diff --base REF [--head REF] [--format markdown|text|json]`: what each pair receives."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from bot import actions, diffreport, sops
from bot.diffs import build_report
from bot.errors import HubbotError
from bot.hubploy import printable
from bot.plan import plan
from bot.source import open_source

FORMATS = ("markdown", "text", "json")


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
        help="also write the full markdown report to FILE "
        f"(in GitHub Actions: {diffreport.ARTIFACT})",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    base = open_source(args.repo, args.base)
    head = open_source(args.repo, args.head)
    result = plan(base, head)
    decrypt = sops.decryptor(args.redactor, cwd=args.repo) if args.decrypt else None
    report = build_report(
        result,
        decrypt=decrypt,
        redact=args.redactor.redact,
        register=args.redactor.register,
        render_manifests=True,
    )
    if args.format == "json":
        print(json.dumps(diffreport.as_json(report), indent=2))
    elif args.format == "text":
        print(diffreport.text(report), end="")
    else:
        print(diffreport.markdown(report), end="")
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    output = args.output or (Path(diffreport.ARTIFACT) if summary else None)
    if output is not None or summary:
        full = diffreport.markdown(report)
        args.redactor.assert_clean(full, "the diff report")
        if output is not None:
            output.write_text(full, encoding="utf-8")
        actions.append_summary(full, assert_clean=args.redactor.assert_clean)
    for failure in result.failed:
        hub = printable(failure.hub)
        print(f"hubbot: error: {hub} not diffed: {failure.error}", file=sys.stderr)
    if report.refused:
        raise HubbotError(f"this change cannot be deployed: {'; '.join(report.refused)}")
    return 1 if result.failed else 0
