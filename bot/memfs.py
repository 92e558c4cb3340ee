"""The one way decrypted content may touch a file: 0600, in memory, gone with the bot.

Nothing decrypted keeps a name on disk, even when the bot is killed with SIGKILL:

- `memory_file`: an anonymous memory file (memfd) with no name on any filesystem,
  sealed read-only. A child reads it as /dev/fd/N, inherited (helm's KUBECONFIG). It
  ends when its last descriptor closes, so with the bot and its children.
- `private_dir`: for a program that writes plaintext of its own (sops edit's copy for
  the editor, through TMPDIR), a fresh 0700 directory on a memory filesystem (/dev/shm
  or $XDG_RUNTIME_DIR). It is removed in a `finally` (SIGTERM is turned into an
  exception for the duration so that `finally` runs then too), and by a watchdog
  process in a session of its own when the bot dies without unwinding (SIGKILL of the
  bot or of its process group): the watchdog waits for the end of a pipe only the bot
  holds, which the kernel closes however the bot ends.
- `sweep`: run at start, removes what a killed earlier run left when even its watchdog
  was killed: only hubbot's directories (by name), only this user's, only those whose
  run (process id and start time, in the name) is gone.

A disk path is never used instead.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from bot.errors import HubbotError

MEMORY_FILESYSTEMS = frozenset({"tmpfs", "ramfs"})
EXIT_TERMINATED = 128 + signal.SIGTERM
SEALS = fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE | fcntl.F_SEAL_SEAL
# hubbot-<pid>-<process start time>-<random>: whose run left it, even after pid reuse.
OWNED = re.compile(r"hubbot-(?P<pid>\d+)-(?P<start>\d+)-[A-Za-z0-9_]+")
WATCHDOG = (
    "import shutil, sys\n"
    "sys.stdin.buffer.read()\n"  # returns at end of file: the bot has ended, however it ended
    "shutil.rmtree(sys.argv[1], ignore_errors=True)\n"
)
WATCHDOG_WAIT = 10


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


@dataclass(frozen=True)
class MemoryFile:
    """An open anonymous memory file; a child given `fd` (pass_fds) opens it at `path`."""

    fd: int

    @property
    def path(self) -> str:
        return f"/dev/fd/{self.fd}"


@contextmanager
def memory_file(content: bytes, name: str) -> Iterator[MemoryFile]:
    """`content` in a sealed 0600 memory file with no name on disk, for the block only."""
    if not hasattr(os, "memfd_create"):
        raise HubbotError(
            "this system has no anonymous memory files (memfd, Linux): decrypted credentials "
            "would need a name on disk; deploy from Linux (as CI does)"
        )
    fd = os.memfd_create(f"hubbot-{name}", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    try:
        os.fchmod(fd, 0o600)
        view = memoryview(content)
        while view:
            view = view[os.write(fd, view) :]
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, SEALS)
        yield MemoryFile(fd)
    finally:
        os.close(fd)


class Terminated(SystemExit):
    """SIGTERM arrived while decrypted data was in a file: unwind so it is removed."""

    def __init__(self) -> None:
        super().__init__(EXIT_TERMINATED)


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise Terminated()


def process_start(pid: int) -> str | None:
    """When process `pid` started (clock ticks since boot), or None if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    # Fields after the command name: state is field 3 of stat(5), starttime field 22.
    return None if fields[0] in ("Z", "X") else fields[19]


@contextmanager
def _watchdog(directory: Path) -> Iterator[None]:
    """A process that removes `directory` when this one ends, even by SIGKILL.

    In a session of its own, so a signal to the bot's process group spares it.
    """
    watchdog = subprocess.Popen(
        [sys.executable, "-I", "-S", "-c", WATCHDOG, str(directory)],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        yield
    finally:
        assert watchdog.stdin is not None  # stdin=PIPE above
        watchdog.stdin.close()
        try:
            watchdog.wait(WATCHDOG_WAIT)
        except subprocess.TimeoutExpired:
            watchdog.kill()
            watchdog.wait()


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
        prefix = f"hubbot-{os.getpid()}-{process_start(os.getpid())}-"
        directory = Path(tempfile.mkdtemp(prefix=prefix, dir=base))
        with _watchdog(directory):
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


def sweep(candidates: Sequence[Path] | None = None) -> list[Path]:
    """Remove the private directories of hubbot runs that are gone; what was removed."""
    removed = []
    for base in candidate_dirs() if candidates is None else candidates:
        try:
            entries = list(base.iterdir())
        except OSError:
            continue
        for entry in entries:
            owner = OWNED.fullmatch(entry.name)
            if owner is None or process_start(int(owner["pid"])) == owner["start"]:
                continue
            try:
                info = entry.lstat()
            except OSError:
                continue
            if stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid():
                shutil.rmtree(entry, ignore_errors=True)
                removed.append(entry)
    return removed
