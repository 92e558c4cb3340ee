"""`hubbot ci [--event NAME --event-path FILE --ref REF]`: the whole pipeline for one event.

Reads the GitHub event (GITHUB_EVENT_NAME, GITHUB_EVENT_PATH, GITHUB_REF, or
the flags) and runs, step by step, printing a heading and a duration for each:

- pull_request to staging: validate (against the base's schemas too), check
  secrets against .sops.yaml, plan, build without push, diff, comment (which
  flags a policy change);
- pull_request to prod: the head check, the secrets check, then the prod diff
  and comment;
- push to staging: validate, check secrets, plan, build and push (with no staging
  pair to deploy, record the staging run), deploy the affected staging pairs
  (recorded as GitHub deployments), promote;
- push to prod: refuse a working tree that differs from its commit, validate, check
  secrets, plan, verify the commit tree and freight, deploy the affected prod pairs.

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
    imagediff,
    markdown,
    memfs,
    prcomment,
    promote,
    records,
    scope,
    sops,
    sops_config,
    startup,
    verdicts,
)
from bot.diffreport import ARTIFACT
from bot.diffreport import markdown as report_markdown
from bot.diffs import build_report
from bot.engine import Engine, connect
from bot.errors import HubbotError, Location
from bot.fanout import gather, read_outcomes, targets_of, write_outcome
from bot.hubploy import discover_hubs, environment, load_deployment, printable
from bot.plan import ImagePlan, Pair, Plan, plan
from bot.redact import Redactor
from bot.source import GitCommit, Source, WorkTree
from bot.values import build

STAGING = freight.STAGING
PROD = freight.PROD
NO_COMMIT = "0" * 40
OIDC_AUDIENCE = "sts.amazonaws.com"
JOBS = ("all", "plan", "deploy", "gather")
OUTCOMES = Path("hubbot-outcomes")
# What the pipeline reads of GitHub's webhook payloads, in the JSON type GitHub's docs
# give, parents first: (dotted key, type, required).
EVENT_FIELDS: dict[str, tuple[tuple[str, str, bool], ...]] = {
    "pull_request": (
        ("pull_request", "object", True),
        ("pull_request.number", "integer", True),
        ("pull_request.base", "object", True),
        ("pull_request.base.ref", "string", True),
        ("pull_request.base.sha", "string", True),
        ("pull_request.base.repo", "object", True),
        ("pull_request.base.repo.full_name", "string", True),
        ("pull_request.head", "object", True),
        ("pull_request.head.ref", "string", True),
        ("pull_request.head.sha", "string", True),
        ("pull_request.head.repo", "object or null", True),  # null once the fork is deleted
        ("pull_request.head.repo.full_name", "string", True),
    ),
    "push": (
        ("ref", "string", True),
        # examples/ leaves them out, as for a new branch: the pipeline does without.
        ("before", "string", False),
        ("after", "string", False),
    ),
}


def register(verbs: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = verbs.add_parser("ci", help="run the CI pipeline for a GitHub event")
    parser.add_argument("--event", metavar="NAME", help="default: $GITHUB_EVENT_NAME")
    parser.add_argument(
        "--event-path", type=Path, metavar="FILE", help="default: $GITHUB_EVENT_PATH"
    )
    parser.add_argument("--ref", metavar="REF", help="default: $GITHUB_REF")
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="print the comment it would post; no GitHub, no builds, pushes or deploys",
    )
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
    except RecursionError:  # nesting no GitHub payload has
        raise HubbotError(f"cannot read the event payload {path}: it nests too deep") from None
    if not isinstance(payload, dict):
        raise HubbotError(
            f"the {name} event payload has the JSON type {json_type(payload)}, not object "
            "as GitHub sends it: pass the event file GitHub sent",
            Location(str(path)),
        )
    # The fan-out jobs refuse any other event than a push (pushed_branch): none of it is read.
    if args.job == "all" or name == "push":
        check_fields(name, payload, path)
    ref = args.ref or os.environ.get("GITHUB_REF") or str(payload.get("ref", ""))
    return Event(name, payload, ref)


def check_fields(name: str, payload: dict[str, Any], path: Path) -> None:
    """Every field of EVENT_FIELDS[name] there and of its type, else one error naming it."""
    for dotted, wanted, required in EVENT_FIELDS.get(name, ()):
        *parents, key = dotted.split(".")
        parent: Any = payload
        for part in parents:
            parent = parent.get(part) if isinstance(parent, dict) else None
        if not isinstance(parent, dict):
            continue  # under a null allowed above
        if key not in parent:
            if not required:
                continue
            raise HubbotError(
                f"the {name} event has no `{dotted}`, which GitHub's {name} payload always "
                "has: pass the event file GitHub sent",
                Location(str(path)),
            )
        found = json_type(parent[key])
        if found not in wanted.split(" or "):
            raise HubbotError(
                f"`{dotted}` of the {name} event has the JSON type {found}, not {wanted} as "
                f"in GitHub's {name} payload: pass the event file GitHub sent",
                Location(str(path)),
            )


def json_type(value: object) -> str:
    """The JSON type of a decoded value, as GitHub's docs name them."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


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
    dry_run: bool = False

    def client(self) -> github.Client:
        return github.client_from_env(assert_clean=self.redactor.assert_clean)

    def record_key(self, env: str) -> records.SigningKey | None:
        return records.signing_key_for(os.environ, self.redactor.register, env)

    def trust(self, client: github.Client) -> records.Trust | None:
        return records.trust_from_env(client, self.repo, os.environ)


