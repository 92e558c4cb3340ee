"""Deployment records that prove what ran, and the check that tells them from forgeries.

Anyone whose token may write deployments can create a GitHub deployment record
with any environment, sha, payload and status, and a pull request's own workflow
acts as `github-actions[bot]` just like the deploy workflow. So a record counts
only when, besides coming from the deploy workflow's identity for the right
commit, hub and environment, with no failed status, its success status carries
a proof: an HMAC-SHA256 over (repository, sha, commit tree, hub, environment,
payload, outcome) keyed by HUBBOT_RECORD_KEY. That key is a secret of the GitHub
environments `staging` and `prod` only, whose branch policies keep it out of
pull request workflows (infra/github.tf). The proof is written only on success,
so a failed deploy re-marked success has none, and it binds the sha and payload,
so copying it onto another record does not verify.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot import git, github
from bot.errors import HubbotError

KEY_VARIABLE = "HUBBOT_RECORD_KEY"
CREATOR_VARIABLE = "HUBBOT_RECORD_CREATOR"
# The login GITHUB_TOKEN acts as; a GitHub App's installation token acts as `<app-slug>[bot]`.
DEFAULT_CREATOR = "github-actions[bot]"
MIN_KEY_LENGTH = 32
FORMAT = 1
PROOF_PREFIX = "hubbot-proof:"
_PROOF_RE = re.compile(r"hubbot-proof:([0-9a-f]{64})(?:\s|$)")
# How many records of one environment to look through, newest first.
HISTORY = 30
FAILED_STATES = ("failure", "error")
# GitHub adds `inactive` to earlier successful deployments of an environment when a
# newer one succeeds (auto_inactive): it ends no success.
SUPERSEDED = "inactive"
DESCRIPTION_LIMIT = 140


@dataclass(frozen=True)
class RecordKey:
    secret: bytes = field(repr=False)


def key_from_env(
    environ: Mapping[str, str], register: Callable[[str], object]
) -> RecordKey | None:
    """HUBBOT_RECORD_KEY, registered with the redactor; None when it is not set."""
    value = environ.get(KEY_VARIABLE, "")
    if not value:
        return None
    register(value)
    if len(value) < MIN_KEY_LENGTH:
        raise HubbotError(
            f"{KEY_VARIABLE} is too short ({len(value)} characters): use at least "
            f"{MIN_KEY_LENGTH} random characters (`openssl rand -hex 32`)"
        )
    return RecordKey(value.encode())


def creator_from_env(environ: Mapping[str, str]) -> str:
    return environ.get(CREATOR_VARIABLE) or DEFAULT_CREATOR


@dataclass(frozen=True)
class Subject:
    """What a record says ran; its proof binds all of it."""

    repository: str
    sha: str
    tree: str
    hub: str | None  # None for the record of a whole staging run
    env: str


def proof(key: RecordKey, subject: Subject, payload: Mapping[str, Any], outcome: str) -> str:
    message = {
        "hubbot_record": FORMAT,
        "repository": subject.repository,
        "sha": subject.sha,
        "tree": subject.tree,
        "hub": subject.hub,
        "env": subject.env,
        "payload": payload,
        "outcome": outcome,
    }
    canonical = json.dumps(message, sort_keys=True, separators=(",", ":")).encode()
    return hmac.new(key.secret, canonical, hashlib.sha256).hexdigest()


def proven_description(proof_hex: str, detail: str) -> str:
    """A success status's description: the proof first, then as much detail as fits."""
    return f"{PROOF_PREFIX}{proof_hex} {detail}"[:DESCRIPTION_LIMIT]


@dataclass(frozen=True)
class Record:
    """A deployment record that passed every check."""

    deployment_id: int
    sha: str
    tree: str
    payload: dict[str, Any]


@dataclass(frozen=True)
class Rejected:
    deployment_id: int
    sha: str
    reason: str

    def __str__(self) -> str:
        return f"deployment {self.deployment_id} (commit {self.sha[:12]}): {self.reason}"


@dataclass(frozen=True)
class Found:
    """The records of one environment, newest first: those that count and those that don't."""

    verified: list[Record]
    rejected: list[Rejected]


def why_not(*found: Found, limit: int = 3) -> str:
    """The newest refusals, each once, for an error message; empty when none was refused."""
    rejected = list({r.deployment_id: r for f in found for r in f.rejected}.values())
    if not rejected:
        return ""
    shown = "; ".join(str(r) for r in rejected[:limit])
    more = len(rejected) - limit
    return f" Records refused: {shown}" + (f"; and {more} more" if more > 0 else "")


# What an environment's records must be about, (hub, env); None for environments to ignore.
Expected = Callable[[str], tuple[str | None, str] | None]


