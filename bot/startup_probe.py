"""The start-up probe: runs inside the hub's own virtualenv, never imported by the bot.

bot/jupyterhub_runtime.py runs it with that virtualenv's python: JSON in on
stdin, JSON out on stdout. It lays out in its working directory what the hub
pod has at /usr/local/etc/jupyterhub (the hub ConfigMap's keys, the hub
Secret's keys), loads the chart's jupyterhub_config.py into a real JupyterHub
application, and asks the real classes what they would do with it:

- settings: every configured class and trait, known, deprecated or unknown;
- login: what the configured authenticator does for a fresh visitor;
- pods: the pod manifest KubeSpawner builds for test users (no cluster needed).

It reports facts; the bot (bot/startup.py) judges them. Only the standard
library and the hub's own packages are imported here.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import importlib.metadata
import json
import os
import re
import sys
import traceback
from pathlib import Path
from types import SimpleNamespace
from typing import Any

CHART_CONFIG_DIR = "/usr/local/etc/jupyterhub"
PACKAGES = ("jupyterhub", "jupyterhub-kubespawner", "oauthenticator", "jupyterhub-tmpauthenticator")
# KubeSpawner loads a kubeconfig when it is constructed, but building a pod manifest
# never calls the API: this one names a server nobody listens on.
KUBECONFIG = """\
apiVersion: v1
kind: Config
clusters: [{name: probe, cluster: {server: "https://127.0.0.1:9"}}]
users: [{name: probe, user: {token: probe}}]
contexts: [{name: probe, context: {cluster: probe, user: probe}}]
current-context: probe
"""


def main() -> int:
    batch = json.load(sys.stdin)["batch"]
    # The hub config prints what it loads: keep stdout for the one JSON answer.
    # kubernetes_asyncio reads KUBECONFIG when imported: set before the preload.
    (Path.cwd() / "kubeconfig").write_text(KUBECONFIG)
    os.environ["KUBECONFIG"] = str(Path.cwd() / "kubeconfig")
    with contextlib.redirect_stdout(sys.stderr):
        preload()
        answers = [isolated(request, Path.cwd() / f"pair-{n}") for n, request in enumerate(batch)]
    json.dump(answers, sys.stdout)
    return 0


def preload() -> None:
    """Import once what every pair's hub config needs: each pair then runs in a fork."""
    # jsonschema imports rfc3987-syntax, when installed, for its "iri" format check, and
    # that import builds a parser from a grammar: 0.7 of the 2 CPU s JupyterHub's imports
    # take. Only jupyter_events' event validation could use it, and the probe sends no
    # events: without the module, jsonschema leaves that one format unchecked.
    sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[arg-type]
    import jupyterhub.app  # noqa: F401
    import kubernetes_asyncio.client  # noqa: F401
    import kubespawner  # noqa: F401
    import tornado.curl_httpclient  # noqa: F401

    for optional in ("oauthenticator.github", "oauthenticator.generic", "tmpauthenticator"):
        with contextlib.suppress(ImportError):
            importlib.import_module(optional)


def isolated(request: dict[str, Any], workdir: Path) -> dict[str, Any]:
    """probe() in a forked child: one pair's config, environment and class state never
    reach the next pair's."""
    workdir.mkdir()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        try:
            data = json.dumps(probe(request, workdir))
        except BaseException as exc:  # the child reports whatever stopped it
            data = json.dumps({"load_error": failure(exc)})
        with os.fdopen(write, "w") as out:
            out.write(data)
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as answer:
        data = answer.read()
    os.waitpid(pid, 0)
    return json.loads(data) if data else {"load_error": "the probe of this pair died"}


def probe(request: dict[str, Any], workdir: Path) -> dict[str, Any]:
    config_dir = workdir / "etc-jupyterhub"
    lay_out(config_dir, request["files"])
    (workdir / "kubeconfig").write_text(KUBECONFIG)
    os.environ["KUBECONFIG"] = str(workdir / "kubeconfig")
    os.environ.update(request["env"])
    answer: dict[str, Any] = {"versions": versions()}
    try:
        app = load_hub(config_dir)
    except Exception as exc:  # the hub would not start: report why
        answer["load_error"] = failure(exc)
        return answer
    answer["settings"] = settings(app)
    answer["login"] = login(app, request.get("env_outside") or {})
    answer["pods"] = pods(app, request["users"])
    return answer


def lay_out(config_dir: Path, files: dict[str, str]) -> None:
    """The pod's /usr/local/etc/jupyterhub, with the chart's files pointed at this copy."""
    for name, text in files.items():
        path = config_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if name in ("jupyterhub_config.py", "z2jh.py"):
            text = text.replace(CHART_CONFIG_DIR, str(config_dir))
        path.write_text(text)


def versions() -> dict[str, str]:
    found = {}
    for name in PACKAGES:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            found[name] = importlib.metadata.version(name)
    return found


