"""Freight: exactly what one deploy shipped, recorded as a GitHub deployment's payload.

Freight names the images by tag and registry digest, the chart by name,
version, Chart.lock digest and tree, and fingerprints the config: the common
layers (hub/values.yaml and the hub's common.yaml, which staging and prod
share) by plain hash, and the whole merged document by a keyed hash whose key
is derived from the decrypted secrets, so the record reveals nothing about
them. A prod deploy is allowed only from a committed, clean checkout whose
tree a verified staging deploy ran (bot/records.py says which records count),
and only with freight a verified successful staging deploy of the hub
recorded: same images at the same digests, same chart, same common config.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot import git, github, records
from bot.errors import HubbotError
from bot.hubploy import Deployment
from bot.registries import registry_for
from bot.source import Source
from bot.values import CHART_DIR, HubValues, ImageRef
from bot.yamlfile import load_yaml

FORMAT = 1
PROD = "prod"
STAGING = "staging"
# Where records of whole staging runs go (see record_staging_run).
STAGING_RUN_ENVIRONMENT = "staging-run"

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


# --- the commit a deploy ships ---------------------------------------------------------


@dataclass(frozen=True)
class Checkout:
    """The commit checked out, and what in the working tree differs from it."""

    sha: str
    tree: str
    uncommitted: tuple[str, ...]


def checkout(repo: Path, claimed: str | None = None) -> Checkout:
    """HEAD of `repo`; `claimed` (GITHUB_SHA) must be that commit, since records name it."""
    sha = git.resolve(repo, "HEAD")
    if claimed and claimed != sha:
        raise HubbotError(
            f"the commit to deploy is {claimed} (GITHUB_SHA, or the push event's `after`), "
            f"but {sha} is checked out: a deploy is recorded as the commit it ships, so "
            "check out the commit to deploy"
        )
    tree = git.commit_tree(repo, sha)
    if tree is None:
        raise HubbotError(f"commit {sha} has no tree in {repo}")
    return Checkout(sha, tree, tuple(git.uncommitted(repo)))


def _listed(paths: Sequence[str], limit: int = 5) -> str:
    more = len(paths) - limit
    return ", ".join(paths[:limit]) + (f" and {more} more" if more > 0 else "")


def require_committed(ours: Checkout) -> None:
    """Prod ships only a commit: a working tree that differs from it never deploys prod."""
    if ours.uncommitted:
        raise HubbotError(
            f"the working tree differs from commit {ours.sha[:12]} "
            f"({_listed(ours.uncommitted)}): prod deploys only a commit that staging ran, "
            "never uncommitted changes; commit them through a staging pull request, or "
            "`git stash --include-untracked`. Nothing was deployed"
        )


# --- prod: only what staging ran --------------------------------------------------------


def staging_records(trust: records.Trust, hub: str) -> records.Found:
    """`hub`'s staging deployments, newest first, split into verified and refused."""
    return trust.find(environment_name(hub, STAGING), hub, STAGING)


def staging_subject(environment: str) -> tuple[str | None, str] | None:
    """What a staging record in `environment` is about: (hub, staging), (None, staging) for
    a staging run; None for any other environment."""
    if environment == STAGING_RUN_ENVIRONMENT:
        return None, STAGING
    hub = environment.removesuffix(f"-{STAGING}")
    return (hub, STAGING) if hub and hub != environment else None


def same_tree_commits(repo: Path, ours: Checkout) -> list[str]:
    """Commits with the checked-out tree, among HEAD's history and the staging branch's:
    the staging commit a promotion merged (ff, merge or squash) is one of them."""
    refs = ["HEAD"]
    for ref in (f"origin/{STAGING}", STAGING):
        try:
            git.resolve(repo, ref)
        except HubbotError:
            continue
        refs.append(ref)
    return git.commits_with_tree(repo, ours.tree, refs)


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


def verify_prod(trust: records.Trust, ours: Checkout, prod: Freight) -> records.Record:
    """The verified staging deployment whose freight `prod` repeats, or an error saying why
    there is none. The commit's tree must also be one staging ran: a promotion merges
    staging into prod, so any change made on prod directly gives a tree staging never ran."""
    environment = environment_name(prod.hub, STAGING)
    found = staging_records(trust, prod.hub)
    if not found.verified:
        raise HubbotError(
            f"no verified successful staging deployment of {prod.hub} is recorded (GitHub "
            f"environment {environment}): prod deploys only what staging ran, so deploy it "
            "to staging first." + records.why_not(found)
        )
    if not any(record.tree == ours.tree for record in found.verified):
        # Any hub's staging deploy, or a staging run, of a commit with this tree will do.
        ran = trust.find_at(same_tree_commits(trust.repo, ours), staging_subject)
        if not ran.verified:
            latest = found.verified[0]
            raise HubbotError(
                f"commit {ours.sha[:12]} has tree {ours.tree[:12]}, which no verified staging "
                "deploy ran: a change made on prod directly (not promoted from staging) is "
                f"never deployed; the newest verified staging deployment of {prod.hub} is "
                f"{latest.deployment_id} (commit {latest.sha[:12]}, tree {latest.tree[:12]})."
                + records.why_not(found, ran)
            )
    latest = found.verified[0]
    for record in found.verified:
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
        f"verified staging deployment {latest.deployment_id} (commit {latest.sha[:12]}): "
        + "; ".join(content_differences(prod, latest.payload))
    )


