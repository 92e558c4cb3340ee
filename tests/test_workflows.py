"""The GitHub workflows: valid, thin, pinned, least-privilege, and clean under zizmor."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from tests.fixtures.tools import require_binary

WORKFLOWS = sorted((Path(__file__).parents[1] / ".github" / "workflows").glob("*.yaml"))


def load(path: Path) -> dict:  # type: ignore[type-arg]
    data: dict = YAML(typ="safe").load(path.read_text())  # type: ignore[type-arg]
    return data


def test_there_are_pr_and_deploy_workflows() -> None:
    assert {p.name for p in WORKFLOWS} == {"pr.yaml", "deploy.yaml"}


def test_workflows_match_githubs_schema() -> None:
    tool = require_binary("check-jsonschema", "pip install check-jsonschema")
    result = subprocess.run(
        [tool, "--builtin-schema", "vendor.github-workflows", *map(str, WORKFLOWS)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_zizmor_finds_nothing_at_medium_or_above() -> None:
    tool = require_binary("zizmor", "pip install zizmor")
    result = subprocess.run(
        [tool, "--offline", "--min-severity", "medium", *map(str, WORKFLOWS)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_workflows_are_thin_and_pinned(path: Path) -> None:
    workflow = load(path)
    for job in workflow["jobs"].values():
        steps = job["steps"]
        uses = [step["uses"] for step in steps if "uses" in step]
        assert [u.split("@")[0] for u in uses] == ["actions/checkout", "actions/setup-python"]
        assert all(re.fullmatch(r"[\w/-]+@[0-9a-f]{40}", u) for u in uses), uses
        runs = [step["run"] for step in steps if "run" in step]
        assert len(runs) == 1
        assert runs[0].strip().splitlines()[-1] == "hubbot ci"
    assert "write-all" not in str(workflow.get("permissions"))
    assert workflow["permissions"]["contents"] == "read"


def test_only_deploys_get_aws_and_never_cancel() -> None:
    pr = load(WORKFLOWS[[p.name for p in WORKFLOWS].index("pr.yaml")])
    deploy = load(WORKFLOWS[[p.name for p in WORKFLOWS].index("deploy.yaml")])
    assert "id-token" not in pr["permissions"]
    assert deploy["permissions"]["id-token"] == "write"
    assert deploy["concurrency"]["cancel-in-progress"] is False
    assert "github.ref_name" in deploy["concurrency"]["group"]
