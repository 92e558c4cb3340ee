"""`hubbot build` end to end: the issue's "must show" runs and every error path."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from bot.main import main
from tests.fixtures.containers import USER_IMAGE_DIR, LocalRegistry, point_hubs_at
from tests.fixtures.processes import free_port
from tests.fixtures.repos import commit_all, git

ECR_IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/tess-user-image"

pytestmark = pytest.mark.usefixtures("no_logins")


def tag_of(repo: Path) -> str:
    return "tree-" + git(repo, "rev-parse", f"HEAD:{USER_IMAGE_DIR}")[:12]


def hubbot(repo: Path, *args: str) -> int:
    return main(["--repo", str(repo), *args])


@pytest.mark.slow
@pytest.mark.usefixtures("docker_host")
def test_build_push_twice_then_dry_run(
    hub_repo: Path, oci_registry: LocalRegistry, capsys: pytest.CaptureFixture[str]
) -> None:
    name = point_hubs_at(hub_repo, oci_registry)
    reference = f"{name}:{tag_of(hub_repo)}"

    assert hubbot(hub_repo, "build", "--push") == 0
    out = capsys.readouterr().out
    assert out.count(f"{reference}: building {USER_IMAGE_DIR} (for tess-private, tess-public)") == 1
    assert f"{reference}: pushing" in out
    summary = out.splitlines()[-1]
    assert summary.startswith(f"{reference}  built, pushed sha256:")
    digest = summary.rsplit(" ", 1)[1]

    assert hubbot(hub_repo, "build", "--push") == 0
    out = capsys.readouterr().out
    assert out.splitlines() == [
        f"{reference}: tag exists in the registry ({digest}), nothing to build",
        f"{reference}  exists  {digest}  (nothing built)",
    ]

    assert hubbot(hub_repo, "build", "--dry-run") == 0
    assert capsys.readouterr().out.splitlines() == [
        f"{reference}  exists  -> nothing (tag exists)  "
        f"[{USER_IMAGE_DIR}; hubs: tess-private, tess-public]"
    ]

    assert hubbot(hub_repo, "build", "tess-public", "--push", "--format", "json") == 0
    [result] = json.loads(capsys.readouterr().out)
    assert (result["reference"], result["existed"], result["built"], result["digest"]) == (
        reference,
        True,
        False,
        digest,
    )


@pytest.mark.usefixtures("aws_env")
def test_dry_run_on_the_real_config_against_moto(
    hub_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tag = tag_of(hub_repo)
    assert hubbot(hub_repo, "build", "--dry-run") == 0
    assert capsys.readouterr().out.splitlines() == [
        f"{ECR_IMAGE}:{tag}  missing  -> build (no push without --push)  "
        f"[{USER_IMAGE_DIR}; hubs: tess-private, tess-public]"
    ]
    assert hubbot(hub_repo, "build", "--dry-run", "--push", "--format", "json") == 0
    assert json.loads(capsys.readouterr().out) == [
        {
            "name": ECR_IMAGE,
            "tag": tag,
            "reference": f"{ECR_IMAGE}:{tag}",
            "directory": USER_IMAGE_DIR,
            "hubs": ["tess-private", "tess-public"],
            "exists": False,
            "action": "build and push",
        }
    ]


def test_missing_image_directory_names_the_hubploy_line(
    hub_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for entry in (hub_repo / USER_IMAGE_DIR).iterdir():
        entry.unlink()
    commit_all(hub_repo, "image directory removed")
    assert hubbot(hub_repo, "build", "tess-private", "--dry-run") == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (
        "hubbot: error: deployments/tess-private/hubploy.yaml:4: image directory "  # `path:`
        f"{USER_IMAGE_DIR} is missing or empty (set by `path` for image {ECR_IMAGE})\n"
    )


def test_unreachable_registry_is_named(
    hub_repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    host = f"127.0.0.1:{free_port()}"
    point_hubs_at(hub_repo, LocalRegistry(host, f"http://{host}", tmp_path))
    assert hubbot(hub_repo, "build", "--push") == 1
    captured = capsys.readouterr()
    assert captured.err == (
        f"hubbot: error: registry {host} is unreachable (http://{host}/v2/tess/user-image/"
        f"manifests/{tag_of(hub_repo)}): connection refused\n"
    )


def test_unreachable_engine_says_to_set_docker_host(
    hub_repo: Path,
    oci_registry: LocalRegistry,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    point_hubs_at(hub_repo, oci_registry)
    socket = hub_repo / "no-engine.sock"
    monkeypatch.setenv("DOCKER_HOST", f"unix://{socket}")
    assert hubbot(hub_repo, "build") == 1
    err = capsys.readouterr().err
    assert err.startswith(f"hubbot: error: cannot reach a container engine at unix://{socket} (")
    assert err.endswith(
        "set DOCKER_HOST to a Docker or Podman API socket, e.g. "
        "unix:///run/podman/podman.sock after `podman system service --time=0 &`\n"
    )


@pytest.mark.slow
@pytest.mark.usefixtures("docker_host")
def test_push_to_a_registry_with_a_login(
    hub_repo: Path,
    auth_registry: LocalRegistry,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert auth_registry.password
    login = base64.b64encode(f"hubbot:{auth_registry.password}".encode()).decode()
    config = tmp_path / "docker-config" / "config.json"
    config.parent.mkdir()
    config.write_text(json.dumps({"auths": {auth_registry.host: {"auth": login}}}))
    before = config.read_bytes()
    monkeypatch.setenv("DOCKER_CONFIG", str(config.parent))
    name = point_hubs_at(hub_repo, auth_registry)
    assert hubbot(hub_repo, "build", "--push") == 0
    captured = capsys.readouterr()
    assert captured.out.splitlines()[-1].startswith(f"{name}:{tag_of(hub_repo)}  built, pushed ")
    assert auth_registry.password not in captured.out + captured.err
    assert config.read_bytes() == before  # the login was passed in memory, never written
    assert sorted(p.name for p in config.parent.iterdir()) == ["config.json"]
