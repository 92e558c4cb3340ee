"""Which keys a secrets file is, and should be, encrypted for.

Two sources, compared by `hubbot secrets check` and `hubbot ci`: the creation
rules in .sops.yaml (what a file at a path should be encrypted for, and which
keys may stay plaintext) and the `sops` metadata in the file itself (what it
is encrypted for, and what it left plaintext). Only the key kinds this project
uses are modelled: AWS KMS (with role and encryption context) and age; any
other kind is reported, not ignored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from bot.errors import HubbotError, Location
from bot.hubploy import DEPLOYMENTS
from bot.sops_format import read_shape, refuse_numbers
from bot.source import Source
from bot.yamlfile import Path_, YamlDoc, load_yaml

CONFIG_FILE = ".sops.yaml"
UNSUPPORTED_KINDS = ("pgp", "gcp_kms", "azure_kv", "hc_vault", "hc_vault_transit_uri", "hckms")
UPDATEKEYS = "run `hubbot secrets updatekeys`"
# Settings that leave values plaintext; sops writes its default one when a rule names none.
PLAINTEXT_SETTINGS = ("unencrypted_suffix", "unencrypted_regex", "unencrypted_comment_regex")
SOPS_DEFAULT_PLAINTEXT = {"unencrypted_suffix": "_unencrypted"}


@dataclass(frozen=True, order=True)
class KmsKey:
    arn: str
    context: tuple[tuple[str, str], ...] = ()
    role: str | None = None

    def __str__(self) -> str:
        text = f"AWS KMS {self.arn}"
        if self.role:
            text += f" (role {self.role})"
        if self.context:
            text += " with context " + ",".join(f"{k}={v}" for k, v in self.context)
        return text


@dataclass(frozen=True)
class Recipients:
    """The master keys of a file (or a rule), as comparable sets."""

    kms: frozenset[KmsKey] = frozenset()
    age: frozenset[str] = frozenset()

    def describe(self) -> list[str]:
        return [str(key) for key in sorted(self.kms)] + [f"age {r}" for r in sorted(self.age)]

    def __bool__(self) -> bool:
        return bool(self.kms or self.age)


@dataclass(frozen=True)
class CreationRule:
    path_regex: str | None
    recipients: Recipients
    line: int | None
    plaintext: tuple[tuple[str, str], ...] = tuple(SOPS_DEFAULT_PLAINTEXT.items())

    def matches(self, path: str) -> bool:
        return self.path_regex is None or re.search(self.path_regex, path) is not None


def parse_config(text: str, file: str = CONFIG_FILE) -> list[CreationRule]:
    doc = load_yaml(file, text)
    data = doc.data
    rules = data.get("creation_rules") if isinstance(data, dict) else None
    if not isinstance(rules, list):
        raise HubbotError("`creation_rules` must be a list of rules", Location(file, 1))
    parsed = []
    for index, rule in enumerate(rules):
        path: Path_ = ("creation_rules", index)
        where = Location(file, doc.lines.get(path))
        if not isinstance(rule, dict):
            raise HubbotError("a creation rule must be a mapping", where)
        regex = rule.get("path_regex")
        if regex is not None:
            try:
                re.compile(regex)
            except (re.error, TypeError) as exc:
                raise HubbotError(f"`path_regex` is not a valid regex: {exc}", where) from None
        plaintext = {key: str(rule[key]) for key in PLAINTEXT_SETTINGS if rule.get(key)}
        parsed.append(
            CreationRule(
                regex,
                _rule_recipients(doc, rule, path),
                where.line,
                tuple(sorted((plaintext or SOPS_DEFAULT_PLAINTEXT).items())),
            )
        )
    return parsed


def rule_for(rules: list[CreationRule], path: str) -> CreationRule | None:
    """The first rule matching `path` (relative to the repo root), as sops chooses."""
    return next((rule for rule in rules if rule.matches(path)), None)


def load_rules(source: Source) -> list[CreationRule]:
    text = source.read(CONFIG_FILE)
    if text is None:
        raise HubbotError(
            "missing: it names the keys each secrets file is encrypted for", Location(CONFIG_FILE)
        )
    return parse_config(text)


def secrets_files(source: Source, hubs: list[str] | None = None) -> list[str]:
    """Every file under deployments/<hub>/secrets/, as repo paths."""
    names = hubs if hubs else source.children(DEPLOYMENTS)
    return [
        f"{DEPLOYMENTS}/{hub}/secrets/{name}"
        for hub in names
        for name in source.children(f"{DEPLOYMENTS}/{hub}/secrets")
    ]


def matching_rule(rules: list[CreationRule], file: str) -> CreationRule:
    rule = rule_for(rules, file)
    if rule is None:
        raise HubbotError(
            f"no creation rule in {CONFIG_FILE} matches this path: add one for its environment",
            Location(file),
        )
    return rule


def check_against_rules(rules: list[CreationRule], file: str, text: str) -> None:
    """Raise unless the file is sops-encrypted exactly as its creation rule says.

    Needs no keys: the recipients and the plaintext settings are in the metadata.
    So a file encrypted for an extra key, a prod file copied over a staging one,
    or plaintext let through by a setting of the file's own is caught anywhere.
    """
    refuse_numbers(read_shape(file, text))
    rule = matching_rule(rules, file)
    doc = load_yaml(file, text)
    metadata = _metadata(doc)
    actual = file_recipients(doc)
    if actual != rule.recipients:
        raise HubbotError(mismatch(actual, rule), Location(file))
    allowed = dict(rule.plaintext)
    for key in PLAINTEXT_SETTINGS:
        value = metadata.get(key)
        if value and str(value) != allowed.get(key):
            raise HubbotError(
                f"its sops metadata sets `{key}: {value}`, leaving matching values plaintext, "
                f"which the creation rule at {CONFIG_FILE}:{rule.line} does not: any value it "
                "covers may have leaked; rotate those, then re-encrypt the file by its rule "
                "with `hubbot secrets encrypt HUB ENV --input PLAINTEXT --force`",
                Location(file),
            )


def recipients_of(file: str, text: str) -> Recipients:
    return file_recipients(load_yaml(file, text))


def _metadata(doc: YamlDoc) -> dict[str, Any]:
    data = doc.data
    meta = data.get("sops") if isinstance(data, dict) else None
    return meta if isinstance(meta, dict) else {}


def mismatch(actual: Recipients, rule: CreationRule) -> str:
    wanted, have = set(rule.recipients.describe()), set(actual.describe())
    parts = []
    if wanted - have:
        parts.append("missing " + ", ".join(sorted(wanted - have)))
    if have - wanted:
        parts.append("not in the rule: " + ", ".join(sorted(have - wanted)))
    return (
        f"encrypted for other keys than the creation rule at {CONFIG_FILE}:{rule.line} names "
        f"({'; '.join(parts)}): {UPDATEKEYS}"
    )


def file_recipients(doc: YamlDoc) -> Recipients:
    """The master keys named in a sops file's `sops` metadata, its shape checked on the way."""
    meta = doc.data.get("sops") if isinstance(doc.data, dict) else None
    if not isinstance(meta, dict):
        return Recipients()  # not a sops file: sops_format.read_shape says so
    groups = meta.get("key_groups")
    sources = _groups(doc, groups, ("sops", "key_groups")) if groups else [(("sops",), meta)]
    kms: set[KmsKey] = set()
    age: set[str] = set()
    for path, group in sources:
        _refuse_unsupported(group, _at(doc, path))
        for at, entry in _items(doc, group.get("kms"), (*path, "kms"), "KMS key entries"):
            kms.add(_kms_key(doc, entry, at))
        for at, entry in _items(doc, group.get("age"), (*path, "age"), "age entries"):
            recipient = entry.get("recipient") if isinstance(entry, dict) else entry
            if not isinstance(recipient, str) or not recipient:
                raise HubbotError(
                    "sops metadata: an age entry needs a `recipient` (a misspelt key?): "
                    "restore the file from git history",
                    _at(doc, at),
                )
            age.add(recipient)
    return Recipients(frozenset(kms), frozenset(age))


