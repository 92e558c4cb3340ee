"""`hubbot plan --base REF [--head REF]`: the images to build and the pairs to deploy, as JSON."""

from __future__ import annotations

import argparse
import json
import sys

from bot import actions
from bot.errors import HubbotError
from bot.hubploy import Deployment, printable
from bot.plan import plan
from bot.registries import registry_for
from bot.source import open_source
from bot.values import ImageRef


def register(verbs: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = verbs.add_parser(
        "plan", help="print, as JSON, which images to build and which hub/env pairs changed"
    )
    parser.add_argument("--base", required=True, metavar="REF", help="the ref to compare with")
    parser.add_argument(
        "--head", metavar="REF", default=None, help="the ref to plan (default: the working tree)"
    )
    parser.add_argument(
        "--registry",
        action="store_true",
        help='ask each image\'s registry whether its tag exists (else: "unknown")',
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    check = registry_check if args.registry else None
    result = plan(open_source(args.repo, args.base), open_source(args.repo, args.head), check)
    print(json.dumps(result.to_json(), indent=2))
    # Step outputs (when GITHUB_OUTPUT is set): the deploy matrix and its size.
    matrix = json.dumps(result.matrix(), separators=(",", ":"))
    actions.set_output("matrix", matrix, assert_clean=args.redactor.assert_clean)
    actions.set_output("count", str(len(result.deployable())))
    for failure in result.failed:
        hub = printable(failure.hub)
        print(f"hubbot: error: {hub} not planned: {failure.error}", file=sys.stderr)
    return 1 if result.failed else 0


def registry_check(deployment: Deployment, image: ImageRef) -> bool | None:
    """Whether the image's tag is in its registry; None, with a note, when it cannot tell."""
    try:
        return registry_for(deployment).exists(image.name, image.tag)
    except HubbotError as exc:
        print(f"hubbot: cannot tell whether {image.reference} exists: {exc}", file=sys.stderr)
        return None
