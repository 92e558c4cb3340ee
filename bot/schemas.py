"""The JSON Schemas in schemas/, and turning their errors into pinned problems.

Like pre-commit's clientlib: the schema is the contract for a file, and a
violation is reported at the path it concerns, for the caller to place.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

import jsonschema_rs

from bot.errors import HubbotError, Location, did_you_mean
from bot.source import Source, memoized
from bot.yamlfile import Path_, load_yaml

if TYPE_CHECKING:
    from jsonschema.exceptions import ValidationError
    from jsonschema.protocols import Validator

SCHEMA_DIR = "schemas"
# The draft of a schema that names none, by the name of its `jsonschema` validator.
DRAFT_2020_12 = "Draft202012Validator"
DRAFT_7 = "Draft7Validator"


class SchemaInvalid(Exception):
    """A schema that is not a valid schema of its draft; the message says why."""

    def __init__(self, message: str, path: Path_ = ()) -> None:
        super().__init__(message)
        self.message = message
        self.path = path  # where in the schema, when known


# The drafts' own meta-schemas, which validators know without fetching them.
KNOWN_META_SCHEMAS = frozenset(
    f"{scheme}://json-schema.org/{draft}{fragment}"
    for scheme in ("http", "https")
    for draft in (
        "schema", "draft-04/schema", "draft-06/schema", "draft-07/schema",
        "draft/2019-09/schema", "draft/2020-12/schema",
    )
    for fragment in ("", "#")
)
_REFERENCES = ("$ref", "$dynamicRef", "$recursiveRef")
# Keywords whose value maps names to schemas: the names are data, not keywords.
_NAMED_SCHEMAS = (
    "properties", "patternProperties", "$defs", "definitions", "dependentSchemas",
    "dependencies",
)
# Keywords whose value is an instance, never a schema.
_INSTANCES = ("enum", "const", "default", "examples")


def outside_reference(schema: Any, path: Path_ = ()) -> SchemaInvalid | None:
    """The first reference that leaves the schema, as the error to raise.

    A schema comes from a pull request, and a validator resolves a reference to a URL
    or a file by fetching or reading it, then quotes what it found in its messages.
    Only references within the schema (`#...`) and the drafts' meta-schemas are kept.
    Property names and instances (`enum`, `default`, ...) are data, not keywords.
    """
    for where, value in _keywords(schema, path):
        key = where[-1]
        if key in _REFERENCES:
            if not (isinstance(value, str) and value.startswith("#")):
                return SchemaInvalid(
                    f"`{key}: {value}` refers outside this schema: only references within "
                    "it (such as `#/$defs/name`) are allowed",
                    where,
                )
        elif key == "$id" or (key == "id" and isinstance(value, str)):
            return SchemaInvalid(
                f"`{key}: {value}` would change where this schema's references resolve (a "
                "validator may then fetch them): remove it",
                where,
            )
        elif key == "$schema" and not (isinstance(value, str) and value in KNOWN_META_SCHEMAS):
            return SchemaInvalid(
                f"`$schema: {value}` is not a JSON Schema draft's meta-schema (such as "
                "https://json-schema.org/draft/2020-12/schema)",
                where,
            )
    return None


@dataclass(frozen=True)
class Violation:
    """One schema error at `path` of the validated document."""

    path: Path_
    message: str
    keyword: str
    title: str
    missing: str | None = None  # for `required`: the key that is missing under `path`


def unresolved_reference(schema: Any) -> SchemaInvalid | None:
    """The first reference within the schema (`#/...`, `#anchor`) that names nothing in it."""
    anchors = {value for key, value in _keywords(schema, ()) if key[-1] in _ANCHORS}
    for path, ref in _keywords(schema, ()):
        if path[-1] not in _REFERENCES or not isinstance(ref, str):
            continue
        fragment = unquote(ref[1:])
        found = _pointed(schema, fragment) if fragment.startswith("/") or not fragment else (
            fragment in anchors
        )
        if not found:
            return SchemaInvalid(f"`{path[-1]}: {ref}` points to nothing in this schema", path)
    return None


_ANCHORS = ("$anchor", "$dynamicAnchor")


def _keywords(schema: Any, path: Path_) -> Iterator[tuple[Path_, Any]]:
    """(path, value) of every keyword in schema positions, outermost first: the keys of a
    mapping of named schemas (`properties`, `$defs`, ...) are names, and the values of
    `enum`, `const`, `default` and `examples` are instances, so neither is looked into."""
    if isinstance(schema, list):
        for index, item in enumerate(schema):
            yield from _keywords(item, (*path, index))
        return
    if not isinstance(schema, dict):
        return
    for key, value in schema.items():
        where = (*path, key)
        yield where, value
        if key in _NAMED_SCHEMAS and isinstance(value, dict):
            for name, named in value.items():
                yield from _keywords(named, (*where, name))
        elif key not in _INSTANCES:
            yield from _keywords(value, where)


def _pointed(schema: Any, pointer: str) -> bool:
    """Whether the JSON pointer (RFC 6901) names a value in `schema`."""
    node = schema
    for token in pointer.split("/")[1:]:
        step = token.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and step in node:
            node = node[step]
        elif isinstance(node, list) and step.isdigit() and int(step) < len(node):
            node = node[int(step)]
        else:
            return False
    return True


def load_schema(source: Source, name: str) -> dict[str, Any]:
    """schemas/<name>.schema.yaml from `source`, checked to be a valid schema."""
    return memoized(source, ("schema", name), lambda: _load_schema(source, name))


def _load_schema(source: Source, name: str) -> dict[str, Any]:
    file = f"{SCHEMA_DIR}/{name}.schema.yaml"
    text = source.read(file)
    if text is None:
        raise HubbotError(f"schema {file} is missing from {source.label}", Location(file))
    doc = load_yaml(file, text)
    schema = doc.data
    # Before check_schema: the validator classes take only a mapping or a boolean.
    if not isinstance(schema, dict):
        empty = ", not an empty file" if schema is None else ""
        raise HubbotError(f"a schema must be a mapping{empty}", Location(file, 1))
    try:
        check_schema(schema, DRAFT_2020_12)
    except SchemaInvalid as exc:
        where = Location(file, doc.line_of(exc.path))
        raise HubbotError(f"invalid JSON Schema: {exc.message}", where) from None
    return schema


def _full_class(schema: Any, default: str) -> type[Validator]:
    """The `jsonschema` validator class for the schema's draft (`default` when it names none).

    Imported here, not at the top: importing jsonschema takes longer (~65 ms) than
    `hubbot render` spends on everything but helm, and only a refusal needs it.
    """
    import jsonschema

    cls: type[Validator] = jsonschema.validators.validator_for(
        schema, default=getattr(jsonschema, default)
    )
    return cls


def check_schema(schema: Any, default: str) -> None:
    """Raise SchemaInvalid unless `schema` is a valid schema of its draft.

    jsonschema-rs checks it against the meta-schema in microseconds; only a schema it
    refuses is checked by `jsonschema` (a second or more for a 30 KB schema), whose
    error is the one reported. Before either, a reference out of the schema is refused.
    """
    problem = outside_reference(schema) or unresolved_reference(schema)
    if problem is not None:
        raise problem
    try:
        if jsonschema_rs.meta.is_valid(schema):
            return
    except (ValueError, TypeError, jsonschema_rs.ReferencingError):
        pass  # a schema the fast check cannot take: the full one decides
    import jsonschema  # see _full_class

    try:
        _full_class(schema, default).check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise SchemaInvalid(exc.message) from None


@dataclass
class Checker:
    """A compiled schema for checking many documents.

    jsonschema-rs tells in microseconds whether a document is valid; only a
    refused document is walked again by `jsonschema`, whose errors carry the
    paths and messages reported. Neither asserts `format`, as helm does not.
    """

    fast: jsonschema_rs.Validator | None
    schema: dict[str, Any]
    default: str  # the draft when the schema names none
    _full: Validator | None = field(default=None, repr=False)

    @property
    def full(self) -> Validator:
        """The `jsonschema` validator, made the first time a document needs explaining."""
        if self._full is None:
            self._full = _full_class(self.schema, self.default)(self.schema)
        return self._full

    def violations(self, document: Any, title: str, prefix: Path_ = ()) -> list[Violation]:
        if self.fast is not None:
            try:
                if self.fast.is_valid(document):
                    return []
            except (ValueError, TypeError):
                pass  # a value the fast validator cannot take: the full one explains it
        return violations(document, self.full, title, prefix)


def compile_checker(schema: dict[str, Any], default: str) -> Checker:
    """A Checker for `schema` (its `$schema` draft, else `default`); raises SchemaInvalid."""
    check_schema(schema, default)
    try:
        fast: jsonschema_rs.Validator | None = jsonschema_rs.validator_for(
            schema, validate_formats=False
        )
    except ValueError:
        fast = None  # a schema only `jsonschema` can compile: it checks every document
    return Checker(fast, schema, default)


def load_checker(source: Source, name: str) -> Checker:
    """A compiled Checker for schemas/<name>.schema.yaml, once per source."""
    return memoized(
        source,
        ("checker", name),
        lambda: compile_checker(load_schema(source, name), DRAFT_2020_12),
    )


def violations(
    document: Any, validator: Validator, title: str, prefix: Path_ = ()
) -> list[Violation]:
    """Every violation of the validator's schema by `document`, in path order.

    `prefix` is where `document` sits in the values (a chart's own part of them).
    """
    found = [
        v for error in validator.iter_errors(document) for v in _explain(error, title, prefix)
    ]
    unique = {(v.path, v.message): v for v in found}
    return sorted(unique.values(), key=lambda v: ([str(p) for p in v.path], v.message))


def _explain(error: ValidationError, title: str, prefix: Path_ = ()) -> Iterator[Violation]:
    path: Path_ = (*prefix, *error.absolute_path)
    if error.validator in ("anyOf", "oneOf", "allOf") and error.context:
        # Report the branch that got deepest: the most specific reason.
        best = max(error.context, key=lambda e: len(e.absolute_path))
        yield from _explain(best, title, prefix)
        return
    schema: dict[str, Any] = error.schema if isinstance(error.schema, dict) else {}
    expected: Any = error.validator_value
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        allowed = set(schema.get("properties", {}))
        patterns = list(schema.get("patternProperties", {}))
        for key in error.instance:
            if key not in allowed and not any(re.search(p, key) for p in patterns):
                yield Violation(
                    (*path, key),
                    f"unknown key `{key}`{_known(key, allowed)}",
                    "additionalProperties",
                    title,
                )
        return
    if error.validator == "required" and isinstance(error.instance, dict):
        for key in expected:
            if key not in error.instance:
                where = _dotted(path) or "the top level"
                yield Violation(
                    path, f"`{key}` is required under {where}", "required", title, key
                )
        return
    custom = schema.get("errorMessage")
    if error.validator == "pattern":
        text = _pattern_message(error.instance, str(expected), schema.get("description"))
    else:
        text = custom if isinstance(custom, str) else _plain_message(error)
    yield Violation(path, f"{_dotted(path) or '(document)'}: {text}", str(error.validator), title)


def _pattern_message(value: Any, pattern: str, description: Any) -> str:
    """A value of the wrong form, in words: never the regular expression itself."""
    what = description if isinstance(description, str) else "in the form this setting takes"
    text = f"{_show(value)} is not {what}"
    fix = _repaired(value, pattern) if isinstance(value, str) else None
    return text + (f" (write {fix})" if fix else "")


def _repaired(value: str, pattern: str) -> str | None:
    """The first of a few usual slips undone (16GB, 16 g, Tess-Public) that fits `pattern`."""
    compact = value.strip()
    candidates = [compact, compact.lower()]
    # A size with a byte suffix (16GB, 512 MiB, 4gb): the unit alone, as written and in capitals.
    if re.fullmatch(r"[0-9.]+\s*[A-Za-z]+", compact):
        unit = re.sub(r"(?i)i?b$", "", "".join(compact.split()))
        candidates += [unit, unit.upper(), re.sub(r"(?i)i$", "", unit).upper()]
    try:
        return next((c for c in candidates if c != value and re.search(pattern, c)), None)
    except re.error:
        return None


def _plain_message(error: ValidationError) -> str:
    expected: Any = error.validator_value
    if error.validator == "type":
        types = expected if isinstance(expected, list) else [expected]
        return f"{_show(error.instance)} is not of type {' or '.join(map(str, types))}"
    if error.validator == "enum":
        choices = ", ".join(_show(v) for v in expected)
        return f"{_show(error.instance)} is not one of {choices}"
    if error.validator == "const":
        return f"must be {_show(error.validator_value)}, not {_show(error.instance)}"
    return str(error.message)


def _show(value: Any) -> str:
    if isinstance(value, dict | list):
        return "a mapping" if isinstance(value, dict) else "a list"
    if isinstance(value, str):
        return f'"{value}"'
    return (
        "null" if value is None else str(value).lower() if isinstance(value, bool) else str(value)
    )


def _known(key: str, allowed: set[str]) -> str:
    close = did_you_mean(key, allowed)
    if close:
        return f" ({close})"
    if not allowed or len(allowed) > 12:
        return ""
    return " (expected one of: " + ", ".join(sorted(allowed)) + ")"


def _dotted(path: Path_) -> str:
    return ".".join(str(p) for p in path)
