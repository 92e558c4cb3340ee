"""Amazon ECR through boto3 (AWS_* and AWS_ENDPOINT_URL configure it, as boto3 reads them)."""

from __future__ import annotations

import base64
import time
from typing import TYPE_CHECKING, Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from bot import aws
from bot.errors import HubbotError, Location
from bot.registries import Credentials, split_name

if TYPE_CHECKING:
    from mypy_boto3_ecr import ECRClient

# ECR's severities, most severe first; a threshold fails on itself and anything above.
SEVERITIES = ("CRITICAL", "HIGH", "MEDIUM", "LOW", "INFORMATIONAL", "UNDEFINED")
SCAN_TIMEOUT_SECONDS = 600
SCAN_POLL_SECONDS = 5


class EcrRegistry:
    def __init__(self, account_id: str, region: str, location: Location) -> None:
        self.account_id = account_id
        self.region = region
        self.location = location
        self.host = f"{account_id}.dkr.ecr.{region}.amazonaws.com"
        self._client: ECRClient | None = None

    @property
    def client(self) -> ECRClient:
        if self._client is None:
            # A session of its own, as EKS and EFS have: boto3's default session keeps
            # the credentials it first found for the whole process.
            self._client = boto3.session.Session(region_name=self.region).client(
                "ecr", config=aws.client_config()
            )
        return self._client

    def exists(self, name: str, tag: str) -> bool:
        return self.digest(name, tag) is not None

    def digest(self, name: str, tag: str) -> str | None:
        repository = self._repository(name)
        try:
            found = self._call(
                "describe_images",
                registryId=self.account_id,
                repositoryName=repository,
                imageIds=[{"imageTag": tag}],
            )
        except _Missing:
            return None
        details = found["imageDetails"]
        return str(details[0]["imageDigest"]) if details else None

    def credentials(self, name: str) -> Credentials:
        self._repository(name)
        data = self._call("get_authorization_token", registryIds=[self.account_id])
        token = data["authorizationData"][0]["authorizationToken"]
        username, _, password = base64.b64decode(token).decode().partition(":")
        return Credentials(self.host, username, password, "ECR get_authorization_token")

    def prepare(self, name: str) -> None:
        """Create the repository if missing: scan on push, immutable tags, KMS encryption."""
        repository = self._repository(name)
        try:
            self._call(
                "describe_repositories",
                registryId=self.account_id,
                repositoryNames=[repository],
            )
            return
        except _Missing:
            pass
        self._call(
            "create_repository",
            registryId=self.account_id,
            repositoryName=repository,
            imageTagMutability="IMMUTABLE",
            imageScanningConfiguration={"scanOnPush": True},
            encryptionConfiguration={"encryptionType": "KMS"},
        )

    def check_scan(self, name: str, tag: str, fail_on: str) -> None:
        """Wait for the scan-on-push result; fail when findings reach `fail_on`."""
        repository = self._repository(name)
        deadline = time.monotonic() + SCAN_TIMEOUT_SECONDS
        while True:
            try:
                result = self._call(
                    "describe_image_scan_findings",
                    missing=("ScanNotFoundException",),
                    registryId=self.account_id,
                    repositoryName=repository,
                    imageId={"imageTag": tag},
                )
            except _Missing:  # the scan has not started yet
                result = {}
            status = result.get("imageScanStatus", {}).get("status")
            if status in ("COMPLETE", "ACTIVE"):
                break
            if status == "FAILED":
                reason = result["imageScanStatus"].get("description", "no reason given")
                raise HubbotError(f"ECR scan of {name}:{tag} failed: {reason}", self.location)
            if time.monotonic() > deadline:
                raise HubbotError(
                    f"ECR scan of {name}:{tag} did not finish within {SCAN_TIMEOUT_SECONDS}s",
                    self.location,
                )
            time.sleep(SCAN_POLL_SECONDS)
        counts = result.get("imageScanFindings", {}).get("findingSeverityCounts", {})
        blocking = {
            severity: counts[severity]
            for severity in SEVERITIES[: SEVERITIES.index(fail_on) + 1]
            if counts.get(severity)
        }
        if blocking:
            found = ", ".join(f"{count} {severity}" for severity, count in blocking.items())
            raise HubbotError(
                f"ECR scan of {name}:{tag} found {found} (scan.fail_on is {fail_on})",
                self.location,
            )

    def _repository(self, name: str) -> str:
        host, repository = split_name(name)
        if host != self.host:
            raise HubbotError(
                f"image {name} is not in the ECR registry {self.host} that "
                "registry.aws names (account_id and region)",
                self.location,
            )
        return repository

    def _call(
        self,
        operation: str,
        missing: tuple[str, ...] = ("RepositoryNotFoundException", "ImageNotFoundException"),
        **kwargs: Any,
    ) -> dict[str, Any]:
        """Call ECR; raise _Missing for the `missing` error codes, HubbotError for others."""
        try:
            result: dict[str, Any] = getattr(self.client, operation)(**kwargs)
            return result
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in missing:
                raise _Missing from None
            message = aws.one_line(exc.response.get("Error", {}).get("Message") or code)
            raise HubbotError(
                f"ECR registry {self.host} refused {operation}: {code}: {message}", self.location
            ) from None
        except NoCredentialsError as exc:
            raise HubbotError(
                f"cannot call {operation} on the ECR registry {self.host}: {aws.reason(exc)}",
                self.location,
            ) from None
        except BotoCoreError as exc:
            raise HubbotError(
                f"ECR registry {self.host} is unreachable ({operation}): {aws.reason(exc)}",
                self.location,
            ) from None


class _Missing(Exception):
    """The repository or image does not exist."""
