"""validate with the real jupyterhub chart (the locked version): its own values.schema.json over its
coalesced defaults, its kubeVersion, and limits Kubernetes would refuse."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot import helm
from bot.chartpackage import MAX_CHART_SIZE, MAX_FILE_SIZE, locked_package, read_package
from bot.chartschema import chart_values, coalesce, read_contract, schema_violations
from bot.errors import HubbotError
from bot.kubeversion import ConstraintError, satisfies
from bot.quantity import jupyterhub_bytes, kubernetes
from tests.fixtures.charts import CHART_VERSION, chart_package
from tests.fixtures.repos import replace_in, validate, write

PUBLIC_COMMON = "deployments/tess-public/config/common.yaml"
PRIVATE_COMMON = "deployments/tess-private/config/common.yaml"
CHART_SCHEMA = f"per the jupyterhub chart {CHART_VERSION} values.schema.json"


def line_of(repo: Path, relative: str, needle: str, after: int = 0) -> int:
    lines = (repo / relative).read_text().splitlines()
    return next(i for i, line in enumerate(lines, 1) if i > after and needle in line)


def test_a_typo_is_refused_by_the_charts_own_schema(
    hub_repo: Path, real_chart_packages: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    replace_in(
        hub_repo,
        PUBLIC_COMMON,
        "    storage:\n",
        "    cloudMetada:\n      blockWithIptables: true\n    storage:\n",
    )
    line = line_of(hub_repo, PUBLIC_COMMON, "cloudMetada:")
    status, out = validate(hub_repo, capsys, "tess-public", "--env", "staging")
    assert status == 1
    assert (
        f"{PUBLIC_COMMON}:{line}: unknown key `cloudMetada` (did you mean `cloudMetadata`?), "
        f"{CHART_SCHEMA}"
    ) in out


def test_a_valid_z2jh_key_the_house_schema_never_listed(
    hub_repo: Path, real_chart_packages: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    replace_in(
        hub_repo,
        "hub/values.yaml",
        "  hub:\n",
        "  hub:\n    nodeSelector:\n      hub.jupyter.org/node-purpose: core\n",
    )
    replace_in(
        hub_repo,
        PRIVATE_COMMON,
        "  singleuser:\n",
        "  singleuser:\n    extraFiles:\n      motd:\n        mountPath: /etc/motd\n"
        "        stringData: welcome\n",
    )
    status, out = validate(hub_repo, capsys)
    assert status == 0, out
    assert "4 of 4 hub environments valid" in out


def test_a_wrong_type_the_chart_knows(
    hub_repo: Path, real_chart_packages: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    replace_in(
        hub_repo, PRIVATE_COMMON, "  singleuser:\n", "  singleuser:\n    startTimeout: soon\n"
    )
    line = line_of(hub_repo, PRIVATE_COMMON, "startTimeout: soon")
    status, out = validate(hub_repo, capsys, "tess-private", "--env", "prod")
    assert status == 1
    assert (
        f'{PRIVATE_COMMON}:{line}: jupyterhub.singleuser.startTimeout: "soon" is not of type '
        f"integer or null, {CHART_SCHEMA}"
    ) in out


def test_a_null_that_deletes_a_required_chart_default_points_at_the_null(
    hub_repo: Path, real_chart_packages: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    staging = "deployments/tess-public/config/staging.yaml"
    write(hub_repo, staging, "jupyterhub:\n  hub:\n    baseUrl: null\n")
    status, out = validate(hub_repo, capsys, "tess-public", "--env", "staging")
    assert status == 1
    assert (
        f"{staging}:3: `jupyterhub.hub.baseUrl: null` deletes `jupyterhub.hub.baseUrl`, which "
        f"the jupyterhub chart {CHART_VERSION} schema requires: remove the null, or set it"
    ) in out


def test_memory_limit_below_its_guarantee(
    hub_repo: Path, real_chart_packages: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # common.yaml guarantees 2G; prod.yaml, the higher layer, lowers the limit below it.
    prod = "deployments/tess-private/config/prod.yaml"
    replace_in(
        hub_repo,
        prod,
        "  scheduling:\n",
        "  singleuser:\n    memory:\n      limit: 1G\n  scheduling:\n",
    )
    line = line_of(hub_repo, prod, "limit: 1G")
    guarantee = line_of(hub_repo, PRIVATE_COMMON, "guarantee: 2G")
    status, out = validate(hub_repo, capsys, "tess-private")
    assert status == 1
    assert (
        "ok      tess-private/staging (house schema and policy, jupyterhub chart "
        f"{CHART_VERSION} schema)\n"
        in out
    )
    assert (
        f'{prod}:{line}: jupyterhub.singleuser.memory.limit "1G" is below '
        f'jupyterhub.singleuser.memory.guarantee "2G" (set at {PRIVATE_COMMON}:{guarantee}): '
        "Kubernetes refuses a pod whose limit is below its request"
    ) in out


def test_a_guarantee_raised_above_the_limit_is_pinned_to_the_guarantee(
    hub_repo: Path, real_chart_packages: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    staging = "deployments/tess-public/config/staging.yaml"
    write(hub_repo, staging, "jupyterhub:\n  singleuser:\n    cpu:\n      guarantee: 4\n")
    limit = line_of(hub_repo, "hub/values.yaml", "limit: 2")
    status, out = validate(hub_repo, capsys, "tess-public", "--env", "staging")
    assert status == 1
    assert (
        f"{staging}:4: jupyterhub.singleuser.cpu.guarantee 4 is above "
        f"jupyterhub.singleuser.cpu.limit 2 (set at hub/values.yaml:{limit}): "
        "Kubernetes refuses a pod whose limit is below its request, so it would fail when "
        "created; lower the guarantee or raise the limit"
    ) in out


def test_memory_sizes_count_as_jupyterhub_counts_them(
    hub_repo: Path, real_chart_packages: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # JupyterHub reads 1G as 1024M: a limit of 1000M is below a guarantee of 1G.
    replace_in(hub_repo, PUBLIC_COMMON, "      limit: 2G", "      limit: 1000M")
    line = line_of(hub_repo, PUBLIC_COMMON, "limit: 1000M")
    status, out = validate(hub_repo, capsys, "tess-public", "--env", "prod")
    assert status == 1
    assert f'{PUBLIC_COMMON}:{line}: jupyterhub.singleuser.memory.limit "1000M" is below' in out

    # 1Gi passes the chart's schema, but KubeSpawner refuses it when the hub starts.
    replace_in(hub_repo, PUBLIC_COMMON, "      limit: 1000M", "      limit: 2Gi")
    status, out = validate(hub_repo, capsys, "tess-public", "--env", "prod")
    assert status == 1
    assert (
        f'{PUBLIC_COMMON}:{line}: jupyterhub.singleuser.memory.limit: "2Gi" is not a memory '
        "size as JupyterHub reads it"
    ) in out
    assert "(write 2G)" in out


def test_pod_resources_limits_below_requests(
    hub_repo: Path, real_chart_packages: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    replace_in(
        hub_repo,
        PRIVATE_COMMON,
        "  cull:\n",
        "  proxy:\n    chp:\n      resources:\n        requests: {cpu: 500m, memory: 1Gi}\n"
        "        limits: {cpu: 0.5, memory: 1G}\n  cull:\n",
    )
    line = line_of(hub_repo, PRIVATE_COMMON, "limits: {cpu: 0.5")
    status, out = validate(hub_repo, capsys, "tess-private", "--env", "staging")
    assert status == 1
    # 0.5 CPU is 500m; 1G (10^9 bytes to Kubernetes) is below 1Gi (2^30).
    assert "limits.cpu" not in out
    assert (
        f'{PRIVATE_COMMON}:{line}: jupyterhub.proxy.chp.resources.limits.memory "1G" is below '
        'jupyterhub.proxy.chp.resources.requests.memory "1Gi"'
    ) in out


NOT_JSON = (
    "a number JSON cannot hold (YAML's .nan or .inf, or one too large, such as 1e400), so "
    "helm cannot receive it"
)


@pytest.mark.parametrize(
    ("old", "new", "needle", "shown"),
    [
        pytest.param(
            "  singleuser:\n",
            "  singleuser:\n    cpu:\n      guarantee: .nan\n",
            "guarantee: .nan",
            "nan",
            id="cpu guarantee .nan",
        ),
        pytest.param(
            "  singleuser:\n",
            "  singleuser:\n    cpu:\n      guarantee: 1e400\n",
            "guarantee: 1e400",
            "inf",
            id="cpu guarantee 1e400",
        ),
        pytest.param(
            "      limit: 2G", "      limit: .nan", "limit: .nan", "nan", id="memory limit .nan"
        ),
        pytest.param(
            "  cull:\n",
            "  proxy:\n    chp:\n      resources:\n        limits: {memory: -.inf}\n  cull:\n",
            "limits: {memory: -.inf}",
            "-inf",
            id="container limit -.inf without a request",
        ),
    ],
)
def test_a_resource_amount_that_is_nan_or_infinite(
    hub_repo: Path,
    real_chart_packages: Path,
    capsys: pytest.CaptureFixture[str],
    old: str,
    new: str,
    needle: str,
    shown: str,
) -> None:
    # Refused as it is read (bot/yamlfile.py): no layer can hand the checks a NaN.
    replace_in(hub_repo, PUBLIC_COMMON, old, new)
    line = line_of(hub_repo, PUBLIC_COMMON, needle)
    status, out = validate(hub_repo, capsys, "tess-public", "--env", "staging")
    assert status == 1
    assert f"  {PUBLIC_COMMON}:{line}: this reads as {shown}, {NOT_JSON}: " in out
    assert "internal error" not in out


def test_a_cluster_older_than_the_charts_kube_version(
    hub_repo: Path, real_chart_packages: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hubploy = "deployments/tess-public/hubploy.yaml"
    # infra/'s cluster is the old one too, or the infra/ cross-check would object as well.
    cluster = f'default     = "{helm.DEFAULT_KUBE_VERSION}"'
    replace_in(hub_repo, "infra/variables.tf", cluster, 'default     = "1.27"')
    replace_in(hub_repo, hubploy, "cluster:\n", 'cluster:\n  kube_version: "1.27"\n')
    line = line_of(hub_repo, hubploy, "kube_version")
    status, out = validate(hub_repo, capsys, "tess-public")
    assert status == 1
    assert (
        f'{hubploy}:{line}: cluster.kube_version "1.27" does not satisfy the jupyterhub chart '
        f"{CHART_VERSION} kubeVersion `>=1.28.0-0`: helm refuses to install it there"
    ) in out

    replace_in(hub_repo, hubploy, 'kube_version: "1.27"', 'kube_version: "1.28"')
    replace_in(hub_repo, "infra/variables.tf", '"1.27"', '"1.28"')
    status, out = validate(hub_repo, capsys, "tess-public")
    assert status == 0, out


def test_without_the_chart_package_validate_fails_saying_what_to_set(
    hub_repo: Path,
    helm_bin: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.delenv("HUBBOT_CHART_PACKAGES", raising=False)
    # A repository nobody serves (offline), with the lock rewritten as helm would.
    unreachable = "http://127.0.0.1:9/charts/"
    chart = yaml.safe_load((hub_repo / "hub/Chart.yaml").read_text())
    chart["dependencies"][0]["repository"] = unreachable
    lock = yaml.safe_load((hub_repo / "hub/Chart.lock").read_text())
    lock["dependencies"][0]["repository"] = unreachable
    lock["digest"] = helm.lock_digest(chart["dependencies"], lock["dependencies"])
    write(hub_repo, "hub/Chart.yaml", yaml.safe_dump(chart, sort_keys=False))
    write(hub_repo, "hub/Chart.lock", yaml.safe_dump(lock, sort_keys=False))
    status, out = validate(hub_repo, capsys)
    assert status == 1
    assert "0 of 4 hub environments valid" in out
    assert (
        "hub/Chart.lock: cannot check the values against the jupyterhub chart's own schema: "
        f"chart dependency jupyterhub {CHART_VERSION} from {unreachable} cannot be fetched "
        "(offline? set HUBBOT_CHART_PACKAGES to a directory of chart packages)"
    ) in out


# --- agreement with helm itself ----------------------------------------------------------


def _helm_accepts(chart_dir: Path, values: dict[str, Any]) -> bool:
    result = helm.run(
        ["template", "x", str(chart_dir), "--kube-version", helm.DEFAULT_KUBE_VERSION, "-f", "-"],
        stdin=yaml.safe_dump(values).encode(),
        check=False,
    )
    return result.returncode == 0


@pytest.mark.parametrize(
    ("layer", "valid"),
    [
        ({"jupyterhub": {"hub": {"nodeSelector": {"a": "b"}}}}, True),
        ({"jupyterhub": {"singleuser": {"cloudMetada": {}}}}, False),
        ({"jupyterhub": {"hub": {"baseUrl": None}}}, False),
        ({"jupyterhub": {"hub": {"baseUrl": "/x/", "unknown": None}}}, False),
        ({"jupyterhub": {"singleuser": {"cpu": {"limit": "2"}}}}, False),
        ({"jupyterhub": {"hub": {"nodeSelector": None}}}, True),
        ({"jupyterhub": {"singleuser": {"startTimeout": "soon"}}}, False),
    ],
)
def test_the_chart_schema_verdict_is_helms(
    tmp_path: Path, helm_bin: str, real_chart_packages: Path, layer: dict[str, Any], valid: bool
) -> None:
    project_chart = Path(__file__).resolve().parents[1] / "hub"
    package = locked_package(project_chart, "jupyterhub")
    contract = read_contract(package)
    parent = yaml.safe_load((project_chart / "values.yaml").read_text())
    merged = _merge(parent, layer)
    document = chart_values(contract, parent, merged)
    assert document is not None
    ours = not schema_violations(contract, document)
    with helm.ready_chart(project_chart) as ready:
        assert _helm_accepts(ready, merged) == valid
    assert ours == valid


def _merge(base: dict[str, Any], layer: dict[str, Any]) -> dict[str, Any]:
    """helm's merge of -f files: maps merge, anything else (null too) replaces."""
    out = dict(base)
    for key, value in layer.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def test_coalesce_follows_helm() -> None:
    defaults = {"a": {"b": 1, "c": 2}, "d": 3, "e": {"f": 1}}
    values = {"a": {"b": None, "x": None}, "d": {"map": 1}, "e": 5}
    assert coalesce(values, defaults) == {"a": {"c": 2, "x": None}, "d": {"map": 1}, "e": 5}
    assert values == {"a": {"b": None, "x": None}, "d": {"map": 1}, "e": 5}


