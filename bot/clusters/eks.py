"""EKS credentials through boto3: endpoint and CA from describe_cluster, and a bearer token.

The token is what aws-iam-authenticator makes: a presigned STS GetCallerIdentity
URL that also signs the header `x-k8s-aws-id: <cluster>`, base64url-encoded
without padding behind `k8s-aws-v1.`. EKS accepts it for about 15 minutes.
No aws CLI is involved.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from bot import aws
from bot.clusters import KubeConfig, single_cluster_config
from bot.errors import HubbotError, Location

TOKEN_PREFIX = "k8s-aws-v1."  # noqa: S105 (a format prefix, not a credential)
CLUSTER_ID_HEADER = "x-k8s-aws-id"
PRESIGN_SECONDS = 60


@dataclass(frozen=True)
class EksCluster:
    name: str
    region: str
    account_id: str
    location: Location  # the hubploy.yaml line that chose this cluster

    def kubeconfig(self) -> KubeConfig:
        session = boto3.session.Session(region_name=self.region)
        endpoint, ca_data = self.describe(session)
        token = self.token(session)
        document = single_cluster_config(self.name, endpoint, ca_data, {"token": token})
        return KubeConfig(document, (token,))

    def describe(self, session: boto3.session.Session) -> tuple[str, str]:
        """The cluster's API endpoint and base64 CA bundle."""
        eks = session.client("eks", config=aws.client_config())
        try:
            cluster = eks.describe_cluster(name=self.name)["cluster"]
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ResourceNotFoundException":
                raise HubbotError(
                    f"EKS cluster {self.name!r} does not exist in {self.region} "
                    f"(account {self.account_id}): check cluster.aws",
                    self.location,
                ) from None
            raise self._failure(exc) from None
        except BotoCoreError as exc:
            raise self._failure(exc) from None
        endpoint = cluster.get("endpoint")
        ca_data = cluster.get("certificateAuthority", {}).get("data")
        if not endpoint or not ca_data:
            status = cluster.get("status", "unknown")
            raise HubbotError(
                f"EKS cluster {self.name!r} has no API endpoint or CA yet (status {status}): "
                "wait until it is ACTIVE",
                self.location,
            )
        return endpoint, ca_data

    def token(self, session: boto3.session.Session) -> str:
        sts = session.client("sts", config=aws.client_config())
        cluster = self.name

        def add_cluster_header(request: Any, **_: Any) -> None:
            request.headers[CLUSTER_ID_HEADER] = cluster

        # Registered on this client only, so the header is signed into this URL alone.
        sts.meta.events.register("before-sign.sts.GetCallerIdentity", add_cluster_header)
        try:
            url = sts.generate_presigned_url(
                "get_caller_identity", ExpiresIn=PRESIGN_SECONDS, HttpMethod="GET"
            )
        except NoCredentialsError:
            raise self._failure(NoCredentialsError()) from None
        encoded = base64.urlsafe_b64encode(url.encode()).decode().rstrip("=")
        return TOKEN_PREFIX + encoded

    def _failure(self, exc: Exception) -> HubbotError:
        return HubbotError(
            f"cannot get credentials for EKS cluster {self.name!r} in {self.region}: "
            f"{aws.reason(exc)}",
            self.location,
        )
