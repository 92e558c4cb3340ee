"""Running helm: the one module that calls the helm binary.

The binary is `$HELM`, else `helm` on PATH, else the one `make setup` puts next to
this Python (.venv/bin/helm). Values always travel on standard input (`-f -`),
never through a file, because they may hold decrypted secrets.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.charttree import check_chart_tree
from bot.errors import HubbotError, Location
from bot.memfs import MemoryFile
from bot.source import decode
from bot.yamlfile import YamlDoc, load_yaml

# The Kubernetes version charts are rendered for when hubploy.yaml sets no
# cluster.kube_version: the version of the EKS clusters in infra/.
DEFAULT_KUBE_VERSION = "1.35"

INSTALL_HINT = "run `make setup` (installs helm into .venv/bin) or set HELM to the helm binary"

# A directory of chart packages (`<name>-<version>.tgz`, as a chart repository serves
# them) used instead of fetching locked dependencies: offline and air-gapped use.
PACKAGES_ENV = "HUBBOT_CHART_PACKAGES"


class ChartUnavailable(HubbotError):
    """A locked chart dependency cannot be fetched (offline, or its repository is down)."""


@dataclass(frozen=True)
class Result:
    returncode: int
    stdout: str
    stderr: str


def binary() -> str:
    configured = os.environ.get("HELM")
    if configured:
        return configured
    on_path = shutil.which("helm")
    if on_path:
        return on_path
    beside_python = Path(sys.executable).parent / "helm"
    return str(beside_python) if beside_python.is_file() else "helm"


def run(
    args: Sequence[str],
    stdin: bytes | None = None,
    check: bool = True,
    env: dict[str, str] | None = None,
) -> Result:
    """Run `helm ARGS`; with `check`, a failure raises a HubbotError quoting helm's error.

    `env` adds settings (helm's HELM_*, Go's) to the environment for this call.
    """
    helm = binary()
    try:
        proc = subprocess.run(
            [helm, *args],
            input=stdin,
            capture_output=True,
            check=False,
            env={**os.environ, **env} if env else None,
            preexec_fn=die_with_the_bot(),
        )
    except OSError as exc:
        raise cannot_start(helm, exc) from None
    result = Result(
        proc.returncode,
        proc.stdout.decode("utf-8", "replace"),
        proc.stderr.decode("utf-8", "replace"),
    )
    if check and result.returncode != 0:
        raise HubbotError(
            f"`helm {args[0]}` failed: {error_line(result.stderr, result.returncode)}"
        )
    return result


def cannot_start(helm: str, exc: OSError) -> HubbotError:
    """Why `helm` could not be started at all."""
    if isinstance(exc, FileNotFoundError):
        return HubbotError(f"helm is not installed (no {helm!r} found): {INSTALL_HINT}")
    if isinstance(exc, PermissionError):
        return HubbotError(f"helm at {helm!r} is not executable: {INSTALL_HINT}")
    return HubbotError(f"helm at {helm!r} cannot run ({exc.strerror}): {INSTALL_HINT}")


# A frame of a Go stack trace: helm prints one under some errors, with no `Error:` line.
_GO_FRAME = re.compile(r"^\t\S+:\d+( \+0x[0-9a-f]+)?$")


_MAX_DETAIL_LINES = 20


def error_line(stderr: str, status: int | None = None) -> str:
    """helm's own one-line error (`Error: ...`), else the line that says what failed."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    errors = [index for index, line in enumerate(lines) if line.startswith("Error:")]
    if errors:
        text = lines[errors[-1]].removeprefix("Error:").strip()
        if text.endswith(":"):  # a list follows, such as each value the chart's schema refuses
            text += " " + " ".join(lines[errors[-1] + 1 : errors[-1] + 1 + _MAX_DETAIL_LINES])
        return text
    if any(_GO_FRAME.match(line) for line in stderr.splitlines()):
        return lines[0].removeprefix("WARNING:").strip()  # a stack trace follows its cause
    if lines:
        return lines[-1]
    exited = "" if status is None else f" (exit status {status})"
    return (
        f"helm printed no error message{exited}: check that {binary()!r} is the helm binary "
        f"({INSTALL_HINT})"
    )


