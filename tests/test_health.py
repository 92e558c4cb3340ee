"""The post-deploy health check.

API readiness and its backoff run against a stand-in (pytest-httpserver) that
can answer 502 on cue; login runs against the real JupyterHub and authenticators.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest
from pytest_httpserver import HTTPServer

from bot.errors import HubbotError
from bot.health import OAuthLogin, Patience, TmpLogin, Unchecked, check, check_login, login_for
from tests.fixtures.jupyterhub import Hub, HubRuntime, StartHub
from tests.fixtures.processes import free_port


class FakeClock:
    """Time that passes only when the check sleeps: no test waits for real."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def patience(self, deadline: float = 60) -> Patience:
        return Patience(deadline=deadline, first_wait=2, max_wait=10,
                        request_timeout=2, sleep=self.sleep, clock=lambda: self.now)


def test_a_healthy_hub_answers_its_version_at_once(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/hub/api/").respond_with_json({"version": "5.2.1"})
    clock = FakeClock()

    assert check(httpserver.url_for("/").rstrip("/"), clock.patience()) == "5.2.1"
    assert clock.sleeps == []


def test_the_check_retries_with_backoff_until_the_hub_answers(httpserver: HTTPServer) -> None:
    for _ in range(3):
        httpserver.expect_ordered_request("/hub/api/").respond_with_data("bad gateway", 502)
    httpserver.expect_ordered_request("/hub/api/").respond_with_json({"version": "5.2.1"})
    clock = FakeClock()

    assert check(httpserver.url_for("/"), clock.patience()) == "5.2.1"
    assert clock.sleeps == [2, 4, 8]


@pytest.mark.parametrize(
    ("answer", "last"),
    [
        (("bad gateway", 502), "HTTP 502"),
        (("<html>login</html>", 200), "HTTP 200 but not JSON"),
        (('{"hub": "up"}', 200), "HTTP 200 but no `version` in the JSON"),
    ],
)
def test_a_hub_that_never_answers_its_version_fails_after_the_deadline(
    httpserver: HTTPServer, answer: tuple[str, int], last: str
) -> None:
    httpserver.expect_request("/hub/api/").respond_with_data(answer[0], answer[1])
    clock = FakeClock()
    url = httpserver.url_for("/").rstrip("/")

    with pytest.raises(HubbotError) as raised:
        check(url, clock.patience(deadline=30))

    assert clock.sleeps == [2, 4, 8, 10]
    assert str(raised.value) == (
        f"health check failed: {url}/hub/api/ gave no JupyterHub version after 5 attempt(s) "
        f"in 24s (last: {last})"
    )


def test_an_unreachable_hub_says_there_was_no_answer() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    clock = FakeClock()

    with pytest.raises(HubbotError) as raised:
        check(url, clock.patience(deadline=5))

    assert str(raised.value) == (
        f"health check failed: {url}/hub/api/ gave no JupyterHub version after 2 attempt(s) "
        "in 2s (last: no answer: ConnectionError)"
    )


# --- login, against the real JupyterHub (tests/fixtures/jupyterhub.py) -------------------

TMP = {"JupyterHub": {"authenticator_class": "tmp"}}
GITHUB = {
    "JupyterHub": {"authenticator_class": "github"},
    "GitHubOAuthenticator": {
        "client_id": "tess-client",
        "client_secret": "never-needed-by-the-check",
        "allowed_organizations": ["tess-science"],
        "scope": ["read:org"],
    },
}
GITHUB_AUTHORIZE = "https://github.com/login/oauth/authorize"


def quick() -> Patience:
    return Patience(deadline=30, first_wait=0.2, max_wait=1, request_timeout=10)


def with_section(config: dict[str, Any], section: str, **settings: Any) -> dict[str, Any]:
    merged = copy.deepcopy(config)
    merged.setdefault(section, {}).update(settings)
    return merged


def without(config: dict[str, Any], section: str, key: str) -> dict[str, Any]:
    trimmed = copy.deepcopy(config)
    del trimmed[section][key]
    return trimmed


@pytest.mark.slow
def test_a_tmp_hub_that_allows_all_admits_a_temporary_user_without_spawning(
    start_jupyterhub: StartHub,
) -> None:
    config = with_section(TMP, "Authenticator", allow_all=True)
    hub = start_jupyterhub(config)

    assert check_login(hub.url, login_for(config), quick()) == (
        "login: a temporary user is admitted"
    )
    log = hub.log.read_text()
    assert "302 GET /hub/tmplogin -> /hub/spawn" in log
    assert "GET /hub/spawn " not in log


@pytest.mark.slow
def test_a_tmp_hub_without_an_allow_rule_admits_nobody_and_says_so(
    start_jupyterhub: StartHub,
) -> None:
    hub = start_jupyterhub(TMP)

    with pytest.raises(HubbotError) as raised:
        check_login(hub.url, login_for(TMP), quick())

    assert str(raised.value) == (
        f"health check failed: {hub.url}/hub/api/ answers, but login: /hub/tmplogin gave "
        "HTTP 500 (Internal Server Error) instead of a user: nobody can log in"
    )


@pytest.fixture(scope="module")
def github_hub(jupyterhub_runtime: HubRuntime, tmp_path_factory: pytest.TempPathFactory
               ) -> Iterator[Hub]:
    with jupyterhub_runtime.run(GITHUB, tmp_path_factory.mktemp("github") / "hub") as hub:
        yield hub


@pytest.mark.slow
@pytest.mark.parametrize("secrets_known", [True, False])
def test_a_github_hub_sends_users_to_github_with_its_client_id_and_own_callback(
    github_hub: Hub, secrets_known: bool
) -> None:
    login = login_for(GITHUB, secrets_known=secrets_known)

    verdict = check_login(github_hub.url, login, quick())

    client = "the configured client id" if secrets_known else "a client id"
    assert verdict == (
        f"login: /hub/oauth_login sends users to {GITHUB_AUTHORIZE} with {client} and the "
        f"callback {github_hub.url}/hub/oauth_callback"
    )


@pytest.mark.slow
def test_a_github_hub_with_another_client_id_fails_without_printing_either(
    github_hub: Hub,
) -> None:
    configured = with_section(GITHUB, "GitHubOAuthenticator", client_id="tess-client-prod")

    with pytest.raises(HubbotError) as raised:
        check_login(github_hub.url, login_for(configured), quick())

    assert str(raised.value) == (
        f"health check failed: {github_hub.url}/hub/api/ answers, but login: /hub/oauth_login "
        f"sends users to {GITHUB_AUTHORIZE} with a client_id that is not the configured one"
    )
    assert "tess-client" not in str(raised.value)


@pytest.mark.slow
def test_a_github_hub_whose_callback_is_on_another_host_fails(
    start_jupyterhub: StartHub,
) -> None:
    elsewhere = "https://staging.private.tess.omgwtf.in/hub/oauth_callback"
    config = with_section(GITHUB, "GitHubOAuthenticator", oauth_callback_url=elsewhere)
    hub = start_jupyterhub(config)

    with pytest.raises(HubbotError) as raised:
        check_login(hub.url, login_for(config), quick())

    assert str(raised.value) == (
        f"health check failed: {hub.url}/hub/api/ answers, but login: /hub/oauth_login "
        f"sends users to {GITHUB_AUTHORIZE} with redirect_uri {elsewhere}, not "
        f"{hub.url}/hub/oauth_callback: GitHub would send them to another host"
    )


@pytest.mark.slow
def test_a_github_hub_without_a_client_id_admits_nobody(start_jupyterhub: StartHub) -> None:
    config = without(GITHUB, "GitHubOAuthenticator", "client_id")
    hub = start_jupyterhub(config)

    with pytest.raises(HubbotError) as raised:
        check_login(hub.url, login_for(config), quick())

    assert str(raised.value) == (
        f"health check failed: {hub.url}/hub/api/ answers, but login: /hub/oauth_login "
        f"sends users to {GITHUB_AUTHORIZE} with no client_id: nobody can log in"
    )


@pytest.mark.slow
def test_a_generic_oauth_hub_goes_to_its_own_authorize_url(start_jupyterhub: StartHub) -> None:
    authorize = "https://login.example.org/oauth2/authorize"
    config = {
        "JupyterHub": {"authenticator_class": "generic-oauth"},
        "OAuthenticator": {"client_id": "generic-client", "client_secret": "unused"},
        "GenericOAuthenticator": {
            "authorize_url": authorize,
            "token_url": "https://login.example.org/oauth2/token",
            "userdata_url": "https://login.example.org/oauth2/userinfo",
            "allow_all": True,
        },
    }
    hub = start_jupyterhub(config)

    assert check_login(hub.url, login_for(config), quick()) == (
        f"login: /hub/oauth_login sends users to {authorize} with the configured client id "
        f"and the callback {hub.url}/hub/oauth_callback"
    )
    moved = with_section(config, "GenericOAuthenticator",
                         authorize_url="https://sso.example.org/authorize")
    with pytest.raises(HubbotError) as raised:
        check_login(hub.url, login_for(moved), quick())
    assert str(raised.value) == (
        f"health check failed: {hub.url}/hub/api/ answers, but login: /hub/oauth_login "
        f"sends users to {authorize}, not to the configured https://sso.example.org/authorize"
    )


def test_a_login_that_never_answers_is_retried_briefly_then_fails() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    clock = FakeClock()

    with pytest.raises(HubbotError) as raised:
        check_login(url, TmpLogin(), clock.patience())

    assert clock.sleeps == [2, 4]
    assert str(raised.value) == (
        f"health check failed: {url}/hub/api/ answers, but login: /hub/tmplogin gave no "
        "answer after 3 attempt(s) (last: ConnectionError)"
    )


# --- which login a hub's config asks for (plain data from the merged values) ------------


@pytest.mark.parametrize("name", ["tmp", "tmpauthenticator.TmpAuthenticator"])
def test_tmp_in_any_spelling_is_probed_through_tmplogin(name: str) -> None:
    assert login_for({"JupyterHub": {"authenticator_class": name}}) == TmpLogin()


def test_github_settings_come_from_its_section_then_oauthenticator_s() -> None:
    config = {
        "JupyterHub": {"authenticator_class": "oauthenticator.github.GitHubOAuthenticator"},
        "OAuthenticator": {"client_id": "shared"},
        "GitHubOAuthenticator": {"github_url": "ghe.example.com/"},
    }

    assert login_for(config) == OAuthLogin(
        "https://ghe.example.com/login/oauth/authorize", "shared"
    )
    config["GitHubOAuthenticator"]["client_id"] = "own"
    config["GitHubOAuthenticator"]["authorize_url"] = "https://ghe.example.com/authorize"
    assert login_for(config) == OAuthLogin("https://ghe.example.com/authorize", "own")


def test_a_client_id_not_in_the_values_or_not_decrypted_is_only_required_present() -> None:
    assert login_for({"JupyterHub": {"authenticator_class": "github"}}) == OAuthLogin(
        GITHUB_AUTHORIZE, None
    )
    assert login_for(GITHUB, secrets_known=False) == OAuthLogin(GITHUB_AUTHORIZE, None)


def test_a_hub_without_a_login_probe_is_not_checked_and_says_which() -> None:
    login = login_for({})
    assert login == Unchecked("dummy")

    assert check_login("http://127.0.0.1:9", login, FakeClock().patience()) == (
        "login not checked: no login probe for authenticator_class 'dummy'"
    )
