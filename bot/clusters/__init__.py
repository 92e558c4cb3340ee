"""Cluster credentials: a short-lived KUBECONFIG for one run, per cluster provider.

Each provider turns a hub's `cluster:` settings into a kubeconfig document plus
the credential strings inside it (so they can be registered with the redactor).
The document never gets a name on disk: it is a sealed anonymous memory file
(memfd) that helm reads as /dev/fd/N, for the duration of one `with` block.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

from bot.errors import HubbotError, Location
from bot.hubploy import Deployment, kubeconfig_path
from bot.memfs import MemoryFile, memory_file
from bot.source import Source
from bot.values import Decryptor
from bot.yamlfile import dump_yaml


@dataclass(frozen=True)
class KubeConfig:
    document: dict[str, Any]
    secrets: tuple[str, ...]  # credential values inside the document


class ClusterProvider(Protocol):
    def kubeconfig(self) -> KubeConfig:
        """Fresh credentials for the cluster, or a HubbotError saying what to fix."""


def provider_for(
    source: Source, deployment: Deployment, decrypt: Decryptor | None
) -> ClusterProvider:
    # Imported here so a hub that uses one provider never loads the other's SDK.
    cluster = deployment.cluster
    where = Location(deployment.file, deployment.doc.line_of(("cluster", "provider")))
    if cluster["provider"] == "aws":
        from bot.clusters.eks import EksCluster

        return EksCluster(
            cluster["aws"]["cluster"],
            cluster["aws"]["region"],
            cluster["aws"]["account_id"],
            where,
        )
    file = kubeconfig_path(deployment)  # None unless the provider is `kubeconfig`
    if file is not None:
        from bot.clusters.kubeconfig import EncryptedKubeconfig

        if decrypt is None:
            raise HubbotError("the kubeconfig cluster provider needs sops keys to decrypt", where)
        return EncryptedKubeconfig(source, file, decrypt)
    raise HubbotError(f"unknown cluster provider {cluster['provider']!r}", where)


@contextmanager
def kubeconfig_file(config: KubeConfig) -> Iterator[MemoryFile]:
    """The kubeconfig as a memory file for the block only (KUBECONFIG for helm)."""
    with memory_file(dump_yaml(config.document).encode(), "kubeconfig") as file:
        yield file


def single_cluster_config(
    name: str, server: str, ca_data: str | None, user: dict[str, Any]
) -> dict[str, Any]:
    """A kubeconfig with one cluster, one user and the context joining them."""
    cluster: dict[str, Any] = {"server": server}
    if ca_data:
        cluster["certificate-authority-data"] = ca_data
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": name, "cluster": cluster}],
        "users": [{"name": "hubbot", "user": user}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": "hubbot"}}],
        "current-context": name,
        "preferences": {},
    }
