"""The Winners table's words: a level without a winner is a tie only where the repeats give an
interval; with one repeat there is none, and the table says undecided (a smoke run's case)."""

from __future__ import annotations

import pandas as pd

from embbench.report.sections import winners as winners_section
from embbench.report.sections.base import ReportOptions
from embbench.report.view import RunView
from tests.unit.report.test_document import RUN_JSON, row


def _lines(repeats: int, spread: float) -> str:
    frame = pd.DataFrame(
        [row(variant=label, repeat=r, rps=rps * (1 + sign * spread * (-1) ** r))
         for r in range(repeats) for label, rps, sign in (("a", 100.0, 1), ("b", 98.0, -1))]
    )  # fmt: skip
    return "\n".join(winners_section.body(RunView.of(frame, RUN_JSON), ReportOptions()))


def test_one_repeat_is_undecided_not_a_tie() -> None:
    text = _lines(repeats=1, spread=0.0)
    assert "none: undecided (a leads)" in text and "too few repeats (n=1)" in text
    assert "tie within noise" not in text.split("\n\n", 1)[1]  # the note may name ties


def test_noisy_repeats_are_a_tie_within_the_noise() -> None:
    text = _lines(repeats=3, spread=0.2)
    assert "none: tie within noise (a leads)" in text
