"""The start-up check: what the real JupyterHub does with one hub and environment's config.

The pair is rendered with `helm template` as validate sees it (secrets in
shape-only form, each replaced by a sample of its type), and the probe
(bot/startup_probe.py, in the hub's own virtualenv, bot/jupyterhub_runtime.py)
loads the chart's jupyterhub_config.py from the rendered hub ConfigMap and
Secret into the JupyterHub, authenticator and KubeSpawner versions the chart's
hub image pins. Loading the config into the real classes, running the real
login path and building the real pod manifest takes about two seconds per
pair; starting the hub with configurable-http-proxy and logging in over HTTP
(done after deploy by bot/health.py) would add a node dependency and several
seconds, and tell nothing more about the config itself.

Its findings become errors and warnings pinned to the layer file and line of
the key responsible, plus a one-line verdict per pair.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

from bot import helm, manifests
from bot import jupyterhub_runtime as runtime
from bot.errors import HubbotError, Location
from bot.merge import effective
from bot.sops_format import SecretLeaf
from bot.source import Source
from bot.values import HubValues, layer_files
from bot.yamlfile import Path_

CHART = "jupyterhub"
# Two test users: a shared volume mounted at the same sub-path for both is everyone's.
USERS = ("hubbot-probe-a", "hubbot-probe-b")
# Stands in for every encrypted string: hex, so it passes as a cookie secret too.
SECRET_SAMPLE = "5ec7e75a" * 8
SAMPLES: dict[str, Any] = {"int": 0, "float": 0.0, "bool": False}
HUB_CONFIG: Path_ = ("jupyterhub", "hub", "config")
SINGLEUSER: Path_ = ("jupyterhub", "singleuser")
AUTHENTICATOR_CLASS: Path_ = (*HUB_CONFIG, "JupyterHub", "authenticator_class")
OAUTH_PROVIDERS = {"GitHubOAuthenticator": "GitHub"}


@dataclass
class StartupReport:
    """One pair's start-up check: errors fail validate, warnings are shown."""

    hub: str
    env: str
    verdict: str = ""
    errors: list[HubbotError] = field(default_factory=list)
    warnings: list[HubbotError] = field(default_factory=list)


def verdict(source: Source, values: HubValues) -> str:
    """The one-line verdict for one pair, e.g. 'starts; login: a temporary user is admitted'."""
    return check(source, values).verdict


def check(source: Source, values: HubValues) -> StartupReport:
    """Render the pair, run the probe on it, and judge the answer."""
    (report,) = check_many(source, [values])
    return report


def check_many(source: Source, pairs: Sequence[HubValues]) -> list[StartupReport]:
    """check() for each pair, with one probe process for them all (JupyterHub is imported
    once; each pair's config still runs in a process of its own)."""
    if any(values.decrypted for values in pairs):
        raise ValueError("the start-up check must run on shape-only values, never decrypted ones")
    if not pairs:
        return []
    with manifests.chart_at(source) as chart_dir:
        version = chart_version(chart_dir)
        requirements = runtime.requirements_file(version)
        python = runtime.environment(version, requirements)
        with helm.ready_chart(chart_dir) as chart:
            requests = [
                probe_request(render(chart, values), values.environment.namespace)
                for values in pairs
            ]
    answers = runtime.probe(python, requests)
    return [judge(values, answer) for values, answer in zip(pairs, answers, strict=True)]


def chart_version(chart_dir: Path) -> str:
    for dep in helm.locked_dependencies(chart_dir):
        if dep.name == CHART:
            return dep.version
    where = Location(f"{chart_dir.name}/Chart.yaml")
    raise HubbotError(f"the chart does not depend on {CHART}", where)


def render(chart: Path, values: HubValues) -> dict[manifests.Key, manifests.Doc]:
    """What `helm template` renders for the pair from a ready chart, secrets replaced by
    samples of their type."""
    rendered = helm.template(
        chart,
        values.environment.release,
        values.environment.namespace,
        json.dumps(with_samples(values.document)),
        manifests.kube_version(values.deployment),
    )
    return manifests.parse(rendered)


