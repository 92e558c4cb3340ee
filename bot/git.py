"""The one module that runs git."""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import tarfile
import tempfile
import threading
import weakref
from collections.abc import Iterable
from pathlib import Path
from typing import IO

from bot.errors import HubbotError


class GitMissing(HubbotError):
    """No git program to run."""


def run(
    repo: Path, *args: str, input_bytes: bytes | None = None, env: dict[str, str] | None = None
) -> bytes:
    """Run `git -C repo ARGS`; raise HubbotError with git's message on failure."""
    try:
        result = subprocess.run(
            ["git", "-C", str(repo), *args],
            input=input_bytes,
            capture_output=True,
            check=False,
            env=env,
        )
    except FileNotFoundError:
        raise GitMissing("git is not installed: install git and retry") from None
    if result.returncode != 0:
        message = result.stderr.decode(errors="replace").strip().splitlines()
        raise HubbotError(f"git {args[0]} failed: {message[-1] if message else 'no output'}")
    return result.stdout


def toplevel(start: Path) -> Path:
    """The root of the git work tree containing `start`."""
    try:
        return Path(run(start, "rev-parse", "--show-toplevel").decode().strip())
    except GitMissing:
        raise
    except HubbotError:
        raise HubbotError(
            f"{start} is not inside a git repository: run hubbot from a clone or pass --repo PATH"
        ) from None


def resolve(repo: Path, ref: str) -> str:
    """The commit id of `ref`, or an error naming the ref."""
    try:
        return run(repo, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}").decode().strip()
    except GitMissing:
        raise
    except HubbotError:
        raise unknown_ref(ref) from None


def unknown_ref(ref: str) -> HubbotError:
    return HubbotError(f"unknown git ref {ref!r}: fetch it or name an existing branch")


def restored_commit(repo: Path, parent: str, source: str, paths: list[str], message: str) -> str:
    """A new commit on `parent` whose `paths` are as they are at `source` (removed where
    `source` lacks them). Built in a temporary index: work tree, index and HEAD stay as
    they are."""
    with tempfile.TemporaryDirectory(prefix="hubbot-index-") as scratch:
        env = {**os.environ, "GIT_INDEX_FILE": str(Path(scratch) / "index")}
        if not _configured(repo, "user.email"):
            # CI checkouts have no identity; the commit says who made it.
            for role in ("AUTHOR", "COMMITTER"):
                env.setdefault(f"GIT_{role}_NAME", "hubbot")
                env.setdefault(f"GIT_{role}_EMAIL", "hubbot@users.noreply.github.com")
        run(repo, "read-tree", parent, env=env)
        for path in paths:
            run(repo, "rm", "-r", "-q", "--cached", "--ignore-unmatch", "--", path, env=env)
            entries = run(repo, "ls-tree", "-r", "-z", source, "--", path, env=env)
            if entries:
                run(repo, "update-index", "-z", "--index-info", input_bytes=entries, env=env)
        tree = run(repo, "write-tree", env=env).decode().strip()
        return run(repo, "commit-tree", tree, "-p", parent, "-m", message, env=env).decode().strip()


def _configured(repo: Path, key: str) -> bool:
    try:
        return bool(run(repo, "config", "--get", key).strip())
    except HubbotError:
        return False


def set_branch(repo: Path, branch: str, commit: str) -> None:
    run(repo, "update-ref", f"refs/heads/{branch}", commit)


def push(repo: Path, remote: str, branch: str) -> None:
    run(repo, "push", "--quiet", remote, f"refs/heads/{branch}:refs/heads/{branch}")


def remotes(repo: Path) -> list[str]:
    return run(repo, "remote").decode().split()


Listing = dict[str, tuple[str, str]]  # a directory's entries: name -> (mode, object id)
TREE_MODE = "40000"  # git's mode for a directory, as a tree object writes it
GITLINK_MODE = "160000"  # git's mode for a submodule: a commit of another repository


