"""The real JupyterHub, in its own virtualenv per chart version, and the probe that asks it.

The hub image of each jupyterhub chart version pins its Python packages
(`hub-image-requirements-<version>.txt` beside the chart packages in
HUBBOT_CHART_PACKAGES). The packages the hub configuration needs are installed
from PyPI at exactly those versions into a virtualenv of their own (never the
bot's), once: it is cached under bot.cachedir's directory, keyed by
the chart version and a hash of the pins, and built in a temporary directory
that is renamed into place only when complete, so an interrupted install
leaves nothing half-made behind.

The probe (bot/startup_probe.py) runs with that virtualenv's python, JSON in
and out; the bot never imports it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bot.cachedir import cache_root, look_up
from bot.errors import HubbotError
from bot.helm import PACKAGES_ENV

# What jupyterhub_config.py of the chart imports and configures: the hub, its spawner,
# the authenticators this repository's schema admits, and pycurl (tornado's curl client).
PACKAGES = (
    "jupyterhub",
    "jupyterhub-kubespawner",
    "oauthenticator",
    "jupyterhub-tmpauthenticator",
    "pycurl",
)
PROBE = Path(__file__).with_name("startup_probe.py")
COMPLETE = ".hubbot-complete"
INSTALL_TIMEOUT = 900  # seconds; about one minute on a fresh machine
PROBE_TIMEOUT = 120
PROBE_TIMEOUT_PER_PAIR = 10
# The probe runs the hub configuration (and any hub.extraConfig code) as the hub
# would: it gets no credentials from the bot's environment, only these.
PASSED_ENV = ("PATH", "LANG", "LC_ALL", "TZ")


def requirements_file(chart_version: str) -> Path:
    """The hub image's pins for `chart_version`, from HUBBOT_CHART_PACKAGES."""
    name = f"hub-image-requirements-{chart_version}.txt"
    directory = os.environ.get(PACKAGES_ENV)
    if not directory:
        raise HubbotError(
            f"the start-up check needs {name} (the Python packages the jupyterhub chart "
            f"{chart_version} hub image pins): set {PACKAGES_ENV} to the directory holding it, "
            "or skip the check with --no-startup"
        )
    path = Path(directory) / name
    if not path.is_file():
        raise HubbotError(
            f"the start-up check needs {path} (the Python packages the jupyterhub chart "
            f"{chart_version} hub image pins): put it in {PACKAGES_ENV}={directory}, "
            "or skip the check with --no-startup"
        )
    return path


def environment_dir(chart_version: str, requirements: Path, cache: Path | None = None) -> Path:
    """Where the virtualenv for this chart version and pins is cached."""
    pins = requirements.read_bytes()
    key = hashlib.sha256(
        b"\0".join([pins, " ".join(PACKAGES).encode(), sys.version.split()[0].encode()])
    ).hexdigest()[:16]
    return (cache or cache_root()) / f"jupyterhub-{chart_version}-{key}"


def environment(chart_version: str, requirements: Path, cache: Path | None = None) -> Path:
    """The python of the cached virtualenv for this chart version and pins, made if needed."""
    target = environment_dir(chart_version, requirements, cache)
    root = target.parent
    python = target / "bin" / "python"
    if look_up(target, COMPLETE, "jupyterhub-*"):
        return python
    root.mkdir(parents=True, exist_ok=True)
    _remove_abandoned(root, target.name)
    building = Path(tempfile.mkdtemp(prefix=f".building-{target.name}-", dir=root))
    try:
        _install(building, requirements, chart_version)
        (building / COMPLETE).write_text(f"chart {chart_version}\n")
        try:
            building.rename(target)
        except OSError:
            # Another process finished the same environment first: use that one.
            if not (target / COMPLETE).is_file():
                raise
    finally:
        shutil.rmtree(building, ignore_errors=True)
    return python


def _remove_abandoned(root: Path, name: str) -> None:
    """What a killed install left: never used, removed once no install could still be on it."""
    for stale in root.glob(f".building-{name}-*"):
        try:
            abandoned = time.time() - stale.stat().st_mtime > INSTALL_TIMEOUT * 2
        except OSError:
            continue
        if abandoned:
            shutil.rmtree(stale, ignore_errors=True)


def _install(venv: Path, requirements: Path, chart_version: str) -> None:
    # Only bin/python is ever run: it finds its site-packages relative to itself, so the
    # environment still works after the rename (its scripts' #! lines would not).
    steps = [
        [sys.executable, "-m", "venv", str(venv)],
        [
            str(venv / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--no-input",
            "-c",
            str(requirements),
            *PACKAGES,
        ],
    ]
    for command in steps:
        try:
            done = subprocess.run(
                command, capture_output=True, text=True, timeout=INSTALL_TIMEOUT, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise HubbotError(_install_failed(chart_version, requirements, str(exc))) from None
        if done.returncode != 0:
            lines = [line for line in done.stderr.splitlines() if line.strip()]
            errors = [line for line in lines if "ERROR" in line or "error:" in line]
            reason = (errors or lines or [f"exit status {done.returncode}"])[-1].strip()
            raise HubbotError(_install_failed(chart_version, requirements, reason))


def _install_failed(chart_version: str, requirements: Path, reason: str) -> str:
    return (
        f"cannot install JupyterHub for chart {chart_version} from PyPI with the pins in "
        f"{requirements} ({', '.join(PACKAGES)}): {reason}. The start-up check needs PyPI "
        "(pip's usual index settings apply); skip it with --no-startup"
    )


def probe(python: Path, requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Run the probe with `python` on each of `requests`, in one process; its JSON answers.

    JupyterHub and its classes are imported once, and each request runs in a fork of
    that process: a pair costs its own config only, and leaves nothing to the next."""
    with tempfile.TemporaryDirectory(prefix="hubbot-startup-") as workdir:
        os.chmod(workdir, 0o700)
        env = {name: os.environ[name] for name in PASSED_ENV if name in os.environ}
        env["HOME"] = workdir
        try:
            done = subprocess.run(
                [str(python), "-I", str(PROBE)],
                input=json.dumps({"batch": requests}),
                capture_output=True,
                text=True,
                cwd=workdir,
                env=env,
                timeout=PROBE_TIMEOUT + PROBE_TIMEOUT_PER_PAIR * len(requests),
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise HubbotError(f"the start-up probe did not finish: {exc}") from None
    try:
        answer = json.loads(done.stdout) if done.returncode == 0 else None
    except json.JSONDecodeError:
        answer = None
    if not isinstance(answer, list) or len(answer) != len(requests):
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        last = lines[-1] if lines else f"exit status {done.returncode}"
        raise HubbotError(f"the start-up probe failed with {python}: {last}")
    return answer
