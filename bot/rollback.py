"""Rollback: the config of a pair's last good deploy, back through the usual gates.

A rollback is a pull request into staging, never a deploy from a laptop: the
repository stays the truth (a direct redeploy would be undone by the next
push), and prod keeps taking only what staging ran. The GitHub deployment
records of `<hub>-<env>` say what runs now (the newest successful deployment)
and what ran before it with other freight (the target). A branch from
staging's tip puts back, as they were at the target's commit, the files the
pair is made of: the chart (`hub/`), the hub's hubploy.yaml, common and
environment layers and secrets, and its image directories. Its PR is
validated, built and diffed like any other; merging it deploys staging, and
the promotion PR carries the same freight to prod.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot import freight, git, github, promote, records
from bot.errors import HubbotError
from bot.hubploy import load_deployment
from bot.source import GitCommit
from bot.values import CHART_DIR, layer_files

# How many successful deployments to look through for one with other freight.
HISTORY = 50
BRANCH_PREFIX = "hubbot/rollback"


@dataclass(frozen=True)
class Record:
    deployment_id: int
    sha: str
    created_at: str
    payload: dict[str, Any]


@dataclass(frozen=True)
class Rollback:
    hub: str
    env: str
    current: Record
    target: Record
    branch: str
    base: str  # the staging ref the branch starts from
    commit: str
    paths: tuple[str, ...]  # the files put back as they were at the target's commit


def successful(
    client: github.Client, hub: str, env: str, trust: records.Trust | None = None
) -> Iterator[Record]:
    """The pair's successful deployments, newest first; with `trust`, only those whose
    record verifies (bot/records.py): a forged record is neither "now" nor a target."""
    environment = freight.environment_name(hub, env)
    if trust is not None:
        # A verified record's latest status is success: the one listing is enough.
        for record in trust.find(environment, hub, env).verified:
            yield Record(record.deployment_id, record.sha, record.created_at, record.payload)
        return
    for deployment in itertools.islice(github.successful_deployments(client, environment), HISTORY):
        payload = deployment.get("payload")
        yield Record(
            int(deployment["id"]),
            str(deployment["sha"]),
            str(deployment.get("created_at", "")),
            payload if isinstance(payload, dict) else {},
        )


def _freight_of(payload: dict[str, Any]) -> Any:
    """What a deploy shipped, as compared here: images with digests, chart, fingerprints."""
    if not payload:
        return None
    return (payload.get("images"), payload.get("chart"), payload.get("fingerprints"))


def last_good(
    client: github.Client, hub: str, env: str, trust: records.Trust | None = None
) -> tuple[Record, Record]:
    """(what runs now, the newest earlier successful deploy that shipped other freight)."""
    found = successful(client, hub, env, trust)
    current = next(found, None)
    name = freight.environment_name(hub, env)
    if current is None:
        refused = "" if trust is None else records.why_not(trust.find(name, hub, env))
        raise HubbotError(
            f"no successful deployment of {hub}/{env} is recorded (GitHub environment {name}): "
            "there is nothing to roll back to" + (f".{refused}" if refused else "")
        )
    shipped = _freight_of(current.payload)
    for record in found:
        if shipped is None or _freight_of(record.payload) != shipped:
            return current, record
    raise HubbotError(
        f"{hub}/{env} runs deployment {current.deployment_id} (commit {current.sha[:12]}), and "
        f"no earlier successful deployment in the last {HISTORY} shipped other freight: there "
        "is nothing to roll back to"
    )


def pair_paths(repo: Path, commit: str, hub: str, env: str) -> list[str]:
    """The files `hub`/`env` is made of at `commit`."""
    try:
        source = GitCommit(repo, commit)
    except HubbotError:
        raise HubbotError(
            f"commit {commit[:12]} of the deployment is not in this clone: fetch it "
            "(fetch-depth: 0)"
        ) from None
    deployment = load_deployment(source, hub)
    *values, secrets = layer_files(hub, env)
    return sorted(
        {CHART_DIR, deployment.file, *values[1:], secrets}
        | {image.path for image in deployment.images}
    )


def prepare(
    repo: Path, client: github.Client, hub: str, env: str, trust: records.Trust | None = None
) -> Rollback:
    """The revert branch (local, not pushed) for `hub`/`env`, or an error; with `trust`,
    from verified deployment records only."""
    current, target = last_good(client, hub, env, trust)
    base = promote.branch_ref(repo, freight.STAGING)
    base_sha = git.resolve(repo, base)
    paths = pair_paths(repo, target.sha, hub, env)
    changed = [
        path
        for path in paths
        if git.tree_id(repo, target.sha, path) != git.tree_id(repo, base_sha, path)
    ]
    if not changed:
        raise HubbotError(
            f"{base} already holds what deployment {target.deployment_id} (commit "
            f"{target.sha[:12]}) shipped to {hub}/{env}: nothing to revert; "
            + (
                "deploy staging from it (push to staging)"
                if env == freight.STAGING
                else "merge the promotion PR to ship it to prod"
            )
        )
    message = (
        f"rollback {hub}/{env} to deployment {target.deployment_id} (commit {target.sha[:12]})\n\n"
        f"{hub}/{env} runs deployment {current.deployment_id} (commit {current.sha[:12]}). "
        f"These files are put back as they were at {target.sha}:\n\n"
        + "".join(f"- {path}\n" for path in changed)
    )
    commit = git.restored_commit(repo, base_sha, target.sha, changed, message)
    branch = f"{BRANCH_PREFIX}-{hub}-{env}-{target.deployment_id}"
    git.set_branch(repo, branch, commit)
    return Rollback(hub, env, current, target, branch, base, commit, tuple(changed))


def body(rollback: Rollback) -> str:
    current, target = rollback.current, rollback.target
    files = "".join(f"- `{path}`\n" for path in rollback.paths)
    then = (
        "Merging it deploys staging with that config."
        if rollback.env == freight.STAGING
        else "Merging it deploys staging with that config; the promotion PR then carries the "
        "same freight to prod (prod takes only what staging ran)."
    )
    return (
        f"Rolls **{rollback.hub}/{rollback.env}** back to the freight of deployment "
        f"{target.deployment_id} (commit `{target.sha[:12]}`, {target.created_at}). It now runs "
        f"deployment {current.deployment_id} (commit `{current.sha[:12]}`, {current.created_at})."
        f"\n\nFiles put back as they were at `{target.sha[:12]}`:\n\n{files}\n{then} The rendered "
        "diff below lists every pair these files change (a shared chart or image changes "
        "other hubs too).\n"
    )


def open_pull(repo: Path, client: github.Client, rollback: Rollback) -> dict[str, Any]:
    """Push the branch to `origin` and open its pull request into staging."""
    if "origin" not in git.remotes(repo):
        raise HubbotError(
            f"this clone has no remote `origin` to push {rollback.branch} to: push it yourself "
            f"(`git push <remote> {rollback.branch}`) and open a pull request into staging"
        )
    git.push(repo, "origin", rollback.branch)
    title = f"Rollback {rollback.hub}/{rollback.env} to deployment {rollback.target.deployment_id}"
    return github.create_pull(client, rollback.branch, freight.STAGING, title, body(rollback))
