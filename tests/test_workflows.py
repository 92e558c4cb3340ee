"""The GitHub workflows: valid, pinned, least-privilege per job, clean under zizmor's
auditor persona, installing from the lock, and the push fanned out over a matrix."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from tests.fixtures.tools import require_binary

PROJECT = Path(__file__).parents[1]
WORKFLOW_DIR = PROJECT / ".github" / "workflows"
WORKFLOWS = sorted(WORKFLOW_DIR.glob("*.yaml"))
PINNED = re.compile(r"(?P<action>[\w.-]+/[\w.-]+)@[0-9a-f]{40}")
# The actions a workflow may use, each at a full commit SHA with its version as a comment.
ACTIONS = {
    "actions/checkout",
    "actions/setup-python",
    "actions/upload-artifact",
    "actions/download-artifact",
}
INSTALL = "scripts/ci-install"

Workflow = dict[str, Any]


def load(path: Path) -> Workflow:
    data: Workflow = YAML(typ="safe").load(path.read_text())
    return data


def workflow(name: str) -> Workflow:
    return load(WORKFLOW_DIR / name)


def zizmor(directory: Path) -> list[dict[str, Any]]:
    """zizmor's findings for a workflow directory, with the auditor persona, offline."""
    tool = require_binary("zizmor", "pip install zizmor")
    result = subprocess.run(
        [tool, "--persona=auditor", "--offline", "--format=json", str(directory)],
        capture_output=True,
        text=True,
        check=False,
    )
    findings: list[dict[str, Any]] = json.loads(result.stdout)
    return findings


def high(findings: list[dict[str, Any]]) -> list[str]:
    return [f["ident"] for f in findings if f["determinations"]["severity"] == "High"]


def check_schema(paths: list[Path], schema: str = "vendor.github-workflows") -> str | None:
    """check-jsonschema's complaint, or None when every file is valid."""
    tool = require_binary("check-jsonschema", "pip install check-jsonschema")
    result = subprocess.run(
        [tool, "--builtin-schema", schema, *map(str, paths)],
        capture_output=True,
        text=True,
        check=False,
    )
    return None if result.returncode == 0 else result.stdout + result.stderr


def policy_problems(flow: Workflow) -> list[str]:
    """What breaks this project's workflow rules (beyond zizmor's and the schema's)."""
    problems = []
    if flow.get("permissions") != {}:
        problems.append(f"workflow-level permissions {flow.get('permissions')!r}: grant per job")
    for name, job in flow["jobs"].items():
        grants = job.get("permissions")
        if not isinstance(grants, dict):
            problems.append(f"{name}: no explicit per-job permissions ({grants!r})")
            continue
        problems += [f"{name}: {scope} granted but unused" for scope in grants if scope in
                     ("statuses", "checks", "issues", "packages", "actions", "security-events")]
        steps = job["steps"]
        for step in steps:
            uses = step.get("uses")
            match = PINNED.fullmatch(uses or "")
            if uses is not None and (match is None or match["action"] not in ACTIONS):
                problems.append(f"{name}: {uses} is not an allowed action at a commit SHA")
            if "pip install" in step.get("run", ""):
                problems.append(f"{name}: installs with pip itself; run {INSTALL} (the lock)")
        runs = [step["run"].strip() for step in steps if "run" in step]
        hubbot = [run for run in runs if run.startswith("hubbot ci")]
        if not hubbot:
            problems.append(f"{name}: runs no `hubbot ci`")
        elif INSTALL not in runs or runs.index(INSTALL) > runs.index(hubbot[0]):
            problems.append(f"{name}: does not run {INSTALL} before hubbot")
    return problems


# --- the workflows as committed ---------------------------------------------------------


def test_there_are_pr_and_deploy_workflows() -> None:
    assert {p.name for p in WORKFLOWS} == {"pr.yaml", "deploy.yaml"}


def test_workflows_match_githubs_schema() -> None:
    assert check_schema(WORKFLOWS) is None


