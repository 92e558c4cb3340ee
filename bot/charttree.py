"""What helm is given to read in a chart directory, checked before it reads it.

helm follows a symbolic link in a chart directory and reads what it points to,
which a template can then print (`.Files.Get`); it blocks forever on a FIFO; and it
resolves a values.schema.json's references to files and URLs. A chart comes from a
pull request, so a link or special file anywhere in it, and a schema (the chart's own
or a packaged dependency's) that refers outside itself, are refused first.
"""

from __future__ import annotations

import io
import json
import os
import posixpath
import stat
import tarfile
from pathlib import Path

from bot.errors import HubbotError, Location
from bot.schemas import outside_reference
from bot.source import checked_mode

SCHEMA_FILE = "values.schema.json"
# A chart package is small (the jupyterhub chart is about 100 KB packed); anything far
# larger is not one, and is not unpacked into memory.
MAX_PACKAGE_BYTES = 20 * 1024 * 1024
# helm's own limits on what a chart package unpacks to (--max-chart-size, --max-file-size).
MAX_CHART_SIZE = 100 * 1024 * 1024
MAX_FILE_SIZE = 5 * 1024 * 1024
# Charts inside charts: the jupyterhub chart has none; a few levels is already unusual.
_MAX_PACKAGE_DEPTH = 8


def check_chart_tree(chart_dir: Path) -> None:
    """Raise for a link, a special file or a schema referring outside itself in the chart."""
    for directory, subdirectories, files in os.walk(chart_dir):
        for name in sorted(subdirectories + files):
            full = Path(directory, name)
            shown = f"{chart_dir.name}/{full.relative_to(chart_dir).as_posix()}"
            mode = checked_mode(shown, str(full))
            if mode is None or stat.S_ISDIR(mode):
                continue
            details = full.stat()
            if details.st_nlink > 1:  # git never makes one: it can only bring in another file
                raise HubbotError(
                    "is a hard link to another file: replace it with a copy of that file",
                    Location(shown),
                )
            if name == SCHEMA_FILE:
                _refuse_larger(details.st_size, MAX_FILE_SIZE, shown)
                _check_schema(full.read_bytes(), shown)
            elif name.endswith(".tgz"):
                _refuse_larger(details.st_size, MAX_PACKAGE_BYTES, shown)
                _check_package(full.read_bytes(), shown)


def _check_package(data: bytes, shown: str, depth: int = 1) -> None:
    """The schemas of a chart package and of every package inside it, wherever helm may
    find them: member names are cleaned as helm cleans them (`./a`, `a//b`, `a\\b`)."""
    if depth > _MAX_PACKAGE_DEPTH:
        raise HubbotError(
            f"chart packages nest more than {_MAX_PACKAGE_DEPTH} deep: no chart needs that",
            Location(shown),
        )
    _refuse_larger(len(data), MAX_PACKAGE_BYTES, shown)
    unpacked = 0
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
            # Each header is read before its member's data is inflated: a bomb is refused
            # by the sizes it declares.
            for member in archive:
                unpacked += member.size
                where = f"{shown}:{member.name}"
                _refuse_larger(member.size, MAX_FILE_SIZE, where)
                _refuse_larger(unpacked, MAX_CHART_SIZE, shown)
                name = posixpath.normpath(member.name.replace("\\", "/")).rsplit("/", 1)[-1]
                if not member.isfile() or not (name == SCHEMA_FILE or name.endswith(".tgz")):
                    continue
                handle = archive.extractfile(member)
                content = handle.read() if handle is not None else b""
                if name == SCHEMA_FILE:
                    _check_schema(content, where)
                else:
                    _check_package(content, where, depth + 1)
    except (OSError, tarfile.TarError, EOFError):
        return  # not a package helm can load either: its own error says so


def _refuse_larger(size: int, limit: int, shown: str) -> None:
    if size > limit:
        raise HubbotError(
            f"is (or unpacks to) more than {limit:,} bytes, more than helm loads from a chart",
            Location(shown),
        )


def _check_schema(data: bytes, shown: str) -> None:
    try:
        schema = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return  # helm refuses a schema that is not JSON, before resolving anything
    outside = outside_reference(schema)
    if outside is not None:
        raise HubbotError(f"the chart's schema: {outside.message}", Location(shown))
