"""bot/manifests.py with real helm on the hub chart and the real jupyterhub chart it locks."""

from __future__ import annotations

import base64
import copy
import json
import secrets
import shutil
from pathlib import Path
from typing import Any

import pytest

from bot import helm, manifests
from bot.errors import HubbotError
from bot.hubploy import load_deployment
from bot.main import main
from bot.manifests import ChartUnavailable, manifest_diff
from bot.redact import Redactor
from bot.source import GitCommit, WorkTree
from bot.values import build
from tests.fixtures.charts import CHART_VERSION, HUB_CHART, PROJECT
from tests.fixtures.repos import commit_all, write
from tests.fixtures.secrets import AgeKey, age_rules, write_secrets

PULLER = "DaemonSet/continuous-image-puller"
HOOK_PULLER = "DaemonSet/hook-image-puller"
CANARY = "canary-Zq7t4PxW2s"


def same(text: str) -> str:
    return text


NEW_HUB = [
    "ClusterRole/rel-user-scheduler",
    "ClusterRoleBinding/rel-user-scheduler",
    "ConfigMap/hub",
    "ConfigMap/user-scheduler",
    PULLER,
    HOOK_PULLER,
    "Deployment/hub",
    "Deployment/proxy",
    "Deployment/user-scheduler",
    "Job/hook-image-awaiter",
    "NetworkPolicy/hub",
    "NetworkPolicy/proxy",
    "NetworkPolicy/singleuser",
    "PersistentVolumeClaim/hub-db-dir",
    "PodDisruptionBudget/user-placeholder",
    "PodDisruptionBudget/user-scheduler",
    "PriorityClass/rel-default-priority",
    "PriorityClass/rel-image-puller-priority",
    "PriorityClass/rel-user-placeholder-priority",
    "Role/hook-image-awaiter",
    "Role/hub",
    "RoleBinding/hook-image-awaiter",
    "RoleBinding/hub",
    "Secret/hub",
    "Service/hub",
    "Service/proxy-api",
    "Service/proxy-public",
    "ServiceAccount/continuous-image-puller",
    "ServiceAccount/hook-image-awaiter",
    "ServiceAccount/hook-image-puller",
    "ServiceAccount/hub",
    "ServiceAccount/tess-user",
    "ServiceAccount/user-scheduler",
    "StatefulSet/user-placeholder",
]


@pytest.fixture
def chart(hub_chart_offline_ready: Path) -> Path:
    """The hub chart, its charts/ holding the real locked jupyterhub package."""
    return hub_chart_offline_ready


def values(**changes: Any) -> dict[str, Any]:
    """Hub chart values with dotted `changes` under jupyterhub (a__b__c=1 sets a.b.c)."""
    jupyterhub: dict[str, Any] = {
        "singleuser": {"image": {"name": "example.org/user", "tag": "one"}}
    }
    for dotted, value in changes.items():
        *parents, last = dotted.split("__")
        node = jupyterhub
        for name in parents:
            node = node.setdefault(name, {})
        node[last] = value
    return {"jupyterhub": jupyterhub}


def diff(
    chart: Path, old: dict[str, Any] | None, new: dict[str, Any] | None
) -> manifests.ManifestDiff:
    return manifest_diff(chart, old, new, "rel", "ns", same)


def test_resources_sorted_by_kind_namespace_name_crds_last(chart: Path) -> None:
    # The jupyterhub chart has no CRD: the hub chart's crds/ gets one, as a chart may ship.
    (chart / "crds").mkdir()
    (chart / "crds" / "quota.yaml").write_text(
        "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\n"
        "metadata: {name: userquotas.hub.example.org}\n"
    )
    rendered = helm.template(chart, "rel", "ns", "{}")
    # helm's own order starts with the CRD, then PriorityClasses and ServiceAccounts.
    assert rendered.index("kind: CustomResourceDefinition") < rendered.index("kind: ConfigMap")
    assert [manifests.title(key) for key in manifests.parse(rendered)] == [
        *NEW_HUB,
        "CustomResourceDefinition/userquotas.hub.example.org",
    ]