def failure(exc: BaseException) -> str:
    """One line: the exception, and where in the hub config it was raised if there."""
    where = ""
    for frame in traceback.extract_tb(exc.__traceback__):
        if frame.filename.endswith(("jupyterhub_config.py", "z2jh.py")):
            where = f" ({Path(frame.filename).name} line {frame.lineno})"
    return f"{type(exc).__name__}: {exc}{where}"


def load_hub(config_dir: Path) -> Any:
    from jupyterhub.app import JupyterHub

    app = JupyterHub()
    app.raise_config_file_errors = True  # a broken config stops the hub; say so here too
    app.load_config_file(str(config_dir / "jupyterhub_config.py"))
    return app


# --- settings --------------------------------------------------------------------------


def settings(app: Any) -> list[dict[str, Any]]:
    """Every configured class and trait, with what the installed classes make of it."""
    from jupyterhub.crypto import CryptKeeper

    used = [type(app), app.authenticator_class, app.spawner_class, app.proxy_class, CryptKeeper]
    in_use = {cls.__name__: cls for top in used for cls in top.mro() if _configurable(cls)}
    installed = {cls.__name__: cls for top in app.classes for cls in top.mro()}
    installed = {name: cls for name, cls in installed.items() if _configurable(cls)}
    found = []
    for section, traits in app.config.items():
        if not isinstance(traits, dict) or not section[:1].isupper():
            continue
        cls = in_use.get(section) or installed.get(section)
        for trait in traits:
            entry = {"section": section, "trait": trait}
            if cls is None:
                entry.update(status="unknown-class")
            else:
                entry.update(_trait_status(cls, trait))
                if section not in in_use and entry["status"] == "ok":
                    entry.update(status="unused", used=_used_names(app))
            found.append(entry)
    return found


def _configurable(cls: type) -> bool:
    from traitlets.config import Configurable

    return isinstance(cls, type) and issubclass(cls, Configurable) and cls is not Configurable


def _used_names(app: Any) -> dict[str, str]:
    return {
        "authenticator": app.authenticator_class.__name__,
        "spawner": app.spawner_class.__name__,
        "proxy": app.proxy_class.__name__,
    }


def _trait_status(cls: type, name: str) -> dict[str, Any]:
    traits = cls.class_traits(config=True)  # type: ignore[attr-defined]
    package = _package_of(cls)
    alias = _deprecated_alias(cls, name)
    if name not in traits:
        if alias is not None:
            return {"status": "deprecated", "note": alias, "package": package}
        other = cls.class_traits()  # type: ignore[attr-defined]
        status = "not-configurable" if name in other else "unknown"
        return {"status": status, "package": package, "similar": _similar(name, traits)}
    help_text = traits[name].help or ""
    note = alias or _deprecation_note(help_text)
    if note is not None:
        return {"status": "deprecated", "note": note, "package": package}
    return {"status": "ok"}


def _deprecated_alias(cls: type, name: str) -> str | None:
    """jupyterhub's `_deprecated_aliases` and oauthenticator's `_deprecated_oauth_aliases`."""
    for klass in cls.mro():
        for attr, aliases in vars(klass).items():
            if not (attr.startswith("_deprecated") and attr.endswith("aliases")):
                continue
            if isinstance(aliases, dict) and name in aliases:
                new, version, *_ = aliases[name]
                return f"deprecated since {version}: use {cls.__name__}.{new}"
    return None


DEPRECATED_HELP = re.compile(r"^\s*deprecated\b|\.\. deprecated::", re.IGNORECASE | re.MULTILINE)


def _deprecation_note(help_text: str) -> str | None:
    """Traits that say so in their help: 'DEPRECATED since version 2.0.0.' and the like."""
    match = DEPRECATED_HELP.search(help_text)
    if match is None:
        return None
    words = " ".join(help_text[match.start() :].split())
    return words if len(words) <= 200 else words[:200].rsplit(" ", 1)[0] + " ..."


def _package_of(cls: type) -> str:
    module = cls.__module__.split(".")[0]
    names = {"jupyterhub": "jupyterhub", "kubespawner": "jupyterhub-kubespawner"}
    names |= {"oauthenticator": "oauthenticator", "tmpauthenticator": "jupyterhub-tmpauthenticator"}
    name = names.get(module, module)
    with contextlib.suppress(importlib.metadata.PackageNotFoundError):
        return f"{name} {importlib.metadata.version(name)}"
    return name


def _similar(name: str, traits: dict[str, Any]) -> list[str]:
    import difflib

    return difflib.get_close_matches(name, list(traits), n=3, cutoff=0.7)


# --- login -----------------------------------------------------------------------------


