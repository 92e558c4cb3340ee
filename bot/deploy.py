"""Deploying (hub, environment) pairs: EFS homes, credentials, stuck-release check, helm, health.

Each pair runs in a worker of a bounded pool. A pair's failure is its outcome,
never the others' end; the run's exit status says whether any failed. The
values reach helm as one document on its standard input; the only file is the
KUBECONFIG, a sealed memory file with no name on disk (/dev/fd/N), closed when the
pair is done. Each helm dies with the bot, even one killed by SIGKILL.
"""

from __future__ import annotations

import json
import shlex
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, Protocol

from bot import efs, health, helm, sops
from bot.clusters import kubeconfig_file, provider_for
from bot.clusters.kubeconfig import credential_leaves
from bot.errors import HubbotError
from bot.freight import Freight
from bot.merge import masked
from bot.redact import Redactor
from bot.source import Source
from bot.validation import check
from bot.values import CHART_DIR, Decryptor, HubValues, build
from bot.yamlfile import dump_yaml

MAX_PARALLEL = 4
EXIT_TERMINATED = 128 + signal.SIGTERM


@dataclass(frozen=True)
class Target:
    hub: str
    env: str

    def __str__(self) -> str:
        return f"{self.hub}/{self.env}"


@dataclass(frozen=True)
class Outcome:
    target: Target
    ok: bool
    seconds: float
    detail: str  # the hub's version when ok, else what went wrong
    notes: tuple[str, ...] = ()  # problems that did not fail the deploy (its record)


class Recorder(Protocol):
    """Keeps the record of each deploy (GitHub deployments)."""

    def started(
        self, values: HubValues, freight: Freight | None
    ) -> Callable[[bool, str], list[str]]:
        """Record the start; returns what records the end (ok, description).

        Neither raises for a failure to record: problems come back as notes.
        """


# Says what a pair will ship, before anything is deployed; raises when it must not
# ship (an image missing from the registry; for prod, freight staging never ran).
FreightCheck = Callable[[HubValues], Freight]


@dataclass
class Run:
    """What every pair of one run shares."""

    repo: Path
    source: Source
    decrypt: Decryptor
    redactor: Redactor
    chart: str  # the chart argument for helm, relative to repo when inside it
    helm_major: int
    processes: helm.Processes = field(default_factory=helm.Processes)
    patience: health.Patience = field(default_factory=health.Patience)
    recorder: Recorder | None = None
    freight: FreightCheck | None = None
    say: Callable[[str], None] = print


def release_of(values: HubValues) -> helm.Release:
    return helm.Release(values.environment.release, values.environment.namespace)


def upgrade_args(values: HubValues, chart: str, helm_major: int) -> list[str]:
    return helm.upgrade_args(release_of(values), chart, values.environment.timeout, helm_major)


def deploy_one(run: Run, target: Target) -> Outcome:
    start = time.monotonic()
    notes: list[str] = []
    finish: Callable[[bool, str], list[str]] | None = None
    try:
        # Validation reads the shape only: it never sees a decrypted value.
        problems = check(run.source, build(run.source, target.hub, target.env))
        if problems:
            raise HubbotError(
                f"not deployed: {len(problems)} validation problem(s), the first: {problems[0]}"
            )
        values = build(run.source, target.hub, target.env, run.decrypt)
        freight = run.freight(values) if run.freight is not None else None
        if run.recorder is not None:
            finish = run.recorder.started(values, freight)
        version, login = _deploy(run, target, values)
        detail = f"JupyterHub {version} at {values.environment.url}; {login}"
        ok = True
    except HubbotError as exc:
        detail, ok = str(exc), False
    except Exception as exc:  # a bug in one pair must not hide the others' outcomes
        detail, ok = f"internal error (a bug in hubbot): {type(exc).__name__}: {exc}", False
    detail = run.redactor.redact(detail)
    if finish is not None:
        notes += finish(ok, detail)
    return Outcome(target, ok, time.monotonic() - start, detail, tuple(notes))


def login_of(values: HubValues) -> health.Login:
    """The login the pair's hub offers, from its merged `hub.config`."""
    return health.login_for(_hub_config(values.document), secrets_known=values.decrypted)


def _hub_config(document: dict[str, Any]) -> dict[str, Any]:
    config: Any = document
    for key in ("jupyterhub", "hub", "config"):
        config = config.get(key) if isinstance(config, dict) else None
    return config if isinstance(config, dict) else {}


