"""The one way decrypted content may touch a file: 0600, in memory, short-lived.

When another process needs a decrypted document as a file rather than on its
standard input, it goes to a private directory on a memory filesystem
(/dev/shm or $XDG_RUNTIME_DIR). It is removed in a `finally`, and SIGTERM is
turned into an exception for the duration so that `finally` runs then too
(SIGINT already raises KeyboardInterrupt). A disk path is never used instead.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

from bot.errors import HubbotError

MEMORY_FILESYSTEMS = frozenset({"tmpfs", "ramfs"})
EXIT_TERMINATED = 128 + signal.SIGTERM


def candidate_dirs() -> list[Path]:
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    shm = Path("/dev/shm")  # noqa: S108 (a shared dir, but checked to be tmpfs; files go in a 0700 dir)
    return [shm, *([Path(runtime)] if runtime else [])]


def filesystem_type(path: Path, mounts: str | None = None) -> str | None:
    """The type of the filesystem holding `path`, from /proc/mounts (longest mount point)."""
    if mounts is None:
        try:
            mounts = Path("/proc/mounts").read_text()
        except OSError:
            return None
    resolved = str(path.resolve())
    best, best_type = "", None
    for line in mounts.splitlines():
        fields = line.split()
        if len(fields) < 3:
            continue
        point = fields[1].replace("\\040", " ")
        inside = resolved == point or resolved.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, best_type = point, fields[2]
    return best_type


def memory_dir(candidates: Sequence[Path] | None = None) -> Path:
    """The first writable directory on a memory filesystem, or a HubbotError."""
    tried = list(candidate_dirs() if candidates is None else candidates)
    for directory in tried:
        if (
            directory.is_dir()
            and os.access(directory, os.W_OK | os.X_OK)
            and filesystem_type(directory) in MEMORY_FILESYSTEMS
        ):
            return directory
    names = ", ".join(str(d) for d in tried) or "none"
    raise HubbotError(
        f"no memory filesystem to hold decrypted data (tried: {names}); refusing to write it "
        "to disk: mount a tmpfs at /dev/shm or set XDG_RUNTIME_DIR to one"
    )


class Terminated(SystemExit):
    """SIGTERM arrived while decrypted data was in a file: unwind so it is removed."""

    def __init__(self) -> None:
        super().__init__(EXIT_TERMINATED)


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise Terminated()


@contextmanager
def private_dir(candidates: Sequence[Path] | None = None) -> Iterator[Path]:
    """A fresh 0700 directory in memory, removed with all it holds when the block ends.

    Handed to a program that writes its own temporary plaintext (sops edit, via TMPDIR).
    """
    base = memory_dir(candidates)
    handles_signals = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminate) if handles_signals else None
    directory: Path | None = None
    try:
        directory = Path(tempfile.mkdtemp(prefix="hubbot-", dir=base))
        yield directory
    finally:
        if directory is not None:
            shutil.rmtree(directory, ignore_errors=True)
        if handles_signals:
            signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


@contextmanager
def private_file(
    content: bytes, name: str, candidates: Sequence[Path] | None = None
) -> Iterator[Path]:
    """A 0600 file holding `content` in a fresh 0700 directory in memory, for the block only."""
    with private_dir(candidates) as directory:
        path = directory / Path(name).name
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as out:
            out.write(content)
        yield path
