"""bot/actions.py: environment files and workflow commands as the runner reads them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bot import actions
from bot.errors import HubbotError
from tests.test_markdown import details, structure, table

CANARY = "canary-s3cr3t-value"


def refuse_canary(text: str, place: str) -> None:
    """Stands in for Redactor.assert_clean with one registered secret."""
    if CANARY in text:
        raise HubbotError(f"refusing to write {place}: it contains a secret value")


def read_outputs(path: Path) -> dict[str, str]:
    """Parse GITHUB_OUTPUT the way the runner does (`name=value` or heredoc form)."""
    outputs: dict[str, str] = {}
    lines = iter(path.read_text().split("\n"))
    for line in lines:
        if not line:
            continue
        if "<<" in line and ("=" not in line or line.index("<<") < line.index("=")):
            name, delimiter = line.split("<<", 1)
            value: list[str] = []
            for body in lines:
                if body == delimiter:
                    break
                value.append(body)
            else:
                raise AssertionError(f"delimiter of {name} never closes")
            outputs[name] = "\n".join(value)
        else:
            name, value_text = line.split("=", 1)
            outputs[name] = value_text
    return outputs


def test_outputs_round_trip_and_cannot_forge_another(tmp_path: Path) -> None:
    out = tmp_path / "output"
    env = {"GITHUB_OUTPUT": str(out)}
    matrix = '{"include": [{"hub": "tess-public", "env": "staging"}]}'
    forged = "line 1\nEOF\nforged<<EOF\nboom\nEOF\nlast=x"
    assert actions.set_output("matrix", matrix, environ=env)
    assert actions.set_output("notes", forged, environ=env)
    assert actions.set_output("empty", "", environ=env)
    assert read_outputs(out) == {"matrix": matrix, "notes": forged, "empty": ""}
    delimiters = re.findall(r"^\w+<<(ghadelimiter_\w+)$", out.read_text(), re.MULTILINE)
    assert len(set(delimiters)) == 3


def test_output_without_github_output_writes_nothing(tmp_path: Path) -> None:
    assert not actions.set_output("matrix", "[]", environ={})


def test_output_name_is_checked(tmp_path: Path) -> None:
    env = {"GITHUB_OUTPUT": str(tmp_path / "output")}
    with pytest.raises(HubbotError) as caught:
        actions.set_output("a=b", "x", environ=env)
    assert str(caught.value) == "invalid GitHub Actions output name 'a=b'"
    assert not (tmp_path / "output").exists()


def test_summary_is_appended(tmp_path: Path) -> None:
    summary = tmp_path / "summary.md"
    env = {"GITHUB_STEP_SUMMARY": str(summary)}
    assert actions.append_summary("## plan", environ=env)
    assert actions.append_summary("two pairs\n", environ=env)
    assert summary.read_text() == "## plan\ntwo pairs\n"
    assert not actions.append_summary("x", environ={})


@pytest.mark.parametrize("filler", ["é", "x"])
def test_summary_is_capped_and_stays_balanced(tmp_path: Path, filler: str) -> None:
    summary = tmp_path / "summary.md"
    summary.write_text("# earlier step output\n")
    env = {"GITHUB_STEP_SUMMARY": str(summary)}
    report = "\n".join(details(f"pair {n}", table(300, filler * 20)) for n in range(8))
    assert len(report.encode()) > 150_000
    actions.append_summary(report, environ=env, limit=100_000)
    written = summary.read_bytes()
    # The cut falls between two <details>, so at most one of them (~30 kB) is lost.
    assert 70_000 < len(written) <= 100_000
    text = written.decode()
    assert text.startswith("# earlier step output\n<details>")
    assert text.endswith(
        f"_The job summary is truncated here: it is limited to 97 KiB and the full report "
        f"has {len(report.encode()):,} bytes; see the job's artifact._\n"
    )
    structure(text)


def test_summary_full_writes_nothing_more(tmp_path: Path) -> None:
    summary = tmp_path / "summary.md"
    summary.write_text("x" * 1000)
    actions.append_summary("more " * 100, environ={"GITHUB_STEP_SUMMARY": str(summary)}, limit=1000)
    assert summary.read_text() == "x" * 1000


def test_annotation_escapes_data_and_properties() -> None:
    assert actions.annotation(
        "error",
        "100% wrong\r\nsecond: line, here",
        file="deploy,ments/a:b.yaml",
        line=7,
        title="hubbot: 50%",
    ) == (
        "::error file=deploy%2Cments/a%3Ab.yaml,line=7,title=hubbot%3A 50%25"
        "::100%25 wrong%0D%0Asecond: line, here"
    )
    assert actions.annotation("notice", "plain") == "::notice::plain"
    assert (
        actions.annotation("warning", "w", file="f", line=1, end_line=2, col=3, end_column=4)
        == "::warning file=f,line=1,endLine=2,col=3,endColumn=4::w"
    )


def test_annotate_and_group_print_workflow_commands(capsys: pytest.CaptureFixture[str]) -> None:
    with actions.group("deploy tess-public\nstaging"):
        actions.annotate("warning", "slow", file="hub/values.yaml", line=3)
    assert capsys.readouterr().out == (
        "::group::deploy tess-public%0Astaging\n"
        "::warning file=hub/values.yaml,line=3::slow\n"
        "::endgroup::\n"
    )


def test_every_write_refuses_a_secret(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    env = {"GITHUB_OUTPUT": str(tmp_path / "o"), "GITHUB_STEP_SUMMARY": str(tmp_path / "s")}
    attempts = [
        lambda: actions.set_output("x", f"a {CANARY}", environ=env, assert_clean=refuse_canary),
        lambda: actions.append_summary(CANARY, environ=env, assert_clean=refuse_canary),
        lambda: actions.annotate("error", CANARY, assert_clean=refuse_canary),
        lambda: actions.annotate("error", "m", title=CANARY, assert_clean=refuse_canary),
    ]
    places = []
    for attempt in attempts:
        with pytest.raises(HubbotError) as caught:
            attempt()
        places.append(str(caught.value))
    with pytest.raises(HubbotError), actions.group(CANARY, assert_clean=refuse_canary):
        pass
    assert places == [
        "refusing to write GitHub Actions output x: it contains a secret value",
        "refusing to write the job summary: it contains a secret value",
        "refusing to write a workflow annotation: it contains a secret value",
        "refusing to write a workflow annotation: it contains a secret value",
    ]
    assert not (tmp_path / "o").exists()
    assert not (tmp_path / "s").exists()
    assert CANARY not in capsys.readouterr().out


def test_run_url() -> None:
    env = {
        "GITHUB_SERVER_URL": "https://github.com",
        "GITHUB_REPOSITORY": "tess-org/tess-hubs",
        "GITHUB_RUN_ID": "42",
    }
    assert actions.run_url(env) == "https://github.com/tess-org/tess-hubs/actions/runs/42"
    assert actions.run_url({**env, "GITHUB_RUN_ID": ""}) is None
