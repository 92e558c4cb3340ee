"""bot/source.py reads what git holds: a symbolic link is refused in the work tree and commits
alike, and a file that is not UTF-8 text is one error."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.errors import HubbotError
from bot.source import GitCommit, Source, WorkTree
from tests.fixtures.repos import commit_all, write

COMMON = "deployments/tess-public/config/common.yaml"
IMAGE_DIR = "deployments/tess-private/images/default"


def both(repo: Path) -> list[Source]:
    """The work tree and HEAD, after committing it as it is."""
    commit_all(repo, "as the work tree is")
    return [WorkTree(repo), GitCommit(repo, "HEAD")]


def error_of(read: object) -> str:
    assert callable(read)
    with pytest.raises(HubbotError) as caught:
        read()
    return str(caught.value)


def test_a_layer_file_linked_outside_the_repository(hub_repo: Path, tmp_path: Path) -> None:
    outside = write(tmp_path, "outside/common.yaml", "jupyterhub: {}\n")
    (hub_repo / COMMON).unlink()
    (hub_repo / COMMON).symlink_to(outside)
    for source in both(hub_repo):
        assert error_of(lambda source=source: source.read(COMMON)) == (
            f"{COMMON}: is a symbolic link (to {outside}): hubbot reads only files as git holds "
            "them; replace the link with the file or directory itself"
        )


def test_a_link_inside_the_repository_is_refused_too(hub_repo: Path) -> None:
    staging = "deployments/tess-public/config/staging.yaml"
    (hub_repo / staging).unlink()
    (hub_repo / staging).symlink_to("common.yaml")
    for source in both(hub_repo):
        assert error_of(lambda source=source: source.read(staging)).startswith(
            f"{staging}: is a symbolic link (to common.yaml)"
        )


def test_a_linked_directory_on_the_way_is_named(hub_repo: Path, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere"
    (hub_repo / "deployments/tess-public/config").rename(outside)
    (hub_repo / "deployments/tess-public/config").symlink_to(outside)
    for source in both(hub_repo):
        for read in (
            lambda source=source: source.read(COMMON),
            lambda source=source: source.children("deployments/tess-public/config"),
        ):
            assert error_of(read).startswith(
                f"deployments/tess-public/config: is a symbolic link (to {outside})"
            )


def test_a_link_among_the_image_directory_entries(hub_repo: Path) -> None:
    (hub_repo / IMAGE_DIR / "environment-link.yml").symlink_to("/etc/passwd")
    for source in both(hub_repo):
        assert error_of(lambda source=source: source.tree_hash(IMAGE_DIR)).startswith(
            f"{IMAGE_DIR}/environment-link.yml: is a symbolic link (to /etc/passwd)"
        )


def test_an_image_directory_that_is_a_link(hub_repo: Path, tmp_path: Path) -> None:
    outside = tmp_path / "image"
    (hub_repo / IMAGE_DIR).rename(outside)
    (hub_repo / IMAGE_DIR).symlink_to(outside)
    for source in both(hub_repo):
        assert error_of(lambda source=source: source.tree_hash(IMAGE_DIR)).startswith(
            f"{IMAGE_DIR}: is a symbolic link (to {outside})"
        )


@pytest.mark.parametrize("path", ["../outside.yaml", "deployments/../../outside.yaml", "/etc"])
def test_a_path_outside_the_repository(hub_repo: Path, path: str) -> None:
    for source in both(hub_repo):
        assert error_of(lambda source=source: source.read(path)) == (
            f"{path}: this path is outside the repository: name a file inside it"
        )


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