def test_zizmor_auditor_finds_nothing_high() -> None:
    findings = zizmor(WORKFLOW_DIR)
    assert high(findings) == []
    assert [f["ident"] for f in findings] == []


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_workflows_follow_the_rules(path: Path) -> None:
    assert policy_problems(load(path)) == []


def test_each_job_has_only_the_permissions_it_uses() -> None:
    pr = workflow("pr.yaml")
    deploy = workflow("deploy.yaml")
    grants = {
        f"{file}:{name}": job["permissions"]
        for file, flow in (("pr", pr), ("deploy", deploy))
        for name, job in flow["jobs"].items()
    }
    assert grants == {
        "pr:hubbot": {"contents": "read", "pull-requests": "write"},
        "deploy:plan": {"contents": "read", "deployments": "write", "id-token": "write"},
        "deploy:deploy": {"contents": "read", "deployments": "write", "id-token": "write"},
        "deploy:gather": {"contents": "read", "deployments": "read", "pull-requests": "write"},
    }


def test_ci_install_uses_the_lock_and_pinned_helm() -> None:
    script = (PROJECT / INSTALL).read_text()
    assert "pip install --quiet --require-hashes -r requirements/runtime.txt" in script
    assert "pip install --quiet --no-deps --no-build-isolation ." in script
    assert "scripts/install-helm" in script


# --- the push fanned out ----------------------------------------------------------------


def test_the_push_is_planned_once_then_deployed_one_job_per_pair() -> None:
    jobs = workflow("deploy.yaml")["jobs"]
    plan, deploy, gather = jobs["plan"], jobs["deploy"], jobs["gather"]
    assert list(jobs) == ["plan", "deploy", "gather"]

    assert plan["outputs"] == {
        "matrix": "${{ steps.plan.outputs.matrix }}",
        "count": "${{ steps.plan.outputs.count }}",
    }
    (plan_step,) = [s for s in plan["steps"] if s.get("id") == "plan"]
    assert plan_step["run"] == "hubbot ci --job plan"

    assert deploy["needs"] == "plan"
    assert deploy["if"] == "fromJSON(needs.plan.outputs.count) > 0"
    assert deploy["strategy"] == {
        "fail-fast": False,
        "max-parallel": "${{ fromJSON(vars.HUBBOT_MAX_PARALLEL || '8') }}",
        "matrix": "${{ fromJSON(needs.plan.outputs.matrix) }}",
    }
    assert deploy["environment"] == "${{ matrix.env }}"
    assert deploy["concurrency"] == {
        "group": "hubbot-deploy-${{ matrix.hub }}-${{ matrix.env }}",
        "cancel-in-progress": False,
    }
    runs = [s for s in deploy["steps"] if s.get("run", "").startswith("hubbot ci")]
    assert [s["env"]["HUB"] for s in runs] == ["${{ matrix.hub }}"]
    assert [s["env"]["DEPLOY_ENV"] for s in runs] == ["${{ matrix.env }}"]
    (upload,) = [s for s in deploy["steps"] if "upload-artifact" in s.get("uses", "")]
    assert upload["if"] == "always()"

    assert gather["needs"] == ["plan", "deploy"]
    assert gather["if"] == "always()"
    (download,) = [s for s in gather["steps"] if "download-artifact" in s.get("uses", "")]
    assert download["with"]["pattern"] == "hubbot-outcome-*"
    (gather_step,) = [s for s in gather["steps"] if s.get("run", "").startswith("hubbot ci")]
    assert gather_step["env"]["PLAN_RESULT"] == "${{ needs.plan.result }}"
    assert gather_step["env"]["MATRIX"] == "${{ needs.plan.outputs.matrix }}"


def test_only_the_plan_and_deploy_jobs_get_aws_and_deploys_never_cancel() -> None:
    pr = workflow("pr.yaml")
    jobs = workflow("deploy.yaml")["jobs"]
    assert all("id-token" not in job["permissions"] for job in pr["jobs"].values())
    assert "id-token" not in jobs["gather"]["permissions"]
    assert jobs["plan"]["environment"] == "${{ github.ref_name }}"
    for job in jobs.values():
        assert job["concurrency"]["cancel-in-progress"] is False



