"""After a deploy: does the hub answer? JupyterHub's REST API root gives its version.

`GET <url>/hub/api/` answers `{"version": "..."}` without authentication once
the hub and proxy are up. Right after a rollout the proxy or DNS may lag, so
the check retries with exponential backoff until a deadline.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import requests

from bot.errors import HubbotError

API_PATH = "/hub/api/"


@dataclass(frozen=True)
class Patience:
    """How long to keep asking, and how; the clock and sleep are injectable for tests."""

    deadline: float = 300.0  # seconds
    first_wait: float = 2.0
    max_wait: float = 30.0
    request_timeout: float = 10.0
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic


def api_url(url: str) -> str:
    return url.rstrip("/") + API_PATH


def check(url: str, patience: Patience | None = None) -> str:
    """The running JupyterHub's version, or a HubbotError with the last problem seen."""
    patience = patience or Patience()
    target = api_url(url)
    start = patience.clock()
    wait = patience.first_wait
    attempts = 0
    while True:
        attempts += 1
        version, problem = _ask(target, patience.request_timeout)
        if version is not None:
            return version
        elapsed = patience.clock() - start
        if elapsed + wait > patience.deadline:
            raise HubbotError(
                f"health check failed: {target} gave no JupyterHub version after {attempts} "
                f"attempt(s) in {elapsed:.0f}s (last: {problem})"
            )
        patience.sleep(wait)
        wait = min(wait * 2, patience.max_wait)


def _ask(target: str, timeout: float) -> tuple[str | None, str]:
    try:
        response = requests.get(target, timeout=timeout, allow_redirects=True)
    except requests.RequestException as exc:
        return None, f"no answer: {type(exc).__name__}"
    if response.status_code != 200:
        return None, f"HTTP {response.status_code}"
    try:
        body = response.json()
    except ValueError:
        return None, "HTTP 200 but not JSON"
    version = body.get("version") if isinstance(body, dict) else None
    if not isinstance(version, str) or not version:
        return None, "HTTP 200 but no `version` in the JSON"
    return version, ""
