"""A new hub copied from an existing one, with everything that must be its own made fresh.

`prepare` reads the repository and builds every file of the new hub in
memory; nothing is written until all of it is known to be good. Then `write`
puts the hub's directory into place in one rename and updates infra/.

What the copy changes, and how (README "Adding a hub"):

- each environment's namespace and release become `<name>-<env>`;
- each hostname is derived from the source hub's: the labels the source's
  environments share (`tess.omgwtf.in` for staging.tess.omgwtf.in and
  tess.omgwtf.in) are the hub's domain, the rest (`staging.`) the environment's
  prefix. The new hub's domain is `--domain`, else the source's domain with
  the new hub's label in place of the source's label when the domain starts
  with it (private.tess.omgwtf.in -> workshop.tess.omgwtf.in), or in front of
  it otherwise (tess.omgwtf.in -> workshop.tess.omgwtf.in). The label is the
  new name less the dash-separated words it shares at the front with the
  source's name (tess-workshop from tess-public: `workshop`). Every copy of an
  old hostname in the config files is replaced;
- images keep pointing at the same image directories (one image, one tag);
- the secrets hold fresh random tokens for the keys the chart needs random,
  encrypted for each environment's creation rule in .sops.yaml. Other secrets
  (an OAuth client) cannot be made here: they are left out and listed.
"""

from __future__ import annotations

import posixpath
import re
import secrets
import shutil
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ruamel.yaml.comments import CommentedMap, CommentedSeq

from bot import infra, sops_config, validation
from bot.errors import HubbotError, Location
from bot.hubploy import DEPLOYMENTS, Deployment, discover_hubs, load_deployment
from bot.merge import effective
from bot.sops_format import SecretLeaf, read_shape
from bot.source import Source, WorkTree
from bot.values import build, layer_files
from bot.yamlfile import Path_, dump_yaml, edit_yaml

# The new hub's releases and namespaces are named `<name>-<env>` after it: a lowercase DNS
# label, short enough for helm (an existing hub's name is freer: bot.hubploy.HUB_NAME).
DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
RELEASE_MAX = 53  # helm's limit on a release name (the namespace's is 63)
HOSTNAME = re.compile(r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?\.)+[a-z]([-a-z0-9]*[a-z0-9])?$")
# Values the chart needs to be random and secret; made fresh for every hub.
RANDOM_SECRETS: tuple[Path_, ...] = (
    ("jupyterhub", "proxy", "secretToken"),
    ("jupyterhub", "hub", "cookieSecret"),
)
TOKEN_BYTES = 32
OAUTH_AUTHENTICATORS = ("github", "generic-oauth", "oauthenticator")

# Encrypts a plaintext YAML document for the creation rule of a repo path.
Encrypt = Callable[[str, str], str]


@dataclass(frozen=True)
class NewEnvironment:
    name: str
    namespace: str
    release: str
    url: str


@dataclass(frozen=True)
class AccessPoint:
    """An EFS access point the copy still shares with the source hub."""

    env: str
    value: str
    location: Location


@dataclass(frozen=True)
class NewHub:
    name: str
    source: str
    environments: tuple[NewEnvironment, ...]
    files: dict[str, str]  # repo path -> text, every file of deployments/<name>/
    infra_file: str | None  # the infra/ file whose hub_namespaces list grew
    infra_text: str | None
    left_out: dict[str, tuple[str, ...]]  # env -> secret keys of the source not copied
    oauth: bool
    access_points: tuple[AccessPoint, ...]
    home_storage: bool
    images: tuple[str, ...]  # the image directories the new hub shares
    not_copied: tuple[str, ...] = field(default=())  # other files of the source hub


def name_problem(name: str, envs: Iterable[str]) -> str | None:
    """What is wrong with new hub name `name` (environments `envs`), or None if it is valid."""
    longest = max((len(f"-{env}") for env in envs), default=0)
    limit = RELEASE_MAX - longest
    if DNS_LABEL.fullmatch(name) and len(name) <= limit:
        return None
    return (
        "use lowercase letters, digits and `-`, starting and ending with a letter or digit, at "
        f"most {limit} characters (its release names `<name>-<env>` must fit helm's "
        f"{RELEASE_MAX})"
    )


