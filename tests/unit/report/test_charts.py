"""Charts: the PNGs exist, open, have the promised size, and say what they show."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import matplotlib.image
import pandas as pd
import pytest
from matplotlib.figure import Figure

from embbench.report.charts import CHART_FILES, write_charts
from embbench.report.charts.kit import HEIGHT_PX, WIDTH_PX
from embbench.report.charts.latency import latency_figure
from embbench.report.charts.resources import resources_figure
from embbench.report.charts.throughput import throughput_figure
from embbench.report.charts.timeline import timeline_figure
from embbench.report.stats import aggregate, mean_interval, prepare
from embbench.results.ceilings import Ceilings
from embbench.results.folder import RunData, load_run

FIXTURE = Path(__file__).parents[2] / "fixtures" / "results" / "20261124-000000"
NAMES = ["throughput.png", "latency.png", "resources.png", "timeline.png"]


@pytest.fixture(scope="module")
def run() -> RunData:
    return load_run(FIXTURE)


def copy_fixture(tmp_path: Path) -> Path:
    target = tmp_path / "run"
    shutil.copytree(FIXTURE, target)
    return target


def legend_texts(fig: Figure) -> list[str]:
    texts = []
    for ax in fig.axes:
        for child in ax.get_children():
            if child.__class__.__name__ == "Legend":
                texts += [t.get_text() for t in child.get_texts()]  # type: ignore[attr-defined]
    return texts


def check_pngs(paths: list[Path], out: Path) -> None:
    assert [p.name for p in paths] == NAMES
    for path in paths:
        assert path.parent == out and path.is_file()
        pixels = matplotlib.image.imread(path)
        assert pixels.shape[:2] == (HEIGHT_PX, WIDTH_PX) == (600, 1000)
        assert pixels.std() > 0.01  # not a blank image


def test_write_charts_writes_four_pngs_of_the_right_size(run: RunData, tmp_path: Path) -> None:
    out = tmp_path / "charts"
    written = write_charts(run, out)
    check_pngs(written, out)
    # A closed-loop run: the four charts of CHARTS that apply to it, the names report.md links.
    assert [p.name for p in written] == NAMES
    assert set(NAMES) < set(CHART_FILES)


def test_missing_and_broken_per_cell_files_do_not_crash(tmp_path: Path) -> None:
    folder = copy_fixture(tmp_path)
    (folder / "samples" / "010-shared-mutex-c100-r1.csv").unlink()  # its requests are gone too
    (folder / "requests" / "002-batched-c10-r0.csv").unlink()
    (folder / "samples" / "003-shared-rwlock-c100-r0.csv").write_text("")
    (folder / "requests" / "005-batched-c100-r0.csv").write_text("start,latency_ms\n1,oops\n")
    out = tmp_path / "charts"
    check_pngs(write_charts(load_run(folder), out), out)


def test_no_per_cell_files_at_all(tmp_path: Path) -> None:
    folder = copy_fixture(tmp_path)
    shutil.rmtree(folder / "samples")
    shutil.rmtree(folder / "requests")
    out = tmp_path / "charts"
    check_pngs(write_charts(load_run(folder), out), out)


def test_every_cell_failed(tmp_path: Path) -> None:
    folder = copy_fixture(tmp_path)
    summary = pd.read_csv(folder / "summary.csv")
    summary["status"] = "failed"
    summary.to_csv(folder / "summary.csv", index=False)
    out = tmp_path / "charts"
    check_pngs(write_charts(load_run(folder), out), out)


def test_throughput_figure_says_what_it_shows(run: RunData) -> None:
    fig = throughput_figure(aggregate(run.summary), run.record)
    ax = fig.axes[0]
    assert fig.get_suptitle() == "Throughput by concurrency"
    assert "concurrency" in ax.get_xlabel() and ax.get_xscale() == "log"
    assert "requests/s" in ax.get_ylabel()
    captions = [t.get_text() for t in fig.texts]
    assert any("run 20261124-000000" in c and "2 cores" in c and "24 GB" in c for c in captions)
    legend = legend_texts(fig)
    assert {"shared-rwlock", "shared-mutex", "batched"} <= set(legend)
    assert "offline ceiling (torch)" in legend  # from run.json's "ceiling"
    assert "loadgen saturated (a floor)" in legend  # batched at c=100


def test_throughput_ceiling_argument_and_error_bars(run: RunData) -> None:
    ceiling = pd.DataFrame([{"backend": "onnx", "quantize": "int8", "sentences_per_s": 300.0}])
    meta = dataclasses.replace(run.record, ceilings=Ceilings())
    fig = throughput_figure(aggregate(run.summary), meta, ceiling)
    assert "offline ceiling (onnx int8)" in legend_texts(fig)
    assert "offline ceiling (torch)" not in legend_texts(fig)
    # the batched line at c=10 carries its interval (repeats of 30.0 and 32.0 rps)
    low, high = mean_interval([30.0, 32.0]) or (0.0, 0.0)
    segments = [
        seg
        for coll in fig.axes[0].collections
        if hasattr(coll, "get_segments")
        for seg in coll.get_segments()
    ]
    assert any(abs(s[0][1] - low) < 1e-9 and abs(s[1][1] - high) < 1e-9 for s in segments)


def test_latency_figure_has_a_line_per_label_and_percentile(run: RunData) -> None:
    fig = latency_figure(aggregate(run.summary), run.record)
    ax = fig.axes[0]
    assert ax.get_yscale() == "log" and "ms" in ax.get_ylabel()
    assert len(ax.get_lines()) == 3 * 3
    assert {"p50", "p95", "p99", "batched"} <= set(legend_texts(fig))


def test_resources_figure(run: RunData) -> None:
    fig = resources_figure(aggregate(run.summary), run.record)
    cpu_ax, mem_ax = fig.axes
    assert "%" in cpu_ax.get_ylabel() and "MB" in mem_ax.get_ylabel()
    # 3 labels x 2 concurrency levels of CPU bars; 3 labels x RSS and PSS
    assert len(cpu_ax.patches) == 6 and len(mem_ax.patches) == 6
    assert "all 2 cores" in legend_texts(fig)
    heights = [p.get_height() for p in mem_ax.patches]  # type: ignore[attr-defined]
    # batched's RSS peak: the median of its two c=100 repeats (472.4, 474.5 MB)
    assert max(heights) == pytest.approx(473.45)


def test_timeline_skips_cells_without_files(run: RunData) -> None:
    cells = list(run.summary["cell"])
    samples = {c: pd.read_csv(run.folder.samples(c)) for c in cells[:2]}
    requests = {c: pd.read_csv(run.folder.requests(c)) for c in cells[:1]}
    fig = timeline_figure(prepare(run.summary), requests, samples, run.record)
    rps_ax, cpu_ax, mem_ax = fig.axes
    assert len(rps_ax.get_lines()) == 1
    assert len(cpu_ax.get_lines()) == 2 * 2 * 2  # 2 cells x (server, loadgen) x (all, measure)
    assert "(s)" in mem_ax.get_xlabel() and "MB" in mem_ax.get_ylabel()
    annotations = [t.get_text() for t in rps_ax.texts]
    assert annotations.count("c=100 failed") == 1 and len(annotations) == len(cells)
