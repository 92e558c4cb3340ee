"""`hubbot ci [--event NAME --event-path FILE --ref REF]`: the whole pipeline for one event.

Reads the GitHub event (GITHUB_EVENT_NAME, GITHUB_EVENT_PATH, GITHUB_REF, or
the flags) and runs, step by step, printing a heading and a duration for each:

- pull_request to staging: validate (against the base's schemas too), check
  secrets against .sops.yaml, plan, build without push, diff, comment (which
  flags a policy change);
- pull_request to prod: the head check, the secrets check, then the prod diff
  and comment;
- push to staging: validate, check secrets, plan, build and push, deploy the
  affected staging pairs (recorded as GitHub deployments), promote;
- push to prod: validate, check secrets, plan, verify the freight, deploy the
  affected prod pairs.

That is `--job all`, for a laptop or a small fleet. The deploy workflow fans a push
out instead (see bot/fanout.py): `--job plan` validates, plans, builds and pushes (or
verifies prod's freight) and emits the matrix of the pushed branch's pairs;
`--job deploy --hub HUB --env ENV` deploys one pair and writes its outcome file;
`--job gather` reads every outcome, prints one table, and (staging) promotes only when
every pair succeeded.

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
    policy,
    promote,
    scope,
    sops,
    sops_config,
    startup,
)
from bot.commands import validate
from bot.diffreport import markdown as report_markdown
from bot.diffs import build_report
from bot.errors import HubbotError
from bot.fanout import gather, read_outcomes, targets_of, write_outcome
from bot.hubploy import discover_hubs
from bot.plan import Pair, Plan, plan
from bot.redact import Redactor
from bot.source import GitCommit, Source, WorkTree
from bot.values import build

STAGING = freight.STAGING
PROD = freight.PROD
NO_COMMIT = "0" * 40
OIDC_AUDIENCE = "sts.amazonaws.com"
JOBS = ("all", "plan", "deploy", "gather")
OUTCOMES = Path("hubbot-outcomes")


def register(verbs: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = verbs.add_parser("ci", help="run the CI pipeline for a GitHub event")
    parser.add_argument("--event", metavar="NAME", help="default: $GITHUB_EVENT_NAME")
    parser.add_argument(
        "--event-path", type=Path, metavar="FILE", help="default: $GITHUB_EVENT_PATH"
    )
    parser.add_argument("--ref", metavar="REF", help="default: $GITHUB_REF")
    fan_out = parser.add_argument_group("deploys fanned out over jobs (pushes only)")
    fan_out.add_argument(
        "--job", choices=JOBS, default="all", help="the part of a push's pipeline to run"
    )
    fan_out.add_argument("--hub", metavar="HUB", help="deploy: the pair's hub")
    fan_out.add_argument("--env", metavar="ENV", help="deploy: the pair's environment")
    fan_out.add_argument(
        "--outcomes",
        type=Path,
        default=OUTCOMES,
        metavar="DIR",
        help=f"deploy: where to write the outcome; gather: where they are (default: {OUTCOMES})",
    )
    fan_out.add_argument("--matrix", metavar="JSON", help="gather: the plan job's matrix")
    fan_out.add_argument(
        "--plan-result", metavar="RESULT", help="gather: how the plan job ended (success, ...)"
    )
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


def run(args: argparse.Namespace) -> int:
    event = read_event(args)
    job = "" if args.job == "all" else f" ({args.job} job)"
    report = Report(f"hubbot ci: {event.name} {event.ref}{job}".strip())
    ctx = Context(args.repo, args.redactor, report)
    try:
        with oidc_credentials():
            return pipeline(ctx, event) if args.job == "all" else fan_out_job(ctx, event, args)
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


def validate_step(ctx: Context, base_ref: str, *, only_changed: bool = False) -> None:
    """Validate the checkout, against the schemas at `base_ref` too, refusing what
    Kubernetes would refuse in the change from it; `only_changed` (pull requests): only
    the pairs whose inputs differ from `base_ref` (bot/scope.py)."""
    with ctx.report.step("validate"):
        output = "github" if os.environ.get("GITHUB_ACTIONS") == "true" else "text"
        # The start-up check runs in its own step, for the affected pairs only.
        args = argparse.Namespace(
            repo=ctx.repo,
            hubs=[],
            env=None,
            format=output,
            base=base_ref,
            no_startup=True,
            only_changed=only_changed,
        )
        if validate.run(args) != 0:
            raise HubbotError("validation failed: fix the problems listed above")


def secrets_step(ctx: Context, base_ref: str | None = None) -> None:
    """Every secrets file encrypted as its .sops.yaml creation rule says (no keys needed);
    with `base_ref` (pull requests), those that differ from it unless the rules changed."""
    with ctx.report.step("secrets"):
        source = WorkTree(ctx.repo)
        rules = sops_config.load_rules(source)
        failed = []
        files = sops_config.secrets_files(source)
        if base_ref is not None:
            checked = scope.files_to_check(GitCommit(ctx.repo, base_ref), source, files)
            if len(checked) < len(files):
                print(
                    f"{len(files) - len(checked)} of {len(files)} secrets files unchanged since "
                    f"{base_ref[:12]}, and so is {sops_config.CONFIG_FILE}: not checked again"
                )
            files = checked
        for file in files:
            try:
                sops_config.check_against_rules(rules, file, source.read(file) or "")
            except HubbotError as exc:
                print(f"  {exc}")
                failed.append(file)
        if failed:
            raise HubbotError(
                f"{len(failed)} secrets file(s) differ from their creation rule in "
                f"{sops_config.CONFIG_FILE}: fix the problems listed above"
            )


def plan_step(ctx: Context, base_ref: str, head: Source, *, keyed: bool = False) -> Plan:
    """The plan from `base_ref` to `head`; `keyed` (pushes, which hold the keys) lets a
    re-encrypted secrets file with unchanged values deploy nothing."""
    with ctx.report.step("plan"):
        base = GitCommit(ctx.repo, base_ref)
        decrypt = sops.decryptor(ctx.redactor, cwd=ctx.repo) if keyed else None
        result = plan(base, head, decrypt=decrypt)
        pairs = ", ".join(f"{p.hub}/{p.env}" for p in result.deployable()) or "none"
        print(f"affected pairs: {pairs}")
        for failure in result.failed:
            print(f"  {failure.hub}: {failure.error}")
        if result.failed:
            raise HubbotError("hubs left out of the plan: fix the problems listed above")
    return result


def only_env(result: Plan, env: str) -> Plan:
    return dataclasses.replace(result, pairs=tuple(p for p in result.pairs if p.env == env))


def diff_markdown(ctx: Context, result: Plan) -> tuple[str, list[str]]:
    """The diff report's markdown, and the changes in it that Kubernetes would refuse."""
    with ctx.report.step("diff"):
        report = build_report(result, redact=ctx.redactor.redact, render_manifests=True)
        text = report_markdown(report)
        ctx.redactor.assert_clean(text, "the diff report")
        ctx.report.sections.append(text)
        print(text, end="" if text.endswith("\n") else "\n")
    return text, report.refused


