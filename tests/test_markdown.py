"""bot/markdown.py: parts under the limit, each one valid markdown on its own.

The checks parse the output with a small reader written here from the
CommonMark rules for fenced code blocks and GitHub's HTML blocks, so the
splitter is not checked against its own parser.
"""

from __future__ import annotations

import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.markdown import COMMENT_LIMIT, escape_cell, fence, inline_code, split

HEADER = re.compile(r"^_Part (\d+) of (\d+)\._(?: \[Full diff\]\((.*)\))?$")


def code_lines(part: str) -> tuple[list[bool], list[str]]:
    """Which lines of `part` belong to a fenced code block, and the fences' info strings.

    Fails on a fence left open at the end.
    """
    flags: list[bool] = []
    infos: list[str] = []
    open_fence: tuple[str, int] | None = None
    for line in part.split("\n"):
        if open_fence is not None:
            char, length = open_fence
            body = line.strip()
            indent = len(line) - len(line.lstrip(" "))
            if indent <= 3 and len(body) >= length and body == char * len(body):
                open_fence = None
            flags.append(True)
            continue
        opened = re.match(r"^ {0,3}(`{3,}|~{3,})(.*)$", line)
        if opened and not (opened.group(1)[0] == "`" and "`" in opened.group(2)):
            open_fence = (opened.group(1)[0], len(opened.group(1)))
            infos.append(opened.group(2))
        flags.append(bool(opened))
    assert open_fence is None, "a code fence is left open at the end of the part"
    return flags, infos


def structure(part: str) -> tuple[list[str], int]:
    """The info strings of the fences in `part` and the deepest <details> nesting.

    Fails on an unclosed fence, a stray </details> or an unclosed <details>, or
    table rows (of `table` below) without their header rows.
    """
    flags, infos = code_lines(part)
    lines = part.split("\n")
    depth = deepest = 0
    for index, (line, in_code) in enumerate(zip(lines, flags, strict=True)):
        if in_code:
            continue
        without_code = re.sub(r"(`+)(?!`).*?(?<!`)\1(?!`)", "", line)
        for tag in re.findall(r"</?details\b", without_code):
            depth += -1 if tag.startswith("</") else 1
            assert depth >= 0, f"stray </details> in line {line!r}"
            deepest = max(deepest, depth)
        if line.startswith("| `") and not lines[index - 1].startswith("| `"):
            assert lines[index - 2 : index] == [TABLE_HEADER, TABLE_DELIMITER], line
    assert depth == 0, f"{depth} <details> left open at the end of the part"
    return infos, deepest


def check_parts(document: str, parts: list[str], limit: int, link: str | None) -> None:
    if len(document) <= limit:
        assert parts == [document]
        return
    assert len(parts) > 1
    added: list[str] = []
    for index, part in enumerate(parts, 1):
        assert len(part) <= limit
        header, blank, body = part.split("\n", 2)
        matched = HEADER.match(header)
        assert matched, header
        assert (int(matched.group(1)), int(matched.group(2))) == (index, len(parts))
        assert matched.group(3) == link
        assert blank == ""
        structure(body)
        added.extend(body.split("\n"))
    # Nothing lost, nothing reordered: the input's lines appear in order in the output.
    remaining = iter(added)
    for line in document.split("\n"):
        assert any(line == out for out in remaining), f"line lost: {line!r}"


TABLE_HEADER = "| key | old | new | layer |"
TABLE_DELIMITER = "| --- | --- | --- | --- |"


def table(rows: int, prefix: str = "key") -> str:
    lines = [TABLE_HEADER, TABLE_DELIMITER]
    for n in range(rows):
        lines.append(
            f"| {inline_code(f'{prefix}.{n}', in_table=True)} | {escape_cell(f'old|{n}')} "
            f"| {escape_cell(f'new <{n}>')} | config/prod.yaml |"
        )
    return "\n".join(lines) + "\n"


def details(summary: str, body: str) -> str:
    return f"<details>\n<summary>{summary}</summary>\n\n{body}\n</details>\n"


def test_a_short_document_is_one_part_unchanged() -> None:
    document = "## Summary\n\nnothing changes\n"
    assert split(document) == [document]


def test_thousands_of_keys_make_valid_parts_under_the_github_limit() -> None:
    pairs = [
        details(f"tess-{hub}/{env}", table(3000, f"{hub}.{env}") + "\n" + fence("x" * 500, "diff"))
        for hub in ("public", "private")
        for env in ("staging", "prod")
    ]
    document = "## hubbot diff\n\n4 pairs change\n\n" + "\n".join(pairs)
    link = "https://github.com/o/r/actions/runs/1"
    parts = split(document, full_link=link)
    check_parts(document, parts, COMMENT_LIMIT, link)
    assert len(parts) >= 4
    # Each pair's table was too long for one part: its <details> continues.
    assert any("<summary>tess-public/staging (continued)</summary>" in p for p in parts)


