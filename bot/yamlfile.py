"""Reading YAML files into plain data, with the line of every key and item.

Helm reads values with YAML 1.1 rules, where a plain `on`, `yes` or `no` is a
boolean; YAML 1.2 tools read them as strings. Rather than guess, such plain
scalars are rejected with their line, so every reader agrees on the value.
Likewise every file reads as plain JSON-like data: a tag other than `!!str` on
a scalar (`!!binary`, `!!set`, `!!timestamp`, `!foo`) is rejected with its line.

The meaning of a file is defined by ruamel.yaml's round-trip loader (YAML 1.2).
Its pure-Python parser is most of the time `hubbot validate` spends, so an
ordinary file is read by libyaml's composer instead, with every plain scalar
resolved and constructed by ruamel's own rules. Anything out of the ordinary
(an error, a duplicate or non-string key, a tag, an anchor, a directive, a
merge key, a rejected boolean) is read again by ruamel, which gives the answer
or the message.

Every file comes from a pull request, so reading it is bounded: its size, how
deep it nests and how many values its aliases expand to are limited, each
refused with one message naming the line, in well under a second.
"""

from __future__ import annotations

import datetime
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import yaml
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq, TaggedScalar
from ruamel.yaml.composer import Composer, MaxDepthExceededError
from ruamel.yaml.constructor import DuplicateKeyError
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.events import AliasEvent, CollectionStartEvent, ScalarEvent
from ruamel.yaml.nodes import MappingNode, SequenceNode
from ruamel.yaml.reader import ReaderError
from ruamel.yaml.scalarbool import ScalarBoolean
from ruamel.yaml.scalarint import ScalarInt

from bot.errors import HubbotError, Location

Path_ = tuple[str | int, ...]

# The bounds on reading one file. The largest file of this repository is about
# 10 KiB and nests about 10 levels; a few merge keys expand to some hundred values.
MAX_FILE_BYTES = 256 * 1024
MAX_DEPTH = 100  # levels of collections and the value at the bottom
MAX_ALIAS_VALUES = 10_000

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
    parser = YAML(typ="rt")
    parser.allow_duplicate_keys = False
    parser.preserve_quotes = True  # tells a quoted "on" (a string) from a plain one
    parser.Composer = _BoundedComposer
    parser.max_depth = MAX_DEPTH
    return parser


class _Refused(Exception):
    """What the composer refuses at `line` (1-based): a limit of reading, or a tag."""

    def __init__(self, message: str, line: int) -> None:
        super().__init__(message)
        self.message = message
        self.line = line


class _BoundedComposer(Composer):
    """ruamel's composer, refusing every tag but !!str on a scalar, and aliases that
    expand beyond the limits.

    Every alias is a copy of its anchored node once read into plain data: the
    expanded size and height of each node are kept as it is composed, so nine
    levels of nine aliases each are refused at the alias that passes the limit,
    before anything is expanded.
    """

    def __init__(self, loader: Any = None) -> None:
        super().__init__(loader)
        self.expanded: dict[int, tuple[int, int]] = {}  # id(node) -> (values, height)
        self.alias_values = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.parser.peek_event()
        tag = event.tag if isinstance(event, CollectionStartEvent | ScalarEvent) else None
        if tag is not None and (tag != _STR or isinstance(event, CollectionStartEvent)):
            # Before ruamel builds the set, bytes, date or object the tag asks for.
            raise _Refused(_unsupported_tag(tag), event.start_mark.line + 1)
        node = super().compose_node(parent, index)
        if isinstance(event, AliasEvent):
            line = event.start_mark.line + 1
            size = self.expanded.get(id(node))
            if size is None:
                raise _Refused(f"alias *{event.anchor} refers to a node that contains it", line)
            self.alias_values += size[0]
            if self.alias_values > MAX_ALIAS_VALUES:
                raise _Refused(
                    f"aliases expand to more than {MAX_ALIAS_VALUES:,} values (a YAML alias "
                    "bomb?): write the values out or use fewer aliases",
                    line,
                )
            if self.depth + size[1] > MAX_DEPTH:
                raise _Refused(
                    f"alias *{event.anchor} nests the data more than {MAX_DEPTH} levels deep",
                    line,
                )
            return node
        if isinstance(node, SequenceNode):
            children = [self.expanded[id(item)] for item in node.value]
        elif isinstance(node, MappingNode):
            children = [self.expanded[id(part)] for pair in node.value for part in pair]
        else:
            children = []
        self.expanded[id(node)] = (
            1 + sum(values for values, _ in children),
            1 + max((height for _, height in children), default=0),
        )
        return node


