"""bot/previewchart.py with the real jupyterhub chart and real helm."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from bot import helm
from bot.cachedir import CACHE_ENV, UNUSED_DAYS
from bot.chartpackage import MAX_FILE_SIZE
from bot.errors import HubbotError
from bot.manifests import parse
from bot.previewchart import MARK, marked_paths, preview_chart
from tests.fixtures.charts import chart_package

VALUES = json.dumps({"jupyterhub": {"singleuser": {"image": {"name": "u", "tag": "1"}}}})


def render(chart: Path) -> str:
    return helm.template(chart, "rel", "ns", VALUES, helm.DEFAULT_KUBE_VERSION)


def test_the_real_chart_renders_the_same_twice_from_its_preview_copy(
    hub_chart_offline_ready: Path,
) -> None:
    # The pristine chart does not: that is why the copy exists.
    assert render(hub_chart_offline_ready) != render(hub_chart_offline_ready)
    with preview_chart(hub_chart_offline_ready) as preview:
        assert preview.deterministic
        assert not list((preview.path / "charts").glob("*.tgz"))  # unpacked
        first = render(preview.path)
        assert first == render(preview.path)
    resources = parse(first)
    secret = resources[("Secret", "", "hub")]
    # The proxy token comes from randAlphaNum: marked, and found in the base64 data.
    assert marked_paths(secret) == {("data", "hub.config.ConfigurableHTTPProxy.auth_token")}
    assert not any(marked_paths(doc) for key, doc in resources.items() if key[0] != "Secret")
    # The working chart is untouched.
    assert list((hub_chart_offline_ready / "charts").glob("*.tgz"))


def test_a_chart_with_a_random_function_it_cannot_fix_is_rendered_twice(
    hub_chart_offline_ready: Path,
) -> None:
    (hub_chart_offline_ready / "templates" / "id.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: id\ndata:\n"
        "  id: {{ uuidv4 | quote }}\n"
    )
    with preview_chart(hub_chart_offline_ready) as preview:
        assert not preview.deterministic


def test_the_fixed_text_keeps_the_length_and_the_digits(tmp_path: Path) -> None:
    chart = tmp_path / "c"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: c\nversion: 0.1.0\n")
    (chart / "templates" / "cm.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\ndata:\n"
        "  called: {{ randAlphaNum 12 | quote }}\n"
        "  piped: {{ 3 | randAlpha | quote }}\n"
        "  number: {{ randNumeric 4 | atoi | add 1 | quote }}\n"
    )
    with preview_chart(chart) as preview:
        data = parse(render(preview.path))[("ConfigMap", "", "c")]["data"]
    assert data == {"called": f"{MARK}000000000012", "piped": f"{MARK}003", "number": "5"}


@pytest.mark.parametrize(
    ("members", "links", "message"),
    [
        ({"../escape/Chart.yaml": b"x"}, (), "cannot be unpacked"),
        ({"dep/Chart.yaml": b"x"}, ("dep/templates/passwd",), "cannot be unpacked"),
        ({"a/Chart.yaml": b"x", "b/Chart.yaml": b"x"}, (), "is not one chart directory"),
    ],
)
def test_a_hostile_dependency_package_is_refused(
    tmp_path: Path, members: dict[str, bytes], links: tuple[str, ...], message: str
) -> None:
    chart = tmp_path / "c"
    (chart / "charts").mkdir(parents=True)
    (chart / "charts" / "dep-1.0.0.tgz").write_bytes(chart_package(members, links))
    with pytest.raises(HubbotError, match=message), preview_chart(chart):
        pass
    assert not (tmp_path / "escape").exists()


def test_a_package_that_unpacks_bigger_than_helm_loads_is_refused_before_unpacking(
    tmp_path: Path,
) -> None:
    chart = tmp_path / "c"
    (chart / "charts").mkdir(parents=True)
    big = chart_package(
        {"dep/Chart.yaml": b"x", "dep/templates/big.yaml": bytes(MAX_FILE_SIZE + 1)}
    )
    (chart / "charts" / "dep-1.0.0.tgz").write_bytes(big)
    assert len(big) < 100_000  # zeros compress well: the size only shows unpacked
    with pytest.raises(HubbotError, match="more than helm loads"), preview_chart(chart):
        pass
    assert not list((chart / "charts").glob("tmp*"))


def one_template_chart(tmp_path: Path, template: str) -> Path:
    """A chart whose one dependency package holds `template` (a ConfigMap's data line)."""
    chart = tmp_path / "c"
    (chart / "charts").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: c\nversion: 0.1.0\n")
    dep = chart_package(
        {
            "dep/Chart.yaml": b"apiVersion: v2\nname: dep\nversion: 1.0.0\n",
            "dep/templates/cm.yaml": (
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: dep\ndata:\n"
                f"  value: {template}\n"
            ).encode(),
        }
    )
    (chart / "charts" / "dep-1.0.0.tgz").write_bytes(dep)
    return chart


def rendered_value(preview: Path) -> str:
    value: str = parse(render(preview))[("ConfigMap", "", "dep")]["data"]["value"]
    return value


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A cache of the test's own, for the bot."""
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    return tmp_path / "cache"


def cache_entries(cache: Path) -> list[Path]:
    return sorted((cache / "preview-charts").iterdir())


def test_a_dependency_is_unpacked_and_fixed_once_then_taken_from_the_cache(
    tmp_path: Path, helm_bin: str, cache: Path
) -> None:
    chart = one_template_chart(tmp_path, "{{ randAlphaNum 4 | quote }}")
    with preview_chart(chart) as preview:
        assert preview.deterministic
        assert rendered_value(preview.path) == f"{MARK}0004"
    [entry] = cache_entries(cache)
    # What the next run copies is the cache's: changed there, it shows in the next preview.
    cached = entry / "chart" / "dep" / "templates" / "cm.yaml"
    cached.write_text(cached.read_text().replace(f'"{MARK}', f'"cached-{MARK}'))
    with preview_chart(chart) as preview:
        assert rendered_value(preview.path) == f"cached-{MARK}0004"
    assert cache_entries(cache) == [entry]
    # Another package is another entry; one that cannot be fixed is remembered as such.
    other = one_template_chart(tmp_path / "other", "{{ uuidv4 | quote }}")
    with preview_chart(other) as preview:
        assert not preview.deterministic
    with preview_chart(other) as preview:
        assert not preview.deterministic
    assert len(cache_entries(cache)) == 2


def test_entries_unused_for_a_month_go_when_the_cache_is_next_used(
    tmp_path: Path, helm_bin: str, cache: Path
) -> None:
    chart = one_template_chart(tmp_path / "a", "{{ randAlphaNum 4 | quote }}")
    other = one_template_chart(tmp_path / "b", "{{ randAlpha 4 | quote }}")
    with preview_chart(chart):
        pass
    [used] = cache_entries(cache)
    with preview_chart(other):
        pass
    [unused] = set(cache_entries(cache)) - {used}
    month_ago = time.time() - (UNUSED_DAYS + 1) * 24 * 3600
    for entry in (used, unused):
        os.utime(entry / "deterministic", (month_ago, month_ago))
    being_made = cache / "preview-charts" / ".new-abc"
    being_made.mkdir()
    with preview_chart(chart):
        pass
    # The entry used now stays; the other goes; one being made is left alone.
    assert cache_entries(cache) == sorted([being_made, used])


def test_a_cache_entry_holding_a_link_is_not_used(
    tmp_path: Path, helm_bin: str, cache: Path
) -> None:
    chart = one_template_chart(tmp_path, '{{ .Files.Get "secret.txt" | quote }}')
    with preview_chart(chart):
        pass
    [entry] = cache_entries(cache)
    outside = tmp_path / "outside.txt"
    outside.write_text("read through a link")
    (entry / "chart" / "dep" / "secret.txt").symlink_to(outside)
    with preview_chart(chart) as preview:
        assert rendered_value(preview.path) == ""  # the package's own files, not the link's


def test_without_a_usable_cache_the_preview_is_made_all_the_same(
    tmp_path: Path, helm_bin: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    not_a_directory = tmp_path / "file"
    not_a_directory.write_text("")
    monkeypatch.setenv(CACHE_ENV, str(not_a_directory / "cache"))
    chart = one_template_chart(tmp_path, "{{ randAlphaNum 4 | quote }}")
    with preview_chart(chart) as preview:
        assert rendered_value(preview.path) == f"{MARK}0004"
    assert not list(tmp_path.glob("**/.new-*"))


def test_a_hostile_package_leaves_nothing_in_the_cache(tmp_path: Path, cache: Path) -> None:
    chart = tmp_path / "c"
    (chart / "charts").mkdir(parents=True)
    escaping = chart_package({"../escape/Chart.yaml": b"x"})
    (chart / "charts" / "dep-1.0.0.tgz").write_bytes(escaping)
    with pytest.raises(HubbotError, match="cannot be unpacked"), preview_chart(chart):
        pass
    assert cache_entries(cache) == []