def login(app: Any, outside: dict[str, str]) -> dict[str, Any]:
    """What the configured authenticator does for a fresh visitor.

    `outside`: the hub's variables Kubernetes sets from a Secret or ConfigMap the render
    lacks, each with where from; the probe's environment does not have them."""
    cls = app.authenticator_class
    result: dict[str, Any] = {"class": f"{cls.__module__}.{cls.__name__}", "name": cls.__name__}
    try:
        authenticator = cls(parent=app)
        result["any_allow_config"] = bool(authenticator.any_allow_config)
        result["allow_all"] = bool(authenticator.allow_all)
        if hasattr(authenticator, "authorize_url"):
            result.update(kind="oauth", **_oauth_login(authenticator))
            if not result["client_secret_set"]:
                result["client_secret_from"] = _client_secret_from(app, outside)
        elif cls.__name__ == "TmpAuthenticator":
            result.update(kind="tmp", **_fresh_login(authenticator))
        else:
            result.update(kind="other")
    except Exception as exc:
        result["error"] = failure(exc)
    return result


def _fresh_login(authenticator: Any) -> dict[str, Any]:
    """/hub/tmplogin: the handler logs in with no form data, through get_authenticated_user."""
    authenticated = asyncio.run(authenticator.get_authenticated_user(None, None))
    if authenticated is None:
        return {"admitted": False}
    return {"admitted": True, "user": authenticated["name"], "admin": bool(authenticated["admin"])}


def _oauth_login(authenticator: Any) -> dict[str, Any]:
    """Where /hub/oauth_login sends a visitor: the real login handler's redirect."""
    from tornado.httputil import HTTPHeaders, HTTPServerRequest

    handler_cls = authenticator.login_handler
    handler = handler_cls.__new__(handler_cls)
    handler.application = SimpleNamespace(settings={"authenticator": authenticator})
    handler.request = HTTPServerRequest(
        method="GET", uri="/hub/oauth_login", headers=HTTPHeaders(), host="hub.invalid"
    )
    redirects: list[str] = []
    handler.redirect = redirects.append
    handler.set_state_cookie = lambda _value: None
    handler.get()
    return {
        "login_url": redirects[0] if redirects else None,
        "authorize_url": authenticator.authorize_url,
        "client_id": authenticator.client_id,
        "client_secret_set": bool(authenticator.client_secret),  # never the value
        "callback_url": authenticator.oauth_callback_url,
        "scope": list(authenticator.scope),
        "allowed_organizations": sorted(getattr(authenticator, "allowed_organizations", [])),
        "allowed_users": sorted(authenticator.allowed_users),
    }


def _client_secret_from(app: Any, outside: dict[str, str]) -> str | None:
    """Where an unset client_secret would come from in the pod: the `outside` entry of the
    variable the authenticator reads it from (e.g. GITHUB_CLIENT_SECRET, then
    OAUTH_CLIENT_SECRET), or None. A second authenticator is made with a stand-in value
    in each such variable, so the real class decides which it reads, and whether the
    config's own client_secret overrides them."""
    if not outside:
        return None
    stand_ins = {f"hubbot-probe-stand-in-for-{name}": name for name in outside}
    saved = {name: os.environ.get(name) for name in outside}
    os.environ.update({name: stand_in for stand_in, name in stand_ins.items()})
    try:
        read = app.authenticator_class(parent=app).client_secret
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    variable = stand_ins.get(read)
    return None if variable is None else outside[variable]


# --- the user pod ----------------------------------------------------------------------


def pods(app: Any, users: list[str]) -> dict[str, Any]:
    """The pod manifest the configured spawner builds for each test user."""
    spawner_cls = app.spawner_class
    result: dict[str, Any] = {"class": f"{spawner_cls.__module__}.{spawner_cls.__name__}"}
    manifests = {}
    try:
        for number, name in enumerate(users, start=1):
            manifests[name] = asyncio.run(_pod_manifest(app, spawner_cls, name, number))
    except Exception as exc:
        result["error"] = failure(exc)
    result["manifests"] = manifests
    return result


async def _pod_manifest(app: Any, spawner_cls: Any, name: str, number: int) -> Any:
    from kubernetes_asyncio.client import ApiClient

    user = SimpleNamespace(name=name, id=number, url=f"/user/{name}/")
    hub = SimpleNamespace(
        public_host="",
        url="http://hub:8081/hub/",
        base_url="/hub/",
        api_url="http://hub:8081/hub/api",
    )
    # _mock: KubeSpawner's own flag for running without a hub process (its tests use it).
    spawner = spawner_cls(parent=app, user=user, hub=hub, _mock=True)
    spawner.api_token = "probe-token"  # noqa: S105 (not a secret: a stand-in the pod env shows)
    pod = await spawner.get_pod_manifest()
    async with ApiClient() as client:
        return client.sanitize_for_serialization(pod)


if __name__ == "__main__":
    sys.exit(main())
