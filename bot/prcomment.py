"""The pull request's sticky comment: always the truth about the head commit.

Every `hubbot ci` run for a pull request rewrites it, failing runs included:
the head commit, each step's outcome, validation errors linked to their file
and line at that commit, a failed build's step and log tail, then the image
contents and the diff. A run that produced no diff of its own (validation
failed) keeps the last diff below, marked outdated with the commit it was made
from; it is never shown as current.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import quote

from bot.errors import HubbotError
from bot.markdown import escape_cell, fence, inline_code

SERVER = "https://github.com"
# The diff section of a comment, found again on the next run by these hidden lines.
_DIFF_BEGIN = "<!-- hubbot:diff-of {sha} -->"
_DIFF_END = "<!-- hubbot:diff-end -->"
_DIFF_SECTION = re.compile(
    r"^<!-- hubbot:diff-of (?P<sha>[0-9a-f]{7,40}) -->\n(?P<body>.*?)^<!-- hubbot:diff-end -->$",
    re.MULTILINE | re.DOTALL,
)
# What a failed step means for the head commit, in the outdated note.
_FAILED = {"validate": "failed validation", "plan": "could not be planned"}


@dataclass(frozen=True)
class Problem:
    """One validation error, with where it was found (`hub/env` or a check's name)."""

    where: str
    error: HubbotError


@dataclass
class Review:
    """What one run found out about the pull request's head commit."""

    repository: str  # OWNER/NAME, for links to files
    head: str  # the head commit's sha
    problems: list[Problem] = field(default_factory=list)
    build_failure: str | None = None
    images: str | None = None  # the image contents section (bot.imagediff.markdown)
    diff: str | None = None
    failure: str | None = None  # the error that stopped the run, if any
    server: str = SERVER

    @property
    def failed(self) -> bool:
        return bool(self.problems or self.build_failure or self.failure)


def short(sha: str) -> str:
    return sha[:7]


def blob_link(review: Review, file: str, line: int | None) -> str:
    path = quote(file)
    anchor = f"#L{line}" if line is not None else ""
    return f"{review.server}/{review.repository}/blob/{review.head}/{path}{anchor}"


def previous_diff(text: str | None) -> tuple[str, str] | None:
    """(commit, diff section) of the comment's diff, current or already outdated."""
    found = _DIFF_SECTION.search(text or "")
    return (found.group("sha"), found.group("body")) if found else None


def render(review: Review, steps: list[tuple[str, str, float]], previous: str | None) -> str:
    """The comment for `review`; `previous` is the comment's text so far, if any."""
    out = [f"### hubbot: {_verdict(review, steps)}", ""]
    out += ["| step | outcome | time |", "|---|---|---|"]
    out += [
        f"| {escape_cell(title)} | {escape_cell(outcome)} | {seconds:.1f}s |"
        for title, outcome, seconds in steps
    ]
    out.append("")
    if review.problems:
        count = len(review.problems)
        out += [f"**Validation failed: {count} problem{'s' * (count != 1)}**", ""]
        out += [_problem_line(review, problem) for problem in review.problems]
        out.append("")
    if review.failure and not review.problems:
        out += [f"**The run stopped:** {escape_cell(review.failure)}", ""]
    if review.build_failure:
        first, _, rest = review.build_failure.partition("\n")
        out += ["**The image build failed**", "", escape_cell(first), ""]
        if rest.strip():
            out += [fence(rest, "text").rstrip("\n"), ""]
    if review.diff is not None:
        out += [_DIFF_BEGIN.format(sha=review.head)]
        if review.images:
            out += [review.images.rstrip("\n"), ""]
        out += [review.diff.rstrip("\n"), _DIFF_END]
    else:
        out += _outdated(review, steps, previous_diff(previous))
    return "\n".join(out).rstrip("\n") + "\n"


def _verdict(review: Review, steps: list[tuple[str, str, float]]) -> str:
    head = inline_code(short(review.head))
    if not review.failed:
        return f"head {head} checked, diff below"
    return f"head {head} {_what_failed(steps)}"


def _what_failed(steps: list[tuple[str, str, float]]) -> str:
    failed = next((title for title, outcome, _ in steps if outcome == "failed"), None)
    if failed is None:
        return "failed"
    if failed.startswith("build"):
        return "failed to build its image"
    return _FAILED.get(failed, f"failed at the {failed} step")


def _problem_line(review: Review, problem: Problem) -> str:
    error = problem.error
    where = escape_cell(problem.where)
    if error.location is None:
        return f"- {where}: {escape_cell(error.message)}"
    place = inline_code(str(error.location))
    link = blob_link(review, error.location.file, error.location.line)
    return f"- [{place}]({link}) ({where}): {escape_cell(error.message)}"


def _outdated(
    review: Review, steps: list[tuple[str, str, float]], previous: tuple[str, str] | None
) -> list[str]:
    if previous is None:
        return ["_No diff: this commit has none yet._"]
    sha, body = previous
    if sha == review.head:
        note = f"This diff is from {short(sha)}, but a later run on it {_what_failed(steps)}"
    else:
        note = (
            f"This diff is from {short(sha)}; the latest push {short(review.head)} "
            f"{_what_failed(steps)}"
        )
    return [
        f"> [!WARNING]\n> **Outdated.** {note}: it is not what a merge would deploy.",
        "",
        _DIFF_BEGIN.format(sha=sha),
        "<details>",
        f"<summary>Outdated diff from {short(sha)}</summary>",
        "",
        _unwrap(body).rstrip("\n"),
        "",
        "</details>",
        _DIFF_END,
    ]


def _unwrap(body: str) -> str:
    """A diff section without the outdated wrapping an earlier failing run gave it."""
    lines = body.strip("\n").split("\n")
    if len(lines) >= 3 and lines[0] == "<details>" and lines[1].startswith("<summary>Outdated"):
        inner = lines[2:]
        if inner and inner[-1] == "</details>":
            inner = inner[:-1]
        return "\n".join(inner).strip("\n")
    return body
