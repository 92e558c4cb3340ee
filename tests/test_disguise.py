"""Pseudonyms for decrypted secrets in previews: same shape, nothing of the value."""

from __future__ import annotations

import re

from bot.disguise import disguised, new_key, pseudonym
from bot.merge import Layer, merge_layers


def test_a_pseudonym_keeps_type_length_and_each_characters_class() -> None:
    key = new_key()
    token = "4b7ba5df7acf6269e31c562bbb7b1cb76d73605162c173925e3fb49f4c19d3bb"
    fake = pseudonym(token, key)
    assert re.fullmatch(r"[0-9a-f]{64}", fake)
    assert fake != token
    url = "postgres://hub:Pa55word@db.internal:5432/hub"
    shape = re.sub(r"[a-z]", "a", re.sub(r"[A-Z]", "A", re.sub(r"[0-9]", "0", url)))
    fake_url = pseudonym(url, key)
    assert re.sub(r"[a-z]", "a", re.sub(r"[A-Z]", "A", re.sub(r"[0-9]", "0", fake_url))) == shape
    assert fake_url != url
    assert isinstance(pseudonym(12345, key), int)
    assert isinstance(pseudonym(True, key), bool)
    assert isinstance(pseudonym(1.5, key), float)
    assert pseudonym(None, key) is None


def test_equal_values_match_within_a_key_and_not_across_keys() -> None:
    key = new_key()
    value = "client-secret-0123456789abcdef"
    assert pseudonym(value, key) == pseudonym(value, key)
    assert pseudonym(value, key) != pseudonym(value + "0", key)
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
