"""Comparisons: each label against a baseline in one run, two runs side by side, winners.

Pure functions of DataFrames (stats.aggregate's), rendered by sections/ and compare_markdown.py.
Every verdict is a verdicts.Comparison: within a run, label A's repeat r pairs with label B's r
(they ran close together, in counterbalanced order) and the paired t-interval of the log ratio
decides; across two runs nothing pairs, so Welch's t on the logs does. "significant" only where
that interval excludes 1; otherwise "tie" within the noise it states, or "too few repeats".
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import pandas as pd

from embbench.report.stats import aggregate, level_order, ratio, records, resolve_label
from embbench.results import ranking, verdicts
from embbench.results.folder import RunData
from embbench.results.verdicts import Comparison

# (short name, column) of what baseline comparisons judge: throughput, then median latency.
JUDGED = (("rps", "rps"), ("p50", "latency_p50_ms"))


def compare_cells(
    a: Mapping[str, Any], b: Mapping[str, Any], column: str,
    confidence: float = verdicts.CONFIDENCE,
) -> Comparison:  # fmt: skip
    """b against a on `column`, pairing the ok repeats the two cells share. `confidence` is
    the run's verdict level (RunRecord.verdict_confidence: lower alpha for an auto run)."""
    by_a, by_b = _by_repeat(a, column), _by_repeat(b, column)
    shared = sorted(set(by_a) & set(by_b))
    return verdicts.compare_paired([by_a[r] for r in shared], [by_b[r] for r in shared], confidence)


def compare_to_baseline(
    agg: pd.DataFrame, baseline_label: str, confidence: float = verdicts.CONFIDENCE
) -> pd.DataFrame:
    """Per (label, concurrency), rps and p50 relative to the baseline at the same concurrency.

    `<x>_ratio` is the ratio (b over the baseline) of the medians, with the 95 % interval of
    the paired log ratio; `<x>_verdict` is "significant", "tie" or "too few repeats",
    `<x>_noise_pct` the smallest difference the interval could have shown, `<x>_text` the
    verdict in words.
    `significant` and `has_interval` are about throughput.
    """
    baseline = resolve_label(agg, baseline_label)
    base = {row["level"]: row for row in records(agg) if row["label"] == baseline}
    rows: list[dict[str, Any]] = []
    for row in records(agg):
        if row["label"] == baseline:
            continue
        ref = base.get(row["level"])
        out: dict[str, Any] = {
            "label": row["label"],
            "concurrency": row["concurrency"],
            "level": row["level"],
            "baseline": baseline,
        }
        for name, column in JUDGED:
            verdict = (
                compare_cells(ref, row, column, confidence)
                if ref is not None
                else verdicts.NO_PAIRS
            )
            # The point estimate is the ratio of the medians the tables show; the verdict's
            # interval is about the paired repeats.
            out[f"{name}_ratio"] = ratio(row[column], math.nan if ref is None else ref[column])
            out[f"{name}_ratio_ci_low"], out[f"{name}_ratio_ci_high"] = verdict.low, verdict.high
            out[f"{name}_verdict"] = verdict.word
            out[f"{name}_noise_pct"] = verdict.noise_pct
            out[f"{name}_text"] = verdict.describe()
            out[f"{name}_significant"] = verdict.significant
        out["significant"] = out["rps_significant"]
        out["has_interval"] = out["rps_verdict"] != verdicts.TOO_FEW
        rows.append(out)
    return pd.DataFrame(rows)


