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

    def is_file(self, path: str) -> bool:
        """Whether `path` is a file (what `read` reads)."""

    def children(self, path: str) -> list[str]:
        """Names of the entries directly inside directory `path` (empty if absent)."""

    def tree_hash(self, path: str) -> str | None:
        """The git tree id of directory `path`, or None if it has no files."""


@dataclass(frozen=True)
class WorkEntry:
    """A file or submodule that a commit of the work tree would put in a directory."""

    name: str  # its path under the directory
    path: str  # its path in the repository
    mode: int  # lstat's: a regular file's, or a submodule's directory
    submodule: str | None = None  # the commit a submodule names; None for a file


@dataclass
class WorkTree:
    """The files on disk, including uncommitted changes (not ignored files)."""

    root: Path
    label: str = "working tree"
    memo: dict[Any, Any] = field(default_factory=dict, repr=False)

    def read(self, path: str) -> str | None:
        self._refuse_links(path)
        mode = self._mode(path)
        if mode is None or stat.S_ISDIR(mode):
            return None  # a directory is no file to read, as at a commit
        try:
            data = (self.root / path).read_bytes()
        except FileNotFoundError:  # removed since it was looked at
            return None
        return decode(path, data)

    def is_file(self, path: str) -> bool:
        self._refuse_links(path)
        mode = self._mode(path)
        return mode is not None and stat.S_ISREG(mode)

    def children(self, path: str) -> list[str]:
        self._refuse_links(path)
        directory = self.root / path
        if not directory.is_dir():
            return []
        return sorted(entry.name for entry in directory.iterdir())

    def tree_hash(self, path: str) -> str | None:
        return memoized(self, ("tree", path), lambda: self._tree_hash(path))

    def _tree_hash(self, path: str) -> str | None:
        """The tree id a commit of the work tree as it is would give directory `path`."""
        files = {
            entry.name: (
                _file_entry(self.root / entry.path, entry.mode)
                if entry.submodule is None
                else (git.GITLINK_MODE, bytes.fromhex(entry.submodule))
            )
            for entry in self.entries(path)
        }
        return _tree_id(files).hex() if files else None

    def entries(self, path: str) -> list[WorkEntry]:
        """The files and submodules a commit of the work tree as it is would hold under
        directory `path`. Its tree id (tree_hash) and an image's build context
        (bot/builder.py) are both made from this list, so they cannot disagree."""
        self._refuse_links(path)
        directory = posixpath.normpath(path)
        prefix = "" if directory == "." else directory + "/"
        found: list[WorkEntry] = []
        submodules: dict[str, str] | None = None  # asked of git once, if at all
        for name in git.worktree_files(self.root, path):
            # A file or submodule at `path` itself leaves no directory there, as at a commit.
            if not name.startswith(prefix):
                continue
            mode = self._mode(name)
            if mode is None:
                continue  # deleted in the work tree, not yet in the index
            if stat.S_ISDIR(mode):
                # A submodule, or a tracked file made a directory: git lists its files
                # on their own and would commit those (none: no entry).
                if submodules is None:
                    submodules = git.gitlinks(self.root, path)
                if name in submodules:
                    found.append(WorkEntry(name[len(prefix) :], name, mode, submodules[name]))
                continue
            found.append(WorkEntry(name[len(prefix) :], name, mode))
        return found

    def _mode(self, path: str) -> int | None:
        return checked_mode(path, os.path.join(self.root, path))

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
    """The files of one commit, read through git without touching the work tree: each
    directory is listed, and each file read, when first asked for."""

    root: Path
    commit: str
    label: str = ""
    memo: dict[Any, Any] = field(default_factory=dict, repr=False)
    # One per repository, shared by its GitCommits: what one has read, the others have.
    objects: git.ObjectReader = field(init=False, repr=False, compare=False)
    _tree: str = field(init=False, repr=False, compare=False)  # the root directory's id
    # Each directory's entries by path, once looked up (None: no directory there).
    _directories: dict[str, git.Listing | None] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        self.objects = _reader(self.root)
        self.commit, self._tree = self.objects.commit(self.commit)
        self.label = self.label or self.commit[:12]

    def read(self, path: str) -> str | None:
        self._refuse_links(path)
        mode, oid = self._entry(posixpath.normpath(path)) or ("", "")
        if mode not in FILE_MODES:
            return None
        return decode(path, self.objects.read(oid))

    def is_file(self, path: str) -> bool:
        self._refuse_links(path)
        mode, _ = self._entry(posixpath.normpath(path)) or ("", "")
        return mode in FILE_MODES

    def prefetch(self, files: Iterable[str] = (), directories: Iterable[str] = ()) -> None:
        """Read `files`, and the files directly inside `directories`, in few requests to git:
        for a caller about to read them all (asked one at a time, each costs a round trip).
        What is absent or refused is left to `read` to say, as are git's errors."""
        wanted = [posixpath.normpath(name) for name in files]
        inside = [posixpath.normpath(directory) for directory in directories]
        with contextlib.suppress(HubbotError):
            self._list([posixpath.dirname(name) for name in wanted] + inside)
            entries = [self._entry(name) for name in wanted]
            for directory in inside:
                entries += (self._listing(directory) or {}).values()
            self.objects.read_many(
                oid for mode, oid in filter(None, entries) if mode in FILE_MODES
            )

    def children(self, path: str) -> list[str]:
        self._refuse_links(path)
        return sorted(self._listing(posixpath.normpath(path)) or {})

    def tree_hash(self, path: str) -> str | None:
        return memoized(self, ("tree", path), lambda: self._tree_hash(path))

    def object_id(self, path: str) -> str | None:
        """git's id of what `path` names here (a file's content, a directory's tree), or
        None; a digest of everything below it, found without reading any of it."""
        self._refuse_links(path)
        entry = self._entry(posixpath.normpath(path))
        return entry[1] if entry else None

    def _tree_hash(self, path: str) -> str | None:
        self._refuse_links(path)
        directory = posixpath.normpath(path)
        mode, oid = self._entry(directory) or ("", "")
        if mode != git.TREE_MODE:
            return None
        # A link anywhere inside is refused: looked for one depth at a time, each depth
        # listed in one request.
        level = [(directory, oid)]
        while level:
            listings = self.objects.listings(tree for _, tree in level)
            below = []
            for parent, tree in level:
                for name, (child_mode, child) in listings[tree].items():
                    if child_mode == LINK_MODE:
                        raise link_error(f"{parent}/{name}", self._link_target(child))
                    if child_mode == git.TREE_MODE:
                        below.append((f"{parent}/{name}", child))
            level = below
        return oid

    def _entry(self, path: str) -> tuple[str, str] | None:
        """(mode, object id) of normalised `path`, or None if there is none."""
        if path in (".", ""):
            return git.TREE_MODE, self._tree
        parent, _, name = path.rpartition("/")
        return (self._listing(parent) or {}).get(name)

    def _listing(self, directory: str) -> git.Listing | None:
        """The entries of normalised `directory`, or None if it is no directory here."""
        if directory not in self._directories:
            mode, oid = self._entry(directory) or ("", "")
            listing = self.objects.listings([oid])[oid] if mode == git.TREE_MODE else None
            self._directories[directory] = listing
        return self._directories[directory]

    def _list(self, directories: Iterable[str]) -> None:
        """List `directories` and those on the way to them, each depth in one request."""
        needed = {prefix for directory in directories for prefix in prefixes(directory)}
        for depth in sorted({prefix.count("/") for prefix in needed}):
            trees = [
                entry[1]
                for prefix in needed
                if prefix.count("/") == depth
                and (entry := self._entry(prefix)) is not None
                and entry[0] == git.TREE_MODE
            ]
            self.objects.listings(trees)

    def _refuse_links(self, path: str) -> None:
        """Raise if `path`, or a directory on the way to it, is a symbolic link here."""
        for link in prefixes(path):
            mode, oid = self._entry(link) or ("", "")
            if mode == LINK_MODE:
                raise link_error(link, self._link_target(oid))

    def _link_target(self, oid: str) -> str:
        return self.objects.read(oid).decode(errors="replace")


