"""`hubbot new-hub NAME --from HUB`: a copy with its own names, hostnames and secrets."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bot.hubploy import load_deployment
from bot.main import main
from bot.sops import decrypt_text
from bot.source import WorkTree
from tests.fixtures.repos import commit_all, git, validate, write
from tests.fixtures.secrets import AgeKey, age_rules, secrets_path, write_secrets

# The start-up check's fixtures: the real chart and the hub's own packages.
from tests.test_startup import hub_python, startup_env  # noqa: F401

ENVS = ("staging", "prod")
SOURCE_TOKENS = {
    env: {"proxy": f"proxy-token-{env}-0123456789abcdef", "hub": f"cookie-{env}-0123456789abcdef"}
    for env in ENVS
}


@pytest.fixture
def keyed_repo(hub_repo: Path, age_env: AgeKey) -> Path:
    """The repository with its secrets encrypted for the test's age key (committed)."""
    write(hub_repo, ".sops.yaml", age_rules(*((env, age_env.recipient) for env in ENVS)))
    for env in ENVS:
        tokens = SOURCE_TOKENS[env]
        write_secrets(
            hub_repo,
            "tess-public",
            env,
            f"jupyterhub:\n  proxy:\n    secretToken: {tokens['proxy']}\n"
            f"  hub:\n    cookieSecret: {tokens['hub']}\n",
        )
        write_secrets(
            hub_repo,
            "tess-private",
            env,
            f"jupyterhub:\n  proxy:\n    secretToken: {tokens['proxy']}\n  hub:\n    config:\n"
            "      GitHubOAuthenticator:\n        client_id: client-id-0123456789\n"
            "        client_secret: client-secret-0123456789\n",
        )
    commit_all(hub_repo, "secrets for the test key")
    return hub_repo