def run(args: argparse.Namespace) -> int:
    event = read_event(args)
    job = "" if args.job == "all" else f" ({args.job} job)"
    report = Report(f"hubbot ci: {event.name} {event.ref}{job}".strip())
    ctx = Context(args.repo, args.redactor, report, args.dry_run)
    try:
        with oidc_credentials():
            return pipeline(ctx, event) if args.job == "all" else fan_out_job(ctx, event, args)
    finally:
        actions.append_summary(report.markdown(), assert_clean=args.redactor.assert_clean)


def pipeline(ctx: Context, event: Event) -> int:
    if event.name == "pull_request":
        pull = event.payload["pull_request"]  # an object: read_event checked the fields read
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


def validate_step(
    ctx: Context,
    base_ref: str,
    problems: list[prcomment.Problem] | None = None,
    *,
    only_changed: bool = False,
) -> None:
    """Validate the checkout, against the schemas at `base_ref` too, refusing what
    Kubernetes would refuse in the change from it; each problem also goes to `problems`
    (for the PR comment); `only_changed` (pull requests): only the pairs whose inputs
    differ from `base_ref` (bot/scope.py)."""
    with ctx.report.step("validate"):
        output = "github" if os.environ.get("GITHUB_ACTIONS") == "true" else "text"
        found: list[tuple[str, HubbotError]] = []
        status = verdicts.validate(
            ctx.repo,
            output_format=output,
            base=base_ref,
            no_startup=True,  # it runs in its own step, for the affected pairs only
            only_changed=only_changed,
            found=found,
        )
        if problems is not None:
            problems += [prcomment.Problem(where, error) for where, error in found]
        if status != 0:
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
            print(f"  {printable(failure.hub)}: {failure.error}")
        if result.failed:
            raise HubbotError("hubs left out of the plan: fix the problems listed above")
    return result


def only_env(result: Plan, env: str) -> Plan:
    return dataclasses.replace(result, pairs=tuple(p for p in result.pairs if p.env == env))


