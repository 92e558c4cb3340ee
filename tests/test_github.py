"""bot/github.py against the GitHub API stand-in (tests/fixtures/github.py)."""

from __future__ import annotations

import socket

import pytest

from bot import github
from bot.errors import HubbotError
from bot.redact import Redactor
from tests.fixtures.github import SECONDARY_RATE_LIMIT, FakeGitHub

SHA = "3f786850e387550fdab836ed7e6dc881de23001b"
COMMENTS = r"/repos/tess-org/tess-hubs/issues/\d+/comments"


@pytest.fixture
def client(github_api: FakeGitHub) -> github.Client:
    return github.client_from_env(github_api.env())


@pytest.fixture
def pr(github_api: FakeGitHub) -> int:
    number: int = github_api.add_pull("feature", "staging")["number"]
    return number


def bodies(github_api: FakeGitHub, number: int) -> list[str]:
    return [c["body"] for c in github_api.comments_on(number)]


def test_requests_carry_the_documented_headers(
    github_api: FakeGitHub, client: github.Client, pr: int
) -> None:
    github.list_comments(client, pr)
    (request,) = github_api.requests
    assert request.headers["Accept"] == "application/vnd.github+json"
    assert request.headers["X-Github-Api-Version"] == "2022-11-28"
    assert request.headers["Authorization"] == f"Bearer {github_api.token}"
    assert request.query == {"per_page": "100"}


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"GITHUB_REPOSITORY": "o/r"}, "GITHUB_TOKEN is not set: the GitHub API needs a token"),
        (
            {"GITHUB_TOKEN": "t", "GITHUB_REPOSITORY": "just-a-name"},
            "GITHUB_REPOSITORY must be OWNER/NAME, not 'just-a-name'",
        ),
    ],
)
def test_configuration_errors(env: dict[str, str], message: str) -> None:
    with pytest.raises(HubbotError) as caught:
        github.client_from_env(env)
    assert str(caught.value) == message


def test_api_url_defaults_to_github_com() -> None:
    client = github.client_from_env({"GITHUB_TOKEN": "t", "GITHUB_REPOSITORY": "o/r"})
    assert client.api_url == "https://api.github.com"


def test_sticky_comment_is_created_then_updated_in_place(
    github_api: FakeGitHub, client: github.Client, pr: int
) -> None:
    human = github.create_comment(client, pr, "LGTM")
    (created,) = github.upsert_sticky(client, pr, ["## Plan\n\none pair"])
    assert (
        created["html_url"]
        == f"https://github.com/tess-org/tess-hubs/pull/{pr}#issuecomment-{created['id']}"
    )
    (updated,) = github.upsert_sticky(client, pr, ["## Plan\n\ntwo pairs"])
    assert updated["id"] == created["id"]
    assert bodies(github_api, pr) == [
        "LGTM",
        "<!-- hubbot:diff part 1 -->\n## Plan\n\ntwo pairs",
    ]
    assert github_api.comments[human["id"]]["body"] == "LGTM"
    writes = [(r.method, r.path) for r in github_api.requests if r.method != "GET"]
    assert writes == [
        ("POST", f"/repos/tess-org/tess-hubs/issues/{pr}/comments"),
        ("POST", f"/repos/tess-org/tess-hubs/issues/{pr}/comments"),
        ("PATCH", f"/repos/tess-org/tess-hubs/issues/comments/{created['id']}"),
    ]


def test_an_unchanged_comment_is_not_edited(
    github_api: FakeGitHub, client: github.Client, pr: int
) -> None:
    github.upsert_sticky(client, pr, ["same"])
    github.upsert_sticky(client, pr, ["same"])
    assert [r.method for r in github_api.requests] == ["GET", "POST", "GET"]


