"""Building, self-testing and pushing images through a real Podman service and registry."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import docker
import pytest

from bot.builder import (
    BUILD,
    BUILD_AND_PUSH,
    LABEL_DIRECTORY,
    LABEL_REVISION,
    LABEL_TREE,
    NOTHING,
    collect,
    ensure_images,
    export_directory,
    plan,
)
from bot.errors import HubbotError
from bot.registries.oci import OciRegistry
from bot.source import GitCommit, WorkTree
from tests.fixtures.containers import USER_IMAGE_DIR, LocalRegistry, point_hubs_at
from tests.fixtures.processes import free_port
from tests.fixtures.repos import commit_all, git, write
from tests.test_source import within

HUBS = ["tess-private", "tess-public"]

pytestmark = pytest.mark.usefixtures("no_logins")


def tag_of(repo: Path, ref: str = "HEAD") -> str:
    return "tree-" + git(repo, "rev-parse", f"{ref}:{USER_IMAGE_DIR}")[:12]


def image_line(repo: Path) -> int:
    """The line of the `- name:` entry in tess-private's hubploy.yaml."""
    lines = (repo / "deployments/tess-private/hubploy.yaml").read_text().splitlines()
    return next(n for n, text in enumerate(lines, 1) if text.strip().startswith("- name:"))


def test_two_hubs_sharing_an_image_list_it_once(hub_repo: Path) -> None:
    [wanted] = collect(WorkTree(hub_repo), HUBS)
    assert wanted.hubs == ("tess-private", "tess-public")
    assert wanted.ref.tag == tag_of(hub_repo)