def _rule_recipients(doc: YamlDoc, rule: dict[str, Any], path: Path_) -> Recipients:
    where = _at(doc, path)
    _refuse_unsupported(rule, where)
    kms: set[KmsKey] = set()
    age: set[str] = set()
    for group_path, group in _groups(doc, rule.get("key_groups"), (*path, "key_groups")):
        _refuse_unsupported(group, _at(doc, group_path))
        entries = _items(doc, group.get("kms"), (*group_path, "kms"), "KMS key entries")
        kms |= {_kms_key(doc, entry, at) for at, entry in entries}
        age |= set(_listed(doc, group.get("age"), (*group_path, "age")))
    # The flat form: comma-separated ARNs (each optionally `ARN+ROLE`) and recipients.
    for item in _listed(doc, rule.get("kms"), (*path, "kms")):
        arn, _, role = item.partition("+")
        kms.add(KmsKey(arn, (), role or None))
    age |= set(_listed(doc, rule.get("age"), (*path, "age")))
    if not kms and not age:
        raise HubbotError("this creation rule names no KMS key or age recipient", where)
    return Recipients(frozenset(kms), frozenset(age))


def _at(doc: YamlDoc, path: Path_) -> Location:
    return Location(doc.file, doc.line_of(path))


def _dotted(path: Path_) -> str:
    return ".".join(str(part) for part in path)