def template(
    chart_dir: Path,
    release: str,
    namespace: str,
    values_yaml: str,
    kube_version: str = DEFAULT_KUBE_VERSION,
) -> str:
    """The manifests `helm template` renders for these values (given on stdin)."""
    return run(
        [
            "template",
            release,
            str(chart_dir),
            "--namespace",
            namespace,
            "--kube-version",
            kube_version,
            "--include-crds",
            "-f",
            "-",
        ],
        stdin=values_yaml.encode(),
        env=short_lived_go(),
    ).stdout


# A render is a process of a few tenths of a second whose heap stays small (about 70 MB
# for the jupyterhub chart): Go's collector, tuned for servers, spends about a quarter
# of its CPU there. Off, with a memory limit at which it runs after all, that is saved.
_SHORT_LIVED_GO = {"GOGC": "off", "GOMEMLIMIT": "1GiB"}


def short_lived_go() -> dict[str, str]:
    """Go runtime settings for a short helm process; any the environment sets win."""
    if any(name in os.environ for name in _SHORT_LIVED_GO):
        return {}
    return dict(_SHORT_LIVED_GO)


# --- Chart.lock -------------------------------------------------------------------------

# The fields of helm's chart.Dependency in declaration order, with their JSON
# names; all but name and repository are omitted when empty.
_DEPENDENCY_FIELDS = (
    "name",
    "version",
    "repository",
    "condition",
    "tags",
    "enabled",
    "import-values",
    "alias",
)
_ALWAYS = ("name", "repository")


def lock_digest(requirements: list[dict[str, Any]], locked: list[dict[str, Any]]) -> str:
    """The `digest` helm writes in Chart.lock and checks before building dependencies.

    helm hashes json.Marshal([2][]*chart.Dependency{requirements, locked}) with sha256.
    """
    text = "[" + ",".join(_go_list(deps) for deps in (requirements, locked)) + "]"
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def _go_list(deps: list[dict[str, Any]]) -> str:
    if not deps:
        return "null"  # Go marshals a nil slice as null
    return "[" + ",".join(_go_dependency(dep) for dep in deps) + "]"


def _go_dependency(dep: dict[str, Any]) -> str:
    fields = []
    for name in _DEPENDENCY_FIELDS:
        value = dep.get(name)
        if name not in _ALWAYS and not value:
            continue
        fields.append(f"{_go_json(name)}:{_go_json('' if value is None else value)}")
    return "{" + ",".join(fields) + "}"


def _go_json(value: Any) -> str:
    # Go sorts map keys and escapes <, > and & in strings; otherwise compact JSON.
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    for char, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
        text = text.replace(char, escaped)
    return text


@dataclass(frozen=True)
class Dependency:
    name: str
    version: str
    repository: str


def _chart_file(chart_dir: Path, name: str) -> YamlDoc | None:
    label = f"{chart_dir.name}/{name}"
    try:
        data = (chart_dir / name).read_bytes()
    except FileNotFoundError:
        return None
    return chart_doc(label, decode(label, data))


def chart_doc(label: str, text: str) -> YamlDoc:
    """A Chart.yaml or Chart.lock, checked to be a mapping."""
    doc = load_yaml(label, text)
    if not isinstance(doc.data, dict):
        name = label.rsplit("/", 1)[-1]
        raise HubbotError(f"{name} must be a mapping, not {_kind(doc.data)}", Location(label, 1))
    return doc


def _kind(value: Any) -> str:
    return "empty" if value is None else f"a {type(value).__name__}"


def _dependencies(doc: YamlDoc, fields: tuple[str, ...]) -> list[dict[str, Any]]:
    """The `dependencies` list, each entry a mapping with a string for each of `fields`."""
    deps = doc.data.get("dependencies") or []
    if not isinstance(deps, list):
        raise HubbotError(
            "`dependencies` must be a list of charts (- name: ..., version: ..., "
            f"repository: ...), not {_kind(deps)}",
            Location(doc.file, doc.line_of(("dependencies",))),
        )
    for index, dep in enumerate(deps):
        where = Location(doc.file, doc.line_of(("dependencies", index)))
        if not isinstance(dep, dict):
            raise HubbotError("a dependency must be a mapping (name, version, repository)", where)
        for field in fields:
            if not isinstance(dep.get(field), str) or not dep[field]:
                raise HubbotError(f"this dependency has no `{field}`", where)
    return deps


