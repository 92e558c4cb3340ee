"""Contributor conveniences: pre-commit hooks and the editor schemas."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from jsonschema import Draft7Validator

from tests.fixtures.repos import PROJECT, commit_all, replace_in
from tests.fixtures.tools import VENV_BIN, missing, require_binary
from tests.test_startup import chart_packages

EDITOR = PROJECT / "schemas" / "editor"


def pre_commit(repo: Path, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    binary = require_binary("pre-commit", "pip install pre-commit (the test extras)")
    packages = chart_packages()
    if not packages.is_dir():
        missing(f"{packages}", "set HUBBOT_CHART_PACKAGES to the shared chart packages")
    env = {
        **os.environ,
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "PRE_COMMIT_HOME": str(tmp_path / "pre-commit-home"),
        "HUBBOT_CHART_PACKAGES": str(packages),
    }
    return subprocess.run(
        [binary, *args], cwd=repo, env=env, capture_output=True, text=True, check=False
    )


@pytest.fixture
def hooked_repo(hub_repo: Path) -> Path:
    for name in (".pre-commit-config.yaml", ".pre-commit-hooks.yaml"):
        shutil.copy2(PROJECT / name, hub_repo / name)
    commit_all(hub_repo, "pre-commit hooks")
    return hub_repo


def test_the_shipped_hooks_pass_offline_and_call_hubbot(hooked_repo: Path, tmp_path: Path) -> None:
    result = pre_commit(hooked_repo, tmp_path, "run", "--all-files")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "hubbot validate (every layer, house policy, infra/ cross-check)" in result.stdout
    assert "hubbot secrets check" in result.stdout

    common = "deployments/tess-public/config/common.yaml"
    replace_in(hooked_repo, common, "    every: 60", "    every: soon")
    result = pre_commit(hooked_repo, tmp_path, "run", "--files", common)
    assert result.returncode == 1
    assert f'{common}:21: jupyterhub.cull.every: "soon" is not of type integer' in result.stdout


def test_the_hook_manifest_and_config_are_what_pre_commit_accepts(tmp_path: Path) -> None:
    for command, name in (
        ("validate-config", ".pre-commit-config.yaml"),
        ("validate-manifest", ".pre-commit-hooks.yaml"),
    ):
        result = pre_commit(PROJECT, tmp_path, command, name)
        assert result.returncode == 0, result.stdout + result.stderr


def test_the_editor_schemas_are_in_sync_with_schemas() -> None:
    result = subprocess.run(
        [sys.executable, "scripts/editor_schemas.py", "--check"],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_the_editor_schemas_accept_every_file_they_are_mapped_to_and_catch_a_typo() -> None:
    import yaml

    settings = json.loads((PROJECT / ".vscode" / "settings.json").read_text())
    mapped = 0
    for schema_path, globs in settings["yaml.schemas"].items():
        schema = json.loads((PROJECT / schema_path).read_text())
        Draft7Validator.check_schema(schema)
        validator = Draft7Validator(schema)
        for glob in [globs] if isinstance(globs, str) else globs:
            files = sorted(PROJECT.glob(glob))
            assert files, glob
            for file in files:
                errors = list(validator.iter_errors(yaml.safe_load(file.read_text()) or {}))
                assert errors == [], file
                mapped += 1
    assert mapped >= 9
    layer = Draft7Validator(json.loads((EDITOR / "values-layer.schema.json").read_text()))
    typo = {"homeStorage": {"enabeld": True}}
    assert [error.message for error in layer.iter_errors(typo)] == [
        "Additional properties are not allowed ('enabeld' was unexpected)"
    ]
