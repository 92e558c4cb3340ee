"""A copy of a chart that renders the same way every time, for previews and diffs only.

`helm template` runs a chart's random functions afresh on each render, so the same
values never render the same tokens twice. Rendering everything twice to find them
doubles the cost of every diff. Instead, a preview copy replaces the sprig functions
that make random characters with `printf` calls that make marked, fixed text of the
same length: one render then says which values are random (they hold the mark), and
values derived from them (checksums) render the same on both sides of a diff, as
they do on a cluster where the chart looks up the tokens it made before.

A chart that uses a source of change this cannot fix (certificates, UUIDs, the clock)
is still rendered twice. Deploys never use the copy: only previews do.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import shutil
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.cachedir import cache_root, look_up
from bot.chartpackage import refuse_oversized
from bot.errors import HubbotError

MARK = "hubbotrandom"
# sprig's functions that return N random characters, and a `printf` taking the same one
# argument (called or piped) that returns fixed text at least N long ("%0[1]*[1]d" pads
# N with zeros to width N). Digits stay digits: the jupyterhub chart reads them with atoi.
_FIXED = {
    "randAlphaNum": f'printf "{MARK}%0[1]*[1]d"',
    "randAlpha": f'printf "{MARK}%0[1]*[1]d"',
    "randAscii": f'printf "{MARK}%0[1]*[1]d"',
    "randNumeric": 'printf "%0[1]*[1]d"',
}
_FIXABLE = re.compile(r"\b(" + "|".join(_FIXED) + r")\b")
# Other functions whose result changes from one render to the next.
_UNFIXABLE = re.compile(
    r"\b(uuidv4|randInt|randBytes|shuffle|now|htpasswd|bcrypt|encryptAES|"
    r"gen(?:PrivateKey|CA|CAWithKey|SelfSignedCert|SelfSignedCertWithKey|SignedCert|"
    r"SignedCertWithKey))\b"
)
_TEMPLATE_SUFFIXES = (".yaml", ".yml", ".tpl", ".txt", ".json")


@dataclass(frozen=True)
class PreviewChart:
    path: Path
    deterministic: bool  # False: random values are found by rendering twice


# Unpacked, rewritten dependency packages are kept between runs (bot/cachedir.py) by the
# sha256 of the package and of the rewrite rules: a package never changes under its
# digest, and a run copies the result instead of unpacking and rewriting it again.
_RULES = hashlib.sha256(
    repr((sorted(_FIXED.items()), _UNFIXABLE.pattern, _TEMPLATE_SUFFIXES)).encode()
).hexdigest()[:16]
_DETERMINISTIC = "deterministic"  # a cache entry's file: "yes" or "no", written last


@contextmanager
def preview_chart(ready: Path) -> Iterator[PreviewChart]:
    """A temporary copy of the chart at `ready` (dependencies in charts/), unpacked, with
    its random functions fixed where that is possible."""
    with tempfile.TemporaryDirectory(prefix="hubbot-preview-") as tmp:
        copy = Path(tmp) / "chart" / ready.name
        shutil.copytree(ready, copy, symlinks=True)
        packages = sorted(path for path in copy.rglob("*.tgz") if path.parent.name == "charts")
        deterministic = _fix_randomness(copy)  # before the packages join it: they are fixed
        for package in packages:
            deterministic &= _add_dependency(package, Path(tmp))
        yield PreviewChart(copy, deterministic)


def _add_dependency(package: Path, scratch: Path) -> bool:
    """Put the package's chart, unpacked and fixed, beside it in place of it; False if it
    has randomness that cannot be fixed."""
    entry = _cached(package)
    if entry is None or not _is_plain_tree(entry):
        entry = _prepare(package, Path(tempfile.mkdtemp(dir=scratch)))
    for top in (entry / "chart").iterdir():
        target = package.parent / top.name
        if target.exists():
            raise HubbotError(f"chart package {package.name} and charts/{top.name} clash")
        shutil.copytree(top, target)
    package.unlink()
    return (entry / _DETERMINISTIC).read_text(encoding="utf-8") == "yes"


def _cached(package: Path) -> Path | None:
    """The package's cache entry, made now if need be; None where there is no cache."""
    digest = hashlib.sha256(package.read_bytes()).hexdigest()
    entry = cache_root() / "preview-charts" / f"{digest}-{_RULES}"
    if look_up(entry, _DETERMINISTIC, "[!.]*"):
        return entry
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(dir=entry.parent, prefix=".new-"))
    except OSError:
        return None  # no cache here (a read-only home, say): the caller prepares its own
    try:
        _prepare(package, scratch)
        scratch.rename(entry)  # atomic: a reader sees a whole entry or none
    except OSError:
        pass  # another run made it first, or the disk is full
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return entry if (entry / _DETERMINISTIC).is_file() else None


