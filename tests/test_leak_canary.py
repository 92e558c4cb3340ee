"""Leak canary: secrets of awkward shapes in both hubs, every command, nothing escapes.

Each command runs in process (through bot.main.main) and as a real process
(`python -m bot`), on success and failure paths, including an exception raised
mid-render. No canary, and none of its encodings, may appear in stdout,
stderr, files written for GitHub, or any file left in the temp dirs or
/dev/shm.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest

from bot import freight, github, helm, records
from bot.main import main
from bot.redact import Redactor
from tests.fixtures.github import FakeGitHub
from tests.fixtures.record_keys import PUBLIC, SIGNING, RecordKeys, make_record_keys
from tests.fixtures.repos import commit_all, git, write
from tests.fixtures.secrets import (
    AgeKey,
    age_rules,
    files_holding_since,
    places_decrypted_data_could_stay,
    secrets_path,
    wait_until,
    write_secrets,
)

HUBS = ("tess-private", "tess-public")
ENVS = ("staging", "prod")
SHM = Path("/dev/shm")


def make_canaries() -> dict[str, str]:
    pem_body = base64.encodebytes(secrets.token_bytes(96)).decode().strip()
    return {
        "long_random": "canary" + secrets.token_hex(32),
        "base64": base64.b64encode(secrets.token_bytes(45)).decode(),
        "quotes_newlines": f'it\'s a "quoted"\tvalue\nsecond line {secrets.token_hex(8)}\\end',
        "pem": f"-----BEGIN PRIVATE KEY-----\n{pem_body}\n-----END PRIVATE KEY-----\n",
    }


def needles(value: str) -> set[str]:
    """The value and its encodings, computed here independently of bot.redact."""
    raw = value.encode()
    forms = {
        value,
        base64.b64encode(raw).decode(),
        base64.urlsafe_b64encode(raw).decode(),
        json.dumps(value)[1:-1],
        quote(value, safe=""),
        quote_plus(value),
        repr(value)[1:-1],
    }
    # Lines of a multi-line value that are secret on their own (the PEM body).
    forms |= {line for line in value.splitlines() if len(line) >= 16 and "-----" not in line}
    return forms


def plaintext(hub: str, canaries: dict[str, str]) -> str:
    proxy = {"secretToken": canaries["long_random"]}
    hub_values: dict[str, object] = {"cookieSecret": canaries["base64"]}
    if hub == "tess-private":
        hub_values["config"] = {
            "GitHubOAuthenticator": {
                "client_id": canaries["quotes_newlines"],
                "client_secret": canaries["pem"],
            }
        }
    else:
        proxy["secretToken"] = canaries["pem"]
        hub_values["cookieSecret"] = canaries["quotes_newlines"]
    return json.dumps({"jupyterhub": {"proxy": proxy, "hub": hub_values}})


class Leaks:
    """Collects everything a run produced and checks it for canaries."""

    def __init__(self, canaries: list[str], roots: list[Path]) -> None:
        self.needles = {needle for value in canaries for needle in needles(value)}
        self.roots = roots

    def check_text(self, text: str, where: str) -> None:
        found = [n for n in self.needles if n in text]
        assert not found, f"a canary leaked into {where}"

    def check_files(self) -> None:
        for root in self.roots:
            for path in _files(root):
                try:
                    data = path.read_bytes()
                except OSError:
                    continue
                text = data.decode("utf-8", errors="replace")
                self.check_text(text, str(path))


def _files(root: Path) -> Iterator[Path]:
    for directory, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if d != ".git"]  # git objects hold ciphertext, compressed
        for name in names:
            yield Path(directory) / name


@pytest.fixture
def canaries() -> dict[str, str]:
    return make_canaries()


@pytest.fixture
def temp_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """TMPDIR for everything the commands start, so every temp file is scanned."""
    root = tmp_path / "tmp"
    root.mkdir()
    monkeypatch.setenv("TMPDIR", str(root))
    monkeypatch.setattr(tempfile, "tempdir", str(root))
    return root


@pytest.fixture
def canary_repo(
    hub_repo: Path,
    age_env: AgeKey,
    canaries: dict[str, str],
    temp_root: Path,
    helm_bin: str,
    real_chart_packages: Path,
) -> Path:
    """Both hubs' secrets hold canaries; the working tree changes one, so diffs see it.

    The real jupyterhub chart renders them: its hub Secret embeds every value (base64).
    """
    rules = age_rules(("staging", age_env.recipient), ("prod", age_env.recipient))
    write(hub_repo, ".sops.yaml", rules)
    for hub in HUBS:
        for env in ENVS:
            write_secrets(hub_repo, hub, env, plaintext(hub, canaries))
    commit_all(hub_repo, "canary secrets")
    changed = dict(canaries, long_random="canary" + secrets.token_hex(32))
    canaries["changed"] = changed["long_random"]
    write_secrets(hub_repo, "tess-private", "staging", plaintext("tess-private", changed))
    return hub_repo


@pytest.fixture
def leaks(canary_repo: Path, canaries: dict[str, str], tmp_path: Path) -> Iterator[Leaks]:
    before = set(_files(SHM))
    checker = Leaks(list(canaries.values()), [tmp_path])
    yield checker
    checker.check_files()
    for path in set(_files(SHM)) - before:
        if path.exists():
            checker.check_text(path.read_bytes().decode(errors="replace"), str(path))


def commands(repo: Path, github: Path) -> list[tuple[list[str], int]]:
    """Every command, with the exit status it must end with."""
    out = str(github / "diff.md")
    runs: list[tuple[list[str], int]] = [
        (["validate", "--no-startup"], 0),
        (["plan", "--base", "HEAD"], 0),
        (["diff", "--base", "HEAD", "--decrypt", "--format", "markdown", "--output", out], 0),
        (["diff", "--base", "HEAD", "--decrypt", "--format", "json"], 0),
        (["diff", "--base", "HEAD", "--decrypt", "--format", "text"], 0),
        (["secrets", "check"], 0),
        (["secrets", "decrypt", "tess-private", "prod"], 1),  # refused: CI=true, not a file
        (["deploy", "tess-private", "tess-public", "staging", "--dry-run"], 0),
    ]
    for hub in HUBS:
        for env in ENVS:
            runs.append((["render", hub, env], 0))
            runs.append((["render", hub, env, "--decrypt"], 0))
            runs.append((["render", hub, env, "--decrypt", "--manifests"], 0))
            key = "jupyterhub.proxy.secretToken"
            runs.append((["explain", hub, env, key], 0))
    runs.append((["render", "tess-private", "dev", "--decrypt"], 1))
    return [(["--repo", str(repo), *args], status) for args, status in runs]


@pytest.fixture
def github_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The files GitHub Actions would read back: outputs, job summary, the diff artifact."""
    directory = tmp_path / "github"
    directory.mkdir()
    monkeypatch.setenv("GITHUB_OUTPUT", str(directory / "output"))
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(directory / "summary.md"))
    monkeypatch.setenv("CI", "true")
    return directory


