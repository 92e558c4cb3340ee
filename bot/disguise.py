"""Decrypted secrets in previews: each replaced by a keyed pseudonym of the same shape.

A preview (`render --manifests --decrypt`, `diff --decrypt`) hands helm the values of
a change someone else wrote, and a chart prints what its templates make of them: a
`tpl`'d value such as `{{ .Values.proxy.secretToken | upper }}` prints a secret in a
form no redactor knows. So helm never gets a decrypted value in a preview. Each gets a
pseudonym made with a key drawn for the run: of the same type and length, with digits,
hex letters, other letters and their case kept in their classes and other characters
kept, so that templates that check a value's form render as they would. Equal values
get equal pseudonyms within a run, so a changed secret still shows as changed, and a
pseudonym printed as it is reads <redacted>, as the value would.
"""

from __future__ import annotations

import hashlib
import os
import string
from collections.abc import Callable
from typing import Any

from bot.merge import Merged, replace_secrets

KEY_BYTES = 32
# Each class maps onto itself, so a hex token stays hex and a number stays a number.
_CLASSES = (
    string.digits,
    "abcdef",
    "ghijklmnopqrstuvwxyz",
    "ABCDEF",
    "GHIJKLMNOPQRSTUVWXYZ",
)
_CLASS_OF = {character: chars for chars in _CLASSES for character in chars}


def new_key() -> bytes:
    """A key for one run's pseudonyms: never stored, never shown."""
    return os.urandom(KEY_BYTES)


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
    """`value`'s stand-in under `key`: same type, and for text the same length and form."""
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
    stream = _stream(key, value, len(text))
    out = []
    for character, byte in zip(text, stream, strict=True):
        chars = _CLASS_OF.get(character)
        out.append(chars[byte % len(chars)] if chars else character)
    return "".join(out)


def _stream(key: bytes, value: Any, length: int) -> bytes:
    # SHAKE-256 of the key and the typed value: a keyed pseudo-random stream, as long as needed.
    material = f"{type(value).__name__}\0{value!r}".encode("utf-8", "surrogatepass")
    return hashlib.shake_256(key + material).digest(max(length, 1))
