"""`hubbot rollback HUB ENV`: a PR into staging with the config of the last good deploy."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bot import git as bot_git
from bot import github, records
from bot.main import main
from tests.fixtures.github import FakeGitHub
from tests.fixtures.record_keys import PUBLIC, make_record_keys
from tests.fixtures.repos import commit_all, git, replace_in

COMMON = "deployments/tess-public/config/common.yaml"


@pytest.fixture
def api(github_api: FakeGitHub, monkeypatch: pytest.MonkeyPatch) -> FakeGitHub:
    for name, value in github_api.env().items():
        monkeypatch.setenv(name, value)
    return github_api


@pytest.fixture
def remote(hub_repo: Path, tmp_path: Path) -> Path:
    """A bare `origin` holding staging and prod, as a CI checkout has."""
    bare = tmp_path / "origin.git"
    git(tmp_path, "init", "-q", "--bare", str(bare))
    git(hub_repo, "remote", "add", "origin", str(bare))
    git(hub_repo, "push", "-q", "origin", "staging", "prod")
    git(hub_repo, "fetch", "-q", "origin")
    return bare


def record(api: FakeGitHub, env: str, sha: str, common: str, state: str = "success") -> int:
    client = github.client_from_env(api.env())
    payload: dict[str, Any] = {
        "hubbot_freight": 1,
        "hub": "tess-public",
        "env": env,
        "images": [],
        "chart": {"name": "tess-hub", "version": "0.1.0"},
        "fingerprints": {"common": common, "values": "hmac-sha256:" + common[-8:]},
    }
    deployment = github.create_deployment(client, sha, f"tess-public-{env}", payload)
    github.create_deployment_status(client, deployment["id"], state)
    return int(deployment["id"])


def history(repo: Path, api: FakeGitHub, env: str) -> tuple[str, str, int]:
    """Good (timeout 600), then 900, then a bad 1200 that runs now; a failed deploy after it.
    Returns the good and bad commits and the good deployment's id."""
    good = git(repo, "rev-parse", "HEAD")
    record(api, env, good, "sha256:good")
    replace_in(repo, COMMON, "timeout: 600", "timeout: 900")
    middle = commit_all(repo, "cull after 15 min")
    middle_id = record(api, env, middle, "sha256:middle")
    replace_in(repo, COMMON, "timeout: 900", "timeout: 1200")
    bad = commit_all(repo, "cull after 20 min")
    record(api, env, bad, "sha256:bad")
    replace_in(repo, COMMON, "timeout: 1200", "timeout: 1500")
    record(api, env, commit_all(repo, "cull after 25 min"), "sha256:failed", state="failure")
    git(repo, "push", "-q", "origin", "staging")
    git(repo, "fetch", "-q", "origin")
    return middle, bad, middle_id


def running_id(api: FakeGitHub) -> int:
    """The newest deployment whose latest status is success."""
    return max(i for i, statuses in api.statuses.items() if statuses[-1]["state"] == "success")


@pytest.mark.usefixtures("remote")
def test_a_prod_rollback_is_a_pull_request_into_staging_with_the_last_good_config(
    hub_repo: Path, api: FakeGitHub, capsys: pytest.CaptureFixture[str]
) -> None:
    good, bad, good_id = history(hub_repo, api, "prod")
    head_before = git(hub_repo, "rev-parse", "HEAD")
    status = main(["--repo", str(hub_repo), "rollback", "tess-public", "prod"])
    out = capsys.readouterr().out
    assert status == 0, out
    branch = f"hubbot/rollback-tess-public-prod-{good_id}"
    assert out.splitlines() == [
        f"{PUBLIC} is not set: deployment records are taken as GitHub has them, unverified",
        f"tess-public/prod runs deployment {running_id(api)} (commit {bad[:12]}); the last good "
        f"deploy before it with other freight is {good_id} (commit {good[:12]})",
        f"branch {branch} from origin/staging puts back:",
        f"  {COMMON}",
        "opened PR #1 into staging: https://github.com/tess-org/tess-hubs/pull/1",
    ]
    # The branch is staging's tip with the pair's files as the good deploy had them.
    assert git(hub_repo, "rev-parse", f"origin/{branch}^") == git(
        hub_repo, "rev-parse", "origin/staging"
    )
    assert git(hub_repo, "diff", "--name-only", "origin/staging", f"origin/{branch}") == COMMON
    assert git(hub_repo, "show", f"origin/{branch}:{COMMON}") == git(
        hub_repo, "show", f"{good}:{COMMON}"
    )
    # The work tree and its branch are untouched.
    assert git(hub_repo, "rev-parse", "HEAD") == head_before
    assert git(hub_repo, "status", "--porcelain") == ""
    pull = api.pulls[1]
    assert (pull["head"]["ref"], pull["base"]["ref"]) == (branch, "staging")
    assert pull["title"] == f"Rollback tess-public/prod to deployment {good_id}"
    assert "the promotion PR then carries the same freight to prod" in pull["body"]
    assert f"- `{COMMON}`" in pull["body"]


