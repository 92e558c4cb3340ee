"""bot/helm.py against the real helm binary: running it, rendering, and Chart.lock."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from bot import helm
from bot.errors import HubbotError
from bot.memfs import process_start
from bot.yamlfile import load_yaml
from tests.fixtures.charts import CHART_VERSION, HUB_CHART, REAL_CHART
from tests.fixtures.secrets import wait_until

JUPYTERHUB = helm.Dependency("jupyterhub", CHART_VERSION, "https://hub.jupyter.org/helm-chart/")
# A released version other than the locked one (the shared directory holds both).
OTHER_VERSION = "4.4.0" if CHART_VERSION == "4.2.0" else "4.2.0"
OFFLINE = (
    f"chart dependency jupyterhub {CHART_VERSION} from https://hub.jupyter.org/helm-chart/ "
    "cannot be "
    "fetched (offline? set HUBBOT_CHART_PACKAGES to a directory of chart packages)"
)


def copy_chart(tmp_path: Path, source: Path = HUB_CHART) -> Path:
    target = tmp_path / source.name
    shutil.copytree(source, target)
    return target


def replace_in(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def test_missing_helm_says_how_to_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HELM", str(tmp_path / "no-helm"))
    with pytest.raises(HubbotError) as caught:
        helm.run(["version"])
    assert str(caught.value) == (
        f"helm is not installed (no '{tmp_path / 'no-helm'}' found): run `make setup` "
        "(installs helm into .venv/bin) or set HELM to the helm binary"
    )


def test_helm_env_names_the_binary(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake = tmp_path / "fake-helm"
    fake.write_text('#!/bin/sh\necho "fake $*"\n')
    fake.chmod(0o755)
    monkeypatch.setenv("HELM", str(fake))
    assert helm.run(["version", "--short"]).stdout == "fake version --short\n"


def test_without_helm_env_path_then_the_venv(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("HELM", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    beside_python = Path(sys.executable).parent / "helm"
    assert helm.binary() == (str(beside_python) if beside_python.is_file() else "helm")
    on_path = tmp_path / "helm"
    on_path.write_text("#!/bin/sh\n")
    on_path.chmod(0o755)
    assert helm.binary() == str(on_path)


def go_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """A proxy that refuses connections makes this machine offline for helm, network or not."""
    for name in ("HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)


def test_template_reads_values_from_stdin_and_includes_crds(hub_chart_offline_ready: Path) -> None:
    crds = hub_chart_offline_ready / "crds"
    crds.mkdir()
    (crds / "quota.yaml").write_text(
        "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\n"
        "metadata: {name: userquotas.hub.example.org}\n"
    )
    values = '{"jupyterhub": {"singleuser": {"image": {"tag": "from-stdin-42"}}}}'
    out = helm.template(hub_chart_offline_ready, "r1", "ns1", values, helm.DEFAULT_KUBE_VERSION)
    assert "image: quay.io/jupyterhub/k8s-singleuser-sample:from-stdin-42\n" in out
    assert "kind: CustomResourceDefinition" in out


def recording_helm(tmp_path: Path) -> tuple[Path, Path]:
    """A HELM that writes its Go settings to a file, then runs the real helm."""
    record = tmp_path / "go-settings"
    wrapper = tmp_path / "recording-helm"
    wrapper.write_text(
        f'#!/bin/sh\necho "GOGC=$GOGC GOMEMLIMIT=$GOMEMLIMIT" > {record}\n'
        f'exec {helm.binary()} "$@"\n'
    )
    wrapper.chmod(0o755)
    return wrapper, record


def test_a_render_runs_without_go_collector_unless_the_environment_says(
    hub_chart_offline_ready: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wrapper, record = recording_helm(tmp_path)
    monkeypatch.setenv("HELM", str(wrapper))
    for name in ("GOGC", "GOMEMLIMIT"):
        monkeypatch.delenv(name, raising=False)
    assert "kind: Deployment" in helm.template(hub_chart_offline_ready, "r", "n", "{}")
    assert record.read_text() == "GOGC=off GOMEMLIMIT=1GiB\n"
    monkeypatch.setenv("GOGC", "200")
    helm.template(hub_chart_offline_ready, "r", "n", "{}")
    assert record.read_text() == "GOGC=200 GOMEMLIMIT=\n"
    monkeypatch.delenv("GOGC")
    helm.run(["version"])  # not a render (deploys wait on a cluster for minutes): Go's defaults
    assert record.read_text() == "GOGC= GOMEMLIMIT=\n"


def test_template_failure_is_one_line(hub_chart_offline_ready: Path) -> None:
    values = '{"homeStorage": {"enabled": true}}'
    with pytest.raises(HubbotError) as caught:
        helm.template(hub_chart_offline_ready, "r", "n", values)
    assert str(caught.value) == (
        "`helm template` failed: execution error at (tess-hub/templates/home-storage.yaml:9:4): "
        "homeStorage.efsFileSystemId must be set when homeStorage.enabled is true"
    )


def test_a_schema_refusal_keeps_the_values_it_names(hub_chart_offline_ready: Path) -> None:
    # helm lists each refused value on a line of its own below "Error: ...:".
    schema = {"properties": {"homeStorage": {"properties": {"capacity": {"type": "integer"}}}}}
    (hub_chart_offline_ready / "values.schema.json").write_text(json.dumps(schema))
    with pytest.raises(HubbotError) as caught:
        helm.template(hub_chart_offline_ready, "r", "n", "{}")
    assert str(caught.value) == (
        "`helm template` failed: values don't meet the specifications of the schema(s) in the "
        "following chart(s): tess-hub: - homeStorage.capacity: Invalid type. Expected: integer, "
        "given: string"
    )


def test_hub_chart_lock_is_in_sync() -> None:
    assert helm.locked_dependencies(HUB_CHART) == [JUPYTERHUB]


def test_real_helm_accepts_hub_lock_and_sees_a_mutation(tmp_path: Path, helm_bin: str) -> None:
    chart = copy_chart(tmp_path)
    in_sync = subprocess.run(
        [helm_bin, "dependency", "build", str(chart)], capture_output=True, text=True
    )
    # helm passed its lock check and stopped only at fetching the chart.
    assert in_sync.returncode == 1
    assert "out of sync" not in in_sync.stderr
    assert "no repository definition for https://hub.jupyter.org/helm-chart/" in in_sync.stderr

    replace_in(chart / "Chart.yaml", f"version: {CHART_VERSION}", "version: 4.2.1")
    mutated = subprocess.run(
        [helm_bin, "dependency", "build", str(chart)], capture_output=True, text=True
    )
    assert "the lock file (Chart.lock) is out of sync" in mutated.stderr
    with pytest.raises(HubbotError) as caught:
        helm.locked_dependencies(chart)
    assert str(caught.value) == (
        "hub/Chart.lock:1: Chart.lock is out of sync with hub/Chart.yaml: "
        "run `helm dependency update hub` and commit Chart.lock"
    )


def test_missing_lock(tmp_path: Path) -> None:
    chart = copy_chart(tmp_path)
    (chart / "Chart.lock").unlink()
    with pytest.raises(HubbotError) as caught:
        helm.locked_dependencies(chart)
    assert str(caught.value) == (
        "hub/Chart.lock: Chart.lock is missing: run `helm dependency update hub` and commit "
        "Chart.lock"
    )


def test_chart_without_dependencies_needs_no_lock(tmp_path: Path) -> None:
    (tmp_path / "Chart.yaml").write_text("apiVersion: v2\nname: plain\nversion: 0.1.0\n")
    assert helm.locked_dependencies(tmp_path) == []
    with helm.ready_chart(tmp_path) as ready:
        assert ready == tmp_path


def test_lock_digest_is_helms(tmp_path: Path, helm_bin: str, chart_repository: str) -> None:
    """helm writes a Chart.lock; our digest of its Chart.yaml and lock is the same."""
    chart = copy_chart(tmp_path)
    replace_in(chart / "Chart.yaml", "https://hub.jupyter.org/helm-chart/", chart_repository)
    (chart / "Chart.lock").unlink()
    subprocess.run([helm_bin, "dependency", "update", str(chart)], check=True, capture_output=True)
    lock = load_yaml("Chart.lock", (chart / "Chart.lock").read_text()).data
    requirements = load_yaml("Chart.yaml", (chart / "Chart.yaml").read_text()).data
    assert helm.lock_digest(requirements["dependencies"], lock["dependencies"]) == lock["digest"]
    assert helm.locked_dependencies(chart) == [
        helm.Dependency("jupyterhub", CHART_VERSION, chart_repository)
    ]


def test_ready_chart_builds_dependencies_in_a_copy(
    tmp_path: Path, helm_bin: str, chart_repository: str
) -> None:
    chart = copy_chart(tmp_path)
    replace_in(chart / "Chart.yaml", "https://hub.jupyter.org/helm-chart/", chart_repository)
    replace_in(chart / "Chart.lock", "https://hub.jupyter.org/helm-chart/", chart_repository)
    lock = load_yaml("Chart.lock", (chart / "Chart.lock").read_text()).data
    requirements = load_yaml("Chart.yaml", (chart / "Chart.yaml").read_text()).data
    digest = helm.lock_digest(requirements["dependencies"], lock["dependencies"])
    replace_in(chart / "Chart.lock", lock["digest"], digest)
    assert not helm.dependencies_available(chart)

    with helm.ready_chart(chart) as ready:
        assert ready != chart
        assert (ready / "charts" / REAL_CHART).is_file()
        values = '{"jupyterhub": {"singleuser": {"image": {"tag": "fetched-7"}}}}'
        out = helm.template(ready, "r", "ns", values)
        assert "image: quay.io/jupyterhub/k8s-singleuser-sample:fetched-7\n" in out
        assert "kind: ServiceAccount" in out  # the hub chart's own template
    assert not ready.exists()
    assert not (chart / "charts").exists()  # the chart given was not changed
    requests = (tmp_path / "chart-repo.log").read_text()
    assert requests.count("GET /index.yaml") == 1  # fetched once, not again by the build
    assert requests.count(f"GET /{REAL_CHART}") == 1


def test_offline_hub_chart_is_unavailable_and_the_message_names_the_setting(
    monkeypatch: pytest.MonkeyPatch, helm_bin: str
) -> None:
    go_offline(monkeypatch)
    monkeypatch.delenv(helm.PACKAGES_ENV, raising=False)
    before = sorted(path.name for path in HUB_CHART.iterdir())
    with pytest.raises(helm.ChartUnavailable) as caught, helm.ready_chart(HUB_CHART):
        pass
    assert str(caught.value) == OFFLINE
    assert sorted(path.name for path in HUB_CHART.iterdir()) == before


def test_offline_a_directory_of_chart_packages_renders_the_locked_chart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, helm_bin: str, real_chart_packages: Path
) -> None:
    go_offline(monkeypatch)
    chart = copy_chart(tmp_path)
    assert not helm.dependencies_available(chart)
    with helm.ready_chart(chart) as ready:
        assert ready != chart
        packaged = ready / "charts" / REAL_CHART
        assert packaged.read_bytes() == (real_chart_packages / REAL_CHART).read_bytes()
        out = helm.template(ready, "r", "ns", "{}")
    assert "kind: PersistentVolumeClaim\napiVersion: v1\nmetadata:\n  name: hub-db-dir\n" in out
    assert "name: tess-user\n" in out  # the hub chart's own template
    assert not ready.exists()
    assert not (chart / "charts").exists()  # the chart given was not changed

    monkeypatch.delenv(helm.PACKAGES_ENV)
    with pytest.raises(helm.ChartUnavailable) as caught, helm.ready_chart(chart):
        pass
    assert str(caught.value) == OFFLINE


def test_a_package_holding_another_version_than_its_name_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, helm_bin: str, real_chart_packages: Path
) -> None:
    go_offline(monkeypatch)
    directory = tmp_path / "packages"
    directory.mkdir()
    # Another version's package saved under the locked one's name: helm would render it.
    shutil.copyfile(real_chart_packages / f"jupyterhub-{OTHER_VERSION}.tgz", directory / REAL_CHART)
    monkeypatch.setenv(helm.PACKAGES_ENV, str(directory))
    chart = copy_chart(tmp_path)
    with pytest.raises(HubbotError) as caught, helm.ready_chart(chart):
        pass
    assert not isinstance(caught.value, helm.ChartUnavailable)
    assert str(caught.value) == (
        f"{directory / REAL_CHART}: this package holds jupyterhub {OTHER_VERSION}, not the "
        f"locked jupyterhub {CHART_VERSION}"
    )


def test_a_package_of_another_chart_or_none_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, helm_bin: str
) -> None:
    go_offline(monkeypatch)
    directory = tmp_path / "packages"
    directory.mkdir()
    layers = Path(__file__).parent / "charts" / "layers"
    subprocess.run([helm_bin, "package", str(layers), "-d", str(directory)], check=True,
                   capture_output=True)
    (directory / "layers-0.1.0.tgz").rename(directory / REAL_CHART)
    monkeypatch.setenv(helm.PACKAGES_ENV, str(directory))
    chart = copy_chart(tmp_path)
    with pytest.raises(HubbotError) as caught, helm.ready_chart(chart):
        pass
    assert str(caught.value) == (
        f"{directory / REAL_CHART}: this package holds layers 0.1.0, not the locked "
        f"jupyterhub {CHART_VERSION}"
    )
    (directory / REAL_CHART).write_bytes(b"not a gzip file")
    with pytest.raises(HubbotError) as caught, helm.ready_chart(chart):
        pass
    assert str(caught.value).startswith(
        f"{directory / REAL_CHART}: cannot read the chart package: "
    )


def test_present_dependency_is_used_in_place(hub_chart_offline_ready: Path) -> None:
    assert helm.dependencies_available(hub_chart_offline_ready)
    with helm.ready_chart(hub_chart_offline_ready) as ready:
        assert ready == hub_chart_offline_ready


@pytest.mark.parametrize(
    ("file", "old", "new", "message"),
    [
        pytest.param(
            "Chart.yaml",
            f"  - name: jupyterhub\n    version: {CHART_VERSION}\n",
            f"  jupyterhub:\n    version: {CHART_VERSION}\n",
            "hub/Chart.yaml:6: `dependencies` must be a list of charts (- name: ..., version: "
            "..., repository: ...), not a dict",
            id="Chart.yaml dependencies as a map",
        ),
        pytest.param(
            "Chart.lock",
            f"  version: {CHART_VERSION}\n",
            "",
            "hub/Chart.lock:2: this dependency has no `version`",
            id="a Chart.lock entry without version",
        ),
        pytest.param(
            "Chart.yaml",
            "apiVersion: v2\n",
            "- apiVersion: v2\n",
            "hub/Chart.yaml:1: Chart.yaml must be a mapping, not a list",
            id="Chart.yaml a list",
        ),
    ],
)
def test_a_malformed_chart_file_is_named(
    tmp_path: Path, file: str, old: str, new: str, message: str
) -> None:
    chart = copy_chart(tmp_path)
    if file == "Chart.yaml" and new.startswith("- "):
        (chart / file).write_text(new)
    else:
        replace_in(chart / file, old, new)
    with pytest.raises(HubbotError) as caught:
        helm.locked_dependencies(chart)
    assert str(caught.value) == message


def test_a_helm_that_is_not_a_program(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake = tmp_path / "not-helm"
    fake.write_bytes(b"\x7fELF not really\n")
    fake.chmod(0o755)
    monkeypatch.setenv("HELM", str(fake))
    expected = (
        f"helm at '{fake}' cannot run (Exec format error): run `make setup` (installs helm "
        "into .venv/bin) or set HELM to the helm binary"
    )
    with pytest.raises(HubbotError) as caught:
        helm.run(["version"])
    assert str(caught.value) == expected
    with pytest.raises(HubbotError) as caught:
        helm.major_version(helm.Processes(), tmp_path)
    assert str(caught.value) == expected


def test_a_helm_that_fails_silently(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HELM", "/bin/false")
    with pytest.raises(HubbotError) as caught:
        helm.run(["version"])
    assert str(caught.value) == (
        "`helm version` failed: helm printed no error message (exit status 1): check that "
        "'/bin/false' is the helm binary (run `make setup` (installs helm into .venv/bin) or "
        "set HELM to the helm binary)"
    )


def test_a_go_stack_trace_gives_its_first_line(
    hub_chart_offline_ready: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # HOME a file: helm cannot read its settings, and prints a stack trace, no `Error:`.
    monkeypatch.setenv("HOME", "/dev/null")
    for name in ("CONFIG", "CACHE", "DATA"):
        monkeypatch.delenv(f"XDG_{name}_HOME", raising=False)
        monkeypatch.delenv(f"HELM_{name}_HOME", raising=False)
    with pytest.raises(HubbotError) as caught:
        helm.template(hub_chart_offline_ready, "r1", "ns1", "{}")
    assert str(caught.value) == (
        "`helm template` failed: stat /dev/null/.config/helm/registry/config.json: "
        "not a directory"
    )


HANGING_HELM = """\
#!/bin/sh
echo $$ > "$0.pid"
exec sleep 120
"""


@pytest.mark.parametrize("how", ["run", "Processes.run"])
def test_helm_dies_with_the_bot_even_by_sigkill(tmp_path: Path, how: str) -> None:
    fake = tmp_path / "helm"
    fake.write_text(HANGING_HELM)
    fake.chmod(0o700)
    call = (
        "helm.run(['upgrade'])"
        if how == "run"
        else "helm.Processes().run([helm.binary(), 'upgrade'], None, dict(os.environ), Path('.'))"
    )
    script = f"import os\nfrom pathlib import Path\nfrom bot import helm\n{call}\n"
    bot = subprocess.Popen(
        [sys.executable, "-c", script], env={**os.environ, "HELM": str(fake)}, cwd=tmp_path
    )
    pid_file = tmp_path / "helm.pid"
    assert wait_until(lambda: pid_file.exists() and bool(pid_file.read_text().strip()))
    helm_pid = int(pid_file.read_text())
    try:
        os.kill(bot.pid, signal.SIGKILL)  # the bot alone: its helm is in no signalled group
        bot.wait(timeout=30)
        assert wait_until(lambda: process_start(helm_pid) is None), "helm outlived the bot"
    finally:
        if process_start(helm_pid) is not None:
            os.kill(helm_pid, signal.SIGKILL)
