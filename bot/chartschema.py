"""What the jupyterhub chart itself says about the values it receives.

Helm validates a dependency's values after coalescing them with that chart's
defaults (chartutil.CoalesceValues): user values over the parent chart's
values.yaml, then the `jupyterhub:` part over the dependency's own values.yaml;
maps merge, anything else replaces, and a null deletes the default it meets.
The result must pass the dependency's values.schema.json, and the chart's
`kubeVersion` must admit the cluster. Here the same is done without helm, and
each problem is put back on the layer file and line that caused it.

The chart's files come from its locked package (bot/chartpackage.py). The
schema is compiled once per process (bot/schemas.py Checker: jsonschema-rs
says "valid" in microseconds; only a refused pair is walked by `jsonschema`
for its paths and messages).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import yaml

from bot import chartpackage, helm, kubeversion, quantity
from bot.chartpackage import ChartPackage
from bot.errors import HubbotError, Location
from bot.hubploy import Deployment
from bot.manifests import chart_at
from bot.merge import Origin
from bot.schemas import DRAFT_7, Checker, SchemaInvalid, Violation, compile_checker
from bot.source import Source, WorkTree, memoized
from bot.values import CHART_DIR, CHART_VALUES, HubValues
from bot.yamlfile import Path_

DEPENDENCY = "jupyterhub"
CHART_YAML = f"{CHART_DIR}/Chart.yaml"
CHART_LOCK = f"{CHART_DIR}/Chart.lock"


@dataclass(frozen=True)
class ChartContract:
    name: str
    version: str
    defaults: dict[str, Any]
    kube_version: str | None  # the chart's kubeVersion constraint
    checker: Checker | None  # None: the chart has no values.schema.json
    # Where the chart takes a pod's `resources` (requests and limits): from its schema.
    resource_paths: tuple[Path_, ...] = ()

    @property
    def title(self) -> str:
        return f"{self.name} chart {self.version}"


def contract(source: Source) -> ChartContract | None:
    """The locked jupyterhub chart's contract in `source`, once per source.

    None when the chart does not depend on jupyterhub, or its lock cannot be read
    (validate reports that on its own, and helm would refuse to render). Raises
    HubbotError when the package can be had neither locally nor from its repository.
    """
    found = memoized(source, "chart contract", lambda: _contract_or_error(source))
    if isinstance(found, HubbotError):
        raise found
    return found


def _contract_or_error(source: Source) -> ChartContract | HubbotError | None:
    # Failures are kept too: an offline fetch is tried once per source, not once per pair.
    try:
        dependency = _locked_dependency(source)
        if dependency is None:
            return None
        return read_contract(_package(source, dependency))
    except helm.ChartUnavailable as exc:
        return HubbotError(
            f"cannot check the values against the {DEPENDENCY} chart's own schema: {exc}",
            Location(CHART_LOCK),
        )
    except HubbotError as exc:
        return exc


def _locked_dependency(source: Source) -> helm.Dependency | None:
    """The locked jupyterhub dependency, read through `source` (a PR's base and head each
    use their own Chart.lock)."""
    try:
        files = []
        for label in (CHART_YAML, CHART_LOCK):
            text = source.read(label)
            files.append(None if text is None else helm.chart_doc(label, text))
        locked = helm.checked_lock(CHART_DIR, files[0], files[1])
    except HubbotError:
        return None
    return next((dep for dep in locked if dep.name == DEPENDENCY), None)


def _package(source: Source, dependency: helm.Dependency) -> ChartPackage:
    if isinstance(source, WorkTree):
        return chartpackage.locked_package(source.root / CHART_DIR, dependency.name)
    # A commit's chart has no charts/ (it is not committed): a package of the locked
    # version on disk serves any commit, before exporting the chart to fetch one.
    found = helm.package_file(source.root / CHART_DIR, dependency)
    if found is not None:
        return chartpackage.read_package(found, dependency)
    with chart_at(source) as chart_dir:
        return chartpackage.locked_package(chart_dir, dependency.name)


def read_contract(package: ChartPackage) -> ChartContract:
    defaults_text = package.text("values.yaml")
    # The chart's own defaults, read as helm reads them (YAML 1.1), by libyaml.
    try:
        defaults = yaml.load(defaults_text or "{}", Loader=yaml.CSafeLoader)
    except yaml.YAMLError as exc:
        raise HubbotError(
            f"the chart's values.yaml is not valid YAML: {exc}",
            Location(f"{package.origin}:values.yaml"),
        ) from None
    defaults = defaults if isinstance(defaults, dict) else {}
    schema_text = package.text("values.schema.json")
    constraint = package.metadata.get("kubeVersion")
    checker = None if schema_text is None else _compile(package.origin, schema_text)
    return ChartContract(
        package.name,
        package.version,
        defaults,
        None if constraint is None else str(constraint),
        checker,
        tuple(_resource_paths(checker.schema if checker else _shape_of(defaults))),
    )


def _shape_of(defaults: dict[str, Any]) -> dict[str, Any]:
    """The defaults as a schema of nested properties, for a chart without a schema."""
    return {
        "properties": {
            key: _shape_of(value) if isinstance(value, dict) else {}
            for key, value in defaults.items()
        }
    }


def _resource_paths(schema: Any, path: Path_ = ()) -> Iterator[Path_]:
    if not isinstance(schema, dict):
        return
    properties = schema.get("properties")
    for key, value in (properties if isinstance(properties, dict) else {}).items():
        if key == "resources":
            yield (*path, key)
        else:
            yield from _resource_paths(value, (*path, key))


@functools.lru_cache(maxsize=4)
def _compile(origin: str, schema_text: str) -> Checker:
    """The compiled schema, once per process for each schema text (it is 30 KB)."""
    where = Location(f"{origin}:values.schema.json")
    try:
        schema = json.loads(schema_text)
    except json.JSONDecodeError as exc:
        raise HubbotError(f"the chart's values.schema.json is not JSON: {exc}", where) from None
    if not isinstance(schema, dict):
        raise HubbotError("the chart's values.schema.json is not a JSON Schema object", where)
    try:
        return compile_checker(schema, DRAFT_7)
    except SchemaInvalid as exc:
        raise HubbotError(
            f"the chart's values.schema.json is invalid: {exc.message}", where
        ) from None


# --- coalescing --------------------------------------------------------------------------


def coalesce(values: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    """helm's CoalesceTables: `values` over `defaults`, maps merged, a null deleting a default.

    Neither argument is changed; unchanged parts are shared, not copied.
    """
    out = dict(values)
    for key, default in defaults.items():
        if key not in out:
            out[key] = default
            continue
        value = out[key]
        if value is None:
            del out[key]
        elif isinstance(value, dict) and isinstance(default, dict):
            out[key] = coalesce(value, default)
    return out


def chart_values(
    chart: ChartContract, parent_defaults: dict[str, Any], document: dict[str, Any]
) -> dict[str, Any] | None:
    """The values the jupyterhub chart's templates (and schema) see, from the merged document
    (nulls kept), or None when `jupyterhub:` is not a mapping (the house schema says so)."""
    top = coalesce(document, parent_defaults)
    values = top.get(chart.name, {})
    if not isinstance(values, dict):
        return None
    # helm hands every dependency a `global` table, with the parent's globals merged in.
    own = values.get("global")
    parent = top.get("global")
    if own is None or isinstance(own, dict):
        merged = dict(own or {})
        if isinstance(parent, dict):
            for key, value in parent.items():
                current = merged.get(key)
                if isinstance(value, dict) and isinstance(current, dict):
                    merged[key] = coalesce(value, current)
                else:
                    merged[key] = value
        values = {**values, "global": merged}
    return coalesce(values, chart.defaults)


# --- the checks -----------------------------------------------------------------------------


def schema_violations(chart: ChartContract, values: dict[str, Any]) -> list[Violation]:
    """Violations of the chart's values.schema.json, with paths from the top of the values."""
    if chart.checker is None:
        return []
    found = chart.checker.violations(values, chart.title, prefix=(chart.name,))
    where = f", per the {chart.title} values.schema.json"
    return [Violation(v.path, v.message + where, v.keyword, v.title, v.missing) for v in found]


