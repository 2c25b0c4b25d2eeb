"""report.html without a browser: its layout, its inline charts, its data, its provenance;
and the chart fixes of issue 29 (short legend labels, readable log axes, no "None" texts).
The browser test is tests/integration/test_report_html.py."""

from __future__ import annotations

import dataclasses
import itertools
import json
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest
from matplotlib.figure import Figure

from embbench.report import labels
from embbench.report.charts.kit import save
from embbench.report.charts.offered_load import offered_load_figure
from embbench.report.html.blocks import to_html
from embbench.report.html.svg import inline_svg
from embbench.report.publish import Published, publish_report
from embbench.results.ceilings import Ceiling
from embbench.results.record import RunRecord

FIXTURE = Path(__file__).parents[2] / "fixtures" / "results" / "20261124-000000"
LONG = ["batched[onnx,int8,streams=2,max_batch_size=8,asgi]", "batched[torch,max_batch_size=8]",
        "shared-rwlock"]  # fmt: skip


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> Published:
    run_dir = tmp_path_factory.mktemp("html") / FIXTURE.name
    shutil.copytree(FIXTURE, run_dir)
    return publish_report(run_dir)


def test_the_page_is_written_beside_report_md(published: Published) -> None:
    assert published.html == published.markdown.with_name("report.html")
    assert published.html.stat().st_size < 400_000  # the fixture's page: about 190 kB


def test_the_answer_comes_first_then_report_mds_sections_in_order(published: Published) -> None:
    page = published.html.read_text()
    main = page[page.index("<main>") :]
    assert main.startswith('<main>\n<section id="answer"><section id="the-answer">')
    markdown = published.markdown.read_text()
    boxed = ("Answer", "Winners")
    order = [h for h in re.findall(r"^## (.+)$", markdown, re.M) if h not in boxed]
    shown = re.findall(r'<section id="[^"]+">\n<h2>([^<]+)</h2>', main)
    assert shown == [*boxed, *order]


def test_nothing_is_fetched(published: Published) -> None:
    page = published.html.read_text()
    assert "Content-Security-Policy" in page and "default-src 'none'" in page
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page, re.I)
    assert "<img" not in page and "<link" not in page


def test_every_chart_is_inline_svg_with_hover_values(published: Published) -> None:
    page = published.html.read_text()
    figures = re.findall(r'<figure class="chart" id="chart-([^"]+)">', page)
    assert [f"{name}.png" for name in figures] == [p.name for p in published.charts]
    assert page.count("<svg") == len(figures)
    titles = re.findall(r"<title>([^<]*)</title>", page)
    assert any(t.startswith("batched\nconcurrency → throughput\n10 → 31") for t in titles)
    assert any("p99 target" in t or "offline ceiling (torch)" in t for t in titles)
    ids = re.findall(r'\sid="([^"]+)"', page)
    assert len(ids) == len(set(ids))  # two charts never share an id


def test_the_runs_data_is_embedded(published: Published) -> None:
    page = published.html.read_text()
    found = re.search(r'<script type="application/json" id="run-data">(.*?)</script>', page, re.S)
    assert found is not None
    data = json.loads(found.group(1))
    assert data["record"]["run_id"] == "20261124-000000"
    assert len(data["summary"]) == 12 and {"label", "rps"} <= set(data["aggregate"][0])


def test_the_footer_says_where_the_numbers_come_from(published: Published) -> None:
    page = published.html.read_text()
    footer = page[page.index('<footer id="provenance">') :]
    for text in ("AMD EPYC 7B13 (fixture)", "torch 2.13.0", "seed=0", "command",
                 "not recorded (an older run)"):  # fmt: skip
        assert text in footer


def test_tables_are_sortable_and_labels_coloured() -> None:
    colors = {"batched": "#2ca02c"}
    lines = ["Some `code` here.", "", "| label | rps |", "| --- | ---: |", "| batched | 1.0 |",
             "| a \\| b | 2 |", "", "- one", "- two"]  # fmt: skip
    text = to_html(lines, colors)
    assert "<p>Some <code>code</code> here.</p>" in text
    assert '<table class="sortable">' in text and '<th scope="col" class=num>rps</th>' in text
    assert 'style="background:#2ca02c"' in text and "<td>a | b</td>" in text
    assert "<ul><li>one</li><li>two</li></ul>" in text
    assert "<script" not in to_html(["<script>alert(1)</script>"], {})


