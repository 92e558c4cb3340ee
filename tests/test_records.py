"""Deployment record proofs: each environment signs its own records with its own Ed25519
key, and a record verifies only against the public key of its own environment. Real git,
real Ed25519 (cryptography), the GitHub API stand-in."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bot import github, records
from bot.errors import HubbotError
from tests.fixtures.github import FakeGitHub
from tests.fixtures.record_keys import PUBLIC, SIGNING, make_record_keys, private_key_text
from tests.fixtures.repos import PROJECT, git
from tests.fixtures.tools import require_binary

KEYS = make_record_keys()
REPOSITORY = "tess-org/tess-hubs"
HUB = "tess-public"


def payload_of(repo: Path, env: str) -> dict[str, Any]:
    return {"hubbot_freight": 1, "hub": HUB, "env": env,
            "commit_tree": git(repo, "rev-parse", "HEAD^{tree}")}


def signed(key: records.SigningKey, repo: Path, env: str) -> str:
    """The proof a deploy of HUB to `env` at HEAD writes, signed with `key`."""
    sha = git(repo, "rev-parse", "HEAD")
    subject = records.Subject(REPOSITORY, sha, git(repo, "rev-parse", "HEAD^{tree}"), HUB, env)
    return records.proof(key, subject, payload_of(repo, env), "success")


def verdict(api: FakeGitHub, repo: Path, env: str, description: str,
            keys: str = KEYS.public()) -> records.Record | records.Rejected:
    """Record a successful deploy of HUB to `env` at HEAD with that status description,
    then check it as a job holding only the public keys `keys` does."""
    client = github.client_from_env(api.env())
    environment = f"{HUB}-{env}"
    deployment = github.create_deployment(
        client, git(repo, "rev-parse", "HEAD"), environment, payload_of(repo, env)
    )
    github.create_deployment_status(client, deployment["id"], "success", description=description)
    trust = records.trust_from_env(client, repo, {PUBLIC: keys})
    assert trust is not None
    statuses = github.list_deployment_statuses(client, int(deployment["id"]))
    return trust.check(deployment, statuses, environment, HUB, env)


def reason(result: records.Record | records.Rejected) -> str:
    assert isinstance(result, records.Rejected), "the record was counted"
    return result.reason


def test_each_environments_own_key_verifies_its_own_records(
    hub_repo: Path, github_api: FakeGitHub
) -> None:
    for env in ("staging", "prod"):
        proof = signed(KEYS.key(env), hub_repo, env)
        assert len(proof) == records.SIGNATURE_CHARACTERS
        result = verdict(github_api, hub_repo, env, records.proven_description(proof, "ok"))
        assert isinstance(result, records.Record), result


def test_a_record_signed_with_prods_key_is_no_staging_record(
    hub_repo: Path, github_api: FakeGitHub
) -> None:
    # What the prod deploy job can sign: with one key shared by both environments (the
    # old HMAC), this record counted as a staging deploy and opened prod.
    proof = signed(KEYS.key("prod"), hub_repo, "staging")

    result = verdict(github_api, hub_repo, "staging", records.PROOF_PREFIX + proof)

    assert reason(result) == (
        "its proof was signed with the prod environment's key, not staging's: only a staging "
        "deploy proves a staging record"
    )


def test_a_job_holding_only_public_keys_cannot_make_a_verifying_proof(
    hub_repo: Path, github_api: FakeGitHub
) -> None:
    environ = {PUBLIC: KEYS.public()}  # the gather job, the promotion step
    assert records.signing_key_from_env(environ, lambda value: None) is None
    assert records.signing_key_for(environ, lambda value: None, "staging") is None
    # All it could sign with is what it holds: the public keys, as keys.
    attempts = []
    for env in ("staging", "prod"):
        raw = base64.b64decode(KEYS.public_key(env))
        attempts.append(signed(records.SigningKey(Ed25519PrivateKey.from_private_bytes(raw)),
                               hub_repo, "staging"))
    # ... or the old design's proof, an HMAC keyed by the variable's text.
    message = json.dumps({"public": environ[PUBLIC]}).encode()
    attempts.append(hmac.new(environ[PUBLIC].encode(), message, hashlib.sha256).hexdigest())

    reasons = [reason(verdict(github_api, hub_repo, "staging", records.PROOF_PREFIX + attempt))
               for attempt in attempts]

    not_staging = (
        "its proof does not verify with the staging environment's public key: it was not "
        "signed by a staging deploy for this commit and payload"
    )
    assert reasons == [
        not_staging,
        not_staging,
        "its proof is malformed: 64 characters, where an Ed25519 signature takes 86 base64url "
        "characters (cut short, or not hubbot's)",
    ]


@pytest.mark.parametrize("damage", ["cut short", "cut to nothing", "one too many",
                                    "not base64url", "padded", "flipped"])
def test_a_malformed_or_cut_proof_is_refused_with_a_clear_reason(
    hub_repo: Path, github_api: FakeGitHub, damage: str
) -> None:
    proof = signed(KEYS.key("staging"), hub_repo, "staging")
    flipped = "B" if proof[10] != "B" else "C"
    damaged, expected = {
        "cut short": (proof[:40], "its proof is malformed: 40 characters, where an Ed25519 "
                      "signature takes 86 base64url characters (cut short, or not hubbot's)"),
        "cut to nothing": ("", "its proof is malformed: 0 characters, where an Ed25519 "
                           "signature takes 86 base64url characters (cut short, or not "
                           "hubbot's)"),
        "one too many": (proof + "A", "its proof is malformed: 87 characters, where an Ed25519 "
                         "signature takes 86 base64url characters (cut short, or not "
                         "hubbot's)"),
        "not base64url": (proof[:10] + "+" + proof[11:], "its proof is malformed: it holds "
                          "characters that are not base64url"),
        "padded": (proof[:84] + "==", "its proof is malformed: it holds characters that are "
                   "not base64url"),
        "flipped": (proof[:10] + flipped + proof[11:], "its proof does not verify with the "
                    "staging environment's public key: it was not signed by a staging deploy "
                    "for this commit and payload"),
    }[damage]

    result = verdict(github_api, hub_repo, "staging", f"{records.PROOF_PREFIX}{damaged} ok")

    assert reason(result) == expected


@pytest.mark.parametrize("bad_id", ["DE_kwDOABCD", "1001x", True, None, 1001.5])
def test_a_deployment_without_githubs_integer_id_is_refused_and_named(
    hub_repo: Path, github_api: FakeGitHub, bad_id: object
) -> None:
    proof = signed(KEYS.key("staging"), hub_repo, "staging")
    good = verdict(github_api, hub_repo, "staging", records.proven_description(proof, "ok"))
    assert isinstance(good, records.Record), good
    listed = github_api.deployments[good.deployment_id]
    # An answer no GitHub gives: a copy of the record whose id is not an integer.
    github_api.fail(200, method="GET", path=r".*/deployments",
                    body=[{**listed, "id": bad_id}, listed])
    client = github.client_from_env(github_api.env())
    trust = records.trust_from_env(client, hub_repo, {PUBLIC: KEYS.public()})
    assert trust is not None
    github_api.requests.clear()

    found = trust.find(f"{HUB}-staging", HUB, "staging")

    assert [record.deployment_id for record in found.verified] == [good.deployment_id]
    assert found.rejected == [records.Rejected(
        None, good.sha, f"its id {bad_id!r} is not an integer, as GitHub gives every "
        "deployment: not a GitHub record",
    )]
    statuses = [r.path for r in github_api.calls("GET", r".*/statuses")]
    assert statuses == [f"/repos/{REPOSITORY}/deployments/{good.deployment_id}/statuses"]


def test_each_refused_record_is_named_once() -> None:
    twice = records.Rejected(7, "a" * 40, "its payload is not hubbot's")
    # Two records without an id, of two commits: two refusals, though neither has an id.
    first, second = (
        records.Rejected(None, sha, "its id None is not an integer") for sha in ("b" * 40, "c" * 40)
    )
    by_environment = records.Found([], [twice, first])
    by_commit = records.Found([], [twice, second, first])

    assert records.why_not(by_environment, by_commit) == (
        " Records refused: deployment 7 (commit aaaaaaaaaaaa): its payload is not hubbot's; "
        "a deployment (commit bbbbbbbbbbbb): its id None is not an integer; "
        "a deployment (commit cccccccccccc): its id None is not an integer"
    )


STATES = "error, failure, inactive, in_progress, queued, pending, success"


@pytest.mark.parametrize(
    ("bad_status", "problem"),
    [
        ("success", "it is 'success', not a JSON object"),
        (None, "it is None, not a JSON object"),
        (["success"], "it is ['success'], not a JSON object"),
        ({"description": ""}, f"its state is missing, not one of GitHub's ({STATES})"),
        ({"state": "done"}, f"its state is 'done', not one of GitHub's ({STATES})"),
        ({"state": "success", "description": 5}, "its description is 5, not a string"),
    ],
)
def test_a_status_github_never_gives_refuses_its_record(
    hub_repo: Path, github_api: FakeGitHub, bad_status: object, problem: str
) -> None:
    proof = signed(KEYS.key("staging"), hub_repo, "staging")
    good = verdict(github_api, hub_repo, "staging", records.proven_description(proof, "ok"))
    assert isinstance(good, records.Record), good
    # An answer no GitHub gives: the record's real statuses and an odd one after them.
    github_api.fail(200, method="GET", path=r".*/statuses",
                    body=[*github_api.statuses[good.deployment_id], bad_status])
    client = github.client_from_env(github_api.env())
    trust = records.trust_from_env(client, hub_repo, {PUBLIC: KEYS.public()})
    assert trust is not None

    found = trust.find(f"{HUB}-staging", HUB, "staging")

    assert found.verified == []
    assert found.rejected == [records.Rejected(
        good.deployment_id, good.sha, f"a status of it is not GitHub's: {problem}"
    )]


def test_no_proof_and_no_key_of_the_environment_are_said_apart(
    hub_repo: Path, github_api: FakeGitHub
) -> None:
    assert reason(verdict(github_api, hub_repo, "staging", "deployed")) == (
        "its success status carries no proof (deployed without HUBBOT_RECORD_SIGNING_KEY, or "
        "not by a deploy job)"
    )
    proof = signed(KEYS.key("staging"), hub_repo, "staging")
    only_prod = verdict(github_api, hub_repo, "staging", records.PROOF_PREFIX + proof,
                        keys=KEYS.public("prod"))
    assert reason(only_prod) == (
        "its proof cannot be checked: HUBBOT_RECORD_PUBLIC_KEYS has no key of the staging "
        "environment (it has prod)"
    )


def test_the_proof_comes_first_and_the_description_fits_githubs_limit(
    hub_repo: Path, github_api: FakeGitHub
) -> None:
    proof = signed(KEYS.key("staging"), hub_repo, "staging")
    description = records.proven_description(proof, "deployed in 41s; " + "x" * 200)
    assert len(description) == records.DESCRIPTION_LIMIT == 140
    assert description.startswith(f"hubbot-proof:{proof} deployed in 41s; x")
    assert isinstance(verdict(github_api, hub_repo, "staging", description), records.Record)


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ("staging", "HUBBOT_RECORD_PUBLIC_KEYS: 'staging' is not ENV=KEY; write it as "
                    "`staging=<base64>,prod=<base64>`"),
        ("Staging=K", "HUBBOT_RECORD_PUBLIC_KEYS: 'Staging=K' is not ENV=KEY; write it as "
                      "`staging=<base64>,prod=<base64>`"),
        ("staging=abc", "HUBBOT_RECORD_PUBLIC_KEYS: the key of staging is not an Ed25519 public "
                        "key (the base64 of its 32 raw bytes)"),
        ("staging=S,staging=P", "HUBBOT_RECORD_PUBLIC_KEYS names staging twice"),
        ("staging=S,prod=S", "HUBBOT_RECORD_PUBLIC_KEYS gives staging and prod the same key: "
                             "each environment must sign with its own key, or one could prove "
                             "the other's deploys"),
    ],
)
def test_a_bad_public_keys_variable_is_one_clear_error(value: str, error: str) -> None:
    value = value.replace("=S", "=" + KEYS.public_key("staging"))
    value = value.replace("=P", "=" + KEYS.public_key("prod"))
    with pytest.raises(HubbotError) as raised:
        records.public_keys_from_env({PUBLIC: value})
    assert str(raised.value) == error


def test_the_public_keys_take_spaces_and_base64url() -> None:
    staging = base64.b64decode(KEYS.public_key("staging"))
    prod_url = base64.urlsafe_b64encode(base64.b64decode(KEYS.public_key("prod"))).decode()
    keys = records.public_keys_from_env(
        {PUBLIC: f" staging = {KEYS.public_key('staging')} , prod={prod_url.rstrip('=')}"}
    )
    assert keys is not None
    assert keys.by_env == {"staging": staging, "prod": base64.urlsafe_b64decode(prod_url)}


def test_the_signing_key_is_registered_and_never_in_an_error_or_repr() -> None:
    registered: list[str] = []
    good = KEYS.signing["staging"]
    key = records.signing_key_from_env({SIGNING: good}, registered.append)
    assert good in registered
    assert key is not None
    assert good not in repr(key)
    assert base64.b64decode(good).hex() not in repr(key)

    bad = base64.b64encode(os.urandom(31)).decode()  # a key cut short
    registered.clear()
    with pytest.raises(HubbotError) as raised:
        records.signing_key_from_env({SIGNING: bad}, registered.append)
    assert bad in registered
    assert str(raised.value) == (
        "HUBBOT_RECORD_SIGNING_KEY is not an Ed25519 private key: it must be the base64 of "
        "the key's 32 raw bytes (README.md, \"The prod lock\", says how to create one)"
    )
    assert bad not in str(raised.value)


@pytest.mark.parametrize("held", ["prod", "another"])
def test_a_signing_key_that_is_not_the_environments_is_refused(held: str) -> None:
    signing = KEYS.signing["prod"] if held == "prod" else private_key_text()
    environ = {SIGNING: signing, PUBLIC: KEYS.public()}
    whose = "the prod environment's key" if held == "prod" else "no environment's key"

    with pytest.raises(HubbotError) as raised:
        records.signing_key_for(environ, lambda value: None, "staging")

    assert str(raised.value) == (
        f"HUBBOT_RECORD_SIGNING_KEY is {whose} in HUBBOT_RECORD_PUBLIC_KEYS, not staging's: "
        "its records of staging would never verify; give the job staging's own secret"
    )
    assert signing not in str(raised.value)
    if held == "prod":  # the same job deploying prod holds the right key
        assert records.signing_key_for(environ, lambda value: None, "prod") is not None


def test_the_readme_commands_make_a_key_pair_hubbot_accepts(tmp_path: Path) -> None:
    require_binary("openssl", "apt-get install openssl")
    readme = (PROJECT / "README.md").read_text()
    (script,) = re.findall(r"```sh\n(for env in staging prod; do\n.*?\ndone\n)```", readme,
                           flags=re.DOTALL)
    # A `gh` that keeps what `gh secret set NAME --env ENV` reads from its standard input.
    gh = tmp_path / "bin" / "gh"
    gh.parent.mkdir()
    gh.write_text('#!/bin/sh\ncat > "$GH_OUT/$3.$5"\n')
    gh.chmod(0o755)
    done = subprocess.run(
        ["bash", "-c", script], capture_output=True, text=True, check=True,
        env={**os.environ, "PATH": f"{gh.parent}:{os.environ['PATH']}", "GH_OUT": str(tmp_path)},
    )

    printed = dict(re.findall(r'^  (\w+) = "([^"]+)"$', done.stdout, flags=re.MULTILINE))
    assert sorted(printed) == ["prod", "staging"]
    keys = records.public_keys_from_env({PUBLIC: ",".join(f"{e}={k}" for e, k in printed.items())})
    assert keys is not None
    for env, public in printed.items():
        secret = (tmp_path / f"{SIGNING}.{env}").read_text()
        assert secret not in done.stdout
        key = records.signing_key_for({SIGNING: secret, PUBLIC: f"{env}={public}"},
                                      lambda value: None, env)
        assert key is not None
        assert records.public_key_text(key) == public
