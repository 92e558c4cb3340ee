"""bot/manifests.py with real helm on the project's mini z2jh-like chart and the hub chart."""

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
from tests.fixtures.charts import HUB_CHART, MINI_Z2JH, PROJECT
from tests.fixtures.repos import commit_all, write
from tests.fixtures.secrets import AgeKey, age_rules, write_secrets

PULLER = "DaemonSet/continuous-image-puller"
HOOK_PULLER = "DaemonSet/hook-image-puller"
CANARY = "canary-Zq7t4PxW2s"


def same(text: str) -> str:
    return text


def values(**changes: Any) -> dict[str, Any]:
    """The mini chart's values with dotted `changes` (a__b__c=1 sets a.b.c)."""
    doc: dict[str, Any] = {"singleuser": {"image": {"name": "example.org/user", "tag": "one"}}}
    for dotted, value in changes.items():
        *parents, last = dotted.split("__")
        node = doc
        for name in parents:
            node = node.setdefault(name, {})
        node[last] = value
    return doc


def diff(old: dict[str, Any] | None, new: dict[str, Any] | None) -> manifests.ManifestDiff:
    return manifest_diff(MINI_Z2JH, old, new, "rel", "ns", same)


def test_resources_sorted_by_kind_namespace_name_crds_last(helm_bin: str) -> None:
    rendered = helm.template(MINI_Z2JH, "rel", "ns", "{}")
    assert [manifests.title(key) for key in manifests.parse(rendered)] == [
        "ConfigMap/hub",
        PULLER,
        HOOK_PULLER,
        "Deployment/hub",
        "Deployment/proxy",
        "Secret/hub",
        "Service/proxy-public",
        "CustomResourceDefinition/userquotas.hub.example.org",
    ]


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


def test_same_values_show_nothing_and_count_the_noise(helm_bin: str) -> None:
    result = diff(values(), values())
    assert (result.changed, result.added, result.removed, result.text) == ([], [], [], {})
    assert result.restarts == []
    # Two random tokens in the hub Secret (a - and a + line each); the hub's
    # checksum/secret and the proxy's checksum/auth-token follow them.
    assert result.hidden_lines == {"z2jh-values": 0, "random": 4, "checksum": 4}
    assert result.hidden_summary() == [
        "4 lines hidden by rule random: values generated afresh on every render, such as "
        "tokens (compared by presence)",
        "4 lines hidden by rule checksum: checksum/* annotations (their effect is listed under "
        "what restarts)",
    ]