def with_samples(node: Any) -> Any:
    if isinstance(node, SecretLeaf):
        return SAMPLES.get(node.sops_type, SECRET_SAMPLE)
    if isinstance(node, dict):
        return {key: with_samples(value) for key, value in node.items()}
    if isinstance(node, list):
        return [with_samples(value) for value in node]
    return node


# --- what the hub pod has --------------------------------------------------------------


def probe_request(resources: dict[manifests.Key, manifests.Doc], namespace: str) -> dict[str, Any]:
    """The hub pod's /usr/local/etc/jupyterhub files and environment, as the probe wants them."""
    config_map = _hub_resource(resources, "ConfigMap")
    secret = _hub_resource(resources, "Secret")
    deployment = _hub_resource(resources, "Deployment")
    config = {str(k): str(v) for k, v in (config_map.get("data") or {}).items()}
    secrets = _secret_data(secret)
    files = {f"config/{key}": value for key, value in config.items()}
    files |= {f"secret/{key}": value for key, value in secrets.items()}
    for name in ("jupyterhub_config.py", "z2jh.py"):  # mounted from the ConfigMap by subPath
        if name not in config:
            raise HubbotError(f"the rendered hub ConfigMap has no {name}: not a jupyterhub chart?")
        files[name] = config[name]
    env, outside = _container_env(resources, deployment, namespace)
    # "outside": variables set from a Secret or ConfigMap the render lacks, by name only.
    return {
        "files": files,
        "env": _service_env(resources) | env,
        "env_outside": outside,
        "users": list(USERS),
    }


def _hub_resource(resources: dict[manifests.Key, manifests.Doc], kind: str) -> manifests.Doc:
    for (found_kind, _, _), doc in resources.items():
        labels = (doc.get("metadata") or {}).get("labels") or {}
        if found_kind == kind and labels.get("component") == "hub":
            return doc
    raise HubbotError(f"the chart renders no hub {kind}: not a jupyterhub chart?")


