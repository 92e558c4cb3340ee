"""`bot.valuesdiff`: rows, layers, overridden keys and secrets, on real commits."""

from __future__ import annotations

from pathlib import Path

from bot.source import open_source
from bot.values import build
from bot.valuesdiff import Overridden, Row, ValuesDiff, diff_values, dotted
from tests.fixtures.repos import commit_all, git
from tests.test_plan import PRIVATE, PUBLIC, edit


def diff_of(repo: Path, hub: str, env: str, base: str = "HEAD~1") -> ValuesDiff:
    return diff_values(
        build(open_source(repo, base), hub, env), build(open_source(repo, "HEAD"), hub, env)
    )


def test_a_changed_key_names_the_layer_that_set_it(hub_repo: Path) -> None:
    edit(hub_repo, f"{PRIVATE}/config/prod.yaml", "replicas: 2", "replicas: 3")
    commit_all(hub_repo, "placeholders")
    diff = diff_of(hub_repo, "tess-private", "prod")
    assert diff.rows == (
        Row(
            "jupyterhub.scheduling.userPlaceholder.replicas",
            "2",
            "3",
            f"{PRIVATE}/config/prod.yaml:14",
        ),
    )
    assert diff.overridden == ()
    assert diff.changed_files == (f"{PRIVATE}/config/prod.yaml",)


def line_of(repo: Path, file: str, text: str) -> int:
    lines = (repo / file).read_text().splitlines()
    return next(number for number, line in enumerate(lines, 1) if text in line)


def test_added_and_removed_keys(hub_repo: Path) -> None:
    max_age = line_of(hub_repo, f"{PUBLIC}/config/common.yaml", "maxAge: 28800")
    edit(hub_repo, f"{PUBLIC}/config/common.yaml", "    maxAge: 28800\n", "")
    edit(
        hub_repo,
        f"{PUBLIC}/config/common.yaml",
        "    users: true\n",
        "    users: true\n    x: 'on'\n",
    )
    commit_all(hub_repo, "no max age")
    x_line = line_of(hub_repo, f"{PUBLIC}/config/common.yaml", "x: 'on'")
    diff = diff_of(hub_repo, "tess-public", "staging")
    assert [(row.path, row.change, row.old, row.new, row.layer) for row in diff.rows] == [
        (
            "jupyterhub.cull.maxAge",
            "removed",
            "28800",
            None,
            f"{PUBLIC}/config/common.yaml:{max_age}",
        ),
        ("jupyterhub.cull.x", "added", None, '"on"', f"{PUBLIC}/config/common.yaml:{x_line}"),
    ]


def test_removing_an_override_is_explained_by_the_file_that_removed_it(hub_repo: Path) -> None:
    line = line_of(hub_repo, f"{PRIVATE}/config/common.yaml", "timeout: 14400")
    default = line_of(hub_repo, "hub/values.yaml", "timeout: 3600")
    edit(hub_repo, f"{PRIVATE}/config/common.yaml", "    timeout: 14400\n", "")
    commit_all(hub_repo, "default cull timeout")
    diff = diff_of(hub_repo, "tess-private", "staging")
    assert diff.rows == (
        Row(
            "jupyterhub.cull.timeout",
            "14400",
            "3600",
            f"{PRIVATE}/config/common.yaml:{line}",
            decided_by=f"hub/values.yaml:{default}",
        ),
    )
    assert diff.files_with_effect() == {f"{PRIVATE}/config/common.yaml"}


def test_a_change_a_higher_layer_decides_is_flagged(hub_repo: Path) -> None:
    edit(hub_repo, "hub/values.yaml", "replicas: 1", "replicas: 7")
    commit_all(hub_repo, "default placeholders")
    replicas = line_of(hub_repo, "hub/values.yaml", "replicas: 7")
    diff = diff_of(hub_repo, "tess-public", "prod")
    assert diff.rows == ()
    assert diff.overridden == (
        Overridden(
            "jupyterhub.scheduling.userPlaceholder.replicas",
            f"hub/values.yaml:{replicas}",
            "1",
            "7",
            f"{PUBLIC}/config/prod.yaml:7",
        ),
    )


def test_a_key_set_to_null_above_overrides_everything_below(hub_repo: Path) -> None:
    edit(hub_repo, f"{PUBLIC}/config/prod.yaml", "jupyterhub:\n", "jupyterhub:\n  cull: null\n")
    commit_all(hub_repo, "no culling settings in prod")
    edit(hub_repo, f"{PUBLIC}/config/common.yaml", "every: 60", "every: 90")
    commit_all(hub_repo, "cull check interval")
    diff = diff_of(hub_repo, "tess-public", "prod")
    assert diff.rows == ()
    assert [(o.path, o.by) for o in diff.overridden] == [
        ("jupyterhub.cull.every", f"{PUBLIC}/config/prod.yaml:2")
    ]


def test_secret_keys_added_or_removed_show_no_values(hub_repo: Path) -> None:
    path = hub_repo / PUBLIC / "secrets/prod.yaml"
    text = path.read_text()
    token_line = next(line for line in text.splitlines() if "secretToken" in line)
    path.write_text(text.replace("    proxy:\n" + token_line + "\n", ""))
    commit_all(hub_repo, "token from elsewhere")
    diff = diff_of(hub_repo, "tess-public", "prod")
    assert diff.rows == (
        Row(
            "jupyterhub.proxy.secretToken",
            "<secret>",
            None,
            f"{PUBLIC}/secrets/prod.yaml:3",
            secret=True,
        ),
    )
    assert diff.secret_files_changed == (f"{PUBLIC}/secrets/prod.yaml",)
    assert "ENC[" not in repr(diff)


def test_an_unchanged_pair_has_an_empty_diff(hub_repo: Path) -> None:
    git(hub_repo, "commit", "-q", "--allow-empty", "-m", "nothing")
    diff = diff_of(hub_repo, "tess-private", "prod")
    assert diff.empty
    assert diff.changed_files == ()


def test_dotted_quotes_keys_with_dots() -> None:
    assert dotted(("a", "hub.jupyter.org/node-purpose", 0)) == 'a."hub.jupyter.org/node-purpose".0'