def kube_version_problem(chart: ChartContract, deployment: Deployment) -> HubbotError | None:
    """An error pinned to hubploy.yaml when the cluster's version is outside kubeVersion."""
    if chart.kube_version is None:
        return None
    version, what, where = deployment.kube_version(helm.DEFAULT_KUBE_VERSION)
    try:
        fits = kubeversion.satisfies(version, chart.kube_version)
    except kubeversion.ConstraintError as exc:
        return HubbotError(
            f"cannot read the {chart.title} kubeVersion `{chart.kube_version}`: {exc}",
            Location(CHART_LOCK),
        )
    if fits:
        return None
    return HubbotError(
        f"{what} does not satisfy the {chart.title} kubeVersion `{chart.kube_version}`: "
        "helm refuses to install it there; upgrade the cluster (and this setting) or lock "
        "a chart version that supports it",
        where,
    )


# --- limits below requests ------------------------------------------------------------------


@dataclass(frozen=True)
class _Pair:
    """A limit and the request (guarantee) it must not be below, and how to read them."""

    request: Path_
    limit: Path_
    read: str  # "kubernetes" or "jupyterhub-bytes" or "number"


def _plain_number(value: Any) -> Fraction | None:
    return None if isinstance(value, str) else quantity.kubernetes(value)