def test_a_document_rendered_alike_twice_is_read_once_and_shared() -> None:
    one = "---\n# Source: a.yaml\nkind: ConfigMap\nmetadata:\n  name: a\ndata:\n  x: '1'\n"
    two = "---\n# Source: b.yaml\nkind: ConfigMap\nmetadata:\n  name: b\ndata:\n  x: '1'\n"
    changed = two.replace("'1'", "'2'")
    known: dict[str, Any] = {}
    old = manifests.parse(one + two, known)
    new = manifests.parse(one + changed, known)
    a, b = ("ConfigMap", "", "a"), ("ConfigMap", "", "b")
    assert old[a] is new[a]
    assert old[b] is not new[b]
    assert new[b]["data"] == {"x": "2"}
    # A document start with content on its line, and a document that is not a resource.
    stream = "--- |\n  text\n--- # a comment\nkind: A\nmetadata:\n  name: x\n"
    assert manifests.parse(stream) == {("A", "", "x"): {"kind": "A", "metadata": {"name": "x"}}}
    with pytest.raises(HubbotError, match="helm rendered YAML that cannot be read"):
        manifests.parse("---\nkind: [\n")


def test_sort_key_uses_namespace_then_name() -> None:
    keys = [
        ("CustomResourceDefinition", "", "a"),
        ("Service", "b", "a"),
        ("Service", "a", "z"),
        ("ConfigMap", "", "x"),
    ]
    assert sorted(keys, key=manifests.sort_key) == [
        ("ConfigMap", "", "x"),
        ("Service", "a", "z"),
        ("Service", "b", "a"),
        ("CustomResourceDefinition", "", "a"),
    ]


def test_same_values_show_nothing_and_count_the_noise(chart: Path) -> None:
    result = diff(chart, values(), values())
    assert (result.changed, result.added, result.removed, result.text) == ([], [], [], {})
    assert result.restarts == []
    # The chart's random tokens (proxy token, cookie secret, CryptKeeper keys) and the
    # checksums of them render the same on both sides, as they stay on a cluster where the
    # chart looks them up: there is no noise left to hide.
    assert result.hidden_lines == {
        "z2jh-values": 0, "random": 0, "checksum": 0, "chart-version": 0
    }
    assert result.hidden_summary() == []


def test_a_random_value_outside_a_secret_is_shown_as_random(chart: Path) -> None:
    """A chart's own randAlphaNum (say, an annotation that restarts a pod on every deploy)
    is masked as random, on both sides: it differs on every real deploy."""
    template = chart / "templates" / "roll.yaml"
    template.write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: roll\n  annotations:\n"
        "    rollme: {{ randAlphaNum 5 | quote }}\n    kept: {{ 5 | randNumeric | quote }}\n"
    )
    result = diff(chart, values(), values())
    assert result.hidden_lines["random"] == 0  # the same on both sides: nothing shown
    added = diff(chart, None, values())
    assert "+    rollme: <random>\n" in added.text["ConfigMap/roll"]
    assert "+    kept: \"00005\"\n" in added.text["ConfigMap/roll"]


def test_user_image_change(chart: Path) -> None:
    result = diff(chart, values(), values(singleuser__image__tag="two"))
    assert result.changed == [PULLER, HOOK_PULLER, "Secret/hub"]
    assert result.restarts == [
        "image puller runs on every node",
        "hub pod restarts",
        "new user servers get the new image",
    ]
    assert result.text[PULLER] == (
        f"--- old/{PULLER}\n"
        f"+++ new/{PULLER}\n"
        "@@ -73,7 +73,7 @@\n"
        "           seccompProfile:\n"
        "             type: RuntimeDefault\n"
        "       - name: image-pull-singleuser\n"
        "-        image: example.org/user:one\n"
        "+        image: example.org/user:two\n"
        "         command:\n"
        "         - /bin/sh\n"
        "         - -c\n"
    )
    assert result.text["Secret/hub"] == (
        "--- old/Secret/hub\n"
        "+++ new/Secret/hub\n"
        "# values.yaml by key (secrets redacted):\n"
        "~ singleuser.image.tag: one -> two\n"
    )
    # The hub Secret's values.yaml (one - and one + line) is shown by key instead;
    # the hub's checksum/secret and checksum/config-map, with the ConfigMap's
    # checksum_hook-image-puller key, changed (a - and a + line each).
    assert result.hidden_lines == {
        "z2jh-values": 2, "random": 0, "checksum": 6, "chart-version": 0
    }


