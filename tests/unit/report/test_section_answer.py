"""The Answer section: first in the report; a capacity run's capacities in words, per core
count; a closed-loop run's winners with what such a run cannot tell."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from embbench.report.compare import WINNER_COLUMNS
from embbench.report.document import render_markdown
from embbench.report.plan import capacity_words
from embbench.report.sections import SECTIONS, answer
from embbench.report.sections.base import ReportOptions
from embbench.report.view import RunView
from embbench.results.folder import load_run
from tests.unit.report.test_plan import FIXTURE, make_cores_run, make_run


def test_answer_is_first() -> None:
    assert SECTIONS[0] is answer.SECTION


def test_capacity_in_words() -> None:
    assert capacity_words("found", 17.8, 18.6) == "sustains 17.8 rps; fails at 18.6"
    noise = "p99 at 18.6 rps stayed within noise of the SLO (45-55 ms) over 2 runs"
    assert capacity_words("indeterminate", 17.8, 18.6, noise) == (
        "sustains 17.8 rps; 18.6 too close to call"
    )
    assert "a floor" in capacity_words("indeterminate", 17.8, None, "probe budget spent")
    assert capacity_words("none", None, None) == "meets the target at no rate tried"
    # Indeterminate with no rate shown to pass is not "no rate met it" (run 20261204-033118).
    low = "p99 at 1.0 rps stayed within noise of the SLO (28-inf ms) over 2 runs"
    assert capacity_words("indeterminate", None, None, low) == f"not decided: {low}"


def test_a_capacity_run_opens_with_its_capacities(tmp_path: Path) -> None:
    text = render_markdown(RunView(load_run(make_run(tmp_path))))
    first = text.split("\n## ")[1]
    assert first.startswith("Answer\n")
    assert "| fast | 2 | sustains 100.0 rps; fails at 104.0 | 50.0 |" in first
    assert "| cosine min 0.9999 |" in first  # quality beside speed, named
    assert "Most per core: int8" in first and "embbench plan 20261201-000000" in first
    assert "sustains 150.0 rps; 300.0 not decided" in text.split("## Capacity")[1]


def test_a_closed_loop_run_names_winners_and_what_it_cannot_tell() -> None:
    lines = answer.body(RunView(load_run(FIXTURE)), ReportOptions()) or []
    assert any(line.startswith("- ") for line in lines)
    assert "cannot tell" in lines[-1] and "embbench capacity" in lines[-1]


def test_a_per_core_run_answers_with_its_scaling(tmp_path: Path) -> None:
    text = render_markdown(RunView(load_run(make_cores_run(tmp_path))))
    answer_text = text.split("\n## ")[1]
    assert "| mutex (1 core) | 1 | sustains 20.0 rps; fails at 21.0 | 20.0 |" in answer_text
    assert "mutex: 2 cores sustain 1.80x what 1 core does: 90% scaling efficiency" in answer_text
    assert "nothing is extrapolated" in answer_text


def test_an_undecided_level_is_called_a_tie_only_where_an_interval_says_so() -> None:
    class Fixed(RunView):
        @property
        def winners(self) -> pd.DataFrame:  # type: ignore[override]
            base = {"concurrency": 10, "rps": 30.0, "latency_p99_ms": 90.0, "label": "a",
                    "loadgen_saturated": False, "runner_up": "b", "runner_up_rps": 29.0,
                    "margin": 1.03, "decided": False}  # fmt: skip
            return pd.DataFrame(
                [
                    base | {"level": "10", "verdict": "too few repeats (n=1)"},
                    base | {"level": "100", "verdict": "tie within noise (±4 %)"},
                ],
                columns=WINNER_COLUMNS,
            )

    lines = answer.body(Fixed(load_run(FIXTURE)), ReportOptions()) or []
    [few] = [line for line in lines if line.startswith("- 10 users")]
    [tie] = [line for line in lines if line.startswith("- 100 users")]
    assert "undecided" in few and "tie" not in few.split("(")[0]
    assert "a tie within the noise" in tie