def new_hub(repo: Path, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    status = main(["--repo", str(repo), "new-hub", *args])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def decrypted(repo: Path, hub: str, env: str) -> dict[str, object]:
    file = secrets_path(hub, env)
    return decrypt_text(file, (repo / file).read_text(), cwd=repo)


def test_tess_workshop_from_tess_public_is_its_own_hub_and_validates(
    keyed_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, err = new_hub(keyed_repo, capsys, "tess-workshop", "--from", "tess-public")
    assert (status, err) == (0, "")

    source = WorkTree(keyed_repo)
    new = load_deployment(source, "tess-workshop")
    assert {env: (e.namespace, e.release, e.url) for env, e in new.environments.items()} == {
        "staging": (
            "tess-workshop-staging",
            "tess-workshop-staging",
            "https://staging.workshop.tess.omgwtf.in",
        ),
        "prod": ("tess-workshop-prod", "tess-workshop-prod", "https://workshop.tess.omgwtf.in"),
    }
    used = [
        (e.namespace, e.release, e.url)
        for hub in ("tess-public", "tess-private")
        for e in load_deployment(source, hub).environments.values()
    ]
    for env in new.environments.values():
        assert all(env.namespace != n and env.release != r and env.url != u for n, r, u in used)
    # One image, one tag: the same directory, never a copy.
    assert [image.path for image in new.images] == ["deployments/tess-private/images/default"]
    assert not (keyed_repo / "deployments/tess-workshop/images").exists()
    # Comments survive the copy; the hostnames in the values are the new hub's own.
    common = (keyed_repo / "deployments/tess-workshop/config/common.yaml").read_text()
    assert "# Anyone may start a server" in common
    staging = (keyed_repo / "deployments/tess-workshop/config/staging.yaml").read_text()
    assert "hosts: [staging.workshop.tess.omgwtf.in]" in staging
    hubploy = (keyed_repo / "deployments/tess-workshop/hubploy.yaml").read_text()
    assert hubploy.startswith("# tess-workshop (copied from tess-public): ")
    assert "# The same user image as tess-private" in hubploy

    for env in ENVS:
        secrets = decrypted(keyed_repo, "tess-workshop", env)
        proxy = secrets["jupyterhub"]["proxy"]["secretToken"]  # type: ignore[index]
        cookie = secrets["jupyterhub"]["hub"]["cookieSecret"]  # type: ignore[index]
        assert re.fullmatch(r"[0-9a-f]{64}", proxy)
        assert re.fullmatch(r"[0-9a-f]{64}", cookie)
        assert proxy != cookie
        assert {proxy, cookie}.isdisjoint(SOURCE_TOKENS[env].values())
        assert proxy not in out + err
        assert cookie not in out + err
    staging_secrets = decrypted(keyed_repo, "tess-workshop", "staging")
    assert staging_secrets != decrypted(keyed_repo, "tess-workshop", "prod")

    terraform = (keyed_repo / "infra/variables.tf").read_text()
    assert '"tess-private-prod", "tess-workshop-staging", "tess-workshop-prod"]' in terraform

    assert out.splitlines()[:3] == [
        "created deployments/tess-workshop from tess-public:",
        "  staging  namespace tess-workshop-staging, release tess-workshop-staging, "
        "https://staging.workshop.tess.omgwtf.in",
        "  prod     namespace tess-workshop-prod, release tess-workshop-prod, "
        "https://workshop.tess.omgwtf.in",
    ]
    checklist = out.split("Operator's checklist:\n", 1)[1].splitlines()
    assert checklist[0].startswith("  1. terraform apply in infra/")
    assert "tess-workshop-staging, tess-workshop-prod" in checklist[0]
    assert checklist[1].startswith(
        "  2. DNS: point staging.workshop.tess.omgwtf.in, workshop.tess.omgwtf.in at the hub's "
        "proxy load balancer"
    )
    assert checklist[2:] == ["  3. make check, then commit and open a pull request to staging"]
    assert "OAuth" not in out
    assert "EFS" not in out

    status, report = validate(keyed_repo, capsys)
    assert status == 0, report
    assert "ok      tess-workshop/staging" in report
    assert "ok      tess-workshop/prod" in report
    assert "6 of 6 hub environments valid" in report
    assert "ok      infra/ cross-check" in report
    assert main(["--repo", str(keyed_repo), "secrets", "check"]) == 0
    assert "6 of 6 secrets files ok" in capsys.readouterr().out


@pytest.mark.slow
@pytest.mark.usefixtures("startup_env")
def test_tess_workshop_passes_the_start_up_check(
    hub_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert new_hub(hub_repo, capsys, "tess-workshop", "--from", "tess-public")[0] == 0
    status, report = validate(hub_repo, capsys, "tess-workshop", startup=True)
    assert status == 0, report
    assert report.count("start-up: starts; login: a temporary user is admitted") == 2


def test_a_hub_with_oauth_and_home_directories_lists_what_cannot_be_made(
    keyed_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, err = new_hub(keyed_repo, capsys, "tess-lab", "--from", "tess-private")
    assert (status, err) == (0, "")
    for env in ENVS:
        secrets = decrypted(keyed_repo, "tess-lab", env)
        assert "config" not in secrets["jupyterhub"]["hub"]  # type: ignore[index]
    assert "client-id-0123456789" not in out
    staging = (keyed_repo / "deployments/tess-lab/config/staging.yaml").read_text()
    assert "oauth_callback_url: https://staging.lab.tess.omgwtf.in/hub/oauth_callback" in staging
    assert (
        "efsAccessPointId: fsap-05a6b7c8d9e0f1a2b  # tess-private's: replace with tess-lab's own"
    ) in staging
    assert "\n\njupyterhub:" in staging  # the blank line after the annotated key stays
    checklist = out.split("Operator's checklist:\n", 1)[1]
    assert (
        "OAuth app: register one per environment (the source hub's client cannot be reused) "
        "with the callback URLs https://staging.lab.tess.omgwtf.in/hub/oauth_callback, "
        "https://lab.tess.omgwtf.in/hub/oauth_callback"
    ) in checklist
    assert (
        "secrets not copied from tess-private/staging (they cannot be made here): "
        "jupyterhub.hub.config.GitHubOAuthenticator.client_id, "
        "jupyterhub.hub.config.GitHubOAuthenticator.client_secret; add them with "
        "`hubbot secrets edit tess-lab staging`"
    ) in checklist
    assert (
        "EFS access point for tess-lab/prod (infra/storage.tf makes one per environment; root "
        "it at a directory of its own, e.g. /homes/tess-lab/prod), its id into "
        "homeStorage.efsAccessPointId; deployments/tess-lab/config/prod.yaml:2 still names "
        "tess-private's fsap-0d1e2f3a4b5c6d7e8: replace it, or tess-lab's users share "
        "tess-private's home directories"
    ) in checklist
    status, report = validate(keyed_repo, capsys, "tess-lab")
    assert status == 0, report


def test_domain_names_the_new_hubs_prod_host(
    hub_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, _, err = new_hub(
        hub_repo, capsys, "workshop", "--from", "tess-public", "--domain", "workshop.example.org"
    )
    assert (status, err) == (0, "")
    environments = load_deployment(WorkTree(hub_repo), "workshop").environments
    urls = {env: e.url for env, e in environments.items()}
    assert urls == {
        "staging": "https://staging.workshop.example.org",
        "prod": "https://workshop.example.org",
    }


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("tess-private", "--from", "tess-public"),
            "hubbot: error: deployments/tess-private: already exists: choose another name",
        ),
        (
            ("tess-workshop", "--from", "tess-nope"),
            "hubbot: error: unknown hub 'tess-nope': the hubs in deployments/ are tess-private, "
            "tess-public",
        ),
        (
            ("Tess_Workshop", "--from", "tess-public"),
            "hubbot: error: hub name 'Tess_Workshop' is not valid: use lowercase letters, digits "
            "and `-`, starting and ending with a letter or digit, at most 45 characters (its "
            "release names `<name>-<env>` must fit helm's 53)",
        ),
        (
            ("w" * 46, "--from", "tess-public"),
            f"hubbot: error: hub name '{'w' * 46}' is not valid",
        ),
        (
            ("tess-workshop\n", "--from", "tess-public"),
            "hubbot: error: hub name 'tess-workshop\\n' is not valid",
        ),
        (
            ("tess-workshop", "--from", "tess-public", "--domain", "tess.omgwtf.in"),
            "hubbot: error: deployments/tess-public/hubploy.yaml:14: the new hub's staging "
            "hostname staging.tess.omgwtf.in is already used by tess-public/staging: choose "
            "another name or --domain",
        ),
        (
            ("tess-workshop", "--from", "tess-public", "--domain", "not a host"),
            "hubbot: error: --domain 'not a host' is not a hostname such as hubs.example.org",
        ),
    ],
)
def test_bad_input_is_one_message_and_writes_nothing(
    hub_repo: Path, capsys: pytest.CaptureFixture[str], args: tuple[str, ...], message: str
) -> None:
    status, out, err = new_hub(hub_repo, capsys, *args)
    assert (status, out) == (1, "")
    assert len(err.splitlines()) == 1, err
    assert err.startswith(message), err
    assert git(hub_repo, "status", "--porcelain", "--untracked-files=all") == ""


def test_secrets_without_a_creation_rule_write_nothing(
    hub_repo: Path, capsys: pytest.CaptureFixture[str], age_key: AgeKey
) -> None:
    rules = "creation_rules:\n"
    for hub in ("tess-public", "tess-private"):
        rules += f"  - path_regex: deployments/{hub}/secrets/.*\n    age: {age_key.recipient}\n"
    write(hub_repo, ".sops.yaml", rules)
    commit_all(hub_repo, "per-hub rules")
    status, out, err = new_hub(hub_repo, capsys, "tess-workshop", "--from", "tess-public")
    assert (status, out) == (1, "")
    assert err == (
        "hubbot: error: .sops.yaml: no creation rule matches "
        "deployments/tess-workshop/secrets/staging.yaml: add one for staging, or widen its "
        "path_regex, so the new secrets can be encrypted\n"
    )
    assert git(hub_repo, "status", "--porcelain", "--untracked-files=all") == ""
