"""Reading sops files without keys: the shape of the secrets, never their values.

sops leaves keys in plaintext and writes each value as
ENC[AES256_GCM,data:...,iv:...,tag:...,type:T]. That is enough to check the
merged config's shape, to catch a value that was never encrypted, and to tell
whether a secret changed (by its ciphertext) without decrypting anything.
"""

from __future__ import annotations

import hashlib
import posixpath
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from bot.errors import HubbotError, Location
from bot.yamlfile import Path_, load_yaml

ENCRYPTED = re.compile(
    r"^ENC\[AES256_GCM,data:(?P<data>[A-Za-z0-9+/=]*),iv:(?P<iv>[A-Za-z0-9+/=]+),"
    r"tag:(?P<tag>[A-Za-z0-9+/=]+),type:(?P<type>str|int|float|bool|time|bytes|comment)\]$"
)


@dataclass(frozen=True)
class SecretLeaf:
    """One encrypted value: its sops type and a fingerprint of its ciphertext.

    The fingerprint changes whenever the value is re-encrypted, so without
    keys it can only say "may have changed".
    """

    sops_type: str
    fingerprint: str

    def __str__(self) -> str:
        return f"<secret {self.sops_type}>"


@dataclass(frozen=True)
class SecretsShape:
    file: str
    data: dict[str, Any]  # plaintext keys; SecretLeaf (or a plain empty/null/unencrypted) leaves
    lines: dict[Path_, int]
    unencrypted_suffix: str | None
    unencrypted_regex: str | None


def read_shape(file: str, text: str) -> SecretsShape:
    """Parse a sops YAML file; raise HubbotError if it is not (fully) encrypted."""
    doc = load_yaml(file, text)
    if not isinstance(doc.data, dict) or not isinstance(doc.data.get("sops"), dict):
        raise HubbotError(
            "not a sops-encrypted file (no top-level `sops` metadata): it may have leaked; "
            "rotate its values, then encrypt it with `hubbot secrets encrypt`",
            Location(file, 1),
        )
    meta = doc.data["sops"]
    suffix = meta.get("unencrypted_suffix")
    regex = meta.get("unencrypted_regex")
    if meta.get("encrypted_suffix") or meta.get("encrypted_regex"):
        # Under these settings only matching keys are encrypted: every value the bot
        # reads would need the same rule, so the repo's policy is to encrypt everything.
        raise HubbotError(
            "secrets files must encrypt every value: re-create it without "
            "encrypted_suffix/encrypted_regex",
            Location(file, doc.lines.get(("sops",))),
        )
    body = {key: value for key, value in doc.data.items() if key != "sops"}
    shaped = _shape(body, (), doc.lines, file, suffix, regex)
    return SecretsShape(file, shaped, doc.lines, suffix, regex)


NUMERIC_TYPES = ("int", "float")


def refuse_numbers(shape: SecretsShape) -> None:
    """A number in a secrets file is an error: helm cannot print it in a redactable form.

    helm reads every number as float64 and prints it as a template asks (799679631873 as
    7.99679631873e+11, or at any precision), so no list of renderings is complete. A quoted
    value is a string, printed as written and so redacted.
    """
    for path, leaf in _leaves(shape.data, ()):
        if leaf.sops_type in NUMERIC_TYPES:
            where = Location(shape.file, shape.lines.get(path))
            raise HubbotError(number_message(shape.file, path, leaf.sops_type), where)


def number_message(file: str, path: Path_, sops_type: str) -> str:
    dotted = ".".join(str(part) for part in path)
    return (
        f"`{dotted}` is a number (sops type {sops_type}): helm reads numbers as float64 and "
        "prints them in forms (12345678901 as 1.2345678901e+10) that cannot be redacted; "
        f"a secret must be a string: quote it ({edit_command(file)})"
    )


def edit_command(file: str) -> str:
    """`hubbot secrets edit HUB ENV` for deployments/HUB/secrets/ENV.yaml."""
    parts = file.split("/")
    if len(parts) == 4 and parts[2] == "secrets":
        return f"`hubbot secrets edit {parts[1]} {posixpath.splitext(parts[3])[0]}`"
    return "`hubbot secrets edit`"


def _leaves(node: Any, path: Path_) -> Iterator[tuple[Path_, SecretLeaf]]:
    if isinstance(node, SecretLeaf):
        yield path, node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield from _leaves(value, (*path, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _leaves(value, (*path, index))


def _plaintext_allowed(key: str, suffix: str | None, regex: str | None) -> bool:
    if suffix and key.endswith(suffix):
        return True
    return bool(regex and re.search(regex, key))


def _shape(
    node: Any,
    path: Path_,
    lines: dict[Path_, int],
    file: str,
    suffix: str | None,
    regex: str | None,
) -> Any:
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for key, value in node.items():
            if _plaintext_allowed(key, suffix, regex):
                out[key] = value
            else:
                out[key] = _shape(value, (*path, key), lines, file, suffix, regex)
        return out
    if isinstance(node, list):
        return [_shape(item, (*path, i), lines, file, suffix, regex) for i, item in enumerate(node)]
    if node is None or node == "":
        return node  # sops leaves empty values as they are
    if isinstance(node, str):
        match = ENCRYPTED.match(node)
        if match:
            digest = hashlib.sha256(node.encode()).hexdigest()[:16]
            return SecretLeaf(match["type"], digest)
    dotted = ".".join(str(part) for part in path)
    raise HubbotError(
        f"`{dotted}` holds a plaintext value in a secrets file: it may have leaked; rotate it, "
        "then encrypt the file with `hubbot secrets encrypt`",
        Location(file, lines.get(path)),
    )
