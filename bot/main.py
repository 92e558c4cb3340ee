"""The `hubbot` command line: one module per verb in bot/commands/."""

from __future__ import annotations

import argparse
import gc
import io
import sys
from collections.abc import Sequence
from importlib import import_module
from pathlib import Path

from bot import git, memfs
from bot.error_handler import Exit, error_handler
from bot.errors import UsageError, did_you_mean
from bot.redact import Redactor, installed

# The modules in bot/commands/, one per verb. Only the chosen verb's module is
# imported (all of them for the top-level --help): their dependencies (docker,
# repo2docker, boto3, ...) take longer to import than validate takes to run.
VERBS = (
    "validate",
    "render",
    "explain",
    "build",
    "plan",
    "diff",
    "deploy",
    "secrets",
    "promote",
    "ci",
    "new-hub",
    "rollback",
)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{message}{_did_you_mean(message)} (see `{self.prog} --help`)")


def _did_you_mean(message: str) -> str:
    """For argparse's "invalid choice: 'X' (choose from ...)", the closest choice."""
    if "invalid choice: '" not in message or "(choose from " not in message:
        return ""
    wrong = message.split("invalid choice: '", 1)[1].split("'", 1)[0]
    choices = [c.strip(" '") for c in message.split("(choose from ", 1)[1].rstrip(")").split(",")]
    close = did_you_mean(wrong, choices)
    return f"; {close}" if close else ""


def version() -> str:
    from importlib import metadata

    try:
        return metadata.version("tess-hubs-bot")
    except metadata.PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown"


class _Version(argparse.Action):
    """--version, asking the installed metadata only when it is given (importing
    importlib.metadata costs every other command ~40 ms)."""

    def __call__(self, parser: argparse.ArgumentParser, *_: object) -> None:
        print(f"hubbot {version()}")
        parser.exit()


class _NoVerb(Exception):
    """The command line names no verb, or is wrong before it."""


class _VerbFinder(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise _NoVerb


def parser(verb: str | None = None) -> argparse.ArgumentParser:
    """The command line parser; given `verb`, the other verbs are known by name only."""
    top = _Parser(prog="hubbot", description=__doc__)
    top.add_argument("--version", action=_Version, nargs=0, help="print hubbot's version and exit")
    top.add_argument(
        "--repo",
        type=Path,
        default=None,
        help="the tess-hubs repository (default: the enclosing git repository)",
    )
    verbs = top.add_subparsers(dest="verb", metavar="COMMAND", parser_class=_Parser)
    verbs.required = True
    for name in VERBS:
        if verb is None or name == verb:
            import_module(f"bot.commands.{name.replace('-', '_')}").register(verbs)
        else:
            verbs.add_parser(name)
    return top


def chosen_verb(argv: Sequence[str]) -> str | None:
    """The verb `argv` runs, found as parser() finds it; None for top-level help or errors,
    "" for --version (which needs no verb)."""
    finder = _VerbFinder(add_help=False)
    finder.add_argument("-h", "--help", action="store_true")
    finder.add_argument("--version", action="store_true")
    finder.add_argument("--repo")
    finder.add_argument("command", nargs=argparse.REMAINDER)
    try:
        found, _ = finder.parse_known_args(argv)
    except _NoVerb:
        return None
    if found.version and not found.help:
        return ""  # no verb's module is needed to print the version
    if found.help or not found.command or found.command[0] not in VERBS:
        return None
    verb: str = found.command[0]
    return verb


def fewer_collections() -> None:
    """Tune the cyclic garbage collector for a command's process.

    A command builds many small containers (parsed files, merged values, their
    provenance) and keeps most until it ends: by default the collector runs every
    700 allocations and walks them again and again: about a quarter of `hubbot validate`'s
    CPU time over 200 hubs. What the imports made lives as long as the process.
    """
    gc.freeze()
    gc.set_threshold(50_000, 20, 10)


def main(argv: Sequence[str] | None = None) -> int:
    # A character the terminal's encoding (PYTHONIOENCODING=ascii, say) cannot show is
    # written as an escape, never a UnicodeEncodeError.
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(errors="backslashreplace")
    # Every value sops decrypts is registered here; all output of the process,
    # error messages included, passes through it.
    redactor = Redactor()
    # A run killed together with its watchdog may have left decrypted files in memory.
    memfs.sweep()
    try:
        with installed(redactor), error_handler(redactor.redact):
            if argv is None:
                argv = sys.argv[1:]
                command = parser(chosen_verb(argv))
                fewer_collections()
            else:  # called from Python (tests), whose collector is left alone
                command = parser(chosen_verb(argv))
            args = command.parse_args(argv)
            args.redactor = redactor
            args.repo = git.toplevel(args.repo or Path.cwd())
            status: int = args.func(args)
            sys.stdout.flush()  # a closed pipe shows here, where the handler ends it quietly
            return status
    except Exit as stop:
        return stop.status


if __name__ == "__main__":
    sys.exit(main())
