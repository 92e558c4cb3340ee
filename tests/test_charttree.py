"""What helm would read in a chart directory: links, special files, schemas' references."""

from __future__ import annotations

import gzip
import io
import json
import os
import shutil
import tarfile
from pathlib import Path

import pytest

from bot import helm
from bot.charttree import check_chart_tree
from bot.errors import HubbotError
from bot.main import main
from tests.fixtures.charts import REAL_CHART, chart_package
from tests.fixtures.repos import PROJECT


def chart(tmp_path: Path) -> Path:
    directory = tmp_path / "hub"
    (directory / "templates").mkdir(parents=True)
    (directory / "Chart.yaml").write_text("apiVersion: v2\nname: hub\nversion: 0.1.0\n")
    (directory / "templates" / "a.yaml").write_text("kind: ConfigMap\n")
    return directory


def refusal(directory: Path) -> str:
    with pytest.raises(HubbotError) as caught:
        check_chart_tree(directory)
    return str(caught.value)


def test_a_plain_chart_passes(tmp_path: Path) -> None:
    directory = chart(tmp_path)
    schema = {"$schema": "http://json-schema.org/draft-07/schema#", "$ref": "#/definitions/a"}
    (directory / "values.schema.json").write_text(json.dumps(schema))
    check_chart_tree(directory)


def test_a_link_anywhere_in_the_chart_is_refused(tmp_path: Path) -> None:
    directory = chart(tmp_path)
    (directory / "files").mkdir()
    (directory / "files" / "key").symlink_to("/etc/hostname")
    assert refusal(directory).startswith("hub/files/key: is a symbolic link (to /etc/hostname)")
    (directory / "files" / "key").unlink()
    (directory / "files").rmdir()
    (directory / "files").symlink_to("/etc")
    assert refusal(directory).startswith("hub/files: is a symbolic link (to /etc)")


def test_a_fifo_is_refused_before_helm_could_wait_on_it(tmp_path: Path) -> None:
    directory = chart(tmp_path)
    os.mkfifo(directory / "templates" / "b.yaml")
    assert refusal(directory).startswith("hub/templates/b.yaml: is a named pipe (FIFO), not a file")


def test_the_charts_schema_may_not_refer_outside_itself(tmp_path: Path) -> None:
    directory = chart(tmp_path)
    schema = '{"properties": {"a": {"$ref": "file:///etc/passwd"}}}'
    (directory / "values.schema.json").write_text(schema)
    assert refusal(directory) == (
        "hub/values.schema.json: the chart's schema: `$ref: file:///etc/passwd` refers outside "
        "this schema: only references within it (such as `#/$defs/name`) are allowed"
    )


def test_a_packaged_dependencys_schema_is_checked_down_to_its_own_packages(
    tmp_path: Path,
) -> None:
    directory = chart(tmp_path)
    inner = chart_package(
        {"inner/values.schema.json": b'{"$schema": "http://198.51.100.7/meta"}'}
    )
    outer = chart_package(
        {"dep/Chart.yaml": b"name: dep\n", "dep/charts/inner-1.0.0.tgz": inner}
    )
    (directory / "charts").mkdir()
    (directory / "charts" / "dep-1.0.0.tgz").write_bytes(outer)
    assert refusal(directory).startswith(
        "hub/charts/dep-1.0.0.tgz:dep/charts/inner-1.0.0.tgz:inner/values.schema.json: the "
        "chart's schema: `$schema: http://198.51.100.7/meta` is not a JSON Schema draft's"
    )


def test_every_render_and_deploy_gets_a_checked_chart(tmp_path: Path) -> None:
    directory = chart(tmp_path)
    (directory / "templates" / "leak.yaml").symlink_to("/etc/hostname")
    with (
        pytest.raises(HubbotError, match=r"^hub/templates/leak\.yaml: is a symbolic link"),
        helm.ready_chart(directory),
    ):
        pass


