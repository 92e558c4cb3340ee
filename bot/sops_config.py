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
from bot.sops_format import read_shape
from bot.source import Source
from bot.yamlfile import load_yaml

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
        where = Location(file, doc.lines.get(("creation_rules", index)))
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
                _rule_recipients(rule, where),
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
    read_shape(file, text)
    rule = matching_rule(rules, file)
    metadata = _metadata(file, text)
    actual = file_recipients(file, metadata)
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
    return file_recipients(file, _metadata(file, text))


def _metadata(file: str, text: str) -> dict[str, Any]:
    data = load_yaml(file, text).data
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


def file_recipients(file: str, metadata: dict[str, Any]) -> Recipients:
    """The master keys named in a sops file's `sops` metadata."""
    where = Location(file)
    groups = metadata.get("key_groups")
    sources = groups if isinstance(groups, list) and groups else [metadata]
    kms: set[KmsKey] = set()
    age: set[str] = set()
    for group in sources:
        _refuse_unsupported(group, where)
        for entry in group.get("kms") or []:
            kms.add(_kms_key(entry, where))
        for entry in group.get("age") or []:
            age.add(str(entry["recipient"] if isinstance(entry, dict) else entry))
    return Recipients(frozenset(kms), frozenset(age))


def _rule_recipients(rule: dict[str, Any], where: Location) -> Recipients:
    _refuse_unsupported(rule, where)
    kms: set[KmsKey] = set()
    age: set[str] = set()
    for group in rule.get("key_groups") or []:
        _refuse_unsupported(group, where)
        kms |= {_kms_key(entry, where) for entry in group.get("kms") or []}
        age |= set(_listed(group.get("age")))
    # The flat form: comma-separated ARNs (each optionally `ARN+ROLE`) and recipients.
    for item in _listed(rule.get("kms")):
        arn, _, role = item.partition("+")
        kms.add(KmsKey(arn, (), role or None))
    age |= set(_listed(rule.get("age")))
    if not kms and not age:
        raise HubbotError("this creation rule names no KMS key or age recipient", where)
    return Recipients(frozenset(kms), frozenset(age))


def _listed(value: Any) -> list[str]:
    items = value if isinstance(value, list) else str(value or "").split(",")
    return [str(item).strip() for item in items if str(item).strip()]


def _kms_key(entry: Any, where: Location) -> KmsKey:
    if isinstance(entry, str):
        arn, _, role = entry.partition("+")
        return KmsKey(arn.strip(), (), role.strip() or None)
    if not isinstance(entry, dict) or not entry.get("arn"):
        raise HubbotError("a KMS key entry needs an `arn`", where)
    context = entry.get("context") or {}
    pairs = tuple(sorted((str(k), str(v)) for k, v in context.items()))
    return KmsKey(str(entry["arn"]), pairs, entry.get("role") or None)


def _refuse_unsupported(entry: dict[str, Any], where: Location) -> None:
    used = [kind for kind in UNSUPPORTED_KINDS if entry.get(kind)]
    if used:
        raise HubbotError(
            f"key kind {', '.join(used)} is not supported here: use AWS KMS or age", where
        )