_YAML_TAG = "tag:yaml.org,2002:"
# The one tag every layer may use: a string, read alike by YAML 1.1 (helm) and 1.2.
_STR = _YAML_TAG + "str"


def _unsupported_tag(tag: str) -> str:
    return f"the YAML tag {_written(tag)} is not supported here: write the plain value"


def _written(tag: str) -> str:
    """A tag as YAML's shorthand writes it: `!!set`, not `tag:yaml.org,2002:set`."""
    return "!!" + tag.removeprefix(_YAML_TAG) if tag.startswith(_YAML_TAG) else tag


def load_yaml(file: str, text: str) -> YamlDoc:
    """Parse `text` (named `file` in messages) into a YamlDoc, or raise HubbotError."""
    if len(text) > MAX_FILE_BYTES // 4:  # a character is at most 4 bytes in UTF-8
        data = text.encode()
        if len(data) > MAX_FILE_BYTES:
            raise HubbotError(
                f"the file is larger than {MAX_FILE_BYTES // 1024} KiB, the limit for a YAML "
                "file here: split it or make it smaller",
                Location(file, data[:MAX_FILE_BYTES].count(b"\n") + 1),
            )
    doc = _load_with_libyaml(file, text)
    if doc is not None:
        return doc
    # ruamel's scanner slows down with every open flow level: refuse deep nesting first.
    line = _too_deep(text)
    if line is not None:
        raise HubbotError(TOO_DEEP, Location(file, line))
    return _load_with_ruamel(file, text)


TOO_DEEP = f"the data nests more than {MAX_DEPTH} levels deep: flatten it"


def _too_deep(text: str) -> int | None:
    """The line of the first value nested deeper than MAX_DEPTH, as libyaml reads the text."""
    depth = 0
    try:
        for event in yaml.parse(text, Loader=yaml.CSafeLoader):
            if isinstance(event, (yaml.ScalarEvent, yaml.CollectionStartEvent)):
                if depth >= MAX_DEPTH and event.start_mark is not None:
                    return int(event.start_mark.line) + 1
                depth += isinstance(event, yaml.CollectionStartEvent)
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
    except yaml.MarkedYAMLError as exc:
        # libyaml stops at 1,000 levels, before any event when they are all on one line.
        if exc.problem == "exceeded maximum nesting depth" and exc.problem_mark is not None:
            return int(exc.problem_mark.line) + 1
    except yaml.YAMLError:
        pass  # ruamel words the error (and still bounds the depth)
    return None


def _load_with_libyaml(file: str, text: str) -> YamlDoc | None:
    """The document, or None where ruamel must read the file."""
    if _odd_syntax(text):
        return None
    try:
        return _Fast(file).load(text)
    except (_NotOrdinary, yaml.YAMLError):
        return None


def _load_with_ruamel(file: str, text: str) -> YamlDoc:
    try:
        raw = _parser().load(text)
    except _Refused as exc:
        raise HubbotError(exc.message, Location(file, exc.line)) from None
    except MaxDepthExceededError as exc:
        raise HubbotError(TOO_DEEP, _mark_location(file, exc)) from None
    except ReaderError as exc:
        raise _reader_error(file, text, exc) from None
    except DuplicateKeyError as exc:
        raise HubbotError(_duplicate_message(exc), _mark_location(file, exc)) from None
    except MarkedYAMLError as exc:
        problem = exc.problem or exc.context or "invalid YAML"
        context, start, end = exc.context, exc.context_mark, exc.problem_mark
        if context and start and end and start.line != end.line:
            problem += f" ({context} on line {start.line + 1})"
        where = _mark_location(file, exc)
        hint = _placeholder_hint(text, where.line)
        raise HubbotError(f"malformed YAML: {problem}{hint}", where) from None
    except YAMLError as exc:
        raise HubbotError(f"malformed YAML: {exc}", Location(file)) from None
    except (IndexError, KeyError, TypeError, ValueError) as exc:
        # ruamel fails this way on a few odd plain scalars (such as `+_`): still one message.
        raise HubbotError(
            f"malformed YAML: a value cannot be read ({type(exc).__name__}): quote odd values",
            Location(file),
        ) from None
    lines: dict[Path_, int] = {}
    try:
        data = _plain(raw, (), lines, file)
    except _NonStringKey as exc:
        raise HubbotError(_non_string_key(text, exc), Location(file, exc.line)) from None
    return YamlDoc(file=file, data=data, lines=lines)


