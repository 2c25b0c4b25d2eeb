from __future__ import annotations

from typing import Any

import pandas as pd
import pytest

from embbench.report.sections.ceiling import cpu_rows, cpu_section
from embbench.report.view import RunView
from embbench.results.ceilings import Ceiling
from embbench.results.columns import SUMMARY_COLUMNS
from embbench.results.record import RunRecord


def ceiling(rate: float, **extra: Any) -> dict[str, Any]:
    return {"backend": "onnx", "quantize": "int8", "sentences_per_s": rate, **extra}


RUN_JSON = {
    "host": {"cores": 2},
    "ceiling": [ceiling(1000.0)],
    "ceiling_between": [ceiling(800.0, after_repeat=0), ceiling(500.0, after_repeat=1)],
    "ceiling_after": [ceiling(400.0)],
}
META = RunRecord.from_json(RUN_JSON)


def ceilings_around(record: RunRecord, backend: str, quantize: str, repeat: int) -> list[Ceiling]:
    return record.ceilings.around(backend, quantize, repeat)


def rates(found: list[Ceiling]) -> list[float | None]:
    return [c.sentences_per_s for c in found]


def test_each_repeat_is_judged_against_the_ceilings_around_it() -> None:
    assert rates(ceilings_around(META, "onnx", "int8", 0)) == [1000.0, 800.0]
    assert rates(ceilings_around(META, "onnx", "int8", 1)) == [800.0, 500.0]
    assert rates(ceilings_around(META, "onnx", "int8", 2)) == [500.0, 400.0]
    assert ceilings_around(META, "torch", "none", 0) == []


def test_a_run_without_ceilings_between_repeats_uses_the_first_and_the_last() -> None:
    meta = RunRecord.from_json({**RUN_JSON, "ceiling_between": []})
    assert rates(ceilings_around(meta, "onnx", "int8", 0)) == [1000.0, 400.0]
    assert rates(ceilings_around(meta, "onnx", "int8", 1)) == [400.0]


def summary_row(repeat: int, cpu_pct: float, rps: float, **extra: Any) -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(SUMMARY_COLUMNS)
    row.update(
        variant="batched", label="b", concurrency=100, repeat=repeat, status="ok",
        backend="onnx", quantize="int8", rps=rps, cpu_pct_mean=cpu_pct,
    )  # fmt: skip
    row.update(extra)
    return row


def test_cpu_per_embedding_is_set_against_the_ceiling_of_its_own_repeat() -> None:
    # Server: 180 % CPU at 1000 rps = 1.8 ms per answer, then 360 % at 1000 = 3.6 ms as the
    # machine slows. Ceilings (2 cores): 2.0 ms and 2.5 ms around repeat 0, 2.5 and 4.0 around
    # repeat 1: ratios 1.8 / 2.25 = 0.8 and 3.6 / 3.25.
    summary = pd.DataFrame([summary_row(0, 180.0, 1000.0), summary_row(1, 360.0, 1000.0)])
    [row] = cpu_rows(RunView.of(summary, META))
    assert row["repeats"] == 2
    assert row["ratio_low"] == pytest.approx(0.8)
    assert row["ratio_high"] == pytest.approx(3.6 / 3.25)
    assert row["ratio"] == pytest.approx((0.8 + 3.6 / 3.25) / 2)
    assert row["cpu_ms"] == pytest.approx(2.7)


def test_failed_cells_and_backends_without_a_ceiling_are_left_out() -> None:
    summary = pd.DataFrame(
        [
            summary_row(0, 180.0, 1000.0, status="failed"),
            summary_row(0, 180.0, 1000.0, backend="torch", quantize="none", label="t"),
        ]
    )
    assert cpu_rows(RunView.of(summary, META)) == []
    assert cpu_section(RunView.of(summary, META)) == []
