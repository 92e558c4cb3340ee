"""The real sops binary with age keys and with KMS on moto's server.

Every failure gives one message naming the file and saying what to set or
fix, exit 1, nothing on stdout, and no secret anywhere.
"""

from __future__ import annotations

import base64
import re
from pathlib import Path

import pytest

from bot.main import main
from bot.redact import Redactor
from bot.sops import decryptor
from tests.fixtures.aws import forget_aws_credentials
from tests.fixtures.processes import free_port
from tests.fixtures.secrets import AgeKey, secrets_path, write_secrets

HUB, ENV = "tess-private", "staging"
FILE = secrets_path(HUB, ENV)
TOKEN = "9f2c41d7e0b8a6539f2c41d7e0b8a653"
COOKIE = "cookie-3a1f7be2c94d0e68"
CLIENT_ID = "client-id-0042"
CLIENT_SECRET = "client-secret-b77e91"
PLAINTEXT = f"""\
jupyterhub:
  proxy:
    secretToken: {TOKEN}
  hub:
    cookieSecret: {COOKIE}
    config:
      GitHubOAuthenticator:
        client_id: {CLIENT_ID}
        client_secret: {CLIENT_SECRET}
"""
VALUES = (TOKEN, COOKIE, CLIENT_ID, CLIENT_SECRET)
RESTORE = (
    "restore it from git history, or re-create it with `hubbot secrets edit` if the change "
    "was meant"
)


def render(repo: Path, capsys: pytest.CaptureFixture[str], env: str = ENV) -> tuple[int, str, str]:
    status = main(["--repo", str(repo), "render", HUB, env, "--decrypt"])
    captured = capsys.readouterr()
    for value in VALUES:
        assert value not in captured.out + captured.err
    return status, captured.out, captured.err


def assert_one_error(status: int, out: str, err: str, message: str) -> None:
    assert (status, out) == (1, "")
    assert err == f"hubbot: error: {FILE}: {message}\n"


@pytest.fixture
def age_repo(hub_repo: Path, age_env: AgeKey) -> Path:
    write_secrets(hub_repo, HUB, ENV, PLAINTEXT, age=[age_env.recipient])
    return hub_repo


def edit(repo: Path, pattern: str, change: str) -> None:
    """Change the first match of `pattern` in the secrets file by `change(match)`."""
    path = repo / FILE
    text = path.read_text()
    match = re.search(pattern, text, re.MULTILINE)
    assert match is not None, pattern
    path.write_text(text[: match.start(1)] + flip(match[1]) + text[match.end(1) :])


def flip(chunk: str) -> str:
    """The same base64 text with one character changed."""
    first = "B" if chunk[0] == "A" else "A"
    return first + chunk[1:]


def test_render_decrypts_with_age_and_masks(
    age_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, err = render(age_repo, capsys)
    assert (status, err) == (0, "")
    assert out.startswith(f"# {HUB}/{ENV}: the values helm receives (secrets decrypted and masked)")
    assert "    secretToken: <secret>\n" in out
    assert "        client_secret: <secret>\n" in out


def test_the_decryptor_registers_every_leaf_and_its_encodings(age_repo: Path) -> None:
    redactor = Redactor()
    data = decryptor(redactor)(FILE, (age_repo / FILE).read_text())
    assert data["jupyterhub"]["proxy"]["secretToken"] == TOKEN
    encoded = base64.b64encode(TOKEN.encode()).decode()
    assert redactor.redact(f"{TOKEN} {encoded} {CLIENT_ID}") == "<redacted> <redacted> <redacted>"


def test_a_short_value_is_a_warning_in_staging(hub_repo: Path, age_env: AgeKey) -> None:
    write_secrets(hub_repo, HUB, ENV, "a:\n  pin: '123'\n", age=[age_env.recipient])
    warnings: list[str] = []
    decryptor(Redactor(), warn=warnings.append)(FILE, (hub_repo / FILE).read_text())
    assert warnings == [
        f"hubbot: warning: {FILE}:2: `a.pin` is shorter than 4 characters, too short to "
        "redact from output reliably"
    ]


def test_a_short_value_is_refused_in_prod(
    hub_repo: Path, age_env: AgeKey, capsys: pytest.CaptureFixture[str]
) -> None:
    write_secrets(
        hub_repo, HUB, "prod", "a:\n  pin: '123'\n  ok: long-enough\n", age=[age_env.recipient]
    )
    status, out, err = render(hub_repo, capsys, "prod")
    assert (status, out) == (1, "")
    assert err == (
        f"hubbot: error: {secrets_path(HUB, 'prod')}:2: `a.pin` is shorter than 4 characters, "
        "too short to redact from output reliably: refused in prod; use a longer value\n"
    )


def test_a_missing_age_key_says_what_to_set(
    hub_repo: Path, age_key: AgeKey, capsys: pytest.CaptureFixture[str]
) -> None:
    write_secrets(hub_repo, HUB, ENV, PLAINTEXT, age=[age_key.recipient])
    assert_one_error(
        *render(hub_repo, capsys),
        f"cannot decrypt: no key could open it. age {age_key.recipient}: no age private key was "
        "found: set SOPS_AGE_KEY_FILE to the file holding it",
    )


def test_a_wrong_age_key_says_which_key_is_needed(
    hub_repo: Path,
    age_key: AgeKey,
    other_age_key: AgeKey,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    write_secrets(hub_repo, HUB, ENV, PLAINTEXT, age=[age_key.recipient])
    monkeypatch.setenv("SOPS_AGE_KEY_FILE", str(other_age_key.path))
    assert_one_error(
        *render(hub_repo, capsys),
        f"cannot decrypt: no key could open it. age {age_key.recipient}: the key in "
        f"SOPS_AGE_KEY_FILE ({other_age_key.path}) is a different key: set SOPS_AGE_KEY_FILE "
        "to this recipient's key file",
    )


TREE_TAMPERED = (
    "cannot decrypt: a value, or the name of its key, does not match its authentication tag: "
    "the file was changed outside sops (tampered with or hand-edited); " + RESTORE
)


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        (r"secretToken: ENC\[AES256_GCM,data:([A-Za-z0-9+/]{8})", TREE_TAMPERED),
        (r"client_id: ENC\[AES256_GCM,data:[^,]*,iv:([A-Za-z0-9+/]{8})", TREE_TAMPERED),
        (
            r"mac: ENC\[AES256_GCM,data:([A-Za-z0-9+/]{8})",
            "cannot decrypt: its MAC cannot be decrypted: the `sops.mac` value is damaged "
            "(tampered with or hand-edited); " + RESTORE,
        ),
    ],
    ids=["value", "iv", "mac"],
)
def test_a_flipped_character_is_one_clear_error(
    age_repo: Path, capsys: pytest.CaptureFixture[str], pattern: str, message: str
) -> None:
    edit(age_repo, pattern, flip)
    assert_one_error(*render(age_repo, capsys), message)


