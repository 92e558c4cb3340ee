"""The one module that runs git."""

from __future__ import annotations

import io
import os
import subprocess
import tarfile
import tempfile
from pathlib import Path

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
        raise HubbotError(f"unknown git ref {ref!r}: fetch it or name an existing branch") from None


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