def test_render_of_the_manifests_prints_no_file_a_link_points_to(
    hub_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = hub_repo.parent / "outside.txt"
    secret.write_text("CONTENT-OUTSIDE-THE-REPOSITORY")
    (hub_repo / "hub" / "files").mkdir()
    (hub_repo / "hub" / "files" / "k").symlink_to(secret)
    (hub_repo / "hub" / "templates" / "k.yaml").write_text(
        'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: k}\ndata:\n'
        '  k: {{ .Files.Get "files/k" | quote }}\n'
    )
    status = main(["--repo", str(hub_repo), "render", "tess-public", "staging", "--manifests"])
    out, err = capsys.readouterr()
    assert status == 1
    assert err.startswith("hubbot: error: hub/files/k: is a symbolic link")
    assert "CONTENT-OUTSIDE" not in out + err


def test_a_package_added_from_the_packages_directory_is_checked_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, real_chart_packages: Path
) -> None:
    # The locked name and version, with a schema that would make helm read a local file.
    doctored = tmp_path / "packages" / REAL_CHART
    doctored.parent.mkdir()
    with (
        tarfile.open(real_chart_packages / REAL_CHART) as original,
        tarfile.open(doctored, "w:gz") as copy,
    ):
        for member in original:
            handle = original.extractfile(member)
            data = handle.read() if handle is not None else b""
            if member.name == "jupyterhub/values.schema.json":
                data = b'{"properties": {"hub": {"$ref": "file:///etc/hostname"}}}'
                member.size = len(data)
            copy.addfile(member, io.BytesIO(data))
    monkeypatch.setenv(helm.PACKAGES_ENV, str(doctored.parent))
    chart = tmp_path / "hub"
    shutil.copytree(PROJECT / "hub", chart)
    with (
        pytest.raises(HubbotError, match=r"^hub/charts/jupyterhub-.*values\.schema\.json: the "),
        helm.ready_chart(chart),
    ):
        pass


def test_packages_nested_past_any_real_chart_are_refused(tmp_path: Path) -> None:
    directory = chart(tmp_path)
    nested = chart_package({"leaf/values.schema.json": b"{}"})
    for depth in range(12):
        nested = chart_package({f"c{depth}/charts/inner.tgz": nested})
    (directory / "charts").mkdir()
    (directory / "charts" / "deep-1.0.0.tgz").write_bytes(nested)
    assert "chart packages nest more than 8 deep" in refusal(directory)


@pytest.mark.parametrize(
    "member",
    ["./evil/values.schema.json", "evil/./values.schema.json", "evil//values.schema.json",
     "evil/charts/sub/values.schema.json", "evil\\values.schema.json"],
)
def test_a_schema_anywhere_in_a_package_is_checked_however_its_name_is_written(
    tmp_path: Path, member: str
) -> None:
    directory = chart(tmp_path)
    schema = b'{"properties": {"a": {"$ref": "http://198.51.100.7/x"}}}'
    (directory / "charts").mkdir()
    (directory / "charts" / "evil-0.1.0.tgz").write_bytes(
        chart_package({"evil/Chart.yaml": b"name: evil\n", member: schema})
    )
    assert "refers outside this schema" in refusal(directory)


def test_a_hard_link_in_the_chart_is_refused(tmp_path: Path) -> None:
    directory = chart(tmp_path)
    outside = tmp_path / "key.txt"
    outside.write_text("AGE-SECRET-KEY-1")
    (directory / "files").mkdir()
    os.link(outside, directory / "files" / "key")
    assert refusal(directory) == (
        "hub/files/key: is a hard link to another file: replace it with a copy of that file"
    )


def test_a_package_is_refused_by_the_sizes_it_declares_before_it_is_inflated(
    tmp_path: Path,
) -> None:
    directory = chart(tmp_path)
    info = tarfile.TarInfo("bomb/zeros")
    info.size = 1 << 30  # a header that declares a GiB, of which the first MiB follows
    (directory / "charts").mkdir()
    (directory / "charts" / "bomb-0.1.0.tgz").write_bytes(
        gzip.compress(info.tobuf() + bytes(1 << 20))
    )
    assert refusal(directory).startswith(
        "hub/charts/bomb-0.1.0.tgz:bomb/zeros: is (or unpacks to) more than 5,242,880 bytes"
    )
