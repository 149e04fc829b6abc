"""A tiny document model (headings, paragraphs, tables, figures) rendered to Markdown
and to self-contained HTML (figures are files beside it, referenced relatively)."""

from __future__ import annotations

import html
from dataclasses import dataclass, field


@dataclass
class Heading:
    level: int
    text: str
    anchor: str | None = None


@dataclass
class Paragraph:
    text: str


@dataclass
class Table:
    headers: list[str]
    rows: list[list[str]]
    bold: list[bool] = field(default_factory=list)  # per row: highlight (top-k)
    caption: str | None = None


@dataclass
class Image:
    path: str  # relative to the report folder
    caption: str
    alt: str


Block = Heading | Paragraph | Table | Image


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def to_markdown(blocks: list[Block]) -> str:
    out: list[str] = []
    for b in blocks:
        if isinstance(b, Heading):
            out.append(f"{'#' * b.level} {b.text}\n")
        elif isinstance(b, Paragraph):
            out.append(f"{b.text}\n")
        elif isinstance(b, Table):
            if b.caption:
                out.append(f"*{b.caption}*\n")
            out.append("| " + " | ".join(_md_cell(h) for h in b.headers) + " |")
            out.append("|" + "---|" * len(b.headers))
            for i, row in enumerate(b.rows):
                bold = i < len(b.bold) and b.bold[i]
                cells = [f"**{_md_cell(c)}**" if bold and c else _md_cell(c) for c in row]
                out.append("| " + " | ".join(cells) + " |")
            out.append("")
        else:
            out.append(f"![{b.alt}]({b.path})\n\n*{b.caption}*\n")
    return "\n".join(out)


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1200px;
margin:2em auto;padding:0 1em;color:#222;line-height:1.45}
table{border-collapse:collapse;margin:.5em 0 1.5em;font-size:.85em}
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:left}th{background:#f3f3f3}
tr.top td{font-weight:bold;background:#eef5fb}
figure{margin:1em 0 2em}figure img{max-width:100%;border:1px solid #ddd}
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
            anchor = f' id="{e(b.anchor)}"' if b.anchor else ""
            out.append(f"<h{b.level}{anchor}>{e(b.text)}</h{b.level}>")
        elif isinstance(b, Paragraph):
            out.append(f"<p>{e(b.text)}</p>")
        elif isinstance(b, Table):
            out.append("<table>")
            if b.caption:
                out.append(f"<caption>{e(b.caption)}</caption>")
            out.append("<tr>" + "".join(f"<th>{e(h)}</th>" for h in b.headers) + "</tr>")
            for i, row in enumerate(b.rows):
                cls = ' class="top"' if i < len(b.bold) and b.bold[i] else ""
                out.append(f"<tr{cls}>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>")
            out.append("</table>")
        else:
            out.append(
                f'<figure><img src="{e(b.path)}" alt="{e(b.alt)}">'
                f"<figcaption>{e(b.caption)}</figcaption></figure>"
            )
    out.append("</body></html>")
    return "\n".join(out)
