"""Decrypted files: 0600, in memory, gone afterwards (also after SIGTERM and SIGKILL)."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from bot.errors import HubbotError
from bot.memfs import (
    Terminated,
    filesystem_type,
    memory_dir,
    memory_file,
    private_dir,
    private_file,
    process_start,
    sweep,
)

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


def test_a_memory_file_has_no_name_is_sealed_and_read_by_a_child_as_dev_fd() -> None:
    with memory_file(b"token: canary\n", "kubeconfig") as file:
        assert file.path == f"/dev/fd/{file.fd}"
        assert os.readlink(f"/proc/self/fd/{file.fd}").startswith("/memfd:hubbot-kubeconfig")
        assert stat.S_IMODE(os.stat(file.path).st_mode) == 0o600
        with pytest.raises(PermissionError):
            os.write(file.fd, b"more")  # sealed: no process can change what helm reads
        read = subprocess.run(
            ["cat", file.path], pass_fds=(file.fd,), capture_output=True, check=True
        )
        assert read.stdout == b"token: canary\n"
        assert not subprocess.run(["cat", file.path], capture_output=True).stdout
    with pytest.raises(OSError, match="Bad file descriptor"):
        os.fstat(file.fd)


def wait_until_gone(path: Path, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while path.exists() and time.monotonic() < deadline:
        time.sleep(0.05)


@pytest.mark.parametrize("group", [True, False], ids=["process group", "process"])
def test_sigkill_leaves_no_private_dir(group: bool) -> None:
    script = textwrap.dedent(
        """
        import time
        from bot.memfs import private_file
        with private_file(b"canary", "values.yaml") as path:
            print(path, flush=True)
            time.sleep(60)
        """
    )
    process = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, start_new_session=True,
        text=True,
    )
    assert process.stdout is not None
    path = Path(process.stdout.readline().strip())
    assert path.read_bytes() == b"canary"
    if group:
        os.killpg(process.pid, signal.SIGKILL)
    else:
        os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    wait_until_gone(path.parent)
    assert not path.parent.exists()


def test_the_private_dir_names_its_run() -> None:
    with private_dir() as directory:
        assert directory.name.startswith(f"hubbot-{os.getpid()}-{process_start(os.getpid())}-")
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700


def test_a_start_sweeps_only_hubbots_own_dirs_of_runs_that_are_gone(tmp_path: Path) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    alive_start = process_start(os.getpid())
    assert process_start(dead.pid) is None
    names = {
        "left": f"hubbot-{dead.pid}-12345-abc",  # its run is gone
        "reused": f"hubbot-{os.getpid()}-1-abc",  # the pid lives on in another process
        "alive": f"hubbot-{os.getpid()}-{alive_start}-abc",
        "other": "someone-else",
        "foreign": f"hubbot-{dead.pid}-12345-foreign",
    }
    for name in names.values():
        (tmp_path / name).mkdir()
        (tmp_path / name / "secrets.yaml").write_text("canary")
    os.chown(tmp_path / names["foreign"], 65534, 65534)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "kept").write_text("x")
    (tmp_path / f"hubbot-{dead.pid}-12345-link").symlink_to(outside)

    removed = sweep([tmp_path])

    assert sorted(removed) == sorted([tmp_path / names["left"], tmp_path / names["reused"]])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [names["alive"], names["other"], names["foreign"], "outside",
         f"hubbot-{dead.pid}-12345-link"]
    )
    assert (outside / "kept").exists()


def test_hubbot_sweeps_as_it_starts() -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    left = Path("/dev/shm") / f"hubbot-{dead.pid}-1-leftover"
    left.mkdir()
    (left / "secrets.yaml").write_text("canary")
    done = subprocess.run([sys.executable, "-m", "bot", "--version"], capture_output=True)
    assert done.returncode == 0
    assert not left.exists()
