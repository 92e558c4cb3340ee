"""bot/source.py reads what git holds: a symbolic link is refused in the work tree and commits
alike, and a file that is not UTF-8 text is one error. A commit's files are read from git when
first asked for, each once, by one git process that ends with the source."""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from bot import git as bot_git
from bot.errors import HubbotError
from bot.source import GitCommit, Source, WorkTree, directory_tree_id, prefetch
from tests.fixtures.repos import commit_all, git, write

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


# --- reading a commit's files lazily ------------------------------------------------------

BIG = "big/values.yaml"


@pytest.fixture
def small_repo(tmp_path: Path) -> Path:
    """A git repository of a few dozen files: YAML and not, empty, without a final newline,
    and one larger than any pipe's buffer."""
    repo = tmp_path / "small"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    git(repo, "config", "user.email", "test@tess-hubs.invalid")
    git(repo, "config", "user.name", "hubbot tests")
    git(repo, "config", "commit.gpgsign", "false")
    for hub in range(12):
        write(repo, f"deployments/hub-{hub}/hubploy.yaml", f"images: []\nname: hub-{hub}\n")
        write(repo, f"deployments/hub-{hub}/config/common.yaml", f"replicas: {hub}\n")
        write(repo, f"deployments/hub-{hub}/README.md", f"# hub {hub}\n")
    write(repo, "empty.yaml", "")
    write(repo, "no-newline.json", '{"a": 1}')
    write(repo, BIG, "".join(f"key{n}: {'x' * 60}\n" for n in range(5000)))
    commit_all(repo, "files")
    return repo


def tracked(repo: Path) -> list[str]:
    return git(repo, "ls-files").splitlines()


def shown(repo: Path, path: str) -> str:
    """The file as `git show` gives it."""
    return subprocess.run(
        ["git", "-C", str(repo), "show", f"HEAD:{path}"], check=True, capture_output=True
    ).stdout.decode()


def within(seconds: float, call: Callable[[], object]) -> object:
    """`call()`, or a failure if it takes longer than `seconds` (a hang, not an answer)."""
    outcome: list[object] = []

    def run() -> None:
        try:
            outcome.append(call())
        except BaseException as exc:  # handed to the test's thread
            outcome.append(exc)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(seconds)
    assert outcome, f"no answer within {seconds} s"
    if isinstance(outcome[0], BaseException):
        raise outcome[0]
    return outcome[0]


def test_a_commit_reads_only_the_files_asked_for(small_repo: Path) -> None:
    source = GitCommit(small_repo, "HEAD")
    assert source.objects.reads == 0
    assert source.read("deployments/hub-3/config/common.yaml") == "replicas: 3\n"
    assert source.objects.reads == 1
    source.read("deployments/hub-3/config/common.yaml")
    # Another view of the same commit shares what was read.
    again = GitCommit(small_repo, "main")
    assert again.read("deployments/hub-3/config/common.yaml") == "replicas: 3\n"
    assert again.objects.reads == 1
    assert again.objects.pid == source.objects.pid  # one git process for the repository
    assert again.read("deployments/hub-3/config/absent.yaml") is None
    assert again.read("deployments/hub-3") is None  # a directory
    assert again.objects.reads == 1


def test_a_commit_reads_what_git_show_gives(small_repo: Path) -> None:
    source = GitCommit(small_repo, "HEAD")
    paths = tracked(small_repo)
    random.Random(7).shuffle(paths)
    for path in paths:
        assert source.read(path) == shown(small_repo, path), path
    assert source.read(BIG) is not None
    assert len(source.read(BIG) or "") > 300_000
    assert source.read("empty.yaml") == ""
    assert source.read("no-newline.json") == '{"a": 1}'
    assert source.objects.reads == len(set(git(small_repo, "ls-files", "-s").split()[1::4]))


def test_a_missing_object_is_an_error_and_the_next_read_still_right(small_repo: Path) -> None:
    source = GitCommit(small_repo, "HEAD")
    oid = git(small_repo, "rev-parse", "HEAD:deployments/hub-5/config/common.yaml")
    (small_repo / ".git/objects" / oid[:2] / oid[2:]).unlink()  # a clone missing it
    with pytest.raises(HubbotError) as caught:
        within(30, lambda: source.read("deployments/hub-5/config/common.yaml"))
    assert str(caught.value) == f"git has no object {oid} in {small_repo}: is the clone complete?"
    assert within(30, lambda: source.read("deployments/hub-6/config/common.yaml")) == (
        "replicas: 6\n"
    )


