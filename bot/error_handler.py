"""Turning any error into one clean message and an exit status."""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from bot.errors import HubbotError, UsageError

EXIT_USER_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_PIPE_CLOSED = 141  # the shell's status for a program ended by SIGPIPE


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
    except BrokenPipeError:
        # The reader went away (`hubbot plan | head`): end quietly, as a pipe-closed program.
        _discard_stdout()
        raise Exit(EXIT_PIPE_CLOSED) from None
    except Exception as exc:  # a bug: show where, but still redacted
        frames = traceback.format_exception(type(exc), exc, exc.__traceback__)
        print(redact("".join(frames)), file=sys.stderr, end="")
        print("hubbot: internal error (a bug in hubbot): please report it", file=sys.stderr)
        raise Exit(EXIT_USER_ERROR) from None


def _discard_stdout() -> None:
    """Point standard output at /dev/null, so flushing what is left cannot fail again."""
    try:
        descriptor = os.open(os.devnull, os.O_WRONLY)
        os.dup2(descriptor, sys.stdout.fileno())
        os.close(descriptor)
    except (OSError, ValueError):
        pass  # not a real file descriptor (captured output): nothing is left to flush


def _lines(exc: HubbotError) -> list[str]:
    problems = getattr(exc, "problems", None)
    if problems:
        return [str(p) for p in problems]
    return [str(exc)]