@dataclass(frozen=True)
class Trust:
    """What a record is checked against: this clone, this repository, the key, the creator."""

    client: github.Client
    repo: Path
    key: RecordKey
    creator: str = DEFAULT_CREATOR
    # Lookups already made: one run asks the same for every pair.
    memo: dict[Any, Found] = field(default_factory=dict, compare=False, repr=False)

    def find(self, environment: str, hub: str | None, env: str) -> Found:
        """The newest records of `environment`, which must be about `hub` in `env`."""
        key = ("environment", environment, hub, env)
        if key not in self.memo:
            deployments = github.iter_deployments(self.client, environment=environment)
            self.memo[key] = self._sorted(
                (deployment, (hub, env)) for deployment in itertools.islice(deployments, HISTORY)
            )
        return self.memo[key]

    def find_at(self, shas: Sequence[str], expected: Expected) -> Found:
        """Records of the given commits in every environment `expected` knows."""
        key = ("commits", tuple(shas))
        if key not in self.memo:
            self.memo[key] = self._sorted(
                (deployment, wanted)
                for sha in shas
                for deployment in itertools.islice(
                    github.iter_deployments(self.client, sha=sha), HISTORY
                )
                if (wanted := expected(str(deployment.get("environment")))) is not None
            )
        return self.memo[key]

    def _sorted(
        self, deployments: Iterable[tuple[dict[str, Any], tuple[str | None, str]]]
    ) -> Found:
        verified: list[Record] = []
        rejected: list[Rejected] = []
        for deployment, (hub, env) in deployments:
            statuses = github.list_deployment_statuses(self.client, int(deployment["id"]))
            environment = str(deployment.get("environment"))
            result = self.check(deployment, statuses, environment, hub, env)
            if isinstance(result, Record):
                verified.append(result)
            else:
                rejected.append(result)
        return Found(verified, rejected)

    def check(
        self,
        deployment: dict[str, Any],
        statuses: list[dict[str, Any]],
        environment: str,
        hub: str | None,
        env: str,
    ) -> Record | Rejected:
        """The record if it counts, else why not."""
        result = self._verify(deployment, statuses, environment, hub, env)
        if isinstance(result, str):
            return Rejected(int(deployment["id"]), str(deployment.get("sha") or ""), result)
        return result

    def _verify(
        self,
        deployment: dict[str, Any],
        statuses: list[dict[str, Any]],
        environment: str,
        hub: str | None,
        env: str,
    ) -> Record | str:
        creator = _login(deployment)
        if creator != self.creator:
            return (
                f"created by {creator}, not by {self.creator}, the deploy workflow's identity"
            )
        if deployment.get("environment") != environment:
            return f"its environment is {deployment.get('environment')!r}, not {environment!r}"
        payload = deployment.get("payload")
        if not isinstance(payload, dict):
            return "its payload is not hubbot's"
        said = (payload.get("hub"), payload.get("env"))
        if said != (hub, env):
            return f"its payload is for {_pair(*said)}, not {_pair(hub, env)}"
        sha = str(deployment.get("sha") or "")
        tree = git.commit_tree(self.repo, sha) if re.fullmatch(r"[0-9a-f]{40}", sha) else None
        if tree is None:
            return f"its commit {sha or '(none)'} is not in this repository"
        if payload.get("commit_tree") != tree:
            return f"its payload names tree {payload.get('commit_tree')}, but its commit has {tree}"
        failed = [s["state"] for s in statuses if s.get("state") in FAILED_STATES]
        if failed:
            return (
                f"a status of it says {failed[0]}: a failed deploy stays failed, whatever "
                "status comes after"
            )
        current = [s for s in statuses if s.get("state") != SUPERSEDED]
        if not current or current[0].get("state") != "success":
            state = current[0].get("state") if current else "none"
            return f"it did not succeed (latest status: {state})"
        success = current[0]
        if _login(success) != self.creator:
            return f"its success status was set by {_login(success)}, not by {self.creator}"
        found = _PROOF_RE.match(str(success.get("description") or ""))
        if found is None:
            return (
                "its success status carries no proof (deployed without "
                f"{KEY_VARIABLE}, or not by a deploy job)"
            )
        subject = Subject(self.client.repository, sha, tree, hub, env)
        if not hmac.compare_digest(found.group(1), proof(self.key, subject, payload, "success")):
            return (
                "its proof does not match: it was not written by a deploy holding this "
                f"repository's {KEY_VARIABLE} for this commit and payload"
            )
        return Record(int(deployment["id"]), sha, tree, payload)


def trust_from_env(
    client: github.Client,
    repo: Path,
    environ: Mapping[str, str],
    register: Callable[[str], object],
) -> Trust | None:
    """Who records are checked against, from HUBBOT_RECORD_KEY (None when it is not set)
    and HUBBOT_RECORD_CREATOR."""
    key = key_from_env(environ, register)
    return None if key is None else Trust(client, repo, key, creator_from_env(environ))


def _login(item: dict[str, Any]) -> str:
    creator = item.get("creator")
    return str(creator.get("login")) if isinstance(creator, dict) else "a deleted account"


def _pair(hub: object, env: object) -> str:
    return f"{hub}/{env}" if hub is not None else f"a whole {env} run"
