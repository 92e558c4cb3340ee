"""`hubbot explain` and `hubbot render`."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.main import main
from bot.sops_format import ENCRYPTED


def run(repo: Path, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    status = main(["--repo", str(repo), *args])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_explain_the_computed_image_tag(hub_repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(
        hub_repo, capsys, "explain", "tess-private", "prod", "jupyterhub.singleuser.image.tag"
    )
    assert status == 0
    lines = out.splitlines()
    assert lines[0].startswith('jupyterhub.singleuser.image.tag = "tree-')
    assert lines[1] == (
        "  set by    deployments/tess-private/hubploy.yaml:3 "
        "(computed by hubbot: content address of the image directory)"
    )


def test_explain_a_key_set_in_several_layers(
    hub_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, _ = run(
        hub_repo, capsys, "explain", "tess-private", "prod", "jupyterhub.cull.timeout"
    )
    assert status == 0
    lines = (hub_repo / "hub/values.yaml").read_text().splitlines()
    default = next(number for number, line in enumerate(lines, 1) if "timeout: 3600" in line)
    assert out.splitlines() == [
        "jupyterhub.cull.timeout = 14400",
        "  set by    deployments/tess-private/config/common.yaml:24",
        f"  overrode  hub/values.yaml:{default} = 3600",
    ]


def test_explain_a_secret_shows_where_not_what(
    hub_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, _ = run(
        hub_repo, capsys, "explain", "tess-public", "staging", "jupyterhub.proxy.secretToken"
    )
    assert status == 0
    assert out.splitlines()[:2] == [
        "jupyterhub.proxy.secretToken = <secret> (from a secrets file)",
        "  set by    deployments/tess-public/secrets/staging.yaml:3",
    ]
    assert "ENC[" not in out


def test_explain_an_unset_key(hub_repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(hub_repo, capsys, "explain", "tess-public", "prod", "jupyterhub.cull.nope")
    assert status == 1
    assert out == (
        "jupyterhub.cull.nope is not set for tess-public/prod; "
        "the nearest key set is jupyterhub.cull\n"
    )


def test_explain_rejects_a_malformed_path(
    hub_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, _, err = run(hub_repo, capsys, "explain", "tess-public", "prod", "jupyterhub..cull")
    assert status == 2
    assert "KEY.PATH 'jupyterhub..cull' must be dotted keys" in err


def test_render_masks_every_secret(hub_repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(hub_repo, capsys, "render", "tess-private", "staging")
    assert status == 0
    assert "    secretToken: <secret>\n" in out
    assert "      client_secret: <secret>\n" in out
    assert not any(ENCRYPTED.match(word) for word in out.split())
    assert "ENC[" not in out
    assert "    pvcName: home-nfs\n" in out
