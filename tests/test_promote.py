"""Promotion: the single staging -> prod PR, kept up to date; PRs into prod only from staging."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bot import github, records
from bot.errors import HubbotError
from bot.main import main
from bot.promote import MARKER, TITLE, branch_ref, check_pull_into_prod
from tests.fixtures.github import FakeGitHub
from tests.fixtures.record_keys import PUBLIC, SIGNING, make_record_keys
from tests.fixtures.repos import commit_all, git

IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/tess-user-image"
DIGEST = "sha256:" + "ab" * 32


KEYS = make_record_keys()


@pytest.fixture
def api(github_api: FakeGitHub, monkeypatch: pytest.MonkeyPatch) -> FakeGitHub:
    """The promotion step's environment: the token and the public keys, no secret."""
    for name, value in github_api.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv(PUBLIC, KEYS.public())
    monkeypatch.delenv(SIGNING, raising=False)
    return github_api


def change_staging(repo: Path, old: str, new: str) -> str:
    common = repo / "deployments/tess-public/config/common.yaml"
    text = common.read_text()
    assert old in text
    common.write_text(text.replace(old, new))
    return commit_all(repo, f"tess-public: {new}")


def record_staging(
    api: FakeGitHub, repo: Path, hub: str, sha: str, state: str = "success",
    proof: str | None = None, signed_by: str = "staging",
) -> int:
    """A staging record as the deploy job writes it (its proof signed with the key of
    `signed_by`, staging's), or, given `proof`, one with that text in its success status."""
    client = github.client_from_env(api.env())
    tree = git(repo, "rev-parse", f"{sha}^{{tree}}")
    payload: dict[str, Any] = {
        "hubbot_freight": 1, "hub": hub, "env": "staging",
        "images": [{"name": IMAGE, "tag": "tree-0123456789ab", "digest": DIGEST,
                    "reference": f"{IMAGE}:tree-0123456789ab@{DIGEST}"}],
        "chart": {"name": "tess-hub", "version": "0.1.0", "lock_digest": "sha256:" + "cd" * 32,
                  "tree": "ef" * 20},
        "fingerprints": {"common": "sha256:" + "12" * 32, "values": "hmac-sha256:" + "34" * 32},
        "commit_tree": tree,
    }
    deployment = github.create_deployment(client, sha, f"{hub}-staging", payload)
    subject = records.Subject("tess-org/tess-hubs", sha, tree, hub, "staging")
    if proof is None:
        proof = records.PROOF_PREFIX + records.proof(KEYS.key(signed_by), subject, payload, state)
    github.create_deployment_status(client, deployment["id"], state, description=proof)  # type: ignore[arg-type]
    return int(deployment["id"])


def test_promote_opens_one_pr_then_updates_it_in_place(
    hub_repo: Path, api: FakeGitHub, capsys: pytest.CaptureFixture[str]
) -> None:
    sha = change_staging(hub_repo, "timeout: 600", "timeout: 900")
    deployment_id = record_staging(api, hub_repo, "tess-public", sha)
    record_staging(api, hub_repo, "tess-private", sha, state="failure")

    assert main(["--repo", str(hub_repo), "promote"]) == 0

    (pull,) = api.pulls.values()
    out, _ = capsys.readouterr()
    assert out == f"opened the promotion PR #{pull['number']}: {pull['html_url']}\n"
    assert (pull["head"]["ref"], pull["base"]["ref"], pull["title"]) == ("staging", "prod", TITLE)
    body = pull["body"]
    assert body.startswith(MARKER + "\n")
    assert f"`{IMAGE}:tree-0123456789ab@{DIGEST}`" in body
    assert f"| {deployment_id} at `{sha[:12]}` |" in body
    assert "| tess-private | no verified successful staging deploy recorded |" in body
    diff = body[body.index("## What prod will receive"):]
    assert "tess-public/prod" in diff
    assert "tess-private/prod" not in diff
    assert "cull.timeout" in diff

    later = change_staging(hub_repo, "timeout: 900", "timeout: 1200")
    record_staging(api, hub_repo, "tess-public", later)
    assert main(["--repo", str(hub_repo), "promote"]) == 0

    assert list(api.pulls) == [pull["number"]]
    assert len(api.calls("POST", r"/repos/tess-org/tess-hubs/pulls")) == 1
    assert f"at `{later[:12]}` |" in api.pulls[pull["number"]]["body"]
    out, _ = capsys.readouterr()
    assert out.startswith(f"updated the promotion PR #{pull['number']}")


