"""Cluster credentials: EKS through moto's real server, and a sops-encrypted kubeconfig."""

from __future__ import annotations

import base64
import os
import stat
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import boto3
import pytest
from botocore.auth import SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from ruamel.yaml import YAML

from bot import sops
from bot.clusters import KubeConfig, kubeconfig_file, provider_for
from bot.clusters.eks import EksCluster
from bot.clusters.kubeconfig import credential_leaves
from bot.errors import HubbotError, Location
from bot.hubploy import load_deployment
from bot.redact import Redactor
from bot.source import WorkTree
from tests.fixtures.aws import forget_aws_credentials
from tests.fixtures.helm_standin import LAB_KUBECONFIG, LAB_TOKEN, use_kubeconfig_provider
from tests.fixtures.processes import free_port
from tests.fixtures.secrets import AgeKey

WHERE = Location("deployments/tess-public/hubploy.yaml", 11)


def make_cluster(name: str) -> dict[str, Any]:
    eks = boto3.client("eks", region_name="us-east-1")
    cluster: dict[str, Any] = eks.create_cluster(
        name=name,
        roleArn="arn:aws:iam::123456789012:role/eks-cluster",
        resourcesVpcConfig={"subnetIds": []},
    )["cluster"]
    return cluster


def decode_token(token: str) -> str:
    assert token.startswith("k8s-aws-v1.")
    encoded = token.removeprefix("k8s-aws-v1.")
    assert "=" not in encoded
    return base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode()


