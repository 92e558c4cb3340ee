"""bot/main.py: only the chosen verb's module is imported, and it parses the same."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from bot.errors import UsageError
from bot.main import VERBS, chosen_verb, parser

# Imported by build, deploy, ci or infra/ checks; validate, plan and diff need none of them.
HEAVY = ("docker", "repo2docker", "boto3", "botocore", "hcl2")

LOADED = """
import sys
from bot.main import main
try:
    status = main(sys.argv[1:])
except SystemExit as stop:
    status = stop.code
heavy = {heavy!r}
print(status, sorted(name for name in sys.modules if name.split(".")[0] in heavy))
"""


@pytest.mark.parametrize(
    "argv",
    [
        ["validate"],
        ["--repo", "/x", "plan", "--base", "main"],
        ["--repo=/x", "diff", "--base", "prod", "--format", "text"],
        ["--rep", "diff", "plan", "--base", "prod"],  # an abbreviated --repo takes "diff"
        ["secrets", "check"],
        ["explain", "hub", "staging", "a.b"],
    ],
)
def test_the_chosen_verb_parses_as_with_every_verb_imported(argv: list[str]) -> None:
    verb = chosen_verb(argv)
    assert verb == parser().parse_args(argv).verb
    assert parser(verb).parse_args(argv) == parser().parse_args(argv)


@pytest.mark.parametrize(
    "argv", [[], ["--help"], ["-h", "validate"], ["nosuch"], ["--repo"], ["--bogus"]]
)
def test_top_level_help_and_errors_import_every_verb(argv: list[str]) -> None:
    assert chosen_verb(argv) is None


def test_an_unknown_verb_is_a_usage_error_naming_the_choices() -> None:
    with pytest.raises(UsageError) as raised:
        parser(chosen_verb(["nosuch"])).parse_args(["nosuch"])
    assert str(raised.value) == (
        "argument COMMAND: invalid choice: 'nosuch' (choose from "
        + ", ".join(f"'{verb}'" for verb in VERBS)
        + ") (see `hubbot --help`)"
    )


def test_help_lists_every_verb_with_its_help() -> None:
    listed = subprocess.run(
        [sys.executable, "-m", "bot", "--help"], capture_output=True, text=True, check=True
    ).stdout
    helps = {
        action.dest: action.help
        for top in [parser()]
        for sub in top._subparsers._group_actions  # type: ignore[union-attr]
        for action in sub._choices_actions  # type: ignore[attr-defined]
    }
    assert sorted(helps) == sorted(VERBS)
    for verb, text in helps.items():
        assert text
        assert f"    {verb} " in listed
        assert text.split()[0] in listed


def loaded_heavy(*argv: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", LOADED.format(heavy=set(HEAVY)), *argv],
        capture_output=True,
        text=True,
        check=False,
    )
    return result.stdout.strip().splitlines()[-1]


@pytest.mark.parametrize("verb", ["validate", "plan", "diff"])
def test_help_of_a_light_verb_imports_no_heavy_module(verb: str) -> None:
    assert loaded_heavy(verb, "--help") == "0 []"


@pytest.mark.parametrize(
    "argv", [["plan", "--base", "prod"], ["diff", "--base", "prod", "--format", "text"]]
)
def test_plan_and_diff_import_no_heavy_module(hub_repo: Path, argv: list[str]) -> None:
    assert loaded_heavy("--repo", str(hub_repo), *argv) == "0 []"


@pytest.mark.parametrize(
    ("argv", "suggestion"),
    [(["valdate"], "`validate`"), (["secrets", "chek"], "`check`"), (["dif"], "`diff`")],
)
def test_a_misspelt_verb_or_action_suggests_the_closest(argv: list[str], suggestion: str) -> None:
    with pytest.raises(UsageError) as raised:
        parser(chosen_verb(argv)).parse_args(argv)
    assert f"did you mean {suggestion}?" in str(raised.value)


def test_a_verb_nothing_resembles_gets_no_suggestion() -> None:
    with pytest.raises(UsageError) as raised:
        parser(chosen_verb(["zzzz"])).parse_args(["zzzz"])
    assert "did you mean" not in str(raised.value)


def test_version_imports_no_verb() -> None:
    script = (
        "import sys\nfrom bot.main import main\n"
        "try:\n    main(['--version'])\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in sys.modules if m.startswith('bot.commands.')))"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.stdout.splitlines()[-1] == "[]", done.stderr


def test_version_prints_the_installed_version() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bot.main", "--version"], capture_output=True, text=True
    )
    assert done.returncode == 0
    assert done.stdout.strip() == f"hubbot {metadata.version('tess-hubs-bot')}"


def test_a_closed_pipe_ends_quietly_as_a_pipe_closed_program(hub_repo: Path) -> None:
    # `hubbot validate | head -0`: the reader is gone before the first line is written.
    command = [sys.executable, "-m", "bot", "--repo", str(hub_repo), "validate"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert process.stdout is not None
    assert process.stderr is not None
    process.stdout.close()
    errors = process.stderr.read()
    assert process.wait() == 141
    assert errors == b""


def test_output_the_terminal_cannot_encode_is_escaped(hub_repo: Path) -> None:
    layer = hub_repo / "deployments/tess-public/config/staging.yaml"
    layer.write_text(layer.read_text() + "  x-note: café\n")
    command = [sys.executable, "-m", "bot", "--repo", str(hub_repo), "render"]
    environment = {**os.environ, "PYTHONIOENCODING": "ascii"}
    shown = subprocess.run(
        [*command, "tess-public", "staging"], capture_output=True, env=environment, check=False
    )
    assert (shown.returncode, shown.stderr) == (0, b"")
    assert b"  x-note: caf\\xe9\n" in shown.stdout
    refused = subprocess.run(
        [*command, "tess-public", "stagé"], capture_output=True, env=environment, check=False
    )
    assert refused.returncode == 1
    assert refused.stderr.startswith(b"hubbot: error: unknown environment 'stag\\xe9'")


def imported_modules(path: Path) -> set[str]:
    """The modules `path` imports, by name (`from bot import x` gives bot.x)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names |= {node.module, *(f"{node.module}.{alias.name}" for alias in node.names)}
    return names


def test_verbs_call_library_modules_never_another_verb() -> None:
    bot = Path(__file__).parent.parent / "bot"
    for module in sorted(bot.rglob("*.py")):
        if module.name == "main.py" and module.parent == bot:
            continue  # the command line imports the chosen verb's module
        verbs = {name for name in imported_modules(module) if name.startswith("bot.commands.")}
        assert not verbs, f"{module.relative_to(bot.parent)} imports {sorted(verbs)}"
