"""The page's style and script, inline: the page fetches nothing.

The script does one thing: a click (or Enter) on a table's heading sorts its rows by that
column, numbers as numbers ("12.2 (9.4–15.9)" sorts as 12.2), missing values ("–") last.
"""

from __future__ import annotations

# Only what is inline may run or style the page; nothing may be fetched (no default-src).
CSP = "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:"

STYLE = """
:root { color-scheme: light; --ink: #1d2329; --muted: #5b6670; --line: #d9dee3;
        --accent: #1f77b4; --answer: #f2f7fc; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
       color: var(--ink); background: #fff; }
main, header.page, footer { max-width: 1120px; margin: 0 auto; padding: 0 24px; }
header.page { padding-top: 20px; }
header.page h1 { font-size: 22px; margin: 0 0 4px; }
header.page p { margin: 0; color: var(--muted); font-size: 13px; }
h2 { font-size: 19px; margin: 32px 0 8px; border-bottom: 1px solid var(--line);
     padding-bottom: 4px; }
h3 { font-size: 16px; margin: 18px 0 6px; }
section#answer { background: var(--answer); border: 1px solid #c6dcef;
                 border-left: 5px solid var(--accent); border-radius: 6px;
                 padding: 4px 18px 14px; margin-top: 16px; }
section#answer h2 { border: 0; margin-top: 14px; }
table { border-collapse: collapse; margin: 8px 0 14px; font-size: 13px;
        font-variant-numeric: tabular-nums; display: block; overflow-x: auto; max-width: 100%; }
th, td { padding: 4px 9px; border-bottom: 1px solid var(--line); text-align: left;
         vertical-align: top; }
th { background: #f4f6f8; cursor: pointer; user-select: none; white-space: nowrap; }
th.num, td.num { text-align: right; }
th::after { content: " \\2195"; color: #aab3bb; font-size: 11px; }
th[aria-sort=ascending]::after { content: " \\25B2"; color: var(--accent); }
th[aria-sort=descending]::after { content: " \\25BC"; color: var(--accent); }
tbody tr:nth-child(even) { background: #fafbfc; }
tbody tr:hover { background: #eef4fa; }
.swatch { display: inline-block; width: 10px; height: 10px; border-radius: 2px;
          margin-right: 6px; vertical-align: baseline; }
figure.chart { margin: 14px 0 26px; }
td.label { white-space: nowrap; }
figure.chart figcaption { font-weight: 600; margin-bottom: 4px; }
figure.chart svg { display: block; width: 100%; height: auto; }
code { background: #f1f3f5; padding: 0 3px; border-radius: 3px; font-size: 90%; }
footer { margin-top: 40px; padding-bottom: 40px; color: var(--muted); font-size: 13px;
         border-top: 1px solid var(--line); }
footer dl { display: grid; grid-template-columns: max-content 1fr; gap: 3px 16px; }
footer dt { font-weight: 600; color: var(--ink); }
footer dd { margin: 0; overflow-wrap: anywhere; }
nav.toc { font-size: 13px; color: var(--muted); margin-top: 10px; }
nav.toc a { color: var(--accent); margin-right: 10px; text-decoration: none; }
"""

SCRIPT = """
(function () {
  function key(text) {
    var m = text.replace(/,/g, "").match(/-?\\d+(?:\\.\\d+)?(?:e[-+]?\\d+)?/i);
    return m ? parseFloat(m[0]) : null;
  }
  function compare(x, y) {
    var a = key(x), b = key(y);
    if (a !== null && b !== null && a !== b) return a - b;
    if ((a === null) !== (b === null)) return a === null ? 1 : -1;
    return x.localeCompare(y);
  }
  function sortBy(table, th, col) {
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    var ascending = th.getAttribute("aria-sort") !== "ascending";
    table.querySelectorAll("th").forEach(function (h) { h.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
    rows.sort(function (r, s) {
      var c = compare(r.cells[col].textContent.trim(), s.cells[col].textContent.trim());
      return ascending ? c : -c;
    });
    rows.forEach(function (r) { body.appendChild(r); });
  }
  document.querySelectorAll("table.sortable").forEach(function (table) {
    table.querySelectorAll("thead th").forEach(function (th, col) {
      th.tabIndex = 0;
      th.title = "sort by this column";
      th.addEventListener("click", function () { sortBy(table, th, col); });
      th.addEventListener("keydown", function (e) {
        if (e.key === "Enter") sortBy(table, th, col);
      });
    });
  });
})();
"""
