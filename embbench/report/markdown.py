"""Markdown tables and the text of their cells, as report.md's sections and `embbench compare`
write them."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from embbench.results import levels

# Columns of words, aligned left; every other column holds numbers, aligned right.
TEXT_HEADINGS = frozenset(
    ("label", "winner", "runner-up", "flags", "reason", "cell", "setting", "value", "variant",
     "options", "status", "throughput", "latency", "verdict", "in charts", "check", "why",
     "group", "dominant")
)  # fmt: skip


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    def line(values: Iterable[Any]) -> str:
        return (
            "| " + " | ".join(str(v).replace("|", "\\|").replace("\n", " ") for v in values) + " |"
        )

    align = ("---" if h in TEXT_HEADINGS else "---:" for h in headers)
    return [line(headers), line(align), *map(line, rows)]


def num(value: Any, digits: int) -> str:
    """A number with `digits` decimals; "–" for what is missing or not a number."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return "–"
    return "–" if math.isnan(number) else f"{number:.{digits}f}"


def with_ci(value: Any, low: Any, high: Any, digits: int) -> str:
    text, low_text = num(value, digits), num(low, digits)
    return text if "–" in (text, low_text) else f"{text} ({low_text}–{num(high, digits)})"


def headings(text: str) -> list[str]:
    """A table's headings written as one string: `"label, level"` -> ["label", "level"]."""
    return text.split(", ")


def level_cell(row: Mapping[str, Any]) -> str:
    """`10` for a closed loop of 10 users, `40 rps` for an open loop."""
    level = str(row.get("level") or "")
    return levels.short(level) if level else f"{float(row['concurrency']):g}"


def setting(value: Any) -> str:
    """A setting's value as report.md writes it: mappings as k=v, lists joined, JSON else."""
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={setting(v)}" for k, v in value.items() if v is not None)
    if isinstance(value, list | tuple):
        return ", ".join(setting(v) for v in value)
    return value if isinstance(value, str) else json.dumps(value)
