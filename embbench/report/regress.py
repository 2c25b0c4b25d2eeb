"""A CI gate between two runs: `embbench compare BASE NEW --fail-on-regress "rps:-5%"`.

Cells pair by label and level. The two runs' repeats do not pair (they ran at different
times), so the test is compare.py's two-run test, Welch's t on the logs
(verdicts.compare_unpaired), at 95 %. For a threshold such as rps:-5 % a cell is

- **fail** where the change is beyond the threshold (new / base below 0.95) *and* significant
  (the interval of the ratio excludes 1): the regression is real and larger than allowed;
- **pass** where the interval's worse end is within the threshold (a regression of 5 % or more
  is excluded at 95 %);
- **indeterminate** otherwise: a change the repeats cannot tell from noise, or a cell missing
  from one run. Where the repeats are too few to detect the threshold at all, it says so, with
  about how many repeats per run would (verdicts.repeats_needed, 80 % power, from the spread
  the two runs showed).

A run with no change fails by chance at most α/2 = 2.5 % per cell and threshold (the ratio
must be significant, and on the worse side); tests/unit/report/test_regress.py measures it
over simulated A/A pairs.

The test's noise is each run's repeat-to-repeat spread on one machine; it knows nothing of the
difference between two machines. A CI baseline kept from another job often ran on another
CPU (hosted runners differ from one job to the next), so where the two runs' CPU models or
core counts differ, a would-be failure is reported as indeterminate with that reason: the
change may be the machine's, not the code's.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import pandas as pd

from embbench.config.assertions import Threshold
from embbench.report import stats
from embbench.report.gate import FAIL, INDETERMINATE, PASS, Judgement
from embbench.results import verdicts
from embbench.results.folder import OK, RunData


def check_regressions(
    base: RunData, new: RunData, thresholds: Sequence[Threshold]
) -> list[Judgement]:
    """Each threshold on each (label, level) of either run, base's order first."""
    frame_a, frame_b = stats.prepare(base.summary), stats.prepare(new.summary)
    ok_a, ok_b = frame_a[frame_a["status"] == OK], frame_b[frame_b["status"] == OK]
    cells = list(dict.fromkeys([*_cells(frame_a), *_cells(frame_b)]))
    cells.sort(key=lambda cell: stats.level_order(cell[1]))
    order = {label: i for i, label in enumerate(dict.fromkeys(label for label, _ in cells))}
    cells.sort(key=lambda cell: order[cell[0]])
    machines = different_machines(base, new)
    found = []
    for threshold in thresholds:
        column = threshold.resolved
        for label, level in cells:
            a = _values(ok_a, label, level, column)
            b = _values(ok_b, label, level, column)
            missing = "base" if not _has(frame_a, label, level) else None
            missing = missing or ("new" if not _has(frame_b, label, level) else None)
            if missing:
                nan = math.nan
                found.append(
                    Judgement(
                        threshold.text, label, level, INDETERMINATE, nan, nan, nan,
                        f"no such cell in the {missing} run", kind="regress",
                    )
                )  # fmt: skip
                continue
            judged = judge_change(threshold, a, b, label, level)
            if machines and judged.verdict == FAIL:
                judged = dataclasses.replace(
                    judged, verdict=INDETERMINATE, detail=f"{judged.detail}; but {machines}"
                )
            found.append(judged)
    return found


def different_machines(base: RunData, new: RunData) -> str | None:
    """Why two runs' numbers are not from one machine (CPU model, cores), or None."""
    a, b = base.record.host, new.record.host
    if a.cpu_model != b.cpu_model:
        return (
            f"the runs are from different CPUs ({a.cpu_model or 'unknown'} / "
            f"{b.cpu_model or 'unknown'}): the change may be the machine's"
        )
    if a.cores != b.cores:
        return f"the runs had different cores ({a.cores} / {b.cores}): the change may be that"
    return None


def judge_change(
    threshold: Threshold,
    base: Sequence[float],
    new: Sequence[float],
    label: str = "",
    level: str = "",
) -> Judgement:
    """One threshold on one cell: base's repeats against new's (see the module docstring)."""
    found = verdicts.compare_unpaired(base, new)
    limit = threshold.limit
    worse_up = threshold.pct > 0  # a rise is worse (latency); else a drop is (throughput)

    def beyond(ratio: float) -> bool:
        return ratio > limit if worse_up else ratio < limit

    worse_end = found.high if worse_up else found.low
    change = f"{_pct(found.ratio)} ({_pct(found.low)} to {_pct(found.high)})"
    if found.word == verdicts.TOO_FEW:
        verdict, why = INDETERMINATE, f"too few repeats (n={found.n}) for an interval"
    elif found.significant and beyond(found.ratio):
        verdict, why = FAIL, f"{change}: significant and beyond {threshold.pct:+g} %"
    elif not beyond(worse_end):
        verdict, why = PASS, f"{change}: a change beyond {threshold.pct:+g} % is excluded"
    elif found.significant:
        verdict = INDETERMINATE
        why = f"{change}: significant, within {threshold.pct:+g} % but not excluding it"
    else:
        verdict, why = INDETERMINATE, f"{change}: not significant, and not excluding it"
    # Undecided: say whether the repeats could have decided it at all (a pass or a fail did).
    needed = repeats_to_detect(threshold, base, new) if verdict == INDETERMINATE else None
    if needed is not None and needed > found.n:
        why += (
            f"; cannot detect {abs(threshold.pct):g} % with these repeats ({found.n} per run);"
            f" would need about {needed}"
        )
    return Judgement(
        threshold.text, label, level, verdict, found.ratio, found.low, found.high, why,
        kind="regress",
    )  # fmt: skip


def repeats_to_detect(
    threshold: Threshold, base: Sequence[float], new: Sequence[float]
) -> int | None:
    """Repeats per run that would detect a change of the threshold's size with 80 % power,
    from the spread the two runs showed (their pooled sd of logs); None without a spread."""
    logs = [
        [math.log(v) for v in side if math.isfinite(v) and v > 0] for side in (base, new)
    ]  # fmt: skip
    if any(len(side) < 2 for side in logs):
        return None
    squares = math.fsum(
        (v - math.fsum(side) / len(side)) ** 2 for side in logs for v in side
    )  # fmt: skip
    sd = math.sqrt(squares / (len(logs[0]) + len(logs[1]) - 2))
    effect = math.expm1(abs(math.log(threshold.limit)))
    # verdicts.repeats_needed takes a cv and uses log(1 + cv) as the sd of the logs.
    return verdicts.repeats_needed(math.expm1(sd), effect)


def _cells(frame: pd.DataFrame) -> list[tuple[str, str]]:
    return [
        (str(label), str(level))
        for label, level in zip(frame["label"], frame["level"], strict=True)
    ]


def _has(frame: pd.DataFrame, label: str, level: str) -> bool:
    rows = frame[(frame["label"] == label) & (frame["level"] == level)]
    return bool(len(rows))


def _values(frame: pd.DataFrame, label: str, level: str, column: str) -> list[float]:
    rows = frame[(frame["label"] == label) & (frame["level"] == level)]
    return [float(v) for v in rows[column] if math.isfinite(float(v))]


def _pct(ratio: float) -> str:
    return "n/a" if math.isnan(ratio) else f"{(ratio - 1) * 100:+.1f} %"