def test_the_hub_configmap_checksum_key_is_noise_counted_under_checksum(chart: Path) -> None:
    """z2jh writes the hook puller's checksum in the hub ConfigMap: checksum_hook-image-puller."""
    result = diff(chart, values(), values(singleuser__image__tag="two"))
    assert "ConfigMap/hub" not in result.changed
    assert "ConfigMap/hub" not in result.text
    assert "checksum_" not in result.diff
    assert result.hidden_lines["checksum"] == 6
    added = diff(chart, None, values())
    assert "  checksum_hook-image-puller: <checksum>\n" in added.text["ConfigMap/hub"]


def chart_at_version(chart: Path, packages: Path, version: str) -> Path:
    """A copy of the hub chart depending on jupyterhub `version`, its package in charts/."""
    copy = chart.parent / f"hub-{version}"
    shutil.copytree(chart, copy)
    shutil.rmtree(copy / "charts")
    (copy / "charts").mkdir()
    package = f"jupyterhub-{version}.tgz"
    shutil.copyfile(packages / package, copy / "charts" / package)
    chart_yaml = copy / "Chart.yaml"
    chart_yaml.write_text(
        chart_yaml.read_text().replace(f"version: {CHART_VERSION}", f"version: {version}")
    )
    dependency = {"name": "jupyterhub", "version": version, "repository": REPOSITORY}
    requirements = [dict(dependency)]
    (copy / "Chart.lock").write_text(
        f"dependencies:\n- name: jupyterhub\n  repository: {REPOSITORY}\n  version: {version}\n"
        f"digest: {helm.lock_digest(requirements, [dependency])}\n"
        'generated: "2026-12-02T00:00:00Z"\n'
    )
    return copy


REPOSITORY = "https://hub.jupyter.org/helm-chart/"


def test_a_chart_bump_hides_the_version_labels_and_shows_what_really_changes(
    chart: Path, real_chart_packages: Path
) -> None:
    old = chart_at_version(chart, real_chart_packages, "4.2.0")
    bumped = chart_at_version(chart, real_chart_packages, "4.4.0")
    result = manifest_diff(bumped, values(), values(), "rel", "ns", same, old_chart_dir=old)
    # Every resource carries the chart's name-version label: one - and one + line each,
    # twice (chart and helm.sh/chart).
    assert result.hidden_lines["chart-version"] == 4 * (len(NEW_HUB) - 1)  # not tess-user
    assert "jupyterhub-4.4.0" not in "".join(
        line for line in result.diff.splitlines(keepends=True) if "chart: " in line
    )
    # What the bump really changes stays: the chart's own images, and what restarts.
    assert "quay.io/jupyterhub/k8s-hub:4.4.0" in result.diff
    assert "hub pod restarts" in result.restarts
    assert "ServiceAccount/hub" not in result.changed  # it differs by its label only


def test_hub_config_change_restarts_only_the_hub(chart: Path) -> None:
    result = diff(chart, values(), values(cull__timeout=600))
    # z2jh passes the hub its configuration in the Secret's values.yaml; the hub pod's
    # checksum/secret makes it restart.
    assert result.changed == ["Secret/hub"]
    assert result.restarts == ["hub pod restarts"]
    assert result.text["Secret/hub"].endswith("~ cull.timeout: 3600 -> 600\n")


