"""Amazon EFS through boto3: do the home directories a hub mounts exist and can be mounted?

`homeStorage` becomes a PersistentVolume `volumeHandle: <fs-id>::<fsap-id>`
(hub/templates/home-storage.yaml). Kubernetes binds it without asking EFS, so
a wrong id deploys fine and then every user pod hangs mounting its home: the
deploy asks EFS first. Read-only: DescribeFileSystems, DescribeMountTargets,
DescribeAccessPoints (infra/ci.tf grants them to the CI roles). AWS_* and
AWS_ENDPOINT_URL configure it, as boto3 reads them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from bot import aws
from bot.errors import HubbotError, Location
from bot.yamlfile import Path_

if TYPE_CHECKING:
    from bot.values import HubValues

FILE_SYSTEM: Path_ = ("homeStorage", "efsFileSystemId")
ACCESS_POINT: Path_ = ("homeStorage", "efsAccessPointId")
AVAILABLE = "available"
T = TypeVar("T")


class EfsClient(Protocol):
    """The calls made here (the project's boto3 stubs do not cover EFS)."""

    def describe_file_systems(self, *, FileSystemId: str) -> dict[str, Any]: ...

    def describe_mount_targets(self, **kwargs: str) -> dict[str, Any]: ...

    def describe_access_points(self, *, AccessPointId: str) -> dict[str, Any]: ...


@dataclass(frozen=True)
class EfsHomes:
    """The EFS file system (and access point) one pair's home directories live on."""

    hub: str
    env: str
    region: str
    account_id: str
    file_system_id: str
    file_system_at: Location
    access_point_id: str | None
    access_point_at: Location | None

    def __str__(self) -> str:
        if self.access_point_id is None:
            return self.file_system_id
        return f"{self.file_system_id}::{self.access_point_id}"


def homes_of(values: HubValues) -> EfsHomes | None:
    """The EFS homes the pair mounts, from its merged values.

    None when there is nothing to ask EFS about: `homeStorage.enabled` is not
    true (the chart makes no volume), the cluster provider is not `aws`
    (a kubeconfig cluster names no AWS account or region to ask), or no file
    system is named (the values schema refuses that, and the chart will not
    render it: values that were never validated get no check, not a crash).
    """
    homes = values.document.get("homeStorage")
    if not isinstance(homes, dict) or homes.get("enabled") is not True:
        return None
    cluster = values.deployment.cluster
    if cluster.get("provider") != "aws":
        return None
    file_system = homes.get("efsFileSystemId")
    if not isinstance(file_system, str) or not file_system:
        return None
    access_point = homes.get("efsAccessPointId")
    has_access_point = isinstance(access_point, str) and bool(access_point)
    return EfsHomes(
        values.hub,
        values.env,
        str(cluster["aws"]["region"]),
        str(cluster["aws"]["account_id"]),
        file_system,
        values.location(FILE_SYSTEM),
        str(access_point) if has_access_point else None,
        values.location(ACCESS_POINT) if has_access_point else None,
    )


def check_pair(values: HubValues, say: Callable[[str], None]) -> EfsHomes | None:
    """Check the EFS homes the pair mounts, saying which first; None (and no AWS call)
    when it mounts none (see homes_of)."""
    homes = homes_of(values)
    if homes is not None:
        say(f"EFS home directories {homes}")
        check(homes)
    return homes


def check(homes: EfsHomes) -> None:
    """Raise a HubbotError unless the homes' file system, a mount target and the access
    point are all available in the cluster's region."""
    client = _client(homes)
    _check_file_system(client, homes)
    _check_mount_targets(client, homes)
    if homes.access_point_id is not None:
        _check_access_point(client, homes, homes.access_point_id)


def _client(homes: EfsHomes) -> EfsClient:
    # Imported here: a deploy without EFS homes never loads boto3 for it.
    import boto3

    client: EfsClient = boto3.session.Session(region_name=homes.region).client(
        "efs", config=aws.client_config()
    )
    return client


def _check_file_system(client: EfsClient, homes: EfsHomes) -> None:
    found = _call(
        homes,
        lambda: client.describe_file_systems(FileSystemId=homes.file_system_id),
        "FileSystemNotFound",
    )
    systems = found["FileSystems"] if found is not None else []
    if not systems:
        raise HubbotError(
            f"EFS file system {homes.file_system_id} does not exist in {homes.region} "
            f"(account {homes.account_id}): set homeStorage.efsFileSystemId to terraform's "
            "efs_file_system_id output",
            homes.file_system_at,
        )
    _require_available(
        f"EFS file system {homes.file_system_id}", systems[0], homes.file_system_at
    )


def _check_mount_targets(client: EfsClient, homes: EfsHomes) -> None:
    def states() -> list[str]:
        found: list[str] = []
        marker: dict[str, str] = {}
        while True:
            page = client.describe_mount_targets(FileSystemId=homes.file_system_id, **marker)
            found += [str(target.get("LifeCycleState")) for target in page["MountTargets"]]
            if not page.get("NextMarker"):
                return found
            marker = {"Marker": page["NextMarker"]}

    found = _call(homes, states) or []
    if AVAILABLE not in found:
        only = f" (only {', '.join(sorted(set(found)))} ones)" if found else ""
        raise HubbotError(
            f"EFS file system {homes.file_system_id} has no available mount target{only}: user "
            "pods cannot mount it; infra/storage.tf makes one per private subnet "
            "(terraform apply)",
            homes.file_system_at,
        )


def _check_access_point(client: EfsClient, homes: EfsHomes, access_point_id: str) -> None:
    found = _call(
        homes,
        lambda: client.describe_access_points(AccessPointId=access_point_id),
        "AccessPointNotFound",
    )
    fix = (
        "set homeStorage.efsAccessPointId to terraform's efs_access_point_ids output for "
        f"{homes.env}"
    )
    points = found["AccessPoints"] if found is not None else []
    if not points:
        raise HubbotError(
            f"EFS access point {access_point_id} does not exist in {homes.region} "
            f"(account {homes.account_id}): {fix}",
            homes.access_point_at,
        )
    owner = points[0].get("FileSystemId")
    if owner != homes.file_system_id:
        raise HubbotError(
            f"EFS access point {access_point_id} belongs to file system {owner}, not to "
            f"{homes.file_system_id} (homeStorage.efsFileSystemId at {homes.file_system_at}): "
            f"{fix}",
            homes.access_point_at,
        )
    _require_available(f"EFS access point {access_point_id}", points[0], homes.access_point_at)


def _require_available(what: str, described: dict[str, Any], at: Location | None) -> None:
    state = described.get("LifeCycleState")
    if state != AVAILABLE:
        raise HubbotError(
            f"{what} is {state}, not {AVAILABLE}: user pods cannot mount it; deploy once "
            "terraform has made it",
            at,
        )


def _call(homes: EfsHomes, request: Callable[[], T], missing: str | None = None) -> T | None:
    """The request's answer; None when EFS says `missing`; a HubbotError for any failure."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return request()
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code = error.get("Code", "")
        if missing is not None and code == missing:
            return None
        reason = f"{code}: {aws.one_line(error.get('Message') or str(exc))}"
        if code.startswith("AccessDenied"):
            reason += (
                "; the deploying role needs elasticfilesystem:DescribeFileSystems, "
                "DescribeAccessPoints and DescribeMountTargets (infra/ci.tf gives them to CI)"
            )
    except BotoCoreError as exc:  # no credentials among them
        reason = aws.reason(exc)
    raise HubbotError(
        f"cannot check the EFS home directories of {homes.hub}/{homes.env} in "
        f"{homes.region}: {reason}"
    )

