"""The columns of summary.csv, each declared once: its type, unit, how it aggregates over the
repeats of a cell, and its heading in the report's and the console's tables.

summary.csv's header, the statistics (stats.py), the report's tables and the CLI's tables all
derive from `COLUMNS`, as pyperf's `Run`/`Benchmark` own their values and readers never spell
field names of their own. Adding a metric means one entry here plus the code that computes it.
The first block is DESIGN.md's contract (names and order); the rest may grow.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from embbench.results.phases import SUMMARY as PHASE_SUMMARY

# How a column aggregates over the ok repeats of one (label, concurrency):
# (MAJORITY: true where more than half of the label's cells, at any level, that recorded the
# flag carry it: a property of the label, not of one level.)
MEDIAN, MIN, SUM, FIRST, ANY, ANY_FALSE, MAJORITY, NONE = (
    "median", "min", "sum", "first", "any", "any_false", "majority", "none"
)  # fmt: skip
REPORT, CONSOLE = "report", "console"  # the tables a column appears in


@dataclass(frozen=True)
class Column:
    name: str
    kind: type = float
    unit: str = ""
    agg: str = NONE
    # A 95 % interval over repeats, and the per-repeat values kept for comparisons.
    interval: bool = False
    heading: str = ""  # in the report's and the console's tables
    digits: int = 1
    show: frozenset[str] = frozenset()
    # For ANY / ANY_FALSE flags: the name of the aggregated flag (e.g. little_law_off).
    agg_name: str = ""

    @property
    def numeric(self) -> bool:
        return self.kind in (int, float)


def _c(name: str, kind: type = float, **kw: Any) -> Column:
    show = kw.pop("show", ())
    return Column(name, kind, show=frozenset(show), **kw)


_BOTH = (REPORT, CONSOLE)

COLUMNS: tuple[Column, ...] = (
    # -- the contract (DESIGN.md) ---------------------------------------------------------
    _c("variant", str),
    _c("concurrency", int, agg=FIRST),
    _c("repeat", int),
    _c("payload", str),
    _c("padding", str),
    _c("truncation", bool),
    _c("workers", int, agg=FIRST),
    _c("threads", int, agg=FIRST),
    _c("backend", str, agg=FIRST),
    _c("status", str),
    _c("requests", int, agg=SUM),
    _c("failures", int, agg=SUM),
    _c("duration_s", float, unit="s"),
    _c("rps", unit="requests/s", agg=MEDIAN, interval=True, heading="rps", show=_BOTH),
    _c("latency_mean_ms", unit="ms", agg=MEDIAN),
    _c("latency_p50_ms", unit="ms", agg=MEDIAN, interval=True, heading="p50 ms", digits=0,
       show=_BOTH),
    _c("latency_p90_ms", unit="ms"),
    _c("latency_p95_ms", unit="ms", agg=MEDIAN, heading="p95 ms", digits=0, show=(REPORT,)),
    _c("latency_p99_ms", unit="ms", agg=MEDIAN, interval=True, heading="p99 ms", digits=0,
       show=_BOTH),
    _c("latency_max_ms", unit="ms"),
    _c("cpu_pct_mean", unit="%", agg=MEDIAN, heading="CPU %", digits=0, show=_BOTH),
    _c("cpu_pct_max", unit="%", agg=MEDIAN),
    _c("rss_mb_max", unit="MB", agg=MEDIAN, heading="RSS MB", digits=0, show=(REPORT,)),
    _c("pss_mb_max", unit="MB", agg=MEDIAN, heading="PSS MB", digits=0, show=_BOTH),
    _c("uss_mb_max", unit="MB", agg=MEDIAN),
    _c("loadgen_cpu_pct_mean", unit="%", agg=MEDIAN, heading="loadgen CPU %", digits=0,
       show=_BOTH),
    _c("cosine_min", agg=MIN, heading="cosine min", digits=4, show=_BOTH),
    # -- extras -------------------------------------------------------------------------------
    _c("label", str),
    _c("cell", str),
    _c("quantize", str, agg=FIRST),
    # What the engine compiled, as the server's /info "engine" says (OpenVINO: f32 or bf16, as
    # the compiled model reports it, not as asked); empty for engines that do not say.
    _c("engine_precision", str, agg=FIRST),
    _c("engine_threads", int, agg=FIRST),
    _c("max_seq_length", int),
    _c("protocol", str),
    _c("model", str),
    _c("url", str),
    # The cell whose server this cell measured (its logs are under that name): levels of one
    # variant and repeat share one server (run/served.py); empty for a server run elsewhere.
    _c("server_cell", str),
    _c("cores", int),
    _c("server_processes", int),
    _c("load_processes", int),
    _c("loadgen_cpu_pct_max", unit="%"),
    _c("loadgen_saturated", bool, agg=ANY),
    _c("oversubscribed", bool, agg=ANY),
    _c("little_ratio"),
    _c("little_law_ok", bool, agg=ANY_FALSE, agg_name="little_law_off"),
    _c("cosine_threshold"),
    _c("threshold_reason", str),  # why that threshold (a URL server: what its /info says)
    # Correctness under load (quality.py): `cosine_min` above is the lowest of the probe's and
    # of the answers checked in the window; `correct` is false when it is below the threshold
    # or any checked answer was mismatched (closer to another input's reference).
    _c("correct", bool, agg=ANY_FALSE, agg_name="incorrect"),
    _c("probe_cosine_min", agg=MIN),
    # Probe inputs a server told not to truncate refused (413: longer than its model takes).
    _c("probe_refused", int, agg=FIRST),
    _c("checked", int, agg=SUM),  # answers in the window compared with their reference
    _c("mismatched", int, agg=SUM),
    _c("cosine_p1", agg=MIN, heading="cosine p1", digits=4, show=(REPORT,)),
    _c("cosine_p50", agg=MEDIAN),
    # Retrieval agreement through the server (run/retrieval.py), each with the 95 % bootstrap
    # interval over the cell's queries (`_low`, `_high`; not over repeats: one cell has it).
    *(_c(f"{name}{part}", agg=MEDIAN, heading=heading if not part else "", digits=3,
         show=(REPORT,) if name == "recall_at_10" and not part else ())
      for name, heading in (("recall_at_10", "recall@10"), ("ndcg_at_10", "nDCG@10"),
                            ("spearman", "Spearman"), ("doc_recall_at_10", "doc recall@10"),
                            ("doc_recall_at_10_ref", "doc recall@10 ref"))
      for part in ("", "_low", "_high")),
    _c("quality_queries", int, agg=FIRST),  # queries behind the retrieval figures
    # After the window (run/after_window.py). Batch invariance (run/invariance.py): 1 - cosine
    # of an answer in a batch against the same text's answer alone, the largest and the median
    # over `batch_inputs` answers compared; `batch_largest`: the largest batch one rode in.
    _c("batch_deviation", digits=6),
    _c("batch_deviation_p50", digits=6),
    _c("batch_inputs", int),
    _c("batch_largest", int),
    # The cache-defeat check (run/cache_check.py): median latency of distinct inputs over
    # repeats of one, its 95 % interval over `cache_pairs` pairs; flagged as caching when the
    # lower bound exceeds 1.1 (its throughput is then not comparable with the others').
    _c("cache_speedup", digits=2),
    _c("cache_speedup_low", digits=2),
    _c("cache_speedup_high", digits=2),
    _c("cache_pairs", int),
    # Majority, not any: an honest server is flagged in under 2.5 % of cells, a cache in every
    # one, and a flagged label is left out of the ranking (results/ranking.py).
    _c("cache_flag", bool, agg=MAJORITY),
    _c("errors_connection", int),
    _c("errors_timeout", int),
    _c("errors_429", int),
    _c("errors_4xx", int),
    _c("errors_5xx", int),
    _c("errors_other", int),
    _c("failure_reason", str),
    _c("started_at", float, unit="s"),
    _c("window_start", float, unit="s"),
    _c("window_end", float, unit="s"),
    _c("fill_s", float, unit="s"),
    _c("steady_state", bool),
    _c("compute_threads", int),
    # -- the open loop (load_model "open": latency_* count from the scheduled send time) ----
    _c("load_model", str, agg=FIRST),
    _c("offered_rps", unit="requests/s", agg=FIRST, heading="offered rps", show=(REPORT,)),
    _c("dropped", int, agg=SUM),
    _c("arrivals", int, agg=SUM),
    _c("arrival_rps", unit="requests/s"),
    _c("error_rate", agg=MEDIAN),
    _c("late_max_ms", unit="ms"),
    _c("late_p99_ms", unit="ms", agg=MEDIAN),
    _c("loadgen_late", bool, agg=ANY),
    _c("service_p50_ms", unit="ms", agg=MEDIAN),
    _c("service_p99_ms", unit="ms", agg=MEDIAN, heading="service p99 ms", digits=0,
       show=(REPORT,)),
    _c("quiet_s", unit="s"),  # waited for the machine to be quiet before the server started
    _c("quiet_cpu_pct", unit="%"),
    # -- start-up (machine/startup.py), set against rss_mb_max / pss_mb_max of the window ----
    _c("startup_s", unit="s", agg=MEDIAN),  # spawn to /health ready
    _c("first_request_ms", unit="ms", agg=MEDIAN),  # the first embedding request after ready
    _c("startup_rss_mb_peak", unit="MB", agg=MEDIAN),
    _c("startup_pss_mb_peak", unit="MB", agg=MEDIAN),
    # -- where the time went (results/phases.py): p50_*/p99_* means of the server's phases ----
    *(_c(name, int if count else float, unit="" if count else "ms", agg=MEDIAN)
      for name, count in PHASE_SUMMARY),
)  # fmt: skip

BY_NAME: Mapping[str, Column] = {c.name: c for c in COLUMNS}
SUMMARY_COLUMNS: list[str] = [c.name for c in COLUMNS]
ERROR_COLUMNS: tuple[str, ...] = tuple(c for c in SUMMARY_COLUMNS if c.startswith("errors_"))


def where(*, agg: str | None = None, show: str | None = None, interval: bool | None = None,
          numeric: bool | None = None) -> list[Column]:  # fmt: skip
    """The columns with the given traits, in declaration order."""
    return [
        c
        for c in COLUMNS
        if (agg is None or c.agg == agg)
        and (show is None or show in c.show)
        and (interval is None or c.interval == interval)
        and (numeric is None or c.numeric == numeric)
    ]


class Row(dict[str, Any]):
    """One summary row: every column present (None until measured), no other key accepted.

    A misspelt metric fails where it is written, not silently as a blank cell in summary.csv.
    """

    def __init__(self, values: Mapping[str, Any] | None = None, **kw: Any) -> None:
        super().__init__(dict.fromkeys(SUMMARY_COLUMNS))
        self.update(values or {}, **kw)

    def __setitem__(self, key: str, value: Any) -> None:
        if key not in BY_NAME:
            raise KeyError(f"{key!r} is not a summary column (declare it in columns.py)")
        super().__setitem__(key, value)

    def __getitem__(self, key: str) -> Any:
        if key not in BY_NAME:
            raise KeyError(f"{key!r} is not a summary column")
        return super().__getitem__(key)

    def get(self, key: str, default: Any = None) -> Any:
        value = self[key]
        return default if value is None else value

    def update(self, *args: Any, **kw: Any) -> None:
        for key, value in dict(*args, **kw).items():
            self[key] = value

    def setdefault(self, key: str, default: Any = None) -> Any:
        # "Not yet set" is None here, since every column is present from the start.
        if self[key] is None:
            self[key] = default
        return self[key]


def check_names(names: Iterable[str]) -> None:
    """Raise KeyError naming the first name that is not a column."""
    for name in names:
        if name not in BY_NAME:
            raise KeyError(f"{name!r} is not a summary column")
