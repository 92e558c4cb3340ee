"""`hubbot ci`: the pipeline per GitHub event on a real git repo, GitHub API stand-in."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bot.main import main
from tests.fixtures.github import FakeGitHub
from tests.fixtures.repos import commit_all, git

FULL_NAME = "tess-org/tess-hubs"


@pytest.fixture
def api(github_api: FakeGitHub, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> FakeGitHub:
    for name, value in github_api.env().items():
        monkeypatch.setenv(name, value)
    for name in ("GITHUB_SHA", "GITHUB_EVENT_NAME", "GITHUB_EVENT_PATH", "GITHUB_REF",
                 "GITHUB_ACTIONS", "AWS_ROLE_ARN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(tmp_path / "summary.md"))
    return github_api


def summary(tmp_path: Path) -> str:
    return (tmp_path / "summary.md").read_text()


def branch_with_change(repo: Path, branch: str, old: str, new: str) -> str:
    git(repo, "checkout", "-q", "-b", branch)
    common = repo / "deployments/tess-public/config/common.yaml"
    text = common.read_text()
    assert old in text
    common.write_text(text.replace(old, new))
    return commit_all(repo, f"{branch}: {new}")


def pull_event(
    tmp_path: Path, number: int, base: str, base_sha: str, head: str, head_sha: str,
    head_repo: str | None = FULL_NAME,
) -> Path:
    payload: dict[str, Any] = {
        "action": "synchronize",
        "number": number,
        "pull_request": {
            "number": number,
            "base": {"ref": base, "sha": base_sha, "repo": {"full_name": FULL_NAME}},
            "head": {"ref": head, "sha": head_sha,
                     "repo": None if head_repo is None else {"full_name": head_repo}},
        },
    }
    path = tmp_path / "event.json"
    path.write_text(json.dumps(payload))
    return path


def ci(repo: Path, event: str, path: Path, ref: str = "") -> int:
    args = ["--repo", str(repo), "ci", "--event", event, "--event-path", str(path)]
    return main([*args, "--ref", ref] if ref else args)


def test_a_pull_request_posts_one_comment_and_pushes_nothing(
    hub_repo: Path, api: FakeGitHub, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base_sha = git(hub_repo, "rev-parse", "staging")
    head_sha = branch_with_change(hub_repo, "longer-culling", "timeout: 600", "timeout: 900")
    pull = api.add_pull("longer-culling", "staging")
    event = pull_event(tmp_path, pull["number"], "staging", base_sha, "longer-culling", head_sha)

    assert ci(hub_repo, "pull_request", event) == 0

    out, _ = capsys.readouterr()
    (comment,) = api.comments_on(pull["number"])
    assert comment["body"].startswith("<!-- hubbot:diff part 1 -->\n")
    assert "tess-public/staging" in comment["body"]
    assert "cull.timeout" in comment["body"]
    assert [r.method for r in api.requests if r.method != "GET"] == ["POST"]
    for step in ("validate", "plan", "diff", "comment"):
        assert f"==> {step}\n" in out
        assert f"<== {step}: ok in " in out
    assert "==> build: skipped (no image changed)\n" in out
    report = summary(tmp_path)
    assert report.startswith("# hubbot ci: pull_request")
    assert "| comment | ok |" in report
    assert "cull.timeout" in report

    # Run again for the next push to the PR: the same comment is edited, not a second one.
    assert ci(hub_repo, "pull_request", event) == 0
    assert len(api.comments_on(pull["number"])) == 1


def test_a_fork_pull_request_is_diffed_in_shape_only_mode_without_a_comment(
    hub_repo: Path, api: FakeGitHub, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base_sha = git(hub_repo, "rev-parse", "staging")
    head_sha = branch_with_change(hub_repo, "fork-change", "timeout: 600", "timeout: 700")
    event = pull_event(tmp_path, 41, "staging", base_sha, "fork-change", head_sha,
                       head_repo="someone/tess-hubs")

    assert ci(hub_repo, "pull_request", event) == 0

    out, _ = capsys.readouterr()
    assert api.requests == []
    assert "==> build: skipped (a fork's pull request has no registry access)\n" in out
    report = summary(tmp_path)
    assert "| comment | skipped: a fork's pull request gets a read-only token; the diff is " \
        "in this job summary |" in report
    assert "cull.timeout" in report


def test_a_pull_request_into_prod_from_a_feature_branch_fails_its_check(
    hub_repo: Path, api: FakeGitHub, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base_sha = git(hub_repo, "rev-parse", "prod")
    head_sha = branch_with_change(hub_repo, "hotfix", "timeout: 600", "timeout: 300")
    pull = api.add_pull("hotfix", "prod")
    event = pull_event(tmp_path, pull["number"], "prod", base_sha, "hotfix", head_sha)

    assert ci(hub_repo, "pull_request", event) == 1

    _, err = capsys.readouterr()
    assert err == (
        "hubbot: error: pull requests into prod must come from the staging branch of "
        f"tess-org/tess-hubs, but #{pull['number']} comes from tess-org/tess-hubs:hotfix: "
        "target staging instead; hubbot keeps the promotion PR staging -> prod up to date\n"
    )
    assert api.comments_on(pull["number"]) == []
    assert "| head check | failed |" in summary(tmp_path)


def test_the_promotion_pull_request_gets_the_prod_diff(
    hub_repo: Path, api: FakeGitHub, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base_sha = git(hub_repo, "rev-parse", "prod")
    common = hub_repo / "deployments/tess-public/config/common.yaml"
    common.write_text(common.read_text().replace("timeout: 600", "timeout: 900"))
    head_sha = commit_all(hub_repo, "staging: longer culling")
    pull = api.add_pull("staging", "prod")
    event = pull_event(tmp_path, pull["number"], "prod", base_sha, "staging", head_sha)

    assert ci(hub_repo, "pull_request", event) == 0

    (comment,) = api.comments_on(pull["number"])
    assert "tess-public/prod" in comment["body"]
    assert "tess-public/staging" not in comment["body"]


def test_an_unknown_event_is_one_clear_error(
    hub_repo: Path, api: FakeGitHub, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "event.json"
    path.write_text("{}")

    assert ci(hub_repo, "issues", path) == 1

    _, err = capsys.readouterr()
    assert err == "hubbot: error: event 'issues' is not handled: pull_request or push\n"
