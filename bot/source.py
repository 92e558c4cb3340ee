"""Reading the repository as it is in the work tree or at a git commit.

Both kinds answer the same small protocol, so every later step (merge,
validate, render, plan) runs unchanged on either. Both refuse a symbolic link
on the way to anything they read, and any path that leaves the repository: a
link would make the work tree show the file it points to and a commit only the
link's text, so what is validated and what is deployed could differ.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import posixpath
import stat
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

from bot import git
from bot.errors import HubbotError, Location

T = TypeVar("T")


class Source(Protocol):
    """A read-only view of the repository's files."""

    root: Path
    label: str
    memo: dict[Any, Any]  # results derived from this source's files, which do not change

    def read(self, path: str) -> str | None:
        """The text of `path` (relative to the repo root), or None if absent."""

    def children(self, path: str) -> list[str]:
        """Names of the entries directly inside directory `path` (empty if absent)."""

    def tree_hash(self, path: str) -> str | None:
        """The git tree id of directory `path`, or None if it has no files."""


@dataclass
class WorkTree:
    """The files on disk, including uncommitted changes (not ignored files)."""

    root: Path
    label: str = "working tree"
    memo: dict[Any, Any] = field(default_factory=dict, repr=False)

    def read(self, path: str) -> str | None:
        self._refuse_links(path)
        try:
            data = (self.root / path).read_bytes()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return None
        return decode(path, data)

    def children(self, path: str) -> list[str]:
        self._refuse_links(path)
        directory = self.root / path
        if not directory.is_dir():
            return []
        return sorted(entry.name for entry in directory.iterdir())

    def tree_hash(self, path: str) -> str | None:
        return memoized(self, ("tree", path), lambda: self._tree_hash(path))

    def _tree_hash(self, path: str) -> str | None:
        self._refuse_links(path)
        files = [
            name
            for name in git.worktree_files(self.root, path)
            if os.path.lexists(self.root / name)
        ]
        if not files:
            return None
        prefix = path.rstrip("/") + "/"
        entries: dict[str, tuple[str, bytes]] = {}
        for name in files:
            full = self.root / name
            mode = os.lstat(full).st_mode
            if stat.S_ISLNK(mode):
                raise link_error(name, os.readlink(full))
            git_mode = "100755" if mode & stat.S_IXUSR else "100644"
            entries[name[len(prefix) :]] = (git_mode, _blob_id(full.read_bytes()))
        return _tree_id(entries).hex()

    def _refuse_links(self, path: str) -> None:
        """Raise if `path`, or a directory on the way to it, is a symbolic link."""
        # Directories found not to be links, each looked at once (hundreds of files
        # share deployments/).
        directories: set[str] = self.memo.setdefault("directories, not links", set())
        root = str(self.root)
        for link in prefixes(path):
            if link in directories:
                continue
            current = os.path.join(root, link)
            try:
                mode = os.lstat(current).st_mode
            except (FileNotFoundError, NotADirectoryError):
                return
            if stat.S_ISLNK(mode):
                raise link_error(link, os.readlink(current))
            if stat.S_ISDIR(mode):
                directories.add(link)


