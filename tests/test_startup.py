"""The start-up check: the real JupyterHub, authenticators and KubeSpawner of the locked chart.

They are installed from PyPI once per machine (bot/jupyterhub_runtime.py caches the
virtualenv); every test here runs `hubbot validate` on a copy of this repository, the
real chart package and the real probe.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from bot import jupyterhub_runtime as runtime
from bot.cachedir import UNUSED_DAYS
from bot.errors import HubbotError
from tests.fixtures.charts import CHART_VERSION, REAL_CHART
from tests.fixtures.repos import PROJECT, replace_in, validate
from tests.fixtures.tools import missing

PUBLIC = "deployments/tess-public/config/common.yaml"
PRIVATE = "deployments/tess-private/config/common.yaml"


def chart_packages() -> Path:
    return Path(os.environ.get("HUBBOT_CHART_PACKAGES", PROJECT.parent / "shared" / "charts"))


@pytest.fixture(scope="session")
def hub_python() -> Path:
    """The cached virtualenv of the locked chart's hub packages: installed once per machine."""
    packages = chart_packages()
    requirements = packages / f"hub-image-requirements-{CHART_VERSION}.txt"
    if not requirements.is_file():
        missing(f"{requirements}", "set HUBBOT_CHART_PACKAGES to the shared chart packages")
    return runtime.environment(CHART_VERSION, requirements)