def test_other_singleuser_settings_reach_new_servers(chart: Path) -> None:
    result = diff(chart, values(), values(singleuser__defaultUrl="/tree"))
    assert result.changed == ["Secret/hub"]
    assert result.restarts == [
        "hub pod restarts",
        "new user servers get the new settings; running servers keep theirs",
    ]
    assert result.text["Secret/hub"].endswith("~ singleuser.defaultUrl: /lab -> /tree\n")


def test_proxy_image_restarts_the_proxy(chart: Path) -> None:
    result = diff(chart, values(), values(proxy__chp__image__tag="9.9.9"))
    assert result.changed == ["Deployment/proxy", "Secret/hub"]
    assert result.restarts == ["hub pod restarts", "proxy pod restarts"]


def test_a_set_token_replaces_a_random_one(chart: Path) -> None:
    redactor = Redactor()
    redactor.register(CANARY)
    result = manifest_diff(
        chart, values(), values(proxy__secretToken=CANARY), "rel", "ns", redactor.redact
    )
    assert result.restarts == ["hub pod restarts", "proxy pod restarts"]
    assert (
        "-  hub.config.ConfigurableHTTPProxy.auth_token: <random>\n"
        "+  hub.config.ConfigurableHTTPProxy.auth_token: <secret, changed>\n"
    ) in result.text["Secret/hub"]
    assert_no_canary(result)


def test_added_and_removed_hubs(chart: Path) -> None:
    added = diff(chart, None, values(proxy__secretToken=CANARY))
    assert added.added == NEW_HUB
    assert added.changed == added.removed == added.restarts == []
    secret = added.text["Secret/hub"]
    assert secret.startswith("--- /dev/null\n+++ new/Secret/hub\n")
    assert "+  hub.config.ConfigurableHTTPProxy.auth_token: <secret>\n" in secret
    # The auth token's randAlphaNum is marked; the cookie secret is made of randNumeric
    # digits, which carry no mark: it is a secret like any other.
    assert "+  hub.config.JupyterHub.cookie_secret: <secret>\n" in secret
    assert f"+ proxy.secretToken: {CANARY}\n" in secret  # redact() is the caller's to give
    removed = diff(chart, values(), None)
    assert removed.removed == added.added
    assert removed.text["Service/proxy-public"].startswith(
        "--- old/Service/proxy-public\n+++ /dev/null\n"
    )


def assert_no_canary(result: manifests.ManifestDiff) -> None:
    encoded = base64.b64encode(CANARY.encode()).decode()
    everything = repr(result)
    assert CANARY not in everything
    assert encoded not in everything


def test_secrets_never_in_output(chart: Path) -> None:
    redactor = Redactor()
    redactor.register(CANARY)
    old = values(hub__config__GitHubOAuthenticator__client_secret="old-" + CANARY)
    redactor.register("old-" + CANARY)
    new = values(
        proxy__secretToken=CANARY,
        hub__config__GitHubOAuthenticator__client_secret=CANARY,
        hub__db__password=CANARY,
    )
    for before, after in ((old, new), (None, new), (new, None)):
        result = manifest_diff(chart, before, after, "rel", "ns", redactor.redact)
        assert_no_canary(result)
        assert "old-" not in repr(result)
    rendered = manifests.render(chart, new, "rel", "ns", redactor.redact)
    assert CANARY not in rendered
    assert base64.b64encode(CANARY.encode()).decode() not in rendered
    assert "  values.yaml: <secret>\n" in rendered


def test_kube_version_is_pinned(chart: Path) -> None:
    # The real chart renders the same for every version it allows, so a template of the
    # test's own shows the version helm rendered for.
    (chart / "templates" / "kube-version.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: kube-version}\n"
        "data: {version: {{ .Capabilities.KubeVersion.Version | quote }}}\n"
    )
    default = manifests.render(chart, values(), "rel", "ns", same)
    assert f"  version: v{helm.DEFAULT_KUBE_VERSION}.0\n" in default
    older = manifests.render(chart, values(), "rel", "ns", same, kube_version="1.29")
    assert "  version: v1.29.0\n" in older
    deployment = load_deployment(WorkTree(PROJECT), "tess-private")
    assert manifests.kube_version(deployment) == helm.DEFAULT_KUBE_VERSION


