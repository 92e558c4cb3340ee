"""bot/schemas.py: which references a schema may hold (the rest of it: test_validate)."""

from __future__ import annotations

import json
import tarfile
from typing import Any

import pytest

from bot.schemas import outside_reference, unresolved_reference
from tests.fixtures.charts import chart_packages_directory


@pytest.mark.parametrize(
    "schema",
    [
        # Property names and instances are data, not keywords.
        {"properties": {"$ref": {"type": "string"}, "$schema": {"type": "string"}}},
        {"properties": {"a": {"enum": [{"$ref": "http://x"}], "default": {"$ref": "file:///x"}}}},
        {"$defs": {"$ref": {"const": {"$schema": "http://example.com/x"}}}},
        {"$schema": "http://json-schema.org/schema#", "$ref": "#/$defs/a"},
        {"$schema": "https://json-schema.org/draft/2020-12/schema#"},
    ],
)
def test_what_stays_within_the_schema_passes(schema: dict[str, Any]) -> None:
    assert outside_reference(schema) is None


@pytest.mark.parametrize(
    ("schema", "path"),
    [
        ({"properties": {"a": {"$ref": "file:///etc/passwd"}}}, ("properties", "a", "$ref")),
        ({"items": [{"$ref": "http://198.51.100.7/x"}]}, ("items", 0, "$ref")),
        ({"allOf": [{"$dynamicRef": "other.json#a"}]}, ("allOf", 0, "$dynamicRef")),
        ({"$schema": {"not": "a string"}}, ("$schema",)),
        ({"$schema": "http://198.51.100.7/meta"}, ("$schema",)),
        ({"$ref": 7}, ("$ref",)),
    ],
)
def test_a_reference_out_of_the_schema_is_found_where_it_is(
    schema: dict[str, Any], path: tuple[str | int, ...]
) -> None:
    found = outside_reference(schema)
    assert found is not None
    assert found.path == path


def test_the_real_charts_schemas_pass() -> None:
    checked = 0
    for package in sorted(chart_packages_directory().glob("jupyterhub-*.tgz")):
        with tarfile.open(package) as archive:
            member = archive.extractfile("jupyterhub/values.schema.json")
            assert member is not None
            assert outside_reference(json.load(member)) is None
            checked += 1
    assert checked >= 1


@pytest.mark.parametrize(
    ("schema", "path"),
    [
        ({"properties": {"h": {"$id": "http://198.51.100.7/x.json#a", "$ref": "#/y"}}},
         ("properties", "h", "$id")),
        ({"id": "file:///etc/"}, ("id",)),
    ],
)
def test_an_id_that_moves_where_references_resolve_is_refused(
    schema: dict[str, Any], path: tuple[str | int, ...]
) -> None:
    found = outside_reference(schema)
    assert found is not None
    assert found.path == path


@pytest.mark.parametrize(
    ("schema", "problem"),
    [
        ({"$defs": {"a": {}}, "items": {"$ref": "#/$defs/b"}}, ("items", "$ref")),
        ({"$dynamicRef": "#meta"}, ("$dynamicRef",)),
        ({"$defs": {"a~b": {"$anchor": "n"}}, "items": {"$ref": "#/$defs/a~0b"}}, None),
        ({"$defs": {"a": {"$anchor": "n"}}, "items": {"$ref": "#n"}}, None),
        ({"items": {"$ref": "#"}}, None),
    ],
)
def test_a_reference_within_the_schema_must_name_something_in_it(
    schema: dict[str, Any], problem: tuple[str, ...] | None
) -> None:
    found = unresolved_reference(schema)
    assert (found.path if found else None) == problem
