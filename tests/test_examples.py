"""The example events in examples/ are what `hubbot ci` reads on a laptop."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from bot.commands.ci import is_fork, read_event
from bot.main import main
from tests.fixtures.github import FakeGitHub
from tests.fixtures.repos import PROJECT, commit_all, git, replace_in

EXAMPLES = PROJECT / "examples"


def event(name: str, file: str) -> argparse.Namespace:
    return argparse.Namespace(event=name, event_path=EXAMPLES / file, ref=None, job="all")


@pytest.mark.parametrize(
    ("name", "file", "ref"),
    [
        ("push", "push-staging.json", "refs/heads/staging"),
        ("push", "push-prod.json", "refs/heads/prod"),
    ],
)
def test_the_push_examples_name_their_branch(
    name: str, file: str, ref: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GITHUB_REF", raising=False)
    read = read_event(event(name, file))
    assert (read.name, read.ref) == (name, ref)
    assert "before" not in read.payload  # planned against the other branch (examples/README.md)


@pytest.fixture
def api(github_api: FakeGitHub, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> FakeGitHub:
    for name, value in github_api.env().items():
        monkeypatch.setenv(name, value)
    for name in ("GITHUB_SHA", "GITHUB_REF", "GITHUB_ACTIONS", "AWS_ROLE_ARN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(tmp_path / "summary.md"))
    return github_api


def test_the_pull_request_example_runs_the_pipeline_on_a_clone(
    hub_repo: Path, api: FakeGitHub, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    read = read_event(event("pull_request", "pull_request-staging.json"))
    pull = read.payload["pull_request"]
    assert (pull["base"]["ref"], is_fork(pull)) == ("staging", False)

    bare = tmp_path / "origin.git"
    git(tmp_path, "init", "-q", "--bare", str(bare))
    git(hub_repo, "remote", "add", "origin", str(bare))
    git(hub_repo, "push", "-q", "origin", "staging")
    git(hub_repo, "fetch", "-q", "origin")
    git(hub_repo, "checkout", "-q", "-b", "my-change")
    replace_in(
        hub_repo, "deployments/tess-public/config/common.yaml", "timeout: 600", "timeout: 900"
    )
    commit_all(hub_repo, "cull after 15 min")
    api.add_pull("my-change", "staging")

    args = ["--event", "pull_request", "--event-path", str(EXAMPLES / "pull_request-staging.json")]
    assert main(["--repo", str(hub_repo), "ci", *args]) == 0
    out = capsys.readouterr().out
    assert "affected pairs: tess-public/prod, tess-public/staging" in out
    (comment,) = api.comments_on(pull["number"])
    assert "cull.timeout" in comment["body"]