def test_the_hub_chart_with_real_layers(chart: Path) -> None:
    """The hub chart, the real jupyterhub chart and the real tess-private values."""
    staging = build(WorkTree(PROJECT), "tess-private", "staging")
    new = copy.deepcopy(staging.document)
    new["jupyterhub"]["singleuser"]["image"]["tag"] = "tree-0123456789ab"
    new["userServiceAccount"]["roleArn"] = "arn:aws:iam::123456789012:role/other"
    result = manifest_diff(
        chart,
        staging.document,
        new,
        staging.environment.release,
        staging.environment.namespace,
        same,
    )
    assert result.changed == [PULLER, HOOK_PULLER, "Secret/hub", "ServiceAccount/tess-user"]
    assert result.restarts == [
        "image puller runs on every node",
        "hub pod restarts",
        "new user servers get the new image",
    ]


OFFLINE = (
    f"chart dependency jupyterhub {CHART_VERSION} from https://hub.jupyter.org/helm-chart/ "
    "cannot be fetched (offline? set HUBBOT_CHART_PACKAGES to a directory of chart packages)"
)


def go_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")
    monkeypatch.delenv(helm.PACKAGES_ENV, raising=False)


def test_offline_chart_is_unavailable(monkeypatch: pytest.MonkeyPatch, helm_bin: str) -> None:
    go_offline(monkeypatch)
    with pytest.raises(ChartUnavailable) as caught:
        manifest_diff(HUB_CHART, values(), values(), "rel", "ns", same)
    assert str(caught.value) == OFFLINE


def test_a_chart_changed_between_refs(tmp_path: Path, chart: Path) -> None:
    old_chart = tmp_path / "old" / "hub"
    shutil.copytree(chart, old_chart)
    (old_chart / "templates" / "user-serviceaccount.yaml").unlink()
    result = manifest_diff(chart, values(), values(), "rel", "ns", same, old_chart_dir=old_chart)
    assert result.added == ["ServiceAccount/tess-user"]
    assert result.changed == []


