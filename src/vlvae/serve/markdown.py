"""The part of Markdown that ``RUN/report.md`` uses, as HTML: headings, paragraphs, tables,
lists, code, images, links, bold and italics.

Table cells are split at a ``|`` with white space on both sides (or an escaped ``\\|``-free
edge), because the report writes ``q_True(z|y)`` inside cells without escaping its bar.
"""

from __future__ import annotations

import html
import re

__all__ = ["render_markdown"]

_TABLE_SEPARATOR = re.compile(r"^\|?\s*:?-{3,}:?\s*(\|\s*:?-{3,}:?\s*)*\|?$")
_CELL_BAR = re.compile(r"(?<=\s)\|(?=\s)")
_IMAGE = re.compile(r"!\[([^\]]*)\]\(([^)\s]+)\)")
_LINK = re.compile(r"\[([^\]]+)\]\(([^)\s]+)\)")
_CODE = re.compile(r"`([^`]+)`")
_BOLD = re.compile(r"\*\*(.+?)\*\*")
_ITALIC = re.compile(r"(?<![\w*])\*(?!\s)(.+?)(?<!\s)\*(?![\w*])")


def _url(url: str, base: str) -> str:
    if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", url) or url.startswith(("/", "#")):
        return url if url.startswith(("/", "#", "http://", "https://")) else "#"
    return base + url


def _inline(text: str, base: str) -> str:
    codes: list[str] = []

    def keep(match: re.Match) -> str:
        codes.append(f"<code>{html.escape(match.group(1))}</code>")
        return f"\x00{len(codes) - 1}\x00"

    text = _CODE.sub(keep, text.replace("\\|", "|"))
    text = html.escape(text, quote=False)
    text = _IMAGE.sub(
        lambda m: f'<img alt="{html.escape(m.group(1))}" src="{html.escape(_url(m.group(2), base))}">', text
    )
    text = _LINK.sub(lambda m: f'<a href="{html.escape(_url(m.group(2), base))}">{m.group(1)}</a>', text)
    text = _BOLD.sub(r"<strong>\1</strong>", text)
    text = _ITALIC.sub(r"<em>\1</em>", text)
    return re.sub("\x00(\\d+)\x00", lambda m: codes[int(m.group(1))], text)


def _cells(line: str) -> list[str]:
    line = line.strip()
    if line.startswith("|"):
        line = " " + line[1:]
    if line.endswith("|") and not line.endswith("\\|"):
        line = line[:-1] + " "
    return [cell.strip() for cell in _CELL_BAR.split(line)]


def _table(lines: list[str], base: str) -> str:
    head, rows = _cells(lines[0]), [_cells(line) for line in lines[2:]]
    out = [
        "<table>",
        "<thead><tr>" + "".join(f"<th>{_inline(c, base)}</th>" for c in head) + "</tr></thead>",
        "<tbody>",
    ]
    for row in rows:
        row = (row + [""] * len(head))[: max(len(head), len(row))]
        out.append("<tr>" + "".join(f"<td>{_inline(c, base)}</td>" for c in row) + "</tr>")
    out += ["</tbody>", "</table>"]
    return "\n".join(out)


def render_markdown(text: str, base: str = "") -> str:
    """HTML of a Markdown text; relative links and images are prefixed with ``base``.

    Example:
        >>> render_markdown("# Title\\n\\n| a | q(z|y) |\\n|---|---|\\n| 1 | **2** |")
        '<h1>Title</h1>\\n<table>\\n<thead><tr><th>a</th><th>q(z|y)</th></tr></thead>\\n<tbody>\\n<tr><td>1</td><td><strong>2</strong></td></tr>\\n</tbody>\\n</table>'
    """
    lines = text.replace("\r\n", "\n").split("\n")
    blocks: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        if not stripped:
            i += 1
        elif stripped.startswith("```"):
            j = i + 1
            while j < len(lines) and not lines[j].strip().startswith("```"):
                j += 1
            blocks.append("<pre><code>" + html.escape("\n".join(lines[i + 1 : j])) + "</code></pre>")
            i = j + 1
        elif re.match(r"^#{1,6}\s", stripped):
            level = len(stripped) - len(stripped.lstrip("#"))
            blocks.append(f"<h{level}>{_inline(stripped[level:].strip(), base)}</h{level}>")
            i += 1
        elif stripped.startswith("|") and i + 1 < len(lines) and _TABLE_SEPARATOR.match(lines[i + 1].strip()):
            j = i + 2
            while j < len(lines) and lines[j].strip().startswith("|"):
                j += 1
            blocks.append(_table([lines[k] for k in range(i, j)], base))
            i = j
        elif re.match(r"^[-*]\s", stripped):
            items = []
            while i < len(lines) and re.match(r"^[-*]\s", lines[i].strip()):
                item = [lines[i].strip()[2:]]
                i += 1
                while i < len(lines) and lines[i].startswith("  ") and lines[i].strip():
                    item.append(lines[i].strip())
                    i += 1
                items.append("<li>" + _inline(" ".join(item), base) + "</li>")
            blocks.append("<ul>\n" + "\n".join(items) + "\n</ul>")
        else:
            paragraph = [stripped]  # the first line always, so that every pass consumes a line
            i += 1
            while (
                i < len(lines)
                and lines[i].strip()
                and not lines[i].strip().startswith(("#", "|", "```"))
                and not re.match(r"^[-*]\s", lines[i].strip())
            ):
                paragraph.append(lines[i].strip())
                i += 1
            blocks.append("<p>" + _inline(" ".join(paragraph), base) + "</p>")
    return "\n".join(blocks)
