"""The EFS home directories check (bot/efs.py), against moto's real EFS API server."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from bot.efs import EfsHomes, check, check_pair, homes_of
from bot.errors import HubbotError
from bot.source import WorkTree
from bot.values import build
from tests.fixtures.aws import forget_aws_credentials, make_efs_homes, use_efs_homes
from tests.fixtures.processes import free_port
from tests.fixtures.repos import PROJECT, replace_in

COMMON = "deployments/tess-private/config/common.yaml"
STAGING = "deployments/tess-private/config/staging.yaml"


def private_homes(repo: Path) -> EfsHomes:
    homes = homes_of(build(WorkTree(repo), "tess-private", "staging"))
    assert homes is not None
    return homes


def check_fails(repo: Path) -> str:
    with pytest.raises(HubbotError) as raised:
        check(private_homes(repo))
    return str(raised.value)


def test_the_homes_terraform_made_pass(aws_env: str, hub_repo: Path) -> None:
    made = make_efs_homes()
    use_efs_homes(hub_repo, made)
    said: list[str] = []

    homes = check_pair(build(WorkTree(hub_repo), "tess-private", "staging"), said.append)

    assert homes is not None
    assert (homes.file_system_id, homes.access_point_id) == (
        made.file_system_id, made.access_point_ids["staging"],
    )
    assert str(homes.file_system_at) == f"{COMMON}:3"
    assert str(homes.access_point_at) == f"{STAGING}:2"
    assert said == [
        f"EFS home directories {made.file_system_id}::{made.access_point_ids['staging']}"
    ]


def test_a_file_system_that_does_not_exist_names_terraforms_output(
    aws_env: str, hub_repo: Path
) -> None:
    use_efs_homes(hub_repo, make_efs_homes())
    replace_in(hub_repo, COMMON, "efsFileSystemId: fs-", "efsFileSystemId: fs-0000")

    message = check_fails(hub_repo)

    missing = private_homes(hub_repo).file_system_id
    assert message == (
        f"{COMMON}:3: EFS file system {missing} does not exist in us-east-1 (account "
        "123456789012): set homeStorage.efsFileSystemId to terraform's efs_file_system_id output"
    )


def test_a_file_system_without_an_available_mount_target_cannot_be_mounted(
    aws_env: str, hub_repo: Path
) -> None:
    made = make_efs_homes(mount_target=False)
    use_efs_homes(hub_repo, made)

    assert check_fails(hub_repo) == (
        f"{COMMON}:3: EFS file system {made.file_system_id} has no available mount target: user "
        "pods cannot mount it; infra/storage.tf makes one per private subnet (terraform apply)"
    )


def test_an_access_point_that_does_not_exist_names_the_environments_output(
    aws_env: str, hub_repo: Path
) -> None:
    made = make_efs_homes()
    efs = boto3.client("efs", region_name="us-east-1")
    efs.delete_access_point(AccessPointId=made.access_point_ids["staging"])
    use_efs_homes(hub_repo, made)

    assert check_fails(hub_repo) == (
        f"{STAGING}:2: EFS access point {made.access_point_ids['staging']} does not exist in "
        "us-east-1 (account 123456789012): set homeStorage.efsAccessPointId to terraform's "
        "efs_access_point_ids output for staging"
    )


def test_an_access_point_of_another_file_system_names_both(
    aws_env: str, hub_repo: Path
) -> None:
    ours, other = make_efs_homes(), make_efs_homes()
    use_efs_homes(hub_repo, ours)
    stray = other.access_point_ids["staging"]
    replace_in(hub_repo, STAGING, ours.access_point_ids["staging"], stray)

    assert check_fails(hub_repo) == (
        f"{STAGING}:2: EFS access point {stray} belongs to file system {other.file_system_id}, "
        f"not to {ours.file_system_id} (homeStorage.efsFileSystemId at {COMMON}:3): set "
        "homeStorage.efsAccessPointId to terraform's efs_access_point_ids output for staging"
    )


@pytest.mark.parametrize(
    "why",
    [
        "homeStorage disabled",
        "not an aws cluster",
        # Values the schema refuses (tests/test_validate.py), should any reach the check.
        "no file system id",
    ],
)
def test_a_pair_without_efs_homes_asks_aws_nothing(
    aws_env: str, hub_repo: Path, monkeypatch: pytest.MonkeyPatch, why: str
) -> None:
    if why == "homeStorage disabled":
        replace_in(hub_repo, COMMON, "enabled: true", "enabled: false")
    elif why == "no file system id":
        replace_in(hub_repo, COMMON, "  efsFileSystemId: fs-0123456789abcdef0\n", "")
    else:
        replace_in(
            hub_repo, "deployments/tess-private/hubploy.yaml",
            'provider: aws\n  aws: {account_id: "123456789012", region: us-east-1, cluster: tess}',
            "provider: kubeconfig\n  kubeconfig: {file: cluster/kubeconfig.yaml}",
        )
    # Nothing listens here: any AWS call would fail the check.
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    said: list[str] = []

    assert check_pair(build(WorkTree(hub_repo), "tess-private", "staging"), said.append) is None
    assert said == []


def test_an_unreachable_endpoint_is_one_line_quickly(
    aws_env: str, hub_repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("AWS_ENDPOINT_URL", dead)
    start = time.monotonic()

    message = check_fails(hub_repo)

    assert time.monotonic() - start < 10
    assert message == (
        "cannot check the EFS home directories of tess-private/staging in us-east-1: Could not "
        f'connect to the endpoint URL: "{dead}/2015-02-01/file-systems?FileSystemId='
        'fs-0123456789abcdef0"'
    )


@pytest.fixture
def hanging_up() -> Iterator[tuple[str, list[int]]]:
    """An endpoint that accepts each connection and closes it unanswered; the connections
    it took are counted in the list."""
    accepted: list[int] = []
    server = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:  # shut down: the test is over
                return
            accepted.append(1)
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}", accepted
    finally:
        server.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept(); close() alone does not
        server.close()
        thread.join(timeout=5)


def test_an_endpoint_that_never_answers_is_given_up_on_after_two_retries(
    aws_env: str, hub_repo: Path, monkeypatch: pytest.MonkeyPatch,
    hanging_up: tuple[str, list[int]],
) -> None:
    url, accepted = hanging_up
    monkeypatch.setenv("AWS_ENDPOINT_URL", url)

    message = check_fails(hub_repo)

    # Few retries, as for EKS: a deploy reports a dead endpoint instead of waiting on it.
    # (botocore's legacy retry mode counts max_attempts as retries: one try and two more.)
    assert len(accepted) == 3
    assert message.startswith(
        "cannot check the EFS home directories of tess-private/staging in us-east-1: "
    )
    assert "\n" not in message


def test_missing_aws_credentials_say_how_to_get_them(
    aws_env: str, hub_repo: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    forget_aws_credentials(monkeypatch, tmp_path)

    assert check_fails(hub_repo) == (
        "cannot check the EFS home directories of tess-private/staging in us-east-1: no AWS "
        "credentials: set AWS_ROLE_ARN with OIDC in CI, or AWS_PROFILE"
    )


def test_importing_the_deploy_loads_no_aws_library() -> None:
    # bot/deploy.py imports bot/efs.py, which imports bot/aws.py: a deploy without EFS
    # homes must not pay for boto3.
    shown = subprocess.run(
        [sys.executable, "-c", "import sys, bot.deploy; "
         "print(sorted(m for m in sys.modules if m.split('.')[0] in ('boto3', 'botocore')))"],
        cwd=PROJECT, capture_output=True, text=True, check=True,
    )
    assert shown.stdout.strip() == "[]"
