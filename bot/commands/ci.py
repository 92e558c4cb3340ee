"""`hubbot ci [--event NAME --event-path FILE --ref REF]`: the whole pipeline for one event.

Reads the GitHub event (GITHUB_EVENT_NAME, GITHUB_EVENT_PATH, GITHUB_REF, or
the flags) and runs, step by step, printing a heading and a duration for each:

- pull_request to staging: validate, plan, build without push, diff, comment;
- pull_request to prod: the head check, then the prod diff and comment;
- push to staging: validate, plan, build and push, deploy the affected staging
  pairs (recorded as GitHub deployments), record the staging run, promote;
- push to prod: refuse a working tree that differs from its commit, validate, plan,
  verify the commit tree and freight, deploy the affected prod pairs.

A pull request from a fork has no secrets, no AWS and a read-only token: it is
validated and diffed in shape-only mode and the report goes to the job summary.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from bot import (
    actions,
    builder,
    deploy,
    freight,
    git,
    github,
    markdown,
    memfs,
    promote,
    records,
    sops,
)
from bot.commands import validate
from bot.diffreport import markdown as report_markdown
from bot.diffs import build_report
from bot.errors import HubbotError
from bot.hubploy import discover_hubs
from bot.plan import Plan, plan
from bot.redact import Redactor
from bot.source import GitCommit, Source, WorkTree
from bot.values import build

STAGING = freight.STAGING
PROD = freight.PROD
NO_COMMIT = "0" * 40
OIDC_AUDIENCE = "sts.amazonaws.com"


def register(verbs: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = verbs.add_parser("ci", help="run the CI pipeline for a GitHub event")
    parser.add_argument("--event", metavar="NAME", help="default: $GITHUB_EVENT_NAME")
    parser.add_argument(
        "--event-path", type=Path, metavar="FILE", help="default: $GITHUB_EVENT_PATH"
    )
    parser.add_argument("--ref", metavar="REF", help="default: $GITHUB_REF")
    parser.set_defaults(func=run)


@dataclass(frozen=True)
class Event:
    name: str
    payload: dict[str, Any]
    ref: str


def read_event(args: argparse.Namespace) -> Event:
    name = args.event or os.environ.get("GITHUB_EVENT_NAME", "")
    path = args.event_path or (
        Path(os.environ["GITHUB_EVENT_PATH"]) if os.environ.get("GITHUB_EVENT_PATH") else None
    )
    if not name or path is None:
        raise HubbotError(
            "no event: pass --event NAME --event-path FILE, or run in GitHub Actions "
            "(GITHUB_EVENT_NAME, GITHUB_EVENT_PATH)"
        )
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise HubbotError(f"cannot read the event payload {path}: {exc}") from None
    ref = args.ref or os.environ.get("GITHUB_REF") or str(payload.get("ref", ""))
    return Event(name, payload, ref)


@dataclass
class Report:
    """Steps with their outcome and duration, and the markdown the job summary gets."""

    title: str
    steps: list[tuple[str, str, float]] = field(default_factory=list)
    sections: list[str] = field(default_factory=list)

    @contextmanager
    def step(self, title: str) -> Iterator[list[str]]:
        """Run a step; the block appends to the yielded list to mark it failed (not fatal)."""
        print(f"==> {title}", flush=True)
        start = time.monotonic()
        failures: list[str] = []
        outcome = "ok"
        try:
            yield failures
            if failures:
                outcome = "failed"
        except HubbotError:
            outcome = "failed"
            raise
        finally:
            seconds = time.monotonic() - start
            self.steps.append((title, outcome, seconds))
            print(f"<== {title}: {outcome} in {seconds:.1f}s", flush=True)

    def skip(self, title: str, reason: str) -> None:
        print(f"==> {title}: skipped ({reason})", flush=True)
        self.steps.append((title, f"skipped: {reason}", 0.0))

    def markdown(self) -> str:
        rows = "\n".join(
            f"| {markdown.escape_cell(title)} | {markdown.escape_cell(outcome)} | {seconds:.1f}s |"
            for title, outcome, seconds in self.steps
        )
        head = f"# {self.title}\n\n| step | outcome | time |\n|---|---|---|\n{rows}\n"
        return "\n".join([head, *self.sections])


@dataclass
class Context:
    repo: Path
    redactor: Redactor
    report: Report

    def client(self) -> github.Client:
        return github.client_from_env(assert_clean=self.redactor.assert_clean)

    def record_key(self) -> records.RecordKey | None:
        return records.key_from_env(os.environ, self.redactor.register)

    def trust(self, client: github.Client) -> records.Trust | None:
        return records.trust_from_env(client, self.repo, os.environ, self.redactor.register)


def run(args: argparse.Namespace) -> int:
    event = read_event(args)
    report = Report(f"hubbot ci: {event.name} {event.ref}".strip())
    ctx = Context(args.repo, args.redactor, report)
    try:
        with oidc_credentials():
            return pipeline(ctx, event)
    finally:
        actions.append_summary(report.markdown(), assert_clean=args.redactor.assert_clean)


def pipeline(ctx: Context, event: Event) -> int:
    if event.name == "pull_request":
        pull = event.payload.get("pull_request")
        if not isinstance(pull, dict):
            raise HubbotError("the pull_request event has no `pull_request` object")
        base = pull["base"]["ref"]
        if base == PROD:
            return pull_request_to_prod(ctx, pull)
        if base == STAGING:
            return pull_request_to_staging(ctx, pull)
        raise HubbotError(f"pull requests into {base!r} are not handled: target {STAGING}")
    if event.name == "push":
        branch = event.ref.removeprefix("refs/heads/")
        if branch == STAGING:
            return push_to_staging(ctx, event)
        if branch == PROD:
            return push_to_prod(ctx, event)
        raise HubbotError(f"pushes to {event.ref!r} are not handled: only {STAGING} and {PROD}")
    raise HubbotError(f"event {event.name!r} is not handled: pull_request or push")


# --- shared steps -----------------------------------------------------------------------


def validate_step(ctx: Context) -> None:
    with ctx.report.step("validate"):
        output = "github" if os.environ.get("GITHUB_ACTIONS") == "true" else "text"
        args = argparse.Namespace(repo=ctx.repo, hubs=[], env=None, format=output)
        if validate.run(args) != 0:
            raise HubbotError("validation failed: fix the problems listed above")


def plan_step(ctx: Context, base_ref: str, head: Source, *, keyed: bool = False) -> Plan:
    """The plan from `base_ref` to `head`; `keyed` (pushes, which hold the keys) lets a
    re-encrypted secrets file with unchanged values deploy nothing."""
    with ctx.report.step("plan"):
        base = GitCommit(ctx.repo, base_ref)
        decrypt = sops.decryptor(ctx.redactor, cwd=ctx.repo) if keyed else None
        result = plan(base, head, decrypt=decrypt)
        pairs = ", ".join(f"{p.hub}/{p.env}" for p in result.deployable()) or "none"
        print(f"affected pairs: {pairs}")
    return result


def only_env(result: Plan, env: str) -> Plan:
    return dataclasses.replace(result, pairs=tuple(p for p in result.pairs if p.env == env))


def diff_markdown(ctx: Context, result: Plan) -> str:
    with ctx.report.step("diff"):
        report = build_report(result, redact=ctx.redactor.redact, render_manifests=True)
        text = report_markdown(report)
        ctx.redactor.assert_clean(text, "the diff report")
        ctx.report.sections.append(text)
        print(text, end="" if text.endswith("\n") else "\n")
    return text


def comment_step(ctx: Context, pull: dict[str, Any], text: str) -> None:
    if is_fork(pull):
        ctx.report.skip(
            "comment",
            "a fork's pull request gets a read-only token; the diff is in this job summary",
        )
        return
    with ctx.report.step("comment"):
        comments = github.publish_comment(
            ctx.client(), pull["number"], text, full_link=actions.run_url()
        )
        print(f"comment: {comments[0].get('html_url', '')}")


def is_fork(pull: dict[str, Any]) -> bool:
    head_repo = (pull["head"].get("repo") or {}).get("full_name")
    return bool(head_repo != pull["base"]["repo"]["full_name"])


# --- pull requests ----------------------------------------------------------------------


def pull_request_to_staging(ctx: Context, pull: dict[str, Any]) -> int:
    validate_step(ctx)
    head = GitCommit(ctx.repo, "HEAD")
    result = plan_step(ctx, pull["base"]["sha"], head)
    changed = [image for image in result.images if image.changed]
    if is_fork(pull):
        ctx.report.skip("build", "a fork's pull request has no registry access")
    elif not changed:
        ctx.report.skip("build", "no image changed")
    else:
        build_without_push(ctx, sorted({hub for image in changed for hub in image.hubs}))
    comment_step(ctx, pull, diff_markdown(ctx, result))
    return 0


def build_without_push(ctx: Context, hubs: list[str]) -> None:
    """Build the PR's missing images to prove they build; skipped when the registry cannot
    be asked (pull request workflows get no cloud credentials), since then it is unknown
    which tags are missing."""
    source = WorkTree(ctx.repo)
    try:
        builder.plan(source, hubs, push=False)
    except HubbotError as exc:
        ctx.report.skip("build", f"cannot ask the registry which tags exist: {exc}")
        return
    with ctx.report.step("build (no push)"):
        for image in builder.ensure_images(source, hubs, False, on_line=print):
            print(f"{image.name}:{image.tag}: built={image.built} pushed={image.pushed}")


def pull_request_to_prod(ctx: Context, pull: dict[str, Any]) -> int:
    with ctx.report.step("head check"):
        promote.check_pull_into_prod(pull)
    head = GitCommit(ctx.repo, "HEAD")
    result = only_env(plan_step(ctx, pull["base"]["sha"], head), PROD)
    comment_step(ctx, pull, diff_markdown(ctx, result))
    return 0


# --- pushes -----------------------------------------------------------------------------


def push_base(ctx: Context, event: Event, fallback_branch: str) -> str:
    """What the push changed from: the previous tip, else (a new branch) `fallback_branch`."""
    before = str(event.payload.get("before") or "")
    if before and before != NO_COMMIT:
        try:
            git.resolve(ctx.repo, before)
            return before
        except HubbotError:
            pass
    return promote.branch_ref(ctx.repo, fallback_branch)


def checked_out(ctx: Context, event: Event) -> freight.Checkout:
    """The commit this run ships: the event's (GITHUB_SHA, else the push's `after`) must be
    the one checked out."""
    claimed = os.environ.get("GITHUB_SHA") or str(event.payload.get("after") or "") or None
    return freight.checkout(ctx.repo, claimed)


def deploy_step(
    ctx: Context, env: str, result: Plan, client: github.Client, ours: freight.Checkout
) -> bool:
    targets = [deploy.Target(p.hub, p.env) for p in result.deployable() if p.env == env]
    if not targets:
        ctx.report.skip(f"deploy {env}", "no pair changed")
        return True
    with ctx.report.step(f"deploy {env}") as failures:
        source = WorkTree(ctx.repo)
        outcomes, stopped = deploy.deploy_targets(
            ctx.repo,
            source,
            sops.decryptor(ctx.redactor, cwd=ctx.repo),
            ctx.redactor,
            targets,
            freight.GitHubRecorder(client, ours, ctx.record_key()),
            freight.freight_check(source, ctx.trust(client), ours),
        )
        table = deploy.table(outcomes)
        print(table)
        ctx.report.sections.append(f"## Deploy {env}\n\n{markdown.fence(table)}\n")
        failures += [str(o.target) for o in outcomes if not o.ok]
        if stopped:
            raise HubbotError("interrupted by SIGTERM: the deploys above were stopped")
    return not failures


def push_to_staging(ctx: Context, event: Event) -> int:
    ours = checked_out(ctx, event)
    validate_step(ctx)
    result = plan_step(ctx, push_base(ctx, event, PROD), GitCommit(ctx.repo, "HEAD"), keyed=True)
    client = ctx.client()
    with ctx.report.step("build and push"):
        hubs = discover_hubs(WorkTree(ctx.repo))
        for image in builder.ensure_images(WorkTree(ctx.repo), hubs, True, on_line=print):
            print(f"{image.name}:{image.tag}: {image.digest}")
    if not deploy_step(ctx, STAGING, result, client, ours):
        ctx.report.skip("promote", "a staging deploy failed")
        return 1
    record_run_step(ctx, client, ours, result)
    with ctx.report.step("promote"):
        promotion = promote.promote(ctx.repo, client, ctx.redactor.redact, ctx.trust(client))
        url = promotion.pull.get("html_url", "")
        action = "opened" if promotion.created else "updated"
        print(f"{action} the promotion PR #{promotion.pull['number']}: {url}")
        ctx.report.sections.append(f"Promotion PR {action}: {url}\n")
    return 0


def record_run_step(
    ctx: Context, client: github.Client, ours: freight.Checkout, result: Plan
) -> None:
    """Every affected staging pair deployed: record that this tree went through staging,
    which is what lets prod deploy a change only prod receives."""
    key = ctx.record_key()
    if key is None:
        ctx.report.skip(
            "record staging run", f"{records.KEY_VARIABLE} is not set: prod will not deploy it"
        )
        return
    if ours.uncommitted:
        ctx.report.skip("record staging run", "the working tree differs from its commit")
        return
    with ctx.report.step("record staging run"):
        pairs = [f"{p.hub}/{p.env}" for p in result.deployable() if p.env == STAGING]
        freight.record_staging_run(client, ours, key, pairs)


def push_to_prod(ctx: Context, event: Event) -> int:
    ours = checked_out(ctx, event)
    freight.require_committed(ours)
    validate_step(ctx)
    result = plan_step(
        ctx, push_base(ctx, event, STAGING), GitCommit(ctx.repo, "HEAD"), keyed=True
    )
    client = ctx.client()
    targets = [p for p in result.deployable() if p.env == PROD]
    with ctx.report.step("verify freight"):
        source = WorkTree(ctx.repo)
        check = freight.freight_check(source, ctx.trust(client), ours)
        decrypt = sops.decryptor(ctx.redactor, cwd=ctx.repo)
        problems = []
        for pair in targets:
            try:
                check(build(source, pair.hub, pair.env, decrypt))
            except HubbotError as exc:
                problems.append(f"{pair.hub}/{pair.env}: {exc}")
        for problem in problems:
            print(problem)
        if problems:
            raise HubbotError(
                "prod freight does not match what staging ran; nothing was deployed: "
                + " | ".join(problems)
            )
    return 0 if deploy_step(ctx, PROD, result, client, ours) else 1


# --- AWS through GitHub's OIDC token ----------------------------------------------------


@contextmanager
def oidc_credentials() -> Iterator[None]:
    """In Actions with AWS_ROLE_ARN: the job's OIDC token as AWS_WEB_IDENTITY_TOKEN_FILE.

    boto3 and sops then assume the role themselves. The token file is private,
    in memory, and removed when the run ends.
    """
    url = os.environ.get("ACTIONS_ID_TOKEN_REQUEST_URL")
    bearer = os.environ.get("ACTIONS_ID_TOKEN_REQUEST_TOKEN")
    wanted = os.environ.get("AWS_ROLE_ARN") and not os.environ.get("AWS_WEB_IDENTITY_TOKEN_FILE")
    if not (wanted and url and bearer):
        yield
        return
    try:
        response = requests.get(
            url,
            params={"audience": OIDC_AUDIENCE},
            headers={"Authorization": f"bearer {bearer}"},
            timeout=30,
        )
        response.raise_for_status()
        token = str(response.json()["value"])
    except (requests.RequestException, ValueError, KeyError) as exc:
        raise HubbotError(
            f"cannot get the job's OIDC token for AWS_ROLE_ARN ({type(exc).__name__}): does "
            "the workflow grant `id-token: write`?"
        ) from None
    with memfs.private_file(token.encode(), "aws-web-identity-token") as path:
        os.environ["AWS_WEB_IDENTITY_TOKEN_FILE"] = str(path)
        try:
            yield
        finally:
            del os.environ["AWS_WEB_IDENTITY_TOKEN_FILE"]