def test_plan_needs_no_engine(
    hub_repo: Path, oci_registry: LocalRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{hub_repo}/no-engine.sock")
    name = point_hubs_at(hub_repo, oci_registry)
    [status] = plan(WorkTree(hub_repo), HUBS, push=True)
    assert (status.name, status.tag, status.exists, status.action) == (
        name,
        tag_of(hub_repo),
        False,
        BUILD_AND_PUSH,
    )
    assert plan(WorkTree(hub_repo), ["tess-public"], push=False)[0].action == BUILD


@pytest.mark.slow
@pytest.mark.usefixtures("docker_host")
def test_build_push_once_then_nothing(hub_repo: Path, oci_registry: LocalRegistry) -> None:
    name = point_hubs_at(hub_repo, oci_registry)
    tag = tag_of(hub_repo)
    lines: list[str] = []
    [first] = ensure_images(WorkTree(hub_repo), HUBS, push=True, on_line=lines.append)
    assert (first.name, first.tag, first.hubs) == (name, tag, ("tess-private", "tess-public"))
    assert (first.existed, first.built, first.pushed, first.tested) == (False, True, True, False)
    assert first.digest == OciRegistry(insecure=True).digest(name, tag)
    steps = [line for line in lines if "STEP " in line]
    assert len(steps) >= 4  # FROM, COPY, RUN, CMD and repo2docker's labels
    assert all(line.startswith("  [") and "s] STEP " in line for line in steps)
    assert lines[-1] == f"{name}:{tag}: pushed {first.digest}"

    labels = docker.from_env().images.get(f"{name}:{tag}").labels
    assert labels[LABEL_REVISION] == git(hub_repo, "rev-parse", "HEAD")
    assert labels[LABEL_DIRECTORY] == USER_IMAGE_DIR
    assert labels[LABEL_TREE] == git(hub_repo, "rev-parse", f"HEAD:{USER_IMAGE_DIR}")

    again: list[str] = []
    [second] = ensure_images(WorkTree(hub_repo), HUBS, push=True, on_line=again.append)
    assert (second.existed, second.built, second.pushed) == (True, False, False)
    assert second.digest == first.digest
    assert again == [f"{name}:{tag}: tag exists in the registry ({first.digest}), nothing to build"]
    [status] = plan(WorkTree(hub_repo), HUBS, push=True)
    assert (status.exists, status.action) == (True, NOTHING)


@pytest.mark.slow
@pytest.mark.usefixtures("docker_host")
def test_previous_version_is_the_layer_cache(hub_repo: Path, oci_registry: LocalRegistry) -> None:
    name = point_hubs_at(hub_repo, oci_registry, "tess/cached")
    old_tag = tag_of(hub_repo)
    ensure_images(WorkTree(hub_repo), ["tess-private"], push=True)
    write(hub_repo, f"{USER_IMAGE_DIR}/README", "a new file\n")
    commit_all(hub_repo, "change the image")
    lines: list[str] = []
    [result] = ensure_images(
        GitCommit(hub_repo, "HEAD"), ["tess-private"], True, on_line=lines.append
    )
    assert result.tag == tag_of(hub_repo) != old_tag
    assert result.cache_from == f"{name}:{old_tag}"
    assert f"{name}:{result.tag}: using {name}:{old_tag} as the layer cache" in lines
    assert result.pushed


@pytest.mark.slow
@pytest.mark.usefixtures("docker_host")
def test_failing_self_test_blocks_the_push(hub_repo: Path, oci_registry: LocalRegistry) -> None:
    name = point_hubs_at(hub_repo, oci_registry, "tess/selftest")
    script = write(hub_repo, f"{USER_IMAGE_DIR}/test", "#!/bin/sh\necho checking astropy\nexit 4\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    commit_all(hub_repo, "an image test that fails")
    tag = tag_of(hub_repo)
    with pytest.raises(HubbotError) as caught:
        ensure_images(WorkTree(hub_repo), HUBS, push=True)
    assert str(caught.value) == (
        f"deployments/tess-private/hubploy.yaml:{image_line(hub_repo)}: image self-test "
        f"{USER_IMAGE_DIR}/test failed in {name}:{tag} (exit status 4); the image is not "
        "pushed. Its output:\n  | checking astropy"
    )
    assert OciRegistry(insecure=True).exists(name, tag) is False


@pytest.mark.slow
@pytest.mark.usefixtures("docker_host")
def test_passing_self_test_then_push(hub_repo: Path, oci_registry: LocalRegistry) -> None:
    name = point_hubs_at(hub_repo, oci_registry, "tess/selftest-ok")
    write(
        hub_repo, f"{USER_IMAGE_DIR}/test", "test -x /bin/busybox\n"
    )  # not executable: sh runs it
    commit_all(hub_repo, "an image test that passes")
    [result] = ensure_images(WorkTree(hub_repo), HUBS, push=True)
    assert (result.tested, result.pushed) == (True, True)
    assert OciRegistry(insecure=True).exists(name, result.tag)


@pytest.mark.slow
@pytest.mark.usefixtures("docker_host")
def test_bad_dockerfile_shows_the_failing_step_and_log_tail(
    hub_repo: Path, oci_registry: LocalRegistry
) -> None:
    name = point_hubs_at(hub_repo, oci_registry, "tess/broken")
    dockerfile = hub_repo / USER_IMAGE_DIR / "Dockerfile"
    dockerfile.write_text(
        dockerfile.read_text().replace(
            'CMD ["/bin/sh"]',
            'RUN ["/bin/sh", "-c", "echo installing; echo no such package >&2; exit 3"]',
        )
    )
    commit_all(hub_repo, "a broken build")
    with pytest.raises(HubbotError) as caught:
        ensure_images(WorkTree(hub_repo), HUBS, push=True)
    message = str(caught.value)
    first, *rest = message.splitlines()
    assert first.startswith(
        f"deployments/tess-private/hubploy.yaml:{image_line(hub_repo)}: building "
        f"{name}:{tag_of(hub_repo)} from {USER_IMAGE_DIR} failed at STEP 4/"
    )
    assert 'RUN ["/bin/sh", "-c", "echo installing; echo no such package >&2; exit 3"]' in first
    assert "exit status 3" in first
    assert rest[0].startswith("last ")
    assert rest[0].endswith(" lines of the build log:")
    assert "  | installing" in rest
    assert "  | no such package" in rest
    assert len(rest) <= 31
    assert OciRegistry(insecure=True).exists(name, tag_of(hub_repo)) is False


def test_engine_unreachable_only_matters_when_building(
    hub_repo: Path, oci_registry: LocalRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    point_hubs_at(hub_repo, oci_registry)
    monkeypatch.setenv("DOCKER_HOST", f"tcp://127.0.0.1:{free_port()}")
    with pytest.raises(HubbotError) as caught:
        ensure_images(WorkTree(hub_repo), HUBS, push=False)
    assert "set DOCKER_HOST to a Docker or Podman API socket" in str(caught.value)


def test_exported_directory_is_what_the_tag_covers(hub_repo: Path, tmp_path: Path) -> None:
    write(hub_repo, ".gitignore", "*.pyc\n")
    write(hub_repo, f"{USER_IMAGE_DIR}/sub/apt.txt", "git\n")
    write(hub_repo, f"{USER_IMAGE_DIR}/postBuild", "#!/bin/sh\n")
    (hub_repo / USER_IMAGE_DIR / "postBuild").chmod(0o755)
    commit_all(hub_repo, "more files")
    write(hub_repo, f"{USER_IMAGE_DIR}/cache.pyc", "ignored")
    write(hub_repo, f"{USER_IMAGE_DIR}/new.txt", "untracked, not ignored\n")
    export_directory(WorkTree(hub_repo), USER_IMAGE_DIR, tmp_path / "work")
    export_directory(GitCommit(hub_repo, "HEAD"), USER_IMAGE_DIR, tmp_path / "head")
    work = sorted(
        p.relative_to(tmp_path / "work").as_posix() for p in (tmp_path / "work").rglob("*")
    )
    head = sorted(
        p.relative_to(tmp_path / "head").as_posix() for p in (tmp_path / "head").rglob("*")
    )
    assert work == ["environment.yml", "new.txt", "postBuild", "sub", "sub/apt.txt"]
    assert head == ["environment.yml", "postBuild", "sub", "sub/apt.txt"]
    assert (tmp_path / "head/postBuild").stat().st_mode & stat.S_IXUSR
    assert (tmp_path / "work/postBuild").stat().st_mode & stat.S_IXUSR


def test_an_exported_work_tree_is_what_its_commit_exports(hub_repo: Path, tmp_path: Path) -> None:
    write(hub_repo, f"{USER_IMAGE_DIR}/start", "#!/bin/sh\n")
    write(hub_repo, f"{USER_IMAGE_DIR}/postBuild", "#!/bin/sh\n")
    commit_all(hub_repo, "more files")
    # Files made directories, one empty (git holds no such directory), and a submodule.
    (hub_repo / USER_IMAGE_DIR / "start").unlink()
    write(hub_repo, f"{USER_IMAGE_DIR}/start/run", "#!/bin/sh\n")
    (hub_repo / USER_IMAGE_DIR / "postBuild").unlink()
    (hub_repo / USER_IMAGE_DIR / "postBuild").mkdir()
    (hub_repo / USER_IMAGE_DIR / "vendored").mkdir()
    submodule = f"160000,{'1' * 40},{USER_IMAGE_DIR}/vendored"
    git(hub_repo, "update-index", "--add", "--cacheinfo", submodule)
    export_directory(WorkTree(hub_repo), USER_IMAGE_DIR, tmp_path / "work")
    commit_all(hub_repo, "the work tree as it is")
    export_directory(GitCommit(hub_repo, "HEAD"), USER_IMAGE_DIR, tmp_path / "head")
    work, head = (
        sorted(p.relative_to(tmp_path / side).as_posix() for p in (tmp_path / side).rglob("*"))
        for side in ("work", "head")
    )
    assert work == head == ["environment.yml", "start", "start/run", "vendored"]


def test_an_exported_work_tree_has_the_tree_id_its_tag_names(
    hub_repo: Path, tmp_path: Path
) -> None:
    write(hub_repo, ".gitignore", "*.pyc\n")
    write(hub_repo, f"{USER_IMAGE_DIR}/postBuild", "#!/bin/sh\n")
    write(hub_repo, f"{USER_IMAGE_DIR}/start", "#!/bin/sh\n")
    write(hub_repo, f"{USER_IMAGE_DIR}/gone.txt", "deleted, not yet in the index\n")
    commit_all(hub_repo, "more files")
    (hub_repo / USER_IMAGE_DIR / "postBuild").chmod(0o755)
    (hub_repo / USER_IMAGE_DIR / "start").unlink()
    write(hub_repo, f"{USER_IMAGE_DIR}/start/run", "#!/bin/sh\n")  # a file made a directory
    (hub_repo / USER_IMAGE_DIR / "gone.txt").unlink()
    write(hub_repo, f"{USER_IMAGE_DIR}/cache.pyc", "ignored")
    write(hub_repo, f"{USER_IMAGE_DIR}/new.txt", "untracked, not ignored\n")
    exported = tmp_path / "context"
    export_directory(WorkTree(hub_repo), USER_IMAGE_DIR, exported)
    git(exported, "init", "-q")
    git(exported, "add", "-A")
    assert git(exported, "write-tree").strip() == WorkTree(hub_repo).tree_hash(USER_IMAGE_DIR)


def test_a_fifo_in_the_image_directory_is_the_error_its_tree_id_gives(
    hub_repo: Path, tmp_path: Path
) -> None:
    # A tracked file made a FIFO (git lists no untracked one): opening it would wait for a
    # writer, and shutil refuses to copy it with a traceback.
    fifo = f"{USER_IMAGE_DIR}/environment.yml"
    (hub_repo / fifo).unlink()
    os.mkfifo(hub_repo / fifo)
    with pytest.raises(HubbotError) as caught:
        within(10, lambda: export_directory(WorkTree(hub_repo), USER_IMAGE_DIR, tmp_path / "x"))
    assert str(caught.value) == (
        f"{fifo}: is a named pipe (FIFO), not a file: hubbot reads only files as git holds "
        "them; replace it with the file itself"
    )

@pytest.mark.slow
@pytest.mark.usefixtures("docker_host")
def test_tests_folder_runs_with_pytest_inside_the_image(
    hub_repo: Path, oci_registry: LocalRegistry
) -> None:
    name = point_hubs_at(hub_repo, oci_registry, "tess/pytest")
    # The busybox image has no Python: a stand-in `python` shows what hubbot ran, and fails.
    dockerfile = hub_repo / USER_IMAGE_DIR / "Dockerfile"
    dockerfile.write_text(
        dockerfile.read_text().replace(
            'CMD ["/bin/sh"]',
            'RUN ["/bin/sh", "-c", "printf \'#!/bin/sh\\\\necho python $*; ls tests; exit 1\\\\n\''
            ' > /bin/python && chmod +x /bin/python"]\nCMD ["/bin/sh"]',
        )
    )
    write(hub_repo, f"{USER_IMAGE_DIR}/tests/test_imports.py", "import astropy\n")
    commit_all(hub_repo, "image tests with pytest")
    with pytest.raises(HubbotError) as caught:
        ensure_images(WorkTree(hub_repo), HUBS, push=True)
    assert str(caught.value).endswith(
        f"image self-test {USER_IMAGE_DIR}/tests/ failed in {name}:{tag_of(hub_repo)} "
        "(exit status 1); the image is not pushed. Its output:\n"
        "  | python -m pytest -q tests\n  | test_imports.py"
    )
    assert OciRegistry(insecure=True).exists(name, tag_of(hub_repo)) is False
