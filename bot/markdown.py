"""Markdown for GitHub: safe building blocks and a split into comment-sized parts.

GitHub refuses comment bodies over 65,536 characters. `split` cuts a document
into parts under a smaller limit, preferring to cut between top-level blocks;
a single code fence or `<details>` too long for one part is closed at the cut
and re-opened in the next part, so every part renders on its own.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from dataclasses import dataclass

COMMENT_LIMIT = 60_000

_FENCE_OPEN = re.compile(r"^( {0,3})(`{3,}|~{3,})(.*)$")
_DETAILS_TAG = re.compile(r"<details(?:\s[^>]*)?>|</details\s*>", re.IGNORECASE)
_SUMMARY = re.compile(r"<summary(?:\s[^>]*)?>(.*?)</summary\s*>", re.IGNORECASE | re.DOTALL)
_CODE_SPAN = re.compile(r"(`+)(?!`).*?(?<!`)\1(?!`)")
_TABLE_DELIMITER = re.compile(r"^ {0,3}\|?(?:\s*:?-+:?\s*\|)+\s*(?::?-+:?\s*)?$")
_TABLE_SPECIAL = re.compile(r"([\\`*_\[\]|~])")
# Headers reserve room for part numbers up to this many digits.
_MAX_PART_DIGITS = 4


def fence(content: str, info: str = "") -> str:
    """A fenced code block that nothing inside `content` can close early.

    The fence is one backtick longer than the longest backtick run in the content.
    """
    runs = [len(run) for run in re.findall(r"`+", content)]
    ticks = "`" * max(3, max(runs, default=0) + 1)
    info = info.replace("`", "").replace("\n", " ").strip()
    body = content if content.endswith("\n") or not content else content + "\n"
    return f"{ticks}{info}\n{body}{ticks}\n"


def inline_code(text: str, in_table: bool = False) -> str:
    """An inline code span holding `text` literally (pipes escaped inside tables)."""
    text = text.replace("\r\n", " ").replace("\n", " ")
    runs = [len(run) for run in re.findall(r"`+", text)]
    ticks = "`" * (max(runs, default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") or not text.strip() else ""
    if in_table:
        # GitHub splits table rows on unescaped pipes before reading code spans.
        text = text.replace("|", "\\|")
    return f"{ticks}{pad}{text}{pad}{ticks}"


def escape_cell(text: str) -> str:
    """Plain text made safe for one GitHub table cell: no markup, no cell breaks."""
    text = html.escape(text, quote=False)
    text = _TABLE_SPECIAL.sub(r"\\\1", text)
    return text.replace("\r\n", "<br>").replace("\n", "<br>").replace("\r", "<br>")


@dataclass(frozen=True)
class _Fence:
    indent: str
    marker: str
    info: str

    def opener(self) -> str:
        return f"{self.indent}{self.marker}{self.info}"

    def closes(self, line: str) -> bool:
        stripped = line.rstrip()
        body = stripped.lstrip(" ")
        return (
            len(stripped) - len(body) <= 3
            and len(body) >= len(self.marker)
            and set(body) == {self.marker[0]}
        )


@dataclass(frozen=True)
class _Details:
    tag: str
    summary: str | None


_Frame = _Fence | _Details


def _step(stack: tuple[_Frame, ...], line: str) -> tuple[_Frame, ...]:
    """The open fences and `<details>` after `line`, given those open before it."""
    if stack and isinstance(stack[-1], _Fence):
        return stack[:-1] if stack[-1].closes(line) else stack
    opened = _FENCE_OPEN.match(line)
    if opened and not (opened.group(2)[0] == "`" and "`" in opened.group(3)):
        return (*stack, _Fence(opened.group(1), opened.group(2), opened.group(3)))
    frames = list(stack)
    position = 0
    # A tag shown inside a code span is text, not HTML.
    line = _CODE_SPAN.sub(lambda span: " " * len(span.group(0)), line)
    for tag in _DETAILS_TAG.finditer(line):
        if tag.group(0).startswith("</"):
            if frames:
                frames.pop()
        else:
            frames.append(_Details(tag.group(0), None))
        position = tag.end()
    top = frames[-1] if frames else None
    if isinstance(top, _Details) and top.summary is None:
        found = _SUMMARY.search(line, position)
        if found:
            frames[-1] = _Details(top.tag, found.group(1).strip())
    return tuple(frames)


def _in_fence(stack: tuple[_Frame, ...]) -> bool:
    return bool(stack) and isinstance(stack[-1], _Fence)


def _openers(stack: tuple[_Frame, ...]) -> str:
    text = ""
    for frame in stack:
        if isinstance(frame, _Fence):
            text += frame.opener() + "\n"
        else:
            summary = f"{frame.summary} (continued)" if frame.summary else "(continued)"
            text += f"{frame.tag}\n<summary>{summary}</summary>\n\n"
    return text


def _closers(stack: tuple[_Frame, ...]) -> str:
    text = ""
    for frame in reversed(stack):
        if isinstance(frame, _Fence):
            text += frame.indent + frame.marker + "\n"
        else:
            # A blank line first ends any table or paragraph before the tag.
            text += "\n</details>\n"
    return text


def _lines(document: str, longest: int) -> Iterator[str]:
    """The document's lines, each at most `longest` characters (cut if need be)."""
    for line in document.split("\n"):
        while len(line) > longest:
            yield line[:longest]
            line = line[longest:]
        yield line


