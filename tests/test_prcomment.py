"""The PR comment tells the truth about the head commit: `hubbot ci` on a real git repo,
the GitHub API stand-in, and (slow) real builds on Podman."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bot.main import main
from tests import test_ci
from tests.fixtures.containers import USER_IMAGE_DIR, LocalRegistry, busybox_image, point_hubs_at
from tests.fixtures.github import FakeGitHub, Json
from tests.fixtures.processes import free_port
from tests.fixtures.repos import commit_all, git
from tests.test_ci import branch_with_change, ci, edit, pull_event

api = test_ci.api  # the GitHub stand-in, with the environment hubbot ci reads

COMMON = "deployments/tess-public/config/common.yaml"
BLOB = "https://github.com/tess-org/tess-hubs/blob"


def body(api: FakeGitHub, number: int) -> str:
    (comment,) = api.comments_on(number)
    return str(comment["body"])


def culling_pull_request(
    hub_repo: Path, api: FakeGitHub, tmp_path: Path
) -> tuple[str, str, Json]:
    """A pull request to staging changing tess-public's culling timeout, checked once:
    (base sha, head sha, the pull request)."""
    base = git(hub_repo, "rev-parse", "staging")
    first = branch_with_change(hub_repo, "culling", "timeout: 600", "timeout: 900")
    pull = api.add_pull("culling", "staging")
    assert ci(hub_repo, "pull_request",
              pull_event(tmp_path, pull["number"], "staging", base, "culling", first)) == 0
    return base, first, pull


def test_a_second_push_that_fails_validation_updates_the_comment_and_outdates_the_diff(
    hub_repo: Path, api: FakeGitHub, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base, first, pull = culling_pull_request(hub_repo, api, tmp_path)
    good = body(api, pull["number"])
    assert f"### hubbot: head `{first[:7]}` checked, diff below" in good
    assert f"<!-- hubbot:diff-of {first} -->" in good
    assert "cull.timeout" in good

    edit(hub_repo, COMMON, "timeout: 900", "timeout: soon")
    second = commit_all(hub_repo, "culling: a typo")
    capsys.readouterr()
    status = ci(hub_repo, "pull_request",
                pull_event(tmp_path, pull["number"], "staging", base, "culling", second))

    assert status == 1
    text = body(api, pull["number"])
    assert text.startswith("<!-- hubbot:diff part 1 -->\n")
    assert f"### hubbot: head `{second[:7]}` failed validation" in text
    assert "| validate | failed |" in text
    link = f"[`{COMMON}:20`]({BLOB}/{second}/{COMMON}#L20) (tess-public/staging): "
    assert link in text
    assert f"({BLOB}/{second}/{COMMON}#L20) (tess-public/prod): " in text
    assert (
        f"**Outdated.** This diff is from {first[:7]}; the latest push {second[:7]} "
        "failed validation: it is not what a merge would deploy." in text
    )
    assert f"<summary>Outdated diff from {first[:7]}</summary>" in text
    assert "cull.timeout" in text  # the old diff is kept, inside the outdated block
    assert f"diff-of {second}" not in text
    assert len(api.comments_on(pull["number"])) == 1

    # A third push fails again: the diff stays the one from the first, wrapped once.
    edit(hub_repo, COMMON, "timeout: soon", "timeout: later")
    third = commit_all(hub_repo, "culling: another typo")
    assert ci(hub_repo, "pull_request",
              pull_event(tmp_path, pull["number"], "staging", base, "culling", third)) == 1
    text = body(api, pull["number"])
    assert f"This diff is from {first[:7]}; the latest push {third[:7]} failed" in text
    assert text.count("<details>") == good.count("<details>") + 1

    # Fixed: the comment is current again, nothing outdated.
    edit(hub_repo, COMMON, "timeout: later", "timeout: 1200")
    fixed = commit_all(hub_repo, "culling: fixed")
    assert ci(hub_repo, "pull_request",
              pull_event(tmp_path, pull["number"], "staging", base, "culling", fixed)) == 0
    text = body(api, pull["number"])
    assert "Outdated" not in text
    assert f"<!-- hubbot:diff-of {fixed} -->" in text


def test_dry_run_prints_the_comment_on_a_laptop_without_a_token(
    hub_repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("GITHUB_TOKEN", "GITHUB_REPOSITORY", "GITHUB_API_URL", "GITHUB_STEP_SUMMARY",
                 "GITHUB_EVENT_NAME", "GITHUB_EVENT_PATH", "GITHUB_ACTIONS", "DOCKER_HOST"):
        monkeypatch.delenv(name, raising=False)
    base = git(hub_repo, "rev-parse", "staging")
    head = branch_with_change(hub_repo, "culling", "timeout: 600", "timeout: 900")
    env = hub_repo / USER_IMAGE_DIR / "environment.yml"
    env.write_text(env.read_text().replace("dependencies:\n", "dependencies:\n  - xarray=2024.1\n"))
    head = commit_all(hub_repo, "xarray in the user image")
    event = pull_event(tmp_path, 7, "staging", base, "culling", head)

    status = main(["--repo", str(hub_repo), "ci", "--dry-run", "--event", "pull_request",
                   "--event-path", str(event)])

    out, err = capsys.readouterr()
    assert (status, err) == (0, "")
    assert "--- the comment hubbot would post on #7 ---\n### hubbot: head" in out
    assert "cull.timeout" in out
    assert "==> build: skipped (dry run: builds nothing)" in out
    assert "==> comment: skipped (dry run: the comment is printed above)" in out
    assert "packages read from the environment spec" in out
    assert re.search(r"\| xarray \| conda \| — \| `=2024\.1` \|", out)
    assert "size unknown (not built)" in out


def test_dry_run_of_a_push_deploys_nothing_and_needs_no_token(
    hub_repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("GITHUB_TOKEN", raising=False)
    before = git(hub_repo, "rev-parse", "staging")
    edit(hub_repo, COMMON, "timeout: 600", "timeout: 900")
    after = commit_all(hub_repo, "longer culling")
    event = tmp_path / "push.json"
    event.write_text(f'{{"ref": "refs/heads/staging", "before": "{before}", "after": "{after}"}}')

    status = main(["--repo", str(hub_repo), "ci", "--dry-run", "--event", "push",
                   "--event-path", str(event)])

    out, err = capsys.readouterr()
    assert (status, err) == (0, "")
    for step in ("build and push", "deploy staging", "promote"):
        assert f"==> {step}: skipped (dry run)" in out


# --- real builds --------------------------------------------------------------------------

CONDA_META = "/srv/conda/envs/notebook/conda-meta"
SITE = "/srv/conda/envs/notebook/lib/python3.11/site-packages"


def packages(*lines: str) -> str:
    """Dockerfile lines recording packages as conda and pip do (records only, no code)."""
    run = [f"mkdir -p {CONDA_META} {SITE}"]
    for line in lines:
        kind, name = line.split(" ")
        if kind == "conda":
            run.append(f"touch {CONDA_META}/{name}.json")
        else:  # pip, or conda-pip: a Python package conda installed
            run.append(f"mkdir -p {SITE}/{name}.dist-info && echo {kind.split('-')[0]} > "
                       f"{SITE}/{name}.dist-info/INSTALLER")
    return 'RUN ["/bin/sh", "-c", "' + " && ".join(run) + '"]'


def unreachable_registry(tmp_path: Path) -> LocalRegistry:
    """A registry on a free port where nothing listens: the registry cannot be asked."""
    port = free_port()
    return LocalRegistry(f"127.0.0.1:{port}", f"http://127.0.0.1:{port}", tmp_path)


@pytest.mark.slow
def test_a_changed_image_is_built_without_a_registry_and_its_package_changes_listed(
    hub_repo: Path, api: FakeGitHub, docker_host: str, no_logins: Path, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    point_hubs_at(hub_repo, unreachable_registry(tmp_path))
    busybox_image(hub_repo / USER_IMAGE_DIR, extra=packages(
        "conda numpy-1.26.0-py311_0", "conda python-3.11.7-h1_0", "conda scipy-1.11.0-py311_0",
        "conda requests-2.31.0-py_0", "conda tqdm-4.66.0-py_0", "conda-pip tqdm-4.66.0",
    ))
    commit_all(hub_repo, "user image with packages")
    base = git(hub_repo, "rev-parse", "staging")
    git(hub_repo, "checkout", "-q", "-b", "numpy")
    busybox_image(hub_repo / USER_IMAGE_DIR, extra=packages(
        "conda numpy-1.26.4-py311_0", "conda python-3.11.7-h1_0", "conda xarray-2024.1.0-py_0",
        "pip httpx-0.27.0", "conda tqdm-4.66.0-py_0", "conda-pip tqdm-4.66.0",
        "conda requests-2.31.0-py_0",
    ) + '\nRUN ["/bin/sh", "-c", "head -c 3000000 /dev/zero > /ballast"]')
    head = commit_all(hub_repo, "numpy 1.26.4, xarray, httpx; scipy gone")
    pull = api.add_pull("numpy", "staging")

    assert ci(hub_repo, "pull_request",
              pull_event(tmp_path, pull["number"], "staging", base, "numpy", head)) == 0

    out, _ = capsys.readouterr()
    assert "cannot ask the registry which tags exist" in out
    assert "<== build (no push): the registry cannot be asked: ok in " in out
    text = body(api, pull["number"])
    assert "packages read from the built images: 2 added, 1 removed, 1 changed" in text
    assert "| numpy | conda | `1.26.0` | `1.26.4` |" in text
    assert "| xarray | conda | — | `2024.1.0` |" in text
    assert "| scipy | conda | `1.11.0` | — |" in text
    assert "| httpx | pip | — | `0.27.0` |" in text
    assert "tqdm" not in text  # installed by conda: its dist-info is conda's
    assert re.search(r"size [\d.]+ MB → [\d.]+ MB \(\+3\.\d MB\)", text)


@pytest.mark.slow
def test_an_image_that_does_not_build_fails_the_check_and_the_comment_shows_its_tail(
    hub_repo: Path, api: FakeGitHub, docker_host: str, no_logins: Path, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    point_hubs_at(hub_repo, unreachable_registry(tmp_path))
    base = git(hub_repo, "rev-parse", "staging")
    git(hub_repo, "checkout", "-q", "-b", "broken")
    busybox_image(hub_repo / USER_IMAGE_DIR,
                  extra='RUN ["/bin/sh", "-c", "echo cannot-find-libfoo; exit 3"]')
    head = commit_all(hub_repo, "a broken image")
    pull = api.add_pull("broken", "staging")

    assert ci(hub_repo, "pull_request",
              pull_event(tmp_path, pull["number"], "staging", base, "broken", head)) == 1

    text = body(api, pull["number"])
    assert f"### hubbot: head `{head[:7]}` failed to build its image" in text
    assert "| build (no push): the registry cannot be asked | failed |" in text
    assert "**The image build failed**" in text
    assert re.search(r"failed at (STEP|Step) 4/\d+: RUN", text)
    assert "cannot-find-libfoo" in text
    assert f"<!-- hubbot:diff-of {head} -->" in text  # the values diff is still current

    # The same change from a fork: built too (the registry is not asked), and it fails
    # the check; the report goes to the job summary, as a fork's token cannot comment.
    capsys.readouterr()
    fork = pull_event(tmp_path, 99, "staging", base, "broken", head, head_repo="someone/hubs")
    assert ci(hub_repo, "pull_request", fork) == 1
    out, _ = capsys.readouterr()
    assert "a fork's pull request cannot ask the registry: building the changed images" in out
    assert "cannot-find-libfoo" in out
    assert "<== build (no push): the registry cannot be asked: failed in " in out


def test_package_records_are_read_as_conda_and_pip_leave_them() -> None:
    from bot.imagediff import parse_listing

    listing = "\n".join([
        "conda /srv/conda/envs/notebook/conda-meta/python-dateutil-2.9.0-pyhd8ed1ab_0.json",
        "pip conda /srv/conda/envs/notebook/lib/python3.11/site-packages/"
        "python_dateutil-2.9.0.dist-info/INSTALLER",
        "pip pip /srv/conda/envs/notebook/lib/python3.11/site-packages/"
        "nbgitpuller-1.2.1.dist-info/INSTALLER",
        "conda /srv/conda/conda-meta/mamba-1.5.8-py311_0.json",
    ])
    assert parse_listing(listing) == {
        ("conda", "/srv/conda/envs/notebook", "python-dateutil"): "2.9.0",
        ("pip", "/srv/conda/envs/notebook", "nbgitpuller"): "1.2.1",
        ("conda", "/srv/conda", "mamba"): "1.5.8",
    }


def test_the_comment_gives_pairs_with_the_same_diff_one_block_and_others_their_own(
    hub_repo: Path, api: FakeGitHub, tmp_path: Path
) -> None:
    base, _, pull = culling_pull_request(hub_repo, api, tmp_path)
    text = body(api, pull["number"])
    why = "1 key changed in tess-public/config/common.yaml"
    diff = text.split("<!-- hubbot:diff-of")[1]
    assert diff.count("<details>") == diff.count("</details>") == 1
    assert f"<summary>tess-public/prod, tess-public/staging (identical): {why}</summary>" in diff
    assert diff.count("~ cull.timeout: 600 -> 900") == 1

    # Prod's culling now differs from staging's: each pair gets its own block again.
    edit(hub_repo, "deployments/tess-public/config/prod.yaml", "jupyterhub:\n",
         "jupyterhub:\n  cull:\n    timeout: 1200\n")
    second = commit_all(hub_repo, "culling: longer in prod")
    assert ci(hub_repo, "pull_request",
              pull_event(tmp_path, pull["number"], "staging", base, "culling", second)) == 0
    diff = body(api, pull["number"]).split("<!-- hubbot:diff-of")[1]
    summaries = re.findall(r"<summary>([^:<]*):", diff)
    assert summaries == ["tess-public/prod", "tess-public/staging"]
    assert "~ cull.timeout: 600 -> 1200" in diff
    assert "~ cull.timeout: 600 -> 900" in diff
