"""HTML building blocks of the report: escaping, tables (sortable), figures, the page with its style and script.

Every piece of text that reaches the page goes through ``esc`` (class names, paths, labels and notes are user
data: a class called ``<script>`` must show as typed). The page is one file: style and the small sorting
script inline, pictures and plots as ``data:`` URIs, and a Content-Security-Policy that forbids loading
anything else, so the page cannot reach the network even by mistake.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

__all__ = ["CSP", "Cell", "esc", "fmt", "num", "table", "figure", "badge", "page"]

CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'"


def esc(value: Any) -> str:
    """``value`` as HTML text (``& < > " '`` escaped)."""
    return html.escape(str(value), quote=True)


def fmt(value: float | None, spec: str = ".4f") -> str:
    """A number formatted with ``spec``; "–" for None (an undefined value)."""
    return "–" if value is None else format(value, spec)


@dataclass(frozen=True)
class Cell:
    """A table cell: its text, the value it sorts by (None: by its text), a CSS class ("num", "bad", ...), and
    ``href``: a link target in the page (``#anchor``) that the text points to."""

    text: str
    sort: float | str | None = None
    cls: str = ""
    href: str | None = None


def num(value: float | None, spec: str = ".4f", cls: str = "") -> Cell:
    """A right-aligned number cell sorting by value (None sorts below every number)."""
    return Cell(fmt(value, spec), value if value is not None else float("-inf"), ("num " + cls).strip())


def _cell(value: Any, tag: str = "td") -> str:
    if not isinstance(value, Cell):
        value = Cell(str(value))
    attrs = f' class="{esc(value.cls)}"' if value.cls else ""
    if value.sort is not None:
        sort = value.sort if isinstance(value.sort, str) else repr(float(value.sort))
        attrs += f' data-sort="{esc(sort)}"'
    text = esc(value.text) if value.href is None else f'<a href="{esc(value.href)}">{esc(value.text)}</a>'
    return f"<{tag}{attrs}>{text}</{tag}>"


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]], *, sortable: bool = False, caption: str | None = None,
          cls: str = "", scroll: bool = False) -> str:
    """A table; ``sortable`` makes each header sort the rows on click (numbers by value, text alphabetically);
    ``scroll`` keeps a long one in a box of limited height with its header row in view."""
    classes = " ".join(c for c in (cls, "sortable" if sortable else "") if c)
    head = "".join(f'<th title="{esc("click to sort" if sortable else h)}">{esc(h)}</th>' for h in headers)
    head = f"<thead><tr>{head}</tr></thead>" if any(headers) else ""  # a key / value table needs no header row
    body = "".join("<tr>" + "".join(_cell(v) for v in row) + "</tr>" for row in rows)
    cap = f"<caption>{esc(caption)}</caption>" if caption else ""
    wrap = "table-wrap scroll" if scroll else "table-wrap"
    return f'<div class="{wrap}"><table class="{classes}">{cap}{head}<tbody>{body}</tbody></table></div>'


def figure(uri: str | None, width: int, height: int, alt: str, caption: str = "", missing: str | None = None,
           cls: str = "") -> str:
    """An embedded picture or plot with its caption; a note instead of an image when ``uri`` is None."""
    if uri is None:
        inner = f'<div class="missing">{esc(missing or "not available")}</div>'
    else:
        inner = f'<img src="{uri}" width="{int(width)}" height="{int(height)}" alt="{esc(alt)}" loading="eager">'
    cap = f"<figcaption>{esc(caption)}</figcaption>" if caption else ""
    return f'<figure class="{esc(cls)}">{inner}{cap}</figure>'


def badge(passed: bool | None, yes: str = "PASS", no: str = "FAIL") -> Cell:
    """A verdict cell: green ``yes``, red ``no``, grey "–" for None."""
    if passed is None:
        return Cell("–", 0.5)
    return Cell(yes if passed else no, 1.0 if passed else 0.0, "pass" if passed else "fail")