def _blocks(document: str, longest: int) -> Iterator[list[tuple[str, tuple[_Frame, ...]]]]:
    """Top-level blocks: runs of lines ending where no fence or `<details>` is open.

    Each line comes with the stack open after it.
    """
    stack: tuple[_Frame, ...] = ()
    block: list[tuple[str, tuple[_Frame, ...]]] = []
    for line in _lines(document, longest):
        before, stack = stack, _step(stack, line)
        block.append((line, stack))
        # Paragraphs, lists and tables run on until a blank line; headings stand alone.
        if not stack and (before or not line.strip() or line.lstrip().startswith("#")):
            yield block
            block = []
    if block:
        yield block


def _text(block: list[tuple[str, tuple[_Frame, ...]]]) -> str:
    return "".join(line + "\n" for line, _ in block)


def _cut(block: list[tuple[str, tuple[_Frame, ...]]], budget: int, current: str) -> list[str]:
    """A block too long for one part appended to `current`, cut between lines.

    Constructs open at a cut are closed there and re-opened in the next piece, and
    a table cut in two gets its header rows again.
    """
    pieces: list[str] = []
    before: tuple[_Frame, ...] = ()
    table: str | None = None  # the header rows of the table being cut, if any
    previous = ""
    for line, after in block:
        fenced = _in_fence(before) or _in_fence(after)
        header = not fenced and bool(_TABLE_DELIMITER.match(line)) and "|" in previous
        if fenced or "|" not in line:
            table = None
        if current and len(current) + len(line) + 1 + len(_closers(after)) > budget:
            carried = ""
            if header and current.endswith(previous + "\n"):
                # Never cut between a table's header row and its delimiter row.
                current = current[: -len(previous) - 1]
                carried = previous + "\n"
            pieces.append(current + _closers(before))
            current = _openers(before) + (table or "") + carried
        current += line + "\n"
        if header:
            table = f"{previous}\n{line}\n"
        before, previous = after, line
    pieces.append(current)
    return pieces


def _header(index: int, count: int, full_link: str | None) -> str:
    link = f" [Full diff]({full_link})" if full_link else ""
    return f"_Part {index} of {count}._{link}\n\n"


_PART_HEADER = re.compile(r"\A_Part \d+ of \d+\._(?: \[Full diff\]\([^)\n]*\))?\n\n")


def strip_part_header(part: str) -> str:
    """A part made by `split` without its "Part i of n" header."""
    return _PART_HEADER.sub("", part, count=1)


def _bodies(document: str, budget: int) -> list[str]:
    """Part bodies of at most `budget` characters, cut as `split` describes."""
    bodies: list[str] = []
    current = ""
    for block in _blocks(document, budget // 4):
        text = _text(block)
        if len(current) + len(text) <= budget:
            current += text
            continue
        if len(text) <= budget:
            bodies.append(current)
            current = text
            continue
        # Too long for any part: fill this part up, then continue in the next ones.
        *whole, current = _cut(block, budget, current)
        bodies.extend(whole)
    if current:
        bodies.append(current)
    bodies[-1] = bodies[-1].removesuffix("\n")
    return bodies


def split(document: str, limit: int = COMMENT_LIMIT, full_link: str | None = None) -> list[str]:
    """Cut `document` into parts of at most `limit` characters, each valid on its own.

    With more than one part, each starts with "Part i of n" and a link to the full
    diff. Cuts fall between top-level blocks; a fence or `<details>` longer than
    one part is closed and re-opened (same info string, "(continued)" summary).
    """
    if len(document) <= limit:
        return [document]
    widest = 10**_MAX_PART_DIGITS - 1
    budget = limit - len(_header(widest, widest, full_link))
    _check_budget(budget, limit)
    bodies = _bodies(document, budget)
    count = len(bodies)
    return [_header(i, count, full_link) + body for i, body in enumerate(bodies, 1)]


def truncate(document: str, limit: int, note: str) -> str:
    """`document` if it fits in `limit` characters, else its first part and then `note`.

    The cut falls where `split` would cut, so the kept text is valid on its own.
    """
    if len(document) <= limit:
        return document
    budget = limit - len(note) - 2
    _check_budget(budget, limit)
    return _bodies(document, budget)[0].rstrip("\n") + "\n\n" + note


def _check_budget(budget: int, limit: int) -> None:
    if budget < 200:
        raise ValueError(f"markdown part limit {limit} leaves no room for content")
