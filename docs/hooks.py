"""MkDocs hook: the docstrings' Sphinx roles (``:class:`~a.b.C```), which
mkdocstrings leaves as text, shown as plain code (``C``, or the full name without ``~``)."""

from __future__ import annotations

import re
from typing import Any

_ROLE = re.compile(r":(?:class|func|meth|mod|attr|data|exc):<code>(~?)([\w.]+)</code>")


def _plain(match: re.Match[str]) -> str:
    short, name = match.groups()
    return f"<code>{name.rsplit('.', 1)[-1] if short else name}</code>"


def on_page_content(html: str, **_: Any) -> str:
    return _ROLE.sub(_plain, html)
