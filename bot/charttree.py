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
import stat
import tarfile
from pathlib import Path

from bot.errors import HubbotError, Location
from bot.schemas import outside_reference
from bot.source import link_error

SCHEMA_FILE = "values.schema.json"
# helm loads no chart file bigger than this; a bigger member is not read here either.
_MAX_MEMBER_BYTES = 5 * 1024 * 1024


def check_chart_tree(chart_dir: Path) -> None:
    """Raise for a link, a special file or a schema referring outside itself in the chart."""
    for directory, subdirectories, files in os.walk(chart_dir):
        for name in sorted(subdirectories + files):
            full = Path(directory, name)
            shown = f"{chart_dir.name}/{full.relative_to(chart_dir).as_posix()}"
            mode = os.lstat(full).st_mode
            if stat.S_ISLNK(mode):
                raise link_error(shown, os.readlink(full))
            if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
                raise HubbotError(
                    "is neither a file nor a directory (helm would read it, or wait on it): "
                    "remove it from the chart",
                    Location(shown),
                )
            if name == SCHEMA_FILE:
                _check_schema(full.read_bytes(), shown)
            elif name.endswith(".tgz"):
                _check_package(full.read_bytes(), shown)


def _check_package(data: bytes, shown: str) -> None:
    """The schemas of a chart package and of the packages inside it."""
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
            for member in archive:
                name = member.name.rsplit("/", 1)[-1]
                wanted = name == SCHEMA_FILE or name.endswith(".tgz")
                if not (wanted and member.isfile() and member.size <= _MAX_MEMBER_BYTES):
                    continue
                handle = archive.extractfile(member)
                content = handle.read() if handle is not None else b""
                where = f"{shown}:{member.name}"
                if name == SCHEMA_FILE:
                    _check_schema(content, where)
                else:
                    _check_package(content, where)
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
