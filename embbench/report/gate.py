"""A CI gate on one run: each assertion judged against the run's intervals (issue 30).

A run's number is an estimate: its repeats spread, and the report puts a 95 % interval on it
(stats.mean_interval: Student t on the logs, as every interval of the report). An assertion
such as `p99_ms<=50` is judged against that interval, per label and level:

- **pass**: the whole interval satisfies the bound;
- **fail**: the whole interval lies beyond it;
- **indeterminate**: the interval straddles the bound, or there is none (fewer than two ok
  repeats, no ok cell at all): the run cannot tell, and says so instead of guessing.

So a run whose true value sits exactly on the bound fails at most 2.5 % of the time (one tail
of a 95 % interval), and a noisy run is indeterminate rather than red or green by luck.
Columns that are not estimates are judged exactly: a minimum over repeats (`cosine_min`), a
count summed over them (`failures`), a setting (`workers`). An `embbench capacity` run's
assertions are about capacity.csv: `qps_at_slo` is the highest rate shown to pass, so while
the search is undecided it is only a lower bound (the interval [qps_at_slo, inf)).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from embbench.config.assertions import ALIASES, Assertion, Threshold
from embbench.errors import ConfigError
from embbench.report import stats
from embbench.report.view import RunView
from embbench.results import columns, verdicts
from embbench.results.folder import CAPACITY_COLUMNS, OK

PASS, FAIL, INDETERMINATE = "pass", "fail", "indeterminate"
RUN, CAPACITY = "run", "capacity"  # which table a command's assertions are about
EXACT_AGGREGATIONS = (columns.MIN, columns.SUM, columns.FIRST)
CAPACITY_NUMBERS = tuple(
    c for c in CAPACITY_COLUMNS if c not in ("variant", "label", "status", "reason")
)


@dataclass(frozen=True)
class Judgement:
    """One check of one cell: an assertion on a (label, level), or a regression threshold on a
    cell of two runs. `value` is the point the tables show (a median, a ratio new / base),
    `low`-`high` the interval judged (equal for an exact value, nan for none)."""

    check: str  # the assertion or threshold as text
    label: str
    level: str
    verdict: str  # PASS, FAIL or INDETERMINATE
    value: float
    low: float
    high: float
    detail: str  # why, in one sentence
    kind: str = "assert"  # "assert" or "regress"

    @property
    def subject(self) -> str:
        return f"{self.label} {self.level}".strip()


def check_columns(checks: Iterable[Assertion | Threshold], table: str = RUN) -> None:
    """ConfigError for a check whose column is not a number of `table` (summary.csv for RUN,
    capacity.csv for CAPACITY): before a run starts, one line and exit 2."""
    for check in checks:
        name = check.resolved
        if table == CAPACITY:
            known: Sequence[str] = CAPACITY_NUMBERS
            ok = name in CAPACITY_NUMBERS
        else:
            known = [c.name for c in columns.where(numeric=True)]
            ok = name in columns.BY_NAME and columns.BY_NAME[name].numeric
        if not ok:
            what = "capacity.csv" if table == CAPACITY else "summary.csv"
            aliases = ", ".join(a for a, c in ALIASES.items() if c in known)
            raise ConfigError(
                f"{check.text!r}: {check.column!r} is not a numeric {what} column "
                f"(short names: {aliases})"
            )


def check_labels(assertions: Iterable[Assertion], labels: Iterable[str]) -> None:
    """ConfigError for an assertion naming a label (or variant) the run does not have."""
    known = list(labels)
    for each in assertions:
        if each.label is not None and each.label not in known:
            raise ConfigError(
                f"assertion {each.text!r}: no label {each.label!r} in this run "
                f"(labels and variants: {', '.join(dict.fromkeys(known))})"
            )


def judge_all(view: RunView, assertions: Sequence[Assertion]) -> list[Judgement]:
    """Every assertion against a run: capacity.csv's rows for a capacity run, else every
    (label, level) of summary.csv."""
    if view.capacity is not None:
        return judge_capacity(view.capacity, assertions)
    return judge_run(view, assertions)


def judge_run(view: RunView, assertions: Sequence[Assertion]) -> list[Judgement]:
    """Each assertion on each (label, level) it covers, in the report's order."""
    found: list[Judgement] = []
    frame = view.frame
    ok = frame[frame["status"] == OK]
    for each in assertions:
        cells = _cells_of(view.agg, each)
        if not cells:
            found.append(_nothing(each, "no cell of this run has that label"))
        for label, level in cells:
            rows = ok[(ok["label"] == label) & (ok["level"] == level)]
            within = _within_cells(each, label, level, rows)
            found.append(within or judge_values(each, label, level, rows[each.resolved]))
    return found


