"""Deploys fanned out over GitHub Actions jobs: the matrix in, one outcome file per pair out.

The plan job emits the matrix of affected pairs; each deploy job deploys one pair
and writes its outcome as a small JSON file (uploaded as an artifact); the gather
job reads them all back. A pair whose file is missing (its job failed before it
could write one, was cancelled, or never started) counts as failed, so nothing
unreported is ever taken for a success.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from bot.deploy import Outcome, Target
from bot.errors import HubbotError

AssertClean = Callable[[str, str], None]
FORMAT = 1
MISSING = (
    "no outcome reported: its deploy job failed before deploying, was cancelled or never "
    "ran (see that job's log)"
)


def _no_check(text: str, place: str) -> None:
    """Used when the caller registered no secrets."""


def targets_of(text: str, origin: str = "the matrix") -> list[Target]:
    """The pairs of a matrix as `bot.plan.Plan.matrix()` writes it (the plan job's output)."""
    try:
        data = json.loads(text)
        entries = data["include"]
        targets = [Target(str(entry["hub"]), str(entry["env"])) for entry in entries]
    except (ValueError, KeyError, TypeError) as exc:
        raise HubbotError(
            f"{origin} is not a deploy matrix of the form "
            f'{{"include": [{{"hub": HUB, "env": ENV}}, ...]}}: {type(exc).__name__}: {exc}'
        ) from None
    return list(dict.fromkeys(targets))


def file_name(target: Target) -> str:
    return f"outcome-{target.hub}-{target.env}.json"


def write_outcome(directory: Path, outcome: Outcome, assert_clean: AssertClean = _no_check) -> Path:
    """Write one pair's outcome for the gather job; the text is checked for secrets first."""
    document = {
        "hubbot_outcome": FORMAT,
        "hub": outcome.target.hub,
        "env": outcome.target.env,
        "ok": outcome.ok,
        "seconds": round(outcome.seconds, 1),
        "detail": outcome.detail,
        "notes": list(outcome.notes),
    }
    text = json.dumps(document, indent=2) + "\n"
    assert_clean(text, f"the deploy outcome of {outcome.target}")
    path = directory / file_name(outcome.target)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise HubbotError(f"cannot write the deploy outcome {path}: {exc.strerror}") from None
    return path


def _outcome(path: Path, data: Any) -> Outcome:
    if not isinstance(data, dict) or data.get("hubbot_outcome") != FORMAT:
        raise HubbotError(f"{path} is not a hubbot deploy outcome (format {FORMAT})")
    try:
        return Outcome(
            Target(str(data["hub"]), str(data["env"])),
            data["ok"] is True,
            float(data["seconds"]),
            str(data["detail"]),
            tuple(str(note) for note in data["notes"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise HubbotError(f"{path}: a deploy outcome without a valid {exc}") from None


def read_outcomes(directory: Path) -> dict[Target, Outcome]:
    """Every outcome file in `directory` (none when it does not exist), by pair."""
    if not directory.is_dir():
        return {}
    found: dict[Target, Outcome] = {}
    for path in sorted(directory.glob("outcome-*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise HubbotError(f"cannot read the deploy outcome {path}: {exc}") from None
        outcome = _outcome(path, data)
        found[outcome.target] = outcome
    return found


def gather(expected: Iterable[Target], reported: dict[Target, Outcome]) -> list[Outcome]:
    """One outcome per expected pair, in matrix order; an unreported pair has failed."""
    return [reported.get(t) or Outcome(t, False, 0.0, MISSING) for t in expected]
