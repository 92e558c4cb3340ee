"""The GitHub REST API: PR comments, pull requests, deployments and their statuses.

Configured only by GITHUB_API_URL, GITHUB_REPOSITORY and GITHUB_TOKEN. Requests
are retried with backoff on 5xx answers and connection errors, and after the
wait GitHub asks for on a secondary rate limit. Every string sent passes the
redactor's check first, so a body holding a secret is never posted (fail
closed). Errors name the endpoint, never the token.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, get_args
from urllib.parse import urlsplit

import requests

from bot import markdown
from bot.errors import HubbotError

AssertClean = Callable[[str, str], None]
Json = dict[str, Any]
DeploymentState = Literal[
    "error", "failure", "inactive", "in_progress", "queued", "pending", "success"
]

DEPLOYMENT_STATES: tuple[str, ...] = get_args(DeploymentState)
_SHA_RE = re.compile(r"[0-9a-f]{40}")

DEFAULT_API_URL = "https://api.github.com"
API_VERSION = "2022-11-28"
PER_PAGE = 100
# Comment parts are found again by this hidden marker at the start of their body.
_MARKER = "<!-- hubbot:{key} part {index} -->"
_MARKER_RE = re.compile(r"\A<!-- hubbot:(?P<key>[\w.-]+) part (?P<index>\d+) -->")
# Whose comments may be hubbot's: an app (GITHUB_TOKEN posts as github-actions[bot])
# or someone with write access (a personal token). Anyone else could copy a marker.
_TRUSTED_ASSOCIATIONS = {"OWNER", "MEMBER", "COLLABORATOR"}


def _no_check(text: str, place: str) -> None:
    """Used when the caller registered no secrets."""


def _wait(seconds: float) -> None:
    """The pause between attempts (tests replace it to record waits instead)."""
    time.sleep(seconds)


@dataclass(frozen=True)
class Retry:
    """How long to keep trying; `sleep` (default `_wait`) and `clock` are for tests."""

    attempts: int = 5
    backoff: float = 1.0
    # Longest single wait accepted (GitHub may ask for an hour on a primary limit).
    max_wait: float = 300.0
    sleep: Callable[[float], None] | None = None
    clock: Callable[[], float] = time.time


@dataclass(frozen=True)
class Client:
    """One repository on one GitHub API endpoint, over an authenticated session."""

    api_url: str
    repository: str
    session: requests.Session
    assert_clean: AssertClean = _no_check
    retry: Retry = field(default_factory=Retry)
    timeout: float = 30.0


def client_from_env(
    environ: Mapping[str, str] | None = None,
    *,
    assert_clean: AssertClean = _no_check,
    retry: Retry | None = None,
) -> Client:
    """A client for $GITHUB_REPOSITORY at $GITHUB_API_URL, authenticated by $GITHUB_TOKEN."""
    env = os.environ if environ is None else environ
    token = env.get("GITHUB_TOKEN", "")
    repository = env.get("GITHUB_REPOSITORY", "")
    if not token:
        raise HubbotError("GITHUB_TOKEN is not set: the GitHub API needs a token")
    if not re.fullmatch(r"[\w.-]+/[\w.-]+", repository):
        raise HubbotError(f"GITHUB_REPOSITORY must be OWNER/NAME, not {repository!r}")
    session = requests.Session()
    session.headers.update(
        {
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": API_VERSION,
            "Authorization": f"Bearer {token}",
            "User-Agent": "hubbot",
        }
    )
    return Client(
        api_url=(env.get("GITHUB_API_URL") or DEFAULT_API_URL).rstrip("/"),
        repository=repository,
        session=session,
        assert_clean=assert_clean,
        retry=retry or Retry(),
    )


# --- requests ---------------------------------------------------------------


def _check_strings(client: Client, value: object, place: str) -> None:
    if isinstance(value, str):
        client.assert_clean(value, place)
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_strings(client, key, place)
            _check_strings(client, item, place)
    elif isinstance(value, list | tuple):
        for item in value:
            _check_strings(client, item, place)


def _error_message(response: requests.Response) -> str:
    try:
        message = response.json().get("message", "")
    except (ValueError, AttributeError):
        message = ""
    return f"HTTP {response.status_code}" + (f" ({message})" if message else "")


def _rate_limit_wait(client: Client, response: requests.Response, attempt: int) -> float | None:
    """Seconds to wait before retrying a rate-limited answer; None if not rate limited.

    As GitHub documents: honour retry-after; else if x-ratelimit-remaining is 0,
    wait until x-ratelimit-reset; else, for a secondary limit, at least a minute,
    growing exponentially.
    """
    if response.status_code not in (403, 429):
        return None
    retry_after = str(response.headers.get("retry-after", "")).strip()
    remaining = str(response.headers.get("x-ratelimit-remaining", ""))
    reset = str(response.headers.get("x-ratelimit-reset", ""))
    if retry_after.isdigit():
        return float(retry_after)
    if remaining == "0" and reset.isdigit():
        return max(0.0, float(reset) - client.retry.clock())
    if response.status_code == 429 or "rate limit" in _error_message(response).lower():
        return 60.0 * 2.0**attempt
    return None


def _request(
    client: Client,
    method: str,
    url: str,
    endpoint: str,
    *,
    params: Mapping[str, str | int] | None = None,
    payload: Json | None = None,
) -> requests.Response:
    """Send one request, retrying as the module docstring says; raise on final failure."""
    if payload is not None:
        _check_strings(client, payload, f"the GitHub request {endpoint}")
    retry = client.retry
    problem = ""
    for attempt in range(retry.attempts):
        try:
            response = client.session.request(
                method, url, params=params, json=payload, timeout=client.timeout
            )
        except (requests.ConnectionError, requests.Timeout) as exc:
            problem = f"cannot connect ({type(exc).__name__})"
            wait = retry.backoff * 2.0**attempt
        else:
            if response.status_code < 400:
                return response
            problem = _error_message(response)
            if response.status_code >= 500:
                wait = retry.backoff * 2.0**attempt
            else:
                limited = _rate_limit_wait(client, response, attempt)
                if limited is None:
                    raise HubbotError(f"GitHub API {endpoint} failed: {problem}")
                problem = f"rate limited, {problem}"
                wait = limited
        if attempt + 1 == retry.attempts:
            break
        if wait > retry.max_wait:
            raise HubbotError(
                f"GitHub API {endpoint} failed: {problem}; "
                f"GitHub asks to wait {wait:.0f}s, longer than {retry.max_wait:.0f}s"
            )
        (retry.sleep or _wait)(wait)
    raise HubbotError(f"GitHub API {endpoint} failed after {retry.attempts} attempts: {problem}")


def _call(
    client: Client,
    method: str,
    path: str,
    *,
    params: Mapping[str, str | int] | None = None,
    payload: Json | None = None,
) -> Any:
    """One API call on `path` (relative to the API URL); the decoded JSON answer."""
    endpoint = f"{method} {path}"
    response = _request(
        client, method, client.api_url + path, endpoint, params=params, payload=payload
    )
    if response.status_code == 204 or not response.content:
        return None
    try:
        return response.json()
    except ValueError:
        raise HubbotError(
            f"GitHub API {endpoint} answered with something other than JSON"
        ) from None


def _pages(
    client: Client, path: str, params: Mapping[str, str | int] | None = None
) -> Iterator[Json]:
    """Every item of a paginated list, following the Link header's rel="next"."""
    endpoint = f"GET {path}"
    url: str | None = client.api_url + path
    query: Mapping[str, str | int] | None = {**(params or {}), "per_page": PER_PAGE}
    home = urlsplit(client.api_url).netloc
    while url:
        # The token goes only to the API host, whatever a Link header says.
        if urlsplit(url).netloc != home:
            raise HubbotError(f"GitHub API {endpoint}: next page is on another host")
        response = _request(client, "GET", url, endpoint, params=query)
        try:
            items = response.json()
        except ValueError:
            items = None
        if not isinstance(items, list):
            raise HubbotError(f"GitHub API {endpoint} did not answer with a list")
        yield from items
        url = response.links.get("next", {}).get("url")
        query = None  # the next URL carries the query