def hubbot(repo: Path, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    status = main(["--repo", str(repo), *args])
    out, err = capsys.readouterr()
    return status, out, err


def test_render_manifests(
    hub_repo: Path, helm_bin: str, real_chart_packages: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, err = hubbot(hub_repo, capsys, "render", "tess-private", "prod", "--manifests")
    assert (status, err) == (0, "")
    assert out.startswith(
        "# tess-private/prod: the manifests helm renders (secrets masked)\n"
        "# ClusterRole/tess-private-prod-user-scheduler\n"
    )
    titles = [line[2:] for line in out.splitlines()[1:] if line.startswith("# ")]
    assert len(titles) == 43
    # The hub chart's own EFS home volume, beside the jupyterhub chart's hub database.
    assert {"PersistentVolume/tess-private-prod-home", "PersistentVolumeClaim/home-nfs",
            "PersistentVolumeClaim/hub-db-dir", "ServiceAccount/tess-user"} <= set(titles)
    assert "    release: tess-private-prod\n" in out
    assert "  values.yaml: <secret>\n" in out


def test_render_manifests_offline(
    hub_repo: Path,
    helm_bin: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    go_offline(monkeypatch)
    status, out, err = hubbot(hub_repo, capsys, "render", "tess-public", "staging", "--manifests")
    assert (status, out) == (1, "")
    assert err == f"hubbot: error: {OFFLINE}\n"


def test_pair_manifest_diff_between_a_commit_and_the_work_tree(
    hub_repo: Path, helm_bin: str, real_chart_packages: Path
) -> None:
    base = commit_all(hub_repo, "the base")
    template = hub_repo / "hub" / "templates" / "user-serviceaccount.yaml"
    template.write_text(template.read_text().replace("Token: false", "Token: true"))
    old_source, new_source = GitCommit(hub_repo, base), WorkTree(hub_repo)
    old = build(old_source, "tess-public", "prod")
    new = build(new_source, "tess-public", "prod")
    result = manifests.pair_manifest_diff(old_source, new_source, old, new, same)
    assert (result.changed, result.added, result.removed) == (["ServiceAccount/tess-user"], [], [])
    assert result.diff == (
        "--- old/ServiceAccount/tess-user\n"
        "+++ new/ServiceAccount/tess-user\n"
        "@@ -9,4 +9,4 @@\n"
        "     helm.sh/chart: tess-hub-0.1.0\n"
        "   annotations:\n"
        "     eks.amazonaws.com/role-arn: arn:aws:iam::123456789012:role/tess-user-data-read\n"
        "-automountServiceAccountToken: false\n"
        "+automountServiceAccountToken: true\n"
    )
    removed = manifests.pair_manifest_diff(old_source, new_source, old, None, same)
    assert "ServiceAccount/tess-user" in removed.removed
    text = removed.text["ServiceAccount/tess-user"]
    assert "-    app.kubernetes.io/instance: tess-public-prod\n" in text


def test_a_commits_chart_is_read_in_place_only_when_the_work_tree_holds_just_it(
    hub_repo: Path,
) -> None:
    commit_all(hub_repo, "the chart as it is")
    with manifests.chart_at(GitCommit(hub_repo, "HEAD")) as directory:
        assert directory == hub_repo / "hub"  # no export: the same files
    # Ignored by git, but helm would render it from the work tree's copy.
    write(hub_repo, ".gitignore", "hub/templates/extra.yaml\n")
    write(hub_repo, "hub/templates/extra.yaml", "kind: ConfigMap\n")
    with manifests.chart_at(GitCommit(hub_repo, "HEAD")) as directory:
        assert directory != hub_repo / "hub"
        assert (directory / "Chart.yaml").is_file()
        assert not (directory / "templates" / "extra.yaml").exists()


def test_helm_errors_pass_through_redact(chart: Path) -> None:
    def redact(text: str) -> str:
        return text.replace("efsFileSystemId", "<R>")

    broken = {"homeStorage": {"enabled": True}}
    with pytest.raises(HubbotError) as caught:
        manifest_diff(chart, None, broken, "rel", "ns", redact)
    assert str(caught.value) == (
        "`helm template` failed: execution error at (tess-hub/templates/home-storage.yaml:9:4): "
        "homeStorage.<R> must be set when homeStorage.enabled is true"
    )


def test_a_base_chart_without_lock_is_unavailable(tmp_path: Path, chart: Path) -> None:
    base = tmp_path / "base" / "hub"
    shutil.copytree(chart, base)
    (base / "Chart.lock").unlink()
    with pytest.raises(ChartUnavailable) as caught:
        manifest_diff(chart, {}, {}, "rel", "ns", same, old_chart_dir=base)
    assert str(caught.value) == (
        "the chart at the base cannot be rendered: hub/Chart.lock: Chart.lock is missing: "
        "run `helm dependency update hub` and commit Chart.lock"
    )
    # A hub added by the change needs no chart at the base.
    added = manifest_diff(chart, None, {}, "rel", "ns", same, old_chart_dir=base)
    assert "Deployment/hub" in added.added


def test_multi_line_values_are_diffed_line_by_line(chart: Path) -> None:
    old_code = "c.A = 1\nc.B = 2\nc.C = 3\n"
    new_code = f"c.A = 1\nc.B = '{CANARY}'\nc.C = 3\n"
    redactor = Redactor()
    redactor.register(CANARY)
    result = manifest_diff(
        chart,
        values(hub__extraConfig__x=old_code),
        values(hub__extraConfig__x=new_code),
        "rel",
        "ns",
        redactor.redact,
    )
    masked = redactor.redact(CANARY)
    assert result.text["Secret/hub"].endswith(
        "~ hub.extraConfig.x:\n"
        "    @@ -1,3 +1,3 @@\n"
        "     c.A = 1\n"
        "    -c.B = 2\n"
        f"    +c.B = '{masked}'\n"
        "     c.C = 3\n"
    )
    assert_no_canary(result)


def test_quoting_never_hides_a_secret_from_redact(chart: Path) -> None:
    secret = 'pa"ss\\word'

    def redact(text: str) -> str:
        return text.replace(secret, "<R>")

    result = manifest_diff(
        chart, values(), values(hub__config__X__token=secret), "rel", "ns", redact
    )
    assert result.text["Secret/hub"].endswith("+ hub.config.X.token: <R>\n")


def test_decrypted_secrets_never_reach_rendered_manifests_or_diffs(
    hub_repo: Path,
    helm_bin: str,
    real_chart_packages: Path,
    age_env: AgeKey,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """sops-encrypted canaries, decrypted, through helm and both manifest outputs."""
    hub, env = "tess-private", "staging"
    old_token = "canary" + secrets.token_hex(24)
    new_token = "canary" + secrets.token_hex(24)
    quoted = f'it\'s a "quoted"\tvalue\nsecond line {secrets.token_hex(8)}\\end'
    cookie = base64.b64encode(secrets.token_bytes(45)).decode()

    def secrets_yaml(token: str) -> str:
        config = {"GitHubOAuthenticator": {"client_secret": quoted}}
        hub_values = {"cookieSecret": cookie, "config": config}
        return json.dumps({"jupyterhub": {"proxy": {"secretToken": token}, "hub": hub_values}})

    write(hub_repo, ".sops.yaml", age_rules((env, age_env.recipient)))
    write_secrets(hub_repo, hub, env, secrets_yaml(old_token), age=[age_env.recipient])
    commit_all(hub_repo, "canary secrets")
    write_secrets(hub_repo, hub, env, secrets_yaml(new_token), age=[age_env.recipient])

    needles = {
        form
        for value in (old_token, new_token, quoted, cookie)
        for form in (value, base64.b64encode(value.encode()).decode(), json.dumps(value)[1:-1])
    }
    render = ["render", hub, env, "--manifests", "--decrypt"]
    status, out, err = hubbot(hub_repo, capsys, *render)
    assert (status, err) == (0, "")
    assert "  hub.config.ConfigurableHTTPProxy.auth_token: <secret>\n" in out
    assert not [needle for needle in needles if needle in out]

    status, out, err = hubbot(
        hub_repo, capsys, "diff", "--base", "HEAD", "--decrypt", "--format", "text"
    )
    assert (status, err) == (0, "")
    assert "+  hub.config.ConfigurableHTTPProxy.auth_token: <secret, changed>\n" in out
    assert "proxy pod restarts" in out
    assert not [needle for needle in needles if needle in out]


def home(capacity: str, **changes: Any) -> dict[str, Any]:
    doc = values(**changes)
    doc["homeStorage"] = {"enabled": True, "efsFileSystemId": "fs-1", "capacity": capacity}
    return doc


def test_resizing_a_statically_provisioned_volume_is_refused(chart: Path) -> None:
    """Kubernetes refuses a new size for a volume with storageClassName "" at upgrade time."""
    result = diff(chart, home("1Ti"), home("2Ti"))
    assert result.changed == ["PersistentVolume/rel-home", "PersistentVolumeClaim/home-nfs"]
    assert result.refused == [
        "Kubernetes refuses to resize a statically provisioned volume "
        "(PersistentVolume rel-home: 1Ti -> 2Ti)",
        "Kubernetes refuses to resize a statically provisioned volume "
        "(PersistentVolumeClaim home-nfs: 1Ti -> 2Ti)",
    ]
    assert diff(chart, home("1Ti"), home("1Ti", singleuser__image__tag="two")).refused == []
    assert diff(chart, None, home("2Ti")).refused == []
    # The hub database's claim has a storage class: its provisioner may grow it.
    grown = diff(chart, home("1Ti"), home("1Ti", hub__db__pvc__storage="2Gi"))
    assert grown.changed == ["PersistentVolumeClaim/hub-db-dir", "Secret/hub"]
    assert grown.refused == []