def diff_markdown(
    ctx: Context, result: Plan, *, promotion: bool = False
) -> tuple[str, list[str]]:
    """The diff report's markdown, and the changes in it that Kubernetes would refuse."""
    with ctx.report.step("diff"):
        report = build_report(result, redact=ctx.redactor.redact, render_manifests=True)
        text = report_markdown(report, promotion=promotion)
        ctx.redactor.assert_clean(text, "the diff report")
        ctx.report.sections.append(text)
        if os.environ.get("GITHUB_ACTIONS") == "true":  # the workflow uploads it
            (ctx.repo / ARTIFACT).write_text(text, encoding="utf-8")
        print(text, end="" if text.endswith("\n") else "\n")
    return text, report.refused


def comment_and_check(
    ctx: Context, result: Plan, review: prcomment.Review, *, promotion: bool = False
) -> None:
    """Put the start-up verdicts and the diff in the review (it becomes the comment); the
    check fails on a change that cannot ship."""
    startup_text, failing = startup_step(ctx, result)
    text, refused = diff_markdown(ctx, result, promotion=promotion)
    review.diff = startup_text + text
    refused += [f"{pair}: the start-up check fails" for pair in failing]
    if refused:
        raise HubbotError(f"this change cannot be deployed: {'; '.join(refused)}")


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
        checked_pairs = startup.check_many(
            source, [build(source, pair.hub, pair.env) for pair in pairs]
        )
        for pair, checked in zip(pairs, checked_pairs, strict=True):
            name = f"{pair.hub}/{pair.env}"
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


def comment_step(ctx: Context, pull: dict[str, Any], review: prcomment.Review) -> None:
    """Post the review as the PR's sticky comment (a dry run prints it instead)."""
    if ctx.dry_run:
        text = prcomment.render(review, ctx.report.steps, None)
        ctx.redactor.assert_clean(text, "the PR comment")
        print(f"--- the comment hubbot would post on #{pull['number']} ---\n{text}---")
        ctx.report.skip("comment", "dry run: the comment is printed above")
        return
    if is_fork(pull):
        ctx.report.skip(
            "comment",
            "a fork's pull request gets a read-only token; the diff is in this job summary",
        )
        return
    with ctx.report.step("comment"):
        client = ctx.client()
        previous = github.read_sticky(client, pull["number"])
        text = prcomment.render(review, ctx.report.steps, previous)
        comments = github.publish_comment(
            client, pull["number"], text, full_link=actions.run_url()
        )
        print(f"comment: {comments[0].get('html_url', '')}")


def head_commit(ctx: Context, sha: str) -> str:
    """The PR head as a full commit id (an example event may name a ref such as HEAD)."""
    try:
        return git.resolve(ctx.repo, sha)
    except HubbotError:
        return sha


@contextmanager
def reviewing(ctx: Context, pull: dict[str, Any]) -> Iterator[prcomment.Review]:
    """A review of the PR's head that becomes its comment however the block ends."""
    review = prcomment.Review(
        repository=str(pull["base"]["repo"]["full_name"]),
        head=head_commit(ctx, str(pull["head"]["sha"])),
        server=os.environ.get("GITHUB_SERVER_URL") or prcomment.SERVER,
    )
    try:
        yield review
    except HubbotError as exc:
        review.failure = exc.message
        comment_step(ctx, pull, review)
        raise
    comment_step(ctx, pull, review)


def is_fork(pull: dict[str, Any]) -> bool:
    head_repo = (pull["head"].get("repo") or {}).get("full_name")
    return bool(head_repo != pull["base"]["repo"]["full_name"])


# --- pull requests ----------------------------------------------------------------------


def pull_request_to_staging(ctx: Context, pull: dict[str, Any]) -> int:
    base = pull["base"]["sha"]
    with reviewing(ctx, pull) as review:
        validate_step(ctx, base, review.problems, only_changed=True)
        secrets_step(ctx, base)
        head = GitCommit(ctx.repo, "HEAD")
        result = plan_step(ctx, base, head)
        changed = [image for image in result.images if image.changed]
        if not changed:
            ctx.report.skip("build", "no image changed")
        else:
            review_build(ctx, review, result, changed, ask_registry=not is_fork(pull))
        comment_and_check(ctx, result, review)
    return 1 if review.failed else 0