def test_several_missing_objects_asked_at_once(small_repo: Path) -> None:
    reader = bot_git.ObjectReader(small_repo)
    present = git(small_repo, "rev-parse", "HEAD:empty.yaml")
    other = git(small_repo, "rev-parse", "HEAD:no-newline.json")
    with pytest.raises(HubbotError, match=r"git has no object 0{40} "):
        within(30, lambda: reader.read_many(["0" * 40, present, "1" * 40]))
    # Every answer was read: the next is the next object's.
    assert within(30, lambda: reader.read(other)) == b'{"a": 1}'
    assert within(30, lambda: reader.read(present)) == b""
    reader.close()


def test_a_git_process_that_died_is_an_error_not_a_hang(small_repo: Path) -> None:
    source = GitCommit(small_repo, "HEAD")
    source.read("deployments/hub-1/config/common.yaml")
    pid = source.objects.pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(HubbotError) as caught:
        within(30, lambda: source.read("deployments/hub-2/config/common.yaml"))
    assert str(caught.value).startswith(f"git cat-file --batch in {small_repo} ended: ")
    # The next read starts another.
    assert within(30, lambda: source.read("deployments/hub-2/config/common.yaml")) == (
        "replicas: 2\n"
    )
    assert source.objects.pid not in (None, pid)


def test_a_repository_gone_after_opening_is_an_error_naming_git(small_repo: Path) -> None:
    source = GitCommit(small_repo, "HEAD")
    (small_repo / ".git").rename(small_repo.parent / "moved.git")
    with pytest.raises(HubbotError) as caught:
        within(30, lambda: source.read("deployments/hub-1/config/common.yaml"))
    # The directory's listing or the file: whichever git looks for first.
    assert re.fullmatch(
        f"git has no object [0-9a-f]{{40}} in {small_repo}: is the clone complete\\?",
        str(caught.value),
    )
    # Once git has ended, a new one says why it cannot start.
    source.objects.close()
    with pytest.raises(HubbotError) as caught:
        within(30, lambda: source.read("deployments/hub-2/config/common.yaml"))
    assert str(caught.value).startswith(f"git cat-file --batch in {small_repo} ended: fatal: ")


