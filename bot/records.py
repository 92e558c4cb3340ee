"""Deployment records that prove what ran, and the check that tells them from forgeries.

Anyone whose token may write deployments can create a GitHub deployment record
with any environment, sha, payload and status, and a pull request's own workflow
acts as `github-actions[bot]` just like the deploy workflow. So a record counts
only when, besides coming from the deploy workflow's identity for the right
commit, hub and environment, with no failed status, its success status carries
a proof: an Ed25519 signature over (repository, sha, commit tree, hub,
environment, payload, outcome) made with the signing key of that record's
environment.

Each GitHub environment holds its own private key as the secret
HUBBOT_RECORD_SIGNING_KEY (staging's in `staging`, prod's in `prod`), whose
branch policies keep it out of pull request workflows (infra/github.tf).
Checking a record needs only the public keys, HUBBOT_RECORD_PUBLIC_KEYS
(`staging=<base64>,prod=<base64>`, a repository variable), so a job that holds
no secret (the promotion step) can check them too, and a record of environment
E counts only when E's public key verifies it: the prod deploy job, holding
prod's key, cannot make a staging record that counts. The proof is written only
on success, so a failed deploy re-marked success has none, and it binds the sha
and payload, so copying it onto another record does not verify.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from bot import git, github
from bot.errors import HubbotError

SIGNING_KEY_VARIABLE = "HUBBOT_RECORD_SIGNING_KEY"
PUBLIC_KEYS_VARIABLE = "HUBBOT_RECORD_PUBLIC_KEYS"
CREATOR_VARIABLE = "HUBBOT_RECORD_CREATOR"
# The login GITHUB_TOKEN acts as; a GitHub App's installation token acts as `<app-slug>[bot]`.
DEFAULT_CREATOR = "github-actions[bot]"
KEY_BYTES = 32
# Base64url without padding of a 64-byte signature.
SIGNATURE_CHARACTERS = 86
# 2: an Ed25519 signature (1 was an HMAC keyed by a secret every environment shared).
FORMAT = 2
PROOF_PREFIX = "hubbot-proof:"
_PROOF_RE = re.compile(r"hubbot-proof:(\S*)")
_SIGNATURE_RE = re.compile(rf"[A-Za-z0-9_-]{{{SIGNATURE_CHARACTERS}}}")
_ENVIRONMENT_RE = re.compile(r"[a-z0-9][a-z0-9-]*")
# How many records of one environment to look through, newest first.
HISTORY = 30
FAILED_STATES = ("failure", "error")
# GitHub adds `inactive` to earlier successful deployments of an environment when a
# newer one succeeds (auto_inactive): it ends no success.
SUPERSEDED = "inactive"
DESCRIPTION_LIMIT = 140


@dataclass(frozen=True)
class SigningKey:
    """One environment's Ed25519 private key; never printed (not even its repr)."""

    private: Ed25519PrivateKey = field(repr=False)


@dataclass(frozen=True)
class PublicKeys:
    """Each environment's Ed25519 public key, raw bytes by environment name."""

    by_env: Mapping[str, bytes]


