"""Scrubbing decrypted secret values from everything the bot outputs.

Every decrypted leaf is registered the moment sops returns it, together with
the forms it takes when it is re-encoded on its way out: base64 (Kubernetes
Secrets), URL-safe base64, JSON or YAML double-quoted escapes, Python reprs
(tracebacks) and URL quoting. Output passes through `redact`; text about to
leave for good (a PR comment, a step summary) passes through `assert_clean`,
which refuses rather than guesses.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import re
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO
from urllib.parse import quote, quote_plus

from bot.errors import HubbotError

REDACTED = "<redacted>"
# Shorter values match too much ordinary text to be scrubbed reliably.
MIN_LENGTH = 4
# Below this, a value's base64 at an arbitrary offset is too short to tell from noise.
EMBEDDED_MIN_BYTES = 8


class Redactor:
    """The secret values this process has seen, and every encoding of them."""

    def __init__(self) -> None:
        self._needles: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        self._lock = threading.Lock()  # parallel deploys decrypt and print concurrently

    def __len__(self) -> int:
        return len(self._needles)

    def register(self, value: str) -> bool:
        """Remember `value` and its encodings; False if it is too short to redact safely."""
        if len(value) < MIN_LENGTH:
            return False
        added = {form for form in encodings(value) if len(form) >= MIN_LENGTH}
        with self._lock:
            if not added <= self._needles:
                self._needles |= added
                self._pattern = None
        return True

    def redact(self, text: str) -> str:
        pattern = self._compiled()
        return text if pattern is None else pattern.sub(REDACTED, text)

    def contains_secret(self, text: str) -> bool:
        pattern = self._compiled()
        return pattern is not None and pattern.search(text) is not None

    def assert_clean(self, text: str, place: str) -> None:
        """Refuse text that still holds a secret; the error names `place`, never the value."""
        if self.contains_secret(text):
            raise HubbotError(
                f"refusing to write {place}: it contains a decrypted secret value "
                "(this is a bug in hubbot; nothing was written)"
            )

    def _compiled(self) -> re.Pattern[str] | None:
        with self._lock:
            if self._pattern is None and self._needles:
                # Longest first, so a value wins over any of its own substrings.
                ordered = sorted(self._needles, key=lambda needle: (-len(needle), needle))
                self._pattern = re.compile("|".join(re.escape(needle) for needle in ordered))
            return self._pattern


def encodings(value: str) -> set[str]:
    """`value` and the forms it takes when something re-encodes it for output."""
    raw = value.encode()
    forms = {
        value,
        base64.b64encode(raw).decode(),
        base64.urlsafe_b64encode(raw).decode(),
        json.dumps(value)[1:-1],
        json.dumps(value, ensure_ascii=False)[1:-1],
        repr(value)[1:-1],
        quote(value, safe=""),
        quote_plus(value, safe=""),
    }
    forms |= {form.rstrip("=") for form in forms}
    if len(raw) >= EMBEDDED_MIN_BYTES:
        forms |= embedded_base64(raw)
    # A multi-line value (a PEM key) is often printed re-indented, line by line.
    forms |= {line.strip() for line in value.splitlines()}
    return {form for form in forms if form}


def embedded_base64(raw: bytes) -> set[str]:
    """What `raw` looks like inside the base64 of a larger blob (a config file in a Secret).

    Base64 works on 3-byte groups, so the value's characters depend on its offset
    modulo 3; for each offset, keep only the characters that its bytes alone decide.
    """
    forms = set()
    for offset in range(3):
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            text = encode(bytes(offset) + raw).decode()
            start = -(-8 * offset // 6)  # first character free of the padding bytes
            end = 8 * (offset + len(raw)) // 6  # last character not needing later bytes
            forms.add(text[start:end])
    return forms


class RedactingStream(io.TextIOBase):
    """A text stream that scrubs what passes through it, one whole line at a time.

    Holding back the unfinished line means a value written in pieces is still
    seen whole.
    """

    def __init__(self, target: TextIO, redactor: Redactor) -> None:
        super().__init__()
        self._target = target
        self._redactor = redactor
        self._pending = ""
        self._lock = threading.Lock()  # threads (parallel deploys) share the stream

    @property
    def target(self) -> TextIO:
        return self._target

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self._target, "encoding", "utf-8")

    def isatty(self) -> bool:
        return self._target.isatty()

    def writable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self._target.fileno()

    def write(self, text: str) -> int:
        with self._lock:
            self._pending += text
            complete, newline, rest = self._pending.rpartition("\n")
            if newline:
                self._target.write(self._redactor.redact(complete + newline))
                self._pending = rest
        return len(text)

    def flush(self) -> None:
        with self._lock:
            if self._pending:
                self._target.write(self._redactor.redact(self._pending))
                self._pending = ""
            self._target.flush()


class RedactingFilter(logging.Filter):
    """Scrubs a log record's message and traceback before any handler formats it."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self._redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self._redactor.redact(record.getMessage())
        record.args = None
        if record.exc_info:
            text = logging.Formatter().formatException(record.exc_info)
            record.exc_text = self._redactor.redact(text)
            record.exc_info = None
        if record.stack_info:
            record.stack_info = self._redactor.redact(record.stack_info)
        return True


@contextmanager
def installed(redactor: Redactor) -> Iterator[None]:
    """Route this process's stdout, stderr and log records through `redactor`.

    Log records are scrubbed where they are made (the record factory), so a
    handler writing to a file of its own is covered too.
    """
    stdout, stderr = sys.stdout, sys.stderr
    scrub = RedactingFilter(redactor)
    make_record = logging.getLogRecordFactory()

    def redacted_record(*args: object, **kwargs: object) -> logging.LogRecord:
        record = make_record(*args, **kwargs)
        scrub.filter(record)
        return record

    sys.stdout = RedactingStream(stdout, redactor)
    sys.stderr = RedactingStream(stderr, redactor)
    logging.setLogRecordFactory(redacted_record)
    try:
        yield
    finally:
        logging.setLogRecordFactory(make_record)
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        sys.stdout, sys.stderr = stdout, stderr
