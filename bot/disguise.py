"""Decrypted secrets in previews: each replaced by a keyed pseudonym of the same kind.

A preview (`render --manifests --decrypt`, `diff --decrypt`) hands helm the values of
a change someone else wrote, and a chart prints what its templates make of them: a
`tpl`'d value such as `{{ .Values.proxy.secretToken | upper }}` prints a secret in a
form no redactor knows. So helm never gets a decrypted value in a preview. Each gets a
pseudonym made with a key drawn for the run: of the same type and length, and of the
smallest alphabet that holds the whole value (digits, hex, else letters and digits), so
that templates that check a token's form render as they would while nothing of the
value's layout shows. Equal values get equal pseudonyms within a run, so a changed
secret still shows as changed, and a pseudonym printed as it is reads <redacted>, as
the value would.
"""

from __future__ import annotations

import hashlib
import os
import string
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from bot.merge import Merged, replace_secrets

if TYPE_CHECKING:
    from bot.values import HubValues

KEY_BYTES = 32
# The smallest that holds every character of a value gives its pseudonym's characters.
_ALPHABETS = (
    string.digits,
    string.digits + "abcdef",
    string.digits + "ABCDEF",
    string.digits + string.ascii_letters,
)


def new_key() -> bytes:
    """A key for one run's pseudonyms: never stored, never shown."""
    return os.urandom(KEY_BYTES)


def for_helm(values: HubValues, key: bytes, register: Callable[[str], object]) -> dict[str, Any]:
    """The values document a preview gives helm: with keys, the secrets disguised.

    Every preview that renders a pair's values takes them from here.
    """
    return disguised(values.merged, key, register) if values.decrypted else values.document


def disguised(merged: Merged, key: bytes, register: Callable[[str], object]) -> Any:
    """The merged document with every value a secrets layer set replaced by its pseudonym.

    Each text pseudonym goes to `register` (the redactor's), so that where a template
    prints one as it is, the output says <redacted>, as for the value itself.
    """

    def replace(value: Any) -> Any:
        fake = pseudonym(value, key)
        if isinstance(fake, str):
            register(fake)
        return fake

    return replace_secrets(merged, replace)


def pseudonym(value: Any, key: bytes) -> Any:
    """`value`'s stand-in under `key`: same type; text of the same length, from the
    smallest alphabet that holds all of it."""
    if isinstance(value, bool):
        return _stream(key, value, 1)[0] % 2 == 1
    if isinstance(value, int):
        digits = str(abs(value))
        fake = int(_disguise_text(digits, key, value) or "0")
        return -fake if value < 0 else fake
    if isinstance(value, float):
        return int.from_bytes(_stream(key, value, 7), "big") / 2**16
    if isinstance(value, str):
        return _disguise_text(value, key, value)
    return value  # null: nothing to hide


def _disguise_text(text: str, key: bytes, value: Any) -> str:
    if not text:
        return text
    present = set(text)
    alphabet = next((chars for chars in _ALPHABETS if present <= set(chars)), _ALPHABETS[-1])
    return "".join(alphabet[byte % len(alphabet)] for byte in _stream(key, value, len(text)))


def _stream(key: bytes, value: Any, length: int) -> bytes:
    # SHAKE-256 of the key and the typed value: a keyed pseudo-random stream, as long as needed.
    material = f"{type(value).__name__}\0{value!r}".encode("utf-8", "surrogatepass")
    return hashlib.shake_256(key + material).digest(length)