class ObjectReader:
    """Objects of one repository, read when first asked for through one long-lived
    `git cat-file --batch` process (started on first need) and kept, so each is read from
    git once: files' contents, directories' listings, and the commit a ref names. Safe to
    share between threads. The process ends when the reader is closed or
    garbage-collected, or at interpreter exit."""

    # Requests per round trip: their lines (a few dozen bytes each) fit into any pipe's
    # buffer, so writing a request never waits for git, which is waiting for its answers
    # to be read.
    REQUEST = 64

    def __init__(self, repo: Path) -> None:
        self.repo = repo
        self.reads = 0  # files' contents asked of git so far
        self._objects: dict[str, tuple[str, bytes]] = {}  # id -> (type, content)
        self._listings: dict[str, Listing] = {}  # tree id -> its entries
        self._lock = threading.Lock()
        self._process: subprocess.Popen[bytes] | None = None
        self._stop: weakref.finalize[..., ObjectReader] | None = None

    @property
    def pid(self) -> int | None:
        """The process id of the running git, or None when none is running."""
        with self._lock:
            return self._process.pid if self._process else None

    def read(self, oid: str) -> bytes:
        """The content of blob `oid`; an error if the repository lacks it."""
        return self.read_many([oid])[oid]

    def read_many(self, oids: Iterable[str]) -> dict[str, bytes]:
        """The content of each blob in `oids`, those not read yet asked of git in as few
        round trips as possible: for a caller that knows it needs them all."""
        wanted = list(dict.fromkeys(oids))
        with self._lock:
            self.reads += sum(oid not in self._objects for oid in wanted)
            self._fetch(wanted)
            return {oid: self._content(oid, "blob") for oid in wanted}

    def listings(self, oids: Iterable[str]) -> dict[str, Listing]:
        """The entries of each tree in `oids`, read as read_many reads blobs."""
        wanted = list(dict.fromkeys(oids))
        with self._lock:
            self._fetch([oid for oid in wanted if oid not in self._listings])
            for oid in wanted:
                if oid not in self._listings:
                    self._listings[oid] = _entries(oid, self._content(oid, "tree"))
                    del self._objects[oid]  # kept as its entries
            return {oid: self._listings[oid] for oid in wanted}

    def commit(self, ref: str) -> tuple[str, str]:
        """The id of the commit `ref` names, and of its tree; an error naming the ref."""
        # One request per line: a ref holding a line break or a space could ask for more.
        if not ref or any(char.isspace() or not char.isprintable() for char in ref):
            raise unknown_ref(ref)
        with self._lock:
            answer = self._ask([f"{ref}^{{commit}}"])[0]
            if isinstance(answer, HubbotError):
                raise unknown_ref(ref)
            oid, kind, content = answer
        tree = content.split(b"\n", 1)[0]
        if kind != "commit" or not tree.startswith(b"tree "):
            raise HubbotError(f"git cat-file gave no commit for {ref!r}")
        return oid, tree[len(b"tree ") :].decode()

    def close(self) -> None:
        """End the git process, if one runs (a later read starts another)."""
        with self._lock:
            self._end()

    def _fetch(self, oids: list[str]) -> None:
        """Ask git for the objects in `oids` not held yet. Raises the first refusal once
        every answer is read."""
        missing = [oid for oid in oids if oid not in self._objects]
        refused: HubbotError | None = None
        for start in range(0, len(missing), self.REQUEST):
            batch = missing[start : start + self.REQUEST]
            for oid, answer in zip(batch, self._ask(batch), strict=True):
                if isinstance(answer, HubbotError):
                    refused = refused or answer
                elif answer[0] != oid:
                    self._end()  # out of step with git: a later read starts afresh
                    raise HubbotError(f"git cat-file answered {answer[0]} when asked for {oid}")
                else:
                    self._objects[oid] = answer[1:]
        if refused:
            raise refused

    def _content(self, oid: str, kind: str) -> bytes:
        found, content = self._objects[oid]
        if found != kind:
            what = "a file's content" if kind == "blob" else "a directory"
            raise HubbotError(f"git object {oid} is a {found}, not {what}")
        return content

    def _ask(self, requests: list[str]) -> list[tuple[str, str, bytes] | HubbotError]:
        """git's answer to each request: (id, type, content), or the error it names."""
        process = self._start()
        assert process.stdin is not None
        assert process.stdout is not None
        try:
            process.stdin.write("".join(f"{request}\n" for request in requests).encode())
            process.stdin.flush()
            # Every answer is read, even after a refusal, so the next starts in step.
            return [self._answer(process.stdout, request) for request in requests]
        except (OSError, ValueError) as exc:  # a closed pipe: git has ended
            raise self._died(str(exc)) from None

    def _answer(self, out: IO[bytes], request: str) -> tuple[str, str, bytes] | HubbotError:
        header = out.readline()
        if not header.endswith(b"\n"):
            raise self._died("no answer")
        fields = header.decode(errors="replace").split()
        if fields[-1:] in (["missing"], ["ambiguous"]):
            return HubbotError(
                f"git has no object {request} in {self.repo}: is the clone complete?"
            )
        if len(fields) != 3 or not fields[2].isdigit():
            self._end()
            raise HubbotError(f"git cat-file answered {header!r} when asked for {request}")
        size = int(fields[2])
        data = out.read(size + 1)
        if len(data) != size + 1:
            raise self._died(f"{len(data)} of {size + 1} bytes")
        return fields[0], fields[1], data[:size]

    def _start(self) -> subprocess.Popen[bytes]:
        if self._process is None:
            try:
                self._process = subprocess.Popen(
                    ["git", "-C", str(self.repo), "cat-file", "--batch"],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                )
            except FileNotFoundError:
                raise GitMissing("git is not installed: install git and retry") from None
            self._stop = weakref.finalize(self, _end_batch, self._process)
        return self._process

    def _died(self, detail: str) -> HubbotError:
        """The error for a git process that stopped answering, which is ended."""
        process = self._process
        assert process is not None
        assert process.stderr is not None
        stderr = process.stderr
        process.kill()
        self._end(keep_stderr=True)
        message = stderr.read().decode(errors="replace").strip().splitlines()
        stderr.close()
        why = message[-1] if message else f"exit status {process.returncode}, {detail}"
        return HubbotError(f"git cat-file --batch in {self.repo} ended: {why}")

    def _end(self, keep_stderr: bool = False) -> None:
        if self._stop is not None:
            self._stop.detach()
        if self._process is not None:
            _end_batch(self._process, keep_stderr)
        self._process, self._stop = None, None


