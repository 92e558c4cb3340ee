"""`hubbot validate`: every bad input gets one message pinned to its file and line."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from bot.main import main
from tests.fixtures.repos import replace_in, validate, write
from tests.test_yamlfile import alias_bomb


def line_of(repo: Path, relative: str, needle: str) -> int:
    lines = (repo / relative).read_text().splitlines()
    return next(i for i, line in enumerate(lines, 1) if needle in line)


def test_the_repository_is_valid(hub_repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, out = validate(hub_repo, capsys)
    assert status == 0
    assert "4 of 4 hub environments valid" in out
    for pair in ("tess-public/staging", "tess-public/prod", "tess-private/staging"):
        assert f"ok      {pair}" in out
    assert "ok      hub/ chart lock" in out


def test_a_chart_lock_out_of_sync_with_chart_yaml(
    hub_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    replace_in(hub_repo, "hub/Chart.yaml", "version: 4.2.0", "version: 4.3.0")
    status, out = validate(hub_repo, capsys)
    assert status == 1
    assert "4 of 4 hub environments valid" in out
    assert (
        "  hub/Chart.lock:1: Chart.lock is out of sync with hub/Chart.yaml: "
        "run `helm dependency update hub` and commit Chart.lock"
    ) in out


def test_wrong_type_in_prod_names_file_and_line(
    hub_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    prod = "deployments/tess-private/config/prod.yaml"
    replace_in(hub_repo, prod, "replicas: 2", "replicas: two")
    line = line_of(hub_repo, prod, "replicas: two")
    status, out = validate(hub_repo, capsys, "tess-private", "--env", "prod")
    assert status == 1
    assert (
        f"{prod}:{line}: jupyterhub.scheduling.userPlaceholder.replicas: "
        '"two" is not of type integer'
    ) in out

    status, out = validate(hub_repo, capsys, "tess-private", "--env", "prod", "--format", "github")
    assert status == 1
    assert (
        f"::error file={prod},line={line},title=hubbot validate tess-private/prod::"
        'jupyterhub.scheduling.userPlaceholder.replicas: "two" is not of type integer'
    ) in out


@pytest.mark.parametrize(
    ("relative", "old", "new", "message"),
    [
        (
            "hub/values.yaml",
            "      limit: 2\n",
            "      limit: lots\n",
            'jupyterhub.singleuser.cpu.limit: "lots" is not of type number',
        ),
        (
            "deployments/tess-public/config/common.yaml",
            "    every: 60",
            "    every: soon",
            'jupyterhub.cull.every: "soon" is not of type integer',
        ),
        (
            "deployments/tess-public/config/staging.yaml",
            "      replicas: 0",
            "      replicas: [0]",
            "jupyterhub.scheduling.userPlaceholder.replicas: a list is not of type integer",
        ),
    ],
)
def test_wrong_type_in_each_layer(
    hub_repo: Path,
    capsys: pytest.CaptureFixture[str],
    relative: str,
    old: str,
    new: str,
    message: str,
) -> None:
    replace_in(hub_repo, relative, old, new)
    line = line_of(hub_repo, relative, new.strip())
    status, out = validate(hub_repo, capsys, "tess-public", "--env", "staging")
    assert status == 1
    assert f"{relative}:{line}: {message}" in out


def test_wrong_type_in_the_secrets_layer(
    hub_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    secrets = "deployments/tess-public/secrets/staging.yaml"
    text = (hub_repo / secrets).read_text()
    start = text.index("secretToken: ENC[")
    end = text.index("type:str]", start)
    (hub_repo / secrets).write_text(text[:end] + "type:int]" + text[end + len("type:str]") :])
    status, out = validate(hub_repo, capsys, "tess-public", "--env", "staging")
    assert status == 1
    assert (
        f"{secrets}:3: `jupyterhub.proxy.secretToken` is encrypted as sops type int, "
        "which the schema does not allow here"
    ) in out


def test_unknown_key_where_the_schema_is_strict(
    hub_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    common = "deployments/tess-private/config/common.yaml"
    replace_in(hub_repo, common, "    memory:\n", "    memroy:\n")
    line = line_of(hub_repo, common, "memroy:")
    status, out = validate(hub_repo, capsys, "tess-private")
    assert status == 1
    assert f"{common}:{line}: unknown key `memroy`" in out


def test_malformed_yaml_reports_its_line(
    hub_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    common = "deployments/tess-public/config/common.yaml"
    replace_in(hub_repo, common, "    every: 60", "    every: [60")
    status, out = validate(hub_repo, capsys, "tess-public")
    assert status == 1
    line = line_of(hub_repo, common, "every: [60")
    assert (
        f"{common}:{line + 1}: malformed YAML: expected ',' or ']', but got ':' "
        f"(while parsing a flow sequence on line {line})"
    ) in out


def test_duplicate_keys(hub_repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    staging = "deployments/tess-public/config/staging.yaml"
    write(hub_repo, staging, "jupyterhub:\n  cull:\n    every: 60\n  cull:\n    every: 30\n")
    status, out = validate(hub_repo, capsys, "tess-public", "--env", "staging")
    assert status == 1
    assert f'{staging}:4: duplicate key "cull" (first set on line 2)' in out


def test_yaml11_boolean_ambiguity(hub_repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    staging = "deployments/tess-public/config/staging.yaml"
    write(hub_repo, staging, "jupyterhub:\n  cull:\n    enabled: on\n")
    status, out = validate(hub_repo, capsys, "tess-public", "--env", "staging")
    assert status == 1
    assert f"{staging}:3: plain `on` is a boolean to helm (YAML 1.1)" in out


def test_unknown_hub_and_environment(hub_repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, out = validate(hub_repo, capsys, "tess-secret")
    assert status == 1
    assert (
        "unknown hub 'tess-secret': the hubs in deployments/ are tess-private, tess-public" in out
    )
    status, out = validate(hub_repo, capsys, "tess-public", "--env", "qa")
    assert status == 1
    assert (
        "unknown environment 'qa' for hub tess-public: "
        "deployments/tess-public/hubploy.yaml defines staging, prod"
    ) in out


def test_missing_layer_file(hub_repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (hub_repo / "deployments/tess-private/config/staging.yaml").unlink()
    status, out = validate(hub_repo, capsys, "tess-private")
    assert status == 1
    assert (
        "deployments/tess-private/config/staging.yaml: layer file is missing in working tree: "
        "create it (`{}` if it sets nothing)"
    ) in out
    assert "ok      tess-private/prod" in out


def test_plaintext_value_in_a_secrets_file(
    hub_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    secrets = "deployments/tess-private/secrets/prod.yaml"
    text = (hub_repo / secrets).read_text()
    start = text.index("client_id: ") + len("client_id: ")
    end = text.index("\n", start)
    (hub_repo / secrets).write_text(text[:start] + "Ov23liPLAINTEXT" + text[end:])
    line = line_of(hub_repo, secrets, "Ov23liPLAINTEXT")
    status, out = validate(hub_repo, capsys, "tess-private", "--env", "prod")
    assert status == 1
    assert (
        f"{secrets}:{line}: `jupyterhub.hub.config.GitHubOAuthenticator.client_id` holds a "
        "plaintext value in a secrets file: it may have leaked"
    ) in out
    assert "Ov23liPLAINTEXT" not in out


def test_secrets_file_without_sops_metadata(
    hub_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    secrets = "deployments/tess-public/secrets/prod.yaml"
    write(hub_repo, secrets, "jupyterhub:\n  proxy:\n    secretToken: 0123abcd\n")
    status, out = validate(hub_repo, capsys, "tess-public", "--env", "prod")
    assert status == 1
    assert f"{secrets}:1: not a sops-encrypted file (no top-level `sops` metadata)" in out
    assert "0123abcd" not in out


def test_hubploy_with_a_missing_field(hub_repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    hubploy = "deployments/tess-public/hubploy.yaml"
    replace_in(hub_repo, hubploy, "    helm_path: jupyterhub.singleuser.image\n", "")
    status, out = validate(hub_repo, capsys, "tess-public")
    assert status == 1
    assert f"{hubploy}:4: `helm_path` is required under images.0" in out


def test_a_tag_that_would_read_as_a_number(
    hub_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    prod = "deployments/tess-public/config/prod.yaml"
    write(hub_repo, prod, 'jupyterhub:\n  hub:\n    image:\n      tag: "1e3"\n')
    status, out = validate(hub_repo, capsys, "tess-public", "--env", "prod")
    assert status == 1
    assert f'{prod}:4: image tag "1e3" looks like a number to YAML' in out

    write(hub_repo, prod, "jupyterhub:\n  hub:\n    image:\n      tag: 20240101\n")
    status, out = validate(hub_repo, capsys, "tess-public", "--env", "prod")
    assert status == 1
    assert (
        f"{prod}:4: jupyterhub.hub.image.tag: an image tag must be a non-empty string (quote it)"
    ) in out


def test_a_layer_may_not_set_an_image_hubbot_computes(
    hub_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    staging = "deployments/tess-public/config/staging.yaml"
    write(hub_repo, staging, "jupyterhub:\n  singleuser:\n    image:\n      tag: v1\n")
    status, out = validate(hub_repo, capsys, "tess-public", "--env", "staging")
    assert status == 1
    assert (
        f"{staging}:4: jupyterhub.singleuser.image.tag is set by hubbot from the content of "
        "deployments/tess-private/images/default (deployments/tess-public/hubploy.yaml:4): "
        "remove it from this file"
    ) in out


def test_house_policy(hub_repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    common = "deployments/tess-public/config/common.yaml"
    replace_in(hub_repo, common, "      type: none", "      type: dynamic")
    line = line_of(hub_repo, common, "type: dynamic")
    replace_in(hub_repo, "hub/values.yaml", "    uid: 1000", "    uid: 0")
    uid_line = line_of(hub_repo, "hub/values.yaml", "uid: 0")
    status, out = validate(hub_repo, capsys, "tess-public", "--env", "staging")
    assert status == 1
    assert (
        f"{common}:{line}: jupyterhub.singleuser.storage.type: a public (temporary-user) hub "
        "must not have persistent storage"
    ) in out
    assert (
        f"hub/values.yaml:{uid_line}: jupyterhub.singleuser.uid: user pods must not run as root"
    ) in out


def test_prod_policy_rejects_latest(hub_repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for env in ("staging", "prod"):
        config = f"deployments/tess-public/config/{env}.yaml"
        pin = "jupyterhub:\n  hub:\n    image:\n      tag: latest\n"
        write(hub_repo, config, (hub_repo / config).read_text().replace("jupyterhub:\n", pin, 1))
    status, out = validate(hub_repo, capsys, "tess-public")
    assert status == 1
    assert "ok      tess-public/staging" in out
    prod = "deployments/tess-public/config/prod.yaml"
    assert (f'{prod}:4: image tag "latest" moves: prod must run a pinned image tag') in out


def test_an_alias_bomb_in_a_layer_fails_fast_naming_file_and_line(
    hub_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    layer = "deployments/tess-public/config/staging.yaml"
    bomb = alias_bomb(9).replace("a:", "x-lol:", 1).replace("\nl", "\nx-l")
    line = len((hub_repo / layer).read_text().splitlines()) + 5
    (hub_repo / layer).write_text((hub_repo / layer).read_text() + bomb)
    started = time.monotonic()
    status, out = validate(hub_repo, capsys)
    assert time.monotonic() - started < 2
    assert status == 1
    assert f"  {layer}:{line}: aliases expand to more than 10,000 values" in out
    assert "internal error" not in out


@pytest.mark.parametrize(
    ("content", "message"),
    [
        pytest.param(
            b"jupyterhub:\n  hub: caf\xe9\n",
            "config/common.yaml:2: byte offset 22 (0xe9) is not UTF-8",
            id="one non-UTF-8 byte",
        ),
        pytest.param(
            b"jupyterhub: {}\n\x00\x01\x02\x03",
            "config/common.yaml:2: byte offset 15: the character U+0000 is not allowed in YAML",
            id="binary junk",
        ),
    ],
)
def test_a_layer_that_is_not_text(
    hub_repo: Path, capsys: pytest.CaptureFixture[str], content: bytes, message: str
) -> None:
    (hub_repo / "deployments/tess-public/config/common.yaml").write_bytes(content)
    status, out = validate(hub_repo, capsys)
    assert status == 1
    assert f"  deployments/tess-public/{message}" in out
    assert "internal error" not in out


def test_an_absolute_image_path_is_named(
    hub_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = "deployments/tess-public/hubploy.yaml"
    replace_in(hub_repo, file, "path: ../tess-private/images/default", "path: /etc")
    message = (
        f"{file}:{line_of(hub_repo, file, '- name:')}: image path '/etc' leaves the repository"
    )
    status, out = validate(hub_repo, capsys)
    assert status == 1
    assert message in out
    status = main(["--repo", str(hub_repo), "plan", "--base", "HEAD"])
    assert status == 1
    assert capsys.readouterr().err == f"hubbot: error: {message}\n"


def test_git_not_installed_is_not_a_missing_repository(
    hub_repo: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(hub_repo / "no-programs-here"))
    status, out = validate(hub_repo, capsys)
    assert (status, out) == (1, "hubbot: error: git is not installed: install git and retry\n")