def test_stale_parts_are_deleted_across_pages(
    github_api: FakeGitHub, client: github.Client, pr: int
) -> None:
    github_api.max_per_page = 2
    first = github.upsert_sticky(client, pr, ["part one", "part two", "part three"])
    github.create_comment(client, pr, "a human reply")
    assert len(bodies(github_api, pr)) == 4
    # Another sticky comment (other key) is not ours to delete.
    github.upsert_sticky(client, pr, ["freight"], key="freight")

    after = github.upsert_sticky(client, pr, ["only part"])

    assert after[0]["id"] == first[0]["id"]
    assert bodies(github_api, pr) == [
        "<!-- hubbot:diff part 1 -->\nonly part",
        "a human reply",
        "<!-- hubbot:freight part 1 -->\nfreight",
    ]
    deleted = {int(r.path.rsplit("/", 1)[1]) for r in github_api.calls("DELETE")}
    assert deleted == {first[1]["id"], first[2]["id"]}
    pages = [r.query.get("page") for r in github_api.calls("GET", COMMENTS)]
    assert pages[-3:] == [None, "2", "3"]


def test_duplicate_parts_are_removed(
    github_api: FakeGitHub, client: github.Client, pr: int
) -> None:
    github.create_comment(client, pr, "<!-- hubbot:diff part 1 -->\nold")
    github.create_comment(client, pr, "<!-- hubbot:diff part 1 -->\nolder copy")
    github.upsert_sticky(client, pr, ["new"])
    assert bodies(github_api, pr) == ["<!-- hubbot:diff part 1 -->\nnew"]


def test_a_502_is_retried(github_api: FakeGitHub, client: github.Client, pr: int) -> None:
    github_api.fail(502, method="POST", body={"message": "Bad Gateway"})
    github.upsert_sticky(client, pr, ["body"])
    assert len(github_api.calls("POST")) == 2
    assert bodies(github_api, pr) == ["<!-- hubbot:diff part 1 -->\nbody"]
    assert github_api.sleeps == [1.0]


def test_secondary_rate_limit_waits_for_retry_after(
    github_api: FakeGitHub, client: github.Client, pr: int
) -> None:
    github_api.rate_limit(retry_after=3, times=2)
    github.upsert_sticky(client, pr, ["body"])
    assert github_api.sleeps == [3.0, 3.0]
    assert len(github_api.calls("GET")) == 3
    assert len(bodies(github_api, pr)) == 1


def test_rate_limit_reset_time_is_honoured(github_api: FakeGitHub, pr: int) -> None:
    waits: list[float] = []
    retry = github.Retry(sleep=waits.append, clock=lambda: 1_700_000_000.0)
    client = github.client_from_env(github_api.env(), retry=retry)
    github_api.fail(
        403,
        headers={"x-ratelimit-remaining": "0", "x-ratelimit-reset": "1700000042"},
        body={"message": "API rate limit exceeded for installation ID 1."},
    )
    github_api.fail(429, body={"message": SECONDARY_RATE_LIMIT})
    github.list_comments(client, pr)
    # No retry-after on the 429: GitHub says wait at least a minute, growing.
    assert waits == [42.0, 120.0]
    assert github_api.sleeps == []


def test_a_wait_longer_than_allowed_fails_at_once(github_api: FakeGitHub, pr: int) -> None:
    client = github.client_from_env(github_api.env(), retry=github.Retry(max_wait=10))
    github_api.rate_limit(retry_after=3600)
    with pytest.raises(HubbotError) as caught:
        github.create_comment(client, pr, "x")
    assert str(caught.value) == (
        f"GitHub API POST /repos/tess-org/tess-hubs/issues/{pr}/comments failed: "
        f"rate limited, HTTP 403 ({SECONDARY_RATE_LIMIT}); "
        "GitHub asks to wait 3600s, longer than 10s"
    )
    assert github_api.sleeps == []


def test_final_failure_names_the_endpoint_never_the_token(
    github_api: FakeGitHub, client: github.Client, pr: int
) -> None:
    github_api.down()
    with pytest.raises(HubbotError) as caught:
        github.upsert_sticky(client, pr, ["body"])
    message = str(caught.value)
    assert message == (
        f"GitHub API GET /repos/tess-org/tess-hubs/issues/{pr}/comments failed after "
        "5 attempts: HTTP 503 (Service Unavailable)"
    )
    assert github_api.token not in message
    assert github_api.sleeps == [1.0, 2.0, 4.0, 8.0]
    assert github_api.calls("POST") == []


