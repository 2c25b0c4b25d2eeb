"""`embbench plan`'s arithmetic on a fixed capacity run built here: replicas, cores, memory,
cost, the choice, none-meets-it and the extrapolations it must name; and the command's
one-line usage errors and JSON."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from embbench.errors import ConfigError, ResultsError
from embbench.report.plan import PlanTarget, measured_from, plan_runs, read_runs
from embbench.report.scaling import scaling
from embbench.results.folder import load_run

FIXTURE = Path(__file__).parents[2] / "fixtures" / "results" / "20261124-000000"

CAPACITY = [  # variant, status, qps_at_slo, pss_mb_at_slo
    ("fast", "found", 100.0, 400.0),
    ("mutex", "found", 20.0, 300.0),
    ("int8", "indeterminate", 150.0, 200.0),
    ("broken", "none", None, None),
]
PROBES = {  # variant: (offered rates probed, cosine min, start-up s, start-up PSS MB)
    "fast": ([50.0, 100.0, 104.0], 0.9999, 3.0, 600.0),
    "mutex": ([10.0, 20.0, 21.0], 0.9999, 2.0, 350.0),
    "int8": ([150.0, 300.0], 0.97, 4.0, 150.0),
    "broken": ([1.0], 0.9999, 1.0, 100.0),
}


def make_run(root: Path, name: str = "20261201-000000") -> Path:
    run = root / name
    run.mkdir(parents=True)
    shutil.copy(FIXTURE / "run.json", run / "run.json")  # host: 2 cores
    rows = [
        {"variant": v, "label": v, "status": "ok", "offered_rps": rate, "cores": 2,
         "cosine_min": cosine, "startup_s": startup, "startup_pss_mb_peak": peak}
        for v, (rates, cosine, startup, peak) in PROBES.items()
        for rate in rates
    ]  # fmt: skip
    pd.DataFrame(rows).to_csv(run / "summary.csv", index=False)
    pd.DataFrame(
        [{"variant": v, "label": v, "slo_p99_ms": 50.0, "max_error_rate": 0.001, "status": s,
          "qps_at_slo": q, "pss_mb_at_slo": p} for v, s, q, p in CAPACITY]
    ).to_csv(run / "capacity.csv", index=False)  # fmt: skip
    return run


TARGET = PlanTarget(target_rps=1000, slo_p99_ms=50, price_per_core_hour=0.05,
                    price_per_gb_hour=0.01, headroom=0.7)  # fmt: skip
MILLIONS_PER_MONTH = 1000 * 3600 * 730 / 1e6


def test_arithmetic_per_variant(tmp_path: Path) -> None:
    plan = plan_runs([make_run(tmp_path)], TARGET)
    by = {o.label: o for o in plan.options}
    fast = by["fast"]
    assert fast.replica_cores == 2 and fast.replica_rps == pytest.approx(70.0)
    assert fast.replicas == 15 and fast.total_cores == 30  # ceil(1000 / 70) = ceil(14.29)
    assert fast.replica_memory_mb == 600.0  # the start-up peak is above the steady 400
    assert fast.total_memory_gb == pytest.approx(15 * 600 / 1024)
    hourly = 30 * 0.05 + 15 * 600 / 1024 * 0.01
    assert fast.usd_per_month == pytest.approx(hourly * 730)
    assert fast.usd_per_million == pytest.approx(hourly * 730 / MILLIONS_PER_MONTH)
    assert fast.startup_s == 3.0 and fast.capacity_high_rps == 104.0
    assert fast.holds_in == "100.0-104.0 rps; measured at 2 cores"
    assert fast.meets and not fast.extrapolation
    assert by["mutex"].replicas == 72 and by["mutex"].replica_memory_mb == 350.0
    assert not by["broken"].meets and "no rate met" in by["broken"].why_not


def test_the_cheapest_may_rest_on_a_floor_and_says_so(tmp_path: Path) -> None:
    plan = plan_runs([make_run(tmp_path)], TARGET)
    assert plan.choice is not None and plan.choice.label == "int8"
    assert plan.choice.replicas == 10  # ceil(1000 / 105)
    assert "is a floor" in plan.choice.caveat and not plan.choice.extrapolation
    assert "Conservative: the capacity 150.0 rps is a floor" in plan.answer
    assert "extrapolation" not in plan.answer and plan.answer.startswith("int8: 10 ")
    assert [o.label for o in plan.options][:3] == ["int8", "fast", "mutex"]


def test_quality_floor_excludes(tmp_path: Path) -> None:
    target = PlanTarget(1000, 50, quality_floor=0.99, price_per_gb_hour=0.01)
    plan = plan_runs([make_run(tmp_path)], target)
    assert plan.choice is not None and plan.choice.label == "fast"
    assert "below the floor" in {o.label: o for o in plan.options}["int8"].why_not
    assert "extrapolation" not in plan.answer


def test_none_meets_a_stricter_slo(tmp_path: Path) -> None:
    plan = plan_runs([make_run(tmp_path)], PlanTarget(1000, 20))
    assert plan.choice is None and not any(o.meets for o in plan.options)
    assert plan.answer.startswith("No variant meets 1000 rps at p99 <= 20 ms")
    assert "looser than the target" in plan.answer
    assert plan.to_json()["choice"] is None


def test_an_unmeasured_replica_size_is_an_extrapolation(tmp_path: Path) -> None:
    plan = plan_runs([make_run(tmp_path)], PlanTarget(1000, 50, quality_floor=0.99,
                                                      replica_cores=4))  # fmt: skip
    fast = {o.label: o for o in plan.options}["fast"]
    assert fast.replica_cores == 4 and fast.replica_rps == pytest.approx(140.0)
    assert fast.replicas == 8 and fast.total_cores == 32
    assert "4 cores per replica were not measured" in fast.extrapolation
    assert plan.choice is fast and "Rests on an extrapolation" in plan.answer


def test_same_label_in_two_runs_is_named_by_run(tmp_path: Path) -> None:
    rows = read_runs([make_run(tmp_path, "a"), make_run(tmp_path, "b")])
    assert "fast (a)" in {m.label for m in rows} and "fast (b)" in {m.label for m in rows}


def test_mistakes_are_typed(tmp_path: Path) -> None:
    with pytest.raises(ResultsError, match=r"no capacity\.csv"):
        plan_runs([FIXTURE], TARGET)
    for kwargs in ({"headroom": 1.5}, {"target_rps": -1.0}, {"slo_p99_ms": math.nan}):
        with pytest.raises(ConfigError):
            PlanTarget(**{"target_rps": 10.0, "slo_p99_ms": 50.0, **kwargs})  # type: ignore[arg-type]


def _embbench(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "embbench", *args], capture_output=True,
                          text=True, timeout=120, check=False)  # fmt: skip


def test_cli_json_and_one_line_errors(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    done = _embbench("plan", str(run), "--target-rps", "1000", "--slo-p99-ms", "50", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["choice"] == "int8"
    for args, needle in (([str(FIXTURE)], "no capacity.csv"),
                         ([str(run), "--headroom", "0"], "--headroom")):  # fmt: skip
        done = _embbench("plan", *args, "--target-rps", "1000", "--slo-p99-ms", "50")
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        assert done.returncode == 2 and len(lines) == 1 and needle in lines[0], done.stderr


def make_cores_run(root: Path) -> Path:
    """`capacity --cores 1,2` of one variant: a row per core count, labels apart."""
    run = root / "20261202-000000"
    run.mkdir(parents=True)
    shutil.copy(FIXTURE / "run.json", run / "run.json")
    probes = {("mutex (1 core)", 1): [10.0, 20.0, 21.0], ("mutex (2 cores)", 2): [36.0, 38.0]}
    rows = [
        {"variant": "shared-mutex", "label": label, "status": "ok", "offered_rps": rate,
         "cores": cores, "cosine_min": 0.9999, "startup_s": 2.0, "startup_pss_mb_peak": 300.0}
        for (label, cores), rates in probes.items()
        for rate in rates
    ]  # fmt: skip
    pd.DataFrame(rows).to_csv(run / "summary.csv", index=False)
    pd.DataFrame(
        [{"variant": "shared-mutex", "label": label, "slo_p99_ms": 50.0, "status": "found",
          "qps_at_slo": q, "pss_mb_at_slo": 250.0, "cores": cores}
         for label, cores, q in (("mutex (1 core)", 1, 20.0), ("mutex (2 cores)", 2, 36.0))]
    ).to_csv(run / "capacity.csv", index=False)  # fmt: skip
    return run


def test_per_core_rows_and_their_scaling(tmp_path: Path) -> None:
    measured = read_runs([make_cores_run(tmp_path)])
    assert [(m.cores, m.cores_measured, m.base) for m in measured] == [
        (1, (1, 2), "mutex"), (2, (1, 2), "mutex")
    ]  # fmt: skip
    (s,) = scaling(measured)
    assert (s.cores_from, s.cores_to) == (1, 2) and s.efficiency == pytest.approx(0.9)
    assert s.low == pytest.approx(36 / 21 / 2) and s.high == pytest.approx(38 / 20 / 2)
    assert "90% scaling efficiency (within 86%-95%" in s.words and not s.floor
    plan = plan_runs([make_cores_run(tmp_path / "b")], PlanTarget(100, 50))
    by = {o.label: o for o in plan.options}
    assert by["mutex (1 core)"].replicas == 8 and by["mutex (2 cores)"].replicas == 4
    assert by["mutex (1 core)"].holds_in == "20.0-21.0 rps; measured at 1, 2 cores"
    scaled = plan_runs([make_cores_run(tmp_path / "c")], PlanTarget(100, 50, replica_cores=4))
    (only,) = scaled.options  # one option per variant at the size asked
    assert only.replica_cores == 4 and only.replica_rps == pytest.approx(36 * 2 * 0.7)
    assert "scaled linearly" in only.extrapolation and "measured: 1, 2" in only.extrapolation


def test_the_passing_probe_is_not_the_rate_above_it(tmp_path: Path) -> None:
    # summary.csv rounds offered_rps to 0.01, capacity.csv keeps the rate: 427.04 against
    # 427.035 once read as "427.0-427.0 rps" (run 20261204-033118).
    run = make_run(tmp_path)
    summary = pd.read_csv(run / "summary.csv")
    capacity = pd.read_csv(run / "capacity.csv")
    rate = float(capacity.loc[capacity["label"] == "fast", "qps_at_slo"].iloc[0])
    fast = summary["label"] == "fast"
    summary.loc[fast & (summary["offered_rps"] == rate), "offered_rps"] = rate + 0.004
    summary.to_csv(run / "summary.csv", index=False)
    [fast_measured] = [m for m in measured_from(load_run(run)) if m.label == "fast"]
    assert fast_measured.capacity_high_rps is not None
    assert fast_measured.capacity_high_rps > rate + 0.01
