"""bot/yamlfile.py: libyaml's fast path reads every file exactly as ruamel does."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.errors import HubbotError
from bot.yamlfile import YamlDoc, _load_with_libyaml, _load_with_ruamel, edit_yaml, load_yaml
from tests.fixtures.repos import PROJECT

ROOT = Path(__file__).resolve().parents[1]


def outcome(load: Any, text: str) -> tuple[str, Any, dict[Any, int]] | str:
    """The document's data (repr: NaN is not equal to itself) and lines, or the error."""
    try:
        doc: YamlDoc = load("f.yaml", text)
    except HubbotError as error:
        return str(error)
    except Exception as error:  # ruamel's own crashes (`+_`) are kept as they were
        return f"{type(error).__name__}: {error}"
    return repr(doc.data), _types(doc.data), doc.lines


def fast(text: str) -> YamlDoc | None:
    """The fast path's document, or None where it hands the file to ruamel."""
    try:
        return _load_with_libyaml("f.yaml", text)
    except Exception:  # ruamel's crashes, which outcome() compares
        return None


def assert_fast_agrees(text: str) -> bool:
    """Where the fast path reads `text`, ruamel reads the same data and lines."""
    expected = outcome(_load_with_ruamel, text)
    assert outcome(load_yaml, text) == expected
    got = fast(text)
    if got is None:
        return False
    assert (repr(got.data), _types(got.data), got.lines) == expected
    return True


def _types(data: Any) -> Any:
    if isinstance(data, dict):
        return {key: _types(value) for key, value in data.items()}
    if isinstance(data, list):
        return [_types(value) for value in data]
    return type(data).__name__


def repository_yaml_files() -> list[str]:
    listed = subprocess.run(
        ["git", "ls-files", "*.yaml", "*.yml"], cwd=ROOT, capture_output=True, text=True
    )
    # Helm templates are Go templates, not YAML.
    return [name for name in listed.stdout.split() if "/templates/" not in name]


def test_every_yaml_file_of_the_repository_reads_the_same() -> None:
    files = repository_yaml_files()
    assert files
    read_fast = [name for name in files if assert_fast_agrees((ROOT / name).read_text())]
    # Every real file is ordinary; a fast path that always gave up would pass the above.
    assert read_fast == files


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a:\n  b: 1\n  b: 2\n", 'f.yaml:3: duplicate key "b" (first set on line 2)'),
        (
            "a: [1, 2\nb: 3\n",
            "f.yaml:2: malformed YAML: expected ',' or ']', but got ':' "
            "(while parsing a flow sequence on line 1)",
        ),
        (
            "a:\n  - on\n",
            "f.yaml:2: plain `on` is a boolean to helm (YAML 1.1) but a string to "
            'YAML 1.2: write true/false, or quote it ("on") if you mean the string',
        ),
        ("a:\n  1: x\n", "f.yaml:2: key 1 must be a string (quote it)"),
        *(
            (
                f"a: 1\nb:\n  - {text}\n",
                f"f.yaml:3: this reads as {shown}, a number JSON cannot hold (YAML's .nan or "
                ".inf, or one too large, such as 1e400), so helm cannot receive it: write a "
                "finite number, or quote it if you mean the string",
            )
            for text, shown in ((".nan", "nan"), ("-.Inf", "-inf"), ("1e400", "inf"))
        ),
    ],
)
def test_files_the_fast_path_hands_over_keep_their_message(text: str, message: str) -> None:
    assert fast(text) is None
    assert outcome(load_yaml, text) == message


@pytest.mark.parametrize(
    ("text", "data"),
    [
        ("a: 'on'\nb: \"no\"\nc: off-peak\n", {"a": "on", "b": "no", "c": "off-peak"}),
        # YAML 1.2 numbers as ruamel reads them (a leading 0 is refused: see below).
        (
            "a: 0x1F\nb: 0o17\nd: 1_000\nf: 1e3\ng: -2.50\n",
            {"a": 31, "b": 15, "d": 1000, "f": 1000.0, "g": -2.5},
        ),
        (
            "a: ~\nb:\nc: null\nd: True\ne: '1'\n",
            {"a": None, "b": None, "c": None, "d": True, "e": "1"},
        ),
        (
            "a: 2002-12-14\nb: 2001-12-14 21:59:43.10\n",
            {"a": "2002-12-14", "b": "2001-12-14T21:59:43.100000"},
        ),
        ("- |\n  x\n- >\n  y\n  z\n", ["x\n", "y z\n"]),
    ],
)
def test_scalars_read_as_ruamel_reads_them(text: str, data: Any) -> None:
    doc = fast(text)
    assert doc is not None
    assert doc.data == data
    assert assert_fast_agrees(text)


