"""The markdown that sections write, as HTML: headings, paragraphs, bullet lists and tables.

Sections write a small, fixed subset of markdown (markdown.py's tables, `- ` lists, `###`
headings, inline `code`); this turns exactly that subset into HTML, escaped, rather than
taking on a markdown library for it. Tables come out sortable, a label cell with its colour.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Mapping, Sequence

_CELL_SPLIT = re.compile(r"(?<!\\)\|")
_CODE = re.compile(r"`([^`]+)`")
_STRONG = re.compile(r"\*\*([^*]+)\*\*")
_LINK = re.compile(r"\[([^\]]+)\]\(([^)\s]+)\)")
LABEL_HEADINGS = ("label", "winner", "runner-up")


def to_html(lines: Sequence[str], colors: Mapping[str, str], level: int = 3) -> str:
    """HTML for a section's body; `###` becomes <h`level`>, images are left out (page.py
    draws the charts itself)."""
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.strip() or line.startswith("!["):
            i += 1
        elif line.startswith("#"):
            text = line.lstrip("#").strip()
            out.append(f"<h{level}>{inline(text)}</h{level}>")
            i += 1
        elif line.startswith("|"):
            j = _run(lines, i, lambda s: s.startswith("|"))
            out.append(table(lines[i:j], colors))
            i = j
        elif line.startswith("- "):
            j = _run(lines, i, lambda s: s.startswith("- "))
            items = "".join(f"<li>{inline(s[2:])}</li>" for s in lines[i:j])
            out.append(f"<ul>{items}</ul>")
            i = j
        else:
            j = _run(lines, i, lambda s: bool(s.strip()) and not s.startswith(("|", "- ", "#")))
            out.append(f"<p>{inline(' '.join(lines[i:j]))}</p>")
            i = j
    return "\n".join(out)


def table(rows: Sequence[str], colors: Mapping[str, str]) -> str:
    """A markdown table (heading row, alignment row, rows) as a sortable HTML table."""
    cells = [_cells(row) for row in rows]
    head, align, body = cells[0], cells[1] if len(cells) > 1 else [], cells[2:]
    numeric = [a.endswith(":") for a in align] + [False] * len(head)
    colored = {i for i, h in enumerate(head) if h in LABEL_HEADINGS}
    ths = "".join(
        f'<th scope="col"{" class=num" if numeric[i] else ""}>{inline(h)}</th>'
        for i, h in enumerate(head)
    )
    trs = []
    for row in body:
        tds = []
        for i, value in enumerate(row):
            swatch = (
                f'<span class="swatch" style="background:{colors[value]}"></span>'
                if i in colored and value in colors
                else ""
            )
            cls = " class=num" if i < len(numeric) and numeric[i] else ""
            cls = ' class="label"' if swatch else cls
            tds.append(f"<td{cls}>{swatch}{inline(value)}</td>")
        trs.append(f"<tr>{''.join(tds)}</tr>")
    return (
        f'<table class="sortable"><thead><tr>{ths}</tr></thead>'
        f"<tbody>{''.join(trs)}</tbody></table>"
    )


def inline(text: str) -> str:
    """Escaped text with markdown's inline code, bold and links."""
    out = html.escape(text, quote=True)
    out = _CODE.sub(r"<code>\1</code>", out)
    out = _STRONG.sub(r"<strong>\1</strong>", out)
    return _LINK.sub(r'<a href="\2">\1</a>', out)


def _cells(row: str) -> list[str]:
    inner = row.strip()
    inner = inner[1:] if inner.startswith("|") else inner
    inner = inner[:-1] if inner.endswith("|") and not inner.endswith("\\|") else inner
    return [c.strip().replace("\\|", "|") for c in _CELL_SPLIT.split(inner)]


def _run(lines: Sequence[str], start: int, keep: Callable[[str], bool]) -> int:
    """The index after the run of lines from `start` that `keep` accepts (at least one)."""
    end = start
    while end < len(lines) and keep(lines[end]):
        end += 1
    return max(end, start + 1)
