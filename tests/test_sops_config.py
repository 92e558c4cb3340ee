"""Creation rules from .sops.yaml and recipients from a file's sops metadata."""

from __future__ import annotations

import pytest

from bot.errors import HubbotError
from bot.sops_config import KmsKey, Recipients, file_recipients, parse_config, rule_for
from bot.yamlfile import dump_yaml, load_yaml
from tests.fixtures.repos import PROJECT

ARN = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
ROLE = "arn:aws:iam::123456789012:role/sops"
AGE = "age1frf6ydmdmcjlkuzpxpvyz7efevqysl2p5gy9xr2pwcxlg08pwazscpeyjn"
CONFIG = f"""\
creation_rules:
  - path_regex: deployments/[^/]+/secrets/prod\\.yaml$
    key_groups:
      - kms:
          - arn: {ARN}
            role: {ROLE}
            context:
              hub: tess-private
              env: prod
        age:
          - {AGE}
  - path_regex: deployments/[^/]+/secrets/staging\\.yaml$
    kms: "{ARN}+{ROLE}"
    age: "{AGE}, age1other"
"""


def test_key_groups_with_role_and_context() -> None:
    rule = rule_for(parse_config(CONFIG), "deployments/tess-private/secrets/prod.yaml")
    assert rule is not None
    assert rule.line == 2
    assert rule.recipients == Recipients(
        frozenset({KmsKey(ARN, (("env", "prod"), ("hub", "tess-private")), ROLE)}),
        frozenset({AGE}),
    )
    assert rule.recipients.describe() == [
        f"AWS KMS {ARN} (role {ROLE}) with context env=prod,hub=tess-private",
        f"age {AGE}",
    ]


def test_the_flat_form_with_commas_and_a_role() -> None:
    rule = rule_for(parse_config(CONFIG), "deployments/tess-public/secrets/staging.yaml")
    assert rule is not None
    assert rule.recipients == Recipients(
        frozenset({KmsKey(ARN, (), ROLE)}), frozenset({AGE, "age1other"})
    )


def test_no_rule_matches() -> None:
    assert rule_for(parse_config(CONFIG), "deployments/x/secrets/dev.yaml") is None


def test_the_repository_config_names_age_recipients_per_environment() -> None:
    rules = parse_config((PROJECT / ".sops.yaml").read_text())
    staging = rule_for(rules, "deployments/tess-private/secrets/staging.yaml")
    prod = rule_for(rules, "deployments/tess-private/secrets/prod.yaml")
    assert staging is not None
    assert prod is not None
    assert staging.recipients.kms == prod.recipients.kms == frozenset()
    assert staging.recipients.age != prod.recipients.age


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("creation_rules: {}\n", ".sops.yaml:1: `creation_rules` must be a list of rules"),
        (
            "creation_rules:\n  - path_regex: x\n",
            ".sops.yaml:2: this creation rule names no KMS key or age recipient",
        ),
        (
            "creation_rules:\n  - path_regex: '('\n    age: age1x\n",
            ".sops.yaml:2: `path_regex` is not a valid regex: missing ), unterminated subpattern "
            "at position 0",
        ),
        (
            "creation_rules:\n  - pgp: ABCDEF\n",
            ".sops.yaml:2: key kind pgp is not supported here: use AWS KMS or age",
        ),
    ],
)
def test_bad_configs(text: str, message: str) -> None:
    with pytest.raises(HubbotError) as caught:
        parse_config(text)
    assert str(caught.value) == message


def test_file_metadata_flat_and_in_key_groups() -> None:
    flat = {
        "kms": [{"arn": ARN, "context": {"env": "prod"}, "enc": "x", "aws_profile": ""}],
        "age": [{"recipient": AGE, "enc": "x"}],
    }
    grouped = {"key_groups": [flat]}
    expected = Recipients(frozenset({KmsKey(ARN, (("env", "prod"),))}), frozenset({AGE}))
    for metadata in (flat, grouped):
        assert file_recipients(load_yaml("f.yaml", dump_yaml({"sops": metadata}))) == expected