# --- kubeVersion constraints, against helm's own verdict --------------------------------

CONSTRAINTS = [
    (">=1.28.0-0", "1.27", False),
    (">=1.28.0-0", "1.28", True),
    (">=1.28.0-0", "v1.31.2", True),
    (">=1.28.0", "1.28.0", True),
    (">= 1.19.0-0 < 1.31", "1.30", True),
    (">= 1.19.0-0 < 1.31", "1.31", False),
    (">=1.19.0-0, <1.31.0-0", "1.31", False),
    ("<1.25.0-0 || >=1.29.0-0", "1.26", False),
    ("<1.25.0-0 || >=1.29.0-0", "1.30", True),
    ("~1.29", "1.29.7", True),
    ("~1.29", "1.30", False),
    ("^1.28", "1.35", True),
    ("1.28.x", "1.28.3", True),
    ("1.28.x", "1.29", False),
    ("1.27 - 1.30", "1.30.9", True),
    ("1.27 - 1.30", "1.31", False),
    (">1.28", "1.28.5", False),
    (">1.28", "1.29", True),
    ("<=1.30", "1.30.4", True),
    ("!=1.29.0", "1.29", False),
]


@pytest.mark.parametrize(("constraint", "version", "expected"), CONSTRAINTS)
def test_kube_version_constraints_as_helm_reads_them(
    tmp_path: Path, helm_bin: str, constraint: str, version: str, expected: bool
) -> None:
    assert satisfies(version, constraint) == expected
    chart = tmp_path / "c"
    write(
        chart,
        "Chart.yaml",
        f"apiVersion: v2\nname: c\nversion: 0.1.0\nkubeVersion: '{constraint}'\n",
    )
    result = subprocess.run(
        [helm_bin, "template", "x", str(chart), "--kube-version", version],
        capture_output=True,
        text=True,
        check=False,
    )
    assert (result.returncode == 0) == expected, result.stderr


