"""`hubbot plan --base REF [--head REF]`: the images to build and the pairs to deploy, as JSON."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from bot.plan import Plan, plan
from bot.source import open_source


def register(verbs: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = verbs.add_parser(
        "plan", help="print, as JSON, which images to build and which hub/env pairs changed"
    )
    parser.add_argument("--base", required=True, metavar="REF", help="the ref to compare with")
    parser.add_argument(
        "--head", metavar="REF", default=None, help="the ref to plan (default: the working tree)"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    result = plan(open_source(args.repo, args.base), open_source(args.repo, args.head))
    print(json.dumps(result.to_json(), indent=2))
    output = os.environ.get("GITHUB_OUTPUT")
    if output:
        write_outputs(Path(output), result)
    return 0


def write_outputs(path: Path, result: Plan) -> None:
    """The plan as GitHub Actions step outputs: the deploy matrix and its size."""
    matrix = json.dumps(result.matrix(), separators=(",", ":"))
    with path.open("a", encoding="utf-8") as out:
        out.write(f"matrix={matrix}\n")
        out.write(f"count={len(result.deployable())}\n")
