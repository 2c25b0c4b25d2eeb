"""The CI gate between two runs: fail only where a change is beyond its threshold and
significant; the A/A case fails at most at the method's error rate."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from embbench.config.assertions import Threshold, parse_thresholds
from embbench.report.gate import FAIL, INDETERMINATE, PASS
from embbench.report.regress import check_regressions, judge_change, repeats_to_detect
from embbench.results import verdicts
from embbench.results.folder import RunData
from embbench.results.record import Host, RunRecord

RPS = Threshold("rps", -5.0)
P99 = Threshold("p99_ms", +10.0)
REPEATS = 3  # what `make bench` runs, and what a CI baseline would
ALPHA = 1 - verdicts.CONFIDENCE  # 0.05: the two-sided level of the two-run test


def test_a_real_drop_beyond_the_threshold_fails() -> None:
    judged = judge_change(RPS, [100.0, 101.0, 99.5], [80.0, 81.0, 79.0])
    assert judged.verdict == FAIL and judged.value == pytest.approx(0.8, rel=0.01)
    assert "significant and beyond -5 %" in judged.detail


def test_a_significant_change_within_the_threshold_does_not_fail() -> None:
    judged = judge_change(RPS, [100.0, 100.5, 99.5], [97.0, 97.5, 96.5])  # -3 %, significant
    assert judged.verdict == PASS and judged.low > 0.95


def test_an_improvement_never_fails() -> None:
    assert judge_change(RPS, [100.0, 101.0, 99.0], [150.0, 151.0, 149.0]).verdict == PASS
    assert judge_change(P99, [50.0, 51.0, 49.0], [30.0, 31.0, 29.0]).verdict == PASS
    assert judge_change(P99, [50.0, 51.0, 49.0], [70.0, 71.0, 69.0]).verdict == FAIL


def test_noise_beyond_the_threshold_is_indeterminate_and_says_what_would_decide() -> None:
    base, new = [100.0, 115.0, 88.0], [90.0, 104.0, 80.0]  # -10 %, but a 13 % spread
    judged = judge_change(RPS, base, new)
    assert judged.verdict == INDETERMINATE
    needed = repeats_to_detect(RPS, base, new)
    assert needed is not None and needed > REPEATS
    assert f"cannot detect 5 % with these repeats (3 per run); would need about {needed}" in (
        judged.detail
    )
    # The same noise with that many repeats per run brings the interval to about ±5 %.
    sd = np.std(np.log([*base, *[v / 0.9 for v in new]]), ddof=2)
    half = verdicts.t_quantile(0.975, 2 * needed - 2) * sd * math.sqrt(2 / needed)
    assert math.expm1(half) < 0.08


def test_too_few_repeats_are_indeterminate() -> None:
    judged = judge_change(RPS, [100.0], [50.0])
    assert judged.verdict == INDETERMINATE and "too few repeats (n=1)" in judged.detail


def test_a_a_pairs_fail_at_most_at_the_methods_error_rate() -> None:
    """Many pairs of runs from one distribution, 3 repeats each, `rps:-5%`: the share that
    fails is the gate's false-failure rate. The rule fails only on a significant drop (one
    tail of a 95 % interval), so its rate is at most alpha / 2 = 2.5 %; it is asserted
    against alpha (5 %) plus Monte-Carlo slack, at noise levels from 1 % to 15 %."""
    rng = np.random.default_rng(20261203)
    pairs = 10_000
    slack = 3 * math.sqrt(ALPHA * (1 - ALPHA) / pairs)
    rates = {}
    for sigma in (0.01, 0.03, 0.05, 0.15):
        logs = rng.normal(math.log(100.0), sigma, size=(pairs, 2, REPEATS))
        values = np.exp(logs)
        fails = sum(
            judge_change(RPS, list(base), list(new)).verdict == FAIL for base, new in values
        )
        rates[sigma] = fails / pairs
    print(f"A/A false-failure rate of rps:-5% over {pairs} pairs x 3 repeats per noise level:",
          {f"cv {s:.0%}": f"{r:.2%}" for s, r in rates.items()})  # fmt: skip
    for sigma, rate in rates.items():
        assert rate <= ALPHA + slack, (sigma, rate)
    # And the worst case of the rule: with no threshold to clear (a 0.01 % one), a null
    # change is called significant in the worse direction in about alpha / 2 of the pairs.
    tiny = Threshold("rps", -0.01)
    values = np.exp(rng.normal(math.log(100.0), 0.05, size=(pairs, 2, REPEATS)))
    rate = sum(judge_change(tiny, list(a), list(b)).verdict == FAIL for a, b in values) / pairs
    print(f"A/A false-failure rate with a ~0 % threshold: {rate:.2%} (alpha/2 = {ALPHA / 2:.1%})")
    assert rate <= ALPHA / 2 + slack


def run_of(rows: list[tuple[str, int, int, float]], cpu: str = "Test CPU") -> RunData:
    frame = pd.DataFrame(
        [
            {"variant": label, "label": label, "concurrency": c, "repeat": r, "status": "ok",
             "rps": rps, "latency_p99_ms": 1000 * c / rps, "requests": 2000}
            for label, c, r, rps in rows
        ]
    )  # fmt: skip
    host = Host.from_json({"cpu_model": cpu, "cores": 2})
    return RunData(path=Path("r"), record=RunRecord(run_id="r", host=host), summary=frame)


def test_two_runs_pair_by_label_and_level() -> None:
    base = run_of(
        [(label, c, r, v) for label in ("a", "b") for c in (10, 100)
         for r, v in enumerate((100.0, 101.0, 99.0))]
    )  # fmt: skip
    new = run_of(
        [("a", c, r, v) for c in (10, 100) for r, v in enumerate((100.5, 100.0, 99.5))]
        + [("b", 10, r, v) for r, v in enumerate((70.0, 71.0, 69.0))]
        + [("c", 10, r, v) for r, v in enumerate((70.0, 71.0, 69.0))]
    )  # fmt: skip
    judged = check_regressions(base, new, parse_thresholds("rps:-5%,p99_ms:+10%"))
    found = {(j.check, j.label, j.level): j.verdict for j in judged}
    assert found[("rps:-5%", "a", "c=10")] == PASS
    assert found[("rps:-5%", "b", "c=10")] == FAIL
    assert found[("p99_ms:+10%", "b", "c=10")] == FAIL  # latency = 1000 c / rps rose 43 %
    assert found[("rps:-5%", "b", "c=100")] == INDETERMINATE  # not in the new run
    assert found[("rps:-5%", "c", "c=10")] == INDETERMINATE  # not in the base run
    assert [j.label for j in judged[:5]] == ["a", "a", "b", "b", "c"]
    assert all(j.kind == "regress" for j in judged)


def test_a_drop_between_two_cpus_is_not_called_a_regression() -> None:
    """A baseline from another machine (another CI runner): its spread says nothing of the
    difference between CPUs, so the same 30 % drop is indeterminate, with that reason."""
    rows = [("a", 10, r, v) for r, v in enumerate((100.0, 101.0, 99.0))]
    dropped = [("a", 10, r, v) for r, v in enumerate((70.0, 71.0, 69.0))]
    same = check_regressions(run_of(rows), run_of(dropped), [RPS])
    assert [j.verdict for j in same] == [FAIL]
    other = check_regressions(run_of(rows), run_of(dropped, cpu="Other CPU"), [RPS])
    assert [j.verdict for j in other] == [INDETERMINATE]
    assert "different CPUs (Test CPU / Other CPU)" in other[0].detail
    kept = check_regressions(run_of(rows), run_of(rows, cpu="Other CPU"), [RPS])
    assert [j.verdict for j in kept] == [PASS]  # a pass stays a pass: nothing was claimed
