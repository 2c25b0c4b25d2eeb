"""The offline ceilings a run recorded (servers/ceiling.py measures them), as the record holds
them: each entry typed, the rate it stands for, and which were measured around a repeat.

A run with `ceiling = true` measures each backend's ceiling before the cells (run.json's
"ceiling"), after every repeat but the last ("ceiling_between", each with "after_repeat") and
after the cells ("ceiling_after"): a shared machine drifts over a run, and each repeat is judged
against the ceilings measured just before and after it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Reachable:
    """The payload in arrival order through the batched server's own batching: what a server
    forming batches from what waits was measured to do (absent in runs before it was)."""

    sentences_per_s: float | None = None
    threads: int | None = None
    streams: int | None = None
    batch_tokens: int | None = None


@dataclass(frozen=True)
class Ceiling:
    """One backend's offline ceiling. `measured` is the entry as written (every layout's
    numbers too), so that the record writes back what it read; the fields are what readers use.
    `streams` is None in runs from before thread layouts were measured."""

    backend: str | None = None
    quantize: str = "none"
    sentences_per_s: float | None = None
    threads: int | None = None
    streams: int | None = None
    best_batch: int | None = None
    batch1_ms: float | None = None
    batch1_threads: int | None = None
    reachable: Reachable | None = None
    after_repeat: int | None = None  # in "ceiling_between": the repeat it follows
    measured: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, entry: Mapping[str, Any]) -> Ceiling:
        reach = entry.get("reachable")
        after = entry.get("after_repeat")
        return cls(
            backend=_str(entry.get("backend")),
            quantize=_str(entry.get("quantize")) or "none",
            sentences_per_s=_float(entry.get("sentences_per_s")),
            threads=_int(entry.get("threads")),
            streams=_int(entry.get("streams")),
            best_batch=_int(entry.get("best_batch")),
            batch1_ms=_float(entry.get("batch1_ms")),
            batch1_threads=_int(entry.get("batch1_threads")),
            reachable=Reachable(
                sentences_per_s=_float(reach.get("sentences_per_s")),
                threads=_int(reach.get("threads")),
                streams=_int(reach.get("streams")),
                batch_tokens=_int(reach.get("batch_tokens")),
            )
            if isinstance(reach, Mapping)
            else None,
            after_repeat=after if isinstance(after, int) and not isinstance(after, bool) else None,
            measured=dict(entry),
        )

    def to_json(self) -> dict[str, Any]:
        entry = dict(self.measured)
        if self.after_repeat is not None:
            entry["after_repeat"] = self.after_repeat
        return entry

    @property
    def kind(self) -> str:
        """What the ceiling measured, as a reader names it: "torch", "onnx int8"."""
        name = self.backend or "?"
        return name if self.quantize in ("", "none") else f"{name} {self.quantize}"

    def of(self, backend: Any, quantize: Any) -> bool:
        """Whether this is the ceiling of that backend (a quantize of None counts as "none")."""
        return (self.backend, self.quantize) == (backend, quantize or "none")


def best_rate(ceiling: Ceiling) -> tuple[float, str]:
    """The rate a server is judged against, and which figure it is: "sorted" (the payload
    sorted by length, fixed batch sizes) or "reachable" (arrival order, a token budget), the
    higher. Runs from before "reachable" was measured have the sorted figure only."""
    sorted_rate = _rate(ceiling.sentences_per_s)
    reach = _rate(ceiling.reachable.sentences_per_s if ceiling.reachable else None)
    if reach > sorted_rate:
        return reach, "reachable"
    return (sorted_rate, "sorted") if sorted_rate > 0 else (math.nan, "sorted")


@dataclass(frozen=True)
class Ceilings:
    """Every ceiling of a run: before the cells, between repeats, after the cells."""

    before: tuple[Ceiling, ...] = ()
    between: tuple[Ceiling, ...] = ()
    after: tuple[Ceiling, ...] = ()

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Ceilings:
        return cls(
            before=_entries(data.get("ceiling")),
            between=_entries(data.get("ceiling_between")),
            after=_entries(data.get("ceiling_after")),
        )

    def to_json(self) -> dict[str, Any]:
        """run.json's keys for them; a list nothing was measured for is left out."""
        lists = {"ceiling": self.before, "ceiling_between": self.between,
                 "ceiling_after": self.after}  # fmt: skip
        return {key: [c.to_json() for c in found] for key, found in lists.items() if found}

    def first(self, backend: Any, quantize: Any) -> Ceiling | None:
        """The ceiling of this backend measured before the cells."""
        return next((c for c in self.before if c.of(backend, quantize)), None)

    def last(self, backend: Any, quantize: Any) -> Ceiling | None:
        """The ceiling of this backend measured after the cells."""
        return next((c for c in self.after if c.of(backend, quantize)), None)

    def in_order(self) -> list[tuple[str, Ceiling]]:
        """(when, ceiling): before the cells, after each repeat but the last, after the cells."""
        return [
            *(("", c) for c in self.before),
            *((f" after repeat {c.after_repeat}", c) for c in self.between),
            *((" after the cells", c) for c in self.after),
        ]

    def around(self, backend: Any, quantize: Any, repeat: int) -> list[Ceiling]:
        """The ceilings of this backend measured just before and just after repeat `repeat`."""
        between = {
            c.after_repeat: c
            for c in self.between
            if c.of(backend, quantize) and c.after_repeat is not None
        }
        first, last = self.first(backend, quantize), self.last(backend, quantize)
        before = first if repeat == 0 else between.get(repeat - 1)
        # After the last repeat (or in a run from before ceilings were measured between
        # repeats): the one measured after the cells.
        after = between.get(repeat, last if repeat > max(between, default=-1) else None)
        return [c for c in (before, after) if c is not None]


def _entries(value: Any) -> tuple[Ceiling, ...]:
    items: Sequence[Any] = value if isinstance(value, list | tuple) else []
    return tuple(Ceiling.from_json(c) for c in items if isinstance(c, Mapping))


def _rate(value: float | None) -> float:
    return value if value is not None and value > 0 else 0.0


def _float(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


def _int(value: Any) -> int | None:
    number = _float(value)
    return int(number) if number is not None and number.is_integer() else None


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None