def _prepare(package: Path, entry: Path) -> Path:
    """`entry`/chart/<name>: the package unpacked with its own dependencies, fixed."""
    chart = entry / "chart"
    chart.mkdir()
    _unpack(package, chart)
    deterministic = _fix_randomness(chart)
    (entry / _DETERMINISTIC).write_text("yes" if deterministic else "no", encoding="utf-8")
    return entry


def _is_plain_tree(entry: Path) -> bool:
    """Only directories and regular files: a cache entry holding anything else (a link
    that helm would follow) is not one hubbot made, and is not used."""
    return all(
        not path.is_symlink() and (path.is_dir() or path.is_file())
        for path in (entry, *entry.rglob("*"))
    )


def _unpack(package: Path, charts: Path) -> None:
    """The package's chart as a directory in `charts`, its own packages unpacked too."""
    with tempfile.TemporaryDirectory(dir=charts) as unpacked:
        try:
            with tarfile.open(package) as archive:
                refuse_oversized(package.name, archive)
                # The "data" filter refuses links and paths that leave the directory.
                archive.extractall(unpacked, filter="data")
        except (tarfile.TarError, OSError) as exc:
            message = f"chart package {package.name} cannot be unpacked: {exc}"
            raise HubbotError(message) from None
        tops = list(Path(unpacked).iterdir())
        if len(tops) != 1 or not tops[0].is_dir():
            raise HubbotError(f"chart package {package.name} is not one chart directory")
        target = charts / tops[0].name
        if target.exists():
            raise HubbotError(f"chart package {package.name} and charts/{target.name} clash")
        tops[0].rename(target)
    for inner in sorted((target / "charts").glob("*.tgz")):
        _unpack(inner, inner.parent)
        inner.unlink()


def _fix_randomness(chart: Path) -> bool:
    """Rewrite the fixable random functions in every template; False if any other is left."""
    deterministic = True
    for template in sorted(chart.rglob("*")):
        if not template.is_file() or template.is_symlink():
            continue
        if "templates" not in template.relative_to(chart).parts[:-1]:
            continue
        if template.suffix not in _TEMPLATE_SUFFIXES:
            continue
        text = template.read_text(encoding="utf-8", errors="surrogateescape")
        if _UNFIXABLE.search(text):
            deterministic = False
        fixed = _FIXABLE.sub(lambda match: _FIXED[match.group(1)], text)
        if fixed != text:
            template.write_text(fixed, encoding="utf-8", errors="surrogateescape")
    return deterministic


def marked_paths(resource: dict[str, Any]) -> set[tuple[str | int, ...]]:
    """The paths in a rendered resource whose value holds fixed random text (in a
    Secret's data, once decoded)."""
    found = _marked(resource, ())
    data = resource.get("data")
    if resource.get("kind") == "Secret" and isinstance(data, dict):
        for name, value in data.items():
            try:
                decoded = base64.b64decode(str(value), validate=True)
            except binascii.Error:
                continue
            if MARK.encode() in decoded:
                found.add(("data", name))
    return found


def _marked(node: Any, path: tuple[str | int, ...]) -> set[tuple[str | int, ...]]:
    if isinstance(node, dict | list):
        items = node.items() if isinstance(node, dict) else enumerate(node)
        return {found for key, value in items for found in _marked(value, (*path, key))}
    return {path} if isinstance(node, str) and MARK in node else set()