def test_an_unreadable_constraint() -> None:
    with pytest.raises(ConstraintError):
        satisfies("1.30", ">=1.28 potato")


# --- quantities ------------------------------------------------------------------------


def test_kubernetes_quantities() -> None:
    assert kubernetes("500m") == kubernetes(0.5) == kubernetes("0.5")
    assert kubernetes("1G") == 10**9
    assert kubernetes("1Gi") == 2**30
    assert kubernetes("1e3") == 1000
    assert kubernetes(2) == 2
    assert kubernetes("lots") is None
    assert kubernetes(True) is None
    assert kubernetes(float("nan")) is None
    assert kubernetes(float("inf")) is None


def test_jupyterhub_bytes() -> None:
    assert jupyterhub_bytes("1G") == 2**30
    assert jupyterhub_bytes("1.5M") == 3 * 2**19
    assert jupyterhub_bytes(4096) == 4096
    assert jupyterhub_bytes("1Gi") is None
    assert jupyterhub_bytes("1024") is None
    assert jupyterhub_bytes(float("nan")) is None
    assert jupyterhub_bytes(float("-inf")) is None
    assert jupyterhub_bytes("infG") is None


FILES_PAST_THE_LIMIT = MAX_CHART_SIZE // MAX_FILE_SIZE + 1


@pytest.mark.parametrize(
    "members",
    [
        {"jupyterhub/Chart.yaml": b"x", "jupyterhub/big.json": bytes(MAX_FILE_SIZE + 1)},
        {f"jupyterhub/f{n}.json": bytes(MAX_FILE_SIZE) for n in range(FILES_PAST_THE_LIMIT)},
    ],
    ids=["one file", "the whole package"],
)
def test_a_package_that_unpacks_bigger_than_helm_loads_is_not_read_into_memory(
    tmp_path: Path, members: dict[str, bytes]
) -> None:
    path = tmp_path / "jupyterhub-4.4.0.tgz"
    path.write_bytes(chart_package(members))
    dependency = helm.Dependency("jupyterhub", "4.4.0", "https://hub.jupyter.org/helm-chart/")
    with pytest.raises(HubbotError, match="more than helm loads"):
        read_package(path, dependency)