def _repo(client: Client) -> str:
    return f"/repos/{client.repository}"


# --- issue comments -----------------------------------------------------------


def list_comments(client: Client, number: int) -> list[Json]:
    return list(_pages(client, f"{_repo(client)}/issues/{number}/comments"))


def create_comment(client: Client, number: int, body: str) -> Json:
    path = f"{_repo(client)}/issues/{number}/comments"
    result: Json = _call(client, "POST", path, payload={"body": body})
    return result


def update_comment(client: Client, comment_id: int, body: str) -> Json:
    path = f"{_repo(client)}/issues/comments/{comment_id}"
    result: Json = _call(client, "PATCH", path, payload={"body": body})
    return result


def delete_comment(client: Client, comment_id: int) -> None:
    _call(client, "DELETE", f"{_repo(client)}/issues/comments/{comment_id}")


def marker(key: str, index: int) -> str:
    """The hidden first line identifying part `index` (from 1) of sticky comment `key`."""
    return _MARKER.format(key=key, index=index)


def upsert_sticky(client: Client, number: int, parts: list[str], key: str = "diff") -> list[Json]:
    """Make the PR's sticky comment `key` read `parts`, one comment per part, in order.

    Existing parts are edited in place (untouched when already equal), missing ones
    created, and parts beyond the new count (or duplicates) deleted. Only comments
    by a bot or by someone with write access count as parts. Every body is checked
    before anything is posted. Returns the comments in part order.
    """
    if not parts:
        raise ValueError("a sticky comment needs at least one part")
    bodies = [f"{marker(key, i)}\n{part}" for i, part in enumerate(parts, 1)]
    for i, body in enumerate(bodies, 1):
        client.assert_clean(body, f"part {i} of the PR comment")
    existing: dict[int, Json] = {}
    stale: list[Json] = []
    for comment in list_comments(client, number):
        found = _MARKER_RE.match(comment.get("body") or "")
        if not found or found.group("key") != key or not _trusted(comment):
            continue
        index = int(found.group("index"))
        if 1 <= index <= len(bodies) and index not in existing:
            existing[index] = comment
        else:
            stale.append(comment)
    result = []
    for index, body in enumerate(bodies, 1):
        if index not in existing:
            result.append(create_comment(client, number, body))
        elif existing[index].get("body") != body:
            result.append(update_comment(client, existing[index]["id"], body))
        else:
            result.append(existing[index])
    for comment in stale:
        delete_comment(client, comment["id"])
    return result


