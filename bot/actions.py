"""GitHub Actions' environment files and workflow commands.

Outputs go to the file named by GITHUB_OUTPUT, the job summary to
GITHUB_STEP_SUMMARY, annotations and log groups to standard output. Every
write can pass through `assert_clean` (the redactor's check), so text holding
a registered secret is refused before it reaches GitHub.
"""

from __future__ import annotations

import os
import secrets
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Literal, TextIO

from bot import markdown
from bot.errors import HubbotError

AssertClean = Callable[[str, str], None]
Level = Literal["error", "warning", "notice"]

# GitHub rejects a step summary over 1 MiB (counted in bytes, per step).
SUMMARY_LIMIT = 1024 * 1024


def _no_check(text: str, place: str) -> None:
    """Used when the caller registered no secrets."""


def escape_data(text: str) -> str:
    """Escape a workflow command's message (after the `::`)."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    """Escape a workflow command's property value (`file=...`): also `:` and `,`."""
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def annotation(
    level: Level,
    message: str,
    *,
    file: str | None = None,
    line: int | None = None,
    end_line: int | None = None,
    col: int | None = None,
    end_column: int | None = None,
    title: str | None = None,
) -> str:
    """The workflow command for one annotation, e.g. `::error file=F,line=L,title=T::msg`."""
    values: list[tuple[str, str | int | None]] = [
        ("file", file),
        ("line", line),
        ("endLine", end_line),
        ("col", col),
        ("endColumn", end_column),
        ("title", title),
    ]
    props = ",".join(f"{key}={escape_property(str(v))}" for key, v in values if v is not None)
    return f"::{level}{' ' + props if props else ''}::{escape_data(message)}"


def annotate(
    level: Level,
    message: str,
    *,
    file: str | None = None,
    line: int | None = None,
    title: str | None = None,
    assert_clean: AssertClean = _no_check,
    stream: TextIO | None = None,
) -> None:
    """Print one annotation to the job log (GitHub shows it on the file and line)."""
    command = annotation(level, message, file=file, line=line, title=title)
    assert_clean(command, "a workflow annotation")
    print(command, file=stream or sys.stdout)


@contextmanager
def group(
    title: str, *, assert_clean: AssertClean = _no_check, stream: TextIO | None = None
) -> Iterator[None]:
    """A collapsible group in the job log around what is printed inside."""
    command = f"::group::{escape_data(title)}"
    assert_clean(command, "a log group title")
    print(command, file=stream or sys.stdout, flush=True)
    try:
        yield
    finally:
        print("::endgroup::", file=stream or sys.stdout, flush=True)


def run_url(environ: Mapping[str, str] | None = None) -> str | None:
    """The web page of the current workflow run (its summary holds the full report)."""
    env = os.environ if environ is None else environ
    parts = [
        env.get(name, "") for name in ("GITHUB_SERVER_URL", "GITHUB_REPOSITORY", "GITHUB_RUN_ID")
    ]
    if not all(parts):
        return None
    server, repository, run_id = parts
    return f"{server.rstrip('/')}/{repository}/actions/runs/{run_id}"


def _target(variable: str, environ: Mapping[str, str] | None) -> Path | None:
    value = (os.environ if environ is None else environ).get(variable, "")
    return Path(value) if value else None


def set_output(
    name: str,
    value: str,
    *,
    assert_clean: AssertClean = _no_check,
    environ: Mapping[str, str] | None = None,
) -> bool:
    """Append a step output to $GITHUB_OUTPUT; False (nothing written) when it is unset.

    Values are always written in the multi-line form with a random delimiter that
    does not occur in the value, so no value can forge another output.
    """
    if not name or any(c in name for c in "\r\n=<") or name.strip() != name:
        raise HubbotError(f"invalid GitHub Actions output name {name!r}")
    path = _target("GITHUB_OUTPUT", environ)
    if path is None:
        return False
    assert_clean(value, f"GitHub Actions output {name}")
    delimiter = f"ghadelimiter_{secrets.token_hex(16)}"
    while delimiter in value:
        delimiter = f"ghadelimiter_{secrets.token_hex(16)}"
    _append(path, f"{name}<<{delimiter}\n{value}\n{delimiter}\n", "GITHUB_OUTPUT")
    return True


def append_summary(
    text: str,
    *,
    assert_clean: AssertClean = _no_check,
    environ: Mapping[str, str] | None = None,
    limit: int = SUMMARY_LIMIT,
) -> bool:
    """Append markdown to $GITHUB_STEP_SUMMARY; False (nothing written) when it is unset.

    What the step already wrote counts towards the 1 MiB limit; beyond it the text
    is cut where a markdown split would cut and a note says so.
    """
    path = _target("GITHUB_STEP_SUMMARY", environ)
    if path is None:
        return False
    assert_clean(text, "the job summary")
    room = limit - (path.stat().st_size if path.exists() else 0)
    data = text if text.endswith("\n") else text + "\n"
    if len(data.encode()) > room:
        data = _fit(data, room, limit)
    if data:
        _append(path, data, "GITHUB_STEP_SUMMARY")
    return True


def _fit(text: str, room: int, limit: int) -> str:
    """As much of `text` as fits in `room` bytes of UTF-8, with a truncation note."""
    total = len(text.encode())
    note = (
        f"_The job summary is truncated here: it is limited to {limit // 1024} KiB "
        f"and the full report has {total:,} bytes; see the job's artifact._\n"
    )
    if room < len(note.encode()) + 300:
        return ""
    chars = room
    while chars >= len(note) + 300:
        kept = markdown.truncate(text, chars, note)
        if len(kept.encode()) <= room:
            return kept
        # Multi-byte characters: shrink the character budget by the overshoot.
        chars -= len(kept.encode()) - room
    return ""


def _append(path: Path, text: str, variable: str) -> None:
    try:
        with path.open("a", encoding="utf-8") as handle:
            handle.write(text)
    except OSError as exc:
        raise HubbotError(f"cannot write to ${variable} ({path}): {exc.strerror}") from None
