"""The load loops behind their registry: levels, labels, Locust arguments, windows, numbers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from embbench.config.run import RunConfig, VariantRun
from embbench.load import loops, measure, schedule
from embbench.load.locust import LoadSpec, locust_command
from embbench.load.loops.base import Loop
from embbench.load.loops.closed import FLUSH_S, ClosedLoop
from embbench.load.loops.open import OpenLoop
from embbench.results import levels
from embbench.results.columns import Row


def config(**kw: Any) -> RunConfig:
    return RunConfig(variants=(VariantRun("batched"),), **kw)


def spec(tmp_path: Path, loop: Loop, run: RunConfig, repeat: int = 0) -> LoadSpec:
    return LoadSpec(
        url="http://127.0.0.1:1",
        protocol="predict",
        payloads=["a"],
        requests_dir=tmp_path,
        log_path=tmp_path / "locust.log",
        processes=run.load_processes,
        **loop.spec_fields(run, repeat),
    )


def test_every_loop_is_registered_under_its_own_name() -> None:
    assert set(loops.LOOPS) == {"closed", "open"}
    for name, loop in loops.LOOPS.items():
        assert issubclass(loop, Loop) and loop.name == name
    # The closed loop takes any settings, so it is asked last.
    assert list(loops.LOOPS)[-1] == levels.CLOSED


def test_a_run_without_rates_is_closed_one_level_per_concurrency() -> None:
    assert loops.levels_of(config(concurrency=(1, 10))) == [ClosedLoop(1), ClosedLoop(10)]


def test_a_run_with_rates_is_open_capped_by_max_inflight() -> None:
    found = loops.levels_of(config(rates=(20.0, 40.0), max_inflight=50))
    assert found == [OpenLoop(20.0, 50), OpenLoop(40.0, 50)]


def test_a_level_fills_its_summary_columns_and_is_labelled_as_the_report_reads_them() -> None:
    closed, open_ = ClosedLoop(10), OpenLoop(40.0, 1000)
    assert closed.columns() == {"load_model": "closed", "concurrency": 10, "offered_rps": None}
    assert open_.columns() == {"load_model": "open", "concurrency": 1000, "offered_rps": 40.0}
    assert (closed.label, open_.label) == ("c=10", "40 rps")
    for loop in (closed, open_):
        assert levels.label_of(Row(loop.columns())) == loop.label  # report/ reads the row


def test_cell_names_keep_their_format() -> None:
    assert ClosedLoop(100).cell_name(3, "batched", 0) == "003-batched-c100-r0"
    assert OpenLoop(40.0).cell_name(3, "batched", 1) == "003-batched-40rps-r1"


def test_a_spec_built_from_a_level_describes_that_level(tmp_path: Path) -> None:
    run = config(rates=(40.0,), max_inflight=64)
    for loop in (ClosedLoop(8), OpenLoop(40.0, 64)):
        assert spec(tmp_path, loop, run).loop == loop


def test_closed_loop_runs_its_users_and_is_stopped_by_the_runner(tmp_path: Path) -> None:
    run = config(warmup=2.0, duration=10.0)
    load = spec(tmp_path, ClosedLoop(8), run)
    assert load.run_time >= 2.0 + 10.0 + measure.MAX_FILL_S  # a cap, not the stop
    argv, _ = locust_command(load, tmp_path / "p.json")
    assert argv[argv.index("--users") + 1] == "8" and argv[-1] == "EmbeddingUser"


def test_open_loop_plays_one_schedule_per_repeat_and_stops_by_itself(tmp_path: Path) -> None:
    run = config(rates=(40.0,), warmup=2.0, duration=10.0, seed=7, load_processes=3)
    load = spec(tmp_path, OpenLoop(40.0, 100), run, repeat=2)
    assert load.seed == 9  # the same arrivals for every variant of a repeat
    assert load.schedule_s == 2.0 + 10.0 + schedule.TAIL_S
    assert load.run_time == schedule.run_seconds(load.schedule_s)
    argv, _ = locust_command(load, tmp_path / "p.json")
    assert argv[argv.index("--users") + 1] == "3"  # one user per Locust process
    assert "OpenLoopUser" in argv and argv[argv.index("--embbench-max-inflight") + 1] == "100"
    assert not OpenLoop(40.0).over((100.0, 110.0), now=1e9)


def closed_rows(ends: list[float]) -> list[measure.RequestRow]:
    return [(end - 0.1, 100.0, 200, "", 1, end - 0.1) for end in ends]


def test_closed_window_opens_once_every_user_came_back() -> None:
    loop = ClosedLoop(3)
    rows = closed_rows([100.5, 101.0])
    assert loop.live_window(rows, 1.0, 5.0, waited=1.0, now=101.0) is None
    rows = closed_rows([100.5, 101.0, 102.0])
    assert loop.live_window(rows, 1.0, 5.0, waited=2.0, now=102.0) == ((102.0, 107.0), True)
    assert not loop.over((102.0, 107.0), now=107.0)
    assert loop.over((102.0, 107.0), now=107.0 + FLUSH_S + 0.1)
    # One Locust process flushes what it holds when stopped: it need not be waited for.
    assert not loop.over((102.0, 107.0), now=107.0 + FLUSH_S - 0.1)
    assert loop.over((102.0, 107.0), now=107.0 + FLUSH_S - 0.1, through_master=False)
    assert loop.window(rows, (102.0, 107.0), 1.0, 5.0) == (102.0, 107.0)


def test_closed_window_opens_anyway_when_never_steady() -> None:
    rows = closed_rows([100.5])
    waited = 1.0 + measure.MAX_FILL_S + 1.0
    found = ClosedLoop(3).live_window(rows, 1.0, 5.0, waited=waited, now=500.0)
    assert found == ((500.0, 505.0), False)


def test_closed_numbers_count_completions_in_the_window_and_check_littles_law() -> None:
    loop = ClosedLoop(2)
    rows = [(100.01 + i * 0.05, 100.0, 200, "", 1, 100.01 + i * 0.05) for i in range(200)]
    out = loop.summarize(rows, 101.0, 5.0)
    assert out["load_model"] == "closed" and out["duration_s"] == 5.0
    assert out["requests"] == 100 and out["latency_p50_ms"] == pytest.approx(100.0)
    checks = loop.checks(Row(rps=20.0, latency_mean_ms=100.0))
    assert checks == {"little_ratio": pytest.approx(1.0), "little_law_ok": True}


def test_open_window_is_fixed_by_the_schedule_and_latency_counts_from_it() -> None:
    loop = OpenLoop(10.0)
    # Arrival i due at 100 + i / 10; each sent 50 ms late and served in 20 ms.
    rows = [(100.0 + i / 10 + 0.05, 20.0, 200, "", 1, 100.0 + i / 10) for i in range(150)]
    assert loop.live_window(rows[5:], 2.0, 10.0, waited=0.0, now=0.0) == ((102.5, 112.5), None)
    assert loop.window(rows, (102.5, 112.5), 2.0, 10.0) == (102.0, 112.0)  # from every row
    out = loop.summarize(rows, 102.0, 10.0)
    assert out["load_model"] == "open" and out["offered_rps"] == 10.0
    assert out["arrivals"] == 100 and out["latency_p50_ms"] == pytest.approx(70.0)
    assert out["service_p50_ms"] == pytest.approx(20.0)
    assert loop.checks(Row(out)) == {}  # Little's law with a cap on in-flight: not a law
