"""`hubbot secrets check|edit|encrypt|decrypt|updatekeys` with the real sops and age keys."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bot.main import main
from bot.sops import decrypt_text
from tests.fixtures.repos import write
from tests.fixtures.secrets import AgeKey, age_rules, encrypt_yaml, secrets_path, write_secrets

HUBS = ("tess-private", "tess-public")
ENVS = ("prod", "staging")
FILES = [secrets_path(hub, env) for hub in HUBS for env in ENVS]
TOKEN = "token-7d1e5f0c2b9a4e86"


def run(repo: Path, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    status = main(["--repo", str(repo), "secrets", *args])
    captured = capsys.readouterr()
    assert TOKEN not in captured.out + captured.err
    return status, captured.out, captured.err


@pytest.fixture
def keyed_repo(hub_repo: Path, age_env: AgeKey) -> Path:
    """Every secrets file re-encrypted, through .sops.yaml, for the test's age key."""
    write(
        hub_repo,
        ".sops.yaml",
        age_rules(("staging", age_env.recipient), ("prod", age_env.recipient)),
    )
    for hub in HUBS:
        for env in ENVS:
            plaintext = f"jupyterhub:\n  proxy:\n    secretToken: {TOKEN}-{hub}-{env}\n"
            write_secrets(hub_repo, hub, env, plaintext)
    return hub_repo