def test_client_errors_are_not_retried(github_api: FakeGitHub, client: github.Client) -> None:
    with pytest.raises(HubbotError) as caught:
        github.create_comment(client, 404, "x")
    assert str(caught.value) == (
        "GitHub API POST /repos/tess-org/tess-hubs/issues/404/comments failed: HTTP 404 (Not Found)"
    )
    assert len(github_api.requests) == 1


def test_a_bad_token_is_reported_without_the_token(github_api: FakeGitHub, pr: int) -> None:
    client = github.client_from_env({**github_api.env(), "GITHUB_TOKEN": "ghs_wrongToken99"})
    with pytest.raises(HubbotError) as caught:
        github.list_comments(client, pr)
    assert "HTTP 401 (Bad credentials)" in str(caught.value)
    assert "ghs_wrongToken99" not in str(caught.value)


def test_connection_errors_are_retried_then_reported() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    waits: list[float] = []
    client = github.client_from_env(
        {
            "GITHUB_API_URL": f"http://127.0.0.1:{port}",
            "GITHUB_TOKEN": "t",
            "GITHUB_REPOSITORY": "o/r",
        },
        retry=github.Retry(attempts=3, sleep=waits.append),
    )
    with pytest.raises(HubbotError) as caught:
        github.list_deployments(client, environment="tess-public-staging")
    assert str(caught.value) == (
        "GitHub API GET /repos/o/r/deployments failed after 3 attempts: "
        "cannot connect (ConnectionError)"
    )
    assert waits == [1.0, 2.0]


def test_a_body_with_a_secret_is_never_posted(github_api: FakeGitHub, pr: int) -> None:
    redactor = Redactor()
    secret = "hub-cookie-secret-0f3a9c"
    redactor.register(secret)
    client = github.client_from_env(github_api.env(), assert_clean=redactor.assert_clean)
    github.upsert_sticky(client, pr, ["clean"])
    github_api.requests.clear()

    with pytest.raises(HubbotError) as caught:
        github.upsert_sticky(client, pr, ["clean part", f"values:\n  token: {secret}\n"])
    assert str(caught.value) == (
        "refusing to write part 2 of the PR comment: it contains a decrypted secret value "
        "(this is a bug in hubbot; nothing was written)"
    )
    with pytest.raises(HubbotError) as caught:
        github.create_deployment(client, SHA, "tess-public-staging", {"freight": {"x": [secret]}})
    assert "refusing to write the GitHub request POST /repos/tess-org/tess-hubs/deployments" in str(
        caught.value
    )
    with pytest.raises(HubbotError):
        github.update_pull(client, pr, body=f"diff: {secret}")
    assert github_api.requests == []
    assert bodies(github_api, pr) == ["<!-- hubbot:diff part 1 -->\nclean"]


def test_pulls_find_create_update(github_api: FakeGitHub, client: github.Client) -> None:
    assert github.find_pull(client, "staging", "prod") is None
    created = github.create_pull(client, "staging", "prod", "Promote staging to prod", "freight")
    assert created["html_url"] == f"https://github.com/tess-org/tess-hubs/pull/{created['number']}"
    found = github.find_pull(client, "staging", "prod")
    assert found is not None
    assert found["number"] == created["number"]
    assert github_api.calls("GET", "/repos/tess-org/tess-hubs/pulls")[0].query == {
        "head": "tess-org:staging",
        "base": "prod",
        "state": "open",
        "per_page": "100",
    }
    github.update_pull(client, created["number"], body="new freight")
    assert github_api.pulls[created["number"]]["body"] == "new freight"
    assert github_api.pulls[created["number"]]["title"] == "Promote staging to prod"
    (patch,) = github_api.calls("PATCH")
    assert patch.body == {"body": "new freight"}
    with pytest.raises(HubbotError) as caught:
        github.create_pull(client, "staging", "prod", "again", "")
    assert str(caught.value) == (
        "GitHub API POST /repos/tess-org/tess-hubs/pulls failed: HTTP 422 (Validation Failed)"
    )


