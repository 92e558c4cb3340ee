"""`hubbot ci`: the pipeline per GitHub event on a real git repo, GitHub API stand-in."""

from __future__ import annotations

import json
import os
import secrets
import stat
from pathlib import Path
from typing import Any

import pytest
import requests
from pytest_httpserver import HTTPServer

from bot import builder
from bot.commands.ci import oidc_credentials
from bot.errors import HubbotError
from bot.main import main
from bot.source import WorkTree
from tests.fixtures.aws import make_efs_homes, use_efs_homes
from tests.fixtures.containers import (
    USER_IMAGE_DIR,
    LocalRegistry,
    busybox_image,
    point_hubs_at,
)
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
from tests.fixtures.record_keys import PUBLIC, SIGNING, make_record_keys
from tests.fixtures.repos import PROJECT, commit_all, git
from tests.fixtures.secrets import AgeKey, age_rules, encrypt_yaml, write_secrets

FULL_NAME = "tess-org/tess-hubs"
KEYS = make_record_keys()


@pytest.fixture
def api(github_api: FakeGitHub, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> FakeGitHub:
    for name, value in github_api.env().items():
        monkeypatch.setenv(name, value)
    for name in ("GITHUB_SHA", "GITHUB_EVENT_NAME", "GITHUB_EVENT_PATH", "GITHUB_REF",
                 "GITHUB_ACTIONS", "AWS_ROLE_ARN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(tmp_path / "summary.md"))
    # What the staging jobs hold; ci() gives each run its own environment's key.
    monkeypatch.setenv(SIGNING, KEYS.signing["staging"])
    monkeypatch.setenv(PUBLIC, KEYS.public())
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


def pull_payload(
    number: int, base: str, base_sha: str, head: str, head_sha: str,
    head_repo: str | None = FULL_NAME,
) -> dict[str, Any]:
    return {
        "action": "synchronize",
        "number": number,
        "pull_request": {
            "number": number,
            "base": {"ref": base, "sha": base_sha, "repo": {"full_name": FULL_NAME}},
            "head": {"ref": head, "sha": head_sha,
                     "repo": None if head_repo is None else {"full_name": head_repo}},
        },
    }


def pull_event(
    tmp_path: Path, number: int, base: str, base_sha: str, head: str, head_sha: str,
    head_repo: str | None = FULL_NAME,
) -> Path:
    path = tmp_path / "event.json"
    path.write_text(json.dumps(pull_payload(number, base, base_sha, head, head_sha, head_repo)))
    return path


def ci(repo: Path, event: str, path: Path, ref: str = "") -> int:
    """`hubbot ci` as the workflow runs it: a push's jobs hold their branch's environment
    signing key (when the test gives the jobs the record keys); a pull request's none.
    The api fixture's monkeypatch restores the variable after the test."""
    branch = str(json.loads(path.read_text()).get("ref", "")).removeprefix("refs/heads/")
    if event == "pull_request":
        os.environ.pop(SIGNING, None)
    elif os.environ.get(PUBLIC) and branch in KEYS.signing:
        os.environ[SIGNING] = KEYS.signing[branch]
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


def test_in_actions_the_full_diff_is_written_for_the_artifact(
    hub_repo: Path, api: FakeGitHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    base_sha = git(hub_repo, "rev-parse", "staging")
    head_sha = branch_with_change(hub_repo, "longer-culling", "timeout: 600", "timeout: 900")
    pull = api.add_pull("longer-culling", "staging")
    event = pull_event(tmp_path, pull["number"], "staging", base_sha, "longer-culling", head_sha)

    assert ci(hub_repo, "pull_request", event) == 0

    artifact = (hub_repo / "hubbot-diff.md").read_text()
    assert "cull.timeout" in artifact
    assert "tess-public/staging" in artifact
    workflow = (PROJECT / ".github/workflows/pr.yaml").read_text()
    assert "path: hubbot-diff.md" in workflow


def pull_request_changing(
    repo: Path, api: FakeGitHub, tmp_path: Path, relative: str, old: str, new: str
) -> tuple[Path, int]:
    """A pull request into staging whose one commit replaces `old` with `new` in a file."""
    base_sha = git(repo, "rev-parse", "staging")
    git(repo, "checkout", "-q", "-b", "resize")
    path = repo / relative
    assert old in path.read_text()
    path.write_text(path.read_text().replace(old, new))
    head_sha = commit_all(repo, "resize the home volume")
    pull = api.add_pull("resize", "staging")
    return pull_event(tmp_path, pull["number"], "staging", base_sha, "resize", head_sha), pull[
        "number"
    ]


def test_a_pull_request_resizing_the_static_home_volume_fails_validation(
    hub_repo: Path, api: FakeGitHub, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    common = "deployments/tess-private/config/common.yaml"
    event, number = pull_request_changing(
        hub_repo, api, tmp_path, common, "  enabled: true\n", "  enabled: true\n  capacity: 2Ti\n"
    )

    assert ci(hub_repo, "pull_request", event) == 1

    out, err = capsys.readouterr()
    assert (
        f"  {common}:3: Kubernetes refuses to resize a statically provisioned volume "
        "(PersistentVolume tess-private-prod-home: 1Ti -> 2Ti)"
    ) in out
    assert "<== validate: failed in " in out
    assert err == "hubbot: error: validation failed: fix the problems listed above\n"
    # The comment says so (issue 14: every run updates it, failing runs included).
    (comment,) = api.comments_on(number)
    assert "failed validation" in comment["body"]
    assert f"/{common}#L3) (tess-private/prod): Kubernetes refuses to resize" in comment["body"]


def test_a_pull_request_whose_manifests_resize_a_static_volume_is_commented_then_fails(
    hub_repo: Path,
    api: FakeGitHub,
    tmp_path: Path,
    helm_bin: str,
    real_chart_packages: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # A chart change validate cannot see in the values: only the rendered diff shows it.
    template = "hub/templates/home-storage.yaml"
    event, number = pull_request_changing(
        hub_repo, api, tmp_path, template, "{{ .Values.homeStorage.capacity }}", "2Ti"
    )

    assert ci(hub_repo, "pull_request", event) == 1

    _, err = capsys.readouterr()
    refused = "Kubernetes refuses to resize a statically provisioned volume"
    assert err.startswith(
        "hubbot: error: this change cannot be deployed: tess-private/prod: "
        f"{refused} (PersistentVolume tess-private-prod-home: 1Ti -> 2Ti); "
    )
    (comment,) = api.comments_on(number)
    warning = f"- tess-private/staging: {refused} (PersistentVolumeClaim home-nfs: 1Ti -&gt; 2Ti)"
    assert warning in comment["body"].split("<details>")[0]


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
    assert "==> build: skipped (no image changed)\n" in out
    # Validation follows the change: tess-private's pairs are proven unchanged.
    assert "2 of 4 pairs proven unchanged since " in out
    assert "ok      tess-private/" not in out
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
    assert "Merging deploys tess-public/prod with exactly what staging ran; nothing is built." \
        in comment["body"]
    assert "to build" not in comment["body"]


def test_an_unknown_event_is_one_clear_error(
    hub_repo: Path, api: FakeGitHub, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "event.json"
    path.write_text("{}")

    assert ci(hub_repo, "issues", path) == 1

    _, err = capsys.readouterr()
    assert err == "hubbot: error: event 'issues' is not handled: pull_request or push\n"


MISSING = object()


def a_pull(dotted: str, value: object) -> str:
    """A pull request event whose `dotted` field is `value` (MISSING: left out)."""
    payload = pull_payload(1, "staging", "a" * 40, "f", "b" * 40)
    *parents, key = dotted.split(".")
    parent = payload
    for part in parents:
        parent = parent[part]
    if value is MISSING:
        del parent[key]
    else:
        parent[key] = value
    return json.dumps(payload)


@pytest.mark.parametrize(
    ("event", "text", "problem"),
    [
        ("pull_request", "[]",
         "the pull_request event payload has the JSON type array, not object as GitHub "
         "sends it"),
        ("pull_request", a_pull("pull_request.base.repo", MISSING),
         "the pull_request event has no `pull_request.base.repo`, which GitHub's "
         "pull_request payload always has"),
        ("pull_request", a_pull("pull_request.head.sha", MISSING),
         "the pull_request event has no `pull_request.head.sha`, which GitHub's "
         "pull_request payload always has"),
        ("pull_request", a_pull("pull_request", None),
         "`pull_request` of the pull_request event has the JSON type null, not object as in "
         "GitHub's pull_request payload"),
        ("pull_request", a_pull("pull_request.number", "1"),
         "`pull_request.number` of the pull_request event has the JSON type string, not "
         "integer as in GitHub's pull_request payload"),
        ("pull_request", a_pull("pull_request.head.repo", FULL_NAME),
         "`pull_request.head.repo` of the pull_request event has the JSON type string, not "
         "object or null as in GitHub's pull_request payload"),
        ("pull_request", a_pull("pull_request.base.repo.full_name", True),
         "`pull_request.base.repo.full_name` of the pull_request event has the JSON type "
         "boolean, not string as in GitHub's pull_request payload"),
        ("push", '{"before": "x"}',
         "the push event has no `ref`, which GitHub's push payload always has"),
        ("push", '{"ref": "refs/heads/staging", "after": 7}',
         "`after` of the push event has the JSON type integer, not string as in GitHub's "
         "push payload"),
    ],
)
def test_a_malformed_event_payload_is_one_error_naming_the_file_and_field(
    hub_repo: Path, api: FakeGitHub, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    event: str, text: str, problem: str,
) -> None:
    path = tmp_path / "event.json"
    path.write_text(text)

    status = main(["--repo", str(hub_repo), "ci", "--dry-run", "--event", event,
                   "--event-path", str(path)])

    out, err = capsys.readouterr()
    assert status == 1
    assert err == f"hubbot: error: {path}: {problem}: pass the event file GitHub sent\n"
    assert "==>" not in out
    assert api.requests == []


# --- policy from the trusted side, secrets against .sops.yaml ----------------------------


def test_a_pull_request_that_loosens_the_schemas_is_held_to_its_base(
    hub_repo: Path, api: FakeGitHub, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base_sha = git(hub_repo, "rev-parse", "staging")
    git(hub_repo, "checkout", "-q", "-b", "loosen")
    edit(hub_repo, "schemas/values.schema.yaml", "\nproperties:\n", "\nproperties:\n  extra: {}\n")
    common = hub_repo / "deployments/tess-public/config/common.yaml"
    common.write_text(common.read_text() + "extra: {allow_all: true}\n")
    line = len(common.read_text().splitlines())
    head_sha = commit_all(hub_repo, "loosen the values schema, use the new key")
    pull = api.add_pull("loosen", "staging")
    event = pull_event(tmp_path, pull["number"], "staging", base_sha, "loosen", head_sha)

    assert ci(hub_repo, "pull_request", event) == 1

    out, err = capsys.readouterr()
    assert f"  deployments/tess-public/config/common.yaml:{line}: unknown key `extra`" in out
    assert (
        f"; so says schemas/values.schema.yaml at {base_sha[:12]}, the base this change is also "
        "checked against\n"
    ) in out
    assert err == "hubbot: error: validation failed: fix the problems listed above\n"
    (comment,) = api.comments_on(pull["number"])
    assert f"/deployments/tess-public/config/common.yaml#L{line}) " in comment["body"]


def test_a_policy_change_is_flagged_in_the_comment(
    hub_repo: Path, api: FakeGitHub, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base_sha = git(hub_repo, "rev-parse", "staging")
    git(hub_repo, "checkout", "-q", "-b", "describe")
    comment = "\n# reviewed by the owners\n$schema:"
    edit(hub_repo, "schemas/policy.schema.yaml", "\n$schema:", comment)
    head_sha = commit_all(hub_repo, "a comment in the house policy")
    pull = api.add_pull("describe", "staging")
    event = pull_event(tmp_path, pull["number"], "staging", base_sha, "describe", head_sha)

    assert ci(hub_repo, "pull_request", event) == 0

    (comment,) = api.comments_on(pull["number"])
    flag = (
        "policy change (schemas/policy.schema.yaml): it decides what every hub may do; the "
        "owners named in .github/CODEOWNERS must review it"
    )
    assert flag in comment["body"].replace("\\", "")
    assert flag in summary(tmp_path).replace("\\", "")


@pytest.mark.parametrize("change", ["extra recipient", "prod over staging", "unencrypted_regex"])
def test_secrets_that_differ_from_sops_yaml_fail_every_event(
    hub_repo: Path,
    api: FakeGitHub,
    other_age_key: AgeKey,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    change: str,
) -> None:
    staging = "deployments/tess-public/secrets/staging.yaml"
    rules = (hub_repo / ".sops.yaml").read_text()
    recipient = rules.split("staging\\.yaml$\n    age: ", 1)[1].split("\n", 1)[0]
    plaintext = "jupyterhub:\n  proxy:\n    secretToken: 0123abcd\n"
    if change == "extra recipient":
        write_secrets(hub_repo, "tess-public", "staging", plaintext,
                      age=[recipient, other_age_key.recipient])
        expected = f"not in the rule: age {other_age_key.recipient}"
    elif change == "prod over staging":
        prod = hub_repo / "deployments/tess-public/secrets/prod.yaml"
        (hub_repo / staging).write_text(prod.read_text())
        expected = "encrypted for other keys than the creation rule at .sops.yaml:5 names"
    else:
        text = encrypt_yaml(plaintext, staging, age=[recipient], cwd=hub_repo,
                            extra=["--unencrypted-regex", "^secretToken$"])
        (hub_repo / staging).write_text(text)
        expected = (
            "its sops metadata sets `unencrypted_regex: ^secretToken$`, leaving matching values "
            "plaintext, which the creation rule at .sops.yaml:5 does not"
        )
    base_sha = git(hub_repo, "rev-parse", "staging")
    head_sha = commit_all(hub_repo, f"secrets: {change}")
    git(hub_repo, "branch", "-f", "prod", "staging")
    events = [
        ("pull_request", pull_event(tmp_path, 7, "staging", base_sha, "topic", head_sha), ""),
        ("pull_request", pull_event(tmp_path, 8, "prod", base_sha, "staging", head_sha), ""),
        ("push", push_event(tmp_path, "staging", base_sha, head_sha), "refs/heads/staging"),
        ("push", push_event(tmp_path, "prod", base_sha, head_sha), "refs/heads/prod"),
    ]
    for name, event, ref in events:
        assert ci(hub_repo, name, event, ref) == 1

        out, err = capsys.readouterr()
        assert f"  {staging}: " in out
        assert expected in out
        assert "0123abcd" not in out + err
        assert err == (
            "hubbot: error: 1 secrets file(s) differ from their creation rule in .sops.yaml: fix "
            "the problems listed above\n"
        )
        assert "| secrets | failed |" in summary(tmp_path)
    assert api.requests == []


# --- end to end: builds on Podman into a local registry, deploys through the helm stand-in ---


def push_event(tmp_path: Path, branch: str, before: str, after: str) -> Path:
    path = tmp_path / f"push-{branch}-{after[:7]}.json"
    path.write_text(json.dumps({
        "ref": f"refs/heads/{branch}", "before": before, "after": after,
        "repository": {"full_name": FULL_NAME},
    }))
    return path


def tags(registry: LocalRegistry, repository: str) -> list[str]:
    answer = requests.get(f"{registry.url}/v2/{repository}/tags/list", timeout=10)
    if answer.status_code == 404:
        return []
    found: list[str] = answer.json().get("tags") or []
    return sorted(found)


def edit(repo: Path, relative: str, old: str, new: str) -> None:
    path = repo / relative
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def merge_into(repo: Path, branch: str, source: str) -> tuple[str, str]:
    """Fast-forward `branch` to `source` and check it out: (before, after)."""
    before = git(repo, "rev-parse", branch)
    git(repo, "checkout", "-q", branch)
    git(repo, "merge", "-q", "--ff-only", source)
    return before, git(repo, "rev-parse", "HEAD")


@pytest.mark.slow
def test_staging_builds_deploys_records_and_promotes_then_prod_ships_only_that(
    hub_repo: Path,
    api: FakeGitHub,
    age_env: AgeKey,
    aws_env: str,
    docker_host: str,
    no_logins: Path,
    oci_registry: LocalRegistry,
    deployed_hubs: dict[str, Hub],
    helm_standin: HelmStandIn,
    real_chart_packages: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    image = point_hubs_at(hub_repo, oci_registry)
    repository = image.split("/", 1)[1]
    rules = age_rules(("staging", age_env.recipient), ("prod", age_env.recipient))
    (hub_repo / ".sops.yaml").write_text(rules)
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

    # A pull request changing config and the user image: built, not pushed; one comment.
    base = git(hub_repo, "rev-parse", "staging")
    branch_with_change(hub_repo, "longer-culling", "timeout: 600", "timeout: 900")
    busybox_image(hub_repo / USER_IMAGE_DIR, extra='LABEL change="longer-culling"')
    head = commit_all(hub_repo, "a new user image")
    pull = api.add_pull("longer-culling", "staging")
    capsys.readouterr()
    assert ci(hub_repo, "pull_request",
              pull_event(tmp_path, pull["number"], "staging", base, "longer-culling", head)) == 0
    assert "<== build (no push): ok in " in capsys.readouterr().out
    (comment,) = api.comments_on(pull["number"])
    # The real chart rendered at both refs: the new user image reaches both pullers.
    changed = (
        "Manifests, resources: 3 changed (DaemonSet/continuous-image-puller, "
        "DaemonSet/hook-image-puller, Secret/hub), 0 added, 0 removed"
    )
    # Each hub's prod and staging read the same: one block per hub names both.
    assert comment["body"].count(changed) == 2
    for hub in HUBS:
        assert f"<summary>{hub}/prod, {hub}/staging (identical): " in comment["body"]
    assert "\n- image puller runs on every node: tess-private/prod, tess-private/staging, " \
        "tess-public/prod, tess-public/staging\n" in comment["body"]
    assert tags(oci_registry, repository) == []
    assert helm_standin.calls("upgrade") == []

    # Merged to staging: build and push, deploy what changed, record, open the promotion PR.
    before, after = merge_into(hub_repo, "staging", "longer-culling")
    assert ci(hub_repo, "push", push_event(tmp_path, "staging", before, after)) == 0
    (tag,) = tags(oci_registry, repository)
    assert sorted(c.argv[2] for c in helm_standin.calls("upgrade")) == [
        "tess-private-staging", "tess-public-staging",
    ]
    assert sorted(d["environment"] for d in api.deployments.values()) == [
        "tess-private-staging", "tess-public-staging",
    ]
    (staging,) = [d for d in api.deployments.values() if d["environment"] == "tess-public-staging"]
    assert staging["sha"] == after
    assert staging["payload"]["images"][0]["reference"].startswith(f"{image}:{tag}@sha256:")
    assert [s["state"] for s in api.statuses[staging["id"]]] == ["in_progress", "success"]
    (promotion,) = [p for p in api.pulls.values() if p["base"]["ref"] == "prod"]
    assert promotion["head"]["ref"] == "staging"
    assert staging["payload"]["images"][0]["digest"] in promotion["body"]

    # A second push to staging updates the same promotion PR.
    edit(hub_repo, "deployments/tess-public/config/common.yaml", "timeout: 900", "timeout: 1200")
    second = commit_all(hub_repo, "even longer culling")
    assert ci(hub_repo, "push", push_event(tmp_path, "staging", after, second)) == 0
    assert [p["number"] for p in api.pulls.values() if p["base"]["ref"] == "prod"] == [
        promotion["number"]
    ]
    assert f"`{second[:12]}`" in api.pulls[promotion["number"]]["body"]
    assert len(api.calls("POST", r"/repos/tess-org/tess-hubs/pulls")) == 1

    # The promotion PR merged: prod builds nothing, verifies the freight, deploys.
    prod_before, prod_after = merge_into(hub_repo, "prod", "staging")
    capsys.readouterr()
    assert ci(hub_repo, "push", push_event(tmp_path, "prod", prod_before, prod_after)) == 0
    out, _ = capsys.readouterr()
    assert "build" not in [line.split()[1] for line in out.splitlines() if line.startswith("==>")]
    assert "<== verify freight: ok in " in out
    assert tags(oci_registry, repository) == [tag]
    assert sorted(c.argv[2] for c in helm_standin.calls("upgrade")[-2:]) == [
        "tess-private-prod", "tess-public-prod",
    ]
    prod = [d for d in api.deployments.values() if d["environment"] == "tess-public-prod"]
    assert prod[0]["payload"]["images"] == staging["payload"]["images"]

    # A change only prod receives still goes through staging: the staging push deploys
    # nothing, records that its run passed, and prod then deploys that tree.
    git(hub_repo, "checkout", "-q", "staging")
    edit(hub_repo, "deployments/tess-public/config/prod.yaml", "replicas: 4", "replicas: 2")
    prod_only = commit_all(hub_repo, "fewer placeholders on prod")
    capsys.readouterr()
    assert ci(hub_repo, "push", push_event(tmp_path, "staging", second, prod_only)) == 0
    out, _ = capsys.readouterr()
    assert "==> deploy staging: skipped (no pair changed)\n" in out
    assert "<== record staging run: ok in " in out
    (run,) = [d for d in api.deployments.values()
              if d["environment"] == "staging-run" and d["sha"] == prod_only]
    assert run["creator"]["login"] == "github-actions[bot]"
    prod_before, prod_after = merge_into(hub_repo, "prod", "staging")
    upgrades = len(helm_standin.calls("upgrade"))
    assert ci(hub_repo, "push", push_event(tmp_path, "prod", prod_before, prod_after)) == 0
    assert [c.argv[2] for c in helm_standin.calls("upgrade")[upgrades:]] == ["tess-public-prod"]

    # A prod push with an image staging never ran (pushed by hand): refused, nothing deployed.
    busybox_image(hub_repo / USER_IMAGE_DIR, extra='LABEL hotfix="1"')
    hotfix = commit_all(hub_repo, "hotfix the image straight on prod")
    builder.ensure_images(WorkTree(hub_repo), list(HUBS), True)
    upgrades = len(helm_standin.calls("upgrade"))
    deployments = len(api.deployments)
    capsys.readouterr()

    assert ci(hub_repo, "push", push_event(tmp_path, "prod", prod_after, hotfix)) == 1

    _, err = capsys.readouterr()
    assert err.startswith(
        "hubbot: error: prod freight does not match what staging ran; nothing was deployed: "
    )
    tree = git(hub_repo, "rev-parse", "HEAD^{tree}")
    assert (
        f"commit {hotfix[:12]} has tree {tree[:12]}, which no verified staging deploy ran: a "
        "change made on prod directly (not promoted from staging) is never deployed"
    ) in err
    assert len(helm_standin.calls("upgrade")) == upgrades
    assert len(api.deployments) == deployments


def test_a_prod_push_from_a_changed_working_tree_is_refused_before_anything_runs(
    hub_repo: Path, api: FakeGitHub, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    git(hub_repo, "checkout", "-q", "prod")
    edit(hub_repo, "deployments/tess-public/config/prod.yaml", "replicas: 4", "replicas: 40")
    head = git(hub_repo, "rev-parse", "HEAD")

    assert ci(hub_repo, "push", push_event(tmp_path, "prod", head, head)) == 1

    out, err = capsys.readouterr()
    assert err == (
        f"hubbot: error: the working tree differs from commit {head[:12]} "
        "(deployments/tess-public/config/prod.yaml): prod deploys only a commit that staging "
        "ran, never uncommitted changes; commit them through a staging pull request, or "
        "`git stash --include-untracked`. Nothing was deployed\n"
    )
    assert "==>" not in out
    assert api.requests == []


def test_a_push_whose_event_names_another_commit_than_the_checkout_is_refused(
    hub_repo: Path, api: FakeGitHub, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    git(hub_repo, "checkout", "-q", "prod")
    head = git(hub_repo, "rev-parse", "HEAD")
    other = "1" * 40

    assert ci(hub_repo, "push", push_event(tmp_path, "prod", head, other)) == 1

    _, err = capsys.readouterr()
    assert err == (
        f"hubbot: error: the commit to deploy is {other} (GITHUB_SHA, or the push event's "
        f"`after`), but {head} is checked out: a deploy is recorded as the commit it ships, so "
        "check out the commit to deploy\n"
    )
    assert api.requests == []


# --- AWS credentials from the job's OIDC token ------------------------------------------


@pytest.fixture
def oidc_env(httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch) -> HTTPServer:
    monkeypatch.setenv("ACTIONS_ID_TOKEN_REQUEST_URL",
                       httpserver.url_for("/_apis/idtoken?api-version=2.0"))
    monkeypatch.setenv("ACTIONS_ID_TOKEN_REQUEST_TOKEN", "request-bearer-1234")
    monkeypatch.setenv("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/hubbot-staging")
    monkeypatch.delenv("AWS_WEB_IDENTITY_TOKEN_FILE", raising=False)
    return httpserver


def test_the_oidc_token_becomes_a_private_web_identity_token_file(oidc_env: HTTPServer) -> None:
    oidc_env.expect_request(
        "/_apis/idtoken",
        query_string={"api-version": "2.0", "audience": "sts.amazonaws.com"},
        headers={"Authorization": "bearer request-bearer-1234"},
    ).respond_with_json({"count": 1, "value": "eyJhbGciOiJSUzI1NiJ9.e30.c2ln"})

    with oidc_credentials():
        path = Path(os.environ["AWS_WEB_IDENTITY_TOKEN_FILE"])
        assert path.read_text() == "eyJhbGciOiJSUzI1NiJ9.e30.c2ln"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600

    assert "AWS_WEB_IDENTITY_TOKEN_FILE" not in os.environ
    assert not path.exists()


def test_a_refused_oidc_token_says_what_the_workflow_lacks(oidc_env: HTTPServer) -> None:
    oidc_env.expect_request("/_apis/idtoken").respond_with_json({"message": "no"}, status=403)

    with pytest.raises(HubbotError) as raised, oidc_credentials():
        pass
    assert str(raised.value) == (
        "cannot get the job's OIDC token for AWS_ROLE_ARN (HTTPError): does the workflow "
        "grant `id-token: write`?"
    )


def test_an_event_payload_nested_past_any_real_one_is_one_error(
    hub_repo: Path, api: FakeGitHub, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "event.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    status = main(["--repo", str(hub_repo), "ci", "--dry-run", "--event", "pull_request",
                   "--event-path", str(path)])
    _, err = capsys.readouterr()
    assert status == 1
    assert err == f"hubbot: error: cannot read the event payload {path}: it nests too deep\n"
    assert api.requests == []
