"""A tiny document model (headings, paragraphs, tables, figures) rendered to Markdown
and to self-contained HTML (figures are files beside it, referenced relatively).

Both renderings put a table of contents of the level-2 headings where a
:class:`Contents` block stands (after the answer); a table cell may be a :class:`Link`
(a run's label pointing at its appendix section). Paragraph text may hold ``**bold**``
and ```code``` (Markdown as written; HTML converts them). In HTML, wide tables scroll
sideways inside their own box and a figure opens full size on click.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass
class Heading:
    level: int
    text: str
    anchor: str | None = None

    @property
    def id(self) -> str:
        """The anchor, or one made from the text (``Top 2 runs`` → ``top-2-runs``)."""
        return self.anchor or re.sub(r"[^a-z0-9]+", "-", self.text.lower()).strip("-")


@dataclass(frozen=True)
class Link:
    """A table cell that links within the report."""

    text: str
    href: str

    def __str__(self) -> str:
        return self.text


Cell = str | Link


@dataclass
class Paragraph:
    text: str


@dataclass
class Table:
    headers: list[str]
    rows: Sequence[Sequence[Cell]]
    bold: list[bool] = field(default_factory=list)  # per row: highlight (top-k)
    caption: str | None = None


@dataclass
class Image:
    path: str  # relative to the report folder
    caption: str
    alt: str


@dataclass
class Contents:
    """Where the table of contents goes."""


@dataclass
class Bullets:
    items: list[str]


@dataclass
class Thumbnails:
    """Small pictures in a row, each linking to its full-resolution file."""

    items: list[tuple[str, str, str]]  # (thumbnail path, full-size path, label)
    caption: str


Block = Heading | Paragraph | Table | Image | Contents | Bullets | Thumbnails


def _md_cell(cell: Cell) -> str:
    text = str(cell).replace("|", "\\|").replace("\n", " ")
    return f"[{text}]({cell.href})" if isinstance(cell, Link) else text


def contents(blocks: list[Block]) -> list[Heading]:
    """The level-2 headings, in order: the table of contents."""
    return [b for b in blocks if isinstance(b, Heading) and b.level == 2]


def to_markdown(blocks: list[Block]) -> str:
    out: list[str] = []
    for b in blocks:
        if isinstance(b, Heading):
            if b.anchor:  # explicit anchors (runs) as HTML: Markdown renderers keep them
                out.append(f'<a id="{b.anchor}"></a>\n')
            out.append(f"{'#' * b.level} {b.text}\n")
        elif isinstance(b, Contents):
            toc = contents(blocks)
            out += ["**Contents:** " + " · ".join(f"[{h.text}](#{h.id})" for h in toc), ""]
        elif isinstance(b, Paragraph):
            out.append(f"{b.text}\n")
        elif isinstance(b, Bullets):
            out += [f"- {item}" for item in b.items] + [""]
        elif isinstance(b, Thumbnails):
            out.append(" ".join(f"[![{label}]({thumb})]({full})" for thumb, full, label in b.items))
            out.append(f"\n*{b.caption}*\n")
        elif isinstance(b, Table):
            if b.caption:
                out.append(f"*{b.caption}*\n")
            out.append("| " + " | ".join(_md_cell(h) for h in b.headers) + " |")
            out.append("|" + "---|" * len(b.headers))
            for i, row in enumerate(b.rows):
                bold = i < len(b.bold) and b.bold[i]
                cells = [f"**{_md_cell(c)}**" if bold and str(c) else _md_cell(c) for c in row]
                out.append("| " + " | ".join(cells) + " |")
            out.append("")
        else:
            out.append(f"![{b.alt}]({b.path})\n\n*{b.caption}*\n")
    return "\n".join(out)


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1320px;
margin:2em auto;padding:0 1em;color:#222;line-height:1.45}
table{border-collapse:collapse;margin:.5em 0 1.5em;font-size:.85em}
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:left}th{background:#f3f3f3}
tr.top td{font-weight:bold;background:#eef5fb}
.scroll{overflow-x:auto;max-width:100%;margin:.5em 0 1.5em}.scroll table{margin:0}
td a{color:inherit}nav.toc{background:#f7f7f7;border:1px solid #e3e3e3;padding:.5em 1em;
margin:1em 0 2em;font-size:.9em}nav.toc ol{margin:.3em 0;padding-left:1.4em}
figure{margin:1em 0 2em}figure img{max-width:100%;border:1px solid #ddd;cursor:zoom-in}
.thumbs div{display:flex;flex-wrap:wrap;gap:.5em}.thumbs a{display:flex;
flex-direction:column;align-items:center;font-size:.75em;color:#444;text-decoration:none}
.thumbs img{width:150px;image-rendering:pixelated}code{font-size:.85em;word-break:break-all}
figcaption{font-size:.85em;color:#444;margin-top:.3em}caption{caption-side:top;text-align:left;
font-style:italic;padding-bottom:.3em}
"""


def to_html(blocks: list[Block], title: str) -> str:
    e = html.escape
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{e(title)}</title><style>{_CSS}</style></head><body>",
    ]
    for b in blocks:
        if isinstance(b, Heading):
            out.append(f'<h{b.level} id="{e(b.id)}">{e(b.text)}</h{b.level}>')
        elif isinstance(b, Contents):
            toc = " · ".join(f'<a href="#{e(h.id)}">{e(h.text)}</a>' for h in contents(blocks))
            out.append(f'<nav class="toc"><strong>Contents:</strong> {toc}</nav>')
        elif isinstance(b, Paragraph):
            out.append(f"<p>{_inline(b.text)}</p>")
        elif isinstance(b, Bullets):
            out.append("<ul>" + "".join(f"<li>{_inline(t)}</li>" for t in b.items) + "</ul>")
        elif isinstance(b, Thumbnails):
            cells = "".join(
                f'<a href="{e(full)}" target="_blank" title="{e(label)}: full resolution">'
                f'<img src="{e(thumb)}" alt="{e(label)}"><span>{e(label)}</span></a>'
                for thumb, full, label in b.items
            )
            out.append(
                f'<figure class="thumbs"><div>{cells}</div>'
                f"<figcaption>{e(b.caption)}</figcaption></figure>"
            )
        elif isinstance(b, Table):
            out.append('<div class="scroll"><table>')
            if b.caption:
                out.append(f"<caption>{e(b.caption)}</caption>")
            out.append("<tr>" + "".join(f"<th>{e(h)}</th>" for h in b.headers) + "</tr>")
            for i, row in enumerate(b.rows):
                cls = ' class="top"' if i < len(b.bold) and b.bold[i] else ""
                out.append(
                    f"<tr{cls}>" + "".join(f"<td>{_html_cell(c)}</td>" for c in row) + "</tr>"
                )
            out.append("</table></div>")
        else:
            out.append(
                f'<figure><a href="{e(b.path)}" target="_blank" title="full size">'
                f'<img src="{e(b.path)}" alt="{e(b.alt)}"></a>'
                f"<figcaption>{e(b.caption)}</figcaption></figure>"
            )
    out.append("</body></html>")
    return "\n".join(out)


def _inline(text: str) -> str:
    """Escaped text with ``**bold**`` and ```code``` as HTML."""
    out = html.escape(text)
    out = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", out)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", out)


def _html_cell(cell: Cell) -> str:
    if isinstance(cell, Link):
        return f'<a href="{html.escape(cell.href)}">{html.escape(cell.text)}</a>'
    return html.escape(cell)