def locked_dependencies(chart_dir: Path) -> list[Dependency]:
    """The dependencies Chart.lock pins, after checking it is in sync with Chart.yaml.

    The check is helm's own: the lock's digest must match the Chart.yaml
    requirements together with the locked list.
    """
    return checked_lock(
        chart_dir.name, _chart_file(chart_dir, "Chart.yaml"), _chart_file(chart_dir, "Chart.lock")
    )


def checked_lock(chart_name: str, chart: YamlDoc | None, lock: YamlDoc | None) -> list[Dependency]:
    """locked_dependencies from Chart.yaml and Chart.lock as read (None: absent).

    For callers that read the chart's files from a git commit rather than from disk.
    """
    if chart is None:
        raise HubbotError(
            "not a helm chart: Chart.yaml is missing", Location(f"{chart_name}/Chart.yaml")
        )
    requirements = _dependencies(chart, ("name",))
    if not requirements:
        return []
    lock_label = f"{chart_name}/Chart.lock"
    update = f"run `helm dependency update {chart_name}` and commit Chart.lock"
    if lock is None:
        raise HubbotError(f"Chart.lock is missing: {update}", Location(lock_label))
    locked = _dependencies(lock, ("name", "version", "repository"))
    if lock_digest(requirements, locked) != lock.data.get("digest"):
        raise HubbotError(
            f"Chart.lock is out of sync with {chart.file}: {update}", Location(lock_label, 1)
        )
    return [Dependency(dep["name"], dep["version"], dep["repository"]) for dep in locked]


def missing_dependencies(chart_dir: Path) -> list[Dependency]:
    """Locked dependencies not present, at their locked version, in the chart's charts/."""
    return [dep for dep in locked_dependencies(chart_dir) if not _present(chart_dir, dep)]


def dependencies_available(chart_dir: Path) -> bool:
    return not missing_dependencies(chart_dir)


def package_file(chart_dir: Path, dep: Dependency) -> Path | None:
    """The `<name>-<version>.tgz` of `dep` in the chart's charts/ or HUBBOT_CHART_PACKAGES.

    A package found there must hold `dep` itself: helm would render whatever chart a
    wrongly named file holds, and the diff would show it as the locked version.
    """
    name = f"{dep.name}-{dep.version}.tgz"
    configured = os.environ.get(PACKAGES_ENV)
    for directory in (chart_dir / "charts", Path(configured) if configured else None):
        if directory is not None and (directory / name).is_file():
            check_package(directory / name, dep)
            return directory / name
    return None


# A chart's Chart.yaml is a few KB; a bigger one is not read.
_MAX_CHART_YAML = 1024 * 1024


def check_package(path: Path, dep: Dependency) -> None:
    """Refuse a package whose own Chart.yaml is not `dep`'s name and version."""
    where = Location(str(path))
    try:
        with tarfile.open(path, mode="r:gz") as tar:
            text = ""
            for member in tar:
                # helm packages a chart as <name>/Chart.yaml, <name>/templates/...
                top_level = member.name.count("/") == 1 and member.name.endswith("/Chart.yaml")
                if top_level and member.isfile() and member.size <= _MAX_CHART_YAML:
                    handle = tar.extractfile(member)
                    text = handle.read().decode("utf-8", "replace") if handle else ""
                    break
    except (OSError, tarfile.TarError, EOFError) as exc:
        raise HubbotError(f"cannot read the chart package: {exc}", where) from None
    meta = load_yaml(f"{path}:Chart.yaml", text).data if text else None
    if not isinstance(meta, dict):
        raise HubbotError("not a chart package: it holds no <name>/Chart.yaml", where)
    if meta.get("name") != dep.name or str(meta.get("version")) != dep.version:
        raise HubbotError(
            f"this package holds {meta.get('name')} {meta.get('version')}, not the locked "
            f"{dep.name} {dep.version}",
            where,
        )


