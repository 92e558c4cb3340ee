"""bot/source.py: a file that is not UTF-8 text is one error, from the work tree or a commit."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.errors import HubbotError
from bot.source import GitCommit, WorkTree
from tests.fixtures.repos import commit_all

LAYER = "deployments/tess-public/config/common.yaml"


@pytest.mark.parametrize(
    ("junk", "offset", "line"),
    [
        pytest.param(b"x: caf\xe9\n", 6, 1, id="one latin-1 byte"),
        pytest.param(b"a: 1\nb: 2\n\x7fELF\x02\x01\x01\x00\x00\xff\xfe", 19, 3, id="binary"),
    ],
)
def test_a_file_that_is_not_utf8_names_the_byte_offset(
    hub_repo: Path, junk: bytes, offset: int, line: int
) -> None:
    (hub_repo / LAYER).write_bytes(junk)
    commit_all(hub_repo, "junk")
    for source in (WorkTree(hub_repo), GitCommit(hub_repo, "HEAD")):
        with pytest.raises(HubbotError) as error:
            source.read(LAYER)
        assert str(error.value) == (
            f"{LAYER}:{line}: byte offset {offset} (0x{junk[offset]:02x}) is not UTF-8: the file "
            "must be UTF-8 text (a binary file?)"
        )
