"""The report layer: numbers from the checked-in fixture run, and words about them."""

from __future__ import annotations

import csv
import math
import shutil
import statistics
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from embbench.errors import UsageError
from embbench.report.compare import compare_runs, compare_to_baseline, winners
from embbench.report.compare_markdown import render_compare_markdown
from embbench.report.document import render_markdown
from embbench.report.sections.why import explain
from embbench.report.stats import aggregate, mean_interval
from embbench.report.view import RunView
from embbench.results.folder import SUMMARY_COLUMNS, RunData, load_run
from embbench.results.record import RunRecord

FIXTURE = Path(__file__).parents[2] / "fixtures" / "results" / "20261124-000000"
# A run.json of version 1 that recorded no traits: its variants' come from the migration.
RUN_JSON = {
    "schema_version": 1,
    "host": {"cpu_model": "Test CPU", "cores": 2, "memory_gb": 8, "platform": "Linux"},
}
META = RunRecord.from_json(RUN_JSON)


def with_ceilings(**lists: Any) -> RunRecord:
    """META with run.json's ceiling lists ("ceiling", "ceiling_after") as given."""
    return RunRecord.from_json({**RUN_JSON, **lists})


@pytest.fixture(scope="module")
def run() -> RunData:
    return load_run(FIXTURE)


@pytest.fixture(scope="module")
def agg(run: RunData) -> pd.DataFrame:
    return aggregate(run.summary)


def cell(agg: pd.DataFrame, label: str, concurrency: int) -> dict[str, Any]:
    rows = agg[(agg["label"] == label) & (agg["concurrency"] == concurrency)]
    assert len(rows) == 1, (label, concurrency)
    return dict(rows.iloc[0])


