"""Freight: exactly what one deploy shipped, recorded as a GitHub deployment's payload.

Freight names the images by tag and registry digest, the chart by name,
version, Chart.lock digest and tree, and fingerprints the config: the common
layers (hub/values.yaml and the hub's common.yaml, which staging and prod
share) by plain hash, and the whole merged document by a keyed hash whose key
is derived from the decrypted secrets, so the record reveals nothing about
them. A prod deploy is allowed only with freight a successful staging deploy
recorded: same images at the same digests, same chart, same common config.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from bot import github
from bot.errors import HubbotError
from bot.hubploy import Deployment
from bot.registries import registry_for
from bot.source import Source
from bot.values import CHART_DIR, HubValues, ImageRef
from bot.yamlfile import load_yaml

FORMAT = 1
PROD = "prod"
STAGING = "staging"
# How many successful staging deployments to search for one of the same content.
HISTORY = 30

# The registry digest of an image tag, or None when the tag is absent.
DigestOf = Callable[[Deployment, ImageRef], str | None]


def registry_digest(deployment: Deployment, image: ImageRef) -> str | None:
    return registry_for(deployment).digest(image.name, image.tag)


@dataclass(frozen=True)
class ImageFreight:
    name: str
    tag: str
    digest: str

    @property
    def reference(self) -> str:
        return f"{self.name}:{self.tag}@{self.digest}"


@dataclass(frozen=True)
class ChartFreight:
    name: str
    version: str
    lock_digest: str
    tree: str


@dataclass(frozen=True)
class Freight:
    hub: str
    env: str
    images: tuple[ImageFreight, ...]
    chart: ChartFreight
    common: str  # fingerprint of the layers staging and prod share
    values: str  # keyed fingerprint of the whole merged document

    def payload(self) -> dict[str, Any]:
        return {
            "hubbot_freight": FORMAT,
            "hub": self.hub,
            "env": self.env,
            "images": [
                {"name": i.name, "tag": i.tag, "digest": i.digest, "reference": i.reference}
                for i in self.images
            ],
            "chart": {
                "name": self.chart.name,
                "version": self.chart.version,
                "lock_digest": self.chart.lock_digest,
                "tree": self.chart.tree,
            },
            "fingerprints": {"common": self.common, "values": self.values},
        }


def environment_name(hub: str, env: str) -> str:
    """The GitHub environment a pair's deployments are recorded under."""
    return f"{hub}-{env}"


def collect(source: Source, values: HubValues, digest_of: DigestOf = registry_digest) -> Freight:
    """The freight of a decrypted pair; every image must already be in its registry."""
    images = []
    for image in values.images:
        digest = digest_of(values.deployment, image)
        if digest is None:
            raise HubbotError(
                f"image {image.reference} is not in the registry: build and push it first "
                "(`hubbot build --push`, or a push to staging)",
                image.location,
            )
        images.append(ImageFreight(image.name, image.tag, digest))
    return Freight(
        values.hub,
        values.env,
        tuple(images),
        chart_freight(source),
        common_fingerprint(values),
        values_fingerprint(values),
    )


def chart_freight(source: Source) -> ChartFreight:
    chart = _yaml_mapping(source, f"{CHART_DIR}/Chart.yaml")
    lock = _yaml_mapping(source, f"{CHART_DIR}/Chart.lock")
    return ChartFreight(
        str(chart.get("name", "")),
        str(chart.get("version", "")),
        str(lock.get("digest", "none")),
        source.tree_hash(CHART_DIR) or "none",
    )


def _yaml_mapping(source: Source, file: str) -> dict[str, Any]:
    text = source.read(file)
    data = load_yaml(file, text).data if text is not None else None
    return data if isinstance(data, dict) else {}


def _canonical(data: Any) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), default=str).encode()


def common_fingerprint(values: HubValues) -> str:
    """The chart's values and the hub's common.yaml: what staging and prod must share."""
    shared = [layer.data for layer in values.layers[:2]]
    return "sha256:" + hashlib.sha256(_canonical(shared)).hexdigest()


def values_fingerprint(values: HubValues) -> str:
    """A keyed hash of the merged document; the key comes from the decrypted secrets.

    Without the secrets no one can compute it, so it cannot be used to guess them.
    """
    if not values.decrypted:
        raise HubbotError("the values fingerprint needs the decrypted secrets")
    secrets_layer = next(layer for layer in values.layers if layer.secret)
    key = hashlib.sha256(b"hubbot values fingerprint\0" + _canonical(secrets_layer.data)).digest()
    return "hmac-sha256:" + hmac.new(key, _canonical(values.document), "sha256").hexdigest()


# --- prod: only what staging ran --------------------------------------------------------


@dataclass(frozen=True)
class StagingRecord:
    deployment_id: int
    sha: str
    payload: dict[str, Any]


