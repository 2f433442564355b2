"""``report.html``: one self-contained page (no network: images as data URIs, the style and the
sorting script inline) from sections of tables, figures and text.

Tables are built from cells that keep their number: a numeric cell shows its text and carries the
exact value in ``data-value`` (the number of the JSON it came from), which the sorting script
reads; a header click sorts a ``sortable`` table's rows by that column (again: the other way;
undefined cells last). The style reflows for a phone (tables scroll sideways inside their box) and
prints without the contents list, each figure on one page.
"""

import base64
import html
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from contextrast_cli.atomic import atomic_write_text

STYLE = """
:root{color-scheme:light}
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1d1d1f;margin:0 auto;max-width:72rem;
padding:1rem 1.25rem;line-height:1.45}
h1{font-size:1.5rem;margin:.2rem 0 .6rem}h2{font-size:1.2rem;margin:1.6rem 0 .4rem;border-bottom:1px solid #ddd}
h3{font-size:1rem;margin:1rem 0 .3rem}
nav ul{columns:2 14rem;padding-left:1.2rem;margin:.3rem 0}
.box{overflow-x:auto;-webkit-overflow-scrolling:touch;margin:.4rem 0}
table{border-collapse:collapse;font-size:.88rem;font-variant-numeric:tabular-nums}
caption{text-align:left;font-size:.85rem;color:#555;padding:.2rem 0}
th,td{padding:.22rem .55rem;border-bottom:1px solid #e3e3e3;text-align:right;white-space:nowrap}
th:first-child,td:first-child,td:not([data-value]){text-align:left}
thead th{background:#f4f4f6;position:sticky;top:0}
table.sortable th{cursor:pointer;user-select:none}
table.sortable th::after{content:" \\2195";color:#999}
table.sortable th[aria-sort=ascending]::after{content:" \\25B2";color:#333}
table.sortable th[aria-sort=descending]::after{content:" \\25BC";color:#333}
td.neg{color:#b3261e}td.pos{color:#1a7f37}
figure{margin:.6rem 0}figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{font-size:.85rem;color:#555}
pre{background:#f6f6f8;padding:.6rem;font-size:.8rem;white-space:pre-wrap;word-break:break-word}
p.note{color:#8a5a00}
@media (max-width:40rem){body{padding:.6rem}table{font-size:.8rem}nav ul{columns:1}}
@media print{nav{display:none}body{max-width:none;padding:0}.box{overflow:visible}
figure,table{break-inside:avoid}h2{break-after:avoid}thead th{position:static}
table.sortable th::after{content:none}}
"""

SORT_SCRIPT = """
document.querySelectorAll("table.sortable").forEach(function (table) {
  table.querySelectorAll("thead th").forEach(function (th, column) {
    th.addEventListener("click", function () {
      var down = th.getAttribute("aria-sort") === "ascending";
      table.querySelectorAll("thead th").forEach(function (other) { other.removeAttribute("aria-sort"); });
      th.setAttribute("aria-sort", down ? "descending" : "ascending");
      var body = table.tBodies[0], rows = Array.prototype.slice.call(body.rows);
      function key(row) {
        var cell = row.cells[column], value = cell.getAttribute("data-value");
        if (value === null) { return cell.textContent.trim().toLowerCase(); }
        return value === "" ? null : parseFloat(value);
      }
      rows.sort(function (a, b) {
        var x = key(a), y = key(b);
        if (x === null || y === null) { return x === y ? 0 : (x === null ? 1 : -1); }
        var order = typeof x === "number" && typeof y === "number" ? x - y : String(x).localeCompare(String(y));
        return down ? -order : order;
      });
      rows.forEach(function (row) { body.appendChild(row); });
    });
  });
});
"""


@dataclass(frozen=True)
class Cell:
    """A table cell: the ``text`` shown and, for a number, its exact ``value`` (None: undefined)."""

    text: str
    value: float | None = None
    numeric: bool = False
    tone: str = ""  # "neg" / "pos": a difference's sign


