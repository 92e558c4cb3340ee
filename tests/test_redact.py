"""The redactor: every registered value and its encodings are scrubbed from all output."""

from __future__ import annotations

import base64
import io
import json
import logging
import sys
from pathlib import Path
from urllib.parse import quote

import pytest

from bot.errors import HubbotError
from bot.redact import REDACTED, RedactingStream, Redactor, installed

SECRET = 'p@ss "word"/with+odd=chars&\\ok'
PEM = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\nBKcwggSjAgEAAoIBAQC7\n" + (
    "-----END PRIVATE KEY-----"
)


@pytest.fixture
def redactor() -> Redactor:
    scrub = Redactor()
    assert scrub.register(SECRET)
    assert scrub.register(PEM)
    return scrub


@pytest.mark.parametrize(
    "form",
    [
        SECRET,
        base64.b64encode(SECRET.encode()).decode(),
        base64.urlsafe_b64encode(SECRET.encode()).decode(),
        base64.b64encode(SECRET.encode()).decode().rstrip("="),
        json.dumps(SECRET)[1:-1],
        repr(SECRET)[1:-1],
        quote(SECRET, safe=""),
    ],
    ids=["raw", "base64", "urlsafe-base64", "unpadded-base64", "json", "repr", "url"],
)
def test_every_encoding_is_redacted(redactor: Redactor, form: str) -> None:
    assert redactor.redact(f"before {form} after") == f"before {REDACTED} after"


@pytest.mark.parametrize("prefix", ["", "a", "ab", "abc", "token: "])
def test_a_value_inside_a_base64_blob_is_redacted(redactor: Redactor, prefix: str) -> None:
    blob = f"{prefix}{SECRET}\nmore: config\n".encode()
    harmless = f"{prefix}not the secret at all\nmore: config\n".encode()
    for encode in (base64.b64encode, base64.urlsafe_b64encode):
        assert REDACTED in redactor.redact(f"data: {encode(blob).decode()}")
        control = f"data: {encode(harmless).decode()}"
        assert redactor.redact(control) == control


def test_a_pem_value_is_redacted_whole_and_line_by_line(redactor: Redactor) -> None:
    assert redactor.redact(f"key: {PEM}") == f"key: {REDACTED}"
    reindented = "\n".join("    " + line for line in PEM.splitlines())
    assert "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC" not in redactor.redact(reindented)
    assert "BKcwggSjAgEAAoIBAQC7" not in redactor.redact(reindented)


def test_text_without_secrets_is_unchanged(redactor: Redactor) -> None:
    text = "jupyterhub:\n  cull:\n    timeout: 3600\n"
    assert redactor.redact(text) == text


def test_an_empty_redactor_changes_nothing() -> None:
    assert Redactor().redact("anything at all") == "anything at all"


def test_short_values_are_reported_unsafe_and_not_registered() -> None:
    scrub = Redactor()
    assert scrub.register("abc") is False
    assert len(scrub) == 0
    assert scrub.redact("abc abcd") == "abc abcd"


def test_a_longer_value_wins_over_its_substring() -> None:
    scrub = Redactor()
    scrub.register("secretpart")
    scrub.register("secretpart-and-more")
    assert scrub.redact("x secretpart-and-more y") == f"x {REDACTED} y"


def test_assert_clean_names_the_place_not_the_value(redactor: Redactor) -> None:
    redactor.assert_clean("nothing secret here", "the PR comment")
    encoded = base64.b64encode(SECRET.encode()).decode()
    with pytest.raises(HubbotError) as caught:
        redactor.assert_clean(f"oops {encoded}", "the PR comment")
    assert str(caught.value) == (
        "refusing to write the PR comment: it contains a decrypted secret value "
        "(this is a bug in hubbot; nothing was written)"
    )


def test_the_stream_sees_a_value_written_in_pieces(redactor: Redactor) -> None:
    target = io.StringIO()
    stream = RedactingStream(target, redactor)
    stream.write("token: " + SECRET[:5])
    stream.write(SECRET[5:] + "\nnext")
    assert target.getvalue() == f"token: {REDACTED}\n"
    stream.flush()
    assert target.getvalue() == f"token: {REDACTED}\nnext"


def test_installed_scrubs_stdout_stderr_and_logging(
    redactor: Redactor, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    log_file = tmp_path / "bot.log"
    handler = logging.FileHandler(log_file)
    logger = logging.getLogger("hubbot.test")
    logger.addHandler(handler)
    try:
        with installed(redactor):
            print(f"out {SECRET}")
            print(f"err {SECRET}", file=sys.stderr)
            logger.warning("logged %s", SECRET)
            try:
                raise ValueError(SECRET)
            except ValueError:
                logger.exception("failed")
    finally:
        logger.removeHandler(handler)
        handler.close()
    captured = capsys.readouterr()
    assert captured.out == f"out {REDACTED}\n"
    assert captured.err.startswith(f"err {REDACTED}\n")
    logged = log_file.read_text()
    assert f"logged {REDACTED}" in logged
    assert f"ValueError: {REDACTED}" in logged
    assert SECRET not in captured.err + logged


def test_installed_restores_the_streams(redactor: Redactor) -> None:
    before = sys.stdout, sys.stderr, logging.getLogRecordFactory()
    with installed(redactor):
        assert isinstance(sys.stdout, RedactingStream)
    assert (sys.stdout, sys.stderr, logging.getLogRecordFactory()) == before
