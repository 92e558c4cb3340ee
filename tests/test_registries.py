"""Registry existence checks against a real docker-registry and moto's ECR, no engine needed."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import boto3
import pytest
import requests

from bot.errors import HubbotError, Location
from bot.hubploy import load_deployment
from bot.registries import registry_for
from bot.registries.ecr import EcrRegistry
from bot.registries.oci import OciRegistry, parse_challenge
from bot.source import WorkTree
from tests.fixtures.aws import forget_aws_credentials
from tests.fixtures.containers import LocalRegistry
from tests.fixtures.processes import free_port

ACCOUNT = "123456789012"
ECR_HOST = f"{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com"
HERE = Location("deployments/hub/hubploy.yaml", 5)


def upload(
    registry: LocalRegistry,
    repository: str,
    tag: str,
    auth: tuple[str, str] | None = None,
    headers: dict[str, str] | None = None,
) -> str:
    """Put a minimal image (one config blob, no layers) through the distribution API.

    Returns the manifest digest computed here, independently of the code under test.
    """
    config = b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'
    config_digest = "sha256:" + hashlib.sha256(config).hexdigest()
    headers = headers or {}
    start = requests.post(
        f"{registry.url}/v2/{repository}/blobs/uploads/", auth=auth, headers=headers, timeout=10
    )
    assert start.status_code == 202, start.text
    location = start.headers["Location"]
    location = location if location.startswith("http") else registry.url + location
    separator = "&" if "?" in location else "?"
    put = requests.put(
        f"{location}{separator}digest={config_digest}",
        data=config,
        auth=auth,
        headers=headers,
        timeout=10,
    )
    assert put.status_code == 201, put.text
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": config_digest,
                "size": len(config),
            },
            "layers": [],
        }
    ).encode()
    response = requests.put(
        f"{registry.url}/v2/{repository}/manifests/{tag}",
        data=manifest,
        headers={**headers, "Content-Type": "application/vnd.oci.image.manifest.v1+json"},
        auth=auth,
        timeout=10,
    )
    assert response.status_code == 201, response.text
    return "sha256:" + hashlib.sha256(manifest).hexdigest()


def docker_config(directory: Path, host: str, username: str, password: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    auth = base64.b64encode(f"{username}:{password}".encode()).decode()
    (directory / "config.json").write_text(json.dumps({"auths": {host: {"auth": auth}}}))
    return directory


# --- OCI ---------------------------------------------------------------------------------


@pytest.mark.usefixtures("no_logins")
def test_oci_tag_missing_then_present_with_its_digest(oci_registry: LocalRegistry) -> None:
    registry = OciRegistry(insecure=True)
    name = oci_registry.image("tess/user-image")
    assert registry.exists(name, "tree-aaaaaaaaaaaa") is False
    assert registry.digest(name, "tree-aaaaaaaaaaaa") is None
    expected = upload(oci_registry, "tess/user-image", "tree-aaaaaaaaaaaa")
    assert registry.exists(name, "tree-aaaaaaaaaaaa") is True
    assert registry.digest(name, "tree-aaaaaaaaaaaa") == expected
    assert registry.exists(name, "tree-bbbbbbbbbbbb") is False


@pytest.mark.usefixtures("no_logins")
def test_oci_unreachable_registry_is_named() -> None:
    host = f"127.0.0.1:{free_port()}"
    with pytest.raises(HubbotError) as caught:
        OciRegistry(insecure=True).exists(f"{host}/tess/user-image", "tree-aaaaaaaaaaaa")
    assert str(caught.value) == (
        f"registry {host} is unreachable "
        f"(http://{host}/v2/tess/user-image/manifests/tree-aaaaaaaaaaaa): connection refused"
    )


@pytest.mark.usefixtures("no_logins")
def test_oci_auth_registry_without_a_login(auth_registry: LocalRegistry) -> None:
    with pytest.raises(HubbotError) as caught:
        OciRegistry(insecure=True).exists(auth_registry.image("tess/img"), "tree-aaaaaaaaaaaa")
    assert str(caught.value) == (
        f"registry {auth_registry.host} needs a login and none was found: log in with "
        f"`docker login {auth_registry.host}` or `podman login` (DOCKER_CONFIG or "
        "REGISTRY_AUTH_FILE select the file)"
    )


def test_oci_auth_registry_wrong_password_is_clear(
    auth_registry: LocalRegistry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = docker_config(tmp_path / "docker", auth_registry.host, "hubbot", "wrong-password")
    monkeypatch.setenv("DOCKER_CONFIG", str(config))
    monkeypatch.delenv("REGISTRY_AUTH_FILE", raising=False)
    with pytest.raises(HubbotError) as caught:
        OciRegistry(insecure=True).exists(auth_registry.image("tess/img"), "tree-aaaaaaaaaaaa")
    assert str(caught.value) == (
        f"registry {auth_registry.host} rejected the credentials of user 'hubbot' "
        f"(from {config / 'config.json'}): log in again"
    )
    assert "wrong-password" not in str(caught.value)


def test_oci_auth_registry_with_the_engines_login(
    auth_registry: LocalRegistry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert auth_registry.username
    assert auth_registry.password
    login = (auth_registry.username, auth_registry.password)
    expected = upload(auth_registry, "tess/img", "tree-aaaaaaaaaaaa", auth=login)
    # Podman's auth file has the same shape as Docker's config.json.
    config = docker_config(tmp_path / "podman", auth_registry.host, *login)
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(config / "config.json"))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "nothing-here"))
    registry = OciRegistry(insecure=True)
    assert registry.digest(auth_registry.image("tess/img"), "tree-aaaaaaaaaaaa") == expected
    assert registry.exists(auth_registry.image("tess/img"), "tree-bbbbbbbbbbbb") is False
    credentials = registry.credentials(auth_registry.image("tess/img"))
    assert credentials is not None
    assert (credentials.username, credentials.password) == login
    assert auth_registry.password not in repr(credentials)


def test_oci_bearer_token_flow(
    token_registry: LocalRegistry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert token_registry.username
    assert token_registry.password
    login = (token_registry.username, token_registry.password)
    challenge = requests.head(f"{token_registry.url}/v2/tess/img/manifests/x", timeout=10)
    realm = parse_challenge(challenge.headers["WWW-Authenticate"]).params["realm"]
    push_token = requests.get(
        realm,
        params={"service": "hubbot-tests", "scope": "repository:tess/img:pull,push"},
        auth=login,
        timeout=10,
    ).json()["token"]
    expected = upload(
        token_registry,
        "tess/img",
        "tree-aaaaaaaaaaaa",
        headers={"Authorization": f"Bearer {push_token}"},
    )
    name = token_registry.image("tess/img")

    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "none"))
    monkeypatch.delenv("REGISTRY_AUTH_FILE", raising=False)
    with pytest.raises(HubbotError) as caught:
        OciRegistry(insecure=True).exists(name, "tree-aaaaaaaaaaaa")
    assert str(caught.value).startswith(f"registry {token_registry.host} needs a login")

    wrong = docker_config(tmp_path / "wrong", token_registry.host, "hubbot", "not-it")
    monkeypatch.setenv("DOCKER_CONFIG", str(wrong))
    with pytest.raises(HubbotError) as caught:
        OciRegistry(insecure=True).exists(name, "tree-aaaaaaaaaaaa")
    assert str(caught.value) == (
        f"registry {token_registry.host} rejected the credentials of user 'hubbot' "
        f"(from {wrong / 'config.json'}): log in again"
    )

    right = docker_config(tmp_path / "right", token_registry.host, *login)
    monkeypatch.setenv("DOCKER_CONFIG", str(right))
    registry = OciRegistry(insecure=True)
    assert registry.digest(name, "tree-aaaaaaaaaaaa") == expected
    assert registry.exists(name, "tree-bbbbbbbbbbbb") is False


@pytest.mark.parametrize(
    ("header", "scheme", "params"),
    [
        (
            'Bearer realm="https://auth.example/token",service="registry.example",'
            'scope="repository:tess/img:pull"',
            "bearer",
            {
                "realm": "https://auth.example/token",
                "service": "registry.example",
                "scope": "repository:tess/img:pull",
            },
        ),
        ('Basic realm="hubbot-tests"', "basic", {"realm": "hubbot-tests"}),
        (
            "Bearer realm=https://ghcr.io/token, service=ghcr.io",
            "bearer",
            {"realm": "https://ghcr.io/token", "service": "ghcr.io"},
        ),
        ("", "", {}),
    ],
)
def test_parse_challenge(header: str, scheme: str, params: dict[str, str]) -> None:
    challenge = parse_challenge(header)
    assert (challenge.scheme, challenge.params) == (scheme, params)


# --- ECR (moto's server) -----------------------------------------------------------------


def ecr_client() -> object:
    return boto3.client("ecr", region_name="us-east-1")


def put_image(repository: str, tag: str) -> str:
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": {
                "mediaType": "application/vnd.docker.container.image.v1+json",
                "size": 2,
                "digest": "sha256:" + hashlib.sha256(b"{}").hexdigest(),
            },
            "layers": [],
        }
    )
    client = boto3.client("ecr", region_name="us-east-1")
    answer = client.put_image(repositoryName=repository, imageManifest=manifest, imageTag=tag)
    return str(answer["image"]["imageId"]["imageDigest"])


@pytest.mark.usefixtures("aws_env")
def test_ecr_repository_created_with_scan_on_push_immutable_kms() -> None:
    registry = EcrRegistry(ACCOUNT, "us-east-1", HERE)
    name = f"{ECR_HOST}/created-by-prepare"
    assert registry.exists(name, "tree-aaaaaaaaaaaa") is False  # no repository yet
    registry.prepare(name)
    registry.prepare(name)  # a second time leaves it as it is
    client = boto3.client("ecr", region_name="us-east-1")
    [repo] = client.describe_repositories(repositoryNames=["created-by-prepare"])["repositories"]
    assert repo["imageScanningConfiguration"] == {"scanOnPush": True}
    assert repo["imageTagMutability"] == "IMMUTABLE"
    assert repo["encryptionConfiguration"]["encryptionType"] == "KMS"


@pytest.mark.usefixtures("aws_env")
def test_ecr_existence_before_and_after_put_image() -> None:
    registry = EcrRegistry(ACCOUNT, "us-east-1", HERE)
    name = f"{ECR_HOST}/exists-check"
    registry.prepare(name)
    assert registry.exists(name, "tree-aaaaaaaaaaaa") is False
    digest = put_image("exists-check", "tree-aaaaaaaaaaaa")
    assert registry.exists(name, "tree-aaaaaaaaaaaa") is True
    assert registry.digest(name, "tree-aaaaaaaaaaaa") == digest
    assert registry.exists(name, "tree-bbbbbbbbbbbb") is False


@pytest.mark.usefixtures("aws_env")
def test_ecr_authorization_token_is_decoded() -> None:
    registry = EcrRegistry(ACCOUNT, "us-east-1", HERE)
    token = boto3.client("ecr", region_name="us-east-1").get_authorization_token(
        registryIds=[ACCOUNT]
    )["authorizationData"][0]["authorizationToken"]
    username, password = base64.b64decode(token).decode().split(":", 1)
    credentials = registry.credentials(f"{ECR_HOST}/anything")
    assert (credentials.registry, credentials.username, credentials.password) == (
        ECR_HOST,
        username,
        password,
    )
    assert credentials.username == "AWS"
    assert password not in repr(credentials)


@pytest.mark.usefixtures("aws_env")
@pytest.mark.parametrize(("fail_on", "blocked"), [("CRITICAL", False), ("HIGH", True)])
def test_ecr_scan_threshold(fail_on: str, blocked: bool) -> None:
    registry = EcrRegistry(ACCOUNT, "us-east-1", HERE)
    repository = f"scanned-{fail_on.lower()}"
    registry.prepare(f"{ECR_HOST}/{repository}")
    put_image(repository, "tree-aaaaaaaaaaaa")
    # moto scans on request (its scan reports one HIGH finding); ECR scans on push by itself.
    boto3.client("ecr", region_name="us-east-1").start_image_scan(
        repositoryName=repository, imageId={"imageTag": "tree-aaaaaaaaaaaa"}
    )
    name = f"{ECR_HOST}/{repository}"
    if not blocked:
        registry.check_scan(name, "tree-aaaaaaaaaaaa", fail_on)
        return
    with pytest.raises(HubbotError) as caught:
        registry.check_scan(name, "tree-aaaaaaaaaaaa", fail_on)
    assert str(caught.value) == (
        f"{HERE}: ECR scan of {name}:tree-aaaaaaaaaaaa found 1 HIGH (scan.fail_on is HIGH)"
    )


@pytest.mark.usefixtures("aws_env")
def test_ecr_image_outside_the_configured_registry() -> None:
    with pytest.raises(HubbotError) as caught:
        EcrRegistry(ACCOUNT, "us-east-1", HERE).exists("ghcr.io/tess/img", "tree-aaaaaaaaaaaa")
    assert str(caught.value) == (
        f"{HERE}: image ghcr.io/tess/img is not in the ECR registry {ECR_HOST} that "
        "registry.aws names (account_id and region)"
    )


def test_ecr_unreachable_names_the_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    with pytest.raises(HubbotError) as caught:
        EcrRegistry(ACCOUNT, "us-east-1", HERE).exists(f"{ECR_HOST}/x-image", "tree-a")
    assert str(caught.value).startswith(
        f"{HERE}: ECR registry {ECR_HOST} is unreachable (describe_images): "
    )



@pytest.mark.usefixtures("aws_env")
def test_ecr_without_credentials_says_how_to_get_them(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    forget_aws_credentials(monkeypatch, tmp_path)
    with pytest.raises(HubbotError) as caught:
        EcrRegistry(ACCOUNT, "us-east-1", HERE).exists(f"{ECR_HOST}/x-image", "tree-a")
    # The same words as for EKS and EFS (bot/aws.py).
    assert str(caught.value) == (
        f"{HERE}: cannot call describe_images on the ECR registry {ECR_HOST}: no AWS "
        "credentials: set AWS_ROLE_ARN with OIDC in CI, or AWS_PROFILE"
    )

def test_registry_for_picks_the_provider(hub_repo: Path) -> None:
    source = WorkTree(hub_repo)
    registry = registry_for(load_deployment(source, "tess-private"))
    assert isinstance(registry, EcrRegistry)
    assert registry.host == ECR_HOST
    hubploy = hub_repo / "deployments/tess-public/hubploy.yaml"
    hubploy.write_text(
        hubploy.read_text().replace(
            'provider: aws\n  aws: {account_id: "123456789012", region: us-east-1}\ncluster',
            "provider: oci\n  oci: {insecure: true}\ncluster",
        )
    )
    oci = registry_for(load_deployment(WorkTree(hub_repo), "tess-public"))
    assert isinstance(oci, OciRegistry)
    assert oci.scheme == "http"
