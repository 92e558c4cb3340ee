"""Reading YAML files into plain data, with the line of every key and item.

Helm reads values with YAML 1.1 rules, where a plain `on`, `yes` or `no` is a
boolean; YAML 1.2 tools read them as strings. Rather than guess, such plain
scalars are rejected with their line, so every reader agrees on the value.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.constructor import DuplicateKeyError
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from bot.errors import HubbotError, Location

Path_ = tuple[str | int, ...]

# Plain scalars that YAML 1.1 (helm) reads as booleans but YAML 1.2 as strings.
YAML11_BOOLEANS = frozenset(
    {"y", "Y", "yes", "Yes", "YES", "n", "N", "no", "No", "NO"}
    | {"on", "On", "ON", "off", "Off", "OFF"}
)


@dataclass(frozen=True)
class YamlDoc:
    """A parsed file: plain data, and the 1-based line of each key or item by path."""

    file: str
    data: Any
    lines: dict[Path_, int]

    def line_of(self, path: Path_) -> int | None:
        """The line of `path`, or of its nearest enclosing key."""
        for end in range(len(path), 0, -1):
            line = self.lines.get(path[:end])
            if line is not None:
                return line
        return None


def _parser() -> YAML:
    yaml = YAML(typ="rt")
    yaml.allow_duplicate_keys = False
    yaml.preserve_quotes = True  # tells a quoted "on" (a string) from a plain one
    return yaml


def load_yaml(file: str, text: str) -> YamlDoc:
    """Parse `text` (named `file` in messages) into a YamlDoc, or raise HubbotError."""
    try:
        raw = _parser().load(text)
    except DuplicateKeyError as exc:
        raise HubbotError(_duplicate_message(exc), _mark_location(file, exc)) from None
    except MarkedYAMLError as exc:
        problem = exc.problem or exc.context or "invalid YAML"
        context, start, end = exc.context, exc.context_mark, exc.problem_mark
        if context and start and end and start.line != end.line:
            problem += f" ({context} on line {start.line + 1})"
        raise HubbotError(f"malformed YAML: {problem}", _mark_location(file, exc)) from None
    except YAMLError as exc:
        raise HubbotError(f"malformed YAML: {exc}", Location(file)) from None
    lines: dict[Path_, int] = {}
    data = _plain(raw, (), lines, file)
    return YamlDoc(file=file, data=data, lines=lines)


def _mark_location(file: str, exc: MarkedYAMLError) -> Location:
    mark = exc.problem_mark or exc.context_mark
    return Location(file, mark.line + 1 if mark is not None else None)


def _duplicate_message(exc: DuplicateKeyError) -> str:
    key = str(exc.problem or "").split('"')
    name = key[1] if len(key) > 2 else "?"
    first = exc.context_mark.line + 1 if exc.context_mark is not None else None
    return f'duplicate key "{name}" (first set on line {first})'


def _plain(node: Any, path: Path_, lines: dict[Path_, int], file: str) -> Any:
    """Convert ruamel's round-trip nodes to plain Python, recording lines."""
    if isinstance(node, CommentedMap):
        out: dict[str, Any] = {}
        for key, value in node.items():
            line = node.lc.key(key)[0] + 1
            if not isinstance(key, str):
                raise HubbotError(f"key {key!r} must be a string (quote it)", Location(file, line))
            lines[(*path, key)] = line
            _check_plain_scalar(value, Location(file, line))
            out[key] = _plain(value, (*path, key), lines, file)
        return out
    if isinstance(node, CommentedSeq):
        items = []
        for index, value in enumerate(node):
            line = node.lc.item(index)[0] + 1
            lines[(*path, index)] = line
            _check_plain_scalar(value, Location(file, line))
            items.append(_plain(value, (*path, index), lines, file))
        return items
    if isinstance(node, bool) or node is None:
        return node
    if isinstance(node, int):
        return int(node)
    if isinstance(node, float):
        return float(node)
    if isinstance(node, datetime.date):
        return node.isoformat()
    if isinstance(node, str):
        return str(node)
    return node


def _check_plain_scalar(value: Any, where: Location) -> None:
    if type(value) is str and value in YAML11_BOOLEANS:
        raise HubbotError(
            f"plain `{value}` is a boolean to helm (YAML 1.1) but a string to YAML 1.2: "
            f'write true/false, or quote it ("{value}") if you mean the string',
            where,
        )


def dump_yaml(data: Any) -> str:
    """Block-style YAML that every reader (YAML 1.1 or 1.2) reads back identically."""
    import io

    from ruamel.yaml.representer import RoundTripRepresenter

    from bot.imagetag import reads_as_non_string

    class _Representer(RoundTripRepresenter):
        def represent_str(self, data: str) -> Any:
            style = '"' if reads_as_non_string(data) or data in YAML11_BOOLEANS else None
            if "\n" in data:
                style = "|"
            return self.represent_scalar("tag:yaml.org,2002:str", data, style=style)

    _Representer.add_representer(str, _Representer.represent_str)
    yaml = YAML(typ="rt")
    yaml.Representer = _Representer
    yaml.default_flow_style = False
    yaml.width = 4096
    out = io.StringIO()
    yaml.dump(data, out)
    return out.getvalue()
