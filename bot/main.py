"""The `hubbot` command line: one module per verb in bot/commands/."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from bot import git
from bot.commands import (
    build,
    ci,
    deploy,
    diff,
    explain,
    plan,
    promote,
    render,
    secrets,
    validate,
)
from bot.error_handler import Exit, error_handler
from bot.errors import UsageError
from bot.redact import Redactor, installed

VERBS = (validate, render, explain, build, plan, diff, deploy, secrets, promote, ci)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{message} (see `{self.prog} --help`)")


def parser() -> argparse.ArgumentParser:
    top = _Parser(prog="hubbot", description=__doc__)
    top.add_argument(
        "--repo",
        type=Path,
        default=None,
        help="the tess-hubs repository (default: the enclosing git repository)",
    )
    verbs = top.add_subparsers(dest="verb", metavar="COMMAND", parser_class=_Parser)
    verbs.required = True
    for verb in VERBS:
        verb.register(verbs)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    # Every value sops decrypts is registered here; all output of the process,
    # error messages included, passes through it.
    redactor = Redactor()
    try:
        with installed(redactor), error_handler(redactor.redact):
            args = parser().parse_args(argv)
            args.redactor = redactor
            args.repo = git.toplevel(args.repo or Path.cwd())
            status: int = args.func(args)
            return status
    except Exit as stop:
        return stop.status


if __name__ == "__main__":
    sys.exit(main())