def test_lines_of_keys_and_items() -> None:
    doc = fast("a:\n  b:\n  - x\n  -\n    c: 1\n\n  d: [1,\n    2]\n")
    assert doc is not None
    assert doc.lines == {
        ("a",): 1,
        ("a", "b"): 2,
        ("a", "b", 0): 3,
        ("a", "b", 1): 5,
        ("a", "b", 1, "c"): 5,
        ("a", "d"): 7,
        ("a", "d", 0): 7,
        ("a", "d", 1): 8,
    }
    assert assert_fast_agrees("a:\n  b:\n  - x\n  -\n    c: 1\n\n  d: [1,\n    2]\n")


# Scalars that YAML 1.1 and 1.2, or libyaml and ruamel, may read differently.
TOKENS = [
    "a",
    "on",
    "off",
    "yes",
    "No",
    "y",
    "true",
    "False",
    "TRUE",
    "null",
    "~",
    "Null",
    "0",
    "-1",
    "+2",
    "017",
    "0o17",
    "0x1F",
    "0b101",
    "1_000",
    "+_",
    "1.5",
    "1e3",
    "1.0e-3",
    ".5",
    "-.inf",
    ".NaN",
    "1:30",
    "190:20:30",
    "2002-12-14",
    "2001-12-14 21:59:43.10 -5",
    "2001-12-14t21:59:43.10-05:00",
    "<<",
    "=",
    "x y",
    "a:b",
    "a #b",
    "-",
    "?",
    "%x",
    "@x",
    "`x",
    "é",
    "a\\b",
    "1,2",
    "[",
    "{}",
    "",
    " ",
]
PLAIN = st.sampled_from(TOKENS)
KEYS = st.sampled_from(["a", "b", "on", "1", "null", "x y", "<<", "~", "true", "a-b", "a.b"])


def quoted(value: str, style: int) -> str:
    if style == 0:
        return value
    if style == 1:
        return "'" + value.replace("'", "''") + "'"
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


TREES = st.recursive(
    st.tuples(PLAIN, st.integers(0, 2)),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.lists(st.tuples(st.tuples(KEYS, st.integers(0, 2)), inner), max_size=3)
    ),
    max_leaves=10,
)


def emit(tree: Any, indent: int, flow: bool) -> list[str]:
    """Block YAML lines for `tree` (flow style for collections when `flow`)."""
    pad = " " * indent
    if isinstance(tree, tuple):
        return [pad + quoted(*tree)]
    if flow:
        return [pad + flow_text(tree)]
    if not tree:
        return [pad + ("[]" if isinstance(tree, list) else "{}")]
    lines = []
    for entry in tree:
        if isinstance(entry, tuple) and len(entry) == 2 and isinstance(entry[0], tuple):
            key, value = entry
            head = pad + quoted(*key) + ":"
        else:
            value, head = entry, pad + "-"
        if isinstance(value, tuple):
            lines.append(head + " " + quoted(*value))
        else:
            lines.append(head)
            lines.extend(emit(value, indent + 2, flow))
    return lines


def flow_text(tree: Any) -> str:
    if isinstance(tree, tuple):
        return quoted(*tree)
    parts = []
    is_map = bool(tree) and isinstance(tree[0], tuple) and isinstance(tree[0][0], tuple)
    for entry in tree:
        if is_map:
            parts.append(f"{quoted(*entry[0])}: {flow_text(entry[1])}")
        else:
            parts.append(flow_text(entry))
    return ("{" if is_map else "[") + ", ".join(parts) + ("}" if is_map else "]")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tree=TREES, flow=st.booleans(), comment=st.booleans())