@pytest.fixture
def startup_env(hub_python: Path, helm_bin: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Real helm, the real chart packages and the installed hub runtime."""
    monkeypatch.setenv("HUBBOT_CHART_PACKAGES", str(chart_packages()))


def line_of(repo: Path, relative: str, text: str) -> int:
    lines = (repo / relative).read_text().splitlines()
    return next(number for number, line in enumerate(lines, 1) if text in line)


def as_first_committed(repo: Path) -> None:
    """tess-public and hub/values.yaml as they were before the start-up check existed."""
    replace_in(
        repo,
        PUBLIC,
        "      Authenticator:\n",
        "      TmpAuthenticator:\n        force_new_server: true\n      Authenticator:\n",
    )
    replace_in(repo, PUBLIC, "        allow_all: true\n", "        admin_users: []\n")
    replace_in(repo, "hub/values.yaml", "admin_access: null", "admin_access: false")


@pytest.mark.slow
def test_tmp_without_allow_all_admits_nobody_and_unknown_settings_fail(
    hub_repo: Path, startup_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    as_first_committed(hub_repo)
    status, out = validate(hub_repo, capsys, "tess-public", "--env", "staging", startup=True)
    assert status == 1, out
    tmp_line = line_of(hub_repo, PUBLIC, "authenticator_class: tmp")
    assert f"{PUBLIC}:{tmp_line}: nobody can log in: TmpAuthenticator admits no one" in out
    force_line = line_of(hub_repo, PUBLIC, "force_new_server")
    assert (
        f"{PUBLIC}:{force_line}: `TmpAuthenticator.force_new_server` is not a setting of "
        "TmpAuthenticator in jupyterhub-tmpauthenticator 1.0.0" in out
    )
    admin_line = line_of(hub_repo, "hub/values.yaml", "admin_access")
    assert f"warning: hub/values.yaml:{admin_line}: `JupyterHub.admin_access` is deprecated" in out
    assert "start-up: starts; login: nobody can log in" in out


@pytest.mark.slow
def test_the_charts_own_deprecated_default_is_named_as_such(
    hub_repo: Path, startup_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    replace_in(hub_repo, "hub/values.yaml", "        admin_access: null\n", "")
    status, out = validate(hub_repo, capsys, "tess-public", "--env", "staging", startup=True)
    assert status == 0, out
    assert (
        "`JupyterHub.admin_access (a default of the jupyterhub chart: `admin_access: null` "
        "under hub.config.JupyterHub drops it)` is deprecated"
    ) in out


@pytest.mark.slow
def test_the_committed_public_hub_admits_a_temporary_user(
    hub_repo: Path, startup_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out = validate(hub_repo, capsys, "tess-public", "--env", "staging", startup=True)
    assert status == 0, out
    assert "ok      tess-public/staging" in out
    assert "start-up: starts; login: a temporary user is admitted" in out
    assert "warning" not in out


@pytest.mark.slow
def test_github_verdict_names_the_org_and_the_hubs_own_callback(
    hub_repo: Path, startup_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out = validate(hub_repo, capsys, "tess-private", "--env", "staging", startup=True)
    assert status == 0, out
    assert (
        "start-up: starts; login: GitHub, org tess-science, callback "
        "https://staging.private.tess.omgwtf.in/hub/oauth_callback, client id set from secrets"
    ) in out


@pytest.mark.slow
def test_github_without_an_org_admits_nobody_and_a_foreign_callback_fails(
    hub_repo: Path, startup_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    replace_in(hub_repo, PRIVATE, "        allowed_organizations: [tess-science]\n", "")
    staging = "deployments/tess-private/config/staging.yaml"
    replace_in(hub_repo, staging, "https://staging.private.", "https://private.")
    status, out = validate(hub_repo, capsys, "tess-private", "--env", "staging", startup=True)
    assert status == 1, out
    github_line = line_of(hub_repo, PRIVATE, "authenticator_class: github")
    assert f"{PRIVATE}:{github_line}: nobody can log in: GitHubOAuthenticator" in out
    callback_line = line_of(hub_repo, staging, "oauth_callback_url")
    assert (
        f"{staging}:{callback_line}: the OAuth callback "
        "https://private.tess.omgwtf.in/hub/oauth_callback is not on this hub's host"
    ) in out


@pytest.mark.slow
def test_user_pod_as_root_or_with_a_shared_sub_path_fails(
    hub_repo: Path, startup_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    replace_in(
        hub_repo,
        PRIVATE,
        "      GitHubOAuthenticator:\n",
        "      KubeSpawner: {uid: 0}\n      GitHubOAuthenticator:\n",
    )
    replace_in(hub_repo, PRIVATE, 'subPath: "{username}"', "subPath: homes")
    status, out = validate(hub_repo, capsys, "tess-private", "--env", "staging", startup=True)
    assert status == 1, out
    uid_line = line_of(hub_repo, PRIVATE, "KubeSpawner: {uid: 0}")
    assert f"{PRIVATE}:{uid_line}: user pods would run as root (uid 0)" in out
    sub_path_line = line_of(hub_repo, PRIVATE, "subPath: homes")
    assert (
        f"{PRIVATE}:{sub_path_line}: user pods would mount the shared volume claim home-nfs "
        "with sub-path 'homes', not the user's own directory"
    ) in out


@pytest.mark.slow
def test_public_user_pod_mounts_no_volume_claim(
    hub_repo: Path, startup_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    # The house policy refuses singleuser.storage here; hub.config reaches KubeSpawner directly.
    volumes = (
        "      KubeSpawner:\n"
        "        volumes: [{name: data, persistentVolumeClaim: {claimName: home-nfs}}]\n"
        "        volume_mounts: [{name: data, mountPath: /data}]\n"
    )
    replace_in(hub_repo, PUBLIC, "      Authenticator:\n", volumes + "      Authenticator:\n")
    status, out = validate(hub_repo, capsys, "tess-public", "--env", "staging", startup=True)
    assert status == 1, out
    storage_line = line_of(hub_repo, PUBLIC, "volumes: [{name: data")
    assert (
        f"{PUBLIC}:{storage_line}: user pods would mount the volume claim home-nfs, though "
        "homeStorage.enabled is false"
    ) in out


def test_missing_requirements_file_says_what_to_set(
    hub_repo: Path, helm_bin: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    packages = tmp_path / "packages"
    packages.mkdir()
    monkeypatch.setenv("HUBBOT_CHART_PACKAGES", str(packages))
    with pytest.raises(HubbotError) as raised:
        runtime.requirements_file(CHART_VERSION)
    assert f"hub-image-requirements-{CHART_VERSION}.txt" in raised.value.message
    assert "--no-startup" in raised.value.message
    monkeypatch.delenv("HUBBOT_CHART_PACKAGES")
    with pytest.raises(HubbotError, match="set HUBBOT_CHART_PACKAGES"):
        runtime.requirements_file(CHART_VERSION)


def test_validate_without_the_pins_fails_the_pair_in_one_line(
    hub_repo: Path,
    helm_bin: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # The chart's package is there (its schema is checked first), its hub's pins are not.
    packages = tmp_path / "packages"
    packages.mkdir()
    shutil.copyfile(chart_packages() / REAL_CHART, packages / REAL_CHART)
    monkeypatch.setenv("HUBBOT_CHART_PACKAGES", str(packages))
    status, out = validate(hub_repo, capsys, "tess-public", "--env", "staging", startup=True)
    assert status == 1
    assert (
        f"the start-up check needs {packages}/hub-image-requirements-{CHART_VERSION}.txt"
    ) in out
    assert "Traceback" not in out


@pytest.mark.slow
def test_a_failed_install_is_one_error_and_leaves_no_environment(tmp_path: Path) -> None:
    requirements = tmp_path / "pins.txt"
    requirements.write_text("jupyterhub==0.0.0.0.1\n")
    cache = tmp_path / "cache"
    with pytest.raises(HubbotError) as raised:
        runtime.environment("0.0.0", requirements, cache)
    assert "cannot install JupyterHub for chart 0.0.0 from PyPI" in raised.value.message
    assert list(cache.iterdir()) == []


def test_the_environment_in_use_stays_and_one_unused_for_a_month_goes(tmp_path: Path) -> None:
    requirements = tmp_path / "pins.txt"
    requirements.write_text("jupyterhub==5.3.0\n")
    cache = tmp_path / "cache"
    in_use = runtime.environment_dir("4.4.0", requirements, cache)
    old = cache / "jupyterhub-4.2.0-0123456789abcdef"
    month_ago = time.time() - (UNUSED_DAYS + 1) * 24 * 3600
    for made in (in_use, old):
        (made / "bin").mkdir(parents=True)
        (made / runtime.COMPLETE).write_text("")
        os.utime(made / runtime.COMPLETE, (month_ago, month_ago))
    assert runtime.environment("4.4.0", requirements, cache) == in_use / "bin" / "python"
    assert sorted(cache.iterdir()) == [in_use]


def test_quantities_compare_as_kubernetes_reads_them() -> None:
    from bot.startup import quantity

    assert quantity("500m") < quantity(1) < quantity("1G") < quantity("1Gi") < quantity(2e9)
    with pytest.raises(HubbotError):
        quantity("lots")


@pytest.mark.slow
def test_a_misspelt_setting_in_a_secrets_file_is_unknown_to_its_class(
    hub_repo: Path, startup_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    secrets = "deployments/tess-private/secrets/prod.yaml"
    replace_in(hub_repo, secrets, "client_secret: ENC[", "client_secert: ENC[")
    status, out = validate(hub_repo, capsys, "tess-private", "--env", "prod", startup=True)
    assert status == 1, out
    line = line_of(hub_repo, secrets, "client_secert:")
    assert (
        f"{secrets}:{line}: `GitHubOAuthenticator.client_secert` is not a setting of "
        "GitHubOAuthenticator"
    ) in out


def drop_client_secret(repo: Path) -> str:
    """tess-private/prod's secrets file without its client_secret line; its path."""
    secrets = "deployments/tess-private/secrets/prod.yaml"
    text = (repo / secrets).read_text()
    kept = [line for line in text.splitlines(keepends=True) if "client_secret:" not in line]
    assert len(kept) == len(text.splitlines()) - 1
    (repo / secrets).write_text("".join(kept))
    return secrets


@pytest.mark.slow
def test_github_without_a_client_secret_completes_no_login(
    hub_repo: Path, startup_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    secrets = drop_client_secret(hub_repo)
    status, out = validate(hub_repo, capsys, "tess-private", "--env", "prod", startup=True)
    assert status == 1, out
    (problem,) = [line for line in out.splitlines() if "no client_secret" in line]
    assert problem.strip().startswith(f"{secrets}:")
    assert problem.endswith(
        "GitHubOAuthenticator has no client_secret: GitHub sends users back, but the hub cannot "
        "exchange their code for a token, so no login completes; put the OAuth app's "
        "client_secret under jupyterhub.hub.config.GitHubOAuthenticator in "
        f"{secrets} (`hubbot secrets edit tess-private prod`)"
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    ("extra_env", "source"),
    [
        # z2jh's mapping form, NAME -> {valueFrom: ...}, with oauthenticator's generic variable.
        (
            "    extraEnv:\n"
            "      OAUTH_CLIENT_SECRET:\n"
            "        valueFrom: {secretKeyRef: {name: external, key: secret}}\n",
            "Secret/external key secret",
        ),
        # The list form, with GitHubOAuthenticator's own variable.
        (
            "    extraEnv:\n"
            "      - name: GITHUB_CLIENT_SECRET\n"
            "        valueFrom: {secretKeyRef: {name: github-app, key: client-secret}}\n",
            "Secret/github-app key client-secret",
        ),
    ],
    ids=["mapping", "list"],
)
def test_github_client_secret_from_a_secret_outside_the_render_is_not_checked(
    hub_repo: Path,
    startup_env: None,
    capsys: pytest.CaptureFixture[str],
    extra_env: str,
    source: str,
) -> None:
    drop_client_secret(hub_repo)
    prod = "deployments/tess-private/config/prod.yaml"
    replace_in(hub_repo, prod, "  hub:\n    config:\n", "  hub:\n" + extra_env + "    config:\n")
    status, out = validate(hub_repo, capsys, "tess-private", "--env", "prod", startup=True)
    assert status == 0, out
    assert "no client_secret" not in out
    assert (
        "start-up: starts; login: GitHub, org tess-science, callback "
        "https://private.tess.omgwtf.in/hub/oauth_callback, client id set from secrets, "
        f"client secret set from {source}, outside this render: not checked"
    ) in out


def test_hub_env_from_a_secret_the_render_lacks_is_named_never_guessed() -> None:
    from bot.startup import _container_env

    def ref(field: str, name: str, key: str) -> dict[str, Any]:
        return {field: {"name": name, "key": key}}

    hub_secret = {"metadata": {"name": "hub"}, "stringData": {"proxy-token": "sample"}}
    env = [
        {"name": "TOKEN", "valueFrom": ref("secretKeyRef", "hub", "proxy-token")},
        # Same key, another Secret: not the hub's value.
        {"name": "OTHER", "valueFrom": ref("secretKeyRef", "external", "proxy-token")},
        {"name": "FROM_MAP", "valueFrom": ref("configMapKeyRef", "settings", "url")},
        {"name": "LATER", "value": "first"},
        {"name": "LATER", "valueFrom": ref("secretKeyRef", "external", "later")},
    ]
    deployment = {"spec": {"template": {"spec": {"containers": [{"name": "hub", "env": env}]}}}}
    resources = {("Secret", "", "hub"): hub_secret}
    found, outside = _container_env(resources, deployment, "ns")
    assert found == {"TOKEN": "sample"}
    assert outside == {
        "OTHER": "Secret/external key proxy-token",
        "FROM_MAP": "ConfigMap/settings key url",
        "LATER": "Secret/external key later",
    }
