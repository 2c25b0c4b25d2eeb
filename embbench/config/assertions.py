"""What a CI gate asks of a run: assertions (`p99_ms<=50`) and regression thresholds
(`rps:-5%`), parsed once into frozen values and validated here.

An assertion is `[LABEL:]COLUMN OP NUMBER`, OP one of <=, <, >=, >; COLUMN a column of
summary.csv (or of capacity.csv for `embbench capacity`) or one of the short names of
`ALIASES`. A regression threshold is `COLUMN:+N%` or `COLUMN:-N%`: the direction that counts as
worse (rps:-5% fails on a drop of more than 5 %; p99_ms:+10% on a rise of more than 10 %).

Which columns exist is the results layer's fact, which this layer may not import: the command
checks the resolved names against its own table (report/gate.py `check_columns`) before
anything starts, so an unknown column is one line and exit 2 like any other config mistake.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from embbench.errors import ConfigError

# Short names for the columns asserted most; any full column name is accepted too.
ALIASES: Mapping[str, str] = {
    "p50_ms": "latency_p50_ms",
    "p90_ms": "latency_p90_ms",
    "p95_ms": "latency_p95_ms",
    "p99_ms": "latency_p99_ms",
    "mean_ms": "latency_mean_ms",
    "max_ms": "latency_max_ms",
    "cpu_pct": "cpu_pct_mean",
    "rss_mb": "rss_mb_max",
    "pss_mb": "pss_mb_max",
    "uss_mb": "uss_mb_max",
    "cosine": "cosine_min",
    "capacity": "qps_at_slo",  # capacity.csv
    "qps": "qps_at_slo",
}

OPERATORS = ("<=", ">=", "<", ">")  # two-character ones first: the parser tries them in order

_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_ASSERTION = re.compile(
    rf"^\s*(?:(?P<label>[^:<>=]+?)\s*:\s*)?(?P<column>{_NAME})\s*(?P<op><=|>=|<|>)\s*"
    rf"(?P<bound>{_NUMBER})\s*$"
)
_THRESHOLD = re.compile(rf"^\s*(?P<column>{_NAME})\s*:\s*(?P<pct>[-+]\s*{_NUMBER})\s*%\s*$")


def resolve(column: str) -> str:
    """The summary or capacity column a name means (an alias's column, or the name itself)."""
    return ALIASES.get(column, column)


@dataclass(frozen=True)
class Assertion:
    """`label: column op bound`; `label` None means every label of the run."""

    column: str  # as the user wrote it (an alias or a column); `resolved` is the column
    op: str
    bound: float
    label: str | None = None

    def __post_init__(self) -> None:
        if self.op not in OPERATORS:
            raise ConfigError(f"assertion operator must be one of {', '.join(OPERATORS)}")
        if not math.isfinite(self.bound):
            raise ConfigError(f"assertion bound must be a finite number, got {self.bound!r}")

    @property
    def resolved(self) -> str:
        return resolve(self.column)

    @property
    def upper(self) -> bool:
        """True for an upper bound (<=, <): the value must stay at or below it."""
        return self.op in ("<=", "<")

    @property
    def text(self) -> str:
        """The assertion as it parses back: `batched: p99_ms<=50`."""
        head = f"{self.label}: " if self.label else ""
        return f"{head}{self.column}{self.op}{self.bound:g}"

    def holds(self, value: float) -> bool:
        """Whether a single exact value satisfies the bound."""
        if self.op == "<=":
            return value <= self.bound
        if self.op == "<":
            return value < self.bound
        if self.op == ">=":
            return value >= self.bound
        return value > self.bound


def parse_assertion(text: str, label: str | None = None) -> Assertion:
    """`p99_ms<=50` or `batched: rps>=400` as an Assertion; ConfigError naming the text."""
    if not isinstance(text, str):
        raise ConfigError(f"an assertion is text such as 'p99_ms<=50', got {text!r}")
    found = _ASSERTION.match(text)
    if found is None:
        if re.search(r"==|!=|=<|=>|(?<![<>])=", text):
            raise ConfigError(f"assertion {text!r}: the operator must be one of <=, >=, <, >")
        raise ConfigError(
            f"assertion {text!r} is not [LABEL:]COLUMN OP NUMBER (e.g. 'p99_ms<=50', "
            "'batched: rps>=400'; OP is <=, >=, < or >)"
        )
    written = found["label"].strip() if found["label"] else None
    if written and label and written != label:
        raise ConfigError(f"assertion {text!r} names label {written!r} but is given {label!r}")
    return Assertion(found["column"], found["op"], float(found["bound"]), written or label)


def parse_assertions(texts: Iterable[str]) -> tuple[Assertion, ...]:
    return tuple(parse_assertion(t) for t in texts)


def assertions_from_file(entries: Any, where: str) -> tuple[Assertion, ...]:
    """A run file's `[[assert]]` tables: `that = "p99_ms<=50"` and an optional `label`."""
    if not isinstance(entries, list):
        raise ConfigError(f"{where}: [[assert]] must be an array of tables")
    found = []
    for index, entry in enumerate(entries):
        if not isinstance(entry, Mapping) or "that" not in entry:
            raise ConfigError(f'{where}: assert #{index + 1} needs `that = "p99_ms<=50"`')
        unknown = set(entry) - {"that", "label"}
        if unknown:
            raise ConfigError(f"{where}: assert #{index + 1}: unknown key {sorted(unknown)[0]!r}")
        label = entry.get("label")
        if label is not None and not isinstance(label, str):
            raise ConfigError(f"{where}: assert #{index + 1}: label must be text")
        found.append(parse_assertion(entry["that"], label))
    return tuple(found)


@dataclass(frozen=True)
class Threshold:
    """A regression threshold: `column` may change by `pct` % in the worse direction (the sign
    of `pct`: -5 for rps, a drop; +10 for p99, a rise) before a significant change fails."""

    column: str  # as written; `resolved` is the column
    pct: float

    def __post_init__(self) -> None:
        if not math.isfinite(self.pct) or self.pct == 0 or self.pct <= -100:
            raise ConfigError(
                f"regression threshold for {self.column} must be a nonzero % (above -100), "
                f"got {self.pct:g}"
            )

    @property
    def resolved(self) -> str:
        return resolve(self.column)

    @property
    def limit(self) -> float:
        """The ratio new / base beyond which a change is a regression: 0.95 for -5 %."""
        return 1 + self.pct / 100

    @property
    def text(self) -> str:
        return f"{self.column}:{self.pct:+g}%"


def parse_thresholds(text: str) -> tuple[Threshold, ...]:
    """`rps:-5%,p99_ms:+10%` as Thresholds; ConfigError naming the part that does not parse."""
    found = []
    for part in (p for p in text.split(",") if p.strip()):
        match = _THRESHOLD.match(part)
        if match is None:
            raise ConfigError(
                f"--fail-on-regress part {part.strip()!r} is not COLUMN:+N% or COLUMN:-N% "
                "(e.g. 'rps:-5%,p99_ms:+10%': the sign is the direction that is worse)"
            )
        found.append(Threshold(match["column"], float(match["pct"].replace(" ", ""))))
    if not found:
        raise ConfigError("--fail-on-regress needs at least one COLUMN:+N% (e.g. 'rps:-5%')")
    columns = [t.resolved for t in found]
    twice = sorted({c for c in columns if columns.count(c) > 1})
    if twice:
        raise ConfigError(f"--fail-on-regress names {twice[0]} twice")
    return tuple(found)
