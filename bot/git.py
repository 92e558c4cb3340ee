"""The one module that runs git."""

from __future__ import annotations

import io
import subprocess
import tarfile
from pathlib import Path

from bot.errors import HubbotError


def run(repo: Path, *args: str, input_bytes: bytes | None = None) -> bytes:
    """Run `git -C repo ARGS`; raise HubbotError with git's message on failure."""
    try:
        result = subprocess.run(
            ["git", "-C", str(repo), *args],
            input=input_bytes,
            capture_output=True,
            check=False,
        )
    except FileNotFoundError:
        raise HubbotError("git is not installed: install git and retry") from None
    if result.returncode != 0:
        message = result.stderr.decode(errors="replace").strip().splitlines()
        raise HubbotError(f"git {args[0]} failed: {message[-1] if message else 'no output'}")
    return result.stdout


def toplevel(start: Path) -> Path:
    """The root of the git work tree containing `start`."""
    try:
        return Path(run(start, "rev-parse", "--show-toplevel").decode().strip())
    except HubbotError:
        raise HubbotError(
            f"{start} is not inside a git repository: run hubbot from a clone or pass --repo PATH"
        ) from None


def resolve(repo: Path, ref: str) -> str:
    """The commit id of `ref`, or an error naming the ref."""
    try:
        return run(repo, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}").decode().strip()
    except HubbotError:
        raise HubbotError(f"unknown git ref {ref!r}: fetch it or name an existing branch") from None


def show(repo: Path, commit: str, path: str) -> bytes | None:
    """The content of `path` at `commit`, or None when it does not exist there."""
    result = subprocess.run(
        ["git", "-C", str(repo), "cat-file", "blob", f"{commit}:{path}"],
        capture_output=True,
        check=False,
    )
    return result.stdout if result.returncode == 0 else None


def tree_entries(repo: Path, commit: str) -> dict[str, tuple[str, str]]:
    """Every file at `commit`: path -> (mode, object id)."""
    out = run(repo, "ls-tree", "-r", "-z", "--full-tree", commit)
    entries: dict[str, tuple[str, str]] = {}
    for record in out.split(b"\0"):
        if not record:
            continue
        meta, _, name = record.partition(b"\t")
        mode, _kind, oid = meta.decode().split()
        entries[name.decode()] = (mode, oid)
    return entries


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
