"""The exceptions that end a command with one clean message.

A HubbotError's message says what to fix and names the file and line or the
thing at fault. It never contains a secret value.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Location:
    """A place in a repository file, for messages and GitHub annotations."""

    file: str
    line: int | None = None

    def __str__(self) -> str:
        return f"{self.file}:{self.line}" if self.line is not None else self.file


class HubbotError(Exception):
    """A user-facing error: exit status 1, message printed without traceback."""

    def __init__(self, message: str, location: Location | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.location = location

    def __str__(self) -> str:
        return f"{self.location}: {self.message}" if self.location else self.message

    def as_json(self) -> dict[str, str | int | None]:
        """File, line and message, as `--format json` reports a problem."""
        where = self.location
        return {
            "file": where.file if where else None,
            "line": where.line if where else None,
            "message": self.message,
        }


class UsageError(HubbotError):
    """The command line itself is wrong: exit status 2."""


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """"did you mean `X`?" for the choice closest to a misspelt `word`; "" when none is close.

    One wording and one threshold for unknown keys, verbs, hubs and environments.
    """
    import difflib  # here: only a mistake needs it, and every command imports this module

    close = difflib.get_close_matches(word, sorted(choices), n=1, cutoff=0.75)
    return f"did you mean `{close[0]}`?" if close else ""