def prepare(
    source: WorkTree, name: str, from_hub: str, domain: str | None, encrypt: Encrypt
) -> NewHub:
    """Every file of hub `name` copied from `from_hub`, or an error; nothing is written."""
    original = load_deployment(source, from_hub)
    envs = list(original.environments)
    problem = name_problem(name, envs)
    if problem is not None:
        raise HubbotError(f"hub name {name!r} is not valid: {problem}")
    if (source.root / DEPLOYMENTS / name).exists() or source.children(f"{DEPLOYMENTS}/{name}"):
        raise HubbotError("already exists: choose another name", Location(f"{DEPLOYMENTS}/{name}"))
    if domain is not None and not HOSTNAME.match(domain):
        raise HubbotError(f"--domain {domain!r} is not a hostname such as hubs.example.org")
    hosts = _hosts(original, name, domain)
    environments = tuple(
        NewEnvironment(
            env,
            f"{name}-{env}",
            f"{name}-{env}",
            _with_host(original.environments[env].url, hosts[env]),
        )
        for env in envs
    )
    _refuse_clashes(source, environments)
    old_to_new = {
        urlsplit(original.environments[env].url).hostname or "": hosts[env] for env in envs
    }
    base = f"{DEPLOYMENTS}/{name}"
    files = {f"{base}/hubploy.yaml": _hubploy(source, original, name, environments)}
    source_base = f"{DEPLOYMENTS}/{from_hub}"
    for config in source.children(f"{source_base}/config"):
        path = f"{source_base}/config/{config}"
        text = source.read(path)
        if text is not None:
            files[f"{base}/config/{config}"] = edit_yaml(
                path, text, lambda doc: _adapt_config(doc, old_to_new, from_hub, name)
            )
    rules = _creation_rules(source)
    left_out: dict[str, tuple[str, ...]] = {}
    for env in envs:
        secrets_file = layer_files(from_hub, env)[3]
        text = source.read(secrets_file)
        copied = [] if text is None else _secret_paths(read_shape(secrets_file, text).data)
        left_out[env] = tuple(
            ".".join(map(str, path)) for path in copied if path not in RANDOM_SECRETS
        )
        target = layer_files(name, env)[3]
        if sops_config.rule_for(rules, target) is None:
            raise HubbotError(
                f"no creation rule matches {target}: add one for {env}, or widen its "
                "path_regex, so the new secrets can be encrypted",
                Location(sops_config.CONFIG_FILE),
            )
        files[target] = encrypt(target, _fresh_secrets())
    shared = {image.path for image in original.images}
    handled = {"hubploy.yaml", "config", "secrets"}
    not_copied = tuple(
        f"{source_base}/{entry}"
        for entry in source.children(source_base)
        if entry not in handled
        and f"{source_base}/{entry}" not in shared
        and not any(path.startswith(f"{source_base}/{entry}/") for path in shared)
    )
    infra_file, infra_text = _infra_update(source, [e.namespace for e in environments])
    oauth, home, points = _features(source, original, name, files)
    _check(Overlay(source, files, infra_file, infra_text), name)
    return NewHub(
        name=name,
        source=from_hub,
        environments=environments,
        files=files,
        infra_file=infra_file,
        infra_text=infra_text,
        left_out=left_out,
        oauth=oauth,
        access_points=points,
        home_storage=home,
        images=tuple(sorted(shared)),
        not_copied=not_copied,
    )


def _creation_rules(source: Source) -> list[sops_config.CreationRule]:
    text = source.read(sops_config.CONFIG_FILE)
    if text is None:
        raise HubbotError(
            "missing: it names the keys each secrets file is encrypted for",
            Location(sops_config.CONFIG_FILE),
        )
    return sops_config.parse_config(text)


@dataclass
class Overlay:
    """The work tree as it will be once the new hub is written (a bot.source.Source)."""

    base: WorkTree
    files: dict[str, str]
    infra_file: str | None
    infra_text: str | None
    label: str = "working tree"
    memo: dict[Any, Any] = field(default_factory=dict, repr=False)
    root: Path = field(init=False)

    def __post_init__(self) -> None:
        self.root = self.base.root

    def read(self, path: str) -> str | None:
        if path in self.files:
            return self.files[path]
        if path == self.infra_file:
            return self.infra_text
        return self.base.read(path)

    def is_file(self, path: str) -> bool:
        return path in self.files or path == self.infra_file or self.base.is_file(path)

    def children(self, path: str) -> list[str]:
        prefix = path.rstrip("/") + "/"
        new = {
            name[len(prefix) :].split("/", 1)[0] for name in self.files if name.startswith(prefix)
        }
        return sorted(new | set(self.base.children(path)))

    def tree_hash(self, path: str) -> str | None:
        return self.base.tree_hash(path)  # image directories are shared, never new