def review_build(
    ctx: Context,
    review: prcomment.Review,
    result: Plan,
    changed: list[ImagePlan],
    *,
    ask_registry: bool = True,
) -> None:
    """Build the PR's changed images without pushing, and say what their contents change.

    Built whenever the registry cannot tell that the tag exists (pull request
    workflows may have no cloud credentials, and a fork's never has): an image that
    does not build fails the check. Without a build, the packages come from the
    environment spec.
    """
    hubs = sorted({hub for image in changed for hub in image.hubs})
    if ctx.dry_run:
        ctx.report.skip("build", "dry run: builds nothing")
        review.images = imagediff.markdown(spec_diffs(ctx, result, changed, "not built: dry run"))
        return
    source = WorkTree(ctx.repo)
    registry = ask_registry
    wanted = {image.reference for image in changed}
    if not ask_registry:
        print("a fork's pull request cannot ask the registry: building the changed images")
    else:
        try:
            wanted = {s.reference for s in builder.plan(source, hubs, push=False) if not s.exists}
        except HubbotError as exc:
            registry = False
            print(f"cannot ask the registry which tags exist ({exc}): building the changed images")
    if not wanted:
        ctx.report.skip("build", "every changed image is already in the registry")
        review.images = imagediff.markdown(
            spec_diffs(ctx, result, changed, "not built: the registry has it already")
        )
        return
    title = "build (no push)" + ("" if registry else ": the registry cannot be asked")
    with ctx.report.step(title) as failures:
        try:
            engine = Engine(connect())
            assert result.sources is not None, "plan() always records its sources"
            reviewed = builder.build_for_review(
                result.sources[0], source, hubs, wanted,
                registry=registry, on_line=print, engine=engine,
            )
            review.images = imagediff.markdown([compare(engine, item) for item in reviewed])
        except HubbotError as exc:
            print(exc)
            failures.append(exc.message)
            review.build_failure = str(exc)


def compare(engine: Engine, item: builder.Reviewed) -> imagediff.ImageDiff:
    diff = imagediff.from_images(engine, item.previous, item.head.reference, item.head.hubs)
    return dataclasses.replace(diff, note=item.note) if item.note else diff


def spec_diffs(
    ctx: Context, result: Plan, changed: list[ImagePlan], why: str
) -> list[imagediff.ImageDiff]:
    assert result.sources is not None, "plan() always records its sources"
    base, head = result.sources
    previous = {
        ref.name: (ref.reference, ref.directory)
        for ref in (w.ref for w in builder.collect(base, discover_hubs(base)))
    }
    return [
        imagediff.from_specs(
            base, head, previous.get(image.name), (image.reference, image.directory),
            image.hubs, why,
        )
        for image in changed
    ]


def pull_request_to_prod(ctx: Context, pull: dict[str, Any]) -> int:
    with ctx.report.step("head check"):
        promote.check_pull_into_prod(pull)
    secrets_step(ctx)
    base = pull["base"]["sha"]
    with reviewing(ctx, pull) as review:
        head = GitCommit(ctx.repo, "HEAD")
        result = only_env(plan_step(ctx, base, head), PROD)
        comment_and_check(ctx, result, review, promotion=True)
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


def targets_in(result: Plan, env: str) -> list[deploy.Target]:
    return [deploy.Target(p.hub, p.env) for p in result.deployable() if p.env == env]


