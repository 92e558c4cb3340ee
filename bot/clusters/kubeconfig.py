"""A cluster reached through a sops-encrypted kubeconfig kept in the repository."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bot.clusters import KubeConfig
from bot.errors import HubbotError, Location
from bot.source import Source
from bot.values import Decryptor

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
        return KubeConfig(document, tuple(sorted(_credentials(document))))


def _credentials(node: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key in CREDENTIAL_KEYS and isinstance(value, str) and value:
                found.add(value)
            else:
                found |= _credentials(value)
    elif isinstance(node, list):
        for item in node:
            found |= _credentials(item)
    return found