def _present(chart_dir: Path, dep: Dependency) -> bool:
    charts = chart_dir / "charts"
    if (charts / f"{dep.name}-{dep.version}.tgz").is_file():
        return True
    sub = _chart_file(charts / dep.name, "Chart.yaml")
    return sub is not None and sub.data.get("version") == dep.version


@contextmanager
def ready_chart(chart_dir: Path) -> Iterator[Path]:
    """A directory holding the chart with its locked dependencies, ready to render.

    The chart itself when charts/ already has them; otherwise a temporary copy whose
    charts/ gets them from HUBBOT_CHART_PACKAGES, else from `helm dependency build`
    (the working tree is never changed). What helm would read is checked (bot/charttree.py)
    before helm reads it: the chart before any helm command, and what is added to it.
    """
    check_chart_tree(chart_dir)
    missing = missing_dependencies(chart_dir)
    if not missing:
        yield chart_dir
        return
    names = ", ".join(f"{dep.name} {dep.version} from {dep.repository}" for dep in missing)
    unavailable = ChartUnavailable(
        f"chart dependency {names} cannot be fetched (offline? set {PACKAGES_ENV} to a "
        "directory of chart packages)"
    )
    with tempfile.TemporaryDirectory(prefix="hubbot-chart-") as tmp:
        copy = Path(tmp) / chart_dir.name
        shutil.copytree(chart_dir, copy, symlinks=True)
        local = {dep: package_file(chart_dir, dep) for dep in missing}
        for package in local.values():
            if package is not None:
                (copy / "charts").mkdir(exist_ok=True)
                shutil.copyfile(package, copy / "charts" / package.name)
        missing = [dep for dep, package in local.items() if package is None]
        if not missing:
            check_chart_tree(copy)  # the packages just added are read by helm too
            yield copy
            return
        # `helm dependency build` only fetches from added repositories: add them to a
        # repositories file of our own, leaving the user's helm settings alone.
        env = {"HELM_REPOSITORY_CONFIG": str(Path(tmp) / "repositories.yaml")}
        urls = sorted({dep.repository for dep in missing if dep.repository.startswith("http")})
        for number, url in enumerate(urls):
            if run(["repo", "add", f"hubbot-{number}", url], check=False, env=env).returncode:
                raise unavailable
        # `repo add` just fetched the indexes: no second download.
        result = run(["dependency", "build", str(copy), "--skip-refresh"], check=False, env=env)
        if result.returncode != 0 or missing_dependencies(copy):
            raise unavailable
        check_chart_tree(copy)  # what was fetched comes from the pull request's repository
        yield copy


# --- Releases: status, upgrade --------------------------------------------------------

PENDING_PREFIX = "pending-"


@dataclass(frozen=True)
class Release:
    name: str
    namespace: str


@dataclass(frozen=True)
class ReleaseStatus:
    status: str  # helm's: deployed, failed, pending-install, pending-upgrade, ...
    revision: int


PR_SET_PDEATHSIG = 1  # linux/prctl.h