def test_without_an_earlier_good_deploy_nothing_is_made(
    hub_repo: Path, api: FakeGitHub, capsys: pytest.CaptureFixture[str]
) -> None:
    sha = git(hub_repo, "rev-parse", "HEAD")
    only = record(api, "staging", sha, "sha256:one")
    record(api, "staging", sha, "sha256:one")  # a redeploy of the same freight
    status = main(["--repo", str(hub_repo), "rollback", "tess-public", "staging"])
    captured = capsys.readouterr()
    assert status == 1
    assert captured.err == (
        f"hubbot: error: tess-public/staging runs deployment {only + 2} (commit {sha[:12]}), "
        "and no earlier successful deployment in the last 50 shipped other freight: there is "
        "nothing to roll back to\n"
    )
    assert git(hub_repo, "branch", "--list", "hubbot/*") == ""


def test_without_records_or_a_token_the_message_says_so(
    hub_repo: Path,
    api: FakeGitHub,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert main(["--repo", str(hub_repo), "rollback", "tess-public", "prod"]) == 1
    assert capsys.readouterr().err == (
        "hubbot: error: no successful deployment of tess-public/prod is recorded (GitHub "
        "environment tess-public-prod): there is nothing to roll back to\n"
    )
    monkeypatch.delenv("GITHUB_TOKEN")
    assert main(["--repo", str(hub_repo), "rollback", "tess-public", "prod"]) == 1
    assert capsys.readouterr().err == (
        "hubbot: error: hubbot rollback reads the deployment records on GitHub: GITHUB_TOKEN "
        "is not set: the GitHub API needs a token\n"
    )


@pytest.mark.parametrize("bad_id", ["DE_kwDOABCD", "1001x", True])
def test_without_the_public_keys_a_deployment_without_an_integer_id_is_one_error(
    hub_repo: Path, api: FakeGitHub, capsys: pytest.CaptureFixture[str], bad_id: object
) -> None:
    sha = git(hub_repo, "rev-parse", "HEAD")
    number = record(api, "staging", sha, "sha256:one")
    # An answer no GitHub gives: a record whose id is not an integer, with statuses.
    api.fail(200, method="GET", path=r".*/deployments",
             body=[{**api.deployments[number], "id": bad_id}])
    api.fail(200, method="GET", path=r".*/statuses", body=api.statuses[number])

    status = main(["--repo", str(hub_repo), "rollback", "tess-public", "staging", "--no-push"])

    captured = capsys.readouterr()
    assert status == 1
    assert captured.err == (
        "hubbot: error: GitHub API GET /repos/tess-org/tess-hubs/deployments answered a "
        f"deployment whose id is {bad_id!r}, where GitHub gives every deployment an integer "
        "id: is GITHUB_API_URL GitHub's API?\n"
    )
    assert git(hub_repo, "branch", "--list", "hubbot/*") == ""


@pytest.mark.parametrize("bad_sha", ["missing", None, 12345, ["HEAD"], "HEAD"])
def test_without_the_public_keys_a_deployment_without_a_commit_sha_is_one_error(
    hub_repo: Path, api: FakeGitHub, capsys: pytest.CaptureFixture[str], bad_sha: object
) -> None:
    sha = git(hub_repo, "rev-parse", "HEAD")
    number = record(api, "staging", sha, "sha256:one")
    listed = {k: v for k, v in api.deployments[number].items() if k != "sha"}
    # An answer no GitHub gives: a record without the 40-hex sha of its commit.
    api.fail(200, method="GET", path=r".*/deployments",
             body=[listed if bad_sha == "missing" else {**listed, "sha": bad_sha}])

    status = main(["--repo", str(hub_repo), "rollback", "tess-public", "staging", "--no-push"])

    captured = capsys.readouterr()
    assert status == 1
    shown = "missing" if bad_sha == "missing" else repr(bad_sha)
    assert captured.err == (
        "hubbot: error: GitHub API GET /repos/tess-org/tess-hubs/deployments answered "
        f"deployment {number} whose sha is {shown}, where GitHub gives every deployment the "
        "40 hex digits of its commit: is GITHUB_API_URL GitHub's API?\n"
    )
    assert git(hub_repo, "branch", "--list", "hubbot/*") == ""


@pytest.mark.parametrize(
    ("bad_status", "problem"),
    [
        ("success", "it is 'success', not a JSON object"),
        (None, "it is None, not a JSON object"),
        ({"description": ""}, "its state is missing, not one of GitHub's"),
        ({"state": ["success"]}, "its state is ['success'], not one of GitHub's"),
        ({"state": "success", "description": 5}, "its description is 5, not a string"),
    ],
)
def test_without_the_public_keys_a_status_github_never_gives_is_one_error(
    hub_repo: Path, api: FakeGitHub, capsys: pytest.CaptureFixture[str], bad_status: object,
    problem: str,
) -> None:
    sha = git(hub_repo, "rev-parse", "HEAD")
    number = record(api, "staging", sha, "sha256:one")
    api.fail(200, method="GET", path=r".*/statuses", body=[bad_status])

    status = main(["--repo", str(hub_repo), "rollback", "tess-public", "staging", "--no-push"])

    captured = capsys.readouterr()
    assert status == 1
    assert captured.err.startswith(
        f"hubbot: error: GitHub API GET /repos/tess-org/tess-hubs/deployments/{number}/statuses "
        f"answered a status GitHub never gives: {problem}"
    )
    assert captured.err.endswith(": is GITHUB_API_URL GitHub's API?\n")
    assert "Traceback" not in captured.err


def test_a_rollback_staging_already_holds_is_not_made_again(
    hub_repo: Path, api: FakeGitHub, capsys: pytest.CaptureFixture[str]
) -> None:
    good = git(hub_repo, "rev-parse", "HEAD")
    record(api, "prod", good, "sha256:good")
    replace_in(hub_repo, COMMON, "timeout: 600", "timeout: 900")
    bad = commit_all(hub_repo, "cull after 15 min")
    record(api, "prod", bad, "sha256:bad")
    replace_in(hub_repo, COMMON, "timeout: 900", "timeout: 600")
    commit_all(hub_repo, "revert: cull after 10 min")
    status = main(["--repo", str(hub_repo), "rollback", "tess-public", "prod", "--no-push"])
    assert status == 1
    assert "nothing to revert; merge the promotion PR to ship it to prod" in (
        capsys.readouterr().err
    )


@pytest.mark.usefixtures("remote")
def test_with_the_public_keys_a_forged_record_is_neither_now_nor_the_target(
    hub_repo: Path, api: FakeGitHub, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Anyone who may write deployments can record a "success": with
    HUBBOT_RECORD_PUBLIC_KEYS set, rollback counts only records whose proof verifies."""
    keys = make_record_keys()
    client = github.client_from_env(api.env())

    def signed(sha: str, common: str) -> int:
        tree = bot_git.commit_tree(hub_repo, sha)
        assert tree is not None
        payload: dict[str, Any] = {
            "hubbot_freight": 1, "hub": "tess-public", "env": "prod", "commit_tree": tree,
            "images": [], "chart": {"name": "tess-hub", "version": "0.1.0"},
            "fingerprints": {"common": common},
        }
        deployment = github.create_deployment(client, sha, "tess-public-prod", payload)
        subject = records.Subject(client.repository, sha, tree, "tess-public", "prod")
        proof = records.proof(keys.key("prod"), subject, payload, "success")
        github.create_deployment_status(
            client, deployment["id"], "success",
            description=records.proven_description(proof, "deployed"),
        )
        return int(deployment["id"])

    good = git(hub_repo, "rev-parse", "HEAD")
    good_id = signed(good, "sha256:good")
    replace_in(hub_repo, COMMON, "timeout: 600", "timeout: 900")
    bad = commit_all(hub_repo, "cull after 15 min")
    bad_id = signed(bad, "sha256:bad")
    replace_in(hub_repo, COMMON, "timeout: 900", "timeout: 1200")
    forged = commit_all(hub_repo, "cull after 20 min")
    record(api, "prod", forged, "sha256:forged")  # a success status without a proof
    git(hub_repo, "push", "-q", "origin", "staging")
    git(hub_repo, "fetch", "-q", "origin")

    argv = ["--repo", str(hub_repo), "rollback", "tess-public", "prod", "--no-push"]
    monkeypatch.setenv(PUBLIC, keys.public())
    api.requests.clear()
    assert main(argv) == 0
    out = capsys.readouterr().out
    # The environment's deployments, and each one's statuses, are listed once.
    assert len(api.calls("GET", r".*/deployments")) == 1
    statuses = [r.path for r in api.calls("GET", r".*/deployments/\d+/statuses")]
    assert len(statuses) == len(set(statuses)) == 3
    assert (
        f"tess-public/prod runs deployment {bad_id} (commit {bad[:12]}); the last good deploy "
        f"before it with other freight is {good_id} (commit {good[:12]})"
    ) in out

    monkeypatch.delenv(PUBLIC)  # without the keys: taken as GitHub has them, and said so
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert f"{PUBLIC} is not set: deployment records are taken as GitHub has them" in out
    assert f"(commit {forged[:12]}); the last good deploy before it" in out