def _check(after: Overlay, name: str) -> None:
    """What `hubbot validate --no-startup` would say about the new hub, before writing it."""
    problems: list[HubbotError] = []
    try:
        for env in load_deployment(after, name).environments:
            problems += validation.check(after, build(after, name, env))
        problems += infra.cross_check(after, [name])
    except HubbotError as exc:
        problems.append(exc)
    if problems:
        raise HubbotError(
            "the copy would not validate, so nothing was written: "
            + "; ".join(str(problem) for problem in problems)
        )


# --- names and hostnames --------------------------------------------------------------------


def label_for(name: str, from_hub: str) -> str:
    """`name` less the dash-separated words it shares at the front with `from_hub`."""
    mine, theirs = name.split("-"), from_hub.split("-")
    shared = 0
    while shared < min(len(mine), len(theirs)) and mine[shared] == theirs[shared]:
        shared += 1
    rest = mine[shared:]
    return "-".join(rest) if rest else name


def _hosts(original: Deployment, name: str, domain: str | None) -> dict[str, str]:
    """The new hostname of each environment (module docstring)."""
    old = {
        env: urlsplit(config.url).hostname or "" for env, config in original.environments.items()
    }
    labels = [host.split(".") for host in old.values()]
    common = 0
    while (
        all(len(parts) > common for parts in labels)
        and len({tuple(parts[len(parts) - common - 1 :]) for parts in labels}) == 1
    ):
        common += 1
    old_domain = ".".join(labels[0][len(labels[0]) - common :])
    if domain is None:
        label = label_for(name, original.hub)
        old_label = label_for(original.hub, name)
        first, _, rest = old_domain.partition(".")
        domain = f"{label}.{rest}" if first == old_label and rest else f"{label}.{old_domain}"
    return {
        env: ".".join([*host.split(".")[: len(host.split(".")) - common], domain])
        for env, host in old.items()
    }


def _with_host(url: str, host: str) -> str:
    parts = urlsplit(url)
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}"


def _refuse_clashes(source: Source, environments: tuple[NewEnvironment, ...]) -> None:
    """The new releases, namespaces and hostnames must be no other hub's."""
    for hub in discover_hubs(source):
        try:
            other = load_deployment(source, hub)
        except HubbotError:
            continue  # `hubbot validate` reports that hub
        for theirs in other.environments.values():
            for mine in environments:
                for what, new, old in (
                    ("release", mine.release, theirs.release),
                    ("namespace", mine.namespace, theirs.namespace),
                    ("hostname", urlsplit(mine.url).hostname, urlsplit(theirs.url).hostname),
                ):
                    if new == old:
                        raise HubbotError(
                            f"the new hub's {mine.name} {what} {new} is already used by "
                            f"{hub}/{theirs.name}: choose another name"
                            + (" or --domain" if what == "hostname" else ""),
                            theirs.location,
                        )


def _adapt_config(doc: Any, old_to_new: dict[str, str], from_hub: str, name: str) -> None:
    _replace_hosts(doc, old_to_new)
    storage = doc.get("homeStorage") if isinstance(doc, CommentedMap) else None
    if isinstance(storage, CommentedMap) and storage.get("efsAccessPointId"):
        note = f"# {from_hub}'s: replace with {name}'s own (see README \"Adding a hub\")"
        after = storage.ca.items.get("efsAccessPointId", [None, None, None, None])[2]
        if after is not None and not after.value.strip():
            after.value = f" {note}{after.value}"  # keeps the blank lines that follow
        else:
            storage.yaml_add_eol_comment(note, "efsAccessPointId")


def _replace_hosts(node: Any, old_to_new: dict[str, str]) -> None:
    """Replace every old hostname in the string values below `node`, in place."""
    pattern = re.compile(
        r"(?<![\w.-])("
        + "|".join(re.escape(h) for h in sorted(old_to_new, key=len, reverse=True) if h)
        + r")(?![\w-]|\.\w)"
    )

    def fixed(value: Any) -> Any:
        if not isinstance(value, str):
            return value
        replaced = pattern.sub(lambda found: old_to_new[found[1]], value)
        # ruamel's string classes carry the quoting style: keep it.
        return value if replaced == value else type(value)(replaced)

    for container, key, value in _items(node):
        if isinstance(value, CommentedMap | CommentedSeq):
            _replace_hosts(value, old_to_new)
        else:
            container[key] = fixed(value)


