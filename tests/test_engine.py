"""The container engine module against a real Podman API service and docker-registry."""

from __future__ import annotations

from pathlib import Path

import pytest
from repo2docker.engine import BuildError

from bot.engine import Engine, connect
from bot.errors import HubbotError
from bot.registries.oci import OciRegistry
from tests.fixtures.containers import LocalRegistry, busybox_image


def test_unreachable_engine_says_to_set_docker_host(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    socket = tmp_path / "nothing.sock"
    monkeypatch.setenv("DOCKER_HOST", f"unix://{socket}")
    with pytest.raises(HubbotError) as caught:
        connect()
    message = str(caught.value)
    assert message.startswith(f"cannot reach a container engine at unix://{socket} (")
    assert message.endswith(
        "): set DOCKER_HOST to a Docker or Podman API socket, e.g. "
        "unix:///run/podman/podman.sock after `podman system service --time=0 &`"
    )


@pytest.mark.slow
@pytest.mark.usefixtures("docker_host")
def test_build_label_run_and_push(tmp_path: Path, oci_registry: LocalRegistry) -> None:
    engine = Engine(connect())
    directory = busybox_image(tmp_path / "image", extra='RUN ["/bin/sh", "-c", "echo hi > /hi"]')
    name = oci_registry.image("engine/build")
    lines: list[str] = []
    engine.build(directory, f"{name}:tree-1", {"tess-hubs.test": "yes"}, [], lines.append)
    assert any(line.startswith("STEP 4/") and "echo hi" in line for line in lines)
    assert engine.client.images.get(f"{name}:tree-1").labels["tess-hubs.test"] == "yes"

    script = tmp_path / "check"
    script.write_text("#!/bin/sh\ncat /hi\nid -u\nexit 3\n")
    script.chmod(0o755)
    run = engine.run_test(f"{name}:tree-1", {"check": script}, ["./check"])
    assert (run.status, run.output) == (3, "hi\n0\n")

    # Without files there is no archive to copy in: an empty one raced podman's extractor,
    # which could exit at the end marker while the engine still wrote ("broken pipe").
    runs = [engine.run_command(f"{name}:tree-1", ["cat", "/hi"]) for _ in range(20)]
    assert {(run.status, run.output) for run in runs} == {(0, "hi\n")}

    digest = engine.push(name, "tree-1", None)
    assert digest is not None
    assert OciRegistry(insecure=True).digest(name, "tree-1") == digest


@pytest.mark.slow
@pytest.mark.usefixtures("docker_host")
def test_failed_build_raises_with_the_engines_message(tmp_path: Path) -> None:
    directory = busybox_image(tmp_path / "image", extra='RUN ["/bin/sh", "-c", "exit 7"]')
    lines: list[str] = []
    with pytest.raises(BuildError) as caught:
        Engine(connect()).build(directory, "localhost/engine/broken:tree-1", {}, [], lines.append)
    assert "exit status 7" in str(caught.value)
    assert any(line.startswith("STEP 4/") for line in lines)