def winners(agg: pd.DataFrame, confidence: float = verdicts.CONFIDENCE) -> pd.DataFrame:
    """Per concurrency, the label with the highest median rps, and whether it truly won.

    Labels rank by results/ranking.py's rule; a label flagged as caching at a level does not
    rank there (`cache_exclusions` says so). `decided` is True only where the paired
    comparison with the runner-up is significant; otherwise the level is a tie within the
    noise (`verdict` says which words apply).
    """
    rows: list[dict[str, Any]] = []
    cells = {(row["label"], row["level"]): row for row in records(agg)}
    for found in sorted(ranking.rank(cells.values()), key=lambda f: level_order(f.level)):
        if not found.labels:  # every label that ran here caches: nothing to name
            continue
        ranked = [cells[(label, found.level)] for label in found.labels]
        best, second = ranked[0], (ranked[1] if len(ranked) > 1 else None)
        verdict = None if second is None else compare_cells(second, best, "rps", confidence)
        rows.append(
            {
                "concurrency": best["concurrency"],
                "level": found.level,
                "label": best["label"],
                "rps": best["rps"],
                "latency_p99_ms": best["latency_p99_ms"],
                "loadgen_saturated": bool(best["loadgen_saturated"]),
                "runner_up": None if second is None else second["label"],
                "runner_up_rps": math.nan if second is None else float(second["rps"]),
                "margin": math.nan if second is None else ratio(best["rps"], second["rps"]),
                # Alone at its level: nothing to beat, so nothing to decide.
                "decided": second is None or bool(verdict and verdict.significant),
                "verdict": "only label" if verdict is None else verdict.describe(),
            }
        )
    return pd.DataFrame(rows, columns=WINNER_COLUMNS)


def cache_exclusions(agg: pd.DataFrame, frame: pd.DataFrame) -> list[str]:
    """One plain line per label that `winners` left out of some level for caching
    (`agg` as winners reads it, `frame` the prepared summary it was aggregated from)."""
    return ranking.exclusion_lines(ranking.rank(records(agg)), records(frame))


WINNER_COLUMNS = [
    "concurrency", "level", "label", "rps", "latency_p99_ms", "loadgen_saturated", "runner_up",
    "runner_up_rps", "margin", "decided", "verdict",
]  # fmt: skip
COMPARE_COLUMNS = [
    "label", "concurrency", "level", "rps_a", "rps_b", "rps_ratio", "rps_ratio_ci_low",
    "rps_ratio_ci_high", "significant", "verdict", "p50_ratio", "p99_ratio", "cpu_ratio",
    "pss_ratio",
]  # fmt: skip


def compare_runs(a: RunData, b: RunData) -> pd.DataFrame:
    """Per (label, concurrency) present in either run: medians of a and b and the ratios b / a.

    The rps ratio is judged with Welch's t on the logs (the repeats of two runs do not pair).
    """
    agg_a, agg_b = aggregate(a.summary), aggregate(b.summary)
    merged = agg_a.merge(agg_b, on=["label", "level"], how="outer", suffixes=("_a", "_b"))
    rows: list[dict[str, Any]] = []
    for row in records(merged):
        verdict = verdicts.compare_unpaired(
            _values(row.get("rps_values_a")), _values(row.get("rps_values_b"))
        )
        rows.append(
            {
                "label": row["label"],
                "concurrency": _first_of(row, "concurrency"),
                "level": row["level"],
                "rps_a": row["rps_a"],
                "rps_b": row["rps_b"],
                "rps_ratio": ratio(row["rps_b"], row["rps_a"]),
                "rps_ratio_ci_low": verdict.low,
                "rps_ratio_ci_high": verdict.high,
                "significant": verdict.significant,
                "verdict": verdict.describe(),
                "p50_ratio": ratio(row["latency_p50_ms_b"], row["latency_p50_ms_a"]),
                "p99_ratio": ratio(row["latency_p99_ms_b"], row["latency_p99_ms_a"]),
                "cpu_ratio": ratio(row["cpu_pct_mean_b"], row["cpu_pct_mean_a"]),
                "pss_ratio": ratio(row["pss_mb_max_b"], row["pss_mb_max_a"]),
            }
        )
    order = {label: i for i, label in enumerate(dict.fromkeys([*agg_a["label"], *agg_b["label"]]))}
    rows.sort(key=lambda row: (order[row["label"]], level_order(row["level"])))
    return pd.DataFrame(rows, columns=COMPARE_COLUMNS)


def _by_repeat(row: Mapping[str, Any], column: str) -> dict[Any, float]:
    value = row.get(f"{column}_by_repeat")
    return dict(value) if isinstance(value, Mapping) else {}


def _values(value: Any) -> list[float]:
    return list(value) if isinstance(value, tuple | list) else []


def _first_of(row: Mapping[str, Any], column: str) -> Any:
    """`column` from whichever side of a merged row has it."""
    a = row.get(f"{column}_a")
    return a if a is not None and a == a else row.get(f"{column}_b")