def comment_and_check(ctx: Context, pull: dict[str, Any], result: Plan, notice: str) -> int:
    """Comment `notice`, the start-up verdicts and the diff; the check fails (after
    commenting) on a change that cannot ship."""
    startup_text, failing = startup_step(ctx, result)
    text, refused = diff_markdown(ctx, result)
    comment_step(ctx, pull, notice + startup_text + text)
    refused += [f"{pair}: the start-up check fails" for pair in failing]
    if refused:
        raise HubbotError(f"this change cannot be deployed: {'; '.join(refused)}")
    return 0


def startup_step(ctx: Context, result: Plan) -> tuple[str, list[str]]:
    """The start-up check (the real JupyterHub) of the pairs the change affects: markdown
    with one verdict per pair, and the pairs that fail it."""
    pairs = result.deployable()
    if not pairs:
        ctx.report.skip("start-up check", "no pair changed")
        return "", []
    rows = []
    with ctx.report.step("start-up check") as failures:
        source = WorkTree(ctx.repo)
        for pair in pairs:
            name = f"{pair.hub}/{pair.env}"
            checked = startup.check(source, build(source, pair.hub, pair.env))
            for problem in checked.errors:
                print(f"  {name}: {problem}")
            for warning in checked.warnings:
                print(f"  {name}: warning: {warning}")
            verdict = checked.verdict
            if checked.errors:
                failures.append(name)
                verdict = "fails: " + "; ".join(str(problem) for problem in checked.errors)
            print(f"{name}: {verdict}")
            rows.append(f"| {pair.hub} | {pair.env} | {markdown.escape_cell(verdict)} |")
    text = (
        "#### Start-up check: the real JupyterHub with each affected pair's config\n\n"
        "| hub | env | verdict |\n|---|---|---|\n" + "\n".join(rows) + "\n\n"
    )
    ctx.report.sections.append(text)
    return text, list(failures)