_STYLE = """
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", "DejaVu Sans", sans-serif; color: #1d2327; }
header { position: sticky; top: 0; z-index: 2; background: #fff; border-bottom: 1px solid #d9dee2; }
header .bar { max-width: 1240px; margin: 0 auto; padding: 8px 20px; display: flex; gap: 18px; align-items: baseline; flex-wrap: wrap; }
header h1 { font-size: 17px; margin: 0; }
header nav a { margin-right: 12px; color: #1f6fb4; text-decoration: none; }
main { max-width: 1240px; margin: 0 auto; padding: 8px 20px 40px; }
section.result { border-top: 3px solid #d9dee2; margin-top: 28px; padding-top: 6px; }
h2 { font-size: 19px; margin: 10px 0 4px; } h3 { font-size: 15px; margin: 20px 0 6px; }
.sub { color: #5f6b73; margin: 0 0 8px; overflow-wrap: anywhere; }
.table-wrap { overflow-x: auto; margin: 6px 0 10px; }
table { border-collapse: collapse; font-size: 13px; }
caption { text-align: left; color: #5f6b73; padding: 2px 0 4px; }
th, td { border-bottom: 1px solid #d9dee2; padding: 3px 10px; text-align: left; vertical-align: top; }
th { background: #f4f6f8; font-weight: 600; white-space: nowrap; }
table.sortable th { cursor: pointer; } table.sortable th:hover { background: #e6eaee; }
th.asc::after { content: " \\25B2"; font-size: 10px; } th.desc::after { content: " \\25BC"; font-size: 10px; }
table.compact th, table.compact td { padding: 2px 6px; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.wrap { overflow-wrap: anywhere; max-width: 480px; }
.pass { color: #1e7d32; font-weight: 600; } .fail { color: #c0392b; font-weight: 600; }
td.bad { background: #fdecea; } td.good { background: #eaf6ec; }
.verdict { display: inline-block; padding: 1px 10px; border-radius: 10px; color: #fff; font-weight: 600; }
.verdict.pass { background: #1e7d32; color: #fff; } .verdict.fail { background: #c0392b; color: #fff; }
figure { margin: 6px 0 14px; } figure img { max-width: 100%; height: auto; display: block; }
figcaption { color: #5f6b73; font-size: 12.5px; margin-top: 3px; overflow-wrap: anywhere; }
.scroll { max-height: 540px; overflow-y: auto; border-bottom: 1px solid #d9dee2; }
.scroll th { position: sticky; top: 0; }
.pictures { display: grid; grid-template-columns: repeat(auto-fill, minmax(440px, 1fr)); gap: 12px; }
.pictures img { width: 100%; height: auto; max-height: 460px; object-fit: contain; }
.pictures figure { margin: 0; border: 1px solid #d9dee2; padding: 4px; border-radius: 4px; background: #fff; }
.plots { display: flex; flex-wrap: wrap; gap: 10px 24px; align-items: flex-start; }
.missing { padding: 30px 10px; background: #f4f6f8; color: #5f6b73; text-align: center; overflow-wrap: anywhere; }
.legend span { display: inline-block; width: 22px; height: 0; border-top: 3px solid; margin: 0 4px 3px 10px; vertical-align: middle; }
.legend span.dash { border-top-style: dashed; }
ul.notes { color: #5f6b73; margin: 4px 0; padding-left: 20px; }
.two { display: grid; grid-template-columns: repeat(auto-fit, minmax(440px, 1fr)); gap: 8px 28px; align-items: start; }
.two > div { min-width: 0; }
"""

# Sort a table by the clicked header: numbers (data-sort) by value, text alphabetically; a second click reverses.
_SCRIPT = """
document.querySelectorAll("table.sortable").forEach(function (table) {
  table.querySelectorAll("th").forEach(function (th, col) {
    th.addEventListener("click", function () {
      var body = table.tBodies[0];
      var rows = Array.prototype.slice.call(body.rows);
      var asc = !th.classList.contains("asc");
      table.querySelectorAll("th").forEach(function (h) { h.classList.remove("asc", "desc"); });
      th.classList.add(asc ? "asc" : "desc");
      var key = function (row) {
        var cell = row.cells[col];
        var raw = cell.hasAttribute("data-sort") ? cell.getAttribute("data-sort") : cell.textContent;
        var value = parseFloat(raw);
        return isNaN(value) && raw !== "-inf" ? raw.toLowerCase() : (raw === "-inf" ? -Infinity : value);
      };
      rows.sort(function (a, b) {
        var x = key(a), y = key(b);
        var order = (typeof x === typeof y) ? (x < y ? -1 : x > y ? 1 : 0) : (typeof x === "number" ? -1 : 1);
        return asc ? order : -order;
      });
      rows.forEach(function (row) { body.appendChild(row); });
    });
  });
});
"""


def page(title: str, nav: Sequence[tuple[str, str]], body: str, footer: str) -> str:
    """The whole document: ``nav`` is (anchor id, label) pairs; ``body`` and ``footer`` are HTML already escaped."""
    links = "".join(f'<a href="#{esc(anchor)}">{esc(label)}</a>' for anchor, label in nav)
    return (
        "<!DOCTYPE html>\n"
        f'<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{_STYLE}</style></head>\n"
        f'<body><header><div class="bar"><h1>{esc(title)}</h1><nav>{links}</nav></div></header>\n'
        f"<main>{body}<p class=\"sub\">{footer}</p></main>\n<script>{_SCRIPT}</script></body></html>\n"
    )
