"""`--repeats auto` (issue 30, part 5): the sequential procedure on simulated runs.

Each simulated run is two labels at one level, played as session.py plays an auto run: two
repeats of both, then rounds chosen by `adaptive.pending` until it finds nothing undecided or
the cap; the verdict is then the report's (the paired comparison over every shared repeat, at
the recorded level). Seeded, so deterministic. With 4000 runs the standard error of a 5 % rate
is 0.34 points: "at most 5 %" is asserted as <= 0.06 (three standard errors).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from embbench.config.run import RunConfig, VariantRun
from embbench.results.folder import OK, RunFolder
from embbench.results.record import RunRecord
from embbench.results.sequential import Sequential
from embbench.results.verdicts import SIGNIFICANT, compare_paired
from embbench.run.adaptive import next_round, pending
from embbench.run.plan import Cell, plan
from embbench.run.progress import ProgressListener
from embbench.run.session import RunOutcome, RunSession, repeat_until_decided

SEED = 20261204
RUNS = 4000
MAX_FALSE_POSITIVES = 0.06
NOISE_CV = 0.09  # one label's repeat-to-repeat noise, as tests/unit/report/test_verdicts.py
DESIGN = Sequential()


def _log_sd(cv: float) -> float:
    return math.sqrt(math.log1p(cv * cv))


def _row(label: str, repeat: int, rps: float, level: int = 100) -> dict[str, Any]:
    return {
        "label": label, "concurrency": level, "offered_rps": math.nan, "repeat": repeat,
        "status": OK, "rps": rps, "latency_p99_ms": 1000.0 / rps,
    }  # fmt: skip


def _draws(shift: float, noise: float, runs: int, repeats: int) -> tuple[Any, Any]:
    """rps of two labels over `repeats`, b scaled by `shift`; a drift shared within a repeat."""
    rng = np.random.default_rng(SEED)
    a = 100.0 * np.exp(rng.normal(0.0, _log_sd(noise), (runs, repeats)))
    b = 100.0 * shift * np.exp(rng.normal(0.0, _log_sd(noise), (runs, repeats)))
    drift = np.exp(rng.normal(0.0, _log_sd(noise), (runs, repeats)))
    return a * drift, b * drift


def _simulate(shift: float, noise: float, runs: int = RUNS) -> list[tuple[bool, int, bool]]:
    """Per run: (significant in the end, repeats the pair got, decided before the cap)."""
    cap = DESIGN.max_repeats
    a, b = _draws(shift, noise, runs, cap)
    found = []
    for x, y in zip(a, b, strict=True):
        rows = [_row(label, r, v[r]) for r in range(2) for label, v in (("a", x), ("b", y))]
        repeats, early = 2, False
        while repeats < cap:
            if not pending(rows, DESIGN):
                early = True
                break
            rows += [_row("a", repeats, x[repeats]), _row("b", repeats, y[repeats])]
            repeats += 1
        else:
            early = not pending(rows, DESIGN)
        final = DESIGN.compare(x[:repeats].tolist(), y[:repeats].tolist())
        found.append((final.word == SIGNIFICANT, repeats, early and repeats < cap))
    return found


def test_aa_pairs_are_called_different_at_most_at_alpha() -> None:
    runs = _simulate(1.0, NOISE_CV)
    rate = sum(s for s, _, _ in runs) / len(runs)
    mean_repeats = sum(n for _, n, _ in runs) / len(runs)
    # Today's fixed run: three repeats at 95 %.
    a, b = _draws(1.0, NOISE_CV, RUNS, 3)
    today = sum(compare_paired(x, y).word == SIGNIFICANT for x, y in zip(a, b, strict=True))
    print(
        f"A/A: auto {rate:.4f} ({mean_repeats:.2f} repeats on average), "
        f"fixed 3 repeats {today / RUNS:.4f}; nominal {DESIGN.alpha:.2f}"
    )
    assert rate <= MAX_FALSE_POSITIVES, f"A/A false-positive rate {rate:.4f}"
    assert rate <= DESIGN.alpha + 3 * math.sqrt(DESIGN.alpha * (1 - DESIGN.alpha) / RUNS)


def test_a_real_20_pct_difference_is_found_mostly_before_the_cap() -> None:
    # A calmer pair than the A/A one (5 % noise per label, 7 % on a paired log ratio): the
    # low end of this machine's 2-12 %, where a 20 % difference is the question.
    runs = _simulate(1.2, 0.05, runs=2000)
    power = sum(s for s, _, _ in runs) / len(runs)
    early = sum(s and e for s, _, e in runs) / len(runs)
    mean_repeats = sum(n for _, n, _ in runs) / len(runs)
    fixed = sum(
        compare_paired(x, y).word == SIGNIFICANT
        for x, y in zip(*_draws(1.2, 0.05, 2000, 3), strict=True)
    ) / len(runs)
    print(
        f"20 %: found {power:.3f}, before the cap {early:.3f}, {mean_repeats:.2f} repeats; "
        f"fixed 3 repeats at 95 % {fixed:.3f}"
    )
    assert power >= 0.85
    assert power > fixed
    assert early >= 0.5
    assert mean_repeats < DESIGN.max_repeats


def test_a_pair_far_apart_stops_at_the_first_look() -> None:
    rows = [_row(lab, r, v) for r in range(2) for lab, v in (("a", 100.0), ("b", 300.0))]
    assert pending(rows, DESIGN)  # two pairs are never enough: the first look is at three
    rows += [_row("a", 2, 101.0), _row("b", 2, 297.0)]
    rows[0]["rps"] = 99.0
    assert pending(rows, DESIGN) == []


def test_pending_names_the_leader_and_runner_up_and_skips_lone_levels() -> None:
    rows = [
        *(_row("fast", r, v) for r, v in enumerate((200.0, 190.0))),
        *(_row("close", r, v) for r, v in enumerate((180.0, 195.0))),
        *(_row("slow", r, v) for r, v in enumerate((50.0, 52.0))),
        _row("alone", 0, 10.0, level=10),
        _row("alone", 1, 11.0, level=10),
    ]
    found = pending(rows, DESIGN)
    assert [(p.level, p.leader, p.runner_up) for p in found] == [("c=100", "fast", "close")]
    assert "c=100: fast vs close" in found[0].describe()


def test_failed_cells_do_not_rank() -> None:
    rows = [_row("a", r, 100.0 + r) for r in range(3)] + [_row("b", r, 90.0) for r in range(3)]
    rows[3]["status"] = "failed"
    found = pending(rows, DESIGN)
    assert found and found[0].comparison.n == 2  # b's failed repeat 0 has no pair


def test_a_cache_flagged_label_does_not_lead() -> None:
    rows = [
        *(_row("cached", r, v) for r, v in enumerate((500.0, 510.0))),
        *(_row("honest", r, v) for r, v in enumerate((100.0, 104.0))),
        *(_row("other", r, v) for r, v in enumerate((99.0, 102.0))),
    ]
    [found] = pending(rows, DESIGN)
    assert (found.leader, found.runner_up) == ("cached", "honest")
    rows[1]["cache_flag"] = True  # the only repeat that made the check: a majority of one
    [found] = pending(rows, DESIGN)
    assert (found.leader, found.runner_up) == ("honest", "other")


def test_a_failed_cells_cache_flag_counts_too() -> None:
    # The check follows the window: the flag holds whatever became of the window; then the
    # honest label is alone, with nothing to decide.
    rows = [_row("cached", r, 500.0 + r) for r in range(2)]
    rows += [_row("honest", r, 100.0 + r) for r in range(2)]
    assert pending(rows, DESIGN)
    rows.append(_row("cached", 2, 1.0) | {"status": "failed", "cache_flag": "True"})
    assert pending(rows, DESIGN) == []


def _config(**settings: Any) -> RunConfig:
    names = ("shared-rwlock", "shared-mutex", "batched")
    return RunConfig(
        variants=tuple(VariantRun(name=n) for n in names), concurrency=(10, 100), **settings
    )


def test_next_round_runs_only_the_undecided_cells_counterbalanced() -> None:
    config = _config(repeats="auto")
    planned = plan(config)
    assert len(planned) == 12 and {c.repeat for c in planned} == {0, 1}
    rows = [
        _row(cell.run.display, cell.repeat, rps, level=cell.loop.concurrency or 0)
        for cell, rps in zip(planned, [100.0, 101.0, 50.0, 99.0, 102.0, 50.0] * 2, strict=True)
    ]
    undecided = pending(rows, DESIGN)
    cells = next_round(planned, undecided, 2, config, start=len(planned))
    assert [c.index for c in cells] == list(range(12, 12 + len(cells)))
    assert {c.repeat for c in cells} == {2}
    chosen = {(c.level, c.run.display) for c in cells}
    expected = {(p.level, label) for p in undecided for label in (p.leader, p.runner_up)}
    assert chosen == expected and len(cells) == 2 * len(undecided)
    # Repeat 2 runs the variants in the plan's order for an even repeat (alternate: as given).
    names = [c.run.name for c in cells if c.level == cells[0].level]
    order = [v.name for v in config.variants]
    assert names == sorted(names, key=order.index)
    odd = next_round(planned, undecided, 3, config, start=0)
    odd_names = [c.run.name for c in odd if c.level == odd[0].level]
    assert odd_names == sorted(odd_names, key=order.index, reverse=True)


@pytest.mark.parametrize(
    ("given", "expected"), [(3, 3), ("3", 3), ("auto", "auto")], ids=["int", "digits", "auto"]
)
def test_repeats_take_a_count_or_auto(given: Any, expected: Any) -> None:
    config = _config(repeats=given)
    assert config.repeats == expected
    assert config.adaptive is (expected == "auto")
    assert config.planned_repeats == (2 if expected == "auto" else expected)


class _Played(RunSession):
    """A session whose cells are numbers, not servers: what the rounds' bookkeeping sees."""

    def __init__(self, config: RunConfig, folder: Path, rps: dict[str, list[float]]) -> None:
        self.config, self.progress = config, ProgressListener()
        self.folder = RunFolder(folder)
        self.outcome = RunOutcome(folder)
        self.record = RunRecord(run_id="auto", sequential=Sequential(max_repeats=4))
        self.rps = rps
        self.ran: list[Cell] = []

    def run_cell(self, cell: Cell, config: RunConfig | None = None) -> Any:
        self.ran.append(cell)
        rps = self.rps[cell.run.display][cell.repeat]
        level = cell.loop.concurrency or 0
        self.outcome.rows.append(_row(cell.run.display, cell.repeat, rps, level=level))