def test_the_promotion_pr_lists_no_forged_freight(
    hub_repo: Path, api: FakeGitHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    sha = change_staging(hub_repo, "timeout: 600", "timeout: 900")
    honest = record_staging(api, hub_repo, "tess-public", sha)
    forged = record_staging(api, hub_repo, "tess-public", sha, proof="hubbot-proof:" + "A" * 86)
    # What the prod deploy job, holding prod's signing key, could write: not staging's proof.
    by_prod = record_staging(api, hub_repo, "tess-public", sha, signed_by="prod")

    assert main(["--repo", str(hub_repo), "promote"]) == 0

    (pull,) = api.pulls.values()
    assert f"| {honest} at `{sha[:12]}` |" in pull["body"]
    assert f"| {forged} at" not in pull["body"]
    assert f"| {by_prod} at" not in pull["body"]

    monkeypatch.delenv(PUBLIC)
    assert main(["--repo", str(hub_repo), "promote"]) == 0
    assert (
        "## Freight\n\nNot shown: the staging records cannot be verified here "
        "(HUBBOT_RECORD_PUBLIC_KEYS is not set).\n"
    ) in api.pulls[pull["number"]]["body"]


def test_promote_needs_the_github_api(
    hub_repo: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("GITHUB_TOKEN", raising=False)

    assert main(["--repo", str(hub_repo), "promote"]) == 1

    _, err = capsys.readouterr()
    assert err == (
        "hubbot: error: hubbot promote updates a pull request on GitHub: GITHUB_TOKEN is not "
        "set: the GitHub API needs a token\n"
    )


def pull_from(head_repo: str | None, head_ref: str) -> dict[str, Any]:
    return {
        "number": 7,
        "base": {"ref": "prod", "repo": {"full_name": "tess-org/tess-hubs"}},
        "head": {"ref": head_ref, "repo": None if head_repo is None else {"full_name": head_repo}},
    }


def test_a_pull_into_prod_from_staging_passes_the_head_check() -> None:
    check_pull_into_prod(pull_from("tess-org/tess-hubs", "staging"))


@pytest.mark.parametrize(
    ("head_repo", "head_ref", "shown"),
    [
        ("tess-org/tess-hubs", "new-culling", "tess-org/tess-hubs:new-culling"),
        ("someone/tess-hubs", "staging", "someone/tess-hubs:staging"),
        (None, "staging", "a deleted fork:staging"),
    ],
)
def test_a_pull_into_prod_from_anything_else_fails_clearly(
    head_repo: str | None, head_ref: str, shown: str
) -> None:
    with pytest.raises(HubbotError) as raised:
        check_pull_into_prod(pull_from(head_repo, head_ref))
    assert str(raised.value) == (
        f"pull requests into prod must come from the staging branch of tess-org/tess-hubs, but "
        f"#7 comes from {shown}: target staging instead; hubbot keeps the promotion PR "
        "staging -> prod up to date"
    )


def test_branch_refs_prefer_the_remote_tracking_branch(hub_repo: Path, tmp_path: Path) -> None:
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(hub_repo), str(clone))
    assert branch_ref(clone, "prod") == "origin/prod"
    assert branch_ref(hub_repo, "prod") == "prod"
    with pytest.raises(HubbotError) as raised:
        branch_ref(hub_repo, "nope")
    assert str(raised.value) == (
        "branch 'nope' is not in this clone: fetch it (fetch-depth: 0)"
    )
