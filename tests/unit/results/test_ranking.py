"""The ranking rule on fixed cells: rps, then p99, stable; failed cells and cache-flagged
labels do not rank, and the latter are named with the line that says why."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from embbench.results.ranking import Caching, Ranked, caching, exclusion_lines, is_flagged, rank


def _cell(
    label: str, rps: float, p99: float = 100.0, level: str = "c=10", **kw: Any
) -> dict[str, Any]:
    return {"label": label, "level": level, "rps": rps, "latency_p99_ms": p99, **kw}


def test_highest_rps_then_lowest_p99_then_the_order_given() -> None:
    cells = [_cell("a", 10.0, 300.0), _cell("b", 20.0), _cell("c", 10.0, 200.0),
             _cell("d", 10.0, 200.0), _cell("e", 10.0, math.nan)]  # fmt: skip
    assert rank(cells) == [Ranked("c=10", ("b", "c", "d", "a", "e"))]


def test_failed_cells_do_not_rank_and_levels_keep_their_first_appearance() -> None:
    cells = [_cell("a", 5.0, level="c=100"), _cell("b", 50.0, level="c=100", n_ok=0),
             _cell("a", math.nan), _cell("b", 7.0)]  # fmt: skip
    assert rank(cells) == [Ranked("c=100", ("a",)), Ranked("c=10", ("b",))]


def test_a_cache_flagged_label_is_excluded_at_that_level_only() -> None:
    cells = [
        _cell("cached", 500.0, cache_flag=True), _cell("honest", 100.0),
        _cell("other", 90.0, cache_flag="False"),
        _cell("cached", 400.0, level="c=100", cache_flag=False),
        _cell("honest", 90.0, level="c=100"),
    ]  # fmt: skip
    assert rank(cells) == [
        Ranked("c=10", ("honest", "other"), ("cached",)),
        Ranked("c=100", ("cached", "honest")),
    ]


def test_a_level_where_every_label_caches_is_kept_to_say_so() -> None:
    assert rank([_cell("cached", 500.0, cache_flag="True")]) == [Ranked("c=10", (), ("cached",))]


def test_flags_as_summary_csv_holds_them() -> None:
    assert all(is_flagged(v) for v in (True, "True", "true", 1, 1.0, np.True_))
    assert not any(is_flagged(v) for v in (False, "False", 0, None, math.nan, "", np.False_))


def test_caching_counts_the_checked_cells_and_takes_the_flagged_ones_speedup() -> None:
    rows = [{"cache_flag": True, "cache_speedup": 3.0},
            {"cache_flag": "True", "cache_speedup": 2.0},
            {"cache_flag": False, "cache_speedup": 1.01}, {"cache_flag": None},
            {"cache_flag": math.nan}]  # fmt: skip
    found = caching(rows)
    assert (found.checked, found.flagged, found.speedup) == (3, 2, 2.5) and found.caches
    assert not caching(rows[2:]).caches
    assert found.words("c=10") == (
        "flagged as caching at c=10 (repeats 150 % faster), so its throughput is not compared"
    )
    assert Caching(1, 1, math.nan).words() == (
        "flagged as caching, so its throughput is not compared"
    )


def test_exclusion_lines_name_each_label_once_with_its_levels() -> None:
    cells = [_cell("cached", 500.0, cache_flag=True), _cell("honest", 100.0),
             _cell("cached", 500.0, level="c=100", cache_flag=True),
             _cell("honest", 100.0, level="c=100")]  # fmt: skip
    rows = [
        {"label": "cached", "concurrency": 10, "cache_flag": True, "cache_speedup": 3.0},
        {"label": "cached", "concurrency": 100, "cache_flag": True, "cache_speedup": 5.0},
        {"label": "honest", "concurrency": 10, "cache_flag": False, "cache_speedup": 1.0},
    ]
    assert exclusion_lines(rank(cells), rows) == [
        "cached is flagged as caching at c=10, c=100 (repeats 300 % faster), so its "
        "throughput is not compared."
    ]
    assert exclusion_lines(rank(cells[1::2]), rows) == []