# --- records ------------------------------------------------------------------------------


@dataclass(frozen=True)
class GitHubRecorder:
    """Records each deploy as a GitHub deployment of the checked-out commit, its freight
    and commit tree as payload; a success status carries the proof when the job holds its
    environment's signing key.

    A GitHub failure never stops a deploy: it comes back as a note for the outcome table.
    A deploy from a working tree that differs from its commit is not recorded at all,
    since it is not that commit.
    """

    client: github.Client
    ours: Checkout
    key: records.SigningKey | None

    def started(
        self, values: HubValues, freight: Freight | None
    ) -> Callable[[bool, str], list[str]]:
        if self.ours.uncommitted:
            note = [
                f"not recorded: the working tree differs from commit {self.ours.sha[:12]} "
                f"({_listed(self.ours.uncommitted)}), so this deploy is not that commit"
            ]
            return lambda ok, detail: note
        environment = environment_name(values.hub, values.env)
        url = values.environment.url
        payload = {
            **(freight.payload() if freight is not None else {"hub": values.hub,
                                                              "env": values.env}),
            "commit_tree": self.ours.tree,
        }
        subject = records.Subject(
            self.client.repository, self.ours.sha, self.ours.tree, values.hub, values.env
        )
        try:
            deployment = github.create_deployment(
                self.client, self.ours.sha, environment, payload, f"hubbot deploy {values.hub}"
            )
            github.create_deployment_status(
                self.client, deployment["id"], "in_progress", environment_url=url
            )
        except HubbotError as exc:
            failed = [f"deployment not recorded: {exc}"]
            return lambda ok, detail: failed

        def finished(ok: bool, detail: str) -> list[str]:
            notes = []
            if ok and self.key is not None:
                detail = records.proven_description(
                    records.proof(self.key, subject, payload, "success"), detail
                )
            elif ok:
                notes.append(
                    f"deployment {deployment['id']} carries no proof "
                    f"({records.SIGNING_KEY_VARIABLE} is not set): prod will not count it"
                )
            try:
                github.create_deployment_status(
                    self.client,
                    deployment["id"],
                    "success" if ok else "failure",
                    environment_url=url,
                    description=detail,
                )
            except HubbotError as exc:
                return [*notes, f"deployment {deployment['id']} status not recorded: {exc}"]
            return notes

        return finished


def record_staging_run(client: github.Client, ours: Checkout, key: records.SigningKey) -> None:
    """Record that a staging run of this commit passed with no staging pair to deploy.

    A change only prod receives (a prod.yaml) deploys nothing on staging; this record is
    how prod learns that its tree still went through staging.
    """
    payload: dict[str, Any] = {"hub": None, "env": STAGING, "commit_tree": ours.tree}
    subject = records.Subject(client.repository, ours.sha, ours.tree, None, STAGING)
    deployment = github.create_deployment(
        client, ours.sha, STAGING_RUN_ENVIRONMENT, payload, "hubbot staging run"
    )
    github.create_deployment_status(
        client,
        deployment["id"],
        "success",
        description=records.proven_description(
            records.proof(key, subject, payload, "success"),
            "staging validated it; no staging pair to deploy",
        ),
    )


def freight_check(
    source: Source,
    trust: records.Trust | None,
    ours: Checkout,
    digest_of: DigestOf = registry_digest,
) -> Callable[[HubValues], Freight]:
    """Collects each pair's freight; for prod, also proves staging ran the same."""

    def check(values: HubValues) -> Freight:
        freight = collect(source, values, digest_of)
        if values.env == PROD:
            if trust is None:
                raise HubbotError(
                    "a prod deploy must prove staging ran the same commit tree and freight, "
                    "from GitHub deployment records checked with the environments' public "
                    f"keys: set GITHUB_TOKEN, GITHUB_REPOSITORY and {records.PUBLIC_KEYS_VARIABLE}"
                )
            require_committed(ours)
            verify_prod(trust, ours, freight)
        return freight

    return check
