"""Merging layers: helm's rules, checked against the real helm binary."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot import helm, manifests
from bot.merge import MAP, Layer, effective, merge_layers
from bot.values import layer_files
from bot.yamlfile import Path_, dump_yaml, load_yaml
from tests.fixtures.charts import PROJECT
from tests.fixtures.tools import require_binary

CHART = Path(__file__).parent / "charts" / "layers"


def layer(file: str, text: str) -> Layer:
    doc = load_yaml(file, text)
    return Layer(file, doc.data or {}, doc.lines)


def test_maps_merge_lists_and_scalars_replace() -> None:
    merged = merge_layers(
        [
            layer("base.yaml", "a:\n  x: 1\n  y: [1, 2]\nb: 1\n"),
            layer("top.yaml", "a:\n  y: [3]\nb: {c: 2}\n"),
        ]
    )
    assert merged.document == {"a": {"x": 1, "y": [3]}, "b": {"c": 2}}


def test_null_survives_the_merge_and_deletes_in_the_effective_view() -> None:
    merged = merge_layers(
        [layer("base.yaml", "a:\n  x: 1\n  y: 2\n"), layer("top.yaml", "a:\n  x: null\n")]
    )
    assert merged.document == {"a": {"x": None, "y": 2}}
    assert effective(merged.document) == {"a": {"y": 2}}


def test_provenance_records_the_chain_winner_last() -> None:
    merged = merge_layers(
        [
            layer("values.yaml", "a:\n  x: 1\n"),
            layer("common.yaml", "\na:\n  x: 2\n"),
            layer("prod.yaml", "a:\n\n  x: 3\n"),
        ]
    )
    chain = merged.origins[("a", "x")]
    assert [(o.file, o.line, o.value) for o in chain] == [
        ("values.yaml", 2, 1),
        ("common.yaml", 3, 2),
        ("prod.yaml", 3, 3),
    ]
    assert [o.value for o in merged.origins[("a",)]] == [MAP, MAP, MAP]


def test_a_replaced_map_takes_the_provenance_of_its_keys_with_it() -> None:
    merged = merge_layers(
        [layer("values.yaml", "a:\n  x: 1\n"), layer("prod.yaml", "a: off-value\n")]
    )
    assert ("a", "x") not in merged.origins
    assert merged.winner(("a",)) is not None
    assert merged.nearest(("a", "x", "q")) == (("a",), merged.origins[("a",)][-1])


# Keys overlap the test chart's defaults so null deletion of chart defaults is exercised.
KEYS = st.sampled_from(["a", "b", "c", "x", "y", "z", "deep"])
SCALARS = st.none() | st.booleans() | st.integers(-5, 5) | st.sampled_from(
    ["s", "on", "1e3", "012", "two words", ""]
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(KEYS, inner, max_size=3),
    max_leaves=8,
)
# Maps are drawn often at the top, so layers overlap where merging (not replacing) matters.
MAPS = st.dictionaries(KEYS, st.dictionaries(KEYS, VALUES, max_size=3) | VALUES, max_size=3)
STACKS = st.lists(st.dictionaries(KEYS, MAPS | VALUES, max_size=4), min_size=2, max_size=4)


def below(node: Any, path: Path_ = ()) -> list[tuple[Path_, Any]]:
    """Every (path, value) inside `node` (at `path`), enclosing paths first; written
    apart from bot/merge.py on purpose: the reference must not share its code."""
    if isinstance(node, dict):
        items: Any = node.items()
    elif isinstance(node, list):
        items = enumerate(node)
    else:
        return []
    found: list[tuple[Path_, Any]] = []
    for key, item in items:
        found += [((*path, key), item), *below(item, (*path, key))]
    return found


def paths_in(node: Any) -> list[Path_]:
    return [path for path, _ in below(node)]


def recorded_merge(layers: list[Layer]) -> dict[Path_, list[tuple[str, Any]]]:
    """Provenance the plain way, as a reference: every layer records each path it sets
    while merging; a replaced value takes the records below it along."""
    records: dict[Path_, list[tuple[str, Any]]] = {}

    def merge(dest: dict[str, Any], src: dict[str, Any], path: Path_, file: str) -> None:
        for key, value in src.items():
            here = (*path, key)
            if isinstance(value, dict) and isinstance(dest.get(key), dict):
                records.setdefault(here, []).append((file, MAP))
                dest[key] = dict(dest[key])
                merge(dest[key], value, here, file)
                continue
            for gone, _ in below(dest.get(key), here):
                records.pop(gone, None)
            dest[key] = value
            for at, item in [(here, value), *below(value, here)]:
                records.setdefault(at, []).append((file, MAP if isinstance(item, dict) else item))

    document: dict[str, Any] = {}
    for one in layers:
        merge(document, one.data, (), one.file)
    return records


@settings(max_examples=300, deadline=None)
@given(stack=STACKS)
def test_provenance_worked_out_per_path_is_what_merging_records(
    stack: list[dict[str, Any]],
) -> None:
    layers = [Layer(f"layer{index}.yaml", data, {}) for index, data in enumerate(stack)]
    merged = merge_layers(layers)
    expected = recorded_merge(layers)
    found = {path: [(o.file, o.value) for o in chain] for path, chain in merged.origins.items()}
    assert found == expected
    # Also every path a layer set that a higher one replaced: its chain is empty.
    for path in {path for one in layers for path in paths_in(one.data)} | {("a", "x", 0)}:
        assert [(o.file, o.value) for o in merged.chain(path)] == expected.get(path, [])


def helm_template(helm: str, values_args: list[str], stdin: str | None = None) -> str:
    result = subprocess.run(
        [helm, "template", "t", str(CHART), *values_args],
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(stack=STACKS)
def test_one_merged_document_renders_like_separate_layer_files(
    stack: list[dict[str, Any]], tmp_path: Path
) -> None:
    helm = require_binary("helm", "make setup (scripts/install-helm .venv/bin)")
    files = []
    for index, data in enumerate(stack):
        path = tmp_path / f"layer{index}.yaml"
        path.write_text(dump_yaml(data))
        files.append(path)
    separate = helm_template(helm, [arg for f in files for arg in ("-f", str(f))])
    merged = merge_layers([layer(str(f), f.read_text()) for f in files])
    combined = helm_template(helm, ["-f", "-"], stdin=json.dumps(merged.document))
    assert combined == separate


@pytest.mark.parametrize("hub", ["tess-public", "tess-private"])
@pytest.mark.parametrize("env", ["staging", "prod"])
def test_the_real_layers_render_the_real_chart_like_separate_files(
    hub: str, env: str, hub_chart_offline_ready: Path
) -> None:
    """The property above, on the real chart with this repository's own layers.

    Arbitrary keys would fail the jupyterhub chart's schema, so the generated stacks stay
    on the small `layers` chart; here the real layers go through the real templates.
    """
    files = [PROJECT / name for name in layer_files(hub, env)[:3]]
    separate = subprocess.run(
        [helm.binary(), "template", "rel", str(hub_chart_offline_ready), "--namespace", "ns",
         "--kube-version", helm.DEFAULT_KUBE_VERSION,
         *[arg for f in files[1:] for arg in ("-f", str(f))]],
        capture_output=True, text=True, check=True,
    ).stdout
    merged = merge_layers([layer(str(f), f.read_text()) for f in files])
    text = json.dumps(merged.document)
    combined = helm.template(hub_chart_offline_ready, "rel", "ns", text, helm.DEFAULT_KUBE_VERSION)
    again = helm.template(hub_chart_offline_ready, "rel", "ns", text, helm.DEFAULT_KUBE_VERSION)
    first, second, third = (manifests.parse(out) for out in (separate, combined, again))
    assert first.keys() == second.keys()
    assert len(first) >= 34
    # Only what the chart draws afresh on every render (tokens, keys) may differ.
    assert manifests.random_paths(first, second) == manifests.random_paths(second, third)
