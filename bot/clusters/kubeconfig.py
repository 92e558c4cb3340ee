"""A cluster reached through a sops-encrypted kubeconfig kept in the repository."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from bot.clusters import KubeConfig
from bot.errors import HubbotError, Location
from bot.source import Source
from bot.values import Decryptor
from bot.yamlfile import Path_

# Kubeconfig fields that hold credentials, wherever they appear.
CREDENTIAL_KEYS = frozenset(
    {"token", "password", "client-key-data", "client-certificate-data", "id-token",
     "refresh-token", "client-secret"}
)


@dataclass(frozen=True)
class EncryptedKubeconfig:
    source: Source
    file: str
    decrypt: Decryptor

    def kubeconfig(self) -> KubeConfig:
        text = self.source.read(self.file)
        if text is None:
            raise HubbotError(
                "the sops-encrypted kubeconfig named by cluster.kubeconfig.file is missing",
                Location(self.file),
            )
        document = self.decrypt(self.file, text)
        if not isinstance(document, dict) or not document.get("clusters"):
            raise HubbotError("not a kubeconfig: it has no `clusters`", Location(self.file))
        credentials = {value for _, value in credential_leaves(document)}
        return KubeConfig(document, tuple(sorted(credentials)))


def credential_leaves(node: Any, path: Path_ = ()) -> Iterator[tuple[Path_, str]]:
    """The credentials in a kubeconfig, with their paths: only these are secret.

    A credential key's value anywhere, and the environment an `exec` plugin is given
    (where AWS or cloud keys travel); names, servers and the rest are structure.
    """
    if isinstance(node, dict):
        for key, value in node.items():
            if key in CREDENTIAL_KEYS and isinstance(value, str) and value:
                yield (*path, key), value
            elif key == "exec" and isinstance(value, dict):
                yield from _exec_environment(value.get("env"), (*path, key, "env"))
            else:
                yield from credential_leaves(value, (*path, key))
    elif isinstance(node, list):
        for index, item in enumerate(node):
            yield from credential_leaves(item, (*path, index))


def _exec_environment(env: Any, path: Path_) -> Iterator[tuple[Path_, str]]:
    for index, variable in enumerate(env if isinstance(env, list) else []):
        value = variable.get("value") if isinstance(variable, dict) else None
        if isinstance(value, str) and value:
            yield (*path, index, "value"), value