def _deploy(run: Run, target: Target, values: HubValues) -> tuple[str, str]:
    """The running hub's version and what logging in did."""
    _check_stopped(run)
    # A PersistentVolume binds to any id: a wrong one would only show when user pods hang.
    efs.check_pair(values, lambda line: run.say(f"{target}: {line}"))
    run.say(f"{target}: cluster credentials")
    # A kubeconfig's structure is no secret: only its credentials go to the redactor.
    credentials = sops.decryptor(run.redactor, cwd=run.repo, secret_leaves=credential_leaves)
    config = provider_for(run.source, values.deployment, credentials).kubeconfig()
    for secret in config.secrets:
        run.redactor.register(secret)
    release = release_of(values)
    with kubeconfig_file(config) as kubeconfig:
        _check_stopped(run)
        current = helm.status(release, kubeconfig, run.processes, run.repo)
        if current is not None and current.status.startswith(helm.PENDING_PREFIX):
            raise HubbotError(helm.recovery(release, current))
        _check_stopped(run)
        run.say(
            f"{target}: helm upgrade --install {release.name} --namespace {release.namespace} "
            f"(timeout {values.environment.timeout})"
        )
        document = json.dumps(values.document).encode()
        result = helm.upgrade(
            upgrade_args(values, run.chart, run.helm_major),
            document,
            kubeconfig,
            run.processes,
            run.repo,
        )
        if result.returncode != 0:
            if run.processes.stopped:
                raise HubbotError("interrupted (SIGTERM) while helm was upgrading")
            raise HubbotError(
                f"helm upgrade failed: {helm.error_line(result.stderr, result.returncode)}"
            )
    url = values.environment.url
    run.say(f"{target}: health check {health.api_url(url)}")
    version = health.check(url, run.patience)
    login = login_of(values)
    run.say(f"{target}: login check: {health.describe(url, login)}")
    return version, health.check_login(url, login, run.patience)


def _check_stopped(run: Run) -> None:
    if run.processes.stopped:
        raise HubbotError("interrupted (SIGTERM) before it started")


def deploy_all(run: Run, targets: Sequence[Target], workers: int = MAX_PARALLEL) -> list[Outcome]:
    """Every target, at most `workers` at a time; outcomes in the order given."""
    with (
        ThreadPoolExecutor(max_workers=max(1, min(workers, len(targets)))) as pool,
        stop_on_sigterm(run.processes),
    ):
        futures = [pool.submit(deploy_one, run, target) for target in targets]
        return [future.result() for future in futures]


@contextmanager
def stop_on_sigterm(processes: helm.Processes) -> Iterator[None]:
    """On SIGTERM, stop every helm process and start no new step; workers then unwind.

    Only the main thread receives signals, so this is where it is handled; the
    workers' `finally` blocks close their KUBECONFIG files and record failure.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(signum: int, frame: FrameType | None) -> None:
        processes.stop()

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def table(outcomes: Sequence[Outcome]) -> str:
    """One line per pair: outcome, duration, detail (and any record problems)."""
    rows = [("HUB/ENV", "RESULT", "TIME", "DETAIL")]
    for outcome in outcomes:
        detail = outcome.detail + "".join(f" [record: {note}]" for note in outcome.notes)
        rows.append(
            (str(outcome.target), "ok" if outcome.ok else "FAILED", f"{outcome.seconds:.1f}s",
             detail)
        )
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row[:3], widths, strict=True))
        + "  " + row[3]
        for row in rows
    )


def dry_run(source: Source, target: Target, chart: str, helm_major: int) -> str:
    """What a deploy of `target` would run, and the values with every secret masked.

    Reads no secret and calls no cluster or cloud API: it needs no credentials.
    """
    values = build(source, target.hub, target.env)
    release = release_of(values)
    provider = values.deployment.cluster["provider"]
    command = shlex.join(["helm", *upgrade_args(values, chart, helm_major)])
    lines = [
        f"# {target}: dry run, nothing deployed",
        f"# KUBECONFIG: a memory file (no name on disk) with credentials from cluster provider "
        f"{provider!r}",
        f"# stuck-release check: helm status {release.name} --namespace {release.namespace}",
        f"# deploy: {command}",
        "#   with the values below on standard input (secrets decrypted, shown masked here)",
        f"# health check: GET {health.api_url(values.environment.url)}",
        f"# login check: {health.describe(values.environment.url, login_of(values))}",
        "---",
    ]
    return "\n".join(lines) + "\n" + dump_yaml(masked(values.merged))


def chart_argument(repo: Path, chart_dir: Path) -> str:
    """`hub/` when helm can use the chart in place, else the prepared copy's path."""
    try:
        return chart_dir.relative_to(repo).as_posix() + "/"
    except ValueError:
        return str(chart_dir)


def deploy_targets(
    repo: Path,
    source: Source,
    decrypt: Decryptor,
    redactor: Redactor,
    targets: Sequence[Target],
    recorder: Recorder | None = None,
    freight: FreightCheck | None = None,
) -> tuple[list[Outcome], bool]:
    """Deploy every target; the outcomes and whether a SIGTERM cut the run short."""
    processes = helm.Processes()
    helm_major = helm.major_version(processes, repo)
    with helm.ready_chart(repo / CHART_DIR) as chart_dir:
        run = Run(
            repo,
            source,
            decrypt,
            redactor,
            chart_argument(repo, chart_dir),
            helm_major,
            processes,
            health.Patience(sleep=processes.pause),
            recorder=recorder,
            freight=freight,
        )
        return deploy_all(run, targets), processes.stopped