def startup_gate(ctx: Context, result: Plan, env: str) -> None:
    """Before a deploy: the pairs about to deploy must pass the start-up check."""
    _, failing = startup_step(ctx, only_env(result, env))
    if failing:
        raise HubbotError(f"not deploying: the start-up check fails for {', '.join(failing)}")


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
    base = pull["base"]["sha"]
    validate_step(ctx, base, only_changed=True)
    secrets_step(ctx, base)
    head = GitCommit(ctx.repo, "HEAD")
    result = plan_step(ctx, base, head)
    changed = [image for image in result.images if image.changed]
    if is_fork(pull):
        ctx.report.skip("build", "a fork's pull request has no registry access")
    elif not changed:
        ctx.report.skip("build", "no image changed")
    else:
        build_without_push(ctx, sorted({hub for image in changed for hub in image.hubs}))
    return comment_and_check(ctx, pull, result, policy_notice(ctx, base, head))


def policy_notice(ctx: Context, base_sha: str, head: Source) -> str:
    """The comment's warning when the pull request changes policy files (empty if none)."""
    text = policy.notice(policy.changes(GitCommit(ctx.repo, base_sha), head))
    if text:
        ctx.report.sections.append(text)
        print(text, end="")
    return text


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
    secrets_step(ctx)
    base = pull["base"]["sha"]
    head = GitCommit(ctx.repo, "HEAD")
    result = only_env(plan_step(ctx, base, head), PROD)
    return comment_and_check(ctx, pull, result, policy_notice(ctx, base, head))


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


def head_sha(ctx: Context, event: Event) -> str:
    return str(
        os.environ.get("GITHUB_SHA") or event.payload.get("after") or git.resolve(ctx.repo, "HEAD")
    )


def targets_in(result: Plan, env: str) -> list[deploy.Target]:
    return [deploy.Target(p.hub, p.env) for p in result.deployable() if p.env == env]


def deploy_step(
    ctx: Context, event: Event, env: str, targets: list[deploy.Target], client: github.Client
) -> list[deploy.Outcome]:
    if not targets:
        ctx.report.skip(f"deploy {env}", "no pair changed")
        return []
    with ctx.report.step(f"deploy {env}") as failures:
        source = WorkTree(ctx.repo)
        outcomes, stopped = deploy.deploy_targets(
            ctx.repo,
            source,
            sops.decryptor(ctx.redactor, cwd=ctx.repo),
            ctx.redactor,
            targets,
            freight.GitHubRecorder(client, head_sha(ctx, event)),
            freight.freight_check(source, client),
        )
        table = deploy.table(outcomes)
        print(table)
        ctx.report.sections.append(f"## Deploy {env}\n\n{markdown.fence(table)}\n")
        failures += [str(o.target) for o in outcomes if not o.ok]
        if stopped:
            raise HubbotError("interrupted by SIGTERM: the deploys above were stopped")
    return outcomes


def plan_push(ctx: Context, event: Event, branch: str) -> Plan:
    """Validate and plan the push; then build and push every image (staging) or prove
    prod's freight is what staging ran (prod). The plan holds the branch's pairs only."""
    base = push_base(ctx, event, PROD if branch == STAGING else STAGING)
    validate_step(ctx, base)
    secrets_step(ctx)
    result = only_env(plan_step(ctx, base, GitCommit(ctx.repo, "HEAD"), keyed=True), branch)
    startup_gate(ctx, result, branch)
    if branch == STAGING:
        with ctx.report.step("build and push"):
            hubs = discover_hubs(WorkTree(ctx.repo))
            for image in builder.ensure_images(WorkTree(ctx.repo), hubs, True, on_line=print):
                print(f"{image.name}:{image.tag}: {image.digest}")
    else:
        verify_freight_step(ctx, result.deployable())
    return result


def push_to_staging(ctx: Context, event: Event) -> int:
    result = plan_push(ctx, event, STAGING)
    outcomes = deploy_step(ctx, event, STAGING, targets_in(result, STAGING), ctx.client())
    if not all(outcome.ok for outcome in outcomes):
        ctx.report.skip("promote", "a staging deploy failed")
        return 1
    promote_step(ctx)
    return 0


