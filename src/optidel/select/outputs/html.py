"""Small builders for self-contained HTML reports (no template engine, no external assets).

Examples:
    >>> page = html_page("demo", [section("Summary", html_table([("images", 45)]))])
    >>> page.startswith("<!DOCTYPE html>")
    True
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;max-width:1200px;color:#222;padding:0 16px}
h1{font-size:1.6em;margin-bottom:4px} h2{font-size:1.2em;border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:28px}
table{border-collapse:collapse;margin:8px 0;font-size:0.92em} td,th{border:1px solid #ddd;padding:4px 10px;text-align:left}
th{background:#f4f4f4} td.num{text-align:right;font-variant-numeric:tabular-nums}
img.fig{max-width:100%;border:1px solid #eee;margin:6px 0} .note{color:#666;font-size:0.9em}
.grid{display:flex;flex-wrap:wrap;gap:8px} .grid figure{margin:0;text-align:center;font-size:0.8em}
.grid img{border:1px solid #ccc;display:block}
"""


def esc(x: Any) -> str:
    return html.escape(str(x))


def png_bytes_of_figure(fig: Any, dpi: int = 100) -> bytes:
    """A matplotlib figure -> PNG bytes (the figure is closed)."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()


def img_tag(png: bytes, alt: str = "", css_class: str = "fig", width: int | None = None) -> str:
    """An ``<img>`` with the PNG embedded as a base64 data URI."""
    w = f' width="{width}"' if width else ""
    data = base64.b64encode(png).decode("ascii")
    return f'<img class="{css_class}" alt="{esc(alt)}"{w} src="data:image/png;base64,{data}">'


def html_table(rows: Iterable[Sequence[Any]], header: Sequence[str] | None = None) -> str:
    """A table; numeric cells are right-aligned."""
    out = ["<table>"]
    if header:
        out.append("<tr>" + "".join(f"<th>{esc(h)}</th>" for h in header) + "</tr>")
    for row in rows:
        cells = []
        for v in row:
            num = isinstance(v, int | float | np.integer | np.floating) and not isinstance(v, bool)
            cells.append(f'<td class="num">{esc(v)}</td>' if num else f"<td>{esc(v)}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</table>")
    return "\n".join(out)


def section(title: str, *parts: str) -> str:
    return f"<h2>{esc(title)}</h2>\n" + "\n".join(parts)


def note(text: str) -> str:
    return f'<p class="note">{esc(text)}</p>'


def html_page(title: str, sections: Sequence[str], subtitle: str = "") -> str:
    """A complete HTML document."""
    sub = f'<p class="note">{esc(subtitle)}</p>' if subtitle else ""
    body = "\n".join(sections)
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>'
        f"<style>{CSS}</style></head>\n<body><h1>{esc(title)}</h1>{sub}\n{body}\n</body></html>\n"
    )