def test_generated_documents_read_the_same(tree: Any, flow: bool, comment: bool) -> None:
    lines = emit(tree, 0, flow)
    if comment:
        lines.insert(len(lines) // 2, "# a comment")
    assert_fast_agrees("\n".join(lines) + "\n")


@settings(max_examples=300, deadline=None)
@given(text=st.text(alphabet=list("ab1: -[]{},#'\"\n\t|>&!*?%@`~.\\é"), max_size=40))
def test_arbitrary_text_reads_the_same(text: str) -> None:
    assert_fast_agrees(text)


def test_merge_keys_read_with_the_line_of_the_merge() -> None:
    doc = load_yaml("x.yaml", "a: &base {b: 1}\nc:\n  <<: *base\n  d: 2\n")
    assert doc.data == {"a": {"b": 1}, "c": {"b": 1, "d": 2}}
    assert doc.lines[("c", "b")] == 3
    assert doc.lines[("c", "d")] == 4


def test_tagged_and_anchored_scalars_are_plain_values() -> None:
    doc = load_yaml("x.yaml", "a: !!str 5\nb: &yes true\nc: *yes\n")
    assert doc.data == {"a": "5", "b": True, "c": True}
    assert type(doc.data["b"]) is bool


def test_an_unsupported_tag_names_the_file_and_line() -> None:
    with pytest.raises(HubbotError) as caught:
        load_yaml("x.yaml", "a: 1\nb: !custom 5\n")
    assert str(caught.value) == (
        "x.yaml:2: the YAML tag !custom is not supported here: write the plain value"
    )


@pytest.mark.parametrize(
    ("text", "line", "tag"),
    [
        ("a: 1\nx: !foo [a]\n", 2, "!foo"),
        ('x: !!python/object/apply:os.system ["id"]\n', 1, "!!python/object/apply:os.system"),
        ("a:\n  - 1\n  - !foo [a]\n", 3, "!foo"),
        ("a: 1\nalpha: !foo {a: 1}\n", 2, "!foo"),
        ("a: 1\nx:\n  !!set\n  {a, b}\n", 3, "!!set"),
        ("x: !!omap [{a: 1}, {b: 2}]\n", 1, "!!omap"),
        ("x: !!pairs [{a: 1}]\n", 1, "!!pairs"),
        ("x: !!str [a]\n", 1, "!!str"),
        ("!foo\na: 1\n", 1, "!foo"),
    ],
)
def test_a_tag_on_a_collection_is_refused_at_its_line(text: str, line: int, tag: str) -> None:
    assert fast(text) is None
    assert outcome(load_yaml, text) == (
        f"f.yaml:{line}: the YAML tag {tag} is not supported here: write the plain value"
    )


@pytest.mark.parametrize(
    ("text", "line", "tag"),
    [
        ("a: 1\nx: !!binary aGVsbG8=\n", 2, "!!binary"),
        ("x: !!timestamp 2020-01-01\n", 1, "!!timestamp"),
        ("x: !<tag:yaml.org,2002:binary> aGVsbG8=\n", 1, "!!binary"),
        ("x: !!int 5\n", 1, "!!int"),
        ("x: !!null x\n", 1, "!!null"),
        ("x: ! 5\n", 1, "!"),  # a string to YAML, the number 5 to ruamel
        ("a: 1\n!foo k: v\n", 2, "!foo"),
    ],
)
def test_a_tag_on_a_scalar_other_than_str_is_refused_at_its_line(
    text: str, line: int, tag: str
) -> None:
    assert fast(text) is None
    assert outcome(load_yaml, text) == (
        f"f.yaml:{line}: the YAML tag {tag} is not supported here: write the plain value"
    )


def test_a_str_tag_on_a_key_reads_as_the_string() -> None:
    assert load_yaml("x.yaml", "!!str 5: v\n").data == {"5": "v"}
    with pytest.raises(HubbotError) as caught:
        load_yaml("x.yaml", "a: 1\n!!str a: 2\n")
    assert str(caught.value) == 'x.yaml:2: duplicate key "a" (first set on line 1)'


PLACEHOLDER = "looks like an unfilled template placeholder (cookiecutter or Jinja)"


@pytest.mark.parametrize(
    ("text", "line", "written"),
    [
        ("a:\n  guarantee: {{ cookiecutter.memory }}\n", 2, "{{ cookiecutter.memory }}"),
        ("a:\n  - {{cookiecutter.x}}\n", 2, "{{cookiecutter.x}}"),
        ("{{ cookiecutter.hub }}:\n  a: 1\n", 1, "{{ cookiecutter.hub }}"),
        ("x: 1\nrelease: {{ cookiecutter.hub }}-staging\n", 2, "{{ cookiecutter.hub }}"),
    ],
)
def test_a_template_placeholder_is_named_as_written(text: str, line: int, written: str) -> None:
    with pytest.raises(HubbotError) as caught:
        load_yaml("x.yaml", text)
    message = str(caught.value)
    assert message.startswith(f"x.yaml:{line}: ")
    assert f"`{written}` {PLACEHOLDER}" in message
    assert "ordereddict" not in message


def test_a_key_that_is_not_a_string_is_shown_as_written() -> None:
    with pytest.raises(HubbotError) as caught:
        load_yaml("x.yaml", "a: {[1, 2]: 3}\n")
    assert str(caught.value) == (
        "x.yaml:1: a key must be a string, and this line has one that is not "
        "(`a: {[1, 2]: 3}`): quote it"
    )


def test_a_value_ruamel_cannot_construct_is_one_clean_error() -> None:
    with pytest.raises(HubbotError) as caught:
        load_yaml("x.yaml", "a: +_\n")
    assert str(caught.value) == (
        "x.yaml: malformed YAML: a value cannot be read (IndexError): quote odd values"
    )


@pytest.mark.parametrize(
    ("text", "written", "decimal", "line"),
    [
        ("a: 017\n", "017", 17, 1),
        ("x: 1\nb:\n  - -017\n", "-017", -17, 3),
        ("a: {b: 09}\n", "09", 9, 1),
    ],
)
def test_a_plain_integer_with_a_leading_zero_is_ambiguous(
    text: str, written: str, decimal: int, line: int
) -> None:
    with pytest.raises(HubbotError) as caught:
        load_yaml("x.yaml", text)
    assert str(caught.value) == (
        f"x.yaml:{line}: plain `{written}` has a leading zero: helm (YAML 1.1) reads it as "
        f"octal or a string, YAML 1.2 as {decimal}: drop the zero, or quote it if you mean "
        "the string"
    )


def test_zero_and_quoted_leading_zeros_are_fine() -> None:
    assert load_yaml("x.yaml", 'a: 0\nb: "017"\nc: 10\n').data == {"a": 0, "b": "017", "c": 10}


# --- bounded reading: every file comes from a pull request -----------------------------


def alias_bomb(levels: int) -> str:
    """`levels` lines, each a list of nine aliases of the line above: 9**levels values."""
    text = 'a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]\n'
    for level in range(1, levels):
        text += (
            f"l{level}: &l{level} ["
            + ", ".join([f"*{'a' if level == 1 else f'l{level - 1}'}"] * 9)
            + "]\n"
        )
    return text


def nested_block_mappings(levels: int) -> str:
    return "".join(" " * depth + "k:\n" for depth in range(levels)) + " " * levels + "v\n"


TOO_DEEP = "the data nests more than 100 levels deep: flatten it"
BOMB = (
    "aliases expand to more than 10,000 values (a YAML alias bomb?): write the values out "
    "or use fewer aliases"
)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param(alias_bomb(9), f"f.yaml:5: {BOMB}", id="9-level alias bomb"),
        pytest.param(alias_bomb(6), f"f.yaml:5: {BOMB}", id="6-level alias bomb"),
        pytest.param(
            "base: &b {"
            + ", ".join(f"k{i}: 0" for i in range(100))
            + "}\n"
            + "".join(f"c{i}: {{<<: *b}}\n" for i in range(50)),
            f"f.yaml:51: {BOMB}",  # *b is 201 values: the 50th passes 10,000
            id="merge keys beyond the limit",
        ),
        pytest.param("a: &a [1, *a]\n", "f.yaml:1: alias *a refers to a node that contains it"),
        pytest.param(
            "a: &a " + "[" * 60 + "1" + "]" * 60 + "\nb: " + "[" * 50 + "*a" + "]" * 50 + "\n",
            "f.yaml:2: alias *a nests the data more than 100 levels deep",
            id="alias nesting too deep",
        ),
        pytest.param("[" * 3000 + "]" * 3000, f"f.yaml:1: {TOO_DEEP}", id="flow 3000 deep"),
        pytest.param("a: " + "[" * 101 + "]" * 101, f"f.yaml:1: {TOO_DEEP}", id="flow 101 deep"),
        pytest.param("- " * 1500 + "x\n", f"f.yaml:1: {TOO_DEEP}", id="block 1500 deep"),
        pytest.param(nested_block_mappings(150), f"f.yaml:100: {TOO_DEEP}", id="block 150 deep"),
        pytest.param(
            "x: !!str 1\n" + nested_block_mappings(150),
            f"f.yaml:101: {TOO_DEEP}",
            id="block 150 deep, read by ruamel",
        ),
        pytest.param(
            "a: 1\nb: " + "x" * 300_000 + "\n",
            "f.yaml:2: the file is larger than 256 KiB, the limit for a YAML file here: split it "
            "or make it smaller",
            id="larger than 256 KiB",
        ),
        pytest.param(
            "a: 1\nb: é\x00\x01\x02\n",
            "f.yaml:2: byte offset 10: the character U+0000 is not allowed in YAML (a binary "
            "file?): remove it",
            id="binary junk",
        ),
    ],
)
def test_reading_is_bounded(text: str, message: str) -> None:
    started = time.monotonic()
    assert outcome(load_yaml, text) == message
    assert time.monotonic() - started < 0.5