def promote_step(ctx: Context) -> None:
    with ctx.report.step("promote"):
        promotion = promote.promote(ctx.repo, ctx.client(), ctx.redactor.redact)
        url = promotion.pull.get("html_url", "")
        action = "opened" if promotion.created else "updated"
        print(f"{action} the promotion PR #{promotion.pull['number']}: {url}")
        ctx.report.sections.append(f"Promotion PR {action}: {url}\n")


def push_to_prod(ctx: Context, event: Event) -> int:
    result = plan_push(ctx, event, PROD)
    outcomes = deploy_step(ctx, event, PROD, targets_in(result, PROD), ctx.client())
    return 0 if all(outcome.ok for outcome in outcomes) else 1


def verify_freight_step(ctx: Context, targets: list[Pair]) -> None:
    with ctx.report.step("verify freight"):
        source = WorkTree(ctx.repo)
        check = freight.freight_check(source, ctx.client())
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


# --- a push fanned out: plan job, one deploy job per pair, gather job -------------------


def pushed_branch(event: Event) -> str:
    branch = event.ref.removeprefix("refs/heads/")
    if event.name != "push" or branch not in (STAGING, PROD):
        raise HubbotError(
            f"the plan, deploy and gather jobs run on pushes to {STAGING} or {PROD}, "
            f"not on {event.name} {event.ref}".rstrip()
        )
    return branch


def fan_out_job(ctx: Context, event: Event, args: argparse.Namespace) -> int:
    branch = pushed_branch(event)
    if args.job == "plan":
        return plan_job(ctx, event, branch)
    if args.job == "deploy":
        if not (args.hub and args.env):
            raise HubbotError("the deploy job needs its pair: --hub HUB --env ENV")
        return deploy_job(ctx, event, branch, deploy.Target(args.hub, args.env), args.outcomes)
    return gather_job(ctx, branch, args.matrix, args.plan_result, args.outcomes)


def plan_job(ctx: Context, event: Event, branch: str) -> int:
    """Plan once for the whole push; the matrix of the branch's pairs is the job's output."""
    result = plan_push(ctx, event, branch)
    pairs = targets_in(result, branch)
    matrix = json.dumps(result.matrix(), separators=(",", ":"))
    print(f"matrix: {matrix}")
    actions.set_output("matrix", matrix, assert_clean=ctx.redactor.assert_clean)
    actions.set_output("count", str(len(pairs)))
    listed = ", ".join(str(pair) for pair in pairs) or "none"
    ctx.report.sections.append(f"{len(pairs)} {branch} pair(s) to deploy, one job each: {listed}\n")
    return 0


def deploy_job(
    ctx: Context, event: Event, branch: str, target: deploy.Target, outcomes: Path
) -> int:
    """Deploy one pair and write its outcome for the gather job, whatever happens."""
    if target.env != branch:
        raise HubbotError(
            f"{target}: a push to {branch} deploys only {branch} pairs; {PROD} pairs deploy "
            f"only on a push to {PROD} (the promotion merge)"
        )
    try:
        (outcome,) = deploy_step(ctx, event, branch, [target], ctx.client())
    except HubbotError as exc:
        failed = deploy.Outcome(target, False, 0.0, ctx.redactor.redact(str(exc)))
        write_outcome(outcomes, failed, ctx.redactor.assert_clean)
        raise
    write_outcome(outcomes, outcome, ctx.redactor.assert_clean)
    return 0 if outcome.ok else 1


def gather_job(
    ctx: Context, branch: str, matrix: str | None, plan_result: str | None, outcomes: Path
) -> int:
    """Every pair's outcome in one table; the promotion only when every staging pair
    succeeded (a pair that reported nothing has failed)."""
    with ctx.report.step("gather") as failures:
        if plan_result not in (None, "success"):
            raise HubbotError(
                f"the plan job ended with {plan_result!r}: no pair was deployed"
                + (", and the promotion PR is left as it is" if branch == STAGING else "")
            )
        expected = targets_of(matrix or "", "the plan job's matrix (--matrix)")
        gathered = gather(expected, read_outcomes(outcomes))
        table = deploy.table(gathered) if gathered else f"no {branch} pair changed"
        print(table)
        ctx.report.sections.append(f"## Deploy {branch}\n\n{markdown.fence(table)}\n")
        failures += [str(outcome.target) for outcome in gathered if not outcome.ok]
    if failures:
        if branch == STAGING:
            ctx.report.skip("promote", f"staging deploys failed: {', '.join(failures)}")
        return 1
    if branch == STAGING:
        promote_step(ctx)
    return 0


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