def read_sticky(client: Client, number: int, key: str = "diff") -> str | None:
    """The document sticky comment `key` shows now (its parts joined, markers and part
    headers removed), or None when the PR has none."""
    parts: dict[int, str] = {}
    for comment in list_comments(client, number):
        body = comment.get("body") or ""
        found = _MARKER_RE.match(body)
        if found and found.group("key") == key and _trusted(comment):
            text = body[found.end() :].removeprefix("\n")
            parts.setdefault(int(found.group("index")), markdown.strip_part_header(text))
    if not parts:
        return None
    return "\n".join(parts[index].rstrip("\n") for index in sorted(parts)) + "\n"


def publish_comment(
    client: Client,
    number: int,
    document: str,
    *,
    full_link: str | None = None,
    key: str = "diff",
) -> list[Json]:
    """Post `document` as the PR's sticky comment `key`, split into parts if too long.

    Each posted body (marker line included) stays within markdown.COMMENT_LIMIT.
    """
    room = markdown.COMMENT_LIMIT - len(marker(key, 10**4 - 1)) - 1
    return upsert_sticky(client, number, markdown.split(document, room, full_link), key)


def _trusted(comment: Json) -> bool:
    user = comment.get("user") or {}
    return bool(
        user.get("type") == "Bot" or comment.get("author_association") in _TRUSTED_ASSOCIATIONS
    )


# --- pull requests ------------------------------------------------------------


def find_pull(client: Client, head: str, base: str) -> Json | None:
    """The open pull request from branch `head` (of this repository) into `base`."""
    owner = client.repository.split("/")[0]
    params = {"head": f"{owner}:{head}", "base": base, "state": "open"}
    pulls = list(_pages(client, f"{_repo(client)}/pulls", params))
    return pulls[0] if pulls else None


def create_pull(client: Client, head: str, base: str, title: str, body: str) -> Json:
    payload = {"title": title, "head": head, "base": base, "body": body}
    result: Json = _call(client, "POST", f"{_repo(client)}/pulls", payload=payload)
    return result


def update_pull(
    client: Client, number: int, *, title: str | None = None, body: str | None = None
) -> Json:
    payload = {k: v for k, v in (("title", title), ("body", body)) if v is not None}
    result: Json = _call(client, "PATCH", f"{_repo(client)}/pulls/{number}", payload=payload)
    return result


# --- deployments --------------------------------------------------------------


def create_deployment(
    client: Client, ref: str, environment: str, payload: Json, description: str = ""
) -> Json:
    """A deployment of `ref` to `environment`, skipping GitHub's merge and status checks."""
    body = {
        "ref": ref,
        "environment": environment,
        "payload": payload,
        "description": description,
        "auto_merge": False,
        "required_contexts": [],
    }
    path = f"{_repo(client)}/deployments"
    result = _call(client, "POST", path, payload=body)
    if not isinstance(result, dict) or "id" not in result:
        # 202 means GitHub tried a merge instead of creating the deployment.
        message = result.get("message", "") if isinstance(result, dict) else ""
        raise HubbotError(f"GitHub API POST {path} created no deployment: {message}")
    if deployment_id(result) is None:
        # Its statuses are posted to a URL made of it.
        raise _id_not_githubs(f"POST {path}", result)
    return result


def iter_deployments(
    client: Client,
    *,
    environment: str | None = None,
    sha: str | None = None,
    ref: str | None = None,
) -> Iterator[Json]:
    """Deployments, newest first, filtered as given, fetched page by page as consumed."""
    filters = {k: v for k, v in (("environment", environment), ("sha", sha), ("ref", ref)) if v}
    return _pages(client, f"{_repo(client)}/deployments", filters)