def _items(doc: YamlDoc, value: Any, path: Path_, what: str) -> list[tuple[Path_, Any]]:
    """The entries of the list at `path`, each with its own path (none when it is unset)."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise HubbotError(f"`{_dotted(path)}` must be a list of {what}", _at(doc, path))
    return [((*path, index), item) for index, item in enumerate(value)]


def _groups(doc: YamlDoc, value: Any, path: Path_) -> list[tuple[Path_, dict[str, Any]]]:
    groups = _items(doc, value, path, "key groups")
    for at, group in groups:
        if not isinstance(group, dict):
            raise HubbotError(
                f"a key group must be a mapping with `kms` and/or `age` lists, not {group!r}",
                _at(doc, at),
            )
    return groups


def _listed(doc: YamlDoc, value: Any, path: Path_) -> list[str]:
    """A list of strings, or one comma-separated string."""
    if isinstance(value, list):
        if not all(isinstance(item, str) for item in value):
            raise HubbotError(f"`{_dotted(path)}` must be a list of strings", _at(doc, path))
        items = value
    elif value is None or isinstance(value, str):
        items = str(value or "").split(",")
    else:
        raise HubbotError(
            f"`{_dotted(path)}` must be a string or a list of strings", _at(doc, path)
        )
    return [item.strip() for item in items if item.strip()]


def _kms_key(doc: YamlDoc, entry: Any, path: Path_) -> KmsKey:
    where = _at(doc, path)
    if isinstance(entry, str):
        arn, _, role = entry.partition("+")
        return KmsKey(arn.strip(), (), role.strip() or None)
    if not isinstance(entry, dict) or not isinstance(entry.get("arn"), str) or not entry["arn"]:
        raise HubbotError("a KMS key entry needs an `arn`", where)
    context = entry.get("context") or {}
    if not isinstance(context, dict) or not all(
        isinstance(value, (str, int, float, bool)) for value in context.values()
    ):
        raise HubbotError(
            "a KMS key's `context` must be a mapping of names to values (env: staging)",
            _at(doc, (*path, "context")),
        )
    assumed = entry.get("role") or None
    if assumed is not None and not isinstance(assumed, str):
        raise HubbotError("a KMS key's `role` must be a string (an IAM role ARN)", where)
    pairs = tuple(sorted((str(k), str(v)) for k, v in context.items()))
    return KmsKey(entry["arn"], pairs, assumed)


def _refuse_unsupported(entry: dict[str, Any], where: Location) -> None:
    used = [kind for kind in UNSUPPORTED_KINDS if entry.get(kind)]
    if used:
        raise HubbotError(
            f"key kind {', '.join(used)} is not supported here: use AWS KMS or age", where
        )
