"""`hubbot diff`: the report of a real change, in every format, offline."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from bot import actions, diffreport, helm, markdown
from bot.diffreport import DiffReport, PairReport
from bot.main import main
from bot.manifests import ManifestDiff
from bot.plan import VALUES, Pair, Plan, Reason
from bot.valuesdiff import Row, ValuesDiff
from tests.fixtures.charts import CHART_VERSION
from tests.fixtures.repos import PROJECT, commit_all
from tests.fixtures.secrets import AgeKey, write_secrets
from tests.test_plan import PRIVATE, PUBLIC, edit

PROD = f"{PRIVATE}/config/prod.yaml"
KEY = "jupyterhub.scheduling.userPlaceholder.replicas"


@pytest.fixture(autouse=True)
def offline(helm_bin: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """No chart repository is reachable: every test here runs as `make check` does offline.

    Without chart packages too, unless a test asks for them (real_chart_packages).
    """
    for name in ("HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")
    monkeypatch.delenv(helm.PACKAGES_ENV, raising=False)


def hubbot(repo: Path, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    status = main(["--repo", str(repo), *args])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


@pytest.fixture
def prod_change(hub_repo: Path) -> Path:
    edit(hub_repo, PROD, "replicas: 2", "replicas: 3")
    commit_all(hub_repo, "one more placeholder in prod")
    return hub_repo


def test_markdown_has_a_summary_then_a_values_table_naming_the_layer(
    prod_change: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, err = hubbot(
        prod_change, capsys, "diff", "--base", "HEAD~1", "--format", "markdown"
    )
    assert status == 0
    assert err == ""
    lines = out.splitlines()
    assert lines[0] == "### hubbot diff `HEAD~1` → `working tree`"
    assert lines[2:9] == [
        "**Merging deploys nothing to staging; prod (tess-private/prod) waits for the "
        "promotion PR.**",
        "",
        "1 pair affected, 1 key changed, 0 images to build",
        "",
        "**Look out**",
        "",
        "- ⚠️ prod changes: tess-private/prod (deployed when the promotion PR merges)",
    ]
    assert lines[10:13] == [
        "| hub/env | why |",
        "|---|---|",
        f"| tess-private/prod | 1 key changed in {PROD.removeprefix('deployments/')} |",
    ]
    assert out.count("<details>") == out.count("</details>") == 1
    assert f"| `{KEY}` | `2` | `3` | `{PROD}:14` |" in lines
    assert lines.index("<details>") > lines.index("|---|---|")


def test_make_check_diff_shows_the_uncommitted_working_tree_offline(
    hub_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = subprocess.run(
        [str(PROJECT / "scripts/base-ref")],
        cwd=hub_repo,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    assert base == "staging"
    edit(hub_repo, f"{PUBLIC}/config/staging.yaml", "replicas: 0", "replicas: 1")
    status, out, _ = hubbot(hub_repo, capsys, "diff", "--base", base, "--format", "text")
    assert status == 0
    assert out.splitlines()[:2] == [
        "hubbot diff staging -> working tree: 1 pair affected, 1 key changed, 0 images to build",
        f"  tess-public/staging: 1 key changed in {PUBLIC}/config/staging.yaml",
    ]
    assert f"  {KEY}  0    1    {PUBLIC}/config/staging.yaml:7" in out.splitlines()


def test_make_check_without_a_staging_branch_says_what_it_diffs_against(
    hub_repo: Path,
) -> None:
    subprocess.run(["git", "checkout", "-q", "--detach"], cwd=hub_repo, check=True)
    subprocess.run(["git", "branch", "-qD", "staging"], cwd=hub_repo, check=True)
    done = subprocess.run(
        [str(PROJECT / "scripts/base-ref")], cwd=hub_repo, capture_output=True, text=True
    )
    assert done.returncode == 0
    assert done.stdout.strip() == "HEAD"
    assert "no staging branch" in done.stderr
    assert "make check BASE=<ref>" in done.stderr


def test_no_change_reports_nothing_affected(
    hub_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, _ = hubbot(hub_repo, capsys, "diff", "--base", "staging", "--format", "text")
    assert status == 0
    assert out == (
        "hubbot diff staging -> working tree: 0 pairs affected, 0 keys changed, 0 images to build\n"
    )


def test_json_holds_the_plan_and_the_rows(
    prod_change: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, _ = hubbot(
        prod_change, capsys, "diff", "--base", "HEAD~1", "--head", "HEAD", "--format", "json"
    )
    assert status == 0
    data = json.loads(out)
    assert [(p["hub"], p["env"]) for p in data["pairs"]] == [("tess-private", "prod")]
    assert data["diffs"][0]["values"] == [
        {
            "key": KEY,
            "change": "changed",
            "old": "2",
            "new": "3",
            "layer": f"{PROD}:14",
            "decided_by": None,
            "secret": False,
        }
    ]


def test_in_actions_the_full_report_goes_to_the_summary_and_a_file(
    prod_change: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    monkeypatch.chdir(tmp_path)
    status, out, _ = hubbot(prod_change, capsys, "diff", "--base", "HEAD~1", "--format", "text")
    assert status == 0
    report = (tmp_path / "hubbot-diff.md").read_text()
    assert report.startswith("### hubbot diff `HEAD~1`")
    assert summary.read_text() == report
    assert not out.startswith("###")


def test_a_secrets_change_says_changed_without_values(
    hub_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = hub_repo / PUBLIC / "secrets/prod.yaml"
    token = next(line for line in path.read_text().splitlines() if "secretToken" in line)
    path.write_text(path.read_text().replace("    proxy:\n" + token + "\n", ""))
    status, out, _ = hubbot(hub_repo, capsys, "diff", "--base", "staging", "--format", "markdown")
    assert status == 0
    assert "| `jupyterhub.proxy.secretToken` | `<secret>` | `(absent)` |" in out
    assert "ENC[" not in out
    assert token.split(": ", 1)[1] not in out


def test_an_unknown_base_is_one_clear_error(
    hub_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, err = hubbot(hub_repo, capsys, "diff", "--base", "no-such-branch")
    assert status == 1
    assert out == ""
    assert err.strip().endswith(
        "unknown git ref 'no-such-branch': fetch it or name an existing branch"
    )


def test_decrypt_tells_a_changed_secret_from_a_reencrypted_one(
    hub_repo: Path, age_env: AgeKey, capsys: pytest.CaptureFixture[str]
) -> None:
    def secrets(token: str, cookie: str) -> None:
        plaintext = (
            f"jupyterhub:\n  proxy:\n    secretToken: {token}\n  hub:\n    cookieSecret: {cookie}\n"
        )
        write_secrets(hub_repo, "tess-public", "staging", plaintext, age=[age_env.recipient])

    secrets("canary-token-0123456789", "canary-cookie-0123456789")
    commit_all(hub_repo, "staging secrets for the test key")
    secrets("canary-token-0123456789", "canary-cookie-9876543210")
    commit_all(hub_repo, "new cookie secret")
    status, out, _ = hubbot(
        hub_repo, capsys, "diff", "--base", "HEAD~1", "--format", "text", "--decrypt"
    )
    assert status == 0
    table = out.split("== tess-public/staging:")[1].splitlines()[1:3]
    assert table == [
        "  key                          old       new       set by",
        f"  jupyterhub.hub.cookieSecret  <secret>  <secret>  {PUBLIC}/secrets/staging.yaml:5",
    ]
    assert "canary" not in out
    status, out, _ = hubbot(hub_repo, capsys, "diff", "--base", "HEAD~1", "--format", "text")
    assert status == 0
    assert (
        f"  {PUBLIC}/secrets/staging.yaml changed: secret values may have changed "
        "(run with --decrypt to see which keys)"
    ) in out.splitlines()
    assert "canary" not in out


def test_a_very_large_diff_splits_into_balanced_parts_under_the_limit(
    hub_repo: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    keys = "".join(f"    key{i:04d}: value-{i}-`|<b>\n" for i in range(3000))
    edit(
        hub_repo, f"{PRIVATE}/config/common.yaml", "jupyterhub:\n", f"jupyterhub:\n  extra:\n{keys}"
    )
    commit_all(hub_repo, "three thousand keys")
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    status, out, _ = hubbot(
        hub_repo,
        capsys,
        "diff",
        "--base",
        "HEAD~1",
        "--format",
        "markdown",
        "--output",
        str(tmp_path / "full.md"),
    )
    assert status == 0
    # Offline, prod and staging read the same: one shared section holds the keys.
    assert "<summary>tess-private/prod, tess-private/staging (identical): " in out
    assert out.count("\n| `jupyterhub.extra.key") == 3000
    parts = markdown.split(out)
    assert len(parts) > 1
    for part in parts:
        assert len(part) <= markdown.COMMENT_LIMIT
        assert part.count("<details>") == part.count("</details>")
        fences = [line for line in part.splitlines() if line.startswith("```")]
        assert len(fences) % 2 == 0
    assert summary.stat().st_size <= actions.SUMMARY_LIMIT
    assert (tmp_path / "full.md").read_text() == out


UNAVAILABLE = (
    f"not rendered: chart dependency jupyterhub {CHART_VERSION} from "
    "https://hub.jupyter.org/helm-chart/ "
    "cannot be fetched (offline? set HUBBOT_CHART_PACKAGES to a directory of chart packages)"
)


def test_offline_the_manifests_are_one_line_and_the_values_diff_stays(
    prod_change: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, _ = hubbot(prod_change, capsys, "diff", "--base", "HEAD~1", "--format", "text")
    assert status == 0
    lines = out.splitlines()
    assert f"  manifests {UNAVAILABLE}; the values diff is complete" in lines
    assert lines[-2:] == [
        f"  {KEY}  2    3    {PROD}:14",
        f"  manifests: {UNAVAILABLE}",
    ]


@pytest.fixture
def chart_repo(hub_repo: Path, real_chart_packages: Path) -> Path:
    """hub_repo, the real jupyterhub chart package named by HUBBOT_CHART_PACKAGES."""
    return hub_repo


def test_manifest_diff_and_what_restarts(
    chart_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    edit(chart_repo, f"{PRIVATE}/config/common.yaml", "timeout: 14400", "timeout: 7200")
    commit_all(chart_repo, "shorter cull timeout")
    status, out, _ = hubbot(chart_repo, capsys, "diff", "--base", "HEAD~1", "--format", "markdown")
    assert status == 0
    summary = out.split("<details>")[0]
    assert (
        "**What restarts**\n\n- hub pod restarts: tess-private/prod, tess-private/staging\n\n"
    ) in summary
    prod = out.split("<summary>tess-private/prod")[1].split("</details>")[0]
    assert "Manifests, resources: 1 changed (Secret/hub), 0 added, 0 removed" in prod
    assert "\n```diff\n--- old/Secret/hub\n+++ new/Secret/hub\n" in prod
    assert "~ cull.timeout: 14400 -> 7200\n```" in prod
    assert "lines hidden by rule checksum" in prod


def test_with_decrypt_helm_gets_pseudonyms_so_no_template_can_print_a_secret(
    chart_repo: Path, age_env: AgeKey, capsys: pytest.CaptureFixture[str]
) -> None:
    token = "4b7ba5df7acf6269e31c562bbb7b1cb76d73605162c173925e3fb49f4c19d3bb"
    cookie = "bb3d91c4f94bf3e529371c26150637d67bc1b7bbb265c13e9626fca7fd5ab7b4"
    plaintext = (
        f"jupyterhub:\n  proxy:\n    secretToken: {token}\n  hub:\n    cookieSecret: {cookie}\n"
    )
    write_secrets(chart_repo, "tess-public", "staging", plaintext, age=[age_env.recipient])
    commit_all(chart_repo, "staging secrets for the test key")
    # The chart runs hub.args through `tpl`: a change can make any form of a secret.
    edit(
        chart_repo,
        f"{PUBLIC}/config/staging.yaml",
        "jupyterhub:\n",
        "jupyterhub:\n  hub:\n    args:\n      - '{{ .Values.proxy.secretToken | upper }}'\n"
        "      - '{{ .Values.hub.cookieSecret | substr 0 40 }}'\n",
    )
    commit_all(chart_repo, "print the secrets through tpl")
    status, out, _ = hubbot(
        chart_repo, capsys, "diff", "--base", "HEAD~1", "--format", "text", "--decrypt"
    )
    assert status == 0
    (upper, prefix) = re.findall(r"^\+        - (\S+)$", out, re.MULTILINE)
    assert re.fullmatch(r"[0-9A-F]{64}", upper)  # a hex token's pseudonym is a hex token
    assert re.fullmatch(r"[0-9a-f]{40}", prefix)
    assert upper != token.upper()
    assert prefix != cookie[:40]
    status, out, _ = hubbot(
        chart_repo, capsys, "render", "tess-public", "staging", "--manifests", "--decrypt"
    )
    assert status == 0
    (shown_upper,) = re.findall(r"^        - ([0-9A-F]{64})$", out, re.MULTILINE)
    assert shown_upper != upper  # each run draws its own key
    for shown in (token.upper(), cookie[:40], token[:16], cookie[:16]):
        assert shown not in out


def test_a_chart_template_change_renders_each_ref_with_its_own_chart(
    chart_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    edit(
        chart_repo,
        "hub/templates/user-serviceaccount.yaml",
        "  annotations:\n",
        "  annotations:\n    team: tess\n",
    )
    commit_all(chart_repo, "annotate the user service account")
    status, out, _ = hubbot(
        chart_repo, capsys, "diff", "--base", "HEAD~1", "--head", "HEAD", "--format", "json"
    )
    assert status == 0
    data = json.loads(out)
    assert [(p["hub"], p["env"], p["reasons"][0]["kind"]) for p in data["pairs"]] == [
        (hub, env, "chart")
        for hub in ("tess-private", "tess-public")
        for env in ("prod", "staging")
    ]
    for item in data["diffs"]:
        assert item["values"] == []
        assert item["manifests"]["changed"] == ["ServiceAccount/tess-user"]
        assert "+    team: tess\n" in item["manifests"]["diff"]["ServiceAccount/tess-user"]


def test_the_summary_flags_infra_policy_and_a_renamed_release_and_groups_identical_pairs(
    hub_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    edit(hub_repo, f"{PUBLIC}/hubploy.yaml", "release: tess-public-staging",
         "release: tess-public-stg")
    edit(hub_repo, f"{PRIVATE}/config/common.yaml", "timeout: 14400", "timeout: 7200")
    (hub_repo / "infra" / "note.tf").write_text("locals { note = 1 }\n")
    (hub_repo / "schemas" / "policy.schema.yaml").write_text(
        (hub_repo / "schemas" / "policy.schema.yaml").read_text() + "# stricter\n"
    )
    edit(hub_repo, "deployments/tess-public/config/common.yaml", "timeout: 600", "timeout: 900")
    commit_all(hub_repo, "rename, infra, policy")

    status, out, _ = hubbot(hub_repo, capsys, "diff", "--base", "HEAD~1", "--format", "markdown")

    assert status == 0
    assert "- ⚠️ infra/ changed: an operator must \\`terraform apply\\` it before this merges" in out
    assert (
        "- ⚠️ policy change (schemas/policy.schema.yaml): it decides what every hub may do; "
        "the owners named in .github/CODEOWNERS must review it"
    ) in out
    assert (
        "- ⚠️ tess-public/staging: release tess-public-staging (namespace tess-public-staging) "
        "becomes tess-public-stg (namespace tess-public-staging): the old release keeps running"
    ) in out
    assert "| tess-public/prod | 1 key changed in tess-public/config/common.yaml |" in out
    assert (
        "| tess-private/prod, tess-private/staging | 1 key changed in "
        "tess-private/config/common.yaml |"
    ) in out


def test_a_resized_static_volume_is_a_warning_and_an_error(
    chart_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    edit(
        chart_repo,
        f"{PRIVATE}/config/common.yaml",
        "efsFileSystemId: fs-0123456789abcdef0\n",
        "efsFileSystemId: fs-0123456789abcdef0\n  capacity: 2Ti\n",
    )
    status, out, err = hubbot(chart_repo, capsys, "diff", "--base", "HEAD", "--format", "text")
    assert status == 1
    refused = [
        f"tess-private/{env}: Kubernetes refuses to resize a statically provisioned volume "
        f"({kind}: 1Ti -> 2Ti)"
        for env in ("prod", "staging")
        for kind in (f"PersistentVolume tess-private-{env}-home", "PersistentVolumeClaim home-nfs")
    ]
    warnings = out.split("\nwarnings:\n")[1].split("\n\n")[0].splitlines()
    assert warnings[:4] == [f"  {line}" for line in refused]
    assert err == f"hubbot: error: this change cannot be deployed: {'; '.join(refused)}\n"

    status, out, _ = hubbot(chart_repo, capsys, "diff", "--base", "HEAD", "--format", "json")
    assert status == 1
    (prod,) = [item for item in json.loads(out)["diffs"] if item["env"] == "prod"]
    assert prod["manifests"]["refused"] == [line.split(": ", 1)[1] for line in refused[:2]]


# --- identical pairs share one section --------------------------------------------------


def report_of(*items: tuple[str, str, str, str]) -> DiffReport:
    """A report of pairs (hub, env, a manifest diff line, a restart), each with one key
    changed in hub/values.yaml."""
    why = (Reason(VALUES, "1 key changed", ("hub/values.yaml",)),)
    pairs = tuple(Pair(hub, env, why) for hub, env, _, _ in items)
    reports = tuple(
        PairReport(
            pair,
            ValuesDiff(
                pair.hub, pair.env, (Row("hub.x", "1", "2", "hub/values.yaml:3"),), (),
                ("hub/values.yaml",), (), decrypted=False,
            ),
            ManifestDiff(
                changed=["ConfigMap/hub"],
                text={"ConfigMap/hub": f"--- old/ConfigMap/hub\n+++ new/ConfigMap/hub\n{line}\n"},
                restarts=[restart] if restart else [],
            ),
        )
        for pair, (_, _, line, restart) in zip(pairs, items, strict=True)
    )
    return DiffReport(Plan("staging", "HEAD", (), pairs, ()), reports)


def summaries(out: str) -> list[str]:
    return [line for line in out.splitlines() if line.startswith("<summary>")]


def test_pairs_with_the_same_diff_share_one_details_block_naming_both() -> None:
    report = report_of(
        ("tess-public", "prod", "+  x: 2", ""), ("tess-public", "staging", "+  x: 2", "")
    )
    out = diffreport.markdown(report)
    assert out.count("<details>") == out.count("</details>") == 1
    assert summaries(out) == [
        "<summary>tess-public/prod, tess-public/staging (identical): "
        "1 key changed in hub/values.yaml</summary>"
    ]
    assert out.count("| `hub.x` | `1` | `2` | `hub/values.yaml:3` |") == 1
    assert out.count("+  x: 2") == 1

    text = diffreport.text(report)
    assert [line for line in text.splitlines() if line.startswith("==")] == [
        "== tess-public/prod, tess-public/staging (identical): 1 key changed in hub/values.yaml"
    ]
    assert text.count("+  x: 2") == 1


def test_pairs_that_differ_in_one_line_or_in_what_restarts_keep_their_own_blocks() -> None:
    report = report_of(
        ("a", "prod", "+  x: 2", ""),
        ("a", "staging", "+  x: 3", ""),  # one manifest line differs
        ("b", "prod", "+  x: 2", "hub pod restarts"),  # the block reads as a/prod's
        ("c", "prod", "+  x: 2", ""),  # the same as a/prod, after the others
    )
    out = diffreport.markdown(report)
    assert out.count("<details>") == 3
    assert [line.split(":")[0] for line in summaries(out)] == [
        "<summary>a/prod, c/prod (identical)", "<summary>a/staging", "<summary>b/prod",
    ]
    assert "+  x: 3" in out.split("<summary>a/staging")[1].split("</details>")[0]
    text = diffreport.text(report)
    assert [line.split(":")[0] for line in text.splitlines() if line.startswith("==")] == [
        "== a/prod, c/prod (identical)", "== a/staging", "== b/prod",
    ]


def test_many_identical_pairs_are_counted_in_the_title_and_all_named_inside() -> None:
    hubs = [f"hub-{i:03d}" for i in range(200)]
    report = report_of(*[(hub, env, "+  x: 2", "") for hub in hubs for env in ("prod", "staging")])
    out = diffreport.markdown(report)
    assert out.count("<details>") == 1
    (summary,) = summaries(out)
    shown = re.fullmatch(
        r"<summary>400 identical pairs \((.*) and (\d+) more\): "
        r"1 key changed in hub/values\.yaml</summary>",
        summary,
    )
    assert shown is not None
    names = shown.group(1).split(", ")
    assert names[:3] == ["hub-000/prod", "hub-000/staging", "hub-001/prod"]
    assert len(shown.group(1)) <= diffreport.TITLE_NAMES
    assert len(names) + int(shown.group(2)) == 400
    every = ", ".join(f"{hub}/{env}" for hub in hubs for env in ("prod", "staging"))
    assert f"\nThe same for all 400 pairs: {every}\n" in out
    assert len(out) < markdown.COMMENT_LIMIT
    text = diffreport.text(report)
    assert f"\n  The same for all 400 pairs: {every}\n" in text


def test_a_shared_values_change_groups_the_pairs_whose_manifest_diffs_match(
    chart_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    edit(chart_repo, "hub/values.yaml", "capacity: 1Ti", "capacity: 2Ti")
    status, out, _ = hubbot(chart_repo, capsys, "diff", "--base", "HEAD", "--format", "markdown")
    assert status == 1  # tess-private's static volumes cannot be resized
    why = "1 key changed in hub/values.yaml"
    # tess-public renders no volume; each tess-private pair names its own.
    assert summaries(out) == [
        f"<summary>tess-private/prod: {why}</summary>",
        f"<summary>tess-private/staging: {why}</summary>",
        f"<summary>tess-public/prod, tess-public/staging (identical): {why}</summary>",
    ]
    staging = out.split("<summary>tess-private/staging: ")[1].split("</details>")[0]
    assert "+++ new/PersistentVolume/tess-private-staging-home\n" in staging
    status, out, _ = hubbot(chart_repo, capsys, "diff", "--base", "HEAD", "--format", "text")
    assert [line for line in out.splitlines() if line.startswith("==")] == [
        f"== tess-private/prod: {why}",
        f"== tess-private/staging: {why}",
        f"== tess-public/prod, tess-public/staging (identical): {why}",
    ]
