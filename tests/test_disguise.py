"""Pseudonyms for decrypted secrets in previews: same kind, nothing of the value."""

from __future__ import annotations

import re

import pytest

from bot.disguise import disguised, new_key, pseudonym
from bot.merge import Layer, merge_layers


@pytest.mark.parametrize(
    ("value", "form"),
    [
        ("4b7ba5df7acf6269e31c562bbb7b1cb76d73605162c173925e3fb49f4c19d3bb", r"[0-9a-f]{64}"),
        ("4B7BA5DF7ACF6269", r"[0-9A-F]{16}"),
        ("0123456789", r"[0-9]{10}"),
        # Punctuation and layout are not kept: nothing of the value's shape shows.
        ("Iv1.4b7ba5df7acf6269", r"[0-9A-Za-z]{20}"),
        ("postgres://hub:Pa55word@db.internal:5432/hub", r"[0-9A-Za-z]{44}"),
        ("", ""),
    ],
)
def test_a_pseudonym_has_the_length_and_the_smallest_alphabet_of_the_value(
    value: str, form: str
) -> None:
    fake = pseudonym(value, new_key())
    assert re.fullmatch(form, fake)
    assert fake != value or not value


def test_other_types_keep_their_type() -> None:
    key = new_key()
    assert isinstance(pseudonym(12345, key), int)
    assert isinstance(pseudonym(True, key), bool)
    assert isinstance(pseudonym(1.5, key), float)
    assert pseudonym(None, key) is None


def test_equal_values_match_within_a_key_and_not_across_keys() -> None:
    key = new_key()
    value = "client-secret-0123456789abcdef"
    assert pseudonym(value, key) == pseudonym(value, key)
    assert pseudonym(value, key) != pseudonym("client-secret-0123456789abcdeg", key)
    assert pseudonym(value, key) != pseudonym(value, new_key())


def test_only_what_a_secrets_layer_set_is_disguised() -> None:
    plain = Layer("values.yaml", {"hub": {"cookieSecret": "set-in-values", "name": "hub"}}, {})
    secret = Layer("secrets.yaml", {"hub": {"cookieSecret": "abcdef0123"}}, {}, secret=True)
    merged = merge_layers([plain, secret])
    registered: list[str] = []
    document = disguised(merged, new_key(), registered.append)
    assert document["hub"]["name"] == "hub"
    assert re.fullmatch(r"[a-f0-9]{10}", document["hub"]["cookieSecret"])
    assert document["hub"]["cookieSecret"] != "abcdef0123"
    assert merged.document["hub"]["cookieSecret"] == "abcdef0123"  # the values are left alone
    assert registered == [document["hub"]["cookieSecret"]]  # printed as it is, it reads redacted