def _decode_key(text: str) -> bytes | None:
    """The 32 raw bytes a base64 (or base64url) key text holds; None if it holds none."""
    stripped = text.strip()
    padded = stripped + "=" * (-len(stripped) % 4)
    try:
        raw = base64.b64decode(padded.replace("-", "+").replace("_", "/"), validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw if len(raw) == KEY_BYTES else None


def public_key_text(key: SigningKey) -> str:
    """The base64 of the raw public key of `key`: what HUBBOT_RECORD_PUBLIC_KEYS lists."""
    return base64.b64encode(_public_raw(key)).decode()


def _public_raw(key: SigningKey) -> bytes:
    return key.private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def signing_key_from_env(
    environ: Mapping[str, str], register: Callable[[str], object]
) -> SigningKey | None:
    """HUBBOT_RECORD_SIGNING_KEY, registered with the redactor; None when it is not set."""
    value = environ.get(SIGNING_KEY_VARIABLE, "")
    if not value:
        return None
    register(value)
    register(value.strip())
    raw = _decode_key(value)
    if raw is None:
        # Never the value, nor its length: only what form was expected.
        raise HubbotError(
            f"{SIGNING_KEY_VARIABLE} is not an Ed25519 private key: it must be the base64 "
            f"of the key's {KEY_BYTES} raw bytes (README.md, \"The prod lock\", says how to "
            "create one)"
        )
    register(raw.hex())
    register(base64.urlsafe_b64encode(raw).decode())
    return SigningKey(Ed25519PrivateKey.from_private_bytes(raw))


def public_keys_from_env(environ: Mapping[str, str]) -> PublicKeys | None:
    """HUBBOT_RECORD_PUBLIC_KEYS, `ENV=BASE64,ENV=BASE64`; None when it is not set."""
    value = environ.get(PUBLIC_KEYS_VARIABLE, "").strip()
    if not value:
        return None
    found: dict[str, bytes] = {}
    for entry in value.split(","):
        env, equals, text = (part.strip() for part in entry.strip().partition("="))
        if not equals or not _ENVIRONMENT_RE.fullmatch(env):
            raise HubbotError(
                f"{PUBLIC_KEYS_VARIABLE}: {entry.strip()!r} is not ENV=KEY; write it as "
                "`staging=<base64>,prod=<base64>`"
            )
        raw = _decode_key(text)
        if raw is None:
            raise HubbotError(
                f"{PUBLIC_KEYS_VARIABLE}: the key of {env} is not an Ed25519 public key "
                f"(the base64 of its {KEY_BYTES} raw bytes)"
            )
        if env in found:
            raise HubbotError(f"{PUBLIC_KEYS_VARIABLE} names {env} twice")
        twin = next((other for other, key in found.items() if key == raw), None)
        if twin is not None:
            raise HubbotError(
                f"{PUBLIC_KEYS_VARIABLE} gives {twin} and {env} the same key: each environment "
                "must sign with its own key, or one could prove the other's deploys"
            )
        found[env] = raw
    return PublicKeys(found)


def signing_key_for(
    environ: Mapping[str, str], register: Callable[[str], object], env: str
) -> SigningKey | None:
    """The signing key of a job that deploys `env`; None when it holds none. When the
    public keys are known too, the key must be `env`'s: records signed with any other
    would never verify."""
    key = signing_key_from_env(environ, register)
    keys = public_keys_from_env(environ)
    if key is None or keys is None or env not in keys.by_env:
        return key
    mine = _public_raw(key)
    if keys.by_env[env] != mine:
        owner = next((other for other, raw in keys.by_env.items() if raw == mine), None)
        whose = f"the {owner} environment's key" if owner else "no environment's key"
        raise HubbotError(
            f"{SIGNING_KEY_VARIABLE} is {whose} in {PUBLIC_KEYS_VARIABLE}, not {env}'s: "
            f"its records of {env} would never verify; give the job {env}'s own secret"
        )
    return key


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


def _message(subject: Subject, payload: Mapping[str, Any], outcome: str) -> bytes:
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
    return json.dumps(message, sort_keys=True, separators=(",", ":")).encode()


def proof(key: SigningKey, subject: Subject, payload: Mapping[str, Any], outcome: str) -> str:
    """The signature of what a record says, base64url without padding (86 characters)."""
    signature = key.private.sign(_message(subject, payload, outcome))
    return base64.urlsafe_b64encode(signature).decode().rstrip("=")


def proof_verifies(
    public: bytes, text: str, subject: Subject, payload: Mapping[str, Any], outcome: str
) -> bool:
    """Whether `text`, a well-formed proof, is the signature of that record by `public`."""
    signature = base64.urlsafe_b64decode(text + "==")
    try:
        Ed25519PublicKey.from_public_bytes(public).verify(
            signature, _message(subject, payload, outcome)
        )
    except InvalidSignature:
        return False
    return True


def malformed(text: str) -> str | None:
    """Why `text` is not a proof's form; None when it is."""
    if _SIGNATURE_RE.fullmatch(text):
        return None
    if len(text) != SIGNATURE_CHARACTERS:
        return (
            f"its proof is malformed: {len(text)} characters, where an Ed25519 signature "
            f"takes {SIGNATURE_CHARACTERS} base64url characters (cut short, or not hubbot's)"
        )
    return "its proof is malformed: it holds characters that are not base64url"


def proven_description(proof_text: str, detail: str) -> str:
    """A success status's description: the proof first, then as much detail as fits."""
    return f"{PROOF_PREFIX}{proof_text} {detail}"[:DESCRIPTION_LIMIT]


@dataclass(frozen=True)
class Record:
    """A deployment record that passed every check."""

    deployment_id: int
    sha: str
    tree: str
    payload: dict[str, Any]
    created_at: str = ""  # as GitHub gives it (ISO 8601)


@dataclass(frozen=True)
class Rejected:
    # None: listed without the integer id GitHub gives (the reason shows what it had).
    deployment_id: int | None
    sha: str
    reason: str

    def __str__(self) -> str:
        which = "a deployment" if self.deployment_id is None else f"deployment {self.deployment_id}"
        return f"{which} (commit {self.sha[:12]}): {self.reason}"


@dataclass(frozen=True)
class Found:
    """The records of one environment, newest first: those that count and those that don't."""

    verified: list[Record]
    rejected: list[Rejected]


def why_not(*found: Found, limit: int = 3) -> str:
    """The newest refusals, each once, for an error message; empty when none was refused."""
    # A record refused by two lookups (by environment and by commit) is shown once: by its
    # id, or, without one, by all it says (what tells such records apart in the message).
    unique = {
        r.deployment_id if r.deployment_id is not None else r: r for f in found for r in f.rejected
    }
    rejected = list(unique.values())
    if not rejected:
        return ""
    shown = "; ".join(str(r) for r in rejected[:limit])
    more = len(rejected) - limit
    return f" Records refused: {shown}" + (f"; and {more} more" if more > 0 else "")


# What an environment's records must be about, (hub, env); None for environments to ignore.
Expected = Callable[[str], tuple[str | None, str] | None]


@dataclass(frozen=True)
class Trust:
    """What a record is checked against: this clone, this repository, each environment's
    public key, the creator."""

    client: github.Client
    repo: Path
    keys: PublicKeys
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
                if isinstance(deployment, dict)
                and (wanted := expected(str(deployment.get("environment")))) is not None
            )
        return self.memo[key]

    def _sorted(
        self, deployments: Iterable[tuple[dict[str, Any], tuple[str | None, str]]]
    ) -> Found:
        verified: list[Record] = []
        rejected: list[Rejected] = []
        for deployment, (hub, env) in deployments:
            number = github.deployment_id(deployment)
            if number is None:
                rejected.append(_not_githubs(deployment))
                continue
            statuses = github.list_deployment_statuses(self.client, number)
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
        statuses: Sequence[Any],
        environment: str,
        hub: str | None,
        env: str,
    ) -> Record | Rejected:
        """The record if it counts, else why not."""
        number = github.deployment_id(deployment)
        if number is None:
            return _not_githubs(deployment)
        result = self._verify(deployment, number, statuses, environment, hub, env)
        if isinstance(result, str):
            return Rejected(number, str(deployment.get("sha") or ""), result)
        return result

    def _verify(
        self,
        deployment: dict[str, Any],
        number: int,
        statuses: Sequence[Any],
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
        for status in statuses:
            problem = github.status_problem(status)
            if problem is not None:
                return f"a status of it is not GitHub's: {problem}"
        failed = [s["state"] for s in statuses if s["state"] in FAILED_STATES]
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
                f"{SIGNING_KEY_VARIABLE}, or not by a deploy job)"
            )
        why = malformed(found.group(1))
        if why is not None:
            return why
        public = self.keys.by_env.get(env)
        if public is None:
            named = ", ".join(sorted(self.keys.by_env)) or "none"
            return (
                f"its proof cannot be checked: {PUBLIC_KEYS_VARIABLE} has no key of the {env} "
                f"environment (it has {named})"
            )
        subject = Subject(self.client.repository, sha, tree, hub, env)
        if not proof_verifies(public, found.group(1), subject, payload, "success"):
            signer = next(
                (
                    other
                    for other, key in sorted(self.keys.by_env.items())
                    if other != env and proof_verifies(key, found.group(1), subject, payload,
                                                       "success")
                ),
                None,
            )
            if signer is not None:
                return (
                    f"its proof was signed with the {signer} environment's key, not {env}'s: "
                    f"only a {env} deploy proves a {env} record"
                )
            return (
                f"its proof does not verify with the {env} environment's public key: it was "
                f"not signed by a {env} deploy for this commit and payload"
            )
        return Record(number, sha, tree, payload, str(deployment.get("created_at", "")))


def trust_from_env(
    client: github.Client,
    repo: Path,
    environ: Mapping[str, str],
) -> Trust | None:
    """Who records are checked against, from HUBBOT_RECORD_PUBLIC_KEYS (None when it is
    not set) and HUBBOT_RECORD_CREATOR. Public keys only: checking signs nothing."""
    keys = public_keys_from_env(environ)
    return None if keys is None else Trust(client, repo, keys, creator_from_env(environ))


def _not_githubs(deployment: Any) -> Rejected:
    """A listed deployment without the integer id GitHub gives every one."""
    found = deployment.get("id") if isinstance(deployment, dict) else None
    sha = deployment.get("sha") if isinstance(deployment, dict) else None
    return Rejected(
        None,
        sha if isinstance(sha, str) else "",
        f"its id {github.quoted_value(found)} is not an integer, as GitHub gives every "
        "deployment: not a GitHub record",
    )


def _login(item: dict[str, Any]) -> str:
    creator = item.get("creator")
    return str(creator.get("login")) if isinstance(creator, dict) else "a deleted account"


def _pair(hub: object, env: object) -> str:
    return f"{hub}/{env}" if hub is not None else f"a whole {env} run"