def test_check_passes_on_the_repository_without_keys(
    hub_repo: Path, no_sops_keys: None, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, err = run(hub_repo, capsys, "check")
    assert (status, err) == (0, "")
    assert out.splitlines() == [
        *(f"ok      {file} (MAC not verified: no key here)" for file in FILES),
        "4 of 4 secrets files ok",
        "note: the MAC of 4 file(s) was not verified: no key here could open them (set "
        "SOPS_AGE_KEY_FILE, or AWS credentials for KMS, to verify)",
    ]


def test_check_verifies_the_mac_with_a_key(
    keyed_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, _ = run(keyed_repo, capsys, "check")
    assert status == 0
    assert out.splitlines() == [*(f"ok      {file}" for file in FILES), "4 of 4 secrets files ok"]


def test_check_finds_a_tampered_file(keyed_repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = keyed_repo / FILES[0]
    path.write_text(path.read_text().replace("secretToken:", "secretTokens:"))
    status, out, _ = run(keyed_repo, capsys, "check")
    assert status == 1
    assert out.splitlines()[:2] == [
        f"FAILED  {FILES[0]}",
        f"  {FILES[0]}: cannot decrypt: a value, or the name of its key, does not match its "
        "authentication tag: the file was changed outside sops (tampered with or hand-edited); "
        "restore it from git history, or re-create it with `hubbot secrets edit` if the change "
        "was meant",
    ]
    assert out.splitlines()[-1] == "3 of 4 secrets files ok"


def test_check_as_json(
    keyed_repo: Path,
    other_age_key: AgeKey,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = keyed_repo / FILES[0]
    path.write_text(path.read_text().replace("secretToken:", "secretTokens:"))
    status, out, err = run(keyed_repo, capsys, "check", "--format", "json")
    assert (status, err) == (1, "")
    result = json.loads(out)
    assert result["valid"] is False
    assert result["summary"] == {"files": 4, "ok": 3}
    assert [(f["file"], f["status"], f["mac_verified"]) for f in result["files"]] == [
        (FILES[0], "failed", None),
        *((file, "ok", True) for file in FILES[1:]),
    ]
    (problem,) = result["files"][0]["problems"]
    assert problem["file"] == FILES[0]
    assert problem["message"].startswith("cannot decrypt: a value, or the name of its key")
    assert result["problems"] == []
    assert result["notes"] == []

    monkeypatch.setenv("SOPS_AGE_KEY_FILE", str(other_age_key.path))
    status, out, _ = run(keyed_repo, capsys, "check", "--format", "json")
    result = json.loads(out)
    assert status == 1
    assert [f["mac_verified"] for f in result["files"][1:]] == [False, False, False]
    (problem,) = result["problems"]
    assert problem["message"].startswith(
        f"the age key in SOPS_AGE_KEY_FILE ({other_age_key.path}) opens none of the secrets files"
    )


def test_check_finds_a_plaintext_value(
    hub_repo: Path, no_sops_keys: None, capsys: pytest.CaptureFixture[str]
) -> None:
    path = hub_repo / FILES[1]
    path.write_text(
        re.sub(r"secretToken: ENC\[[^\]]*\]", f"secretToken: {TOKEN}", path.read_text())
    )
    status, out, _ = run(hub_repo, capsys, "check")
    assert status == 1
    assert out.splitlines()[1:3] == [
        f"FAILED  {FILES[1]}",
        f"  {FILES[1]}:3: `jupyterhub.proxy.secretToken` holds a plaintext value in a secrets "
        "file: it may have leaked; rotate it, then encrypt the file with `hubbot secrets encrypt`",
    ]


def test_check_needs_a_creation_rule(
    hub_repo: Path, no_sops_keys: None, capsys: pytest.CaptureFixture[str]
) -> None:
    config = hub_repo / ".sops.yaml"
    config.write_text(config.read_text().replace("staging", "dev"))
    status, out, _ = run(hub_repo, capsys, "check")
    assert status == 1
    assert (
        f"  {FILES[1]}: no creation rule in .sops.yaml matches this path: add one for its " in out
    )


def test_check_refuses_plaintext_settings_the_rule_lacks(
    keyed_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plaintext = f"jupyterhub:\n  proxy:\n    secretToken: {TOKEN}\n"
    text = encrypt_yaml(plaintext, FILES[1], cwd=keyed_repo,
                        extra=["--unencrypted-regex", "Token$"])
    (keyed_repo / FILES[1]).write_text(text)
    status, out, _ = run(keyed_repo, capsys, "check")
    assert status == 1
    assert out.splitlines()[1:3] == [
        f"FAILED  {FILES[1]}",
        f"  {FILES[1]}: its sops metadata sets `unencrypted_regex: Token$`, leaving matching "
        "values plaintext, which the creation rule at .sops.yaml:2 does not: any value it covers "
        "may have leaked; rotate those, then re-encrypt the file by its rule with `hubbot "
        "secrets encrypt HUB ENV --input PLAINTEXT --force`",
    ]
    # A rule that allows it allows it (and no other plaintext setting, such as sops' default).
    rules = (keyed_repo / ".sops.yaml").read_text()
    write(keyed_repo, ".sops.yaml", rules.replace(
        "staging\\.yaml$\n", "staging\\.yaml$\n    unencrypted_regex: Token$\n"
    ))
    _, out, _ = run(keyed_repo, capsys, "check")
    assert f"ok      {FILES[1]}" in out.splitlines()
    assert f"  {FILES[3]}: its sops metadata sets `unencrypted_suffix: _unencrypted`" in out


def test_a_key_change_is_found_by_check_and_fixed_by_updatekeys(
    keyed_repo: Path,
    age_env: AgeKey,
    other_age_key: AgeKey,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    both = f"{age_env.recipient},{other_age_key.recipient}"
    write(keyed_repo, ".sops.yaml", age_rules(("staging", both), ("prod", age_env.recipient)))
    status, out, _ = run(keyed_repo, capsys, "check")
    assert status == 1
    assert out.splitlines()[1:3] == [
        f"FAILED  {FILES[1]}",
        f"  {FILES[1]}: encrypted for other keys than the creation rule at .sops.yaml:2 names "
        f"(missing age {other_age_key.recipient}): run `hubbot secrets updatekeys`",
    ]
    status, out, _ = run(keyed_repo, capsys, "updatekeys")
    assert status == 0
    assert out.splitlines() == [
        f"ok        {FILES[0]}",
        f"updated   {FILES[1]}",
        f"ok        {FILES[2]}",
        f"updated   {FILES[3]}",
        "4 of 4 secrets files up to date",
    ]
    assert run(keyed_repo, capsys, "check")[0] == 0
    # The new recipient alone can now decrypt it.
    monkeypatch.setenv("SOPS_AGE_KEY_FILE", str(other_age_key.path))
    data = decrypt_text(FILES[1], (keyed_repo / FILES[1]).read_text())
    assert data["jupyterhub"]["proxy"]["secretToken"] == f"{TOKEN}-tess-private-staging"


def test_updatekeys_without_the_key_reports_per_file(
    keyed_repo: Path,
    age_env: AgeKey,
    other_age_key: AgeKey,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    write(
        keyed_repo,
        ".sops.yaml",
        age_rules(("staging", other_age_key.recipient), ("prod", age_env.recipient)),
    )
    monkeypatch.delenv("SOPS_AGE_KEY_FILE")
    status, out, _ = run(keyed_repo, capsys, "updatekeys", "tess-public")
    assert status == 1
    assert out.splitlines() == [
        f"ok        {FILES[2]}",
        f"FAILED   {FILES[3]}",
        f"  {FILES[3]}: cannot decrypt: no key could open it. age {age_env.recipient}: no age "
        "private key was found: set SOPS_AGE_KEY_FILE to the file holding it",
        "1 of 2 secrets files up to date",
    ]


EDITOR = """\
#!/bin/sh
dirname "$1" > "$HUBBOT_TEST_RECORD"
printf 'jupyterhub:\\n  proxy:\\n    secretToken: %s\\n' "$HUBBOT_TEST_VALUE" > "$1"
"""


@pytest.fixture
def editor(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An $EDITOR that writes a new token and records where sops put the plaintext copy."""
    script = tmp_path / "editor.sh"
    script.write_text(EDITOR)
    script.chmod(0o700)
    record = tmp_path / "edited-in"
    monkeypatch.setenv("EDITOR", str(script))
    monkeypatch.delenv("SOPS_EDITOR", raising=False)
    monkeypatch.setenv("HUBBOT_TEST_RECORD", str(record))
    monkeypatch.setenv("HUBBOT_TEST_VALUE", TOKEN)
    return record


def test_edit_creates_a_missing_file_from_the_rule_in_memory(
    keyed_repo: Path, age_env: AgeKey, editor: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = FILES[1]
    (keyed_repo / file).unlink()
    status, out, _ = run(keyed_repo, capsys, "edit", "tess-private", "staging")
    assert status == 0
    assert out.splitlines() == [
        f"created {file} (empty) for age {age_env.recipient}",
        f"saved {file}",
    ]
    edited_in = Path(editor.read_text().strip())
    assert edited_in.parts[:3] == ("/", "dev", "shm")
    assert not edited_in.exists()
    text = (keyed_repo / file).read_text()
    assert TOKEN not in text
    assert decrypt_text(file, text) == {"jupyterhub": {"proxy": {"secretToken": TOKEN}}}


def test_edit_without_changes(
    keyed_repo: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("EDITOR", "true")
    before = (keyed_repo / FILES[0]).read_text()
    status, out, _ = run(keyed_repo, capsys, "edit", "tess-private", "prod")
    assert (status, out) == (0, f"{FILES[0]}: not changed\n")
    assert (keyed_repo / FILES[0]).read_text() == before


def test_edit_an_unknown_environment(keyed_repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = run(keyed_repo, capsys, "edit", "tess-private", "dev")
    assert status == 1
    assert err.startswith("hubbot: error: unknown environment 'dev' for hub tess-private: ")


def test_encrypt_from_standard_input(
    keyed_repo: Path,
    age_env: AgeKey,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(f"a:\n  token: {TOKEN}\n"))
    status, _, err = run(keyed_repo, capsys, "encrypt", "tess-public", "staging", "--input", "-")
    assert status == 1
    assert err == (
        f"hubbot: error: {FILES[3]}: is already encrypted: use `hubbot secrets edit`, or --force "
        "to replace it\n"
    )
    monkeypatch.setattr(sys, "stdin", io.StringIO(f"a:\n  token: {TOKEN}\n"))
    status, out, _ = run(
        keyed_repo, capsys, "encrypt", "tess-public", "staging", "--input", "-", "--force"
    )
    assert (status, out) == (0, f"encrypted {FILES[3]} for age {age_env.recipient}\n")
    text = (keyed_repo / FILES[3]).read_text()
    assert decrypt_text(FILES[3], text) == {"a": {"token": TOKEN}}


def test_encrypt_from_a_file_says_to_delete_it(
    keyed_repo: Path, age_env: AgeKey, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "plain.yaml"
    source.write_text(f"a:\n  token: {TOKEN}\n")
    (keyed_repo / FILES[0]).unlink()
    status, out, _ = run(
        keyed_repo, capsys, "encrypt", "tess-private", "prod", "--input", str(source)
    )
    assert (status, out) == (
        0,
        f"encrypted {FILES[0]} for age {age_env.recipient}\nnote: {source} still holds the "
        "plaintext: delete it\n",
    )
    assert decrypt_text(FILES[0], (keyed_repo / FILES[0]).read_text()) == {"a": {"token": TOKEN}}


def test_encrypt_a_plaintext_file_in_place(
    keyed_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(keyed_repo, FILES[2], f"a:\n  token: {TOKEN}\n")
    assert run(keyed_repo, capsys, "encrypt", "tess-public", "prod")[0] == 0
    text = (keyed_repo / FILES[2]).read_text()
    assert TOKEN not in text
    assert decrypt_text(FILES[2], text) == {"a": {"token": TOKEN}}
    status, _, err = run(keyed_repo, capsys, "encrypt", "tess-public", "prod")
    assert status == 1
    assert err == f"hubbot: error: {FILES[2]}: is already encrypted: use `hubbot secrets edit`\n"


def test_decrypt_prints_the_plaintext_outside_ci(
    keyed_repo: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("CI", raising=False)
    status = main(["--repo", str(keyed_repo), "secrets", "decrypt", "tess-public", "prod"])
    out, err = capfd.readouterr()
    assert (status, err) == (0, "")
    assert out == f"jupyterhub:\n    proxy:\n        secretToken: {TOKEN}-tess-public-prod\n"


def hubbot(repo: Path, *args: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "bot", "--repo", str(repo), *args]
    return subprocess.run(command, text=True, check=False, **kwargs)  # type: ignore[call-overload]


def test_decrypt_refuses_a_pipe_in_ci(keyed_repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    refused = hubbot(keyed_repo, "secrets", "decrypt", "tess-public", "prod", capture_output=True)
    assert (refused.returncode, refused.stdout) == (1, "")
    assert refused.stderr == (
        "hubbot: error: refusing to print decrypted secrets in CI (CI=true) to a terminal or a "
        "pipe, where a log may keep them: redirect standard output to a file, or pass "
        "--print-in-ci\n"
    )
    forced = hubbot(
        keyed_repo,
        "secrets",
        "decrypt",
        "tess-public",
        "prod",
        "--print-in-ci",
        capture_output=True,
    )
    assert forced.returncode == 0
    assert f"{TOKEN}-tess-public-prod" in forced.stdout


def test_decrypt_to_a_file_in_ci(
    keyed_repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CI", "true")
    target = tmp_path / "out.yaml"
    with target.open("w") as out:
        done = hubbot(keyed_repo, "secrets", "decrypt", "tess-public", "prod", stdout=out)
    assert done.returncode == 0
    assert f"{TOKEN}-tess-public-prod" in target.read_text()


def kms_rules(arn: str, role: str) -> str:
    """The production form: per hub and environment, a KMS key with role and context."""
    lines = ["creation_rules:"]
    for hub in HUBS:
        for env in ENVS:
            lines += [
                f"  - path_regex: deployments/{hub}/secrets/{env}\\.yaml$",
                "    key_groups:",
                "      - kms:",
                f"          - arn: {arn}",
                f"            role: {role}",
                "            context:",
                f"              hub: {hub}",
                f"              env: {env}",
            ]
    return "\n".join(lines) + "\n"


def test_check_with_kms_role_and_context_verifies_every_mac(
    hub_repo: Path, kms_key: str, capsys: pytest.CaptureFixture[str]
) -> None:
    role = "arn:aws:iam::123456789012:role/hubbot-sops"
    write(hub_repo, ".sops.yaml", kms_rules(kms_key, role))
    for hub in HUBS:
        for env in ENVS:
            write_secrets(hub_repo, hub, env, f"a:\n  token: {TOKEN}-{hub}-{env}\n")
    status, out, _ = run(hub_repo, capsys, "check")
    assert status == 0
    assert out.splitlines() == [*(f"ok      {file}" for file in FILES), "4 of 4 secrets files ok"]
    # A file encrypted under another hub's context is caught before any decryption.
    other = hub_repo / FILES[3]
    other.write_text(other.read_text().replace("hub: tess-public", "hub: tess-private"))
    status, out, _ = run(hub_repo, capsys, "check")
    assert status == 1
    assert out.splitlines()[3:5] == [
        f"FAILED  {FILES[3]}",
        f"  {FILES[3]}: encrypted for other keys than the creation rule at .sops.yaml:26 names "
        f"(missing AWS KMS {kms_key} (role {role}) with context env=staging,hub=tess-public; "
        f"not in the rule: AWS KMS {kms_key} (role {role}) with context "
        "env=staging,hub=tess-private): run `hubbot secrets updatekeys`",
    ]


PUBLIC_STAGING = secrets_path("tess-public", "staging")
PROJECT_STAGING_AGE = "age1frf6ydmdmcjlkuzpxpvyz7efevqysl2p5gy9xr2pwcxlg08pwazscpeyjn"


def sops_line(repo: Path, needle: str, file: str = PUBLIC_STAGING) -> int:
    lines = (repo / file).read_text().splitlines()
    return next(number for number, line in enumerate(lines, 1) if needle in line)


@pytest.mark.parametrize(
    ("old", "new", "needle", "message"),
    [
        pytest.param(
            "        - recipient: age1",
            "        - recipent: age1",
            "- recipent:",
            "sops metadata: an age entry needs a `recipient` (a misspelt key?): restore the "
            "file from git history",
            id="misspelt recipient",
        ),
        pytest.param(
            "    lastmodified:",
            f"    key_groups:\n        - {PROJECT_STAGING_AGE}\n    lastmodified:",
            "        - age1frf6",
            "a key group must be a mapping with `kms` and/or `age` lists, not "
            "'age1frf6ydmdmcjlkuzpxpvyz7efevqysl2p5gy9xr2pwcxlg08pwazscpeyjn'",
            id="key_groups: [a string]",
        ),
    ],
)
def test_check_names_broken_sops_metadata(
    hub_repo: Path,
    no_sops_keys: None,
    capsys: pytest.CaptureFixture[str],
    old: str,
    new: str,
    needle: str,
    message: str,
) -> None:
    text = (hub_repo / PUBLIC_STAGING).read_text()
    assert old in text
    (hub_repo / PUBLIC_STAGING).write_text(text.replace(old, new, 1))
    status, out, err = run(hub_repo, capsys, "check")
    assert status == 1
    assert f"  {PUBLIC_STAGING}:{sops_line(hub_repo, needle)}: {message}\n" in out
    assert "internal error" not in out + err


@pytest.mark.parametrize(
    ("rule", "line", "message"),
    [
        pytest.param(
            f"    key_groups:\n      - {PROJECT_STAGING_AGE}\n",
            7,
            "a key group must be a mapping with `kms` and/or `age` lists, not "
            "'age1frf6ydmdmcjlkuzpxpvyz7efevqysl2p5gy9xr2pwcxlg08pwazscpeyjn'",
            id="key_groups: [age1...]",
        ),
        pytest.param(
            "    key_groups:\n      - kms:\n          - arn: arn:aws:kms:us-east-1:1:key/x\n"
            "            context: [env, staging]\n",
            9,
            "a KMS key's `context` must be a mapping of names to values (env: staging)",
            id="kms context as a list",
        ),
    ],
)
def test_a_broken_creation_rule_is_named(
    hub_repo: Path,
    no_sops_keys: None,
    capsys: pytest.CaptureFixture[str],
    rule: str,
    line: int,
    message: str,
) -> None:
    config = hub_repo / ".sops.yaml"
    text = config.read_text()
    old = "    age: age1frf6ydmdmcjlkuzpxpvyz7efevqysl2p5gy9xr2pwcxlg08pwazscpeyjn\n"
    assert old in text
    config.write_text(text.replace(old, rule, 1))
    status, out, err = run(hub_repo, capsys, "check")
    assert (status, out) == (1, "")
    assert err == f"hubbot: error: .sops.yaml:{line}: {message}\n"
    # validate leaves a broken .sops.yaml to `secrets check`, but must not crash on it.
    main(["--repo", str(hub_repo), "validate"])
    assert "internal error" not in capsys.readouterr().err


def test_check_with_a_wrong_key_file_fails_naming_it_and_the_recipients(
    hub_repo: Path,
    other_age_key: AgeKey,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("SOPS_AGE_KEY_FILE", str(other_age_key.path))
    status, out, err = run(hub_repo, capsys, "check")
    assert (status, err) == (1, "")
    assert "no key here could open them" not in out
    assert (
        f"FAILED  the age key in SOPS_AGE_KEY_FILE ({other_age_key.path}) opens none of the "
        "secrets files: set it to the key file of one of their recipients\n"
    ) in out
    assert f"  {PUBLIC_STAGING}: encrypted for age {PROJECT_STAGING_AGE}\n" in out


def test_edit_with_an_editor_that_fails(
    keyed_repo: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("EDITOR", "false")
    monkeypatch.delenv("SOPS_EDITOR", raising=False)
    before = (keyed_repo / FILES[0]).read_text()
    status, out, err = run(keyed_repo, capsys, "edit", "tess-private", "prod")
    assert (status, out) == (1, "")
    assert err == (
        f"hubbot: error: {FILES[0]}: the editor (false) failed or could not be started: "
        "nothing was saved; check EDITOR (or SOPS_EDITOR)\n"
    )
    assert (keyed_repo / FILES[0]).read_text() == before