@functools.cache
def _prctl() -> Callable[..., int] | None:
    """libc's prctl, looked up before any fork (the child then only calls it)."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes  # here: only deploys start helm this way, and the import has a cost

    try:
        return getattr(ctypes.CDLL(None, use_errno=True), "prctl", None)
    except OSError:
        return None


def die_with_the_bot() -> Callable[[], None] | None:
    """A preexec_fn by which a child is killed (SIGKILL) when the bot dies, however it dies.

    The kernel sends the signal when the thread that started the child ends; deploy
    workers wait for their helm, so that is when the bot ends.
    """
    prctl = _prctl()
    if prctl is None:
        return None
    parent = os.getpid()

    def arrange() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the bot died before the call took effect
            os.kill(os.getpid(), signal.SIGKILL)

    return arrange


class Processes:
    """The helm processes a run has started, so that a signal can stop them all.

    Deploys run in worker threads; only the main thread receives SIGTERM, so it
    stops the workers' helm processes through this, and no new one starts. A
    SIGKILL cannot be handled: each helm is then killed by the kernel with the bot.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: set[subprocess.Popen[bytes]] = set()
        self._stopping = threading.Event()
        self.stopped = False

    def run(
        self,
        argv: list[str],
        stdin: bytes | None,
        env: dict[str, str],
        cwd: Path,
        pass_fds: Sequence[int] = (),
    ) -> Result:
        with self._lock:
            if self.stopped:
                return Result(-signal.SIGTERM, "", "stopped before it started")
            try:
                proc = subprocess.Popen(
                    argv,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    env=env,
                    cwd=cwd,
                    pass_fds=pass_fds,
                    preexec_fn=die_with_the_bot(),
                )
            except OSError as exc:
                raise cannot_start(argv[0], exc) from None
            self._running.add(proc)
        try:
            out, err = proc.communicate(stdin)
        finally:
            with self._lock:
                self._running.discard(proc)
        return Result(
            proc.returncode, out.decode("utf-8", "replace"), err.decode("utf-8", "replace")
        )

    def stop(self) -> None:
        with self._lock:
            self.stopped = True
            self._stopping.set()
            for proc in self._running:
                proc.terminate()

    def pause(self, seconds: float) -> None:
        """Wait between retries, cut short (with an error) when the run is stopped."""
        if self._stopping.wait(seconds):
            raise HubbotError("interrupted (SIGTERM) while waiting to retry")


def major_version(processes: Processes, cwd: Path) -> int:
    result = processes.run(
        [binary(), "version", "--template", "{{.Version}}"], None, dict(os.environ), cwd
    )
    match = re.match(r"v?(\d+)\.", result.stdout.strip())
    if result.returncode != 0 or match is None:
        raise HubbotError(
            f"cannot tell helm's version: {error_line(result.stderr, result.returncode)}"
        )
    return int(match[1])


def status(
    release: Release, kubeconfig: MemoryFile, processes: Processes, cwd: Path
) -> ReleaseStatus | None:
    """The release's current status, or None when it was never installed."""
    result = processes.run(
        [binary(), "status", release.name, "--namespace", release.namespace, "--output", "json"],
        None,
        {**os.environ, "KUBECONFIG": kubeconfig.path},
        cwd,
        (kubeconfig.fd,),
    )
    if result.returncode != 0:
        message = error_line(result.stderr, result.returncode)
        if message == "release: not found":
            return None
        raise HubbotError(
            f"cannot read the status of release {release.name} in namespace "
            f"{release.namespace}: {message}"
        )
    data = json.loads(result.stdout)
    return ReleaseStatus(str(data["info"]["status"]), int(data.get("version", 0)))


def recovery(release: Release, current: ReleaseStatus) -> str:
    """What an operator runs to unstick a release left pending by an interrupted deploy."""
    where = f"--namespace {release.namespace}"
    history = f"`helm history {release.name} {where}`"
    if current.status == "pending-install" or current.revision <= 1:
        fix = f"`helm uninstall {release.name} {where}`"
    else:
        fix = f"`helm rollback {release.name} {current.revision - 1} {where} --wait`"
    return (
        f"release {release.name} in namespace {release.namespace} is stuck in {current.status} "
        f"(revision {current.revision}), probably left by an interrupted deploy; not upgrading "
        f"it blindly: check {history} and that no other deploy is running, recover with "
        f"{fix}, then deploy again"
    )


def upgrade_args(release: Release, chart: str, timeout: str, helm_major: int) -> list[str]:
    """`helm upgrade --install` with roll-back on failure; values come on stdin."""
    rollback = ["--rollback-on-failure"] if helm_major >= 4 else ["--atomic"]
    return [
        "upgrade",
        "--install",
        release.name,
        chart,
        "--namespace",
        release.namespace,
        "--create-namespace",
        "--wait",
        "--timeout",
        timeout,
        *rollback,
        "--cleanup-on-fail",
        "-f",
        "-",
    ]


def upgrade(
    args: list[str], values: bytes, kubeconfig: MemoryFile, processes: Processes, cwd: Path
) -> Result:
    return processes.run(
        [binary(), *args],
        values,
        {**os.environ, "KUBECONFIG": kubeconfig.path},
        cwd,
        (kubeconfig.fd,),
    )
