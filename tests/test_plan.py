"""`bot.plan` and `hubbot plan`: real git repos, real commits, the exact plan for each change."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from bot import sops
from bot.main import main
from bot.plan import plan
from bot.redact import Redactor
from bot.source import GitCommit, open_source
from tests.fixtures.containers import LocalRegistry
from tests.fixtures.repos import commit_all, git, write
from tests.fixtures.secrets import AgeKey, write_secrets
from tests.test_registries import upload

PRIVATE = "deployments/tess-private"
PUBLIC = "deployments/tess-public"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/tess-user-image"


def edit(repo: Path, relative: str, old: str, new: str) -> None:
    path = repo / relative
    text = path.read_text()
    assert old in text, f"{old!r} not in {relative}"
    path.write_text(text.replace(old, new, 1))


def plan_of(repo: Path, base: str = "HEAD~1", head: str | None = "HEAD") -> dict[str, Any]:
    return plan(open_source(repo, base), open_source(repo, head)).to_json()


def pairs(result: dict[str, Any]) -> list[tuple[str, str, list[tuple[str, str, list[str]]]]]:
    return [
        (
            p["hub"],
            p["env"],
            [(r["kind"], r["detail"], r["files"]) for r in p["reasons"]],
        )
        for p in result["pairs"]
    ]


def values_reason(files: list[str], count: int = 1) -> tuple[str, str, list[str]]:
    return ("values", f"{count} key{'s' * (count != 1)} changed", files)


def tag_of(repo: Path, ref: str, path: str) -> str:
    return "tree-" + git(repo, "rev-parse", f"{ref}:{path}")[:12]


def test_common_change_without_override_affects_both_envs_of_that_hub(hub_repo: Path) -> None:
    edit(hub_repo, f"{PRIVATE}/config/common.yaml", "every: 600", "every: 900")
    commit_all(hub_repo, "cull less often")
    result = plan_of(hub_repo)
    common = [f"{PRIVATE}/config/common.yaml"]
    assert pairs(result) == [
        ("tess-private", "prod", [values_reason(common)]),
        ("tess-private", "staging", [values_reason(common)]),
    ]
    assert result["no_effect"] == []


def test_common_change_overridden_in_prod_affects_staging_only(hub_repo: Path) -> None:
    prod = f"{PUBLIC}/config/prod.yaml"
    edit(hub_repo, prod, "jupyterhub:\n", "jupyterhub:\n  singleuser:\n    memory: {limit: 6G}\n")
    commit_all(hub_repo, "prod users get more memory")
    edit(hub_repo, f"{PUBLIC}/config/common.yaml", "limit: 2G", "limit: 3G")
    commit_all(hub_repo, "more memory")
    result = plan_of(hub_repo)
    assert pairs(result) == [
        ("tess-public", "staging", [values_reason([f"{PUBLIC}/config/common.yaml"])]),
    ]
    assert result["no_effect"] == [
        {
            "hub": "tess-public",
            "env": "prod",
            "file": f"{PUBLIC}/config/common.yaml",
            "reason": f"overridden by {prod}",
            "keys": ["jupyterhub.singleuser.memory.limit"],
        }
    ]


def test_common_change_overridden_everywhere_affects_nothing(hub_repo: Path) -> None:
    for env in ("staging", "prod"):
        edit(
            hub_repo,
            f"{PUBLIC}/config/{env}.yaml",
            "jupyterhub:\n",
            "jupyterhub:\n  cull: {timeout: 900}\n",
        )
    commit_all(hub_repo, "each env sets its own cull timeout")
    edit(hub_repo, f"{PUBLIC}/config/common.yaml", "timeout: 600", "timeout: 700")
    commit_all(hub_repo, "a common timeout nobody sees")
    result = plan_of(hub_repo)
    assert result["pairs"] == []
    assert result["no_effect"] == [
        {
            "hub": "tess-public",
            "env": env,
            "file": f"{PUBLIC}/config/common.yaml",
            "reason": f"overridden by {PUBLIC}/config/{env}.yaml",
            "keys": ["jupyterhub.cull.timeout"],
        }
        for env in ("prod", "staging")
    ]


def test_a_comment_only_edit_changes_nothing_and_says_so(hub_repo: Path) -> None:
    edit(hub_repo, f"{PRIVATE}/config/staging.yaml", "homeStorage:", "# EFS\nhomeStorage:")
    commit_all(hub_repo, "comment")
    result = plan_of(hub_repo)
    assert result["pairs"] == []
    assert result["no_effect"] == [
        {
            "hub": "tess-private",
            "env": "staging",
            "file": f"{PRIVATE}/config/staging.yaml",
            "reason": "no value changed (comments or formatting)",
            "keys": [],
        }
    ]


def test_a_hub_git_holds_alike_at_both_commits_is_not_read(hub_repo: Path) -> None:
    edit(hub_repo, f"{PUBLIC}/config/common.yaml", "timeout: 600", "timeout: 900")
    commit_all(hub_repo, "public culls later")
    base, head = GitCommit(hub_repo, "HEAD~1"), GitCommit(hub_repo, "HEAD")
    result = plan(base, head).to_json()
    assert [(p["hub"], p["env"]) for p in result["pairs"]] == [
        ("tess-public", "prod"), ("tess-public", "staging")
    ]
    # tess-private's directory has one id at both: only its hubploy.yaml was read.
    reads = head.objects.reads
    assert head.read(f"{PRIVATE}/config/common.yaml") is not None
    assert head.objects.reads == reads + 1
    head.read(f"{PRIVATE}/hubploy.yaml")
    assert head.objects.reads == reads + 1


def test_prod_only_change_affects_only_that_pair(hub_repo: Path) -> None:
    edit(hub_repo, f"{PRIVATE}/config/prod.yaml", "replicas: 2", "replicas: 3")
    commit_all(hub_repo, "one more placeholder")
    assert pairs(plan_of(hub_repo)) == [
        ("tess-private", "prod", [values_reason([f"{PRIVATE}/config/prod.yaml"])]),
    ]


def test_hub_values_change_affects_all_four_pairs(hub_repo: Path) -> None:
    edit(hub_repo, "hub/values.yaml", "startTimeout: 600", "startTimeout: 900")
    commit_all(hub_repo, "slower starts allowed")
    reason = values_reason(["hub/values.yaml"])
    assert pairs(plan_of(hub_repo)) == [
        (hub, env, [reason])
        for hub in ("tess-private", "tess-public")
        for env in ("prod", "staging")
    ]


def test_chart_version_bump_affects_all_four_pairs(hub_repo: Path) -> None:
    edit(hub_repo, "hub/Chart.yaml", "version: 0.1.0", "version: 0.1.1")
    commit_all(hub_repo, "chart 0.1.1")
    reason = ("chart", "chart changed: hub/Chart.yaml", ["hub/Chart.yaml"])
    result = plan_of(hub_repo)
    assert pairs(result) == [
        (hub, env, [reason])
        for hub in ("tess-private", "tess-public")
        for env in ("prod", "staging")
    ]
    assert [image["changed"] for image in result["images"]] == [False]


def test_image_file_change_rebuilds_the_shared_image_for_both_hubs(hub_repo: Path) -> None:
    directory = f"{PRIVATE}/images/default"
    old_tag = tag_of(hub_repo, "HEAD", directory)
    write(hub_repo, f"{directory}/apt.txt", "git\n")
    commit_all(hub_repo, "apt.txt")
    new_tag = tag_of(hub_repo, "HEAD", directory)
    assert old_tag != new_tag
    result = plan_of(hub_repo)
    assert result["images"] == [
        {
            "name": IMAGE,
            "tag": new_tag,
            "reference": f"{IMAGE}:{new_tag}",
            "directory": directory,
            "hubs": ["tess-private", "tess-public"],
            "changed": True,
            "exists": "unknown",
            "build": True,
        }
    ]
    assert pairs(result) == [
        (
            hub,
            env,
            [("image", f"{IMAGE}: {old_tag} -> {new_tag}", [directory, f"{base}/hubploy.yaml"])],
        )
        for hub, base in (("tess-private", PRIVATE), ("tess-public", PUBLIC))
        for env in ("prod", "staging")
    ]


def test_a_deleted_hub_lists_its_pairs_as_removed(hub_repo: Path) -> None:
    git(hub_repo, "rm", "-rq", PUBLIC)
    commit_all(hub_repo, "retire tess-public")
    result = plan(open_source(hub_repo, "HEAD~1"), open_source(hub_repo, "HEAD"))
    assert pairs(result.to_json()) == [
        (
            "tess-public",
            env,
            [("removed", f"tess-public/{env} is gone at HEAD", [f"{PUBLIC}/hubploy.yaml"])],
        )
        for env in ("prod", "staging")
    ]
    assert result.matrix() == {"include": []}
    assert [image["hubs"] for image in result.to_json()["images"]] == [["tess-private"]]


def test_a_revert_plans_nothing(hub_repo: Path) -> None:
    edit(hub_repo, "hub/values.yaml", "uid: 1000", "uid: 1001")
    commit_all(hub_repo, "uid")
    git(hub_repo, "revert", "--no-edit", "HEAD")
    result = plan_of(hub_repo, "HEAD~2")
    assert result["pairs"] == []
    assert result["no_effect"] == []
    assert [image["changed"] for image in result["images"]] == [False]


def test_a_readme_change_plans_nothing(hub_repo: Path) -> None:
    write(hub_repo, "README.md", "# tess-hubs\nnew words\n")
    commit_all(hub_repo, "docs")
    result = plan_of(hub_repo)
    assert result["pairs"] == []
    assert result["no_effect"] == []


def test_uncommitted_changes_are_planned_from_the_working_tree(hub_repo: Path) -> None:
    edit(hub_repo, f"{PUBLIC}/config/staging.yaml", "replicas: 0", "replicas: 1")
    assert pairs(plan_of(hub_repo, "staging", head=None)) == [
        ("tess-public", "staging", [values_reason([f"{PUBLIC}/config/staging.yaml"])]),
    ]


def test_a_registry_check_answers_whether_to_build(hub_repo: Path) -> None:
    asked: list[str] = []

    def check(deployment: Any, ref: Any) -> bool:
        asked.append(f"{deployment.hub} {ref.reference}")
        return True

    result = plan(GitCommit(hub_repo, "HEAD"), GitCommit(hub_repo, "HEAD"), check)
    assert [(i.exists, i.build) for i in result.images] == [(True, False)]
    assert len(asked) == 1
    assert asked[0].startswith(f"tess-private {IMAGE}:tree-")


def test_a_reencrypted_secrets_file_affects_its_pair(hub_repo: Path, age_env: AgeKey) -> None:
    plaintext = "jupyterhub:\n  proxy:\n    secretToken: canary-0123456789\n"
    write_secrets(hub_repo, "tess-public", "staging", plaintext, age=[age_env.recipient])
    commit_all(hub_repo, "staging secrets for the test key")
    write_secrets(hub_repo, "tess-public", "staging", plaintext, age=[age_env.recipient])
    commit_all(hub_repo, "re-encrypt")
    result = plan_of(hub_repo)
    assert pairs(result) == [
        (
            "tess-public",
            "staging",
            [
                (
                    "secrets",
                    "secrets file changed (re-encrypted or edited): values may have changed",
                    [f"{PUBLIC}/secrets/staging.yaml"],
                )
            ],
        )
    ]
    assert "canary" not in json.dumps(result)


def keyed_plan_of(repo: Path) -> dict[str, Any]:
    decrypt = sops.decryptor(Redactor(), cwd=repo)
    return plan(open_source(repo, "HEAD~1"), open_source(repo, "HEAD"), decrypt=decrypt).to_json()


def test_with_keys_a_reencryption_with_the_same_values_deploys_nothing(
    hub_repo: Path, age_env: AgeKey
) -> None:
    plaintext = "jupyterhub:\n  proxy:\n    secretToken: canary-0123456789\n"
    write_secrets(hub_repo, "tess-public", "staging", plaintext, age=[age_env.recipient])
    commit_all(hub_repo, "staging secrets for the test key")
    write_secrets(hub_repo, "tess-public", "staging", plaintext, age=[age_env.recipient])
    commit_all(hub_repo, "re-encrypt")
    result = keyed_plan_of(hub_repo)
    assert pairs(result) == []
    assert [(n["hub"], n["env"], n["file"], n["reason"]) for n in result["no_effect"]] == [
        (
            "tess-public",
            "staging",
            f"{PUBLIC}/secrets/staging.yaml",
            "re-encrypted with the same values",
        )
    ]
    assert "canary" not in json.dumps(result)


def test_with_keys_a_changed_secret_value_affects_its_pair(
    hub_repo: Path, age_env: AgeKey
) -> None:
    before = "jupyterhub:\n  proxy:\n    secretToken: canary-0123456789\n"
    write_secrets(hub_repo, "tess-public", "staging", before, age=[age_env.recipient])
    commit_all(hub_repo, "staging secrets for the test key")
    after = before.replace("canary-0123456789", "canary-9876543210")
    write_secrets(hub_repo, "tess-public", "staging", after, age=[age_env.recipient])
    commit_all(hub_repo, "rotate the proxy token")
    result = keyed_plan_of(hub_repo)
    assert [(hub, env, [kind for kind, _, _ in why]) for hub, env, why in pairs(result)] == [
        ("tess-public", "staging", ["secrets"])
    ]
    assert "canary" not in json.dumps(result)


def outputs(path: Path) -> dict[str, str]:
    """Step outputs as GitHub reads them: `name<<DELIMITER` ... `DELIMITER`."""
    found = {}
    lines = iter(path.read_text().splitlines())
    for line in lines:
        name, delimiter = line.split("<<", 1)
        found[name] = "\n".join(iter(lambda: next(lines), delimiter))
    return found


def test_hubbot_plan_after_a_private_prod_change_lists_only_that_pair(
    hub_repo: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    edit(hub_repo, f"{PRIVATE}/config/prod.yaml", "replicas: 2", "replicas: 5")
    commit_all(hub_repo, "prod placeholders")
    output_file = tmp_path / "github_output"
    monkeypatch.setenv("GITHUB_OUTPUT", str(output_file))
    status = main(["--repo", str(hub_repo), "plan", "--base", "HEAD~1"])
    out = capsys.readouterr().out
    assert status == 0
    assert [(p["hub"], p["env"]) for p in json.loads(out)["pairs"]] == [("tess-private", "prod")]
    assert outputs(output_file) == {
        "matrix": '{"include":[{"hub":"tess-private","env":"prod"}]}',
        "count": "1",
    }


def test_hubbot_plan_names_an_unknown_ref(
    hub_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status = main(["--repo", str(hub_repo), "plan", "--base", "nope"])
    assert status == 1
    assert (
        capsys.readouterr()
        .err.strip()
        .endswith("unknown git ref 'nope': fetch it or name an existing branch")
    )


def test_hubbot_plan_asks_the_registry_when_told(
    hub_repo: Path, oci_registry: LocalRegistry, capsys: pytest.CaptureFixture[str]
) -> None:
    name = oci_registry.image("tess/user-image")
    for base in (PRIVATE, PUBLIC):
        edit(hub_repo, f"{base}/hubploy.yaml", f"- name: {IMAGE}", f"- name: {name}")
        edit(
            hub_repo,
            f"{base}/hubploy.yaml",
            'registry:\n  provider: aws\n  aws: {account_id: "123456789012", region: us-east-1}',
            "registry:\n  provider: oci\n  oci: {insecure: true}",
        )
    commit_all(hub_repo, "images in a local registry")
    tag = tag_of(hub_repo, "HEAD", f"{PRIVATE}/images/default")
    upload(oci_registry, "tess/user-image", tag)
    write(hub_repo, f"{PRIVATE}/images/default/README", "a new file: a new tag\n")

    def images(*args: str) -> list[tuple[str, Any, Any]]:
        assert main(["--repo", str(hub_repo), "plan", "--base", "HEAD", *args]) == 0
        found = json.loads(capsys.readouterr().out)["images"]
        return [(image["tag"] == tag, image["exists"], image["build"]) for image in found]

    assert images("--head", "HEAD", "--registry") == [(True, True, False)]
    assert images("--registry") == [(False, False, True)]
    assert images() == [(False, "unknown", True)]


@pytest.mark.parametrize(
    ("hub", "old", "new", "message"),
    [
        (
            "tess-public",
            "environments:",
            "environments: [",
            f"{PUBLIC}/hubploy.yaml:15: malformed YAML: expected ',' or ']', but got '<scalar>' "
            "(while parsing a flow sequence on line 13)",
        ),
        (
            "tess-private",
            "path: images/default",
            "path: images/nope",
            f"{PRIVATE}/hubploy.yaml:4: image directory {PRIVATE}/images/nope is missing or "
            f"empty (set by `path` for image {IMAGE})",
        ),
    ],
)
def test_a_broken_hubploy_yaml_fails_its_hub_and_the_others_are_planned(
    hub_repo: Path,
    capsys: pytest.CaptureFixture[str],
    hub: str,
    old: str,
    new: str,
    message: str,
) -> None:
    edit(hub_repo, f"deployments/{hub}/hubploy.yaml", old, new)
    other = "tess-private" if hub == "tess-public" else "tess-public"
    edit(hub_repo, f"deployments/{other}/config/staging.yaml", "jupyterhub:\n",
         "jupyterhub:\n  debug: {enabled: true}\n")
    status = main(["--repo", str(hub_repo), "plan", "--base", "HEAD"])
    captured = capsys.readouterr()
    assert status == 1
    result = json.loads(captured.out)
    assert result["failed"] == [{"hub": hub, "error": message}]
    assert [(p["hub"], p["env"]) for p in result["pairs"]] == [(other, "staging")]
    assert captured.err == f"hubbot: error: {hub} not planned: {message}\n"


@pytest.mark.parametrize("broken", ["config/common.yaml", "hubploy.yaml"])
def test_an_error_at_the_base_is_named_as_the_base_s(
    hub_repo: Path, capsys: pytest.CaptureFixture[str], broken: str
) -> None:
    git(hub_repo, "checkout", "-q", "-b", "broken")
    file = f"{PUBLIC}/{broken}"
    write(hub_repo, file, (hub_repo / file).read_text() + "oops: [\n")
    commit_all(hub_repo, "break tess-public")
    git(hub_repo, "checkout", "-q", "staging")
    edit(hub_repo, f"{PUBLIC}/config/staging.yaml", "jupyterhub:\n",
         "jupyterhub:\n  debug: {enabled: true}\n")
    for verb, done in (("plan", "planned"), ("diff", "diffed")):
        status = main(["--repo", str(hub_repo), verb, "--base", "broken"])
        err = capsys.readouterr().err
        assert status == 1
        assert err.startswith(
            f"hubbot: error: tess-public not {done}: at broken (the base): {file}:"
        ), err
    # Broken at the head, the error is the change's own: no word of the base.
    status = main(["--repo", str(hub_repo), "plan", "--base", "staging", "--head", "broken"])
    err = capsys.readouterr().err
    assert err.startswith(f"hubbot: error: tess-public not planned: {file}:"), err


def test_an_edited_image_file_changes_the_tag_for_every_pair(hub_repo: Path) -> None:
    directory = f"{PRIVATE}/images/default"
    old_tag = tag_of(hub_repo, "HEAD", directory)
    edit(hub_repo, f"{directory}/environment.yml", "dependencies:", "# pinned\ndependencies:")
    commit_all(hub_repo, "comment the environment")
    new_tag = tag_of(hub_repo, "HEAD", directory)
    result = plan_of(hub_repo)
    assert [(i["tag"], i["changed"], i["build"]) for i in result["images"]] == [
        (new_tag, True, True)
    ]
    assert pairs(result) == [
        (
            hub,
            env,
            [("image", f"{IMAGE}: {old_tag} -> {new_tag}", [directory, f"{base}/hubploy.yaml"])],
        )
        for hub, base in (("tess-private", PRIVATE), ("tess-public", PUBLIC))
        for env in ("prod", "staging")
    ]


def test_a_new_hub_lists_its_pairs_as_added_and_in_the_matrix(hub_repo: Path) -> None:
    shutil.copytree(hub_repo / PUBLIC, hub_repo / "deployments/tess-new")
    commit_all(hub_repo, "a third hub")
    result = plan(open_source(hub_repo, "HEAD~1"), open_source(hub_repo, "HEAD"))
    assert pairs(result.to_json()) == [
        (
            "tess-new",
            env,
            [("added", f"tess-new/{env} is new at HEAD", ["deployments/tess-new/hubploy.yaml"])],
        )
        for env in ("prod", "staging")
    ]
    assert result.matrix() == {
        "include": [{"hub": "tess-new", "env": "prod"}, {"hub": "tess-new", "env": "staging"}]
    }
    assert [(i.hubs, i.changed) for i in result.images] == [
        (("tess-new", "tess-private", "tess-public"), False)
    ]


def test_an_alias_bomb_in_hubploy_yaml_is_refused_fast(hub_repo: Path) -> None:
    from tests.test_yamlfile import alias_bomb

    file = f"{PUBLIC}/hubploy.yaml"
    bomb = alias_bomb(9).replace("a:", "x-lol:", 1).replace("\nl", "\nx-l")
    edit(hub_repo, file, "  - name: 123456789012", "  - x-name: *l8\n    name: 123456789012")
    (hub_repo / file).write_text(bomb + (hub_repo / file).read_text())
    commit_all(hub_repo, "an alias bomb")
    started = time.monotonic()
    result = plan_of(hub_repo)
    assert time.monotonic() - started < 2
    (failure,) = result["failed"]
    assert failure["hub"] == "tess-public"
    assert failure["error"].startswith(f"{file}:5: aliases expand to more than 10,000 values")