def successful_staging(client: github.Client, hub: str) -> Iterator[StagingRecord]:
    """Staging deployments of `hub` whose latest status is success, newest first."""
    deployments = github.successful_deployments(client, environment_name(hub, STAGING))
    for deployment in itertools.islice(deployments, HISTORY):
        payload = deployment.get("payload")
        if isinstance(payload, dict):
            yield StagingRecord(deployment["id"], deployment["sha"], payload)


def content_differences(prod: Freight, staging: dict[str, Any]) -> list[str]:
    """How `prod` differs from a staging payload in what must be the same (not digests)."""
    differences = []
    ran = {image.get("name"): image for image in staging.get("images", [])}
    for image in prod.images:
        other = ran.get(image.name)
        if other is None:
            differences.append(f"image {image.name} was not part of that staging deploy")
        elif other.get("tag") != image.tag:
            differences.append(
                f"image {image.name}: prod would use tag {image.tag}, staging ran "
                f"{other.get('tag')}"
            )
    chart = staging.get("chart", {})
    for field_name, label in (("lock_digest", "Chart.lock digest"), ("tree", "chart content")):
        mine = getattr(prod.chart, field_name)
        if chart.get(field_name) != mine:
            differences.append(
                f"chart {prod.chart.name}: {label} {mine} differs from staging's "
                f"{chart.get(field_name)}"
            )
    if staging.get("fingerprints", {}).get("common") != prod.common:
        differences.append(
            f"common config (hub/values.yaml + deployments/{prod.hub}/config/common.yaml) "
            "differs from what staging ran"
        )
    return differences


def digest_differences(prod: Freight, staging: dict[str, Any]) -> list[str]:
    ran = {image.get("name"): image for image in staging.get("images", [])}
    return [
        f"image {image.name}:{image.tag} is {image.digest} in the registry, but staging ran "
        f"{ran[image.name].get('digest')} (re-pushed since?)"
        for image in prod.images
        if ran[image.name].get("digest") != image.digest
    ]


def verify_prod(client: github.Client, prod: Freight) -> StagingRecord:
    """The successful staging deployment whose freight `prod` repeats, or an error naming
    what differs."""
    records = successful_staging(client, prod.hub)
    latest = next(records, None)
    if latest is None:
        raise HubbotError(
            f"no successful staging deployment of {prod.hub} is recorded (GitHub environment "
            f"{environment_name(prod.hub, STAGING)}): prod deploys only what staging ran, so "
            "deploy it to staging first"
        )
    for record in itertools.chain([latest], records):
        if not content_differences(prod, record.payload):
            problems = digest_differences(prod, record.payload)
            if problems:
                raise HubbotError(
                    f"prod freight for {prod.hub} does not match staging deployment "
                    f"{record.deployment_id} (commit {record.sha[:12]}): " + "; ".join(problems)
                )
            return record
    raise HubbotError(
        f"prod freight for {prod.hub} is not what staging ran; compared with the latest "
        f"successful staging deployment {latest.deployment_id} (commit {latest.sha[:12]}): "
        + "; ".join(content_differences(prod, latest.payload))
    )


# --- records ------------------------------------------------------------------------------


@dataclass(frozen=True)
class GitHubRecorder:
    """Records each deploy as a GitHub deployment of `sha` with its freight as payload.

    A GitHub failure never stops a deploy: it comes back as a note for the outcome table.
    """

    client: github.Client
    sha: str

    def started(
        self, values: HubValues, freight: Freight | None
    ) -> Callable[[bool, str], list[str]]:
        environment = environment_name(values.hub, values.env)
        url = values.environment.url
        payload = freight.payload() if freight is not None else {}
        try:
            deployment = github.create_deployment(
                self.client, self.sha, environment, payload, f"hubbot deploy {values.hub}"
            )
            github.create_deployment_status(
                self.client, deployment["id"], "in_progress", environment_url=url
            )
        except HubbotError as exc:
            failed = [f"deployment not recorded: {exc}"]
            return lambda ok, detail: failed

        def finished(ok: bool, detail: str) -> list[str]:
            try:
                github.create_deployment_status(
                    self.client,
                    deployment["id"],
                    "success" if ok else "failure",
                    environment_url=url,
                    description=detail,
                )
            except HubbotError as exc:
                return [f"deployment {deployment['id']} status not recorded: {exc}"]
            return []

        return finished


def freight_check(
    source: Source, client: github.Client | None, digest_of: DigestOf = registry_digest
) -> Callable[[HubValues], Freight]:
    """Collects each pair's freight; for prod, also proves staging ran the same."""

    def check(values: HubValues) -> Freight:
        freight = collect(source, values, digest_of)
        if values.env == PROD:
            if client is None:
                raise HubbotError(
                    "a prod deploy must prove staging ran the same freight, which is recorded "
                    "as GitHub deployments: set GITHUB_TOKEN and GITHUB_REPOSITORY"
                )
            verify_prod(client, freight)
        return freight

    return check