def list_deployments(
    client: Client,
    *,
    environment: str | None = None,
    sha: str | None = None,
    ref: str | None = None,
) -> list[Json]:
    """Deployments, newest first, filtered as given."""
    return list(iter_deployments(client, environment=environment, sha=sha, ref=ref))


def create_deployment_status(
    client: Client,
    deployment_id: int,
    state: DeploymentState,
    *,
    environment_url: str | None = None,
    log_url: str | None = None,
    description: str | None = None,
) -> Json:
    fields = (
        ("environment_url", environment_url),
        ("log_url", log_url),
        # GitHub refuses descriptions over 140 characters.
        ("description", description[:140] if description is not None else None),
    )
    body: Json = {"state": state, **{k: v for k, v in fields if v is not None}}
    path = f"{_repo(client)}/deployments/{deployment_id}/statuses"
    result: Json = _call(client, "POST", path, payload=body)
    return result


def list_deployment_statuses(client: Client, deployment_id: int) -> list[Any]:
    """A deployment's statuses, newest first, as answered: status_problem() says whether
    each has GitHub's shape."""
    return list(_pages(client, f"{_repo(client)}/deployments/{deployment_id}/statuses"))


def deployment_id(deployment: Any) -> int | None:
    """A listed deployment's id, an integer as GitHub gives every one; None without one."""
    value = deployment.get("id") if isinstance(deployment, dict) else None
    # JSON's true is no id, though Python takes it for the integer 1.
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def deployment_sha(deployment: Any) -> str | None:
    """A listed deployment's commit, 40 hex digits as GitHub gives every one; None without."""
    value = deployment.get("sha") if isinstance(deployment, dict) else None
    return value if isinstance(value, str) and _SHA_RE.fullmatch(value) else None


def status_problem(status: Any) -> str | None:
    """Why a listed deployment status is not in GitHub's documented shape (an object with
    one of its states and a string description); None when it is."""
    if not isinstance(status, dict):
        return f"it is {quoted_value(status)}, not a JSON object"
    state = status.get("state")
    if not isinstance(state, str) or state not in DEPLOYMENT_STATES:
        shown = "missing" if "state" not in status else quoted_value(state)
        return f"its state is {shown}, not one of GitHub's ({', '.join(DEPLOYMENT_STATES)})"
    # GitHub's default description is "", and null reads as that.
    description = status.get("description")
    if description is not None and not isinstance(description, str):
        return f"its description is {quoted_value(description)}, not a string"
    return None


def quoted_value(value: Any) -> str:
    """A value from an answer, for a message: short, and quoted as Python writes it."""
    return repr(value)[:40]


def _not_githubs(endpoint: str, what: str) -> HubbotError:
    """An answer in a shape GitHub never gives: most likely not GitHub's API at all."""
    return HubbotError(f"GitHub API {endpoint} answered {what}: is GITHUB_API_URL GitHub's API?")


def _id_not_githubs(endpoint: str, deployment: Any) -> HubbotError:
    shown = quoted_value(deployment.get("id")) if isinstance(deployment, dict) else "none"
    return _not_githubs(
        endpoint,
        f"a deployment whose id is {shown}, where GitHub gives every deployment an integer id",
    )


def successful_deployments(
    client: Client, environment: str, *, sha: str | None = None
) -> Iterator[Json]:
    """Deployments to `environment` (of `sha`, if given) whose latest status is success,
    each with GitHub's integer id and 40-hex sha (any other answer is an error).

    `inactive` does not count as the latest: GitHub adds it to an earlier successful
    deployment when a newer one of the environment succeeds (auto_inactive). Newest
    first, fetched page by page, so a caller looking for the most recent one stops
    after the first.
    """
    listing = f"GET {_repo(client)}/deployments"
    for deployment in iter_deployments(client, environment=environment, sha=sha):
        number = deployment_id(deployment)
        if number is None:
            raise _id_not_githubs(listing, deployment)
        if deployment_sha(deployment) is None:
            shown = quoted_value(deployment.get("sha")) if "sha" in deployment else "missing"
            raise _not_githubs(
                listing,
                f"deployment {number} whose sha is {shown}, where GitHub gives every "
                "deployment the 40 hex digits of its commit",
            )
        path = f"{_repo(client)}/deployments/{number}/statuses"
        latest = None
        for status in _pages(client, path, {}):
            problem = status_problem(status)
            if problem is not None:
                raise _not_githubs(f"GET {path}", f"a status GitHub never gives: {problem}")
            if status["state"] != "inactive":
                latest = status["state"]
                break
        if latest == "success":
            yield deployment
