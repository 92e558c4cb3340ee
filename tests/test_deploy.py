"""`hubbot deploy`: real git, sops, moto and JupyterHub; helm is the stand-in (no cluster)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from pytest_httpserver import HTTPServer
from ruamel.yaml import YAML

from bot import github, records
from bot.helm import PACKAGES_ENV
from bot.main import main
from bot.memfs import process_start
from bot.source import WorkTree
from bot.values import build
from tests.fixtures.aws import MotoEfs, make_efs_homes, put_ecr_image, use_efs_homes
from tests.fixtures.charts import CHART_VERSION, REAL_CHART, chart_packages_directory
from tests.fixtures.github import FakeGitHub
from tests.fixtures.helm_standin import (
    HUBS,
    LAB_KUBECONFIG,
    LAB_TOKEN,
    PRIVATE_CLIENT_ID,
    HelmStandIn,
    ensure_eks_cluster,
    files_holding,
    locked_dependency_present,
    plaintext_secrets,
    point_urls,
    use_kubeconfig_provider,
)
from tests.fixtures.jupyterhub import Hub, HubRuntime, StartHub
from tests.fixtures.record_keys import PUBLIC, SIGNING, make_record_keys
from tests.fixtures.repos import commit_all, git
from tests.fixtures.secrets import (
    AgeKey,
    files_holding_since,
    places_decrypted_data_could_stay,
    wait_until,
    write_secrets,
)

IMAGE_REPOSITORY = "tess-user-image"
# Each environment's own signing key, as its GitHub environment holds it.
KEYS = make_record_keys()


@dataclass(frozen=True)
class Deployable:
    repo: Path
    secrets: dict[str, str]  # hub -> its proxy secretToken (plaintext)
    hub_url: str  # tess-public's staging URL
    hubs: dict[str, Hub]  # what each hub's URLs reach: a real JupyterHub
    hub_version: str
    standin: HelmStandIn
    digest: str  # of the user image in moto's ECR
    efs: MotoEfs  # tess-private's home directories in moto's EFS

    def all_secrets(self) -> list[str]:
        return list(self.secrets.values())


def push_image(repo: Path, manifest_note: str = "v1") -> str:
    """Put the hubs' user image, at its content-address tag, into moto's ECR; its digest."""
    return put_ecr_image(IMAGE_REPOSITORY, image_tag(repo), manifest_note)


def image_tag(repo: Path) -> str:
    source = WorkTree(repo)
    (image,) = build(source, "tess-public", "staging").images
    return image.tag


@pytest.fixture
def deployable(
    hub_repo: Path,
    age_env: AgeKey,
    aws_env: str,
    deployed_hubs: dict[str, Hub],
    jupyterhub_runtime: HubRuntime,
    helm_standin: HelmStandIn,
    real_chart_packages: Path,
) -> Deployable:
    tokens = {hub: secrets.token_hex(32) for hub in HUBS}
    for hub in HUBS:
        for env in ("staging", "prod"):
            write_secrets(hub_repo, hub, env, plaintext_secrets(hub, tokens[hub]),
                          age=[age_env.recipient])
    point_urls(hub_repo, {hub: deployed.url for hub, deployed in deployed_hubs.items()})
    locked_dependency_present(hub_repo, real_chart_packages)
    # The committed ids stand for terraform's outputs; moto makes its own.
    efs = make_efs_homes()
    use_efs_homes(hub_repo, efs)
    commit_all(hub_repo, "test secrets, hub URLs, the chart's locked dependency, EFS ids")
    ensure_eks_cluster()
    return Deployable(hub_repo, tokens, deployed_hubs["tess-public"].url, deployed_hubs,
                      jupyterhub_runtime.version, helm_standin, push_image(hub_repo), efs)


UPGRADE_FLAGS = [
    "--create-namespace", "--wait", "--timeout", "10m", "--atomic", "--cleanup-on-fail",
    "-f", "-",
]


def test_deploy_runs_helm_with_exact_flags_values_on_stdin_and_a_private_kubeconfig(
    deployable: Deployable, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    status = main(["--repo", str(deployable.repo), "deploy", "tess-public", "staging"])

    out, err = capsys.readouterr()
    assert status == 0, out + err
    standin = deployable.standin
    assert [call.argv[0] for call in standin.calls()] == ["version", "status", "upgrade"]
    (status_call,) = standin.calls("status")
    assert status_call.argv == [
        "status", "tess-public-staging", "--namespace", "tess-public-staging", "--output", "json",
    ]
    (upgrade,) = standin.calls("upgrade")
    assert upgrade.argv == [
        "upgrade", "--install", "tess-public-staging", "hub/",
        "--namespace", "tess-public-staging", *UPGRADE_FLAGS,
    ]
    assert upgrade.cwd == str(deployable.repo)
    values = json.loads(upgrade.stdin)
    token = deployable.secrets["tess-public"]
    assert values["jupyterhub"]["proxy"]["secretToken"] == token
    assert values["jupyterhub"]["singleuser"]["image"]["tag"].startswith("tree-")
    for call in standin.calls():
        assert not any(token in arg for arg in call.argv)
        assert not any(token in value for value in call.env.values())
    # A memory file with no name on disk, inherited by helm: nothing to remove afterwards.
    assert re.fullmatch(r"/dev/fd/\d+", upgrade.env["KUBECONFIG"])
    assert upgrade.kubeconfig_mode == 0o600
    assert "k8s-aws-v1." in (upgrade.kubeconfig or "")
    assert files_holding(tmp_path, deployable.all_secrets(), skip=standin.directory) == []
    assert token not in out + err
    assert "tess-public/staging  ok" in out
    assert (
        f"JupyterHub {deployable.hub_version} at {deployable.hub_url}; "
        "login: a temporary user is admitted"
    ) in out


def test_a_release_stuck_pending_is_not_upgraded_and_the_fix_is_named(
    deployable: Deployable, capsys: pytest.CaptureFixture[str]
) -> None:
    deployable.standin.release("tess-public-staging", status="pending-upgrade", revision=7)

    status = main(["--repo", str(deployable.repo), "deploy", "tess-public", "staging"])

    out, _ = capsys.readouterr()
    assert status == 1
    assert deployable.standin.calls("upgrade") == []
    assert (
        "release tess-public-staging in namespace tess-public-staging is stuck in "
        "pending-upgrade (revision 7), probably left by an interrupted deploy; not upgrading "
        "it blindly: check `helm history tess-public-staging --namespace tess-public-staging` "
        "and that no other deploy is running, recover with `helm rollback tess-public-staging "
        "6 --namespace tess-public-staging --wait`, then deploy again"
    ) in out


def test_a_first_install_left_pending_is_uninstalled_not_rolled_back(
    deployable: Deployable, capsys: pytest.CaptureFixture[str]
) -> None:
    deployable.standin.release("tess-public-staging", status="pending-install", revision=1)

    assert main(["--repo", str(deployable.repo), "deploy", "tess-public", "staging"]) == 1

    out, _ = capsys.readouterr()
    assert "recover with `helm uninstall tess-public-staging --namespace " \
        "tess-public-staging`, then deploy again" in out
    assert deployable.standin.calls("upgrade") == []


@pytest.mark.parametrize(
    ("mode", "reason"),
    [
        ("timeout", "context deadline exceeded"),
        ("partial", "resource Deployment/tess-private-staging/hub not ready. status: "
                    "InProgress, message: Available: 0/1"),
    ],
)
def test_one_hub_failing_does_not_stop_the_other(
    deployable: Deployable, capsys: pytest.CaptureFixture[str], mode: str, reason: str
) -> None:
    deployable.standin.release("tess-private-staging", upgrade=mode)

    status = main(
        ["--repo", str(deployable.repo), "deploy", "tess-public", "tess-private", "staging"]
    )

    out, _ = capsys.readouterr()
    assert status == 1
    upgraded = sorted(call.argv[2] for call in deployable.standin.calls("upgrade"))
    assert upgraded == ["tess-private-staging", "tess-public-staging"]
    rows = [line.split(None, 3) for line in out.splitlines() if line.startswith("tess-")
            and ("  ok  " in line or "  FAILED  " in line)]
    assert [(row[0], row[1]) for row in rows] == [
        ("tess-public/staging", "ok"), ("tess-private/staging", "FAILED"),
    ]
    assert all(row[2].endswith("s") for row in rows)
    assert rows[1][3] == (
        "helm upgrade failed: UPGRADE FAILED: release tess-private-staging failed, and has "
        f"been rolled back due to atomic being set: {reason}"
    )
    assert not any(token in out for token in deployable.all_secrets())


def test_missing_chart_dependencies_are_built_from_the_lock_in_a_copy(
    deployable: Deployable, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    (deployable.repo / "hub/charts" / REAL_CHART).unlink()
    monkeypatch.delenv(PACKAGES_ENV)  # fetched, not taken from the local packages
    deployable.standin.repository_holds(chart_packages_directory())

    assert main(["--repo", str(deployable.repo), "deploy", "tess-public", "staging"]) == 0

    (upgrade,) = deployable.standin.calls("upgrade")
    copy = Path(upgrade.argv[3])
    # validate fetches the chart's package for its schema too, in a copy of its own.
    builds = deployable.standin.calls("dependency")
    assert all(build.argv[:2] == ["dependency", "build"] for build in builds)
    assert str(copy) in [build.argv[2] for build in builds]
    assert copy.name == "hub"
    assert not copy.is_relative_to(deployable.repo)
    assert not copy.exists()
    assert not (deployable.repo / "hub/charts" / REAL_CHART).exists()


def test_offline_chart_dependencies_are_one_clear_error_and_nothing_deploys(
    deployable: Deployable, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    (deployable.repo / "hub/charts" / REAL_CHART).unlink()
    monkeypatch.delenv(PACKAGES_ENV)
    deployable.standin.offline()

    assert main(["--repo", str(deployable.repo), "deploy", "tess-public", "staging"]) == 1

    _, err = capsys.readouterr()
    assert err == (
        f"hubbot: error: chart dependency jupyterhub {CHART_VERSION} from "
        "https://hub.jupyter.org/helm-chart/ cannot be fetched (offline? set "
        "HUBBOT_CHART_PACKAGES to a directory of chart packages)\n"
    )
    assert deployable.standin.calls("upgrade") == []


def test_a_missing_eks_cluster_fails_the_pair_before_helm(
    deployable: Deployable, capsys: pytest.CaptureFixture[str]
) -> None:
    hubploy = deployable.repo / "deployments/tess-public/hubploy.yaml"
    hubploy.write_text(hubploy.read_text().replace("cluster: tess}", "cluster: gone}"))

    assert main(["--repo", str(deployable.repo), "deploy", "tess-public", "staging"]) == 1

    out, _ = capsys.readouterr()
    assert (
        "deployments/tess-public/hubploy.yaml:11: EKS cluster 'gone' does not exist in "
        "us-east-1 (account 123456789012): check cluster.aws"
    ) in out
    assert [call.argv[0] for call in deployable.standin.calls()] == ["version"]


def test_a_pair_whose_efs_access_point_is_missing_is_not_deployed(
    deployable: Deployable, capsys: pytest.CaptureFixture[str]
) -> None:
    gone = deployable.efs.access_point_ids["staging"]
    boto3.client("efs", region_name="us-east-1").delete_access_point(AccessPointId=gone)

    status = main(
        ["--repo", str(deployable.repo), "deploy", "tess-public", "tess-private", "staging"]
    )

    out, _ = capsys.readouterr()
    assert status == 1
    assert f"tess-private/staging: EFS home directories {deployable.efs.file_system_id}::{gone}" \
        in out
    row = next(line for line in out.splitlines() if line.startswith("tess-private/staging "))
    assert row.split(None, 3)[1] == "FAILED"
    assert row.split(None, 3)[3] == (
        f"deployments/tess-private/config/staging.yaml:2: EFS access point {gone} does not exist "
        "in us-east-1 (account 123456789012): set homeStorage.efsAccessPointId to terraform's "
        "efs_access_point_ids output for staging"
    )
    # The other pair still deploys; this one never reaches helm.
    assert [call.argv[2] for call in deployable.standin.calls("upgrade")] == [
        "tess-public-staging"
    ]
    assert [call.argv[1] for call in deployable.standin.calls("status")] == [
        "tess-public-staging"
    ]


# --- records and prod freight -----------------------------------------------------------


@pytest.fixture
def recorded(deployable: Deployable, github_api: FakeGitHub,
             monkeypatch: pytest.MonkeyPatch) -> FakeGitHub:
    """The GitHub stand-in, and the record keys the deploy jobs hold: every environment's
    public key, and (see deploy()) the signing key of the environment deployed."""
    for name, value in github_api.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv(SIGNING, KEYS.signing["staging"])
    monkeypatch.setenv(PUBLIC, KEYS.public())
    monkeypatch.delenv("GITHUB_SHA", raising=False)
    return github_api


def hubbot(repo: Path, *args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "bot", "--repo", str(repo), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def test_dry_run_prints_the_helm_command_without_any_credentials(hub_repo: Path) -> None:
    bare = {"PATH": os.environ["PATH"], "HOME": str(hub_repo.parent)}

    proc = hubbot(hub_repo, "deploy", "tess-public", "staging", "--dry-run", env=bare)
    out, err = proc.communicate(timeout=120)

    assert proc.returncode == 0, err
    assert (
        "# deploy: helm upgrade --install tess-public-staging hub/ --namespace "
        "tess-public-staging --create-namespace --wait --timeout 10m --atomic "
        "--cleanup-on-fail -f -\n"
    ) in out
    assert "    secretToken: <secret>\n" in out
    assert "    cookieSecret: <secret>\n" in out
    assert "# health check: GET https://staging.tess.omgwtf.in/hub/api/\n" in out
    assert (
        "# login check: GET https://staging.tess.omgwtf.in/hub/tmplogin must log in a "
        "temporary user (no server started)\n"
    ) in out
    assert "ENC[" not in out


def test_sigterm_mid_deploy_stops_helm_leaves_no_plaintext_and_records_failure(
    deployable: Deployable, recorded: FakeGitHub, tmp_path: Path
) -> None:
    deployable.standin.release("tess-public-staging", upgrade="hang")
    proc = hubbot(deployable.repo, "deploy", "tess-public", "staging", env=dict(os.environ))
    deployable.standin.wait_until_hanging()
    (upgrade,) = deployable.standin.calls("upgrade")
    assert "k8s-aws-v1." in (upgrade.kubeconfig or "")

    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)

    assert proc.returncode == 128 + signal.SIGTERM
    assert not helm_alive(upgrade.pid)
    assert "tess-public/staging  FAILED" in out
    assert "interrupted (SIGTERM) while helm was upgrading" in out
    assert not any(token in out + err for token in deployable.all_secrets())
    assert files_holding(tmp_path, deployable.all_secrets(), skip=deployable.standin.directory) \
        == []
    (deployment,) = recorded.deployments.values()
    assert [s["state"] for s in recorded.statuses[deployment["id"]]] == ["in_progress", "failure"]


def helm_alive(pid: int) -> bool:
    """Whether helm (the stand-in) still runs; a zombie waiting to be reaped does not."""
    return process_start(pid) is not None


@pytest.mark.parametrize("group", [True, False], ids=["process group", "the bot alone"])
def test_sigkill_mid_deploy_leaves_nothing_decrypted_and_no_helm_running(
    deployable: Deployable, age_env: AgeKey, group: bool
) -> None:
    """SIGKILL cannot be handled: nothing decrypted may have a name, and helm dies with the bot."""
    kube_token = "canary-kube-" + secrets.token_hex(16)
    use_kubeconfig_provider(deployable.repo, "tess-public", age_env.recipient, kube_token)
    deployable.standin.release("tess-public-staging", upgrade="hang")
    since = time.time() - 1
    proc = subprocess.Popen(
        [sys.executable, "-m", "bot", "--repo", str(deployable.repo), "deploy", "tess-public",
         "staging"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: the bot and its helm
    )
    try:
        deployable.standin.wait_until_hanging()
        (upgrade,) = deployable.standin.calls("upgrade")
        assert kube_token in (upgrade.kubeconfig or "")
        assert helm_alive(upgrade.pid)
        if group:
            os.killpg(proc.pid, signal.SIGKILL)
        else:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        assert wait_until(lambda: not helm_alive(upgrade.pid)), "helm outlived the bot"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    leftovers = files_holding_since(
        [kube_token, *deployable.all_secrets()],
        places_decrypted_data_could_stay(deployable.repo),
        since,
        skip=[deployable.standin.directory],  # its record of what helm was given
    )
    assert leftovers == []


def deploy(d: Deployable, *args: str) -> int:
    """`hubbot deploy ARGS` as the deploy job of its environment: holding that environment's
    signing key, when the test gives the jobs one (as GitHub gives a job its environment's
    secret; monkeypatch restores the variable after the test)."""
    env = args[-1]
    if os.environ.get(SIGNING) and env in KEYS.signing:
        os.environ[SIGNING] = KEYS.signing[env]
    return main(["--repo", str(d.repo), "deploy", *args])


def statuses(api: FakeGitHub, deployment_id: int) -> list[tuple[str, str]]:
    return [(s["state"], s["environment_url"]) for s in api.statuses[deployment_id]]


def test_each_deploy_is_a_github_deployment_with_freight_and_statuses(
    deployable: Deployable, recorded: FakeGitHub, capsys: pytest.CaptureFixture[str]
) -> None:
    assert deploy(deployable, "tess-public", "staging") == 0

    (deployment,) = recorded.deployments.values()
    head = git(deployable.repo, "rev-parse", "HEAD")
    assert deployment["sha"] == head
    assert deployment["environment"] == "tess-public-staging"
    payload = deployment["payload"]
    name = "123456789012.dkr.ecr.us-east-1.amazonaws.com/tess-user-image"
    tag = image_tag(deployable.repo)
    assert payload["images"] == [{
        "name": name, "tag": tag, "digest": deployable.digest,
        "reference": f"{name}:{tag}@{deployable.digest}",
    }]
    assert payload["chart"]["name"] == "tess-hub"
    assert payload["chart"]["version"] == "0.1.0"
    assert payload["chart"]["lock_digest"].startswith("sha256:")
    assert payload["fingerprints"]["common"].startswith("sha256:")
    assert payload["fingerprints"]["values"].startswith("hmac-sha256:")
    assert not any(token in json.dumps(payload) for token in deployable.all_secrets())
    assert statuses(recorded, deployment["id"]) == [
        ("in_progress", deployable.hub_url), ("success", deployable.hub_url),
    ]


def test_a_failed_deploy_is_recorded_as_failure(
    deployable: Deployable, recorded: FakeGitHub, capsys: pytest.CaptureFixture[str]
) -> None:
    deployable.standin.release("tess-public-staging", upgrade="timeout")

    assert deploy(deployable, "tess-public", "staging") == 1

    (deployment,) = recorded.deployments.values()
    (_, final) = recorded.statuses[deployment["id"]]
    assert final["state"] == "failure"
    assert final["description"].startswith("helm upgrade failed: UPGRADE FAILED: release ")
    assert len(final["description"]) <= 140


def test_the_deploy_runs_when_github_is_down_and_says_it_was_not_recorded(
    deployable: Deployable, recorded: FakeGitHub, capsys: pytest.CaptureFixture[str]
) -> None:
    recorded.down()

    assert deploy(deployable, "tess-public", "staging") == 0

    out, _ = capsys.readouterr()
    assert len(deployable.standin.calls("upgrade")) == 1
    assert recorded.deployments == {}
    row = next(line for line in out.splitlines() if line.startswith("tess-public/staging "))
    assert "  ok  " in row
    assert "[record: deployment not recorded: GitHub API POST " in row


def test_a_created_deployment_without_an_integer_id_is_a_note_and_gets_no_status(
    deployable: Deployable, recorded: FakeGitHub, capsys: pytest.CaptureFixture[str]
) -> None:
    client = github.client_from_env(recorded.env())
    head = git(deployable.repo, "rev-parse", "HEAD")
    created = github.create_deployment(client, head, "tess-public-staging", {})
    # An answer no GitHub gives: the deployment's node id where its integer id belongs.
    recorded.fail(201, method="POST", path=r"/deployments$",
                  body={**created, "id": created["node_id"]})
    recorded.requests.clear()

    assert deploy(deployable, "tess-public", "staging") == 0

    out, _ = capsys.readouterr()
    row = next(line for line in out.splitlines() if line.startswith("tess-public/staging "))
    assert "  ok  " in row
    assert (
        "[record: deployment not recorded: GitHub API POST /repos/tess-org/tess-hubs/deployments "
        f"answered a deployment whose id is {created['node_id']!r}, where GitHub gives every "
        "deployment an integer id: is GITHUB_API_URL GitHub's API?"
    ) in row
    assert recorded.calls("POST", r".*/statuses") == []


def test_prod_deploys_only_freight_that_staging_ran(
    deployable: Deployable, recorded: FakeGitHub, capsys: pytest.CaptureFixture[str]
) -> None:
    assert deploy(deployable, "tess-public", "prod") == 1
    out, _ = capsys.readouterr()
    assert (
        "no verified successful staging deployment of tess-public is recorded (GitHub "
        "environment tess-public-staging): prod deploys only what staging ran, so deploy it to "
        "staging first."
    ) in out
    assert deployable.standin.calls("upgrade") == []
    assert recorded.deployments == {}

    assert deploy(deployable, "tess-public", "staging") == 0
    assert deploy(deployable, "tess-public", "prod") == 0
    upgraded = [call.argv[2] for call in deployable.standin.calls("upgrade")]
    assert upgraded == ["tess-public-staging", "tess-public-prod"]
    prod = [d for d in recorded.deployments.values() if d["environment"] == "tess-public-prod"]
    assert prod[0]["payload"]["images"][0]["digest"] == deployable.digest


def test_prod_refuses_an_image_re_pushed_since_staging_ran_it(
    deployable: Deployable, recorded: FakeGitHub, capsys: pytest.CaptureFixture[str]
) -> None:
    assert deploy(deployable, "tess-public", "staging") == 0
    staging_id = next(iter(recorded.deployments))
    repushed = push_image(deployable.repo, manifest_note=secrets.token_hex(8))
    assert repushed != deployable.digest
    capsys.readouterr()

    assert deploy(deployable, "tess-public", "prod") == 1

    out, _ = capsys.readouterr()
    name = "123456789012.dkr.ecr.us-east-1.amazonaws.com/tess-user-image"
    head = git(deployable.repo, "rev-parse", "HEAD")
    assert (
        f"prod freight for tess-public does not match staging deployment {staging_id} (commit "
        f"{head[:12]}): image {name}:{image_tag(deployable.repo)} is {repushed} in the "
        f"registry, but staging ran {deployable.digest} (re-pushed since?)"
    ) in out
    assert [call.argv[2] for call in deployable.standin.calls("upgrade")] == [
        "tess-public-staging"
    ]


def test_prod_refuses_common_config_that_staging_never_ran(
    deployable: Deployable, recorded: FakeGitHub, capsys: pytest.CaptureFixture[str]
) -> None:
    assert deploy(deployable, "tess-public", "staging") == 0
    common = deployable.repo / "deployments/tess-public/config/common.yaml"
    common.write_text(common.read_text().replace("timeout: 600", "timeout: 900"))
    commit_all(deployable.repo, "a common change staging never ran")
    capsys.readouterr()

    assert deploy(deployable, "tess-public", "prod") == 1

    out, _ = capsys.readouterr()
    assert "which no verified staging deploy ran: a change made on prod directly" in out
    assert [call.argv[2] for call in deployable.standin.calls("upgrade")] == [
        "tess-public-staging"
    ]


# --- the prod gate: only a tree staging ran, proven by records nobody else can make ---------

PROD_YAML = "deployments/tess-public/config/prod.yaml"


def refused_before_helm(d: Deployable, capsys: pytest.CaptureFixture[str]) -> str:
    """Deploy tess-public to prod, which must fail with no prod helm upgrade; the output."""
    capsys.readouterr()
    assert deploy(d, "tess-public", "prod") == 1
    out, err = capsys.readouterr()
    assert [c.argv[2] for c in d.standin.calls("upgrade") if c.argv[2].endswith("-prod")] == []
    return out + err


def change_prod_directly(d: Deployable) -> str:
    """A commit made straight on prod: mallory lets everyone in and makes herself admin."""
    (d.repo / PROD_YAML).write_text(
        (d.repo / PROD_YAML).read_text()
        + "  hub:\n    config:\n      Authenticator:\n        allow_all: true\n"
        "        admin_users: [mallory]\n"
    )
    return commit_all(d.repo, "let mallory in")


def as_user(api: FakeGitHub, token: str) -> github.Client:
    return github.client_from_env({**api.env(), "GITHUB_TOKEN": token})


def forge(
    api: FakeGitHub, client: github.Client, sha: str, environment: str,
    payload: dict[str, Any], description: str,
) -> int:
    """A staging record made through the API from public data, as anyone who may write
    deployments can (a pull request's workflow acts as github-actions[bot] too)."""
    deployment = github.create_deployment(client, sha, environment, payload)
    github.create_deployment_status(client, deployment["id"], "in_progress")
    github.create_deployment_status(client, deployment["id"], "success", description=description)
    return int(deployment["id"])


@pytest.mark.parametrize(
    "forgery",
    ["zero proof", "no proof", "proof copied", "proof cut short", "signed with prod's key",
     "zero sha", "another hub", "a person's token"],
)
def test_a_forged_staging_record_never_opens_prod(
    deployable: Deployable, recorded: FakeGitHub, capsys: pytest.CaptureFixture[str],
    forgery: str,
) -> None:
    assert deploy(deployable, "tess-public", "staging") == 0
    assert deploy(deployable, "tess-private", "staging") == 0
    honest = {d["environment"]: d for d in recorded.deployments.values()}
    public = honest["tess-public-staging"]
    copied_proof = recorded.statuses[public["id"]][-1]["description"].split()[0]
    sha = change_prod_directly(deployable)
    tree = git(deployable.repo, "rev-parse", "HEAD^{tree}")
    payload = {**public["payload"], "commit_tree": tree}
    client = as_user(recorded, recorded.token)
    zero = "hubbot-proof:" + "A" * 86
    # What the prod deploy job, which holds prod's signing key, could sign for staging.
    subject = records.Subject("tess-org/tess-hubs", sha, tree, "tess-public", "staging")
    by_prod = records.PROOF_PREFIX + records.proof(KEYS.key("prod"), subject, payload, "success")
    not_staging = "its proof does not verify with the staging environment's public key"
    expected = {
        "zero proof": (sha, "tess-public-staging", payload, zero, not_staging),
        "no proof": (sha, "tess-public-staging", payload, "deployed",
                     "its success status carries no proof"),
        "proof copied": (sha, "tess-public-staging", payload, copied_proof, not_staging),
        "proof cut short": (sha, "tess-public-staging", payload, by_prod[:-20],
                            "its proof is malformed: 66 characters, where an Ed25519 "
                            "signature takes 86 base64url characters"),
        "signed with prod's key": (sha, "tess-public-staging", payload, by_prod,
                                   "its proof was signed with the prod environment's key, not "
                                   "staging's: only a staging deploy proves a staging record"),
        "zero sha": ("0" * 40, "tess-public-staging", payload, zero,
                     f"its commit {'0' * 40} is not in this repository"),
        "another hub": (sha, "tess-public-staging",
                        {**honest["tess-private-staging"]["payload"], "commit_tree": tree}, zero,
                        "its payload is for tess-private/staging, not tess-public/staging"),
        "a person's token": (sha, "tess-public-staging", payload, copied_proof,
                             "created by mallory, not by github-actions[bot]"),
    }
    forged_sha, environment, forged_payload, description, reason = expected[forgery]
    if forgery == "a person's token":
        client = as_user(recorded, recorded.user_token("mallory"))
    forged = forge(recorded, client, forged_sha, environment, forged_payload, description)

    out = refused_before_helm(deployable, capsys)

    assert f"commit {sha[:12]} has tree {tree[:12]}, which no verified staging deploy ran" in out
    assert f"Records refused: deployment {forged} (commit {forged_sha[:12]}): {reason}" in out


def test_a_forged_record_for_the_whole_staging_run_never_opens_prod(
    deployable: Deployable, recorded: FakeGitHub, capsys: pytest.CaptureFixture[str]
) -> None:
    assert deploy(deployable, "tess-public", "staging") == 0
    sha = change_prod_directly(deployable)
    tree = git(deployable.repo, "rev-parse", "HEAD^{tree}")
    payload = {"hub": None, "env": "staging", "commit_tree": tree, "pairs": []}
    forged = forge(recorded, as_user(recorded, recorded.token), sha, "staging-run", payload,
                   "hubbot-proof:" + "A" * 86)

    out = refused_before_helm(deployable, capsys)

    assert (
        f"deployment {forged} (commit {sha[:12]}): its proof does not verify with the staging "
        "environment's public key"
    ) in out


def test_a_failed_staging_deploy_re_marked_success_never_opens_prod(
    deployable: Deployable, recorded: FakeGitHub, capsys: pytest.CaptureFixture[str]
) -> None:
    deployable.standin.release("tess-public-staging", upgrade="timeout")
    assert deploy(deployable, "tess-public", "staging") == 1
    (failed,) = recorded.deployments.values()
    github.create_deployment_status(as_user(recorded, recorded.token), failed["id"], "success")

    out = refused_before_helm(deployable, capsys)

    assert (
        f"deployment {failed['id']} (commit {failed['sha'][:12]}): a status of it says "
        "failure: a failed deploy stays failed, whatever status comes after"
    ) in out


@pytest.mark.parametrize("change", ["prod.yaml", "hubploy.yaml"])
def test_a_change_made_directly_on_prod_is_refused(
    deployable: Deployable, recorded: FakeGitHub, capsys: pytest.CaptureFixture[str],
    change: str,
) -> None:
    assert deploy(deployable, "tess-public", "staging") == 0
    (staging,) = recorded.deployments.values()
    if change == "prod.yaml":
        sha = change_prod_directly(deployable)
    else:
        hubploy = deployable.repo / "deployments/tess-public/hubploy.yaml"
        hubploy.write_text(hubploy.read_text().replace(
            "release: tess-public-prod,", "release: tess-public-prod-v2,"))
        sha = commit_all(deployable.repo, "prod at another release")
    tree = git(deployable.repo, "rev-parse", "HEAD^{tree}")

    out = refused_before_helm(deployable, capsys)

    assert (
        f"commit {sha[:12]} has tree {tree[:12]}, which no verified staging deploy ran: a change "
        "made on prod directly (not promoted from staging) is never deployed; the newest "
        f"verified staging deployment of tess-public is {staging['id']} (commit "
        f"{staging['sha'][:12]}, tree {staging['payload']['commit_tree'][:12]})."
    ) in out


def test_a_squashed_promotion_deploys_every_hub_of_a_tree_staging_ran(
    deployable: Deployable, recorded: FakeGitHub, capsys: pytest.CaptureFixture[str]
) -> None:
    assert deploy(deployable, "tess-public", "staging") == 0
    assert deploy(deployable, "tess-private", "staging") == 0
    common = deployable.repo / "deployments/tess-public/config/common.yaml"
    common.write_text(common.read_text().replace("timeout: 600", "timeout: 900"))
    commit_all(deployable.repo, "tess-public culls later")
    # Only tess-public changed, so only it deploys to staging at this commit.
    assert deploy(deployable, "tess-public", "staging") == 0
    tree = git(deployable.repo, "rev-parse", "HEAD^{tree}")
    squashed = git(deployable.repo, "commit-tree", tree, "-p", "prod", "-m", "Promote")
    git(deployable.repo, "checkout", "-q", "-B", "prod", squashed)

    assert deploy(deployable, "tess-private", "prod") == 0
    assert deploy(deployable, "tess-public", "prod") == 0

    prod = [d for d in recorded.deployments.values() if d["environment"].endswith("-prod")]
    assert [d["sha"] for d in prod] == [squashed, squashed]


def test_a_working_tree_that_differs_from_its_commit_never_deploys_prod(
    deployable: Deployable, recorded: FakeGitHub, capsys: pytest.CaptureFixture[str]
) -> None:
    assert deploy(deployable, "tess-public", "staging") == 0
    (deployable.repo / PROD_YAML).write_text(
        (deployable.repo / PROD_YAML).read_text() + "  debug: {enabled: true}\n"
    )
    (deployable.repo / "deployments/tess-public/config/extra.yaml").write_text("a: 1\n")
    head = git(deployable.repo, "rev-parse", "HEAD")
    calls = len(deployable.standin.calls())
    capsys.readouterr()

    assert deploy(deployable, "tess-public", "prod") == 1

    _, err = capsys.readouterr()
    assert err == (
        f"hubbot: error: the working tree differs from commit {head[:12]} "
        "(deployments/tess-public/config/extra.yaml, deployments/tess-public/config/prod.yaml): "
        "prod deploys only a commit that staging ran, never uncommitted changes; commit them "
        "through a staging pull request, or `git stash --include-untracked`. Nothing was "
        "deployed\n"
    )
    assert len(deployable.standin.calls()) == calls
    assert [d["environment"] for d in recorded.deployments.values()] == ["tess-public-staging"]


def test_a_staging_deploy_from_a_changed_working_tree_is_not_recorded_as_its_commit(
    deployable: Deployable, recorded: FakeGitHub, capsys: pytest.CaptureFixture[str]
) -> None:
    (deployable.repo / PROD_YAML).write_text(
        (deployable.repo / PROD_YAML).read_text() + "  debug: {enabled: true}\n"
    )
    head = git(deployable.repo, "rev-parse", "HEAD")

    assert deploy(deployable, "tess-public", "staging") == 0

    out, _ = capsys.readouterr()
    assert recorded.deployments == {}
    row = next(line for line in out.splitlines() if line.startswith("tess-public/staging "))
    assert row.endswith(
        f"[record: not recorded: the working tree differs from commit {head[:12]} "
        "(deployments/tess-public/config/prod.yaml), so this deploy is not that commit]"
    )


def test_prod_needs_the_public_keys_to_check_staging_records(
    deployable: Deployable, recorded: FakeGitHub, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert deploy(deployable, "tess-public", "staging") == 0
    monkeypatch.delenv(PUBLIC)

    out = refused_before_helm(deployable, capsys)

    assert (
        "a prod deploy must prove staging ran the same commit tree and freight, from GitHub "
        "deployment records checked with the environments' public keys: set GITHUB_TOKEN, "
        "GITHUB_REPOSITORY and HUBBOT_RECORD_PUBLIC_KEYS"
    ) in out
    assert not any(key in out for key in KEYS.signing.values())


def test_a_deploy_job_given_another_environments_key_stops_before_anything_runs(
    deployable: Deployable, recorded: FakeGitHub, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls = len(deployable.standin.calls())
    monkeypatch.setenv(SIGNING, KEYS.signing["prod"])

    assert main(["--repo", str(deployable.repo), "deploy", "tess-public", "staging"]) == 1

    out, err = capsys.readouterr()
    assert err == (
        "hubbot: error: HUBBOT_RECORD_SIGNING_KEY is the prod environment's key in "
        "HUBBOT_RECORD_PUBLIC_KEYS, not staging's: its records of staging would never verify; "
        "give the job staging's own secret\n"
    )
    assert not any(key in out + err for key in KEYS.signing.values())
    assert len(deployable.standin.calls()) == calls
    assert recorded.deployments == {}


def test_a_record_from_a_deploy_without_the_key_does_not_count_and_says_so(
    deployable: Deployable, recorded: FakeGitHub, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(SIGNING)
    assert deploy(deployable, "tess-public", "staging") == 0
    out, _ = capsys.readouterr()
    (staging,) = recorded.deployments.values()
    assert (
        f"[record: deployment {staging['id']} carries no proof (HUBBOT_RECORD_SIGNING_KEY is "
        "not set): prod will not count it]"
    ) in out
    monkeypatch.setenv(SIGNING, KEYS.signing["prod"])

    out = refused_before_helm(deployable, capsys)

    assert "no verified successful staging deployment of tess-public" in out
    assert f"deployment {staging['id']} (commit {staging['sha'][:12]}): its success status " \
        "carries no proof" in out


@pytest.fixture
def unready_hub() -> Iterator[HTTPServer]:
    """A hub whose load balancer answers 502 for ever (it stands for the cluster, not the hub)."""
    server = HTTPServer(host="127.0.0.1", port=0)
    server.start()
    server.expect_request("/hub/api/").respond_with_data("bad gateway", 502)
    try:
        yield server
    finally:
        server.clear()
        server.stop()


def test_sigterm_during_the_health_check_retries_ends_the_run_at_once(
    deployable: Deployable, recorded: FakeGitHub, unready_hub: HTTPServer
) -> None:
    point_urls(deployable.repo, {"tess-public": unready_hub.url_for("/").rstrip("/")})
    commit_all(deployable.repo, "tess-public behind a load balancer that never gets ready")
    proc = hubbot(deployable.repo, "deploy", "tess-public", "staging", env=dict(os.environ))
    deadline = time.monotonic() + 60
    while not unready_hub.log and time.monotonic() < deadline:
        time.sleep(0.05)
    assert unready_hub.log, "the health check never started"

    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)

    assert proc.returncode == 128 + signal.SIGTERM
    assert "interrupted (SIGTERM) while waiting to retry" in out
    (deployment,) = recorded.deployments.values()
    assert [s["state"] for s in recorded.statuses[deployment["id"]]] == ["in_progress", "failure"]


def test_an_unknown_environment_fails_its_pair_with_one_line_and_deploys_nothing(
    deployable: Deployable, capsys: pytest.CaptureFixture[str]
) -> None:
    assert deploy(deployable, "tess-public", "qa") == 1

    out, err = capsys.readouterr()
    assert err == ""
    target, result, _, detail = out.splitlines()[-1].split(None, 3)
    assert (target, result) == ("tess-public/qa", "FAILED")
    assert detail == (
        "unknown environment 'qa' for hub tess-public: deployments/tess-public/hubploy.yaml "
        "defines staging, prod"
    )
    assert [call.argv[0] for call in deployable.standin.calls()] == ["version"]


def test_a_release_another_hub_uses_is_never_upgraded(
    deployable: Deployable, capsys: pytest.CaptureFixture[str]
) -> None:
    hubploy = deployable.repo / "deployments/tess-public/hubploy.yaml"
    old, new = "release: tess-public-staging", "release: tess-private-staging"
    hubploy.write_text(hubploy.read_text().replace(old, new))

    assert deploy(deployable, "tess-public", "staging") == 1

    out, _ = capsys.readouterr()
    target, result, _, detail = out.splitlines()[-1].split(None, 3)
    assert (target, result) == ("tess-public/staging", "FAILED")
    assert detail.startswith(
        "not deployed: 1 validation problem(s), the first: deployments/tess-public/hubploy.yaml:"
    )
    assert "release tess-private-staging is also used by tess-private/staging at " in detail
    assert deployable.standin.calls("upgrade") == []


def test_a_sops_encrypted_kubeconfig_reaches_helm_only_as_a_private_file(
    deployable: Deployable, age_env: AgeKey, capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    use_kubeconfig_provider(deployable.repo, "tess-public", age_env.recipient)

    assert deploy(deployable, "tess-public", "staging") == 0

    out, err = capsys.readouterr()
    (upgrade,) = deployable.standin.calls("upgrade")
    assert upgrade.kubeconfig_mode == 0o600
    assert YAML(typ="safe").load(upgrade.kubeconfig or "") == YAML(typ="safe").load(
        LAB_KUBECONFIG
    )
    assert re.fullmatch(r"/dev/fd/\d+", upgrade.env["KUBECONFIG"])
    assert LAB_TOKEN not in out + err
    # Only the token is a secret: the kubeconfig's structure is neither warned about nor redacted.
    assert "warning" not in err
    assert "<redacted>" not in out + err
    assert not any(LAB_TOKEN in arg for arg in upgrade.argv)
    assert files_holding(tmp_path, [LAB_TOKEN], skip=deployable.standin.directory) == []


# --- login after the deploy ---------------------------------------------------------------


def test_a_hub_that_answers_but_admits_nobody_fails_its_deploy_and_the_table_says_why(
    deployable: Deployable, recorded: FakeGitHub, start_jupyterhub: StartHub,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # tess-public as committed: authenticator_class tmp, and no allow rule.
    nobody = start_jupyterhub({"JupyterHub": {"authenticator_class": "tmp"}})
    point_urls(deployable.repo, {"tess-public": nobody.url})
    commit_all(deployable.repo, "tess-public at a hub that admits nobody")

    assert deploy(deployable, "tess-public", "staging") == 1

    out, _ = capsys.readouterr()
    assert len(deployable.standin.calls("upgrade")) == 1
    target, result, _, detail = out.splitlines()[-1].split(None, 3)
    assert (target, result) == ("tess-public/staging", "FAILED")
    assert detail == (
        f"health check failed: {nobody.url}/hub/api/ answers, but login: /hub/tmplogin gave "
        "HTTP 500 (Internal Server Error) instead of a user: nobody can log in"
    )
    (deployment,) = recorded.deployments.values()
    assert [s["state"] for s in recorded.statuses[deployment["id"]]] == ["in_progress", "failure"]


def test_the_private_hub_passes_when_it_sends_users_to_github_with_its_client_and_callback(
    deployable: Deployable, capsys: pytest.CaptureFixture[str]
) -> None:
    assert deploy(deployable, "tess-private", "staging") == 0

    out, _ = capsys.readouterr()
    url = deployable.hubs["tess-private"].url
    row = next(line for line in out.splitlines() if line.startswith("tess-private/staging "))
    assert row.endswith(
        f"JupyterHub {deployable.hub_version} at {url}; login: /hub/oauth_login sends users to "
        "https://github.com/login/oauth/authorize with the configured client id and the "
        f"callback {url}/hub/oauth_callback"
    )


def test_the_private_hub_fails_when_its_client_id_is_not_the_one_in_its_secrets(
    deployable: Deployable, age_env: AgeKey, capsys: pytest.CaptureFixture[str]
) -> None:
    write_secrets(deployable.repo, "tess-private", "staging",
                  plaintext_secrets("tess-private", secrets.token_hex(32)).replace(
                      PRIVATE_CLIENT_ID, "tess-client-rotated"),
                  age=[age_env.recipient])

    assert deploy(deployable, "tess-private", "staging") == 1

    out, _ = capsys.readouterr()
    url = deployable.hubs["tess-private"].url
    assert out.splitlines()[-1].endswith(
        f"health check failed: {url}/hub/api/ answers, but login: /hub/oauth_login sends users "
        "to https://github.com/login/oauth/authorize with a client_id that is not the "
        "configured one"
    )
