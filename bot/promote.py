"""Promotion: the one pull request staging -> prod, and the rule that prod takes only staging.

The promotion PR's body is rebuilt after every good staging deploy: the freight
that staging ran per hub (what prod will run, digest for digest) and the diff of
what each prod pair will receive.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot import diffreport, git, github, markdown, records
from bot.diffs import build_report
from bot.errors import HubbotError
from bot.freight import PROD, STAGING, staging_records
from bot.hubploy import discover_hubs
from bot.plan import plan
from bot.source import GitCommit

TITLE = "Promote staging to prod"
MARKER = "<!-- hubbot:promotion -->"
BODY_LIMIT = markdown.COMMENT_LIMIT


@dataclass(frozen=True)
class Promotion:
    pull: dict[str, Any]
    created: bool
    body: str


def branch_ref(repo: Path, branch: str) -> str:
    """The remote-tracking ref of `branch` when the clone has one (CI), else the branch."""
    for candidate in (f"origin/{branch}", branch):
        try:
            git.resolve(repo, candidate)
        except HubbotError:
            continue
        return candidate
    raise HubbotError(f"branch {branch!r} is not in this clone: fetch it (fetch-depth: 0)")


def check_pull_into_prod(pull: dict[str, Any]) -> None:
    """A PR into prod must be this repository's staging branch: prod runs only what staging ran."""
    base_repo = pull["base"]["repo"]["full_name"]
    head = pull["head"]
    head_repo = (head.get("repo") or {}).get("full_name", "a deleted fork")
    if head["ref"] != STAGING or head_repo != base_repo:
        raise HubbotError(
            f"pull requests into {PROD} must come from the {STAGING} branch of {base_repo}, "
            f"but #{pull['number']} comes from {head_repo}:{head['ref']}: target {STAGING} "
            f"instead; hubbot keeps the promotion PR {STAGING} -> {PROD} up to date"
        )


def freight_table(found: dict[str, records.Record | None]) -> str:
    lines = [
        "| hub | images (digest staging ran) | chart | common config | staging deployment |",
        "|---|---|---|---|---|",
    ]
    for hub, record in found.items():
        if record is None:
            lines.append(f"| {markdown.escape_cell(hub)} | no verified successful staging "
                         "deploy recorded | | | |")
            continue
        payload = record.payload
        images = "<br>".join(
            markdown.inline_code(image["reference"], in_table=True)
            for image in payload.get("images", [])
        )
        chart = payload.get("chart", {})
        chart_cell = markdown.inline_code(
            f"{chart.get('name')} {chart.get('version')} lock {chart.get('lock_digest', '')[:19]}",
            in_table=True,
        )
        common = markdown.inline_code(
            payload.get("fingerprints", {}).get("common", "")[:19], in_table=True
        )
        lines.append(
            f"| {markdown.escape_cell(hub)} | {images} | {chart_cell} | {common} | "
            f"{record.deployment_id} at {markdown.inline_code(record.sha[:12])} |"
        )
    return "\n".join(lines) + "\n"


def body(
    repo: Path,
    client: github.Client,
    redact: Callable[[str], str] = str,
    trust: records.Trust | None = None,
) -> str:
    base = GitCommit(repo, branch_ref(repo, PROD), label=PROD)
    head = GitCommit(repo, branch_ref(repo, STAGING), label=STAGING)
    result = plan(base, head)
    prod_only = dataclasses.replace(
        result, pairs=tuple(pair for pair in result.pairs if pair.env == PROD)
    )
    report = build_report(prod_only, redact=redact, render_manifests=True)
    hubs = discover_hubs(head)
    if trust is None:
        freight = (
            "Not shown: the staging records cannot be verified here "
            f"({records.PUBLIC_KEYS_VARIABLE} is not set).\n"
        )
    else:
        latest = {hub: next(iter(staging_records(trust, hub).verified), None) for hub in hubs}
        freight = freight_table(latest)
    document = (
        f"{MARKER}\n"
        f"Merging this deploys to {PROD} exactly what {STAGING} runs: the same image digests, "
        "chart and common config (checked again at deploy time; nothing is built).\n\n"
        f"## Freight\n\n{freight}\n"
        f"## What {PROD} will receive\n\n{diffreport.markdown(report, promotion=True)}"
    )
    return markdown.truncate(
        document, BODY_LIMIT, "_The diff is cut here: the full report is in the job summary._"
    )


def promote(
    repo: Path,
    client: github.Client,
    redact: Callable[[str], str] = str,
    trust: records.Trust | None = None,
) -> Promotion:
    """Open the promotion PR, or update the open one in place; the freight table lists
    only records `trust` verifies."""
    text = body(repo, client, redact, trust)
    existing = github.find_pull(client, head=STAGING, base=PROD)
    if existing is not None:
        pull = github.update_pull(client, existing["number"], title=TITLE, body=text)
        return Promotion(pull, False, text)
    return Promotion(github.create_pull(client, STAGING, PROD, TITLE, text), True, text)