def test_deployments_and_statuses_round_trip(github_api: FakeGitHub, client: github.Client) -> None:
    freight = {"images": {"user": "ecr/x/user@sha256:ab"}, "chart": {"version": "4.2.0"}}
    deployment = github.create_deployment(
        client, SHA, "tess-public-staging", freight, "hubbot deploy tess-public staging"
    )
    other = github.create_deployment(client, SHA, "tess-private-staging", {}, "")
    (post,) = github_api.calls("POST", "/repos/tess-org/tess-hubs/deployments")[:1]
    assert post.body == {
        "ref": SHA,
        "environment": "tess-public-staging",
        "payload": freight,
        "description": "hubbot deploy tess-public staging",
        "auto_merge": False,
        "required_contexts": [],
    }
    assert deployment["sha"] == SHA
    assert deployment["payload"] == freight

    for state in ("in_progress", "success"):
        github.create_deployment_status(
            client,
            deployment["id"],
            state,
            environment_url="https://public.tess.example.org",
            log_url="https://github.com/tess-org/tess-hubs/actions/runs/7",
            description="x" * 200,
        )
    statuses = github.list_deployment_statuses(client, deployment["id"])
    assert [s["state"] for s in statuses] == ["success", "in_progress"]
    assert statuses[0]["environment_url"] == "https://public.tess.example.org"
    assert statuses[0]["description"] == "x" * 140

    listed = github.list_deployments(client, environment="tess-public-staging", sha=SHA)
    assert [d["id"] for d in listed] == [deployment["id"]]
    assert [d["id"] for d in github.list_deployments(client, sha=SHA)] == [
        other["id"],
        deployment["id"],
    ]
    assert github.list_deployment_statuses(client, other["id"]) == []


def test_deployment_of_an_unknown_ref_is_an_error(client: github.Client) -> None:
    with pytest.raises(HubbotError) as caught:
        github.create_deployment(client, "no-such-branch", "tess-public-prod", {})
    assert str(caught.value) == (
        "GitHub API POST /repos/tess-org/tess-hubs/deployments failed: "
        "HTTP 422 (No ref found for: no-such-branch)"
    )


@pytest.mark.parametrize("bad_id", ["DE_kwDOABCD", "1001", True, None, 1001.5])
def test_a_created_deployment_without_an_integer_id_is_an_error(
    github_api: FakeGitHub, client: github.Client, bad_id: object
) -> None:
    created = github.create_deployment(client, SHA, "tess-public-staging", {})
    # An answer no GitHub gives: a created deployment whose id is not an integer.
    github_api.fail(201, method="POST", path=r"/deployments$", body={**created, "id": bad_id})

    with pytest.raises(HubbotError) as caught:
        github.create_deployment(client, SHA, "tess-public-staging", {})

    assert str(caught.value) == (
        "GitHub API POST /repos/tess-org/tess-hubs/deployments answered a deployment whose "
        f"id is {bad_id!r}, where GitHub gives every deployment an integer id: is "
        "GITHUB_API_URL GitHub's API?"
    )


def test_a_long_report_is_published_in_parts_then_shrinks(
    github_api: FakeGitHub, client: github.Client, pr: int
) -> None:
    rows = "\n".join(f"| `key.{n}` | {n} | {n + 1} | config/prod.yaml |" for n in range(4000))
    document = (
        f"## hubbot diff\n\n<details>\n<summary>tess-public/prod</summary>\n\n{rows}\n</details>\n"
    )
    link = "https://github.com/tess-org/tess-hubs/actions/runs/7"
    posted = github.publish_comment(client, pr, document, full_link=link)
    count = len(posted)
    assert count >= len(document) // 60_000 + 1
    for index, comment in enumerate(posted, 1):
        assert len(comment["body"]) <= 60_000
        assert comment["body"].startswith(
            f"<!-- hubbot:diff part {index} -->\n_Part {index} of {count}._ [Full diff]({link})\n\n"
        )
        assert comment["body"].count("<details>") == comment["body"].count("</details>") == 1
    assert bodies(github_api, pr) == [c["body"] for c in posted]

    (short,) = github.publish_comment(client, pr, "## hubbot diff\n\nno change", full_link=link)
    assert short["id"] == posted[0]["id"]
    assert bodies(github_api, pr) == ["<!-- hubbot:diff part 1 -->\n## hubbot diff\n\nno change"]
    assert len(github_api.calls("DELETE")) == count - 1