def judge_values(
    assertion: Assertion, label: str, level: str, values: Iterable[float]
) -> Judgement:
    """One assertion on one cell's ok repeats (NaN left out)."""
    data = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    column = columns.BY_NAME.get(assertion.resolved)
    if not data:
        return _judged(assertion, label, level, math.nan, math.nan, math.nan, "no ok repeat")
    if column is not None and column.agg in EXACT_AGGREGATIONS:
        exact: dict[str, Callable[[Sequence[float]], float]] = {
            columns.MIN: min,
            columns.SUM: math.fsum,
            columns.FIRST: _first,
        }
        value = exact[column.agg](data)
        return _judged(assertion, label, level, value, value, value, "exact")
    point = float(np.median(data))
    if len(data) > 1 and min(data) == max(data):  # no spread: exp(log(x)) need not be x
        return _judged(assertion, label, level, point, point, point, "no spread over repeats")
    if len(data) < 2:
        return _judged(
            assertion, label, level, point, math.nan, math.nan,
            "one ok repeat: no interval (run --repeats 2 or more)",
        )  # fmt: skip
    low, high = interval(data)
    return _judged(assertion, label, level, point, low, high, f"{len(data)} repeats")


def _within_cells(
    assertion: Assertion, label: str, level: str, rows: pd.DataFrame
) -> Judgement | None:
    """A column measured with its own interval inside each cell (recall_at_10 and the other
    retrieval figures: `<col>_low`/`<col>_high` over the cell's queries) is judged on those,
    the widest over the repeats, not on the spread of repeats: one repeat has an interval."""
    name = assertion.resolved
    low_name, high_name = f"{name}_low", f"{name}_high"
    if low_name not in columns.BY_NAME or high_name not in columns.BY_NAME:
        return None
    lows = pd.to_numeric(rows[low_name], errors="coerce").dropna()
    highs = pd.to_numeric(rows[high_name], errors="coerce").dropna()
    values = pd.to_numeric(rows[name], errors="coerce").dropna()
    if values.empty or lows.empty or highs.empty:
        return None
    point = float(np.median(values))
    note = f"interval over the queries of {len(values)} cell(s)"
    return _judged(assertion, label, level, point, float(lows.min()), float(highs.max()), note)


def interval(values: Sequence[float]) -> tuple[float, float]:
    """The report's 95 % interval (stats.mean_interval) where every value is positive; the
    arithmetic Student t interval of the mean otherwise (a count that can be 0)."""
    if all(v > 0 for v in values):
        found = stats.mean_interval(values)
        if found is not None:
            return found
    mean = math.fsum(values) / len(values)
    sd = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (len(values) - 1))
    half = verdicts.t_quantile(0.5 + stats.CONFIDENCE / 2, len(values) - 1) * sd
    half /= math.sqrt(len(values))
    return mean - half, mean + half


