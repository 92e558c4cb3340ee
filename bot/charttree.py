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
import tarfile
from pathlib import Path

from bot.errors import HubbotError, Location
from bot.schemas import outside_reference
from bot.source import checked_mode

SCHEMA_FILE = "values.schema.json"
# helm loads no chart file bigger than this; a bigger member is not read here either.
_MAX_MEMBER_BYTES = 5 * 1024 * 1024
# Charts inside charts: the jupyterhub chart has none; a few levels is already unusual.
_MAX_PACKAGE_DEPTH = 8


def check_chart_tree(chart_dir: Path) -> None:
    """Raise for a link, a special file or a schema referring outside itself in the chart."""
    for directory, subdirectories, files in os.walk(chart_dir):
        for name in sorted(subdirectories + files):
            full = Path(directory, name)
            shown = f"{chart_dir.name}/{full.relative_to(chart_dir).as_posix()}"
            checked_mode(shown, str(full))
            if name == SCHEMA_FILE:
                _check_schema(full.read_bytes(), shown)
            elif name.endswith(".tgz"):
                _check_package(full.read_bytes(), shown)


def _check_package(data: bytes, shown: str, depth: int = 1) -> None:
    """The schemas of a chart package and of the packages in its charts/, as helm loads
    them (`<chart>/values.schema.json`, `<chart>/charts/<name>.tgz`)."""
    if depth > _MAX_PACKAGE_DEPTH:
        raise HubbotError(
            f"chart packages nest more than {_MAX_PACKAGE_DEPTH} deep: no chart needs that",
            Location(shown),
        )
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
            for member in archive:
                parts = member.name.split("/")
                schema = len(parts) == 2 and parts[1] == SCHEMA_FILE
                package = len(parts) == 3 and parts[1] == "charts" and parts[2].endswith(".tgz")
                if not (schema or package) or not member.isfile():
                    continue
                if member.size > _MAX_MEMBER_BYTES:
                    continue  # helm refuses to load it
                handle = archive.extractfile(member)
                content = handle.read() if handle is not None else b""
                where = f"{shown}:{member.name}"
                if schema:
                    _check_schema(content, where)
                else:
                    _check_package(content, where, depth + 1)
    except (OSError, tarfile.TarError, EOFError):
        return  # not a package helm can load either: its own error says so


def _check_schema(data: bytes, shown: str) -> None:
    try:
        schema = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return  # helm refuses a schema that is not JSON, before resolving anything
    outside = outside_reference(schema)
    if outside is not None:
        raise HubbotError(f"the chart's schema: {outside.message}", Location(shown))
