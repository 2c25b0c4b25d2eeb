"""The plan asks the loops for a run's levels: cells named and labelled by their loop."""

from __future__ import annotations

from typing import Any

from embbench.config.run import RunConfig, VariantRun
from embbench.load.loops.closed import ClosedLoop
from embbench.load.loops.open import OpenLoop
from embbench.run.plan import plan


def config(**kw: Any) -> RunConfig:
    return RunConfig(variants=(VariantRun("batched"), VariantRun("mutex")), **kw)


def test_a_closed_run_has_a_cell_per_variant_and_concurrency() -> None:
    # A variant's levels together, on one server (run/served.py), in the same order for all.
    cells = plan(config(concurrency=(1, 10)))
    assert [c.loop for c in cells] == [ClosedLoop(1), ClosedLoop(10)] * 2
    assert [c.level for c in cells] == ["c=1", "c=10", "c=1", "c=10"]
    assert [c.run.name for c in cells] == ["batched", "batched", "mutex", "mutex"]
    assert cells[2].name == "002-mutex-c1-r0"
    # A fresh server per cell: level by level, the variants inside each.
    cells = plan(config(concurrency=(1, 10), reuse_server=False))
    assert [c.loop for c in cells] == [ClosedLoop(1)] * 2 + [ClosedLoop(10)] * 2
    assert cells[2].name == "002-batched-c10-r0"


def test_an_open_run_has_a_cell_per_variant_and_rate_capped_alike() -> None:
    cells = plan(config(rates=(20.0, 40.0), max_inflight=64, repeats=2))
    assert len(cells) == 8 and all(isinstance(c.loop, OpenLoop) for c in cells)
    assert {c.loop.concurrency for c in cells} == {64}
    assert [c.level for c in cells[:4]] == ["20 rps", "40 rps", "20 rps", "40 rps"]
    # Odd repeats reverse the variants' order (ABBA); the levels keep theirs.
    assert [c.name for c in cells[4:6]] == ["004-mutex-20rps-r1", "005-mutex-40rps-r1"]
    assert cells[6].name == "006-batched-20rps-r1"
