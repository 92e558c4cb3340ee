"""JSON copies of schemas/ for editors: `make schemas` writes them, `--check` compares.

yaml-language-server (VS Code's YAML extension) reads JSON Schema draft 7 from
.json files, so each copy says draft 7 (the schemas use no newer keyword). A
layer file (hub/values.yaml, config/*.yaml) holds part of the values, so its
copy requires nothing (a missing key may come from another layer), has no
`if`/`then` (the keys a condition reads may too) and lets any key be `null`
(a layer's way to delete it); only `hubbot validate` sees the merged document.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "schemas" / "editor"
DRAFT_7 = "http://json-schema.org/draft-07/schema#"
# What only the merged values can satisfy: a key, or a condition on keys, that another
# layer may set.
LAYER_DROPS = frozenset({"required", "if", "then", "else"})
GENERATED = "Generated from schemas/{source} by `make schemas`; edit that file instead."


def for_a_layer(node: Any) -> Any:
    """The schema of one layer: nothing required, no condition on other keys, and every
    key may be `null` (which deletes the key, also one that only the chart's defaults set)."""
    if isinstance(node, list):
        return [for_a_layer(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: for_a_layer(value) for key, value in node.items() if key not in LAYER_DROPS}
    for section in ("properties", "$defs"):
        if isinstance(out.get(section), dict):
            out[section] = {key: nullable(value) for key, value in out[section].items()}
    return out


def nullable(schema: Any) -> Any:
    if not isinstance(schema, dict) or set(schema) == {"$ref"}:
        return schema  # a $ref's target in $defs is made nullable itself
    if "type" in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        return {**schema, "type": [*types, "null"]} if "null" not in types else schema
    if "enum" in schema:
        return {**schema, "enum": [*schema["enum"], None]}
    return {"anyOf": [schema, {"type": "null"}]}


def copies() -> dict[Path, str]:
    def copy(source: str, partial: bool) -> str:
        schema = yaml.safe_load((ROOT / "schemas" / source).read_text())
        if partial:
            schema = for_a_layer(schema)
        schema = {
            "$schema": DRAFT_7,
            "$comment": GENERATED.format(source=source),
            **{key: value for key, value in schema.items() if key != "$schema"},
        }
        return json.dumps(schema, indent=2, sort_keys=False) + "\n"

    return {
        OUT / "hubploy.schema.json": copy("hubploy.schema.yaml", partial=False),
        OUT / "values-layer.schema.json": copy("values.schema.yaml", partial=True),
    }


def main(argv: list[str]) -> int:
    wanted = copies()
    stale = [
        path for path, text in wanted.items() if not path.is_file() or path.read_text() != text
    ]
    if "--check" in argv:
        for path in stale:
            print(f"{path.relative_to(ROOT)} is out of date: run `make schemas`", file=sys.stderr)
        return 1 if stale else 0
    OUT.mkdir(exist_ok=True)
    for path, text in wanted.items():
        path.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
