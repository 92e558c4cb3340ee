"""Image tags are content addresses: same content, same tag, whatever the history."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.imagetag import reads_as_non_string, tag_for_tree
from bot.source import GitCommit, WorkTree
from bot.values import build
from tests.fixtures.repos import commit_all, git, write

IMAGE_DIR = "deployments/tess-private/images/default"


def tag_at(repo: Path, ref: str | None) -> str:
    source = WorkTree(repo) if ref is None else GitCommit(repo, ref)
    return build(source, "tess-private", "staging").images[0].tag


def test_the_work_tree_hash_is_gits_tree_id(hub_repo: Path) -> None:
    write(hub_repo, f"{IMAGE_DIR}/postBuild", "#!/bin/sh\n")
    (hub_repo / IMAGE_DIR / "postBuild").chmod(0o755)
    write(hub_repo, f"{IMAGE_DIR}/sub/dir/file.txt", "x\n")
    commit_all(hub_repo, "nested files and an executable")
    expected = git(hub_repo, "rev-parse", f"HEAD:{IMAGE_DIR}")
    assert WorkTree(hub_repo).tree_hash(IMAGE_DIR) == expected
    assert tag_at(hub_repo, None) == tag_for_tree(expected)


def test_uncommitted_and_ignored_files(hub_repo: Path) -> None:
    before = tag_at(hub_repo, None)
    write(hub_repo, ".gitignore", "*.pyc\n")
    write(hub_repo, f"{IMAGE_DIR}/cache.pyc", "ignored")
    assert tag_at(hub_repo, None) == before
    write(hub_repo, f"{IMAGE_DIR}/requirements.txt", "astropy\n")
    assert tag_at(hub_repo, None) != before


@pytest.mark.parametrize("change", ["edit", "add", "delete", "chmod"])
def test_any_change_in_the_image_directory_changes_the_tag(hub_repo: Path, change: str) -> None:
    if change == "delete":  # a directory left empty is an error, not a tag
        write(hub_repo, f"{IMAGE_DIR}/start", "#!/bin/sh\nexec \"$@\"\n")
        commit_all(hub_repo, "a second file")
    before = tag_at(hub_repo, "HEAD")
    target = hub_repo / IMAGE_DIR / "environment.yml"
    if change == "edit":
        target.write_text(target.read_text() + "  - scipy\n")
    elif change == "add":
        write(hub_repo, f"{IMAGE_DIR}/apt.txt", "git\n")
    elif change == "delete":
        target.unlink()
    else:
        target.chmod(0o755)
    commit_all(hub_repo, change)
    assert tag_at(hub_repo, "HEAD") != before
    assert tag_at(hub_repo, None) == tag_at(hub_repo, "HEAD")


def test_changes_outside_the_image_directory_keep_the_tag(hub_repo: Path) -> None:
    before = tag_at(hub_repo, "HEAD")
    write(hub_repo, "README.md", "docs\n")
    write(hub_repo, "deployments/tess-private/config/prod.yaml", "{}\n")
    commit_all(hub_repo, "unrelated")
    assert tag_at(hub_repo, "HEAD") == before


def test_rebase_squash_and_revert_keep_the_tag(hub_repo: Path) -> None:
    original = tag_at(hub_repo, "staging")
    git(hub_repo, "checkout", "-q", "-b", "feature")
    env_file = hub_repo / IMAGE_DIR / "environment.yml"
    env_file.write_text(env_file.read_text() + "  - scipy\n")
    commit_all(hub_repo, "add scipy")
    write(hub_repo, f"{IMAGE_DIR}/apt.txt", "git\n")
    commit_all(hub_repo, "add apt.txt")
    feature_tag = tag_at(hub_repo, "feature")

    # staging moves on elsewhere; the feature is rebased onto it.
    git(hub_repo, "checkout", "-q", "staging")
    write(hub_repo, "README.md", "moved on\n")
    commit_all(hub_repo, "staging moves")
    git(hub_repo, "checkout", "-q", "feature")
    git(hub_repo, "rebase", "-q", "staging")
    assert git(hub_repo, "rev-parse", "feature") != git(hub_repo, "rev-parse", "feature@{1}")
    assert tag_at(hub_repo, "feature") == feature_tag

    # Squash-merge into staging: one new commit, same content, same tag.
    git(hub_repo, "checkout", "-q", "staging")
    git(hub_repo, "merge", "-q", "--squash", "feature")
    commit_all(hub_repo, "squashed feature")
    assert tag_at(hub_repo, "staging") == feature_tag

    # Reverting back to the old content gives the old tag back.
    git(hub_repo, "revert", "--no-edit", "HEAD")
    assert tag_at(hub_repo, "staging") == original


@pytest.mark.parametrize(
    ("text", "risky"),
    [
        ("123", True),
        ("1e3", True),
        ("0x1F", True),
        ("012", True),
        ("1:20", True),
        ("1_000", True),
        (".5", True),
        ("yes", True),
        ("null", True),
        ("", True),
        ("tree-0123456789ab", False),
        ("v1.2.3", False),
        ("1.2.3", False),
        ("e3", False),
    ],
)
def test_which_tags_read_as_non_strings(text: str, risky: bool) -> None:
    assert reads_as_non_string(text) is risky


def test_computed_tags_always_read_as_strings() -> None:
    for tree in ("0" * 40, "1234567890" * 4, "1e30000000" * 4):
        assert not reads_as_non_string(tag_for_tree(tree))