@dataclass
class GitCommit:
    """The files of one commit, read through git without touching the work tree: the tree
    is listed when opened, each file read when first asked for."""

    root: Path
    commit: str
    label: str = ""
    memo: dict[Any, Any] = field(default_factory=dict, repr=False)
    # Read when first asked for, then kept; shared with every GitCommit of this commit.
    blobs: git.BlobReader = field(init=False, repr=False, compare=False)
    _entries: dict[str, tuple[str, str]] = field(init=False, repr=False, compare=False)
    _trees: dict[str, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.commit = git.resolve(self.root, self.commit)
        self.label = self.label or self.commit[:12]
        self._entries, self._trees, self.blobs = _snapshot(self.root, self.commit)

    def read(self, path: str) -> str | None:
        self._refuse_links(path)
        mode, oid = self._entries.get(path, ("", ""))
        if not oid or mode == SUBMODULE_MODE:
            return None
        return decode(path, self.blobs.read(oid))

    def prefetch(self, files: Iterable[str] = (), directories: Iterable[str] = ()) -> None:
        """Read `files`, and the files directly inside `directories`, in one request to git:
        for a caller about to read them all (asked one at a time, each costs a round trip).
        What is absent or refused is left to `read` to say, as are git's errors."""
        wanted = set(files)
        inside = {directory.rstrip("/") for directory in directories}
        names = [name for name in wanted if name in self._entries]
        if inside:
            names += [
                name
                for name in self._entries
                if posixpath.dirname(name) in inside and name not in wanted
            ]
        oids = [
            oid for mode, oid in map(self._entries.__getitem__, names) if mode in FILE_MODES
        ]
        with contextlib.suppress(HubbotError):
            self.blobs.read_many(oids)

    def children(self, path: str) -> list[str]:
        self._refuse_links(path)
        prefix = path.rstrip("/") + "/"
        return sorted(
            {
                name[len(prefix) :].split("/", 1)[0]
                for name in self._entries
                if name.startswith(prefix)
            }
        )

    def tree_hash(self, path: str) -> str | None:
        return memoized(self, ("tree", path), lambda: self._tree_hash(path))

    def _tree_hash(self, path: str) -> str | None:
        self._refuse_links(path)
        prefix = path.rstrip("/") + "/"
        for name, (mode, oid) in self._entries.items():
            if mode == LINK_MODE and name.startswith(prefix):
                raise link_error(name, self._link_target(oid))
        return self._trees.get(posixpath.normpath(path))

    def _refuse_links(self, path: str) -> None:
        """Raise if `path`, or a directory on the way to it, is a symbolic link here."""
        for link in prefixes(path):
            mode, oid = self._entries.get(link, ("", ""))
            if mode == LINK_MODE:
                raise link_error(link, self._link_target(oid))

    def _link_target(self, oid: str) -> str:
        return self.blobs.read(oid).decode(errors="replace")


LINK_MODE = "120000"  # git's mode for a symbolic link
FILE_MODES = ("100644", "100755")  # git's modes for a file
SUBMODULE_MODE = "160000"  # git's mode for a submodule: a commit of another repository


def prefixes(path: str) -> list[str]:
    """`a`, `a/b`, `a/b/c` for `a/b/c`; an error for a path that leaves the repository."""
    normal = posixpath.normpath(path)
    if posixpath.isabs(normal) or normal == ".." or normal.startswith("../"):
        raise HubbotError(
            "this path is outside the repository: name a file inside it", Location(path)
        )
    parts = [] if normal == "." else normal.split("/")
    return ["/".join(parts[: depth + 1]) for depth in range(len(parts))]


def link_error(link: str, target: str) -> HubbotError:
    return HubbotError(
        f"is a symbolic link (to {target}): hubbot reads only files as git holds them; "
        "replace the link with the file or directory itself",
        Location(link),
    )


def decode(file: str, data: bytes) -> str:
    """The text of a file's bytes; a byte that is not UTF-8 is an error naming its offset."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise HubbotError(
            f"byte offset {exc.start} (0x{data[exc.start]:02x}) is not UTF-8: the file must be "
            "UTF-8 text (a binary file?)",
            Location(file, data.count(b"\n", 0, exc.start) + 1),
        ) from None


def memoized(source: Source, key: Any, compute: Callable[[], T]) -> T:
    """`compute()` once per source: a source's files never change while it is used.

    Errors are not cached, so every caller sees them.
    """
    if key not in source.memo:
        source.memo[key] = compute()
    result: T = source.memo[key]
    return result


def directory_tree_id(directory: Path) -> str | None:
    """Git's tree id for everything in `directory` as a program reading it sees it, ignored
    files included; None if it holds a link or anything but files and directories (or
    nothing). Equal to a commit's tree id, the directory holds exactly that commit's files."""
    entries: dict[str, tuple[str, bytes]] = {}
    for parent, directories, files in os.walk(directory):
        for name in (*directories, *files):
            full = os.path.join(parent, name)
            mode = os.lstat(full).st_mode
            if stat.S_ISDIR(mode):
                continue
            if not stat.S_ISREG(mode):
                return None
            git_mode = "100755" if mode & stat.S_IXUSR else "100644"
            with open(full, "rb") as file:
                entries[os.path.relpath(full, directory)] = (git_mode, _blob_id(file.read()))
    return _tree_id(entries).hex() if entries else None


def _blob_id(content: bytes) -> bytes:
    return hashlib.sha1(b"blob %d\0" % len(content) + content, usedforsecurity=False).digest()


def _tree_id(files: dict[str, tuple[str, bytes]]) -> bytes:
    """Git's tree id for files given by relative path -> (mode, blob id)."""
    here: dict[str, tuple[str, bytes]] = {}
    subdirs: dict[str, dict[str, tuple[str, bytes]]] = {}
    for name, entry in files.items():
        head, sep, rest = name.partition("/")
        if sep:
            subdirs.setdefault(head, {})[rest] = entry
        else:
            here[name] = entry
    for name, sub in subdirs.items():
        here[name] = ("40000", _tree_id(sub))
    # Git sorts tree entries as if directory names ended with "/".
    ordered = sorted(
        here.items(), key=lambda item: item[0] + ("/" if item[1][0] == "40000" else "")
    )
    body = b"".join(f"{mode} {name}".encode() + b"\0" + oid for name, (mode, oid) in ordered)
    return hashlib.sha1(b"tree %d\0" % len(body) + body, usedforsecurity=False).digest()


@functools.lru_cache(maxsize=8)
def _snapshot(
    root: Path, commit: str
) -> tuple[dict[str, tuple[str, str]], dict[str, str], git.BlobReader]:
    """A commit's files and directories, listed by one git process, and the reader of its
    files, which reads each when first asked for. A commit never changes: a pull request's run,
    which opens its base in several steps, lists it and reads each file once (both are only
    read, never changed)."""
    files, trees = git.tree_entries(root, commit)
    return files, trees, git.BlobReader(root)


def prefetch(source: Source, files: Iterable[str] = (), directories: Iterable[str] = ()) -> None:
    """Tell `source` that `files`, and the files directly inside `directories`, are about to
    be read: a commit then reads them from git in one request. Nothing changes what `read`
    answers or raises."""
    if isinstance(source, GitCommit):
        source.prefetch(files, directories)


def open_source(root: Path, ref: str | None) -> Source:
    """The work tree when `ref` is None, else the commit `ref` names."""
    if ref is None:
        return WorkTree(root)
    return GitCommit(root, ref, label=ref)