def test_user_image_change(helm_bin: str) -> None:
    result = diff(values(), values(singleuser__image__tag="two"))
    assert result.changed == [PULLER, HOOK_PULLER, "Secret/hub"]
    assert result.restarts == [
        "image puller runs on every node",
        "hub pod restarts",
        "new user servers get the new image",
    ]
    assert result.text[PULLER] == (
        f"--- old/{PULLER}\n"
        f"+++ new/{PULLER}\n"
        "@@ -24,7 +24,7 @@\n"
        "     spec:\n"
        "       initContainers:\n"
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
    # the hub's checksum/secret changed for real as well as randomly.
    assert result.hidden_lines == {"z2jh-values": 2, "random": 4, "checksum": 4}


def test_hub_config_change_restarts_only_the_hub(helm_bin: str) -> None:
    result = diff(values(), values(cull__timeout=600))
    assert result.changed == ["ConfigMap/hub", "Secret/hub"]
    assert result.restarts == ["hub pod restarts"]
    assert '-  cull.timeout: "3600"\n+  cull.timeout: "600"\n' in result.text["ConfigMap/hub"]
    assert result.text["Secret/hub"].endswith("~ cull.timeout: 3600 -> 600\n")
    # checksum/config-map now changes too.
    assert result.hidden_lines["checksum"] == 6


def test_other_singleuser_settings_reach_new_servers(helm_bin: str) -> None:
    result = diff(values(), values(singleuser__defaultUrl="/lab"))
    assert result.changed == ["Secret/hub"]
    assert result.restarts == [
        "hub pod restarts",
        "new user servers get the new settings; running servers keep theirs",
    ]
    assert result.text["Secret/hub"].endswith("+ singleuser.defaultUrl: /lab\n")


def test_proxy_image_restarts_the_proxy(helm_bin: str) -> None:
    result = diff(values(), values(proxy__chp__image__tag="9.9.9"))
    assert result.changed == ["Deployment/proxy", "Secret/hub"]
    assert result.restarts == ["hub pod restarts", "proxy pod restarts"]


def test_a_set_token_replaces_a_random_one(helm_bin: str) -> None:
    redactor = Redactor()
    redactor.register(CANARY)
    result = manifest_diff(
        MINI_Z2JH, values(), values(proxy__secretToken=CANARY), "rel", "ns", redactor.redact
    )
    assert result.restarts == ["hub pod restarts", "proxy pod restarts"]
    assert (
        "-  hub.config.ConfigurableHTTPProxy.auth_token: <random>\n"
        "+  hub.config.ConfigurableHTTPProxy.auth_token: <secret, changed>\n"
    ) in result.text["Secret/hub"]
    assert_no_canary(result)


def test_added_and_removed_hubs(helm_bin: str) -> None:
    added = diff(None, values(proxy__secretToken=CANARY))
    assert added.added == [
        "ConfigMap/hub",
        PULLER,
        HOOK_PULLER,
        "Deployment/hub",
        "Deployment/proxy",
        "Secret/hub",
        "Service/proxy-public",
        "CustomResourceDefinition/userquotas.hub.example.org",
    ]
    assert added.changed == added.removed == added.restarts == []
    secret = added.text["Secret/hub"]
    assert secret.startswith("--- /dev/null\n+++ new/Secret/hub\n")
    assert "+  hub.config.ConfigurableHTTPProxy.auth_token: <secret>\n" in secret
    assert "+  hub.config.JupyterHub.cookie_secret: <random>\n" in secret
    assert f"+ proxy.secretToken: {CANARY}\n" in secret  # redact() is the caller's to give
    removed = diff(values(), None)
    assert removed.removed == added.added
    assert removed.text["Service/proxy-public"].startswith(
        "--- old/Service/proxy-public\n+++ /dev/null\n"
    )


def assert_no_canary(result: manifests.ManifestDiff) -> None:
    encoded = base64.b64encode(CANARY.encode()).decode()
    everything = repr(result)
    assert CANARY not in everything
    assert encoded not in everything


def test_secrets_never_in_output(helm_bin: str) -> None:
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
        result = manifest_diff(MINI_Z2JH, before, after, "rel", "ns", redactor.redact)
        assert_no_canary(result)
        assert "old-" not in repr(result)
    rendered = manifests.render(MINI_Z2JH, new, "rel", "ns", redactor.redact)
    assert CANARY not in rendered
    assert base64.b64encode(CANARY.encode()).decode() not in rendered
    assert "  values.yaml: <secret>\n" in rendered


def test_kube_version_is_pinned(helm_bin: str) -> None:
    default = manifests.render(MINI_Z2JH, values(), "rel", "ns", same)
    assert f"kube.version: v{helm.DEFAULT_KUBE_VERSION}.0\n" in default
    older = manifests.render(MINI_Z2JH, values(), "rel", "ns", same, kube_version="1.29")
    assert "kube.version: v1.29.0\n" in older
    deployment = load_deployment(WorkTree(PROJECT), "tess-private")
    assert manifests.kube_version(deployment) == helm.DEFAULT_KUBE_VERSION


def test_the_hub_chart_with_real_layers(hub_chart_offline_ready: Path) -> None:
    """The real hub chart and the real tess-private values, the mini chart standing in."""
    staging = build(WorkTree(PROJECT), "tess-private", "staging")
    new = copy.deepcopy(staging.document)
    new["jupyterhub"]["singleuser"]["image"]["tag"] = "tree-0123456789ab"
    new["userServiceAccount"]["roleArn"] = "arn:aws:iam::123456789012:role/other"
    result = manifest_diff(
        hub_chart_offline_ready,
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


def test_offline_chart_is_unavailable(monkeypatch: pytest.MonkeyPatch, helm_bin: str) -> None:
    for name in ("HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")
    with pytest.raises(ChartUnavailable) as caught:
        manifest_diff(HUB_CHART, values(), values(), "rel", "ns", same)
    assert str(caught.value) == (
        "chart dependency jupyterhub 4.2.0 from https://hub.jupyter.org/helm-chart/ "
        "cannot be fetched (offline?)"
    )


def test_a_chart_changed_between_refs(tmp_path: Path, helm_bin: str) -> None:
    old_chart = tmp_path / "old" / "mini"
    shutil.copytree(MINI_Z2JH, old_chart)
    (old_chart / "templates" / "crd.yaml").unlink()
    result = manifest_diff(
        MINI_Z2JH, values(), values(), "rel", "ns", same, old_chart_dir=old_chart
    )
    assert result.added == ["CustomResourceDefinition/userquotas.hub.example.org"]
    assert result.changed == []


def hubbot(repo: Path, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    status = main(["--repo", str(repo), *args])
    out, err = capsys.readouterr()
    return status, out, err


def test_render_manifests(
    hub_repo: Path, helm_bin: str, capsys: pytest.CaptureFixture[str]
) -> None:
    shutil.copytree(MINI_Z2JH, hub_repo / "hub" / "charts" / "jupyterhub")
    status, out, err = hubbot(hub_repo, capsys, "render", "tess-private", "prod", "--manifests")
    assert (status, err) == (0, "")
    assert out.startswith(
        "# tess-private/prod: the manifests helm renders (secrets masked)\n# ConfigMap/hub\n"
    )
    titles = [line[2:] for line in out.splitlines() if line.startswith("# ") and "/" in line]
    assert titles[-2:] == [
        "ServiceAccount/tess-user",
        "CustomResourceDefinition/userquotas.hub.example.org",
    ]
    assert "    release: tess-private-prod\n" in out
    assert "  values.yaml: <secret>\n" in out


def test_render_manifests_offline(
    hub_repo: Path,
    helm_bin: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")
    status, out, err = hubbot(hub_repo, capsys, "render", "tess-public", "staging", "--manifests")
    assert (status, out) == (1, "")
    assert err == (
        "hubbot: error: chart dependency jupyterhub 4.2.0 from https://hub.jupyter.org/helm-chart/ "
        "cannot be fetched (offline?)\n"
    )


def test_pair_manifest_diff_between_a_commit_and_the_work_tree(
    hub_repo: Path, helm_bin: str
) -> None:
    shutil.copytree(MINI_Z2JH, hub_repo / "hub" / "charts" / "jupyterhub")
    base = commit_all(hub_repo, "vendor the stand-in chart")
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


def test_helm_errors_pass_through_redact(hub_chart_offline_ready: Path) -> None:
    def redact(text: str) -> str:
        return text.replace("efsFileSystemId", "<R>")

    broken = {"homeStorage": {"enabled": True}}
    with pytest.raises(HubbotError) as caught:
        manifest_diff(hub_chart_offline_ready, None, broken, "rel", "ns", redact)
    assert str(caught.value) == (
        "`helm template` failed: execution error at (tess-hub/templates/home-storage.yaml:9:4): "
        "homeStorage.<R> must be set when homeStorage.enabled is true"
    )


def test_a_base_chart_without_lock_is_unavailable(
    tmp_path: Path, hub_chart_offline_ready: Path
) -> None:
    base = tmp_path / "base" / "hub"
    shutil.copytree(hub_chart_offline_ready, base)
    (base / "Chart.lock").unlink()
    with pytest.raises(ChartUnavailable) as caught:
        manifest_diff(hub_chart_offline_ready, {}, {}, "rel", "ns", same, old_chart_dir=base)
    assert str(caught.value) == (
        "the chart at the base cannot be rendered: hub/Chart.lock: Chart.lock is missing: "
        "run `helm dependency update hub` and commit Chart.lock"
    )
    # A hub added by the change needs no chart at the base.
    added = manifest_diff(hub_chart_offline_ready, None, {}, "rel", "ns", same, old_chart_dir=base)
    assert "Deployment/hub" in added.added


def test_multi_line_values_are_diffed_line_by_line(helm_bin: str) -> None:
    old_code = "c.A = 1\nc.B = 2\nc.C = 3\n"
    new_code = f"c.A = 1\nc.B = '{CANARY}'\nc.C = 3\n"
    redactor = Redactor()
    redactor.register(CANARY)
    result = manifest_diff(
        MINI_Z2JH,
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


def test_quoting_never_hides_a_secret_from_redact(helm_bin: str) -> None:
    secret = 'pa"ss\\word'

    def redact(text: str) -> str:
        return text.replace(secret, "<R>")

    result = manifest_diff(
        MINI_Z2JH, values(), values(hub__config__X__token=secret), "rel", "ns", redact
    )
    assert result.text["Secret/hub"].endswith("+ hub.config.X.token: <R>\n")


def test_decrypted_secrets_never_reach_rendered_manifests_or_diffs(
    hub_repo: Path, helm_bin: str, age_env: AgeKey, capsys: pytest.CaptureFixture[str]
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
    shutil.copytree(MINI_Z2JH, hub_repo / "hub" / "charts" / "jupyterhub")
    write_secrets(hub_repo, hub, env, secrets_yaml(old_token), age=[age_env.recipient])
    commit_all(hub_repo, "canary secrets and the stand-in chart")
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