def test_rounds_stop_at_the_cap_and_are_recorded(tmp_path: Path) -> None:
    config = _config(repeats="auto", max_repeats=4)
    planned = plan(config)
    # shared-rwlock and shared-mutex as close as noise allows; batched far below: the
    # batched cells are never repeated, the two others until the cap.
    session = _Played(
        config, tmp_path,
        {"shared-rwlock": [100.0, 90.0, 110.0, 95.0], "shared-mutex": [95.0, 100.0, 92.0, 104.0],
         "batched": [10.0] * 4},
    )  # fmt: skip
    for cell in planned:
        session.run_cell(cell)
    repeat_until_decided(session, planned)
    extra = session.ran[len(planned) :]
    assert {c.repeat for c in extra} == {2, 3}
    assert {c.run.name for c in extra} == {"shared-rwlock", "shared-mutex"}
    assert len(extra) == 2 * 2 * 2  # two levels, two labels, two rounds
    design = RunRecord.load(tmp_path / "run.json").sequential
    assert design is not None and [r.repeat for r in design.rounds] == [2, 3]
    assert [r.cells for r in design.rounds] == [4, 4]
    assert len(design.undecided) == 2 and design.undecided[0].startswith("c=10: ")
    assert session.record.order[-1] == extra[-1].name
