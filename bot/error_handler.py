"""Turning any error into one clean message and an exit status."""

from __future__ import annotations

import sys
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from bot.errors import HubbotError, UsageError

EXIT_USER_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class Exit(Exception):
    """Ends the command with `status` after its message was printed."""

    def __init__(self, status: int) -> None:
        self.status = status


@contextmanager
def error_handler(redact: Callable[[str], str] = lambda text: text) -> Iterator[None]:
    """Print a HubbotError as `hubbot: message`; anything else as a short bug report.

    Messages pass through `redact` so no secret value can escape in one.
    """
    try:
        yield
    except UsageError as exc:
        print(f"hubbot: {redact(str(exc))}", file=sys.stderr)
        raise Exit(EXIT_USAGE) from None
    except HubbotError as exc:
        for line in _lines(exc):
            print(f"hubbot: error: {redact(line)}", file=sys.stderr)
        raise Exit(EXIT_USER_ERROR) from None
    except KeyboardInterrupt:
        print("hubbot: interrupted", file=sys.stderr)
        raise Exit(EXIT_INTERRUPTED) from None
    except Exception as exc:  # a bug: show where, but still redacted
        frames = traceback.format_exception(type(exc), exc, exc.__traceback__)
        print(redact("".join(frames)), file=sys.stderr, end="")
        print("hubbot: internal error (a bug in hubbot): please report it", file=sys.stderr)
        raise Exit(EXIT_USER_ERROR) from None


def _lines(exc: HubbotError) -> list[str]:
    problems = getattr(exc, "problems", None)
    if problems:
        return [str(p) for p in problems]
    return [str(exc)]
