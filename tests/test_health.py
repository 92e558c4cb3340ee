"""The post-deploy health check against a JupyterHub API stand-in (pytest-httpserver)."""

from __future__ import annotations

import pytest
from pytest_httpserver import HTTPServer

from bot.errors import HubbotError
from bot.health import Patience, check
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