def test_successful_deployments_by_latest_status(
    github_api: FakeGitHub, client: github.Client
) -> None:
    other_sha = "0" * 39 + "1"
    states = {
        "a": (SHA, ["in_progress", "success"]),
        "b": (SHA, ["in_progress", "failure"]),
        "c": (other_sha, ["success"]),
        "d": (SHA, ["failure", "success"]),
        "e": (SHA, []),
    }
    ids = {}
    for name, (sha, sequence) in states.items():
        ids[name] = github.create_deployment(client, sha, "tess-public-staging", {"n": name})["id"]
        for state in sequence:
            github.create_deployment_status(client, ids[name], state)  # type: ignore[arg-type]
    github.create_deployment(client, SHA, "tess-public-prod", {})
    # a and c end `inactive` (GitHub's auto_inactive), which still counts as their success.
    found = github.successful_deployments(client, "tess-public-staging")
    assert [d["payload"]["n"] for d in found] == ["d", "c", "a"]
    found = github.successful_deployments(client, "tess-public-staging", sha=SHA)
    assert [d["payload"]["n"] for d in found] == ["d", "a"]


def test_a_newer_success_marks_earlier_successful_deployments_inactive(
    github_api: FakeGitHub, client: github.Client
) -> None:
    # GitHub's auto_inactive, which records rely on: an earlier success ends `inactive`.
    sequences = {"a": ["in_progress", "success"], "b": ["failure"], "c": ["success"]}
    ids = {}
    for name, sequence in sequences.items():
        ids[name] = github.create_deployment(client, SHA, "tess-public-staging", {"n": name})["id"]
        for state in sequence:
            github.create_deployment_status(client, ids[name], state)  # type: ignore[arg-type]
    github.create_deployment_status(
        client, github.create_deployment(client, SHA, "tess-public-prod", {})["id"], "success"
    )
    states = {
        name: [s["state"] for s in github.list_deployment_statuses(client, ids[name])]
        for name in sequences
    }
    assert states == {
        "a": ["inactive", "success", "in_progress"], "b": ["failure"], "c": ["success"],
    }
    found = github.iter_deployments(client, environment="tess-public-staging")
    assert [d["payload"]["n"] for d in found] == ["c", "b", "a"]


def test_the_token_never_follows_a_link_to_another_host(
    github_api: FakeGitHub, client: github.Client, pr: int
) -> None:
    github_api.fail(200, headers={"Link": '<http://example.org/steal?page=2>; rel="next"'}, body=[])
    with pytest.raises(HubbotError) as caught:
        github.list_comments(client, pr)
    assert str(caught.value) == (
        f"GitHub API GET /repos/tess-org/tess-hubs/issues/{pr}/comments: "
        "next page is on another host"
    )
    assert len(github_api.requests) == 1


def test_a_copied_marker_from_an_outsider_is_left_alone(
    github_api: FakeGitHub, client: github.Client, pr: int
) -> None:
    outsider = github_api.add_comment(pr, "<!-- hubbot:diff part 1 -->\nfake diff")
    stray = github_api.add_comment(pr, "<!-- hubbot:diff part 2 -->\nfake part")
    maintainer = github_api.add_comment(
        pr, "<!-- hubbot:diff part 1 -->\nposted with a token", "maintainer", "MEMBER"
    )
    (ours,) = github.upsert_sticky(client, pr, ["real diff"])
    assert ours["id"] == maintainer["id"]
    assert bodies(github_api, pr) == [
        outsider["body"],
        stray["body"],
        "<!-- hubbot:diff part 1 -->\nreal diff",
    ]
    assert github_api.calls("DELETE") == []