def _end_batch(process: subprocess.Popen[bytes], keep_stderr: bool = False) -> None:
    """Close a `git cat-file --batch` process's input (it then exits) and wait for it."""
    assert process.stdin is not None
    assert process.stdout is not None
    with contextlib.suppress(OSError):  # the flush of a pipe git no longer reads
        process.stdin.close()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    process.stdout.close()
    if process.stderr is not None and not keep_stderr:
        process.stderr.close()


def _entries(oid: str, tree: bytes) -> Listing:
    """The entries of tree object `oid`: `<mode> <name>\\0<binary id>`, one after another;
    an error for one that is not made so (git writes none, but a pushed object can be)."""
    size = len(oid) // 2
    found: Listing = {}
    at = 0
    try:
        while at < len(tree):
            space = tree.index(b" ", at)
            end = tree.index(b"\0", space)
            if end + 1 + size > len(tree):
                raise ValueError("an entry's id is cut short")
            name = tree[space + 1 : end].decode(errors="replace")
            found[name] = (tree[at:space].decode("ascii"), tree[end + 1 : end + 1 + size].hex())
            at = end + 1 + size
    except ValueError:  # UnicodeDecodeError included
        raise HubbotError(f"git tree {oid} is malformed: run `git fsck` on the clone") from None
    return found


def tree_id(repo: Path, commit: str, path: str) -> str | None:
    """The git tree id of directory `path` at `commit`, or None if it is absent."""
    result = subprocess.run(
        ["git", "-C", str(repo), "rev-parse", "--verify", "--quiet", f"{commit}:{path}"],
        capture_output=True,
        check=False,
    )
    return result.stdout.decode().strip() if result.returncode == 0 else None


def worktree_files(repo: Path, path: str) -> list[str]:
    """Tracked and untracked, not ignored, files under `path` in the work tree."""
    out = run(repo, "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", path)
    return sorted({name for name in out.decode().split("\0") if name})


def gitlinks(repo: Path, path: str) -> dict[str, str]:
    """The submodules the index holds under `path`: each path and the commit it names."""
    out = run(repo, "ls-files", "-z", "--stage", "--", path)
    found = {}
    for entry in out.decode().split("\0"):
        info, _, name = entry.partition("\t")
        if info.startswith(GITLINK_MODE + " "):
            found[name] = info.split()[1]
    return found


def changed_since(repo: Path, commit: str) -> set[str]:
    """The paths whose content in the work tree differs from `commit`: changed, added,
    deleted, and untracked (not ignored) files."""
    out = run(repo, "diff", "--name-only", "--no-renames", "-z", commit, "--")
    out += b"\0" + run(repo, "ls-files", "-z", "--others", "--exclude-standard")
    return {name for name in out.decode().split("\0") if name}


def export(repo: Path, commit: str, path: str, dest: Path) -> Path:
    """Write the files under `path` at `commit` into `dest`; return `dest / path`."""
    data = run(repo, "archive", "--format=tar", commit, "--", path)
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        archive.extractall(dest, filter="data")
    return dest / path


def commit_tree(repo: Path, commit: str) -> str | None:
    """The root tree id of `commit`, or None when the clone has no such commit."""
    result = subprocess.run(
        ["git", "-C", str(repo), "rev-parse", "--verify", "--quiet", f"{commit}^{{tree}}"],
        capture_output=True,
        check=False,
    )
    return result.stdout.decode().strip() if result.returncode == 0 else None


def uncommitted(repo: Path) -> list[str]:
    """Paths whose working-tree state differs from HEAD: changed, staged, or untracked and
    not ignored."""
    out = run(repo, "status", "--porcelain=v1", "-z", "--untracked-files=all")
    fields = iter(out.decode(errors="replace").split("\0"))
    paths = []
    for entry in fields:
        if not entry:
            continue
        paths.append(entry[3:])
        if entry[0] in "RC":
            next(fields, None)  # a rename's or copy's original path follows
    return sorted(paths)


def commits_with_tree(repo: Path, tree: str, refs: list[str], limit: int = 200) -> list[str]:
    """Commits among the newest `limit` reachable from `refs` whose root tree is `tree`."""
    out = run(repo, "log", f"--max-count={limit}", "--format=%H %T", *refs, "--")
    found = []
    for line in out.decode().splitlines():
        commit, _, commit_tree = line.partition(" ")
        if commit_tree == tree:
            found.append(commit)
    return found
