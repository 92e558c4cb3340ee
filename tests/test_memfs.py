"""Decrypted files: 0600, on a memory filesystem, gone afterwards (also after SIGTERM)."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from bot.errors import HubbotError
from bot.memfs import Terminated, filesystem_type, memory_dir, private_file

MOUNTS = """\
/dev/vda / ext4 rw 0 0
tmpfs /dev/shm tmpfs rw 0 0
tmpfs /run/user/1000 tmpfs rw 0 0
"""


def test_the_file_is_private_in_memory_and_removed() -> None:
    with private_file(b"token: value\n", "values.yaml") as path:
        assert path.read_bytes() == b"token: value\n"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
        assert filesystem_type(path) in {"tmpfs", "ramfs"}
    assert not path.exists()
    assert not path.parent.exists()


def test_the_file_is_removed_when_the_block_fails() -> None:
    with pytest.raises(RuntimeError), private_file(b"x", "values.yaml") as path:
        raise RuntimeError("mid-use failure")
    assert not path.parent.exists()


def test_a_disk_directory_is_refused(tmp_path: Path) -> None:
    if filesystem_type(tmp_path) in {"tmpfs", "ramfs"}:
        pytest.skip("the pytest temp dir is itself in memory here")
    with pytest.raises(HubbotError) as caught, private_file(b"x", "v.yaml", [tmp_path]):
        pytest.fail("must not be reached")
    assert str(caught.value) == (
        f"no memory filesystem to hold decrypted data (tried: {tmp_path}); refusing to write "
        "it to disk: mount a tmpfs at /dev/shm or set XDG_RUNTIME_DIR to one"
    )
    assert list(tmp_path.iterdir()) == []


def test_xdg_runtime_dir_is_a_candidate(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", "/dev/shm")
    assert memory_dir([Path("/nonexistent"), Path(os.environ["XDG_RUNTIME_DIR"])]) == Path(
        "/dev/shm"
    )


def test_filesystem_type_takes_the_longest_mount_point() -> None:
    assert filesystem_type(Path("/run/user/1000/x"), MOUNTS) == "tmpfs"
    assert filesystem_type(Path("/run/userx"), MOUNTS) == "ext4"
    assert filesystem_type(Path("/dev/shm"), MOUNTS) == "tmpfs"


def test_sigterm_in_process_unwinds_and_removes_the_file() -> None:
    previous = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Terminated), private_file(b"x", "v.yaml") as path:
        os.kill(os.getpid(), signal.SIGTERM)
    assert not path.parent.exists()
    assert signal.getsignal(signal.SIGTERM) == previous


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signalled_process_leaves_no_file(signum: int) -> None:
    script = textwrap.dedent(
        """
        import sys, time
        from bot.memfs import private_file
        with private_file(b"canary", "values.yaml") as path:
            print(path, flush=True)
            time.sleep(60)
        """
    )
    process = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    path = Path(process.stdout.readline().strip())
    assert path.read_bytes() == b"canary"
    process.send_signal(signum)
    _, err = process.communicate(timeout=30)
    assert process.returncode == (143 if signum == signal.SIGTERM else -signal.SIGINT)
    assert not path.exists()
    assert not path.parent.exists()
    assert "canary" not in err