LINK_MODE = "120000"  # git's mode for a symbolic link
FILE_MODES = ("100644", "100755")  # git's modes for a file


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
            entries[os.path.relpath(full, directory)] = _file_entry(Path(full), mode)
    return _tree_id(entries).hex() if entries else None


def checked_mode(shown: str, full: str) -> int | None:
    """The mode (lstat's) of `full`, named `shown` in messages, or None if absent. A
    symbolic link, or anything but a file or a directory, is an error: git holds neither,
    and reading a FIFO would wait forever for a writer. Checked before anything is opened."""
    try:
        mode = os.lstat(full).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return None
    if stat.S_ISLNK(mode):
        raise link_error(shown, os.readlink(full))
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        raise HubbotError(
            f"is {_special_kind(mode)}, not a file: hubbot reads only files as git holds "
            "them; replace it with the file itself",
            Location(shown),
        )
    return mode


def _special_kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "a special file"


def _file_entry(file: Path, mode: int) -> tuple[str, bytes]:
    """The (git mode, blob id) a tree gives the file on disk with `mode` (from lstat)."""
    return ("100755" if mode & stat.S_IXUSR else "100644"), _blob_id(file.read_bytes())


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
def _reader(root: Path) -> git.ObjectReader:
    """The reader of a repository's objects, one per repository: objects never change
    under their ids, so base and head, and every step of a run that opens them, share
    what was read (most files are the same at both)."""
    return git.ObjectReader(root)


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
