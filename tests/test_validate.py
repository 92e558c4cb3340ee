"""`hubbot validate`: every bad input gets one message pinned to its file and line."""

from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path

import jsonschema
import pytest
from pytest_httpserver import HTTPServer

from bot.actions import escape_property
from bot.main import main
from bot.schemas import violations
from bot.yamlfile import load_yaml
from tests.fixtures.charts import CHART_VERSION
from tests.fixtures.repos import PROJECT, commit_all, git, replace_in, validate, write
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
    replace_in(hub_repo, "hub/Chart.yaml", f"version: {CHART_VERSION}", "version: 4.3.0")
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
    (hub_repo / secrets).write_text(text[:end] + "type:bool]" + text[end + len("type:str]") :])
    status, out = validate(hub_repo, capsys, "tess-public", "--env", "staging")
    assert status == 1
    assert (
        f"{secrets}:3: `jupyterhub.proxy.secretToken` is encrypted as sops type bool, "
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


def test_a_null_that_deletes_a_whole_section_is_named_once_at_its_line(
    hub_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    common = "deployments/tess-public/config/common.yaml"
    write(hub_repo, common, "jupyterhub: null\n")
    status, out = validate(hub_repo, capsys, "tess-public", "--env", "staging")
    assert status == 1
    problems = [line.strip() for line in out.splitlines() if line.startswith("  ")]
    # Not hubploy.yaml (the computed image) nor the secrets file, which set keys under it again.
    assert problems, out
    assert all(problem.startswith(f"{common}:1: ") for problem in problems), out
    (deleted,) = [problem for problem in problems if "null` deletes" in problem]
    assert deleted.startswith(f"{common}:1: `jupyterhub: null` deletes ")
    for key in ("jupyterhub.cull", "jupyterhub.singleuser.memory", "jupyterhub.hub.networkPolicy"):
        assert key in deleted
    assert "remove the null" in deleted
    assert "is unset (deleted by `jupyterhub: null`" in out  # the infra/ cross-check


def test_a_null_that_deletes_a_required_key_says_so(
    hub_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    staging = "deployments/tess-public/config/staging.yaml"
    write(hub_repo, staging, "jupyterhub:\n  singleuser:\n    memory: null\n")
    status, out = validate(hub_repo, capsys, "tess-public", "--env", "staging")
    assert status == 1
    assert (
        f"{staging}:3: `jupyterhub.singleuser.memory: null` deletes "
        "`jupyterhub.singleuser.memory`, which the house policy requires: remove the null, "
        "or set it"
    ) in out
    assert "is required under" not in out


def test_a_value_of_the_wrong_form_is_explained_in_words_with_the_fix(
    hub_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    common = "deployments/tess-private/config/common.yaml"
    replace_in(hub_repo, common, "      guarantee: 2G", "      guarantee: 16GB")
    hubploy = "deployments/tess-public/hubploy.yaml"
    replace_in(hub_repo, hubploy, "release: tess-public-staging", "release: Tess-Public-Staging")
    status, out = validate(hub_repo, capsys)
    assert status == 1
    line = line_of(hub_repo, common, "guarantee: 16GB")
    assert (
        f'{common}:{line}: jupyterhub.singleuser.memory.guarantee: "16GB" is not a memory size '
        "as JupyterHub reads it: a number and K, M, G or T, such as 16G or 512M (G counts "
        "1024M, so not 16Gi) (write 16G)"
    ) in out
    assert (
        f'{hubploy}:14: environments.staging.release: "Tess-Public-Staging" is not a helm '
        "release name: lower-case letters, digits and dashes, starting and ending with a "
        "letter or digit, at most 53 characters (write tess-public-staging)"
    ) in out
    assert "does not match" not in out
    assert "^[" not in out

def test_an_efs_id_that_is_not_hex_is_refused_before_a_mount_can_fail(
    hub_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # EFS ids are hex: the CSI driver refuses any other, only when a user's pod mounts it.
    prod = "deployments/tess-private/config/prod.yaml"
    text = (hub_repo / prod).read_text()
    (current,) = re.findall(r"fsap-[0-9a-f]+", text)
    write(hub_repo, prod, text.replace(current, "fsap-0prod00000000000"))
    status, out = validate(hub_repo, capsys, "tess-private", "--env", "prod")
    assert status == 1
    assert (
        f'{prod}:2: homeStorage.efsAccessPointId: "fsap-0prod00000000000" is not an EFS access '
        "point id such as fsap-0123456789abcdef0"
    ) in out



@pytest.mark.parametrize(
    "written", ["", '  efsFileSystemId: ""\n', "  efsFileSystemId: null\n"],
    ids=["left out", "empty", "deleted"],
)
def test_efs_homes_without_a_file_system_are_refused_at_the_line_that_enables_them(
    hub_repo: Path, capsys: pytest.CaptureFixture[str], written: str
) -> None:
    # Left out or deleted, the id is the chart's default "" (hub/values.yaml), which no
    # one should edit: the error is pinned where homes are turned on, not on that default.
    common = "deployments/tess-private/config/common.yaml"
    replace_in(hub_repo, common, "  efsFileSystemId: fs-0123456789abcdef0\n", written)
    status, out = validate(hub_repo, capsys, "tess-private")
    assert status == 1
    line = line_of(hub_repo, common, "enabled: true")
    for env in ("staging", "prod"):
        assert f"FAILED  tess-private/{env}: 1 problem(s)" in out
    assert out.count(
        f"{common}:{line}: homeStorage.enabled: true, but homeStorage.efsFileSystemId is not "
        "set; set it to terraform's efs_file_system_id output"
    ) == 2, out


def _patterns(node: object, path: str = "") -> list[tuple[str, dict[str, object]]]:
    found: list[tuple[str, dict[str, object]]] = []
    if isinstance(node, dict):
        if isinstance(node.get("pattern"), str):
            found.append((path, node))
        for key, value in node.items():
            found += _patterns(value, f"{path}/{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += _patterns(value, f"{path}/{index}")
    return found


def test_every_house_pattern_is_explained_in_words() -> None:
    checked = 0
    for file in sorted((PROJECT / "schemas").glob("*.schema.yaml")):
        schema = load_yaml(file.name, file.read_text()).data
        for where, node in _patterns(schema):
            description = node.get("description")
            assert isinstance(description, str), f"{file.name}{where} has no description"
            found = violations(" bad value", jsonschema.Draft202012Validator(node), "t")
            assert [v.message for v in found] == [f'(document): " bad value" is not {description}']
            checked += 1
    assert checked >= 15


def test_validate_as_json(hub_repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, out = validate(hub_repo, capsys, "--format", "json")
    assert status == 0
    result = json.loads(out)
    assert result["valid"] is True
    assert result["summary"] == {"pairs": 4, "valid": 4}
    assert [(p["hub"], p["env"], p["status"]) for p in result["pairs"]] == [
        (hub, env, "ok") for hub in ("tess-private", "tess-public") for env in ("staging", "prod")
    ]
    assert result["pairs"][0]["problems"] == []
    assert result["pairs"][0]["warnings"] == []
    assert result["pairs"][0]["startup"] is None  # --no-startup
    assert f"jupyterhub chart {CHART_VERSION} schema" in result["pairs"][0]["checked_against"]
    assert [(c["name"], c["status"]) for c in result["checks"]] == [
        ("hub/ chart lock", "ok"),
        ("infra/ cross-check", "ok"),
    ]

    common = "deployments/tess-public/config/common.yaml"
    replace_in(hub_repo, common, "    every: 60", "    every: soon")
    replace_in(hub_repo, "deployments/tess-private/hubploy.yaml", "registry:", "registyr:")
    status, out = validate(hub_repo, capsys, "--format", "json")
    assert status == 1
    result = json.loads(out)
    assert result["valid"] is False
    failed = {(p["hub"], p["env"]): p for p in result["pairs"] if p["status"] == "failed"}
    assert set(failed) == {
        ("tess-private", None),
        ("tess-public", "staging"),
        ("tess-public", "prod"),
    }
    assert failed[("tess-public", "prod")]["problems"] == [
        {
            "file": common,
            "line": line_of(hub_repo, common, "every: soon"),
            "message": 'jupyterhub.cull.every: "soon" is not of type integer or null, per the '
            f"jupyterhub chart {CHART_VERSION} values.schema.json",
        }
    ]
    assert result["summary"] == {"pairs": 3, "valid": 0}


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


@pytest.mark.parametrize(
    "tagged",
    ["!foo [a]", '!!python/object/apply:os.system ["id"]', "!foo {a: 1}", "!!set {a, b}"],
)
def test_a_tag_on_a_list_or_mapping_is_refused_at_its_line(
    hub_repo: Path, capsys: pytest.CaptureFixture[str], tagged: str
) -> None:
    common = "deployments/tess-public/config/common.yaml"
    text = (hub_repo / common).read_text()
    (hub_repo / common).write_text(f"{text}x: {tagged}\n")
    status, out = validate(hub_repo, capsys, "tess-public")
    assert status == 1
    tag = tagged.split()[0]
    line = len(text.splitlines()) + 1
    message = f"{common}:{line}: the YAML tag {tag} is not supported here: write the plain value"
    assert f"  {message}" in out
    assert "Traceback" not in out
    assert "internal error" not in out


@pytest.mark.parametrize("tagged", ["!!binary aGVsbG8=", "!!timestamp 2020-01-01", "!!int 5"])
def test_a_tag_on_a_value_is_refused_at_its_line(
    hub_repo: Path, capsys: pytest.CaptureFixture[str], tagged: str
) -> None:
    common = "deployments/tess-public/config/common.yaml"
    replace_in(
        hub_repo, common, "    storage:\n", f"    extraEnv:\n      ALPHA: {tagged}\n    storage:\n"
    )
    status, out = validate(hub_repo, capsys, "tess-public")
    assert status == 1
    tag = tagged.split()[0]
    line = line_of(hub_repo, common, "ALPHA:")
    message = f"{common}:{line}: the YAML tag {tag} is not supported here: write the plain value"
    assert f"  {message}" in out
    assert "internal error" not in out


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


def test_a_misspelt_hub_or_environment_suggests_the_closest(
    hub_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out = validate(hub_repo, capsys, "tess-pubic")
    assert status == 1
    assert "unknown hub 'tess-pubic' (did you mean `tess-public`?): the hubs in" in out
    status, out = validate(hub_repo, capsys, "tess-public", "--env", "stagng")
    assert status == 1
    assert "unknown environment 'stagng' (did you mean `staging`?) for hub tess-public" in out


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


# --- inputs are what git holds -----------------------------------------------------------


def test_a_layer_file_linked_outside_the_repository(
    hub_repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    common = "deployments/tess-public/config/common.yaml"
    outside = write(tmp_path, "outside.yaml", (hub_repo / common).read_text())
    (hub_repo / common).unlink()
    (hub_repo / common).symlink_to(outside)
    status, out = validate(hub_repo, capsys)
    assert status == 1
    assert (
        f"  {common}: is a symbolic link (to {outside}): hubbot reads only files as git holds "
        "them; replace the link with the file or directory itself\n"
    ) in out
    assert "ok      tess-private/staging" in out


def test_a_linked_schema_is_refused(hub_repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(hub_repo, "schemas/loose.yaml", "type: object\n")
    (hub_repo / "schemas/values.schema.yaml").unlink()
    (hub_repo / "schemas/values.schema.yaml").symlink_to("loose.yaml")
    status, out = validate(hub_repo, capsys)
    assert status == 1
    assert "schemas/values.schema.yaml: is a symbolic link (to loose.yaml)" in out


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "a schema must be a mapping, not an empty file"),
        ("# nothing yet\n", "a schema must be a mapping, not an empty file"),
        ("5\n", "a schema must be a mapping"),
    ],
)
def test_a_schema_that_is_not_a_mapping(
    hub_repo: Path, capsys: pytest.CaptureFixture[str], text: str, message: str
) -> None:
    write(hub_repo, "schemas/policy.schema.yaml", text)
    status, out = validate(hub_repo, capsys)
    assert status == 1
    assert f"  schemas/policy.schema.yaml:1: {message}\n" in out
    assert "internal error" not in out


@pytest.mark.parametrize("keyword", ["$ref", "$schema"])
def test_a_schema_reference_out_of_the_schema_is_neither_read_nor_fetched(
    hub_repo: Path,
    capsys: pytest.CaptureFixture[str],
    httpserver: HTTPServer,
    tmp_path: Path,
    keyword: str,
) -> None:
    local = tmp_path / "private.json"
    local.write_text('{"const": "CONTENT-OF-A-LOCAL-FILE"}')
    httpserver.expect_request("/schema.json").respond_with_json({"const": "FETCHED"})
    policy = "schemas/policy.schema.yaml"
    for target in (local.as_uri(), httpserver.url_for("/schema.json")):
        text = (hub_repo / policy).read_text()
        if keyword == "$ref":
            changed = text.replace("            const: false\n", f'            $ref: "{target}"\n')
        else:
            changed = re.sub(r"(?m)^\$schema: .*$", f"$schema: {target}", text)
        assert changed != text
        write(hub_repo, policy, changed)
        status, out = validate(hub_repo, capsys, "--no-startup")
        assert status == 1
        line = line_of(hub_repo, policy, target)
        assert f"{policy}:{line}: invalid JSON Schema: `{keyword}: {target}` " in out
        assert "CONTENT-OF-A-LOCAL-FILE" not in out
        assert "FETCHED" not in out
        (hub_repo / policy).write_text(text)
    assert httpserver.log == []


def test_a_linked_hubploy_fails_that_hub_only(
    hub_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hubploy = "deployments/tess-public/hubploy.yaml"
    (hub_repo / hubploy).rename(hub_repo / "deployments/tess-public/real.yaml")
    (hub_repo / hubploy).symlink_to("real.yaml")
    status, out = validate(hub_repo, capsys)
    assert status == 1
    assert f"FAILED  tess-public: 1 problem(s)\n  {hubploy}: is a symbolic link" in out
    assert "ok      tess-private/staging" in out
    assert "ok      tess-private/prod" in out


def test_a_link_in_the_image_directory_or_the_chart(
    hub_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = "deployments/tess-private/images/default"
    (hub_repo / image / "extra.txt").symlink_to("/etc/hostname")
    (hub_repo / "hub/templates/extra.yaml").symlink_to("/etc/hostname")
    status, out = validate(hub_repo, capsys)
    assert status == 1
    assert f"  {image}/extra.txt: is a symbolic link (to /etc/hostname)" in out
    assert "  hub/templates/extra.yaml: is a symbolic link (to /etc/hostname)" in out


@pytest.mark.parametrize(
    "path", ["../../../outside", "/srv/image", "../tess-private/../../../outside"]
)
def test_an_image_path_outside_the_repository(
    hub_repo: Path, capsys: pytest.CaptureFixture[str], path: str
) -> None:
    hubploy = "deployments/tess-public/hubploy.yaml"
    replace_in(hub_repo, hubploy, "path: ../tess-private/images/default", f"path: {path}")
    line = line_of(hub_repo, hubploy, f"path: {path}")
    status, out = validate(hub_repo, capsys)
    assert status == 1
    assert (
        f"  {hubploy}:{line}: `images.0.path: {path}` leaves the repository: name a path inside "
        "it, relative to deployments/tess-public\n"
    ) in out
    assert "ok      tess-private/prod" in out


@pytest.mark.parametrize("made", ["the image directory a file", "the path a file's"])
def test_an_image_path_that_names_a_file(
    hub_repo: Path, capsys: pytest.CaptureFixture[str], made: str
) -> None:
    image = "deployments/tess-private/images/default"
    hubploy = "deployments/tess-private/hubploy.yaml"
    if made == "the image directory a file":
        shutil.rmtree(hub_repo / image)
        write(hub_repo, image, "FROM scratch\n")
    else:
        replace_in(hub_repo, hubploy, "path: images/default", "path: images/default/start")
        write(hub_repo, f"{image}/start", "#!/bin/sh\n")
        image += "/start"
    error = (
        f"{hubploy}:{line_of(hub_repo, hubploy, 'path:')}: image path {image} is a file, not a "
        "directory (set by `path` for image 123456789012.dkr.ecr.us-east-1.amazonaws.com/"
        "tess-user-image): name the directory repo2docker builds"
    )
    status, out = validate(hub_repo, capsys, "tess-private")
    assert status == 1
    assert f"FAILED  tess-private/prod: 1 problem(s)\n  {error}\n" in out
    # A commit holding the same is refused alike.
    commit_all(hub_repo, made)
    assert main(["--repo", str(hub_repo), "plan", "--base", "HEAD~1", "--head", "HEAD"]) == 1
    assert f"tess-private not planned: {error}\n" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("path", "problem"),
    [
        ("../..", "is the repository root, with every hub's secrets and .sops.yaml"),
        (".", "holds deployments/tess-public/secrets"),
        ("..", "is deployments/, with every hub's secrets"),
        ("../tess-private", "holds deployments/tess-private/secrets"),
        ("../tess-private/secrets", "is deployments/tess-private/secrets"),
        ("../tess-private/secrets/keys", "is inside deployments/tess-private/secrets"),
    ],
)
def test_an_image_path_that_takes_in_secrets(
    hub_repo: Path, capsys: pytest.CaptureFixture[str], path: str, problem: str
) -> None:
    # The public hub's image would be built, and pushed, with the encrypted secrets in it.
    hubploy = "deployments/tess-public/hubploy.yaml"
    replace_in(hub_repo, hubploy, "path: ../tess-private/images/default", f"path: {path}")
    write(hub_repo, "deployments/tess-private/secrets/keys/README.md", "keys\n")
    line = line_of(hub_repo, hubploy, f"path: {path}")
    status, out = validate(hub_repo, capsys)
    assert status == 1
    assert (
        f"FAILED  tess-public: 1 problem(s)\n  {hubploy}:{line}: `images.0.path: {path}` "
        f"{problem}: an image's build context must hold no secrets (an image may be public); "
        "name a directory of the image's own files, such as images/default\n"
    ) in out
    assert "ok      tess-private/prod" in out


def use_kubeconfig(repo: Path, file: str) -> str:
    hubploy = "deployments/tess-public/hubploy.yaml"
    replace_in(
        repo,
        hubploy,
        'cluster:\n  provider: aws\n  aws: {account_id: "123456789012", region: us-east-1, '
        "cluster: tess}\n",
        f"cluster:\n  provider: kubeconfig\n  kubeconfig: {{file: {file}}}\n",
    )
    return hubploy


def test_a_kubeconfig_path_outside_the_repository(
    hub_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hubploy = use_kubeconfig(hub_repo, "../../../kubeconfig")
    line = line_of(hub_repo, hubploy, "kubeconfig: {file:")
    status, out = validate(hub_repo, capsys, "tess-public")
    assert status == 1
    assert (
        f"  {hubploy}:{line}: `cluster.kubeconfig.file: ../../../kubeconfig` leaves the "
        "repository: name a path inside it, relative to deployments/tess-public\n"
    ) in out


def test_a_linked_kubeconfig(
    hub_repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    use_kubeconfig(hub_repo, "cluster/kubeconfig.yaml")
    outside = write(tmp_path, "kubeconfig.yaml", "clusters: []\n")
    (hub_repo / "deployments/tess-public/cluster").mkdir()
    (hub_repo / "deployments/tess-public/cluster/kubeconfig.yaml").symlink_to(outside)
    status, out = validate(hub_repo, capsys, "tess-public")
    assert status == 1
    assert (
        f"  deployments/tess-public/cluster/kubeconfig.yaml: is a symbolic link (to {outside})"
    ) in out


# --- pairs are isolated ------------------------------------------------------------------


def test_two_hubs_with_one_release(hub_repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    public = "deployments/tess-public/hubploy.yaml"
    private = "deployments/tess-private/hubploy.yaml"
    replace_in(hub_repo, public, "release: tess-public-prod", "release: tess-private-prod")
    public_line = line_of(hub_repo, public, "release: tess-private-prod")
    private_line = line_of(hub_repo, private, "release: tess-private-prod")
    status, out = validate(hub_repo, capsys)
    assert status == 1
    assert (
        f"  {public}:{public_line}: release tess-private-prod is also used by tess-private/prod "
        f"at {private}:{private_line}: every hub and environment needs its own release\n"
    ) in out
    assert (
        f"  {private}:{private_line}: release tess-private-prod is also used by tess-public/prod "
        f"at {public}:{public_line}: every hub and environment needs its own release\n"
    ) in out
    assert "ok      tess-public/staging" in out
    assert "2 of 4 hub environments valid" in out


def test_staging_and_prod_sharing_a_namespace(
    hub_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    public = "deployments/tess-public/hubploy.yaml"
    replace_in(hub_repo, public, "namespace: tess-public-prod", "namespace: tess-public-staging")
    status, out = validate(hub_repo, capsys, "tess-public")
    assert status == 1
    assert (
        f"  {public}:14: namespace tess-public-staging is also used by tess-public/prod at "
        f"{public}:15: every hub and environment needs its own namespace\n"
    ) in out


def test_a_verbatim_copy_of_a_hub(hub_repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    copy = hub_repo / "deployments/tess-copy"
    copy.mkdir()
    for name in ("hubploy.yaml", "config", "secrets"):
        source = hub_repo / "deployments/tess-public" / name
        if source.is_dir():
            for item in source.iterdir():
                write(copy, f"{name}/{item.name}", item.read_text())
        else:
            write(copy, name, source.read_text())
    status, out = validate(hub_repo, capsys)
    assert status == 1
    for setting, value in (
        ("release", "tess-public-prod"),
        ("namespace", "tess-public-prod"),
        ("url", "https://tess.omgwtf.in"),
    ):
        assert f"{setting} {value} is also used by tess-copy/prod at " in out
        assert f"{setting} {value} is also used by tess-public/prod at " in out
    assert "FAILED  tess-copy/staging: 3 problem(s)" in out
    assert "ok      tess-private/prod" in out


INJECTED = "evil\n::error file=README.md,line=1::injected"


def copy_of_public(repo: Path, name: str) -> None:
    """A copy of tess-public, named `name`, with its own release, namespace and URL."""
    copy = repo / "deployments" / name
    shutil.copytree(repo / "deployments/tess-public", copy)
    hubploy = (copy / "hubploy.yaml").read_text()
    (copy / "hubploy.yaml").write_text(
        hubploy.replace("tess-public-", "copy-").replace("tess.omgwtf.in", "copy.omgwtf.in")
    )


@pytest.mark.parametrize(
    ("name", "shown", "path"),
    [
        (
            INJECTED,
            "'evil\\n::error file=README.md,line=1::injected'",
            "evil\\n::error file=README.md,line=1::injected",  # escaped: no newline printed
        ),
        ("tess\x1b[8m", "'tess\\x1b[8m'", "tess\\x1b[8m"),  # a terminal escape, escaped too
        ("Hub 000", "'Hub 000'", "Hub 000"),
        ("-rf", "'-rf'", "-rf"),
        (".hidden", "'.hidden'", ".hidden"),
        ("tess:x", "'tess:x'", "tess:x"),  # no `:` in an artifact name
        ("tess..x", "'tess..x'", "tess..x"),  # nor `..` in a (rollback) branch name
        ("hüb", "'hüb'", "hüb"),
    ],
)
def test_a_hub_directory_whose_name_is_no_hub_name(
    hub_repo: Path, capsys: pytest.CaptureFixture[str], name: str, shown: str, path: str
) -> None:
    copy_of_public(hub_repo, name)  # only its name is wrong
    message = (
        f"{name!r} is not a valid hub name: use ASCII letters, digits, `-`, `_` and `.`, "
        "starting and ending with a letter or digit, without `..` (it is part of GitHub "
        "environment, artifact, file and branch names); rename the directory"
    )
    error = f"deployments/{path}: {message}"
    status, out = validate(hub_repo, capsys)
    assert status == 1
    assert f"FAILED  {shown}: 1 problem(s)\n  {error}\n" in out
    assert "ok      tess-public/prod" in out
    status, out = validate(hub_repo, capsys, "--format", "github")
    assert status == 1
    assert "\n::error file=README.md" not in out
    annotated = escape_property(f"deployments/{path}")
    assert f"FAILED  {shown}: 1 problem(s)\n::error file={annotated},title=" in out
    status, out = validate(hub_repo, capsys, "--format", "json")
    pair = next(pair for pair in json.loads(out)["pairs"] if pair["hub"] == name)
    assert pair["problems"] == [{"file": f"deployments/{path}", "line": None, "message": message}]
    assert main(["--repo", str(hub_repo), "plan", "--base", "HEAD"]) == 1
    err = capsys.readouterr().err
    assert f"hubbot: error: {shown} not planned: {error}\n" in err
    assert "\n::" not in err


@pytest.mark.parametrize("name", ["Tess_Public.v2", "h" * 46])
def test_an_existing_hub_needs_no_name_new_hub_would_give(
    hub_repo: Path, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    # Its releases and namespaces are set in hubploy.yaml, not made of its name: upper case,
    # `_`, `.` and a name too long for `<name>-staging` to be a release name all do.
    copy_of_public(hub_repo, name)
    _, out = validate(hub_repo, capsys, "--no-startup")  # (infra/ lacks the copy's namespaces)
    assert f"ok      {name}/staging (" in out
    assert f"ok      {name}/prod (" in out


def test_a_broken_hubploy_does_not_block_the_other_hubs(
    hub_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hubploy = "deployments/tess-public/hubploy.yaml"
    write(hub_repo, hubploy, "images: [\n")
    status, out = validate(hub_repo, capsys)
    assert status == 1
    assert f"FAILED  tess-public: 1 problem(s)\n  {hubploy}:" in out
    assert "ok      tess-private/staging" in out
    assert "ok      tess-private/prod" in out


@pytest.mark.parametrize("remove", ["directory", "contents"])
def test_no_hubs_at_all(hub_repo: Path, capsys: pytest.CaptureFixture[str], remove: str) -> None:
    for hub in ("tess-public", "tess-private"):
        shutil.rmtree(hub_repo / "deployments" / hub)
    if remove == "directory":
        (hub_repo / "deployments").rmdir()
    status, out = validate(hub_repo, capsys)
    assert status == 1
    assert out == (
        "hubbot: error: nothing to validate: no hub in deployments/ (each is a directory with a "
        "hubploy.yaml)\n"
    )


# --- secrets ------------------------------------------------------------------------------


def test_an_unknown_key_in_a_secrets_file(
    hub_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A setting's name under hub.config is the start-up check's to judge (test_startup.py).
    secrets = "deployments/tess-private/secrets/prod.yaml"
    text = (hub_repo / secrets).read_text()
    token = text[text.index("ENC[") : text.index("]", text.index("ENC[")) + 1]
    (hub_repo / secrets).write_text(text.replace("sops:\n", f"secretTokne: {token}\nsops:\n"))
    status, out = validate(hub_repo, capsys, "tess-private", "--env", "prod")
    assert status == 1
    line = line_of(hub_repo, secrets, "secretTokne:")
    assert f"  {secrets}:{line}: unknown key `secretTokne`" in out


# --- policy comes from the trusted side ---------------------------------------------------


def test_a_change_is_held_to_its_base_schemas(
    hub_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    git(hub_repo, "checkout", "-q", "-b", "loosen")
    values = "schemas/values.schema.yaml"
    replace_in(hub_repo, values, "\nproperties:\n", "\nproperties:\n  backdoor: {}\n")
    common = "deployments/tess-public/config/common.yaml"
    write(hub_repo, common, (hub_repo / common).read_text() + "backdoor: {enabled: true}\n")
    hubploy = "deployments/tess-public/hubploy.yaml"
    replace_in(hub_repo, "schemas/hubploy.schema.yaml", "\n  images:", "\n  owner: {}\n  images:")
    write(hub_repo, hubploy, (hub_repo / hubploy).read_text() + "owner: mallory\n")
    commit_all(hub_repo, "loosen the schemas")

    status, out = validate(hub_repo, capsys, "tess-public")
    assert status == 0, out

    status, out = validate(hub_repo, capsys, "tess-public", "--base", "staging")
    assert status == 1
    line = line_of(hub_repo, common, "backdoor:")
    base = "at staging, the base this change is also checked against\n"
    assert f"  {common}:{line}: unknown key `backdoor` (expected one of: " in out
    assert f"; so says schemas/values.schema.yaml {base}" in out
    line = line_of(hub_repo, hubploy, "owner:")
    assert f"  {hubploy}:{line}: unknown key `owner` (expected one of: " in out
    assert f"; so says schemas/hubploy.schema.yaml {base}" in out
    assert "0 of 2 hub environments valid" in out


def test_with_a_base_a_resized_static_volume_is_an_error(
    hub_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    common = "deployments/tess-private/config/common.yaml"
    replace_in(hub_repo, common, "  enabled: true\n", "  enabled: true\n  capacity: 2Ti\n")
    line = line_of(hub_repo, common, "capacity: 2Ti")
    status, out = validate(hub_repo, capsys)
    assert status == 0  # without a base there is nothing to compare with

    status, out = validate(hub_repo, capsys, "--base", "HEAD")
    assert status == 1
    assert "2 of 4 hub environments valid" in out
    for env in ("prod", "staging"):
        assert (
            f"  {common}:{line}: Kubernetes refuses to resize a statically provisioned volume "
            f"(PersistentVolume tess-private-{env}-home: 1Ti -> 2Ti): keep homeStorage.capacity "
            "at 1Ti (EFS grows by itself; the capacity is only a label)"
        ) in out


def test_with_a_base_a_new_home_volume_or_hub_is_no_resize(
    hub_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    public = "deployments/tess-public/config/common.yaml"
    text = (hub_repo / public).read_text()
    home = "homeStorage:\n  enabled: true\n  efsFileSystemId: fs-0123456789abcdef1\n"
    write(hub_repo, public, home + "  capacity: 2Ti\n" + text)
    status, out = validate(hub_repo, capsys, "--base", "HEAD")
    assert status == 0, out

    status, out = validate(hub_repo, capsys, "--base", "no-such-ref")
    assert status == 1
    assert "no-such-ref" in out


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
        f"{file}:{line_of(hub_repo, file, 'path: /etc')}: `images.0.path: /etc` leaves the "
        "repository: name a path inside it, relative to deployments/tess-public"
    )
    status, out = validate(hub_repo, capsys)
    assert status == 1
    assert message in out
    status = main(["--repo", str(hub_repo), "plan", "--base", "HEAD"])
    assert status == 1
    assert capsys.readouterr().err == f"hubbot: error: tess-public not planned: {message}\n"


def test_git_not_installed_is_not_a_missing_repository(
    hub_repo: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(hub_repo / "no-programs-here"))
    status, out = validate(hub_repo, capsys)
    assert (status, out) == (1, "hubbot: error: git is not installed: install git and retry\n")


def test_two_images_on_one_helm_path_name_both(
    hub_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hubploy = "deployments/tess-private/hubploy.yaml"
    text = (hub_repo / hubploy).read_text()
    second = (
        "  - name: 123456789012.dkr.ecr.us-east-1.amazonaws.com/tess-other-image\n"
        "    path: images/default\n"
        "    helm_path: jupyterhub.singleuser\n"
    )
    write(hub_repo, hubploy, text.replace("registry:\n", second + "registry:\n", 1))
    status, out = validate(hub_repo, capsys, "tess-private")
    assert status == 1
    first = line_of(hub_repo, hubploy, "tess-user-image")
    later = line_of(hub_repo, hubploy, "tess-other-image")
    assert (
        f"{hubploy}:{later}: image 123456789012.dkr.ecr.us-east-1.amazonaws.com/tess-other-image "
        "is set at jupyterhub.singleuser, where image "
        f"123456789012.dkr.ecr.us-east-1.amazonaws.com/tess-user-image ({hubploy}:{first}) is set "
        "too: only one would reach helm; give each image a helm_path of its own"
    ) in out
