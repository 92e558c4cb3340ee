"""`hubbot diff --base REF [--head REF] [--format markdown|text|json]`: what each pair receives."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from bot import diffreport
from bot.diffreport import DiffReport, PairReport
from bot.plan import Plan, plan
from bot.source import open_source
from bot.valuesdiff import unchanged

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
        "--output",
        type=Path,
        metavar="FILE",
        default=None,
        help=f"also write the full markdown report to FILE (in GitHub Actions: {ARTIFACT})",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    result = plan(open_source(args.repo, args.base), open_source(args.repo, args.head))
    report = build_report(result)
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
        if summary:
            append_summary(Path(summary), full)
    return 0


def build_report(result: Plan) -> DiffReport:
    pairs = tuple(
        PairReport(
            pair, result.diffs.get((pair.hub, pair.env)) or unchanged(pair.hub, pair.env), None
        )
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


SUMMARY_LIMIT = 1024 * 1024


def append_summary(path: Path, text: str) -> None:
    """Append to the job summary, cut to GitHub's 1 MiB limit."""
    room = SUMMARY_LIMIT - (path.stat().st_size if path.exists() else 0)
    data = text.encode()
    if len(data) > room:
        note = b"\n\n_Truncated: the full diff is in the job's artifact._\n"
        data = data[: max(room - len(note), 0)].decode(errors="ignore").encode() + note
    with path.open("ab") as out:
        out.write(data)