def _secret_data(secret: manifests.Doc) -> dict[str, str]:
    data = {str(k): str(v) for k, v in (secret.get("stringData") or {}).items()}
    name = (secret.get("metadata") or {}).get("name")
    for key, encoded in (secret.get("data") or {}).items():
        try:
            data[str(key)] = base64.b64decode(str(encoded), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise HubbotError(f"the rendered Secret {name}'s {key} is not base64 text") from None
    return data


def _service_env(resources: dict[manifests.Key, manifests.Doc]) -> dict[str, str]:
    """What Kubernetes tells every pod about the namespace's Services (the config reads them)."""
    env = {}
    for (kind, _, name), doc in resources.items():
        ports = (doc.get("spec") or {}).get("ports") or []
        if kind != "Service" or not ports:
            continue
        prefix = name.upper().replace("-", "_")
        env[f"{prefix}_SERVICE_HOST"] = name
        env[f"{prefix}_SERVICE_PORT"] = str(ports[0].get("port"))
    return env


KEY_REFS = {"secretKeyRef": "Secret", "configMapKeyRef": "ConfigMap"}


def _container_env(
    resources: dict[manifests.Key, manifests.Doc], deployment: manifests.Doc, namespace: str
) -> tuple[dict[str, str], dict[str, str]]:
    """The hub container's environment as far as the render tells it: the entries with a
    plain value, the namespace or a key of a rendered Secret or ConfigMap; and, apart, each
    entry set from a Secret or ConfigMap the render does not contain, as 'Secret/name key
    key' (Kubernetes supplies it, but its value is unknown here)."""
    pod = ((deployment.get("spec") or {}).get("template") or {}).get("spec") or {}
    containers = [c for c in pod.get("containers") or [] if c.get("name") == "hub"]
    env: dict[str, str] = {}
    outside: dict[str, str] = {}
    rendered: dict[tuple[str, str], dict[str, str] | None] = {}  # each decoded once
    for entry in containers[0].get("env") or [] if containers else []:
        name, source = str(entry.get("name")), entry.get("valueFrom") or {}
        # A later entry of the same name replaces an earlier one, as in Kubernetes.
        env.pop(name, None)
        outside.pop(name, None)
        if "value" in entry:
            env[name] = str(entry["value"])
        elif (source.get("fieldRef") or {}).get("fieldPath") == "metadata.namespace":
            env[name] = namespace
        for field_name, kind in KEY_REFS.items():
            ref = source.get(field_name)
            if not isinstance(ref, dict):
                continue
            ref_name, key = str(ref.get("name")), str(ref.get("key"))
            if (kind, ref_name) not in rendered:
                rendered[kind, ref_name] = _rendered_data(resources, kind, ref_name, namespace)
            data = rendered[kind, ref_name]
            if data is None:
                outside[name] = f"{kind}/{ref_name} key {key}"
            elif key in data:
                env[name] = data[key]
    return env, outside


def _rendered_data(
    resources: dict[manifests.Key, manifests.Doc], kind: str, name: str, namespace: str
) -> dict[str, str] | None:
    """The keys of the rendered Secret or ConfigMap `name` in the release's namespace, or
    None if the render has none of that name."""
    for (found_kind, found_namespace, found_name), doc in resources.items():
        if (found_kind, found_name) != (kind, name) or found_namespace not in ("", namespace):
            continue
        if kind == "Secret":
            return _secret_data(doc)
        return {str(k): str(v) for k, v in (doc.get("data") or {}).items()}
    return None


# --- judging the answer ----------------------------------------------------------------


def judge(values: HubValues, answer: dict[str, Any]) -> StartupReport:
    report = StartupReport(values.hub, values.env)
    versions = answer.get("versions") or {}
    hub_version = f"JupyterHub {versions.get('jupyterhub', '?')}"
    if "load_error" in answer:
        report.errors.append(
            HubbotError(
                f"{hub_version} cannot load this hub's configuration: {answer['load_error']}",
                values.location(HUB_CONFIG),
            )
        )
        report.verdict = f"does not start: {answer['load_error']}"
        return report
    _judge_settings(values, answer.get("settings") or [], hub_version, report)
    login = _judge_login(values, answer.get("login") or {}, report)
    _judge_pods(values, answer.get("pods") or {}, report)
    report.verdict = f"starts; login: {login}"
    return report


def _setting(values: HubValues, trait: str, *singleuser: str) -> Location:
    """Where a KubeSpawner setting comes from: hub.config.KubeSpawner if a layer sets it
    there (it wins), else the singleuser key the chart maps to it."""
    direct = values.merged.winner((*HUB_CONFIG, "KubeSpawner", trait))
    if direct is not None:
        return Location(direct.file, direct.line)
    return values.location((*SINGLEUSER, *singleuser))


def _judge_settings(
    values: HubValues, settings: list[dict[str, Any]], hub_version: str, report: StartupReport
) -> None:
    sections_done: set[str] = set()
    for entry in settings:
        section, trait, status = entry["section"], entry["trait"], entry["status"]
        name = f"{section}.{trait}"
        where = values.location((*HUB_CONFIG, section, trait))
        package = entry.get("package", hub_version)
        if values.merged.winner((*HUB_CONFIG, section, trait)) is None:
            # No layer sets it: the jupyterhub chart's own values.yaml does.
            name += (
                f" (a default of the jupyterhub chart: `{trait}: null` under "
                f"hub.config.{section} drops it)"
            )
        if status == "unknown":
            similar = entry.get("similar") or []
            hint = f" (did you mean {', '.join(similar)}?)" if similar else ""
            report.errors.append(
                HubbotError(
                    f"`{name}` is not a setting of {section} in {package}: JupyterHub "
                    f"ignores it{hint}",
                    where,
                )
            )
        elif status == "not-configurable":
            report.errors.append(
                HubbotError(
                    f"`{name}` cannot be configured in {package}: JupyterHub ignores it", where
                )
            )
        elif status == "deprecated":
            report.warnings.append(
                HubbotError(f"`{name}` is deprecated ({package}): {entry.get('note')}", where)
            )
        elif status in ("unknown-class", "unused") and section not in sections_done:
            sections_done.add(section)
            where = values.location((*HUB_CONFIG, section))
            if status == "unknown-class":
                report.errors.append(
                    HubbotError(
                        f"`{section}` is no class of {hub_version} or of the authenticators and "
                        "spawners its hub image has: its settings are ignored",
                        where,
                    )
                )
            else:
                used = entry.get("used") or {}
                report.warnings.append(
                    HubbotError(
                        f"`{section}` settings are ignored: this hub uses "
                        f"{', '.join(used.values())}",
                        where,
                    )
                )


def _judge_login(values: HubValues, login: dict[str, Any], report: StartupReport) -> str:
    """Errors about who can log in; the verdict's login part."""
    where = values.location(AUTHENTICATOR_CLASS)
    name = str(login.get("name", "the authenticator"))
    if "error" in login:
        report.errors.append(HubbotError(f"{name} cannot be set up: {login['error']}", where))
        return f"{name} cannot be set up"
    nobody = (
        f"nobody can log in: {name} admits no one, since JupyterHub 5 denies every user "
        "unless an allow rule is set"
    )
    if login.get("kind") == "tmp":
        if not login.get("admitted"):
            report.errors.append(
                HubbotError(
                    f"{nobody} (set `Authenticator.allow_all: true` under hub.config for "
                    "temporary users)",
                    where,
                )
            )
            return "nobody can log in"
        return "a temporary user is admitted"
    verdict = _judge_oauth(values, login, name, report) if login.get("kind") == "oauth" else name
    if not login.get("any_allow_config"):
        report.errors.append(
            HubbotError(f"{nobody} (allow_all, allowed_users, allowed_organizations, ...)", where)
        )
        return "nobody can log in"
    return verdict


def _judge_oauth(values: HubValues, login: dict[str, Any], name: str, report: StartupReport) -> str:
    config = (*HUB_CONFIG, name)
    provider = OAUTH_PROVIDERS.get(name, name)
    url = str(login.get("login_url") or "")
    params = {key: found[0] for key, found in parse_qs(urlparse(url).query).items()}
    authorize = str(login.get("authorize_url") or "")
    if not url.startswith(authorize):
        report.errors.append(
            HubbotError(
                f"the login does not go to {provider} ({authorize}) but to {url}",
                values.location(config),
            )
        )
    client_id = params.get("client_id", "")
    if not client_id:
        report.errors.append(
            HubbotError(
                f"{name} has no client_id: {provider} refuses the login; register an OAuth "
                f"app with the callback {values.environment.url.rstrip('/')}/hub/oauth_callback "
                f"and put its client_id and client_secret under {'.'.join(map(str, config))} in "
                f"{layer_files(values.hub, values.env)[3]} (`hubbot secrets edit {values.hub} "
                f"{values.env}`)",
                values.location((*config, "client_id")),
            )
        )
    secret_from = login.get("client_secret_from")
    if not login.get("client_secret_set") and not secret_from:
        report.errors.append(
            HubbotError(
                f"{name} has no client_secret: {provider} sends users back, but the hub "
                "cannot exchange their code for a token, so no login completes; put the OAuth "
                f"app's client_secret under {'.'.join(map(str, config))} in "
                f"{layer_files(values.hub, values.env)[3]} (`hubbot secrets edit {values.hub} "
                f"{values.env}`)",
                values.location((*config, "client_secret")),
            )
        )
    client = f"client id {client_id}" if client_id else "no client id"
    if client_id == SECRET_SAMPLE:
        client = "client id set from secrets"
    callback = str(params.get("redirect_uri") or "")
    expected = values.environment.url.rstrip("/") + "/hub/oauth_callback"
    callback_where = values.location((*config, "oauth_callback_url"))
    if not login.get("callback_url"):
        report.warnings.append(
            HubbotError(
                f"{name}.oauth_callback_url is not set: the callback is guessed from each "
                f"request's host and scheme; set it to {expected}",
                callback_where,
            )
        )
    elif urlparse(callback).netloc != urlparse(values.environment.url).netloc:
        report.errors.append(
            HubbotError(
                f"the OAuth callback {callback} is not on this hub's host: {provider} would send "
                f"users back to another hub; use {expected} ({values.environment.location} "
                f"url {values.environment.url})",
                callback_where,
            )
        )
    orgs = login.get("allowed_organizations") or []
    who = [f"org{'s' if len(orgs) > 1 else ''} {', '.join(orgs)}"] if orgs else []
    if login.get("allow_all"):
        who = [f"any {provider} user"]
    elif login.get("allowed_users"):
        who.append(f"{len(login['allowed_users'])} allowed user(s)")
    if secret_from and not login.get("client_secret_set"):
        # Kubernetes fills it in from a Secret or ConfigMap this render lacks: its value
        # cannot be known here, only that the authenticator reads that variable.
        client += f", client secret set from {secret_from}, outside this render: not checked"
    return ", ".join([provider, *who, f"callback {callback or '(guessed)'}", client])


# --- the user pod ----------------------------------------------------------------------


def _judge_pods(values: HubValues, pods: dict[str, Any], report: StartupReport) -> None:
    if "error" in pods:
        report.errors.append(
            HubbotError(
                f"{pods.get('class', 'the spawner')} cannot build the user pod: {pods['error']}",
                values.location(SINGLEUSER),
            )
        )
        return
    manifests_by_user: dict[str, Any] = pods.get("manifests") or {}
    problems: dict[str, HubbotError] = {}  # one message per problem, not per test user
    for user, pod in manifests_by_user.items():
        for problem in _pod_problems(values, user, pod):
            problems.setdefault(problem.message, problem)
    for problem in _shared_home_problems(values, manifests_by_user):
        problems.setdefault(problem.message, problem)
    report.errors.extend(problems.values())


def _notebook(pod: dict[str, Any]) -> dict[str, Any]:
    containers = (pod.get("spec") or {}).get("containers") or []
    for container in containers:
        if container.get("name") == "notebook":
            return dict(container)
    return dict(containers[0]) if containers else {}


def _pod_problems(values: HubValues, user: str, pod: dict[str, Any]) -> Iterator[HubbotError]:
    spec = pod.get("spec") or {}
    container = _notebook(pod)
    security = container.get("securityContext") or {}
    uid = security.get("runAsUser", (spec.get("securityContext") or {}).get("runAsUser"))
    if not isinstance(uid, int) or uid == 0:
        what = "as root (uid 0)" if uid == 0 else "as whatever user the image names (no uid)"
        yield HubbotError(
            f"user pods would run {what}: set singleuser.uid to a non-root uid",
            _setting(values, "uid", "uid"),
        )
    if security.get("allowPrivilegeEscalation") is not False:
        yield HubbotError(
            "user pods would allow privilege escalation: set singleuser.allowPrivilegeEscalation "
            "to false",
            _setting(values, "allow_privilege_escalation", "allowPrivilegeEscalation"),
        )
    expected = [image for image in values.images if _is_user_image(values, image.directory)]
    if expected and container.get("image") != expected[0].reference:
        yield HubbotError(
            f"user pods would run image {container.get('image')}, not {expected[0].reference} "
            f"that hubbot computes from {expected[0].directory}",
            _setting(values, "image", "image"),
        )
    resources = container.get("resources") or {}
    requests, limits = resources.get("requests") or {}, resources.get("limits") or {}
    for resource, trait in (("cpu", "cpu_limit"), ("memory", "mem_limit")):
        if resource not in requests or resource not in limits:
            continue
        if quantity(limits[resource]) < quantity(requests[resource]):
            yield HubbotError(
                f"user pods' {resource} limit {limits[resource]} is below its guarantee "
                f"{requests[resource]}: Kubernetes refuses such pods",
                _setting(values, trait, resource, "limit"),
            )
    yield from _storage_problems(values, user, spec, container)
    account = _expected_account(values)
    if account is not None and spec.get("serviceAccountName") != account:
        yield HubbotError(
            f"user pods would run as service account {spec.get('serviceAccountName')}, not "
            f"{account} (userServiceAccount.name, the one with the IAM role)",
            _setting(values, "service_account", "serviceAccountName"),
        )


def _is_user_image(values: HubValues, directory: str) -> bool:
    return any(
        config.path == directory and config.helm_path == (*SINGLEUSER, "image")
        for config in values.deployment.images
    )


def _expected_account(values: HubValues) -> str | None:
    document = effective(values.document)
    account = (document.get("userServiceAccount") or {}).get("name")
    if account is None:
        account = (document.get("jupyterhub", {}).get("singleuser") or {}).get("serviceAccountName")
    return None if account is None else str(account)


def _claim_mounts(spec: dict[str, Any], container: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(claim name, subPath) of each mount of a persistentVolumeClaim volume."""
    claims = {
        volume.get("name"): (volume.get("persistentVolumeClaim") or {}).get("claimName")
        for volume in spec.get("volumes") or []
        if volume.get("persistentVolumeClaim")
    }
    for mount in container.get("volumeMounts") or []:
        if mount.get("name") in claims:
            yield str(claims[mount["name"]]), str(mount.get("subPath") or "")


def _storage_problems(
    values: HubValues, user: str, spec: dict[str, Any], container: dict[str, Any]
) -> Iterator[HubbotError]:
    storage = (effective(values.document).get("jupyterhub", {}).get("singleuser") or {}).get(
        "storage"
    ) or {}
    mounts = list(_claim_mounts(spec, container))
    home = effective(values.document).get("homeStorage") or {}
    if storage.get("type") == "none" or home.get("enabled") is False:
        why = "singleuser.storage.type is none"
        if home.get("enabled") is False:
            why = "homeStorage.enabled is false"
        for claim, _ in mounts:
            yield HubbotError(
                f"user pods would mount the volume claim {claim}, though {why}",
                _setting(values, "volumes", "storage", "type"),
            )
        return
    where = _setting(values, "volume_mounts", "storage", "static", "subPath")
    for claim, sub_path in mounts:
        if user in claim:
            continue  # the user's own claim
        if user not in sub_path.split("/"):
            shown = f"sub-path {sub_path!r}" if sub_path else "no sub-path (the whole volume)"
            yield HubbotError(
                f"user pods would mount the shared volume claim {claim} with {shown}, not the "
                "user's own directory: every user would see the same files",
                where,
            )


def _shared_home_problems(values: HubValues, pods: dict[str, Any]) -> Iterator[HubbotError]:
    """Two different users must not mount the same place of a shared claim."""
    seen: dict[tuple[str, str], str] = {}
    for user, pod in pods.items():
        for claim, sub_path in _claim_mounts(pod.get("spec") or {}, _notebook(pod)):
            if user in claim:
                continue
            other = seen.setdefault((claim, sub_path), user)
            if other != user:
                yield HubbotError(
                    f"users {other} and {user} would both mount {sub_path or 'all'} of the "
                    f"shared volume claim {claim}",
                    _setting(values, "volume_mounts", "storage", "static", "subPath"),
                )


QUANTITY = re.compile(r"^([0-9.]+)([a-zA-Z]*)$")
SUFFIXES = {
    "": 1.0, "m": 1e-3, "k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12,
    "Ki": 2.0**10, "Mi": 2.0**20, "Gi": 2.0**30, "Ti": 2.0**40,
}  # fmt: skip


def quantity(value: Any) -> float:
    """A Kubernetes quantity (2, 0.5, '500m', '1G', '4Gi') as a number."""
    if isinstance(value, int | float):
        return float(value)
    match = QUANTITY.match(str(value).strip())
    if match is None or match.group(2) not in SUFFIXES:
        raise HubbotError(f"the spawner produced a resource quantity it cannot read: {value}")
    return float(match.group(1)) * SUFFIXES[match.group(2)]