def signed_for(url: str, cluster: str) -> bool:
    """Recompute the presigned URL's SigV4 signature with `cluster` as the signed header."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query)
    params = dict(query)
    unsigned = [(key, value) for key, value in query if key != "X-Amz-Signature"]
    request = AWSRequest("GET", urlunsplit(parts._replace(query=urlencode(unsigned))))
    request.headers["x-k8s-aws-id"] = cluster
    request.context["timestamp"] = params["X-Amz-Date"]
    auth = SigV4QueryAuth(Credentials("testing", "testing"), "sts", "us-east-1", expires=60)
    string_to_sign = auth.string_to_sign(request, auth.canonical_request(request))
    return bool(auth.signature(string_to_sign, request) == params["X-Amz-Signature"])


def test_eks_kubeconfig_has_endpoint_ca_and_an_sts_token(aws_env: str) -> None:
    name = f"tess-{uuid.uuid4().hex[:8]}"
    created = make_cluster(name)
    config = EksCluster(name, "us-east-1", "123456789012", WHERE).kubeconfig()

    (cluster,) = config.document["clusters"]
    assert cluster == {
        "name": name,
        "cluster": {
            "server": created["endpoint"],
            "certificate-authority-data": created["certificateAuthority"]["data"],
        },
    }
    assert config.document["current-context"] == name
    (user,) = config.document["users"]
    token = user["user"]["token"]
    assert config.secrets == (token,)

    url = decode_token(token)
    parts = urlsplit(url)
    params = dict(parse_qsl(parts.query))
    assert f"{parts.scheme}://{parts.netloc}" == aws_env
    assert params["Action"] == "GetCallerIdentity"
    assert params["Version"] == "2011-06-15"
    assert params["X-Amz-Expires"] == "60"
    assert params["X-Amz-SignedHeaders"] == "host;x-k8s-aws-id"
    assert "/us-east-1/sts/aws4_request" in params["X-Amz-Credential"]
    assert signed_for(url, name)
    assert not signed_for(url, "another-cluster")


def test_a_missing_eks_cluster_names_itself(aws_env: str) -> None:
    with pytest.raises(HubbotError) as raised:
        EksCluster("no-such-cluster", "us-east-1", "123456789012", WHERE).kubeconfig()
    assert str(raised.value) == (
        "deployments/tess-public/hubploy.yaml:11: EKS cluster 'no-such-cluster' does not exist "
        "in us-east-1 (account 123456789012): check cluster.aws"
    )


def test_an_unreachable_aws_endpoint_is_one_clear_error(
    aws_env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("AWS_ENDPOINT_URL", dead)
    with pytest.raises(HubbotError) as raised:
        EksCluster("tess", "us-east-1", "123456789012", WHERE).kubeconfig()
    assert str(raised.value) == (
        "deployments/tess-public/hubploy.yaml:11: cannot get credentials for EKS cluster 'tess' "
        f'in us-east-1: Could not connect to the endpoint URL: "{dead}/clusters/tess"'
    )


def test_missing_aws_credentials_say_how_to_get_them(
    aws_env: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    forget_aws_credentials(monkeypatch, tmp_path)
    with pytest.raises(HubbotError) as raised:
        EksCluster("tess", "us-east-1", "123456789012", WHERE).kubeconfig()
    assert str(raised.value) == (
        "deployments/tess-public/hubploy.yaml:11: cannot get credentials for EKS cluster 'tess' "
        "in us-east-1: no AWS credentials: set AWS_ROLE_ARN with OIDC in CI, or AWS_PROFILE"
    )


def test_the_kubeconfig_file_is_a_private_memory_file_with_no_name_on_disk() -> None:
    config = KubeConfig({"apiVersion": "v1", "users": [{"user": {"token": "t0ken-x"}}]}, ())
    with kubeconfig_file(config) as file:
        assert file.path == f"/dev/fd/{file.fd}"
        assert os.readlink(f"/proc/self/fd/{file.fd}").startswith("/memfd:")
        assert stat.S_IMODE(os.stat(file.path).st_mode) == 0o600
        assert YAML(typ="safe").load(Path(file.path).read_text()) == config.document
    with pytest.raises(OSError, match="Bad file descriptor"):
        os.fstat(file.fd)


def test_only_the_kubeconfig_credentials_are_registered_not_its_structure(
    hub_repo: Path, age_env: AgeKey
) -> None:
    use_kubeconfig_provider(hub_repo, "tess-public", age_env.recipient)
    source = WorkTree(hub_repo)
    redactor = Redactor()
    warnings: list[str] = []
    decrypt = sops.decryptor(
        redactor, cwd=hub_repo, warn=warnings.append, secret_leaves=credential_leaves
    )

    config = provider_for(source, load_deployment(source, "tess-public"), decrypt).kubeconfig()

    assert config.secrets == (LAB_TOKEN,)
    assert warnings == []
    structure = "apiVersion: v1, kind: Config, cluster lab at https://lab.example:6443, deployer"
    assert redactor.redact(structure) == structure
    assert redactor.redact(f"token {LAB_TOKEN}") == "token <redacted>"


def test_credential_leaves_are_tokens_keys_passwords_and_exec_environment() -> None:
    document = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "c", "cluster": {"server": "https://c", "certificate-authority-data": "Q0E="}}
        ],
        "users": [
            {"name": "a", "user": {"client-key-data": "S0VZ", "client-certificate-data": "Q0U="}},
            {"name": "b", "user": {"username": "admin", "password": "hunter22"}},
            {"name": "c", "user": {"exec": {
                "command": "aws", "args": ["eks", "get-token"],
                "env": [{"name": "AWS_SECRET_ACCESS_KEY", "value": "abcdEFGH1234"}],
            }}},
            {"name": "d", "user": {"auth-provider": {"name": "oidc", "config": {
                "client-id": "kubernetes", "client-secret": "oidc-secret",
                "id-token": "eyJ.id", "refresh-token": "refresh-1",
            }}}},
        ],
    }
    assert sorted(value for _, value in credential_leaves(document)) == sorted([
        "S0VZ", "Q0U=", "hunter22", "abcdEFGH1234", "oidc-secret", "eyJ.id", "refresh-1",
    ])
    assert ("users", 1, "user", "password") in dict(credential_leaves(document))


def test_the_kubeconfig_provider_decrypts_the_file_named_in_hubploy(
    hub_repo: Path, age_env: AgeKey
) -> None:
    use_kubeconfig_provider(hub_repo, "tess-public", age_env.recipient)
    source = WorkTree(hub_repo)
    redactor = Redactor()
    decrypt = sops.decryptor(redactor, cwd=hub_repo)

    config = provider_for(source, load_deployment(source, "tess-public"), decrypt).kubeconfig()

    assert config.document == YAML(typ="safe").load(LAB_KUBECONFIG)
    assert config.secrets == (LAB_TOKEN,)
    assert redactor.redact(f"token {LAB_TOKEN}") == "token <redacted>"
    with pytest.raises(HubbotError) as raised:
        provider_for(source, load_deployment(source, "tess-public"), None)
    assert str(raised.value) == (
        "deployments/tess-public/hubploy.yaml:11: the kubeconfig cluster provider needs sops "
        "keys to decrypt"
    )
