"""report.html laid out: the answer first, then report.md's sections in its order, charts as
inline SVG where report.md links them, the run's data embedded, provenance at the foot.

Pure: a function of the view, the options and the charts already drawn as SVG.
"""

from __future__ import annotations

import html
import json
import shlex
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from embbench.report import labels
from embbench.report.html.assets import CSP, SCRIPT, STYLE
from embbench.report.html.blocks import inline, to_html
from embbench.report.sections import SECTIONS, answer, capacity, winners
from embbench.report.sections import charts as charts_section
from embbench.report.sections.base import ReportOptions, Section
from embbench.report.view import RunView
from embbench.results.record import COMPLETE, RunRecord

# The sections that answer the reader's question, shown first in a box of their own: the
# answer in words (sections/answer.py), then the capacity a run found, else which label won at
# each level.
ANSWER: tuple[Section, ...] = (answer.SECTION, capacity.SECTION, winners.SECTION)


def render_html(view: RunView, options: ReportOptions, charts: Sequence[tuple[str, str]]) -> str:
    """The page; `charts` are (name, inline SVG) pairs in CHARTS' order."""
    record = view.record
    colors = labels.colors(record, view.frame["label"])
    answer: list[str] = []
    rest: list[str] = []
    toc: list[str] = []
    for section in SECTIONS:
        title = section.title(options)
        anchor = _anchor(title)
        if section is charts_section.SECTION:
            body = "\n".join(_figure(name, svg) for name, svg in charts) if charts else None
        else:
            lines = section.body(view, options)
            body = None if lines is None else to_html(lines, colors)
        if body is None:
            continue
        block = f'<section id="{anchor}">\n<h2>{html.escape(title)}</h2>\n{body}\n</section>'
        (answer if section in ANSWER else rest).append(block)
        if section not in ANSWER:
            toc.append(f'<a href="#{anchor}">{html.escape(title)}</a>')
    title = f"embbench report: run {record.run_id}"
    return "\n".join([
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{html.escape(title)}</title>",
        f"<style>{STYLE}</style>",
        "</head><body>",
        f'<header class="page"><h1>{html.escape(title)}</h1><p>{_lede(record)}</p>'
        f'<nav class="toc">{" ".join(toc)}</nav></header>',
        "<main>",
        f'<section id="answer">{"".join(answer)}</section>' if answer else "",
        *rest,
        "</main>",
        _footer(record),
        f'<script type="application/json" id="run-data">{_data(view)}</script>',
        f"<script>{SCRIPT}</script>",
        "</body></html>",
    ])  # fmt: skip


def _figure(name: str, svg: str) -> str:
    caption = html.escape(name.replace("-", " ").capitalize())
    return (
        f'<figure class="chart" id="chart-{name}"><figcaption>{caption}</figcaption>{svg}</figure>'
    )


def _anchor(title: str) -> str:
    anchor = "".join(c if c.isalnum() else "-" for c in title.lower()).strip("-")
    # "answer" is the box the answering sections sit in; its own "Answer" section needs another.
    return "the-answer" if anchor == "answer" else anchor


def _lede(record: RunRecord) -> str:
    parts = [record.host.describe()]
    if record.model and record.model.get("summary"):
        parts.append(f"model {record.model['summary']}")
    if record.status not in (None, COMPLETE):
        parts.append(f"run {record.status}: not every planned cell ran")
    return html.escape(" · ".join(str(p) for p in parts))


def _footer(record: RunRecord) -> str:
    """Where the numbers come from: machine, CPU flags, versions, model, seeds, command."""
    rows: list[tuple[str, str]] = [("run", record.run_id), ("machine", record.host.describe())]
    flags = record.host.facts.get("cpu_flags")
    if isinstance(flags, list) and flags:
        rows.append(("CPU flags", " ".join(map(str, flags))))
    if record.started_at:
        rows.append(("started", _when(record.started_at)))
    if record.versions:
        rows.append(("versions", ", ".join(f"{k} {v}" for k, v in record.versions.items())))
    if record.git.sha:
        rows.append(
            ("git", record.git.sha + (" (uncommitted changes)" if record.git.dirty else ""))
        )
    model = record.model or {}
    for key in ("summary", "name", "fingerprint"):
        if model.get(key):
            rows.append((f"model {key}" if key != "summary" else "model", str(model[key])))
    seeds = {k: v for k, v in record.settings.items() if "seed" in k and v is not None}
    if seeds:
        rows.append(("seeds", ", ".join(f"{k}={v}" for k, v in seeds.items())))
    command = shlex.join(record.command) if record.command else "not recorded (an older run)"
    rows.append(("command", command))
    items = "".join(
        f"<dt>{html.escape(k)}</dt><dd>{inline(v) if k != 'command' else _code(v)}</dd>"
        for k, v in rows
    )
    return f'<footer id="provenance"><h2>Provenance</h2><dl>{items}</dl></footer>'


def _code(text: str) -> str:
    return f"<code>{html.escape(text)}</code>"


def _when(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _data(view: RunView) -> str:
    """The run's numbers as JSON in the page (record, summary.csv, the medians, capacity.csv),
    for whoever wants to read or re-plot them from the page alone."""
    data: dict[str, Any] = {
        "record": view.record.to_json(),
        "summary": _rows(view.run.summary),
        "aggregate": _rows(view.agg),
    }
    if view.capacity is not None:
        data["capacity"] = _rows(view.capacity)
    text = json.dumps(data, default=str, separators=(",", ":"))
    return text.replace("</", "<\\/")  # never closes the script element early


def _rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = json.loads(frame.to_json(orient="records", default_handler=str))
    return rows