def test_no_canary_escapes_any_command_in_process(
    canary_repo: Path,
    leaks: Leaks,
    github_env: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(github_env)
    for argv, status in commands(canary_repo, github_env):
        assert main(argv) == status, argv
        captured = capsys.readouterr()
        leaks.check_text(captured.out, f"stdout of {argv}")
        leaks.check_text(captured.err, f"stderr of {argv}")
    assert (github_env / "summary.md").read_text().strip()
    report = (github_env / "diff.md").read_text()
    assert "<secret>" in report
    # The manifests were rendered, secrets decrypted, not just skipped.
    assert "Manifests, resources: 1 changed (Secret/hub)" in report
    assert "hub.config.ConfigurableHTTPProxy.auth_token: <secret, changed>" in report


def test_no_canary_escapes_any_command_as_a_process(
    canary_repo: Path, leaks: Leaks, github_env: Path
) -> None:
    for argv, status in commands(canary_repo, github_env):
        done = subprocess.run(
            [sys.executable, "-m", "bot", *argv],
            capture_output=True,
            text=True,
            cwd=github_env,
            check=False,
        )
        assert done.returncode == status, (argv, done.stderr[-2000:])
        leaks.check_text(done.stdout, f"stdout of {argv}")
        leaks.check_text(done.stderr, f"stderr of {argv}")


def _explode(merged: object) -> object:
    """A bug mid-render whose message holds every decrypted value (repr'd, as tracebacks do)."""
    raise RuntimeError(f"cannot mask {merged!r}")


def test_an_exception_mid_render_is_redacted(
    canary_repo: Path,
    leaks: Leaks,
    canaries: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr("bot.commands.render.masked", _explode)
    status = main(["--repo", str(canary_repo), "render", "tess-public", "prod", "--decrypt"])
    captured = capsys.readouterr()
    assert (status, captured.out) == (
        1,
        "# tess-public/prod: the values helm receives (secrets decrypted and masked)\n",
    )
    assert "RuntimeError: cannot mask" in captured.err
    assert "<redacted>" in captured.err
    assert captured.err.endswith("hubbot: internal error (a bug in hubbot): please report it\n")
    leaks.check_text(captured.out + captured.err, "the bug report")


SCRIPT = """
import sys
import bot.commands.render
from bot.errors import HubbotError

def explode(merged):
    document = merged.document
    print(document, file=sys.stderr)  # a stray debugging print
    raise HubbotError("bad value: " + repr(document))

bot.commands.render.masked = explode
from bot.main import main
sys.exit(main(sys.argv[1:]))
"""


def test_an_error_and_a_print_mid_render_in_a_process_are_redacted(
    canary_repo: Path, leaks: Leaks
) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            SCRIPT,
            "--repo",
            str(canary_repo),
            "render",
            "tess-private",
            "staging",
            "--decrypt",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 1
    assert "hubbot: error: bad value: {" in done.stderr
    leaks.check_text(done.stdout + done.stderr, "the process's output")


def test_a_tampered_file_fails_without_partial_output(
    canary_repo: Path, leaks: Leaks, capsys: pytest.CaptureFixture[str]
) -> None:
    path = canary_repo / secrets_path("tess-public", "staging")
    text = path.read_text()
    start = text.index("cookieSecret: ENC[AES256_GCM,data:") + len(
        "cookieSecret: ENC[AES256_GCM,data:"
    )
    path.write_text(text[:start] + ("A" if text[start] != "A" else "B") + text[start + 1 :])
    status = main(["--repo", str(canary_repo), "render", "tess-public", "staging", "--decrypt"])
    captured = capsys.readouterr()
    assert (status, captured.out) == (1, "")
    assert captured.err.startswith(
        "hubbot: error: deployments/tess-public/secrets/staging.yaml: cannot decrypt: a value, "
    )
    leaks.check_text(captured.err, "stderr")


EDITOR = """\
#!/bin/sh
echo "$$ $1" > "$HUBBOT_TEST_RECORD.new"
mv "$HUBBOT_TEST_RECORD.new" "$HUBBOT_TEST_RECORD"
exec sleep 120 </dev/null >/dev/null 2>&1
"""


def editing(tmp_path: Path) -> tuple[dict[str, str], Path]:
    """The environment of a `secrets edit` whose editor is EDITOR, and the file where
    that editor records what it saw."""
    editor = tmp_path / "editor.sh"
    editor.write_text(EDITOR)
    editor.chmod(0o700)
    record = tmp_path / "record"
    env = dict(os.environ, EDITOR=str(editor), HUBBOT_TEST_RECORD=str(record))
    env.pop("SOPS_EDITOR", None)
    return env, record


def test_sigterm_while_editing_leaves_no_plaintext(
    canary_repo: Path, canaries: dict[str, str], tmp_path: Path, leaks: Leaks
) -> None:
    env, record = editing(tmp_path)
    command = [sys.executable, "-m", "bot", "--repo", str(canary_repo)]
    process = subprocess.Popen(
        [*command, "secrets", "edit", "tess-private", "prod"],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    editor_pid = None
    try:
        while not record.exists():
            assert process.poll() is None, process.communicate()
            time.sleep(0.05)
        pid, plaintext_copy = record.read_text().split(maxsplit=1)
        editor_pid = int(pid)
        held = Path(plaintext_copy.strip())
        assert held.is_relative_to(SHM)
        assert canaries["long_random"] in held.read_text()  # sops's copy for the editor
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=60)
    finally:
        if editor_pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(editor_pid, signal.SIGKILL)
        if process.poll() is None:
            process.kill()
    assert process.returncode == 128 + signal.SIGTERM
    assert not held.exists()
    assert not any(parent.exists() for parent in held.parents if parent.name.startswith("hubbot-"))
    leaks.check_text(out + err, "the output")


def test_sigkill_of_the_process_group_mid_edit_leaves_no_plaintext_anywhere(
    canary_repo: Path, canaries: dict[str, str], tmp_path: Path
) -> None:
    """Nothing can run at SIGKILL: the buffer's directory goes by the watchdog's hand."""
    env, record = editing(tmp_path)
    since = time.time() - 1
    process = subprocess.Popen(
        [sys.executable, "-m", "bot", "--repo", str(canary_repo), "secrets", "edit",
         "tess-private", "prod"],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: bot, sops and the editor
    )
    try:
        assert wait_until(record.exists, 60), "the editor never started"
        held = Path(record.read_text().split(maxsplit=1)[1].strip())
        assert canaries["long_random"] in held.read_text()  # sops's copy for the editor
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    buffer_dir = next(p for p in held.parents if p.name.startswith("hubbot-"))
    assert wait_until(lambda: not buffer_dir.exists()), f"{buffer_dir} outlived the bot"
    leftovers = files_holding_since(
        list(canaries.values()), places_decrypted_data_could_stay(canary_repo), since
    )
    assert leftovers == []


def test_the_checker_finds_a_leak(canaries: dict[str, str], tmp_path: Path) -> None:
    """The canary check itself can fail: a file holding an encoding of a canary is caught."""
    checker = Leaks(list(canaries.values()), [tmp_path])
    encoded = quote(canaries["quotes_newlines"], safe="")
    (tmp_path / "leak.txt").write_text(f"x={encoded}")
    with pytest.raises(AssertionError, match="a canary leaked into"):
        checker.check_files()


# helm reads every number as float64 and prints 799679631873 as 7.99679631873e+11, or
# with any precision a template asks for: no list of encodings can cover that.
NUMBER = 799679631873
NUMBER_FORMS = ("799679631873", "7.99679631873e+11", "7.99679631873e11", "7.99679631873E+11")


def test_helm_prints_a_number_in_a_form_no_redactor_registers(
    hub_chart_offline_ready: Path,
) -> None:
    """Why numbers are refused rather than redacted: helm's own rendering of one."""
    values = json.dumps({"jupyterhub": {"hub": {"revisionHistoryLimit": NUMBER}}})
    rendered = helm.template(hub_chart_offline_ready, "tess", "tess", values)
    assert "revisionHistoryLimit: 7.99679631873e+11" in rendered
    redactor = Redactor()
    redactor.register(str(NUMBER))
    assert "7.99679631873e+11" in redactor.redact(rendered)


def numeric_secret_repo(repo: Path, age: AgeKey, key: str, value: str) -> Path:
    """tess-public staging holds `jupyterhub.hub.KEY` (a dotted path) as a secret."""
    write(repo, ".sops.yaml", age_rules(("staging", age.recipient), ("prod", age.recipient)))
    *parents, leaf = key.split(".")
    nested = f"{leaf}: {value}"
    for parent in reversed(parents):
        nested = f"{parent}: {{{nested}}}"
    document = (
        "jupyterhub:\n"
        f"  proxy: {{secretToken: canary{secrets.token_hex(16)}}}\n"
        "  hub:\n"
        f"    cookieSecret: {secrets.token_hex(32)}\n"
        f"    {nested}\n"
    )
    write_secrets(repo, "tess-public", "staging", document)
    return repo


@pytest.mark.parametrize(
    ("key", "value"),
    [
        # The chart prints it as `revisionHistoryLimit: 7.99679631873e+11`: the leak.
        ("revisionHistoryLimit", str(NUMBER)),
        ("revisionHistoryLimit", f"{NUMBER}.5"),
        # An all-digit API id for the hub's environment: the chart fails on its float64.
        ("extraEnv.TESS_API_ID", "7.99679631873e+11"),
    ],
)
def test_a_numeric_secret_is_refused_with_quote_it_by_every_command(
    hub_repo: Path, age_env: AgeKey, helm_bin: str, real_chart_packages: Path, key: str,
    value: str, capsys: pytest.CaptureFixture[str],
) -> None:
    repo = numeric_secret_repo(hub_repo, age_env, key, value)
    kind = "int" if value == str(NUMBER) else "float"
    file = secrets_path("tess-public", "staging")
    lines = (repo / file).read_text().splitlines()
    line = next(n for n, text in enumerate(lines, 1) if f"{key.split('.')[-1]}: ENC[" in text)
    message = (
        f"{file}:{line}: `jupyterhub.hub.{key}` is a number "
        f"(sops type {kind}): helm reads numbers as float64 and prints them in forms "
        "(12345678901 as 1.2345678901e+10) that cannot be redacted; a secret must be a string: "
        "quote it (`hubbot secrets edit tess-public staging`)"
    )
    for args in (
        ["render", "tess-public", "staging", "--manifests", "--decrypt"],
        ["render", "tess-public", "staging", "--decrypt"],
        ["render", "tess-public", "staging"],
        ["secrets", "check"],
    ):
        status = main(["--repo", str(repo), *args])
        captured = capsys.readouterr()
        assert not [form for form in NUMBER_FORMS if form in captured.out + captured.err], args
        assert status == 1, args
        assert message in captured.out + captured.err, args
    status = main(["--repo", str(repo), "validate", "--no-startup", "tess-public"])
    captured = capsys.readouterr()
    assert status == 1
    assert message in captured.out


def test_a_quoted_number_is_a_string_and_redacted_in_every_rendering(
    hub_repo: Path, age_env: AgeKey, helm_bin: str, real_chart_packages: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    repo = numeric_secret_repo(hub_repo, age_env, "extraEnv.TESS_API_ID", f'"{NUMBER}"')
    status = main(["--repo", str(repo), "render", "tess-public", "staging", "--manifests",
                   "--decrypt"])
    captured = capsys.readouterr()
    assert (status, captured.err) == (0, "")
    assert "value: <redacted>" in captured.out
    assert not [form for form in NUMBER_FORMS if form in captured.out]


# --- the record signing key -------------------------------------------------------------


def signing_key_canaries(keys: RecordKeys) -> dict[str, str]:
    """HUBBOT_RECORD_SIGNING_KEY values a deploy job must refuse, each a secret."""
    body = base64.encodebytes(secrets.token_bytes(48)).decode().strip()
    return {
        "another environment's key": keys.signing["prod"],
        "a key cut short": base64.b64encode(secrets.token_bytes(31)).decode(),
        "a pem": f"-----BEGIN PRIVATE KEY-----\n{body}\n-----END PRIVATE KEY-----\n",
    }


def key_forms(value: str) -> list[str]:
    """The value, and the raw key bytes it holds in the forms a slip would print them."""
    forms = [value]
    with contextlib.suppress(ValueError):
        raw = base64.b64decode(value, validate=True)
        forms += [raw.hex(), base64.urlsafe_b64encode(raw).decode().rstrip("=")]
    return forms


@pytest.mark.parametrize("shape", ["another environment's key", "a key cut short", "a pem"])
def test_a_refused_signing_key_escapes_no_deploy(
    canary_repo: Path,
    github_env: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    shape: str,
) -> None:
    keys = make_record_keys()
    value = signing_key_canaries(keys)[shape]
    monkeypatch.delenv("GITHUB_TOKEN", raising=False)
    monkeypatch.setenv(SIGNING, value)
    monkeypatch.setenv(PUBLIC, keys.public())
    checker = Leaks(key_forms(value), [tmp_path])
    argv = ["--repo", str(canary_repo), "deploy", "tess-public", "staging"]

    assert main(argv) == 1
    captured = capsys.readouterr()
    done = subprocess.run([sys.executable, "-m", "bot", *argv], capture_output=True, text=True,
                          cwd=github_env, check=False)

    for err in (captured.err, done.stderr):
        assert err.startswith("hubbot: error: HUBBOT_RECORD_SIGNING_KEY is "), err
    assert done.returncode == 1
    checker.check_text(captured.out + captured.err, "the deploy's output in process")
    checker.check_text(done.stdout + done.stderr, "the deploy's output as a process")
    checker.check_files()


def test_a_signed_record_sends_github_only_the_signature(
    hub_repo: Path, github_api: FakeGitHub, capsys: pytest.CaptureFixture[str]
) -> None:
    keys = make_record_keys()
    key = keys.key("staging")
    sha = git(hub_repo, "rev-parse", "HEAD")
    ours = freight.Checkout(sha, git(hub_repo, "rev-parse", "HEAD^{tree}"), ())

    freight.record_staging_run(github.client_from_env(github_api.env()), ours, key)

    checker = Leaks(key_forms(keys.signing["staging"]), [])
    sent = json.dumps([[r.method, r.path, r.body] for r in github_api.requests], default=str)
    checker.check_text(sent, "the requests to GitHub")
    checker.check_text(repr(key) + repr(keys), "the keys' repr")
    (status,) = [s for statuses in github_api.statuses.values() for s in statuses]
    assert status["description"].startswith(records.PROOF_PREFIX)
    out, err = capsys.readouterr()
    checker.check_text(out + err, "the output")