_READERS: dict[str, Callable[[Any], Fraction | None]] = {
    "kubernetes": quantity.kubernetes,
    "jupyterhub-bytes": quantity.jupyterhub_bytes,
    "number": _plain_number,
}


def _limit_pairs(chart: ChartContract, values: dict[str, Any]) -> Iterator[_Pair]:
    if isinstance(values.get("singleuser"), dict):
        # KubeSpawner reads cpu as a float and memory as JupyterHub's ByteSpecification.
        for kind, read in (("cpu", "number"), ("memory", "jupyterhub-bytes")):
            base = ("singleuser", kind)
            yield _Pair((*base, "guarantee"), (*base, "limit"), read)
    for path in chart.resource_paths:
        resources = _get(values, path)
        if not isinstance(resources, dict):
            continue
        requests, limits = resources.get("requests"), resources.get("limits")
        if isinstance(requests, dict) and isinstance(limits, dict):
            for name in sorted(set(requests) & set(limits)):
                yield _Pair((*path, "requests", name), (*path, "limits", name), "kubernetes")


def limit_problems(
    chart: ChartContract, values: dict[str, Any], hub_values: HubValues, secrets: set[Path_]
) -> list[HubbotError]:
    """Every limit below its request or guarantee in the chart's coalesced `values`:
    Kubernetes refuses such a pod when it is created (a user pod at spawn time)."""
    problems = []
    for pair in _limit_pairs(chart, values):
        request_path, limit_path = (chart.name, *pair.request), (chart.name, *pair.limit)
        if request_path in secrets or limit_path in secrets:
            continue
        request_value, limit_value = _get(values, pair.request), _get(values, pair.limit)
        if request_value is None or limit_value is None:
            continue
        read = _READERS[pair.read]
        request, limit = read(request_value), read(limit_value)
        if request is None or limit is None or limit >= request:
            continue
        problems.append(
            _limit_problem(hub_values, (request_path, request_value), (limit_path, limit_value))
        )
    return problems


def _get(values: dict[str, Any], path: Path_) -> Any:
    node: Any = values
    for key in path:
        if not isinstance(node, dict):
            return None
        node = node.get(key)
    return node


def _limit_problem(
    values: HubValues, request: tuple[Path_, Any], limit: tuple[Path_, Any]
) -> HubbotError:
    request_origin = values.merged.winner(request[0])
    limit_origin = values.merged.winner(limit[0])
    request_word = str(request[0][-1])  # "guarantee", or a resource under "requests"
    request_word = request_word if request_word == "guarantee" else "request"
    # Pin the side set in the higher layer: that is the setting that broke the pair.
    if _rank(values, limit_origin) >= _rank(values, request_origin):
        origin = limit_origin
        first, verb, second, other_origin = limit, "is below", request, request_origin
        fix = f"raise the limit or lower the {request_word}"
    else:
        origin = request_origin
        first, verb, second, other_origin = request, "is above", limit, limit_origin
        fix = f"lower the {request_word} or raise the limit"
    message = (
        f"{_dotted(first[0])} {_show(first[1])} {verb} {_dotted(second[0])} "
        f"{_show(second[1])} ({_where(other_origin)}): Kubernetes refuses a pod whose limit "
        f"is below its request, so it would fail when created; {fix}"
    )
    location = Location(origin.file, origin.line) if origin else Location(CHART_VALUES)
    return HubbotError(message, location)


def _rank(values: HubValues, origin: Origin | None) -> int:
    """How high the layer that set a value is; -1 for the chart's own default."""
    if origin is None:
        return -1
    files = [layer.file for layer in values.layers]
    return files.index(origin.file) if origin.file in files else -1


def _where(origin: Origin | None) -> str:
    if origin is None:
        return f"the {DEPENDENCY} chart's default"
    return f"set at {Location(origin.file, origin.line)}"


def _dotted(path: Path_) -> str:
    return ".".join(str(part) for part in path)


def _show(value: Any) -> str:
    return f'"{value}"' if isinstance(value, str) else str(value)
