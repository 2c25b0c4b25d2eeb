"""Markdown tables and numbers, as report.md and the capacity section write them."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

# Columns of words, aligned left; every other column holds numbers, aligned right.
TEXT_HEADINGS = frozenset(
    ("label", "winner", "runner-up", "flags", "reason", "cell", "setting", "value", "variant",
     "options", "status", "throughput", "latency", "verdict")
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