def judge_capacity(table: pd.DataFrame, assertions: Sequence[Assertion]) -> list[Judgement]:
    """Each assertion on each capacity.csv row (a variant's capacity at the SLO)."""
    found: list[Judgement] = []
    for each in assertions:
        rows = [
            r
            for r in stats.records(table)
            if each.label is None or each.label in (str(r.get("label")), str(r.get("variant")))
        ]
        if not rows:
            found.append(_nothing(each, "no variant of this capacity run has that label"))
        for row in rows:
            found.append(_capacity_row(each, row))
    return found


def _capacity_row(assertion: Assertion, row: dict[str, object]) -> Judgement:
    label = str(row.get("label") or row.get("variant"))
    level = f"p99 <= {_float(row.get('slo_p99_ms')):g} ms"
    status = str(row.get("status"))
    value = _float(row.get(assertion.resolved))
    if assertion.resolved == "qps_at_slo" and status == "none":
        # It fails even at the lowest rate probed: its capacity is about nothing.
        return _judged(assertion, label, level, 0.0, 0.0, 0.0, "fails even at the lowest rate")
    if assertion.resolved == "qps_at_slo" and status == "below_quality_floor":
        # Its answers fall below --quality-floor: no capacity is reported for it.
        return _judged(assertion, label, level, 0.0, 0.0, 0.0, "below the quality floor")
    if math.isnan(value):
        return _judged(assertion, label, level, value, value, value, f"no value ({status})")
    if assertion.resolved == "qps_at_slo" and status != "found":
        return _judged(
            assertion, label, level, value, value, math.inf,
            f"search {status}: {value:g} rps passes, the boundary above it is unknown",
        )  # fmt: skip
    return _judged(assertion, label, level, value, value, value, f"capacity search {status}")


def _judged(
    assertion: Assertion, label: str, level: str, value: float, low: float, high: float,
    note: str,
) -> Judgement:  # fmt: skip
    if math.isnan(low) or math.isnan(high):
        verdict, why = INDETERMINATE, note
    elif assertion.holds(low) and assertion.holds(high):
        verdict, why = PASS, f"{_span(low, high)} within {assertion.op} {assertion.bound:g}; {note}"
    elif not assertion.holds(low) and not assertion.holds(high):
        verdict, why = FAIL, f"{_span(low, high)} beyond {assertion.op} {assertion.bound:g}; {note}"
    else:
        verdict = INDETERMINATE
        why = f"{_span(low, high)} straddles {assertion.bound:g}; {note}"
    return Judgement(assertion.text, label, level, verdict, value, low, high, why)


def _nothing(assertion: Assertion, why: str) -> Judgement:
    nan = math.nan
    return Judgement(assertion.text, assertion.label or "", "", INDETERMINATE, nan, nan, nan, why)


def _cells_of(agg: pd.DataFrame, assertion: Assertion) -> list[tuple[str, str]]:
    """(label, level) of every aggregate row the assertion covers; its label may be a label
    or a variant's name."""
    rows = stats.records(agg)
    if assertion.label is not None:
        rows = [r for r in rows if assertion.label in (str(r["label"]), str(r["variant"]))]
    return [(str(r["label"]), str(r["level"])) for r in rows]


def _span(low: float, high: float) -> str:
    if low == high:
        return number(low)
    return f"{number(low)}–{number(high)}" if math.isfinite(high) else f"at least {number(low)}"


def number(value: float) -> str:
    """Four significant digits, without an exponent below 10⁶: 12550, 31.5, 0.9996."""
    return f"{value:.0f}" if 1e4 <= abs(value) < 1e6 else f"{value:.4g}"


def _float(value: object) -> float:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan


def _first(values: Sequence[float]) -> float:
    return values[0]


def outcome(judgements: Iterable[Judgement]) -> str:
    """The gate's word for a set of judgements: FAIL if any failed, else INDETERMINATE if any
    is, else PASS (also for none)."""
    verdicts_found = {j.verdict for j in judgements}
    for word in (FAIL, INDETERMINATE):
        if word in verdicts_found:
            return word
    return PASS