def _items(node: Any) -> Iterator[tuple[Any, Any, Any]]:
    if isinstance(node, CommentedMap):
        yield from ((node, key, value) for key, value in list(node.items()))
    elif isinstance(node, CommentedSeq):
        yield from ((node, index, value) for index, value in enumerate(list(node)))


# --- files ----------------------------------------------------------------------------------


def _hubploy(
    source: Source, original: Deployment, name: str, environments: tuple[NewEnvironment, ...]
) -> str:
    text = source.read(original.file) or ""
    base = f"{DEPLOYMENTS}/{name}"

    def change(doc: Any) -> None:
        for item, image in zip(doc["images"], original.images, strict=True):
            relative = posixpath.relpath(image.path, base)
            item["path"] = type(item["path"])(relative)
        for env in environments:
            settings = doc["environments"][env.name]
            settings["namespace"] = env.namespace
            settings["release"] = env.release
            settings["url"] = env.url

    edited = edit_yaml(original.file, text, change)
    # The file's opening comment names the hub it describes.
    first, newline, rest = edited.partition("\n")
    if first.startswith(f"# {original.hub}:"):
        first = f"# {name} (copied from {original.hub}):" + first[len(f"# {original.hub}:") :]
    return first + newline + rest


def _secret_paths(node: Any, path: Path_ = ()) -> list[Path_]:
    if isinstance(node, dict):
        return [p for key, value in node.items() for p in _secret_paths(value, (*path, key))]
    if isinstance(node, SecretLeaf) or node not in (None, ""):
        return [path]
    return []


def _fresh_secrets() -> str:
    document: dict[str, Any] = {}
    for path in RANDOM_SECRETS:
        here = document
        for key in path[:-1]:
            here = here.setdefault(str(key), {})
        here[str(path[-1])] = secrets.token_hex(TOKEN_BYTES)
    return dump_yaml(document)


def _features(
    source: Source, original: Deployment, name: str, files: dict[str, str]
) -> tuple[bool, bool, tuple[AccessPoint, ...]]:
    """Whether the hub logs in through OAuth or keeps homes on EFS, and the access points
    its environment files copied from the source."""
    oauth = home = False
    points = []
    for env in original.environments:
        values = build(source, original.hub, env)
        document = effective(values.document)
        hub_config = document.get("jupyterhub", {}).get("hub", {}).get("config", {})
        authenticator = str(hub_config.get("JupyterHub", {}).get("authenticator_class", ""))
        oauth |= any(kind in authenticator.lower() for kind in OAUTH_AUTHENTICATORS)
        storage = document.get("homeStorage", {})
        if storage.get("enabled") is True:
            home = True
            winner = values.merged.winner(("homeStorage", "efsAccessPointId"))
            if winner is not None and storage.get("efsAccessPointId"):
                copied = winner.file.replace(
                    f"{DEPLOYMENTS}/{original.hub}/", f"{DEPLOYMENTS}/{name}/", 1
                )
                if copied in files:
                    points.append(
                        AccessPoint(env, storage["efsAccessPointId"], Location(copied, winner.line))
                    )
    return oauth, home, tuple(points)


def _infra_update(source: Source, namespaces: list[str]) -> tuple[str | None, str | None]:
    """infra/'s hub_namespaces list with `namespaces` added (None without infra/)."""
    if not infra.has_infra(source):
        return None, None
    fact = infra.read_facts(source).hub_namespaces
    file, line = fact.location.file, fact.location.line or 1
    text = source.read(file) or ""
    lines = text.splitlines(keepends=True)
    start = sum(len(one) for one in lines[: line - 1])
    opening = text.find("[", start)
    closing = text.find("]", opening)
    if opening < 0 or closing < 0:
        raise HubbotError(
            "hub_namespaces is not written as a list literal: add the new namespaces "
            + ", ".join(namespaces)
            + " by hand",
            fact.location,
        )
    inside = text[opening + 1 : closing]
    added = ", ".join(f'"{namespace}"' for namespace in namespaces)
    if "\n" in inside:
        indent = re.search(r"\n([ \t]*)\S", inside)
        pad = indent[1] if indent else "  "
        body = inside.rstrip()
        separator = "" if body.endswith(",") or not body.strip() else ","
        tail = inside[len(body) :]
        new_inside = body + separator + "".join(f'\n{pad}"{n}",' for n in namespaces) + tail
    else:
        new_inside = f"{inside}, {added}" if inside.strip() else added
    return file, text[: opening + 1] + new_inside + text[closing:]