def raw_rows() -> list[dict[str, str]]:
    """summary.csv read with the csv module, independently of pandas and of aggregate()."""
    with (FIXTURE / "summary.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


def row(**values: Any) -> dict[str, Any]:
    """A summary row with every column, plain defaults, and `values` on top."""
    base: dict[str, Any] = dict.fromkeys(SUMMARY_COLUMNS)
    base.update(
        variant="shared-rwlock",
        label="",
        concurrency=10,
        repeat=0,
        status="ok",
        workers=1,
        threads=1,
        backend="torch",
        quantize="none",
        requests=100,
        failures=0,
        rps=10.0,
        latency_mean_ms=1000.0,
        latency_p50_ms=900.0,
        latency_p95_ms=1500.0,
        latency_p99_ms=2000.0,
        cpu_pct_mean=150.0,
        cpu_pct_max=190.0,
        rss_mb_max=400.0,
        pss_mb_max=380.0,
        uss_mb_max=370.0,
        loadgen_cpu_pct_mean=20.0,
        cosine_min=0.9999,
        cosine_threshold=0.999,
        correct=True,
        little_law_ok=True,
        loadgen_saturated=False,
        oversubscribed=False,
    )
    base.update(values)
    return base


# --- aggregate ---------------------------------------------------------------------------


def test_aggregate_has_one_row_per_label_and_concurrency(agg: pd.DataFrame) -> None:
    assert list(zip(agg["label"], agg["concurrency"], strict=True)) == [
        ("shared-rwlock", 10),
        ("shared-rwlock", 100),
        ("shared-mutex", 10),
        ("shared-mutex", 100),
        ("batched", 10),
        ("batched", 100),
    ]


def test_aggregate_medians_match_the_csv(agg: pd.DataFrame) -> None:
    for label in ("shared-rwlock", "shared-mutex", "batched"):
        for concurrency in (10, 100):
            ok = [
                r
                for r in raw_rows()
                if r["label"] == label
                and int(r["concurrency"]) == concurrency
                and r["status"] == "ok"
            ]
            got = cell(agg, label, concurrency)
            for column in ("rps", "latency_p50_ms", "latency_p99_ms", "pss_mb_max"):
                expected = statistics.median(float(r[column]) for r in ok)
                assert got[column] == pytest.approx(expected), (label, concurrency, column)


def test_aggregate_known_values(agg: pd.DataFrame) -> None:
    batched = cell(agg, "batched", 10)
    assert batched["rps"] == pytest.approx(31.0)  # median of 30.0 and 32.0
    interval = mean_interval([30.0, 32.0])
    assert (batched["rps_ci_low"], batched["rps_ci_high"]) == pytest.approx(interval)
    assert batched["n_repeats"] == 2 and batched["n_ok"] == 2 and batched["n_failed"] == 0
    assert cell(agg, "batched", 100)["rps"] == pytest.approx(31.5)  # 28.0 and 35.0


def test_failed_cell_is_counted_listed_and_left_out_of_the_numbers(agg: pd.DataFrame) -> None:
    mutex = cell(agg, "shared-mutex", 100)
    assert (mutex["n_repeats"], mutex["n_ok"], mutex["n_failed"]) == (2, 1, 1)
    assert mutex["failed_cells"] == "010-shared-mutex-c100-r1"
    # Only the ok repeat counts: its own numbers, and no interval from one value.
    assert mutex["rps"] == pytest.approx(10.5)
    assert mutex["cpu_pct_mean"] == pytest.approx(105.2)  # not the failed cell's 98.5
    assert math.isnan(mutex["rps_ci_low"]) and math.isnan(mutex["latency_p99_ms_ci_high"])


def test_aggregate_flags_from_the_fixture(agg: pd.DataFrame) -> None:
    assert cell(agg, "batched", 100)["loadgen_saturated"]
    assert not cell(agg, "batched", 10)["loadgen_saturated"]
    assert cell(agg, "shared-rwlock", 10)["oversubscribed"]
    assert not cell(agg, "shared-mutex", 10)["oversubscribed"]


def test_aggregate_ignores_numbers_of_rows_that_are_not_ok() -> None:
    frame = pd.DataFrame(
        [
            row(rps=10.0),
            row(rps=12.0, repeat=1),
            row(rps=999.0, repeat=2, status="bad_embeddings", correct=False),
        ]
    )
    got = aggregate(frame).iloc[0]
    assert got["rps"] == pytest.approx(11.0)
    assert got["n_failed"] == 1 and got["incorrect"]


def test_label_falls_back_to_the_variant() -> None:
    frame = pd.DataFrame([row(label="", variant="batched"), row(label=None, variant="batched")])
    assert list(aggregate(frame)["label"]) == ["batched"]


# --- intervals, ratios, significance -------------------------------------------------------


def test_mean_interval_is_a_t_interval_of_the_geometric_mean() -> None:
    # Issue 11: a percentile bootstrap over 2-3 repeats returned their range as "95 %".
    assert mean_interval([5.0]) is None
    low, high = mean_interval([3.0, 5.0]) or (0.0, 0.0)
    assert low < 3.0 and high > 5.0  # two repeats: honestly wider than their range
    assert mean_interval([1.0, 2.0, 3.0, 4.0, 100.0]) == mean_interval([1.0, 2.0, 3.0, 4.0, 100.0])


def two_labels(base: list[float], other: list[float]) -> pd.DataFrame:
    rows = [
        row(variant="base", rps=v, latency_p50_ms=100.0 + i, repeat=i) for i, v in enumerate(base)
    ]
    rows += [
        row(variant="other", rps=v, latency_p50_ms=50.0 + i, repeat=i) for i, v in enumerate(other)
    ]
    return aggregate(pd.DataFrame(rows))


def test_clear_difference_is_significant() -> None:
    table = compare_to_baseline(two_labels([10.0, 10.2, 9.9], [20.0, 20.5, 19.7]), "base")
    got = table.iloc[0]
    assert got["label"] == "other"
    assert got["rps_ratio"] == pytest.approx(2.0)
    assert got["rps_ratio_ci_low"] > 1 and got["significant"] and got["has_interval"]
    assert got["p50_ratio"] == pytest.approx(51.0 / 101.0) and got["p50_significant"]


def test_the_same_ratio_twice_is_too_few_repeats() -> None:
    # Two pairs with one identical ratio can happen by chance (rounded values): no verdict.
    got = compare_to_baseline(two_labels([10.0, 10.2], [20.0, 20.4]), "base").iloc[0]
    assert got["rps_verdict"] == "too few repeats" and not got["significant"]


def test_interval_spanning_one_is_not_significant() -> None:
    got = compare_to_baseline(two_labels([10.0, 12.0], [11.0, 11.5]), "base").iloc[0]
    assert got["rps_ratio_ci_low"] < 1 < got["rps_ratio_ci_high"]
    assert not got["significant"] and got["has_interval"] and got["rps_verdict"] == "tie"


def test_one_repeat_gives_no_interval() -> None:
    got = compare_to_baseline(two_labels([10.0], [20.0, 21.0]), "base").iloc[0]
    assert got["rps_ratio"] == pytest.approx(2.05)
    assert not got["has_interval"] and not got["significant"]
    assert math.isnan(got["rps_ratio_ci_low"])


def test_unknown_baseline_lists_the_labels(agg: pd.DataFrame) -> None:
    with pytest.raises(UsageError, match="shared-rwlock, shared-mutex, batched"):
        compare_to_baseline(agg, "no-such-variant")


def test_baseline_on_the_fixture(agg: pd.DataFrame) -> None:
    table = compare_to_baseline(agg, "shared-mutex")
    assert set(table["label"]) == {"shared-rwlock", "batched"}
    batched = table[(table["label"] == "batched") & (table["concurrency"] == 10)].iloc[0]
    assert batched["rps_ratio"] == pytest.approx(31.0 / 10.25)
    # mutex at c=100 has one ok repeat: a ratio but no interval
    at_100 = table[(table["label"] == "batched") & (table["concurrency"] == 100)].iloc[0]
    assert at_100["rps_ratio"] == pytest.approx(31.5 / 10.5) and not at_100["has_interval"]


# --- winners ---------------------------------------------------------------------------------


def test_winners_on_the_fixture(agg: pd.DataFrame) -> None:
    table = winners(agg)
    assert list(table["concurrency"]) == [10, 100]
    assert list(table["label"]) == ["batched", "batched"]
    assert list(table["runner_up"]) == ["shared-rwlock", "shared-rwlock"]
    assert list(table["loadgen_saturated"]) == [False, True]


@pytest.mark.parametrize("order", [("a", "b"), ("b", "a")])
def test_winner_tie_goes_to_lower_p99(order: tuple[str, str]) -> None:
    p99 = {"a": 900.0, "b": 500.0}
    frame = pd.DataFrame([row(variant=v, rps=20.0, latency_p99_ms=p99[v]) for v in order])
    assert winners(aggregate(frame)).iloc[0]["label"] == "b"


def test_failed_cells_do_not_win() -> None:
    frame = pd.DataFrame([row(variant="a", rps=5.0), row(variant="b", rps=50.0, status="failed")])
    assert winners(aggregate(frame)).iloc[0]["label"] == "a"


# --- explanations ---------------------------------------------------------------------------


def test_explain_on_the_fixture(run: RunData, agg: pd.DataFrame) -> None:
    text = "\n".join(explain(RunView.of(run.summary, run.record)))
    assert "shared-rwlock is oversubscribed (1 × 4 intra-op threads = 4 on 2 cores)" in text
    assert "batched at c=100: the load generator was saturated in 1 of 2 repeats" in text
    assert "28.0 rps is a floor" in text
    assert "one inference at a time leaves 47 % of the CPU idle" in text
    assert "3 of 24 requests failed (3 timeout)" in text
    # nothing in the fixture breaks Little's law or the embeddings
    assert "Little" not in text and "disagree" not in text


def test_explain_says_nothing_without_a_reason() -> None:
    frame = pd.DataFrame([row(variant="a"), row(variant="b", rps=20.0)])
    assert explain(RunView.of(frame, META)) == []


def test_oversubscription_from_workers_times_threads() -> None:
    frame = pd.DataFrame(
        [row(variant="per-worker", workers=2, threads=2, rps=5.0), row(variant="batched", rps=20.0)]
    )
    text = " ".join(explain(RunView.of(frame, META)))
    assert "per-worker is oversubscribed (2 × 2 intra-op threads = 4 on 2 cores)" in text
    assert "5.0 rps, 0.25× the 20.0 rps of batched" in text


def test_little_law_wrong_embeddings_and_errors() -> None:
    frame = pd.DataFrame(
        [
            row(variant="a", little_law_ok=False, rps=4.0, latency_mean_ms=500.0),
            row(variant="b", correct=False, cosine_min=0.91, status="bad_embeddings"),
            row(variant="c", failures=7, requests=70, errors_connection=5, errors_5xx=2),
        ]
    )
    text = " ".join(explain(RunView.of(frame, META)))
    assert "4.0 rps × 0.500 s mean latency = 2.0 requests in flight for 10 users" in text
    assert "cosine min 0.9100 below the threshold 0.9990" in text
    assert "7 of 70 requests failed (5 connection, 2 HTTP 5xx)" in text


def test_memory_per_worker_and_copy_on_write() -> None:
    frame = pd.DataFrame(
        [
            row(variant="shared-mutex", pss_mb_max=400.0, rss_mb_max=420.0),
            row(variant="per-worker", workers=4, threads=1, pss_mb_max=1000.0, rss_mb_max=1050.0),
            row(variant="preload", workers=4, threads=1, pss_mb_max=700.0, rss_mb_max=1600.0),
        ]
    )
    text = " ".join(explain(RunView.of(frame, META)))
    assert "per-worker runs 4 processes in 1000 MB PSS" in text
    assert "each extra worker costs about 200 MB" in text  # (1000 - 400) / 3
    assert "each extra worker costs about 100 MB" in text  # preload: (700 - 400) / 3
    assert "Copy-on-write sharing shows in preload" in text and "900 MB (56%)" in text


def test_mutex_that_keeps_the_cpu_busy_is_not_blamed() -> None:
    frame = pd.DataFrame(
        [
            row(variant="shared-mutex", rps=10.0, cpu_pct_mean=195.0),
            row(variant="shared-rwlock", rps=10.5, cpu_pct_mean=198.0),
        ]
    )
    assert not [s for s in explain(RunView.of(frame, META)) if "idle" in s]


# --- Markdown -------------------------------------------------------------------------------


def tables_are_well_formed(markdown: str) -> None:
    block: list[str] = []
    for line in [*markdown.splitlines(), ""]:
        if line.startswith("|"):
            block.append(line)
            continue
        if block:
            widths = {len(b.replace("\\|", "").split("|")) for b in block}
            assert len(widths) == 1, block
            assert set(block[1].replace("|", "").split()) <= {"---", "---:"}, block[1]
        block = []


def test_render_markdown_on_the_fixture(run: RunData) -> None:
    text = render_markdown(run, "shared-mutex")
    assert text.startswith("# embbench report: run 20261124-000000\n")
    assert "AMD EPYC 7B13 (fixture), 2 cores, 24 GB memory" in text
    assert "torch 2.13.0" in text and "| duration | 2.0 |" in text
    assert "### Concurrency 10" in text and "### Concurrency 100" in text
    assert "| label | rps | p50 ms | p95 ms | p99 ms | CPU % | RSS MB | PSS MB |" in text
    assert "| batched | 31.0 (" in text  # a t-interval over two repeats: wide
    assert "batched leads) (a floor: loadgen saturated) | 31.5 |" in text
    assert "## Against shared-mutex" in text and "| batched | 10 | 3.02 (" in text
    assert "too few repeats" in text and "## Noise floor" in text
    assert "- shared-rwlock is oversubscribed" in text
    assert "| 010-shared-mutex-c100-r1 | shared-mutex | 100 | 1 | failed | server exited" in text
    for name in ("throughput", "latency", "resources", "timeline"):
        assert f"![{name}](charts/{name}.png)" in text
    tables_are_well_formed(text)


def test_render_markdown_marks_not_significant(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        [
            row(variant="base", rps=10.0),
            row(variant="base", rps=12.0, repeat=1),
            row(variant="other", rps=11.0),
            row(variant="other", rps=11.5, repeat=1),
        ]
    )
    text = render_markdown(RunData(path=tmp_path, record=META, summary=frame), "base")
    assert "| other | 10 | 1.02 (" in text and "| tie within noise (±" in text
    assert "significant |" not in text
    assert "None: every cell finished with status ok." in text
    tables_are_well_formed(text)


def test_render_markdown_rejects_an_unknown_baseline(run: RunData) -> None:
    with pytest.raises(UsageError):
        render_markdown(run, "nope")


def test_compare_runs(run: RunData, tmp_path: Path) -> None:
    faster = tmp_path / "20261125-000000"
    shutil.copytree(FIXTURE, faster)
    summary = pd.read_csv(faster / "summary.csv")
    batched = summary["variant"] == "batched"
    summary.loc[batched, "rps"] = summary.loc[batched, "rps"] * 2
    summary.to_csv(faster / "summary.csv", index=False)
    b = load_run(faster)
    table = compare_runs(run, b)
    got = table.set_index(["label", "concurrency"])
    assert got.loc[("batched", 10), "rps_b"] == pytest.approx(62.0)
    assert got.loc[("batched", 10), "rps_ratio"] == pytest.approx(2.0)
    assert got.loc[("batched", 10), "significant"]
    assert got.loc[("shared-mutex", 10), "rps_ratio"] == pytest.approx(1.0)
    assert not got.loc[("shared-mutex", 10), "significant"]
    assert got.loc[("shared-rwlock", 100), "p99_ratio"] == pytest.approx(1.0)
    text = render_compare_markdown(run, b)
    assert "run 20261124-000000" in text and "| batched | 10 | 31.0 | 62.0 | 2.00 (" in text
    tables_are_well_formed(text)


def test_explain_sets_the_best_against_the_offline_ceiling(run: RunData, agg: pd.DataFrame) -> None:
    ceiling = {"backend": "torch", "quantize": "none", "sentences_per_s": 40.0, "threads": 1,
               "streams": 2, "best_batch": 8, "batch1_ms": 50.0, "batch1_threads": 2}  # fmt: skip
    view = RunView.of(run.summary, with_ceilings(ceiling=[ceiling]))
    said = [s for s in explain(view) if "ceiling" in s]
    top = agg.loc[agg["rps"].idxmax()]
    assert len(said) == 1  # no c=1 cell in the fixture: no latency sentence
    assert f"{top['label']} serves {top['rps']:.1f} rps" in said[0]
    assert f"{100 * top['rps'] / 40.0:.0f} % of the torch offline ceiling" in said[0]
    assert "1 thread(s) x 2 stream(s), batch 8" in said[0]
    other = {**ceiling, "backend": "onnx"}  # no onnx rows: nothing to say
    view = RunView.of(run.summary, with_ceilings(ceiling=[other]))
    assert not [s for s in explain(view) if "ceil" in s]


def test_ceiling_comparison_leaves_out_servers_that_refused_requests() -> None:
    frame = pd.DataFrame(
        [
            row(variant="batched", label="refuses long inputs", rps=50.0, failures=5),
            row(variant="batched", label="answers all", rps=20.0, concurrency=1),
        ]
    )
    ceiling = {"backend": "torch", "quantize": "none", "sentences_per_s": 40.0, "threads": 2,
               "streams": 1, "best_batch": 8, "batch1_ms": 600.0, "batch1_threads": 2}  # fmt: skip
    said = [s for s in explain(RunView.of(frame, with_ceilings(ceiling=[ceiling])))
            if "ceiling" in s or "bare" in s]  # fmt: skip
    assert said[0].startswith("At c=1, answers all serves 20.0 rps, 50 % of the torch offline")
    assert "answers all's p50 of 900.00 ms is 1.50x one bare torch forward pass" in said[1]
    assert not any("refuses" in s for s in said)


def test_ceiling_measured_again_after_the_cells_is_cited_too() -> None:
    frame = pd.DataFrame([row(variant="batched", label="b", rps=20.0, concurrency=1)])
    before = {"backend": "torch", "quantize": "none", "sentences_per_s": 40.0, "threads": 2,
              "streams": 1, "best_batch": 8, "batch1_ms": 600.0, "batch1_threads": 2}  # fmt: skip
    after = {**before, "sentences_per_s": 25.0, "batch1_ms": 750.0}
    meta = with_ceilings(ceiling=[before], ceiling_after=[after])
    said = [s for s in explain(RunView.of(frame, meta)) if "ceiling" in s or "bare" in s]
    assert "50 % of the torch offline ceiling" in said[0]
    assert "measured again after the cells, 25.0 sentences/s (80 %)" in said[0]
    assert "1.50x one bare torch forward pass (600.00 ms" in said[1]
    assert "1.20x the 750.00 ms measured after the cells" in said[1]
