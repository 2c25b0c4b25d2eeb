"""A level's label, built and read in one place for the loops and the report alike."""

from __future__ import annotations

import math

from embbench.results import levels


def test_a_row_with_an_offered_rate_is_an_open_level() -> None:
    assert levels.label(1000, 40.0) == "40 rps"
    assert levels.label(10, None) == "c=10"
    assert levels.label(10.0, math.nan) == "c=10"  # runs from before the open loop
    assert levels.label_of({"concurrency": 4, "offered_rps": 2.5}) == "2.5 rps"


def test_labels_parse_back_and_sort_closed_first() -> None:
    assert levels.parse("c=10") == (levels.CLOSED, 10.0)
    assert levels.parse("40 rps") == (levels.OPEN, 40.0)
    ordered = sorted(["80 rps", "c=100", "20 rps", "c=10"], key=levels.order)
    assert ordered == ["c=10", "c=100", "20 rps", "80 rps"]


def test_a_tables_level_column_is_users_alone_for_a_closed_loop() -> None:
    assert levels.short("c=10") == "10" and levels.short("40 rps") == "40 rps"