def test_threads_reading_at_once_get_each_file(small_repo: Path) -> None:
    source = GitCommit(small_repo, "HEAD")
    paths = tracked(small_repo)
    expected = {path: shown(small_repo, path) for path in paths}
    start = threading.Barrier(6)
    found: list[dict[str, str | None]] = []

    def read_all(seed: int) -> None:
        order = list(paths)
        random.Random(seed).shuffle(order)
        start.wait()
        found.append({path: source.read(path) for path in order})

    # Daemon threads: a reader that deadlocks fails the test instead of hanging pytest.
    threads = [threading.Thread(target=read_all, args=(seed,), daemon=True) for seed in range(6)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 60
    for thread in threads:
        thread.join(max(0, deadline - time.monotonic()))
    assert len(found) == 6
    assert all(result == expected for result in found)
    assert source.objects.reads == len(set(git(small_repo, "ls-files", "-s").split()[1::4]))


def test_a_reader_collected_leaves_no_git_process(small_repo: Path) -> None:
    reader = bot_git.ObjectReader(small_repo)
    reader.read(git(small_repo, "rev-parse", f"HEAD:{BIG}"))
    pid = reader.pid
    assert pid is not None
    del reader  # the last reference: collected now
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # already waited for: no zombie, nothing running


def test_a_process_ending_with_a_commit_open_leaves_no_git_process(small_repo: Path) -> None:
    # The check is registered first, so it runs last at exit: after the reader's finalizer.
    script = textwrap.dedent(
        """
        import atexit, os, sys

        def no_git_left():
            try:
                os.waitpid(PID[0], os.WNOHANG)
            except ChildProcessError:
                return
            sys.stderr.write(f"git process {PID[0]} left behind\\n")
            os._exit(3)

        PID = []
        atexit.register(no_git_left)

        from pathlib import Path
        from bot.source import GitCommit

        source = GitCommit(Path(sys.argv[1]), "HEAD")
        assert source.read("deployments/hub-1/config/common.yaml") == "replicas: 1\\n"
        PID.append(source.objects.pid)
        """
    )
    done = subprocess.run(
        [sys.executable, "-W", "error::ResourceWarning", "-c", script, str(small_repo)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
    )
    assert (done.returncode, done.stderr) == (0, "")


def test_files_a_caller_will_read_are_read_ahead_together(small_repo: Path) -> None:
    os.symlink("common.yaml", small_repo / "deployments/hub-2/config/link.yaml")
    commit_all(small_repo, "a link")
    source = GitCommit(small_repo, "HEAD")
    configs = [f"deployments/hub-{hub}/config" for hub in range(12)]
    source.prefetch(["deployments/hub-0/hubploy.yaml", "absent.yaml", "deployments"], configs)
    # common.yaml of each hub, and hub-0's hubploy.yaml; not the link, nor what is absent.
    assert source.objects.reads == 13
    for hub in range(12):
        path = f"deployments/hub-{hub}/config/common.yaml"
        assert source.read(path) == shown(small_repo, path)
    assert source.read("deployments/hub-0/hubploy.yaml") == "images: []\nname: hub-0\n"
    assert source.objects.reads == 13
    with pytest.raises(HubbotError, match=r"link\.yaml: is a symbolic link"):
        source.read("deployments/hub-2/config/link.yaml")


def test_reading_ahead_leaves_errors_to_the_read(small_repo: Path) -> None:
    source = GitCommit(small_repo, "HEAD")
    oid = git(small_repo, "rev-parse", "HEAD:deployments/hub-5/config/common.yaml")
    (small_repo / ".git/objects" / oid[:2] / oid[2:]).unlink()
    source.prefetch(directories=["deployments/hub-5/config", "deployments/hub-6/config"])
    assert source.read("deployments/hub-6/config/common.yaml") == "replicas: 6\n"
    with pytest.raises(HubbotError, match=f"git has no object {oid} "):
        source.read("deployments/hub-5/config/common.yaml")
    prefetch(WorkTree(small_repo), ["empty.yaml"], ["deployments"])  # a work tree: nothing to do


def test_a_commits_directory_ids_are_gits(small_repo: Path) -> None:
    source = GitCommit(small_repo, "HEAD")
    for path in ("deployments", "deployments/hub-3", "deployments/hub-3/config/"):
        assert source.tree_hash(path) == git(small_repo, "rev-parse", f"HEAD:{path.rstrip('/')}")
    assert source.tree_hash("deployments/hub-99") is None
    assert source.tree_hash("empty.yaml") is None  # a file, not a directory


def test_a_directory_on_disk_has_its_commits_id_only_with_exactly_its_files(
    small_repo: Path,
) -> None:
    directory = small_repo / "deployments"
    committed = GitCommit(small_repo, "HEAD").tree_hash("deployments")
    assert directory_tree_id(directory) == committed
    # Ignored by git but read by any program reading the directory: not the commit's files.
    write(small_repo, ".gitignore", "*.extra\n")
    write(small_repo, "deployments/hub-3/templates.extra", "kind: Secret\n")
    assert directory_tree_id(directory) != committed
    (directory / "hub-3/templates.extra").unlink()
    (directory / "hub-4/README.md").chmod(0o755)
    assert directory_tree_id(directory) != committed
    (directory / "hub-4/README.md").chmod(0o644)
    assert directory_tree_id(directory) == committed
    (directory / "hub-5/link").symlink_to("README.md")
    assert directory_tree_id(directory) is None
    assert directory_tree_id(small_repo / "absent") is None


@pytest.mark.parametrize("ref", ["no-such-branch", "HEAD\nHEAD~0", "HEAD HEAD", ""])
def test_a_ref_git_does_not_know_is_named_and_asks_nothing_else(
    small_repo: Path, ref: str
) -> None:
    with pytest.raises(HubbotError) as caught:
        GitCommit(small_repo, ref)
    assert str(caught.value) == f"unknown git ref {ref!r}: fetch it or name an existing branch"
    # Still in step with git: nothing of the refused ref is left to answer.
    source = GitCommit(small_repo, "HEAD")
    assert source.read("deployments/hub-1/config/common.yaml") == "replicas: 1\n"


def test_a_file_unchanged_between_commits_is_read_once(small_repo: Path) -> None:
    write(small_repo, "deployments/hub-1/config/common.yaml", "replicas: 10\n")
    commit_all(small_repo, "hub-1 grows")
    base, head = GitCommit(small_repo, "HEAD~1"), GitCommit(small_repo, "HEAD")
    for source in (base, head):
        source.read("deployments/hub-2/config/common.yaml")
        source.read("deployments/hub-1/config/common.yaml")
    assert head.objects is base.objects
    assert head.objects.reads == 3


def test_a_submodule_is_no_file_to_read(small_repo: Path) -> None:
    # A gitlink names a commit of another repository, which this one does not hold.
    other = "1" * 40
    git(small_repo, "update-index", "--add", "--cacheinfo", f"160000,{other},deployments/sub")
    git(small_repo, "commit", "-q", "-m", "a submodule")
    source = GitCommit(small_repo, "HEAD")
    assert source.read("deployments/sub") is None
    assert "sub" in source.children("deployments")


def test_an_object_id_is_gits_for_a_file_or_a_directory(small_repo: Path) -> None:
    source = GitCommit(small_repo, "HEAD")
    for path in ("deployments/hub-3", "deployments/hub-3/config/common.yaml"):
        assert source.object_id(path) == git(small_repo, "rev-parse", f"HEAD:{path}")
    assert source.object_id("deployments/hub-99") is None
    assert source.objects.reads == 0  # no file was read to answer


def test_a_malformed_tree_in_a_commit_is_one_error(small_repo: Path) -> None:
    # git never writes such a tree, but one can be written on purpose and pushed.
    tree = subprocess.run(
        ["git", "-C", str(small_repo), "hash-object", "-t", "tree", "--literally", "-w",
         "--stdin"],
        input=b"100644 cut", capture_output=True, check=True,
    ).stdout.decode().strip()
    commit = git(small_repo, "commit-tree", tree, "-m", "a forged tree")
    source = GitCommit(small_repo, commit)
    message = f"git tree {tree} is malformed: run `git fsck` on the clone"
    assert error_of(lambda: source.read("deployments/hub-1/hubploy.yaml")) == message
    assert error_of(lambda: source.children("deployments")) == message
    # The reader is still in step: another commit reads as before.
    assert GitCommit(small_repo, "HEAD").read("deployments/hub-1/config/common.yaml") == (
        "replicas: 1\n"
    )


# --- what the work tree holds where git holds something else -------------------------------


def committed_tree(repo: Path, path: str) -> str | None:
    """The tree id a commit of the work tree as it is gives `path`."""
    commit_all(repo, "the work tree as it is")
    return GitCommit(repo, "HEAD").tree_hash(path)


def test_a_file_made_a_directory_in_an_image_directory_is_what_a_commit_makes_it(
    hub_repo: Path,
) -> None:
    environment = hub_repo / IMAGE_DIR / "environment.yml"
    write(hub_repo, f"{IMAGE_DIR}/start", "#!/bin/sh\n")
    commit_all(hub_repo, "a start file")
    (hub_repo / IMAGE_DIR / "start").unlink()
    (hub_repo / IMAGE_DIR / "start").mkdir()  # empty: git holds no such directory
    work = WorkTree(hub_repo).tree_hash(IMAGE_DIR)
    assert work == committed_tree(hub_repo, IMAGE_DIR)
    write(hub_repo, f"{IMAGE_DIR}/start/run", "#!/bin/sh\n")
    environment.unlink()
    environment.mkdir()
    write(hub_repo, f"{IMAGE_DIR}/environment.yml/inside.yml", "dependencies: []\n")
    work = WorkTree(hub_repo).tree_hash(IMAGE_DIR)
    assert work == committed_tree(hub_repo, IMAGE_DIR)


def test_a_submodule_in_or_at_an_image_directory_is_what_a_commit_makes_it(
    hub_repo: Path,
) -> None:
    other = "1" * 40
    inside = f"{IMAGE_DIR}/vendored"
    (hub_repo / inside).mkdir()
    git(hub_repo, "update-index", "--add", "--cacheinfo", f"160000,{other},{inside}")
    assert WorkTree(hub_repo).tree_hash(IMAGE_DIR) == committed_tree(hub_repo, IMAGE_DIR)
    # The whole image directory a submodule at a commit, its files still on disk: no
    # directory of files, in the work tree and at the commit alike.
    git(hub_repo, "rm", "-q", "-r", "--cached", IMAGE_DIR)
    git(hub_repo, "update-index", "--add", "--cacheinfo", f"160000,{other},{IMAGE_DIR}")
    git(hub_repo, "commit", "-q", "-m", "the image a submodule")
    assert (hub_repo / IMAGE_DIR / "environment.yml").is_file()
    assert WorkTree(hub_repo).tree_hash(IMAGE_DIR) is None
    assert GitCommit(hub_repo, "HEAD").tree_hash(IMAGE_DIR) is None


def test_a_fifo_is_refused_before_it_is_opened(hub_repo: Path) -> None:
    # Opening a FIFO to read it waits for a writer that never comes.
    image_file = f"{IMAGE_DIR}/environment.yml"
    for fifo in (COMMON, image_file):
        (hub_repo / fifo).unlink()
        os.mkfifo(hub_repo / fifo)
    source = WorkTree(hub_repo)
    for read in (lambda: source.read(COMMON), lambda: source.tree_hash(IMAGE_DIR)):
        with pytest.raises(HubbotError) as caught:
            within(10, read)
        assert str(caught.value).endswith(
            ": is a named pipe (FIFO), not a file: hubbot reads only files as git holds them; "
            "replace it with the file itself"
        )
    assert error_of(lambda: source.read(COMMON)).startswith(f"{COMMON}: ")
    assert error_of(lambda: source.tree_hash(IMAGE_DIR)).startswith(f"{image_file}: ")