@pytest.mark.parametrize(
    "text",
    [
        pytest.param(alias_bomb(6), id="alias bomb"),
        pytest.param("- " * 1500 + "x\n", id="block 1500 deep"),
        pytest.param(nested_block_mappings(150), id="block 150 deep"),
        pytest.param("a: &a [1, *a]\n", id="recursive alias"),
    ],
)
def test_ruamel_alone_keeps_the_bounds(text: str) -> None:
    with pytest.raises(HubbotError):
        _load_with_ruamel("f.yaml", text)


def test_the_limits_leave_room_for_real_files() -> None:
    text = "base: &b {x: 1, y: [1, 2]}\n" + "".join(f"k{i}:\n  <<: *b\n" for i in range(100))
    assert load_yaml("f.yaml", text).data["k99"] == {"x": 1, "y": [1, 2]}
    deepest = "- " * 99 + "x\n"
    assert assert_fast_agrees(deepest)
    assert outcome(load_yaml, "- " * 100 + "x\n") == f"f.yaml:1: {TOO_DEEP}"

@pytest.mark.parametrize(
    "relative",
    sorted(
        str(path.relative_to(PROJECT))
        for pattern in ("deployments/*/hubploy.yaml", "deployments/*/config/*.yaml", "hub/*.yaml")
        for path in PROJECT.glob(pattern)
    ),
)
def test_an_edit_keeps_every_byte_it_does_not_change(relative: str) -> None:
    text = (PROJECT / relative).read_text()
    assert edit_yaml(relative, text, lambda doc: None) == text


def test_an_edit_keeps_comments_quoting_and_flow_style() -> None:
    text = '# top\na:\n  # why\n  b: "x"  # says x\n  c: {d: 1, e: [f, g]}\n  h: null\n'

    def change(doc: Any) -> None:
        doc["a"]["c"]["d"] = 2

    assert edit_yaml("x.yaml", text, change) == text.replace("d: 1", "d: 2")


def test_an_edit_of_a_bad_file_is_the_readers_message() -> None:
    with pytest.raises(HubbotError, match=r"^x.yaml:1: plain `on` is a boolean"):
        edit_yaml("x.yaml", "a: on\n", lambda doc: None)