def test_long_labels_are_short_in_legends_and_named_in_settings() -> None:
    record = RunRecord.from_json(
        {"config": {"variants": [{"name": "x", "label": lab} for lab in LONG]}}
    )
    short = labels.short_names(record)
    assert list(short.values()) == ["batched", "batched #2", "shared-rwlock"]
    assert labels.colors(record, reversed(LONG)) == labels.colors(record, LONG)  # order-free
    fig = offered_load_figure(_open_agg(), record, 200)
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert "batched p99" in legend and "batched #2 p50" in legend
    assert not any("[" in text for text in legend)


def test_log_axes_print_no_overlapping_tick_labels(tmp_path: Path) -> None:
    record = RunRecord.from_json({"slo_p99_ms": 200, "ceiling": [{"backend": "onnx",
                                  "quantize": "int8", "sentences_per_s": 55.0}]})  # fmt: skip
    fig = offered_load_figure(_open_agg(), record, 200)
    save(fig, tmp_path / "offered.png")  # draws: the tick labels get their places
    ax = fig.axes[0]
    for axis in (ax.xaxis, ax.yaxis):
        boxes = [t.get_window_extent() for t in axis.get_ticklabels(which="both") if t.get_text()]
        assert len(boxes) >= 2
        assert not any(a.overlaps(b) for a, b in itertools.combinations(boxes, 2))
        assert not any(
            "times" in t.get_text() or "^" in t.get_text() for t in axis.get_ticklabels()
        )
    drawn = {str(line.get_label()) for line in ax.get_lines()}
    assert {"p99 target 200 ms", "offline ceiling (onnx int8)"} <= drawn


def test_ceilings_are_named_without_none() -> None:
    assert Ceiling(backend="torch").kind == "torch"
    assert Ceiling(backend="onnx", quantize="int8").kind == "onnx int8"


def test_the_fixture_report_says_no_none(published: Published) -> None:
    markdown = published.markdown.read_text()
    assert "None thread(s)" not in markdown and "batch None" not in markdown
    assert "torch none" not in markdown and "(torch, none)" not in markdown
    assert "70 % of the torch offline ceiling (45.0 sentences/s, no HTTP)" in markdown


def test_svg_ids_are_prefixed_per_chart() -> None:
    fig = Figure()
    ax = fig.subplots()
    ax.plot([1, 2], [3, 4], label="a")
    text = inline_svg(fig, "demo")
    assert text.startswith('<svg role="img" aria-label="demo"') and 'width="100%"' in text
    assert '<g id="demo-hover-0"><title>a' in text and "<metadata>" not in text


def test_the_command_line_is_recorded() -> None:
    record = dataclasses.replace(RunRecord(run_id="r"), command=("embbench", "run", "--x", "a b"))
    again = RunRecord.from_json(record.to_json())
    assert again.command == ("embbench", "run", "--x", "a b")
    assert "command" not in RunRecord(run_id="r").to_json()  # optional: old runs load as before


def _open_agg() -> pd.DataFrame:
    rows = [
        {"label": label, "offered_rps": rate, "n_ok": 1, "latency_p50_ms": 20.0 + rate * (i + 1),
         "latency_p99_ms": 40.0 + rate * rate * (i + 1) / 10}
        for i, label in enumerate(LONG)
        for rate in (20, 30, 40, 60)
    ]  # fmt: skip
    return pd.DataFrame(rows)


def test_a_dense_figure_draws_its_series_as_one_image_per_axes() -> None:
    fig = Figure()
    ax = fig.subplots()
    for i in range(30):
        ax.plot(range(1000), [i] * 1000)
    ax.plot([1, 2], [3, 4], label="short")  # two points: stays a vector, with its hover text
    text = inline_svg(fig, "dense")
    assert text.count("<image") == 1 and "data:image/png;base64," in text
    assert len(text) < 200_000 and "<title>short" in text
    assert ax.get_rasterization_zorder() is None  # the figure is left as it was


def test_options_every_variant_shares_stay_out_of_the_labels_the_report_rebuilds() -> None:
    common = ["max_concurrent_requests"]
    record = RunRecord.from_json(
        {"config": {"variants": [
            {"name": "shared-rwlock", "options": {"max_concurrent_requests": 2048},
             "common": common},
            {"name": "batched", "options": {"max_concurrent_requests": 2048, "backend": "onnx"},
             "common": common},
        ]}}
    )  # fmt: skip
    assert labels.ordered(record) == ["shared-rwlock", "batched[onnx]"]


def test_a_long_label_does_not_take_the_name_of_a_short_one() -> None:
    record = RunRecord.from_json(
        {"config": {"variants": [{"name": "batched"}, {"name": "batched", "label": LONG[0]}]}}
    )
    assert list(labels.short_names(record).values()) == ["batched", "batched #2"]