class _NonStringKey(Exception):
    """A mapping key that is not a string, on `line` (worded with the file's text)."""

    def __init__(self, key: Any, line: int) -> None:
        super().__init__(line)
        self.key = key
        self.line = line


# `{{ cookiecutter.x }}` or `{% ... %}` left in a file: YAML reads `{{ x }}` as a mapping.
_PLACEHOLDER = re.compile(r"\{\{.*?\}\}|\{%.*?%\}")


def _source_line(text: str, line: int | None) -> str:
    lines = text.splitlines()
    return lines[line - 1].strip() if line is not None and 0 < line <= len(lines) else ""


def _placeholder_hint(text: str, line: int | None) -> str:
    found = _PLACEHOLDER.search(_source_line(text, line))
    if found is None:
        return ""
    return (
        f"; `{found.group()}` looks like an unfilled template placeholder (cookiecutter or "
        "Jinja): fill it in"
    )


def _non_string_key(text: str, exc: _NonStringKey) -> str:
    written = _source_line(text, exc.line)
    found = _PLACEHOLDER.search(written)
    if found is not None:
        return (
            f"`{found.group()}` looks like an unfilled template placeholder (cookiecutter or "
            "Jinja), which YAML reads as a mapping: fill it in, or quote it"
        )
    if not isinstance(exc.key, dict | list | tuple):
        return f"key {exc.key!r} must be a string (quote it)"
    return f"a key must be a string, and this line has one that is not (`{written}`): quote it"


# A tag or anchor (after a space, flow indicator or line start), a directive, or
# what the two scanners treat differently: a tab, a byte order mark, a lone
# carriage return, YAML 1.1's extra line breaks, a `#` right after a block
# scalar's indicator. A false match only costs speed.
_TAG_OR_ANCHOR = re.compile(r"(?:^|[\s\[{,:])[!&]", re.MULTILINE)
_LONE_CR = re.compile(r"\r(?!\n)")
_BLOCK_COMMENT = re.compile(r"[|>][-+0-9]*#")
_ODD_CHARACTERS = ("\t", "\x85", "\u2028", "\u2029", "\ufeff")


def _odd_syntax(text: str) -> bool:
    """Whether `text` has any of the above. One regular expression of them all scans
    every character against each branch (a tenth of `hubbot validate`): `in` skips the
    branches whose characters the text lacks, as almost every file does."""
    return (
        (("!" in text or "&" in text) and _TAG_OR_ANCHOR.search(text) is not None)
        or text.startswith("%")
        or "\n%" in text
        or any(character in text for character in _ODD_CHARACTERS)
        or ("\r" in text and _LONE_CR.search(text) is not None)
        or ("#" in text and _BLOCK_COMMENT.search(text) is not None)
    )

_PLAIN = "hubbot:plain"
_QUOTED = "hubbot:quoted"
_COLLECTION = "hubbot:collection"
_OTHER = "hubbot:other"
_CONSTRUCTED = frozenset(
    {f"tag:yaml.org,2002:{name}" for name in ("bool", "int", "float", "null", "timestamp")}
)


class _NotOrdinary(Exception):
    """The file needs ruamel to be read exactly (or to word its error)."""


class _Composer(yaml.CSafeLoader):
    """libyaml's composer, marking each node as plain, quoted or otherwise tagged."""

    def resolve(self, kind: Any, value: Any, implicit: Any) -> str:
        if kind is yaml.ScalarNode:
            return _PLAIN if implicit[0] else _QUOTED if implicit[1] else _OTHER
        return _COLLECTION if implicit else _OTHER