def deploy_step(
    ctx: Context, event: Event, env: str, targets: list[deploy.Target], client: github.Client
) -> list[deploy.Outcome]:
    if not targets:
        ctx.report.skip(f"deploy {env}", "no pair changed")
        return []
    ours = checked_out(ctx, event)
    with ctx.report.step(f"deploy {env}") as failures:
        source = WorkTree(ctx.repo)
        outcomes, stopped = deploy.deploy_targets(
            ctx.repo,
            source,
            sops.decryptor(ctx.redactor, cwd=ctx.repo),
            ctx.redactor,
            targets,
            freight.GitHubRecorder(client, ours, ctx.record_key(env)),
            freight.freight_check(source, ctx.trust(client), ours),
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
    ours = checked_out(ctx, event)
    if branch == PROD:
        # Before anything runs: prod ships a commit, never a working tree.
        freight.require_committed(ours)
    base = push_base(ctx, event, PROD if branch == STAGING else STAGING)
    validate_step(ctx, base)
    secrets_step(ctx)
    result = only_env(plan_step(ctx, base, GitCommit(ctx.repo, "HEAD"), keyed=True), branch)
    startup_gate(ctx, result, branch)
    if dry_run_ends(ctx, ("build and push" if branch == STAGING else "verify freight",)):
        return result
    if branch == STAGING:
        with ctx.report.step("build and push"):
            hubs = discover_hubs(WorkTree(ctx.repo))
            for image in builder.ensure_images(WorkTree(ctx.repo), hubs, True, on_line=print):
                print(f"{image.name}:{image.tag}: {image.digest}")
        if not targets_in(result, STAGING):
            record_run_step(ctx, ours)
    else:
        verify_freight_step(ctx, result.deployable(), ours)
    return result


def record_run_step(ctx: Context, ours: freight.Checkout) -> None:
    """No staging pair to deploy (a change only prod receives): record that this commit's
    tree went through staging, since no staging deployment of it will."""
    key = ctx.record_key(STAGING)
    if key is None:
        ctx.report.skip(
            "record staging run",
            f"{records.SIGNING_KEY_VARIABLE} is not set: prod will not count it",
        )
        return
    if ours.uncommitted:
        ctx.report.skip("record staging run", "the working tree differs from its commit")
        return
    with ctx.report.step("record staging run"):
        freight.record_staging_run(ctx.client(), ours, key)


def dry_run_ends(ctx: Context, steps: tuple[str, ...]) -> bool:
    """In a dry run, skip `steps` (they need GitHub, a registry or a cluster): True."""
    if ctx.dry_run:
        for title in steps:
            ctx.report.skip(title, "dry run")
    return ctx.dry_run


def push_to_staging(ctx: Context, event: Event) -> int:
    result = plan_push(ctx, event, STAGING)
    if dry_run_ends(ctx, (f"deploy {STAGING}", "promote")):
        return 0
    outcomes = deploy_step(ctx, event, STAGING, targets_in(result, STAGING), ctx.client())
    if not all(outcome.ok for outcome in outcomes):
        ctx.report.skip("promote", "a staging deploy failed")
        return 1
    promote_step(ctx)
    return 0


def promote_step(ctx: Context) -> None:
    with ctx.report.step("promote"):
        client = ctx.client()
        promotion = promote.promote(ctx.repo, client, ctx.redactor.redact, ctx.trust(client))
        url = promotion.pull.get("html_url", "")
        action = "opened" if promotion.created else "updated"
        print(f"{action} the promotion PR #{promotion.pull['number']}: {url}")
        ctx.report.sections.append(f"Promotion PR {action}: {url}\n")


def push_to_prod(ctx: Context, event: Event) -> int:
    result = plan_push(ctx, event, PROD)
    if dry_run_ends(ctx, (f"deploy {PROD}",)):
        return 0
    outcomes = deploy_step(ctx, event, PROD, targets_in(result, PROD), ctx.client())
    return 0 if all(outcome.ok for outcome in outcomes) else 1


def verify_freight_step(ctx: Context, targets: list[Pair], ours: freight.Checkout) -> None:
    with ctx.report.step("verify freight"):
        source = WorkTree(ctx.repo)
        client = ctx.client()
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
        # Before anything, the outcome file named after the pair included.
        environment(load_deployment(WorkTree(ctx.repo), args.hub), args.env)
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
