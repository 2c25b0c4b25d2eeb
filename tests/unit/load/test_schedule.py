from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from embbench.load import schedule
from embbench.load.locust import LoadSpec, locust_command
from embbench.load.loops.open import open_timing


def test_poisson_schedule_is_reproducible_from_its_seed() -> None:
    a = schedule.build_schedule(50.0, 20.0, "poisson", seed=7)
    assert a == schedule.build_schedule(50.0, 20.0, "poisson", seed=7)
    assert a != schedule.build_schedule(50.0, 20.0, "poisson", seed=8)
    assert a[0] == 0.0 and all(0 <= t < 20.0 for t in a)
    assert all(np.diff(a) > 0)


def test_poisson_schedule_has_the_mean_rate_and_exponential_gaps() -> None:
    due = schedule.build_schedule(100.0, 200.0, "poisson", seed=1)
    # 20,000 arrivals expected; sd 141: 4 % is ~14 sd, no flake.
    assert len(due) == pytest.approx(20_000, rel=0.04)
    gaps = np.diff(due)
    assert gaps.mean() == pytest.approx(0.01, rel=0.04)
    # Exponential: coefficient of variation 1 (a constant schedule has 0).
    assert gaps.std() / gaps.mean() == pytest.approx(1.0, abs=0.05)


def test_constant_schedule_has_even_gaps() -> None:
    due = schedule.build_schedule(20.0, 5.0, "constant")
    assert len(due) == 100
    assert np.allclose(np.diff(due), 0.05)
    assert due[0] == 0.0 and due[-1] == pytest.approx(4.95)


def test_schedule_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="positive"):
        schedule.build_schedule(0.0, 5.0)
    with pytest.raises(ValueError, match="arrival"):
        schedule.build_schedule(10.0, 5.0, "bursty")


@pytest.mark.parametrize("count", [1, 2, 3, 7])
def test_slices_are_disjoint_and_cover_the_schedule(count: int) -> None:
    due = schedule.build_schedule(30.0, 10.0, "poisson", seed=3)
    slices = [schedule.slice_for(due, i, count) for i in range(count)]
    assert sorted(t for part in slices for t in part) == due
    assert sum(len(part) for part in slices) == len(due)
    # Arrival k of slice i is arrival i + k * count of the schedule (the locustfile relies on
    # it to pick the same payload for an arrival whatever the number of processes).
    for i, part in enumerate(slices):
        assert all(due[i + k * count] == t for k, t in enumerate(part))
    with pytest.raises(ValueError):
        schedule.slice_for(due, count, count)


def test_caps_are_shared_among_processes() -> None:
    assert schedule.per_process(1000, 3) == 334
    assert schedule.per_process(1, 2) == 1  # never zero: every process can send


def spec(tmp_path: Path, **kwargs: object) -> LoadSpec:
    base: dict[str, object] = dict(
        url="http://127.0.0.1:1",
        protocol="predict",
        users=8,
        run_time=10.0,
        payloads=["a"],
        requests_dir=tmp_path,
        log_path=tmp_path / "locust.log",
    )
    base.update(kwargs)
    return LoadSpec(**base)  # type: ignore[arg-type]


def test_closed_loop_command_is_unchanged_but_names_its_user(tmp_path: Path) -> None:
    argv, _ = locust_command(spec(tmp_path), tmp_path / "p.json")
    assert argv[argv.index("--users") + 1] == "8"
    assert "EmbeddingUser" in argv and not any(a.startswith("--embbench") for a in argv)


def test_open_loop_command_runs_one_user_per_process(tmp_path: Path) -> None:
    schedule_s, run_time = open_timing(2.0, 10.0)
    assert schedule_s == 2.0 + 10.0 + schedule.TAIL_S
    assert run_time >= schedule_s + schedule.START_LEAD_S
    open_spec = spec(
        tmp_path, rate=40.0, schedule_s=schedule_s, run_time=run_time, processes=3, seed=5
    )
    argv, _ = locust_command(open_spec, tmp_path / "p.json")
    assert argv[argv.index("--users") + 1] == "3"
    assert "OpenLoopUser" in argv and "EmbeddingUser" not in argv
    assert argv[argv.index("--embbench-rate") + 1] == "40.0"
    assert argv[argv.index("--embbench-seed") + 1] == "5"
    with pytest.raises(ValueError, match="run_time"):
        locust_command(spec(tmp_path, rate=40.0, schedule_s=schedule_s), tmp_path / "p.json")