# --- writing --------------------------------------------------------------------------------


def write(repo: Path, new: NewHub) -> None:
    """The new hub's directory appears in one rename; then infra/ is updated."""
    target = repo / DEPLOYMENTS / new.name
    staging = repo / DEPLOYMENTS / f".{new.name}.hubbot-new"
    if staging.exists():
        shutil.rmtree(staging)
    try:
        for path, text in new.files.items():
            relative = Path(path).relative_to(f"{DEPLOYMENTS}/{new.name}")
            out = staging / relative
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(text)
        infra_partial = None
        if new.infra_file is not None and new.infra_text is not None:
            infra_partial = repo / f"{new.infra_file}.hubbot-new"
            infra_partial.write_text(new.infra_text)
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if infra_partial is not None and new.infra_file is not None:
        infra_partial.replace(repo / new.infra_file)


# --- what the operator does next --------------------------------------------------------------


def summary(new: NewHub) -> list[str]:
    """What was written."""
    lines = [f"created {DEPLOYMENTS}/{new.name} from {new.source}:"]
    for env in new.environments:
        lines.append(f"  {env.name:<8} namespace {env.namespace}, release {env.release}, {env.url}")
    lines.append(
        f"  images: the same directory as {new.source} ({', '.join(new.images)}): "
        "one image, one tag"
    )
    lines.append(
        "  secrets: a fresh random "
        + " and ".join(".".join(map(str, path)) for path in RANDOM_SECRETS)
        + " per environment, encrypted for its creation rule in .sops.yaml"
    )
    if new.infra_file is not None:
        lines.append(
            f"updated {new.infra_file}: hub_namespaces += "
            + ", ".join(env.namespace for env in new.environments)
        )
    for path in new.not_copied:
        lines.append(f"not copied: {path} (copy it by hand if the new hub needs it)")
    return lines


def checklist(new: NewHub) -> list[str]:
    """The operator's steps, in order, before the new hub serves anyone."""
    steps: list[str] = []
    if new.infra_file is not None:
        steps.append(
            f'terraform apply in infra/ (see README "Infrastructure"): {new.infra_file}\'s '
            "hub_namespaces gained "
            + ", ".join(env.namespace for env in new.environments)
            + ", so the user pods' data role trusts their service accounts"
        )
    steps.append(
        "DNS: point "
        + ", ".join(urlsplit(env.url).hostname or env.url for env in new.environments)
        + " at the hub's proxy load balancer (after the first deploy of each environment: "
        + "; ".join(f"kubectl -n {env.namespace} get svc proxy-public" for env in new.environments)
        + ")"
    )
    left = {env: keys for env, keys in new.left_out.items() if keys}
    if new.oauth:
        steps.append(
            "OAuth app: register one per environment (the source hub's client cannot be "
            "reused) with the callback URLs "
            + ", ".join(f"{env.url}/hub/oauth_callback" for env in new.environments)
        )
    if left:
        for env_name, keys in left.items():
            steps.append(
                f"secrets not copied from {new.source}/{env_name} (they cannot be made here): "
                + ", ".join(keys)
                + f"; add them with `hubbot secrets edit {new.name} {env_name}`"
            )
    if new.home_storage:
        shared = {point.env: point for point in new.access_points}
        for env in new.environments:
            point = shared.get(env.name)
            where = (
                f"; {point.location} still names {new.source}'s {point.value}: replace it, "
                f"or {new.name}'s users share {new.source}'s home directories"
                if point is not None
                else ""
            )
            steps.append(
                f"EFS access point for {new.name}/{env.name} (infra/storage.tf makes one per "
                f"environment; root it at a directory of its own, e.g. /homes/{new.name}/"
                f"{env.name}), its id into homeStorage.efsAccessPointId{where}"
            )
    steps.append("make check, then commit and open a pull request to staging")
    return [f"  {number}. {step}" for number, step in enumerate(steps, 1)]