def test_a_damaged_data_key_is_reported_as_tampered(
    age_repo: Path, age_env: AgeKey, capsys: pytest.CaptureFixture[str]
) -> None:
    # The last armor line before END holds the age payload (the encrypted data key).
    edit(age_repo, r"^\s+([A-Za-z0-9+/]{8})[A-Za-z0-9+/=]*\n\s+-----END AGE", flip)
    assert_one_error(
        *render(age_repo, capsys),
        f"cannot decrypt: no key could open it. age {age_env.recipient}: its encrypted data key "
        "is damaged (tampered with?); " + RESTORE,
    )


def test_a_renamed_key_is_one_clear_error(
    age_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = age_repo / FILE
    path.write_text(path.read_text().replace("client_secret:", "client_secrets:"))
    assert_one_error(*render(age_repo, capsys), TREE_TAMPERED)


def test_a_removed_value_fails_the_mac(age_repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = age_repo / FILE
    path.write_text(re.sub(r"\n\s+client_id: ENC\[[^\]]*\]", "", path.read_text()))
    assert_one_error(
        *render(age_repo, capsys),
        "cannot decrypt: its MAC does not match its content: the file was changed outside sops "
        "(tampered with or hand-edited); " + RESTORE,
    )


# KMS on moto's server: the encryption context is enforced.

CONTEXT = {"hub": HUB, "env": ENV}


@pytest.fixture
def kms_repo(hub_repo: Path, kms_key: str) -> Path:
    write_secrets(hub_repo, HUB, ENV, PLAINTEXT, kms=[kms_key], context=CONTEXT)
    return hub_repo


def kms_error(arn: str, reason: str, context: str = f"env={ENV},hub={HUB}") -> str:
    return f"cannot decrypt: no key could open it. AWS KMS {arn} with context {context}: {reason}"


def test_render_decrypts_with_kms(kms_repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = render(kms_repo, capsys)
    assert (status, err) == (0, "")
    assert "    secretToken: <secret>\n" in out


def test_a_wrong_encryption_context_fails_clearly(
    kms_repo: Path, kms_key: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = kms_repo / FILE
    path.write_text(path.read_text().replace("env: staging", "env: prod"))
    assert_one_error(
        *render(kms_repo, capsys),
        kms_error(
            kms_key,
            "AWS KMS refused the data key: its encryption context or encrypted data key does not "
            "match what it was encrypted with (hand-edited?); " + RESTORE,
            context=f"env=prod,hub={HUB}",
        ),
    )


def test_no_aws_credentials_says_what_to_set(
    kms_repo: Path,
    kms_key: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    forget_aws_credentials(monkeypatch, tmp_path)
    assert_one_error(
        *render(kms_repo, capsys),
        kms_error(
            kms_key,
            "no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE, "
            "or a web identity role) for an identity allowed kms:Decrypt on it",
        ),
    )


def test_an_unreachable_kms_endpoint_is_named(
    kms_repo: Path,
    kms_key: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    endpoint = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    assert_one_error(
        *render(kms_repo, capsys),
        kms_error(
            kms_key,
            f"the KMS endpoint {endpoint} is unreachable: check AWS_ENDPOINT_URL, AWS_REGION and "
            "the network",
        ),
    )


def test_kms_and_age_failures_are_listed_together(
    hub_repo: Path,
    kms_key: str,
    age_key: AgeKey,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    write_secrets(
        hub_repo, HUB, ENV, PLAINTEXT, kms=[kms_key], age=[age_key.recipient], context=CONTEXT
    )
    endpoint = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    status, out, err = render(hub_repo, capsys)
    assert (status, out) == (1, "")
    assert err.count("\n") == 1
    assert f"AWS KMS {kms_key} with context env={ENV},hub={HUB}: the KMS endpoint" in err
    assert f"; age {age_key.recipient}: no age private key was found" in err