def job_env(job: dict[str, Any]) -> dict[str, str]:
    return {name: value for step in job["steps"] for name, value in step.get("env", {}).items()}


def test_each_environment_signs_with_its_own_secret_and_checking_needs_only_the_variable() -> None:
    signing = "${{ secrets.HUBBOT_RECORD_SIGNING_KEY }}"
    public = "${{ vars.HUBBOT_RECORD_PUBLIC_KEYS }}"
    jobs = workflow("deploy.yaml")["jobs"]
    for name in ("plan", "deploy"):
        env = job_env(jobs[name])
        assert (env["HUBBOT_RECORD_SIGNING_KEY"], env["HUBBOT_RECORD_PUBLIC_KEYS"]) == (
            signing, public
        ), name
    # The gather job has no environment, so no environment secret: it checks the records
    # of the promotion PR's freight with the public keys alone.
    assert "environment" not in jobs["gather"]
    gather = job_env(jobs["gather"])
    assert gather["HUBBOT_RECORD_PUBLIC_KEYS"] == public
    assert "HUBBOT_RECORD_SIGNING_KEY" not in gather
    # A signing key only ever reaches a job of a GitHub environment; pull requests get none.
    for path in WORKFLOWS:
        assert "HUBBOT_RECORD_KEY" not in path.read_text(), path.name
        for name, job in load(path)["jobs"].items():
            if "HUBBOT_RECORD_SIGNING_KEY" in job_env(job):
                assert path.name == "deploy.yaml", (path.name, name)
                assert "environment" in job, (path.name, name)

# --- each rule fails when broken --------------------------------------------------------


def mutated(tmp_path: Path, name: str, change: Callable[[Workflow], None]) -> Path:
    """A copy of the workflow directory with `change` applied to workflow `name`."""
    directory = tmp_path / ".github" / "workflows"
    shutil.copytree(WORKFLOW_DIR, directory)
    flow = load(directory / name)
    change(flow)
    yaml = YAML()
    with (directory / name).open("w") as handle:
        yaml.dump(flow, handle)
    return directory


def workflow_level_grant(flow: Workflow) -> None:
    flow["permissions"] = {"contents": "read", "deployments": "write"}


def statuses_grant(flow: Workflow) -> None:
    flow["jobs"]["plan"]["permissions"]["statuses"] = "write"


def tag_not_sha(flow: Workflow) -> None:
    flow["jobs"]["plan"]["steps"][0]["uses"] = "actions/checkout@v4"


def plain_pip(flow: Workflow) -> None:
    flow["jobs"]["deploy"]["steps"][2]["run"] = "python -m pip install ."


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (workflow_level_grant, "workflow-level permissions"),
        (statuses_grant, "plan: statuses granted but unused"),
        (tag_not_sha, "plan: actions/checkout@v4 is not an allowed action at a commit SHA"),
        (plain_pip, "deploy: installs with pip itself"),
    ],
)
def test_the_rules_catch_a_broken_workflow(
    tmp_path: Path, change: Callable[[Workflow], None], problem: str
) -> None:
    directory = mutated(tmp_path, "deploy.yaml", change)

    problems = policy_problems(load(directory / "deploy.yaml"))

    assert any(p.startswith(problem) for p in problems), problems


def test_zizmor_finds_a_workflow_level_grant_high(tmp_path: Path) -> None:
    directory = mutated(tmp_path, "deploy.yaml", workflow_level_grant)

    assert "excessive-permissions" in high(zizmor(directory))


def test_the_schema_check_catches_an_invalid_workflow(tmp_path: Path) -> None:
    def misspelt_key(flow: Workflow) -> None:
        flow["jobs"]["deploy"]["enviroment"] = flow["jobs"]["deploy"].pop("environment")

    directory = mutated(tmp_path, "deploy.yaml", misspelt_key)

    assert check_schema([directory / "deploy.yaml"]) is not None
