"""`hubbot plan --base REF [--head REF]`: the images to build and the pairs to deploy, as JSON."""

from __future__ import annotations

import argparse
import json

from bot import actions
from bot.plan import plan
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
    # Step outputs (when GITHUB_OUTPUT is set): the deploy matrix and its size.
    matrix = json.dumps(result.matrix(), separators=(",", ":"))
    actions.set_output("matrix", matrix, assert_clean=args.redactor.assert_clean)
    actions.set_output("count", str(len(result.deployable())))
    return 0