class _Fast:
    """Builds a YamlDoc from libyaml's node tree, as _load_with_ruamel would."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.lines: dict[Path_, int] = {}
        self.seen: set[int] = set()
        self.depth = 0

    def load(self, text: str) -> YamlDoc:
        loader = _Composer(text)
        try:
            root = loader.get_single_node()
        finally:
            loader.dispose()
        if root is not None and not isinstance(root, yaml.CollectionNode):
            raise _NotOrdinary  # the scanners differ on a top-level block scalar's `#` lines
        data = None if root is None else self.value(root, ())
        return YamlDoc(file=self.file, data=data, lines=self.lines)

    def value(self, node: yaml.Node, path: Path_) -> Any:
        """A collection's data (a scalar is read by `item`, in the loop over its parent)."""
        # An alias (a node met again) or deep nesting: ruamel's bounded reading decides.
        if node.tag != _COLLECTION or id(node) in self.seen or self.depth >= MAX_DEPTH - 1:
            raise _NotOrdinary
        self.seen.add(id(node))
        self.depth += 1
        lines = self.lines
        item = self.item
        if isinstance(node, yaml.MappingNode):
            out: dict[str, Any] = {}
            for key_node, value_node in node.value:
                tag = key_node.tag
                if tag == _QUOTED:
                    key = str(key_node.value)
                elif tag == _PLAIN:
                    key = _PLAIN_KEYS.get(key_node.value) or _plain_key(key_node.value)
                else:
                    raise _NotOrdinary
                if key in out:
                    raise _NotOrdinary
                key_path = (*path, key)
                lines[key_path] = key_node.start_mark.line + 1
                out[key] = item(value_node, key_path)
            result: Any = out
        else:
            items = []
            for index, value_node in enumerate(node.value):
                item_path = (*path, index)
                lines[item_path] = value_node.start_mark.line + 1
                items.append(item(value_node, item_path))
            result = items
        self.depth -= 1
        return result

    def item(self, node: yaml.Node, path: Path_) -> Any:
        """The value of a key or a list item."""
        tag = node.tag
        if tag == _QUOTED:
            return node.value
        if tag == _PLAIN:
            value = _PLAIN_VALUES.get(node.value, _UNSEEN)
            if value is _UNSEEN:
                value = _plain_value(node.value)
            if value is _REREAD:
                raise _NotOrdinary
            return value
        return self.value(node, path)


# Plain scalars as read, by their text: most recur in file after file (true, 10, a
# user's name), and working one out costs more than looking it up.
_PLAIN_KEYS: dict[str, str] = {}
_PLAIN_VALUES: dict[str, Any] = {}
_UNSEEN = object()
_REREAD = object()  # ruamel must read the file: for its reading, or for its message


def _plain_key(text: str) -> str:
    key = _read_plain(text)
    if type(key) is not str:
        raise _NotOrdinary
    _PLAIN_KEYS[text] = key
    return key


def _plain_value(text: str) -> Any:
    try:
        value = _read_plain(text)
    except _NotOrdinary:
        value = _REREAD
    if (type(value) is str and value in YAML11_BOOLEANS) or _LEADING_ZERO.match(text):
        value = _REREAD  # ruamel's reading gives the message
    _PLAIN_VALUES[text] = value
    return value


def _read_plain(value: str) -> Any:
    """A plain scalar as ruamel resolves and constructs it."""
    if value and value[0] not in _NON_STRING_STARTS:
        return value
    rt = _RULES
    resolvers = _RESOLVERS.get(value[:1], [])
    tag = next((tag for tag, regexp in resolvers if regexp.match(value)), None)
    if tag is None:
        return value
    if tag not in _CONSTRUCTED:
        raise _NotOrdinary  # the merge key `<<` and the value key `=`
    from ruamel.yaml.nodes import ScalarNode

    constructor = rt.constructor
    try:
        built = constructor.yaml_constructors[tag](constructor, ScalarNode(tag, value))
    except Exception:  # ruamel fails on some (`+_`): let it fail in its own order
        raise _NotOrdinary from None
    if isinstance(built, float) and not math.isfinite(built):
        raise _NotOrdinary  # refused, with its line, where ruamel reads the file
    return _plain(built, (), {}, "")