def points(value: float | None, signed: bool = False) -> Cell:
    """A score in [0, 1] shown in points (x 100, two decimals), its exact value kept."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return Cell("-", None, True)
    text = f"{value * 100:+.2f}" if signed else f"{value * 100:.2f}"
    return Cell(text, value, True, ("neg" if value < 0 else "pos" if value > 0 else "") if signed else "")


def number(value: float | int | None, digits: int = 4) -> Cell:
    """A plain number (a count exactly, otherwise ``digits`` significant digits)."""
    if value is None:
        return Cell("-", None, True)
    return Cell(str(value) if isinstance(value, int) else f"{value:.{digits}g}", value, True)


def _cell(cell: "Cell | str | int | float | None") -> str:
    cell = cell if isinstance(cell, Cell) else number(cell) if isinstance(cell, (int, float)) or cell is None \
        else Cell(str(cell))
    attrs = ""
    if cell.numeric:
        attrs += f' data-value="{"" if cell.value is None else json.dumps(cell.value)}"'
    if cell.tone:
        attrs += f' class="{cell.tone}"'
    return f"<td{attrs}>{html.escape(cell.text)}</td>"


def table(columns: Sequence[str], rows: Sequence[Sequence], caption: str = "", sortable: bool = False,
          name: str = "") -> str:
    """An HTML table; ``name`` becomes its ``id`` (tests and links find it by that)."""
    head = "".join(f'<th scope="col">{html.escape(c)}</th>' for c in columns)
    body = "".join("<tr>" + "".join(_cell(c) for c in row) + "</tr>" for row in rows)
    attrs = (f' id="{html.escape(name)}"' if name else "") + (' class="sortable"' if sortable else "")
    title = f"<caption>{html.escape(caption)}</caption>" if caption else ""
    return f'<div class="box"><table{attrs}>{title}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def figure(png: bytes | Path, caption: str = "", alt: str = "") -> str:
    """A PNG (bytes, or a file read now) embedded as a data URI, with its caption."""
    data = png if isinstance(png, bytes) else Path(png).read_bytes()
    uri = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
    text = f"<figcaption>{html.escape(caption)}</figcaption>" if caption else ""
    return f'<figure><img src="{uri}" alt="{html.escape(alt or caption)}">{text}</figure>'


def paragraph(text: str, note: bool = False) -> str:
    return f'<p{" class=note" if note else ""}>{html.escape(text)}</p>'


def code(text: str) -> str:
    return f"<pre>{html.escape(text)}</pre>"


@dataclass(frozen=True)
class Section:
    """A titled part of the page (``level`` 2, or 3 inside the one before)."""

    title: str
    parts: tuple[str, ...]
    level: int = 2

    @property
    def anchor(self) -> str:
        return "".join(c if c.isalnum() else "-" for c in self.title.lower()).strip("-")


def render(title: str, sections: Sequence[Section], subtitle: str = "") -> str:
    """The whole page: title, contents list (level-2 sections), sections, the sorting script."""
    contents = "".join(f'<li><a href="#{s.anchor}">{html.escape(s.title)}</a></li>' for s in sections if s.level == 2)
    body = "".join(f'<h{s.level} id="{s.anchor}">{html.escape(s.title)}</h{s.level}>' + "".join(s.parts)
                   for s in sections)
    lead = paragraph(subtitle) if subtitle else ""
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            "<link rel=\"icon\" href=\"data:,\">"  # no favicon request
            f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>"
            f"<h1>{html.escape(title)}</h1>{lead}<nav><ul>{contents}</ul></nav>{body}"
            f"<script>{SORT_SCRIPT}</script></body></html>\n")


def write_page(path: Path, title: str, sections: Sequence[Section], subtitle: str = "") -> Path:
    """``render`` written atomically to ``path`` (``report.html``)."""
    return atomic_write_text(Path(path), render(title, sections, subtitle))
