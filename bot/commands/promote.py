"""`hubbot promote`: open or update the single promotion pull request staging -> prod."""

from __future__ import annotations

import argparse
import os

from bot import github, promote, records
from bot.errors import HubbotError


def register(verbs: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = verbs.add_parser(
        "promote", help="open or update the promotion PR staging -> prod (freight and prod diff)"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        client = github.client_from_env(assert_clean=args.redactor.assert_clean)
    except HubbotError as exc:
        raise HubbotError(f"hubbot promote updates a pull request on GitHub: {exc}") from None
    trust = records.trust_from_env(client, args.repo, os.environ)
    result = promote.promote(args.repo, client, args.redactor.redact, trust)
    action = "opened" if result.created else "updated"
    print(f"{action} the promotion PR #{result.pull['number']}: {result.pull['html_url']}")
    return 0