# ruamel's rules for resolving and constructing a plain scalar, read-only after this:
# made once, as a new YAML() costs more than reading a small file.
_RULES = YAML(typ="rt")
_RESOLVERS = _RULES.resolver.versioned_resolver  # a property, worked out on each use
# The first characters of every plain scalar ruamel may read as other than a string.
_NON_STRING_STARTS = frozenset(first for first in _RESOLVERS if first)


def _reader_error(file: str, text: str, exc: ReaderError) -> HubbotError:
    """A character YAML does not allow, by its byte offset (a binary file, most likely)."""
    before = text[: exc.position]
    offset = len(before.encode())
    character = exc.character if isinstance(exc.character, int) else 0
    return HubbotError(
        f"byte offset {offset}: the character U+{character:04X} is not allowed in YAML "
        "(a binary file?): remove it",
        Location(file, before.count("\n") + 1),
    )


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
            # A key brought in by a merge key (`<<: *anchor`) has no position of its own.
            position = (node.lc.data or {}).get(key)
            line = (position[0] if position else node.lc.line) + 1
            if isinstance(key, TaggedScalar):  # !!str
                key = str(key.value)
                if key in out:  # ruamel told the tagged key from the plain one
                    raise HubbotError(
                        f'duplicate key "{key}" (first set on line {lines[(*path, key)]})',
                        Location(file, line),
                    )
            if not isinstance(key, str):
                raise _NonStringKey(key, line)
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
    if isinstance(node, ScalarBoolean):  # an anchored boolean
        return bool(node)
    if isinstance(node, TaggedScalar):  # !!str, the one tag the composer lets through
        return str(node.value)
    if isinstance(node, int):
        return int(node)
    if isinstance(node, float):
        if not math.isfinite(node):
            # JSON has no such number: helm would get the string NaN or Infinity.
            raise HubbotError(
                f"this reads as {node}, a number JSON cannot hold (YAML's .nan or .inf, or "
                "one too large, such as 1e400), so helm cannot receive it: write a finite "
                "number, or quote it if you mean the string",
                Location(file, lines.get(path)),
            )
        return float(node)
    if isinstance(node, datetime.date):
        return node.isoformat()
    if isinstance(node, str):
        return str(node)
    return node


# A plain integer with a leading zero: octal (or, with an 8 or 9, a string) to helm's
# YAML 1.1, a decimal to YAML 1.2.
_LEADING_ZERO = re.compile(r"^[-+]?0[0-9]+$")


def _check_plain_scalar(value: Any, where: Location) -> None:
    if type(value) is str and value in YAML11_BOOLEANS:
        raise HubbotError(
            f"plain `{value}` is a boolean to helm (YAML 1.1) but a string to YAML 1.2: "
            f'write true/false, or quote it ("{value}") if you mean the string',
            where,
        )
    width = getattr(value, "_width", None) if type(value) is ScalarInt else None
    if width is not None:
        digits = str(abs(int(value)))
        if width > len(digits):
            written = "-" * (value < 0) + digits.rjust(width, "0")
            raise HubbotError(
                f"plain `{written}` has a leading zero: helm (YAML 1.1) reads it as octal or "
                f"a string, YAML 1.2 as {int(value)}: drop the zero, or quote it if you mean "
                "the string",
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


def edit_yaml(file: str, text: str, change: Callable[[Any], None]) -> str:
    """`text` with `change` applied to its round-trip document: comments, key order,
    quoting and flow style are kept, so a reviewer sees only what changed.

    Block sequences are written as this repository writes them (`- ` indented
    two spaces under their key); `null` stays `null`.
    """
    import io

    from ruamel.yaml.representer import RoundTripRepresenter

    class _Representer(RoundTripRepresenter):
        def represent_none(self, data: Any) -> Any:
            return self.represent_scalar("tag:yaml.org,2002:null", "null")

    _Representer.add_representer(type(None), _Representer.represent_none)
    load_yaml(file, text)  # the same checks and messages as every other reader
    editor = _parser()
    editor.Representer = _Representer
    editor.width = 4096
    editor.indent(mapping=2, sequence=4, offset=2)
    document = editor.load(text)
    change(document)
    out = io.StringIO()
    editor.dump(document, out)
    return out.getvalue()
