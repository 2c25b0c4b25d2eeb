"""`--repeats auto` for real (issue 30, part 5): two variants at one level, as short as a cell
can be. The first look is at three pairs, so two repeats never decide and exactly one round
is added (the cap is 3); run.json records the design, the round and the level."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from embbench.report.document import render_markdown
from embbench.results.folder import load_run
from embbench.run.session import run_benchmark
from tests.integration.test_run import short_config

pytestmark = pytest.mark.integration


def test_auto_repeats_add_a_round_for_the_undecided_winner(tmp_path: Path) -> None:
    config = short_config(
        tmp_path, "shared-rwlock", "shared-mutex", concurrency=(2,), duration=2.0,
        warmup=0.5, repeats="auto", max_repeats=3, quality_corpus=0,
    )  # fmt: skip
    outcome = run_benchmark(config)
    assert outcome.failed == 0 and not outcome.interrupted
    summary = pd.read_csv(outcome.run_dir / "summary.csv")
    assert sorted(summary["repeat"]) == [0, 0, 1, 1, 2, 2]
    # Counterbalanced: repeat 2 runs the variants in repeat 0's order (alternate, even repeat).
    by_repeat = summary.groupby("repeat")["variant"].apply(list)
    assert by_repeat[2] == by_repeat[0] != by_repeat[1]
    meta = json.loads((outcome.run_dir / "run.json").read_text())
    design = meta["sequential"]
    assert design["looks"] == [3] and design["confidence"] == pytest.approx(0.95)
    assert [r["repeat"] for r in design["rounds"]] == [2] and design["rounds"][0]["cells"] == 2
    assert meta["config"]["repeats"] == "auto" and len(meta["order"]) == 6
    assert "Repeats were adaptive" in render_markdown(load_run(outcome.run_dir))
