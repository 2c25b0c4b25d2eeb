"""The design of `--repeats auto` (results/sequential.py): its looks, its level, its rule of
"decided", and its place in run.json and in the report's verdicts."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
import pytest

from embbench.report.view import RunView
from embbench.results.folder import OK
from embbench.results.record import RunRecord
from embbench.results.sequential import Round, Sequential
from embbench.results.verdicts import CONFIDENCE, compare_paired


def test_looks_and_level_split_alpha() -> None:
    design = Sequential()
    assert design.looks == (3, 4, 5)
    assert design.confidence == pytest.approx(1 - 0.05 / 3)
    assert Sequential(max_repeats=3).confidence == pytest.approx(CONFIDENCE)  # one look: today's
    assert Sequential(max_repeats=8).looks == (3, 4, 5, 6, 7, 8)


@pytest.mark.parametrize(
    "kwargs", [{"max_repeats": 2}, {"min_repeats": 1}, {"alpha": 0.0}, {"min_effect": 0.0}]
)
def test_a_design_without_a_look_or_a_level_is_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        Sequential(**kwargs)


def test_decided_means_significant_or_a_narrow_tie_from_the_first_look_on() -> None:
    design = Sequential()
    far = [100.0, 101.0, 99.0], [200.0, 198.0, 203.0]
    assert design.decided(design.compare(*far))
    # The same difference with two pairs only: never decided before the first look.
    assert not design.decided(design.compare(far[0][:2], far[1][:2]))
    narrow_tie = [100.0, 100.5, 99.8], [100.2, 100.1, 100.0]
    assert design.decided(design.compare(*narrow_tie))  # no 10 % difference is left to find
    wide_tie = [100.0, 120.0, 90.0], [110.0, 100.0, 95.0]
    verdict = design.compare(*wide_tie)
    assert verdict.word == "tie" and verdict.noise_pct > 10 and not design.decided(verdict)


def test_the_design_round_trips_through_run_json() -> None:
    design = Sequential(
        max_repeats=6,
        rounds=(Round(2, 4, ("c=100: a vs b, tie within noise (±30 %)",)),),
        undecided=("c=100: a vs b",),
    )
    record = RunRecord(run_id="r", sequential=design)
    data = record.to_json()
    assert data["sequential"]["looks"] == [3, 4, 5, 6]
    assert data["sequential"]["confidence"] == pytest.approx(1 - 0.05 / 4)
    assert "Bonferroni" in data["sequential"]["method"]
    again = RunRecord.from_json(data)
    assert again.sequential == design
    assert again.verdict_confidence == pytest.approx(design.confidence)
    assert "sequential" not in RunRecord(run_id="r").to_json()
    assert RunRecord(run_id="r").verdict_confidence == CONFIDENCE


def _summary(b_values: list[float]) -> pd.DataFrame:
    rows = [
        {"label": label, "variant": label, "concurrency": 100, "repeat": r, "status": OK,
         "rps": value, "latency_p99_ms": 10.0, "requests": 5000}
        for label, values in (("a", [100.0, 100.0, 100.0]), ("b", b_values))
        for r, value in enumerate(values)
    ]  # fmt: skip
    return pd.DataFrame(rows)


def test_the_report_judges_an_auto_run_at_its_level() -> None:
    # Log ratios 0.08, 0.12, 0.16: t = 5.2 on 2 df, beyond 95 % (4.30), within 98.33 % (7.65).
    b = [100.0 * math.exp(d) for d in (0.08, 0.12, 0.16)]
    assert compare_paired([100.0] * 3, b).word == "significant"
    fixed = RunView.of(_summary(b), RunRecord(run_id="fixed"))
    auto = RunView.of(_summary(b), RunRecord(run_id="auto", sequential=Sequential()))
    assert bool(fixed.winners["decided"].iloc[0])
    assert not bool(auto.winners["decided"].iloc[0])
    assert auto.against("a")["rps_verdict"].iloc[0] == "tie"
