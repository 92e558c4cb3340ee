"""The files of a locked chart dependency (the jupyterhub chart), read from its package.

validate reads the dependency's own `values.schema.json`, `values.yaml` and
`Chart.yaml`, and the start-up check its `files/hub/` configuration, without
rendering anything. A package is taken from, first found:

1. the chart's `charts/` directory (`<name>-<version>.tgz`, as `helm dependency
   build` leaves it, or the unpacked `<name>/` directory at the locked version);
2. the directory named by HUBBOT_CHART_PACKAGES, holding `<name>-<version>.tgz`
   packages as the chart repository serves them (offline and air-gapped use);
3. the chart repository, through `helm dependency build` (bot/helm.py).
"""

from __future__ import annotations

import io
import tarfile
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot import helm
from bot.charttree import MAX_CHART_SIZE, MAX_FILE_SIZE, MAX_PACKAGE_BYTES
from bot.errors import HubbotError, Location
from bot.helm import ChartUnavailable, Dependency, package_file
from bot.yamlfile import load_yaml


@dataclass(frozen=True)
class ChartPackage:
    """One chart package's regular files, by their path inside the chart directory."""

    name: str
    version: str
    origin: str  # where it was read from, for messages
    files: Mapping[str, bytes]

    def text(self, path: str) -> str | None:
        data = self.files.get(path)
        return None if data is None else data.decode("utf-8", "replace")

    @property
    def metadata(self) -> dict[str, Any]:
        """The package's Chart.yaml."""
        text = self.text("Chart.yaml")
        data = None if text is None else load_yaml(f"{self.origin}:Chart.yaml", text).data
        return data if isinstance(data, dict) else {}


def refuse_oversized(name: str, members: Iterable[tarfile.TarInfo]) -> None:
    """A package that unpacks bigger than helm itself would load is refused before it is
    unpacked (a few MiB of zeros unpack to gigabytes; a package is a pull request's to
    choose). Given the archive itself, each header is judged as it is read, before the
    data of a member that would pass the limits is inflated, as bot/charttree.py does."""
    total = 0
    for member in members:
        if member.size > MAX_FILE_SIZE:
            raise HubbotError(
                f"chart package {name}: {member.name} unpacks to {member.size} bytes, more "
                f"than helm loads ({MAX_FILE_SIZE})"
            )
        total += member.size
        if total > MAX_CHART_SIZE:
            raise HubbotError(
                f"chart package {name} unpacks to at least {total} bytes, more than helm "
                f"loads ({MAX_CHART_SIZE})"
            )


def read_package(path: Path, dep: Dependency) -> ChartPackage:
    """The files of the package at `path`, checked to be `dep` at its locked version."""
    where = Location(str(path))
    try:
        if path.stat().st_size > MAX_PACKAGE_BYTES:
            raise HubbotError("not a chart package: larger than 20 MiB", where)
        data = path.read_bytes()
        files: dict[str, bytes] = {}
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            refuse_oversized(path.name, tar)
            for member in tar.getmembers():
                top, _, inner = member.name.partition("/")
                # Only the chart's own regular files: no links, nothing outside its directory.
                if top != dep.name or not inner or not member.isfile() or ".." in inner.split("/"):
                    continue
                extracted = tar.extractfile(member)
                if extracted is not None:
                    files[inner] = extracted.read()
    except (OSError, tarfile.TarError, EOFError) as exc:
        raise HubbotError(f"cannot read the chart package: {exc}", where) from None
    package = ChartPackage(dep.name, dep.version, str(path), files)
    meta = package.metadata
    if meta.get("name") != dep.name or str(meta.get("version")) != dep.version:
        raise HubbotError(
            f"this package holds {meta.get('name')} {meta.get('version')}, not the locked "
            f"{dep.name} {dep.version}",
            where,
        )
    return package


def read_directory(path: Path, dep: Dependency) -> ChartPackage | None:
    """The files of an unpacked chart at `path` (as `helm dependency build` may leave it),
    or None when it is absent or not `dep` at its locked version."""
    if not (path / "Chart.yaml").is_file() or path.is_symlink():
        return None
    files = {
        str(file.relative_to(path)): file.read_bytes()
        for file in sorted(path.rglob("*"))
        if file.is_file() and not file.is_symlink()
    }
    package = ChartPackage(dep.name, dep.version, str(path), files)
    meta = package.metadata
    if meta.get("name") != dep.name or str(meta.get("version")) != dep.version:
        return None
    return package


def locked_package(chart_dir: Path, name: str) -> ChartPackage:
    """The package of dependency `name` at the version chart_dir's Chart.lock pins.

    Raises ChartUnavailable when it is neither on disk nor fetchable.
    """
    deps = [dep for dep in helm.locked_dependencies(chart_dir) if dep.name == name]
    if not deps:
        raise HubbotError(
            f"the chart does not depend on {name}", Location(f"{chart_dir.name}/Chart.yaml")
        )
    dep = deps[0]
    # helm renders with what charts/ holds, packed or not, before any other package.
    unpacked = read_directory(chart_dir / "charts" / dep.name, dep)
    if unpacked is not None:
        return unpacked
    found = package_file(chart_dir, dep)
    if found is not None:
        return read_package(found, dep)
    with tempfile.TemporaryDirectory(prefix="hubbot-package-") as tmp:
        with helm.ready_chart(chart_dir) as ready:
            fetched = ready / "charts" / f"{dep.name}-{dep.version}.tgz"
            if not fetched.is_file():
                unpacked = read_directory(ready / "charts" / dep.name, dep)
                if unpacked is not None:
                    return unpacked
                raise ChartUnavailable(f"chart dependency {dep.name} {dep.version} not fetched")
            kept = Path(tmp) / fetched.name
            kept.write_bytes(fetched.read_bytes())
        return read_package(kept, dep)