def test_a_fence_too_long_for_one_part_is_reopened_with_its_info_string() -> None:
    body = "\n".join(f"+  line {n}" for n in range(400))
    document = "intro\n\n" + fence(body, "diff") + "\n~~~~yaml\n" + body + "\n~~~~\n"
    parts = split(document, limit=1000)
    check_parts(document, parts, 1000, None)
    infos = [info for part in parts for info in structure(part.split("\n", 2)[2])[0]]
    assert set(infos) == {"diff", "yaml"}
    assert infos.count("diff") > 1
    assert all(part.count("~~~~yaml") <= 1 for part in parts)


def test_cuts_fall_between_blocks_when_the_blocks_fit() -> None:
    blocks = [details(f"pair {n}", table(10, f"k{n}")) for n in range(30)]
    document = "\n".join(blocks)
    parts = split(document, limit=3000)
    check_parts(document, parts, 3000, None)
    assert not any("(continued)" in part for part in parts)
    # Without re-opened constructs, the bodies put together are the document itself.
    assert "".join(part.split("\n", 2)[2] for part in parts) == document


def test_a_cut_table_repeats_its_header_rows() -> None:
    # Sized so that a cut first falls between the second table's header and delimiter.
    document = "\n".join([table(10, "a"), table(11, "a")])
    parts = split(document, limit=645)
    check_parts(document, parts, 645, None)
    bodies = [part.split("\n", 2)[2] for part in parts]
    assert all(body.startswith(f"{TABLE_HEADER}\n{TABLE_DELIMITER}\n| `a.") for body in bodies)
    assert bodies[-1].count("| `a.") == 1


def test_fence_is_longer_than_any_backtick_run_inside() -> None:
    content = "a ```` b\n```\n`````"
    block = fence(content, "text")
    assert block.startswith("``````text\n")
    assert block.endswith("\n``````\n")
    _, depth = structure(block)
    assert depth == 0


def test_escape_cell_keeps_one_cell_and_no_markup() -> None:
    assert escape_cell("a|b") == "a\\|b"
    assert escape_cell("a\\|b") == "a\\\\\\|b"
    assert escape_cell("<details>") == "&lt;details&gt;"
    assert escape_cell("line 1\nline 2") == "line 1<br>line 2"
    assert escape_cell("*x* `y`") == "\\*x\\* \\`y\\`"


def test_inline_code_survives_backticks_and_pipes() -> None:
    assert inline_code("a`b") == "``a`b``"
    assert inline_code("`x") == "`` `x ``"
    assert inline_code("a|b", in_table=True) == "`a\\|b`"


_words = st.text(alphabet="abcxyz <>|*`~-_.:/", min_size=0, max_size=40)
_info = st.sampled_from(["", "diff", "yaml", "json title=x"])


@st.composite
def _fenced(draw: st.DrawFn) -> str:
    lines = draw(st.lists(_words, min_size=0, max_size=60))
    if draw(st.booleans()):
        return fence("\n".join(lines), draw(_info))
    marker = "~" * draw(st.integers(3, 6))
    safe = [line.replace("~", "-") for line in lines]
    return f"{marker}{draw(_info)}\n" + "".join(s + "\n" for s in safe) + f"{marker}\n"


def _block(depth: int) -> st.SearchStrategy[str]:
    simple = st.one_of(
        _words.map(lambda w: w.replace("<", "&lt;").replace("`", "'").replace("~", "-") + "\n"),
        st.builds(lambda n, p: table(n, p), st.integers(0, 80), st.sampled_from(["a", "b"])),
        _fenced(),
        st.just("### heading\n"),
    )
    if depth == 0:
        return simple
    nested = st.builds(
        lambda summary, body: details(summary, "\n".join(body)),
        st.sampled_from(["tess-public/prod", "values", ""]),
        st.lists(_block(depth - 1), min_size=0, max_size=6),
    )
    return st.one_of(simple, nested)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    blocks=st.lists(_block(2), min_size=1, max_size=12),
    limit=st.integers(600, 4000),
    link=st.sampled_from([None, "https://example.org/full"]),
)
def test_property_parts_are_under_the_limit_and_balanced(
    blocks: list[str], limit: int, link: str | None
) -> None:
    document = "\n".join(blocks)
    check_parts(document, split(document, limit=limit, full_link=link), limit, link)
