"""Batch invariance: does an input's vector move with the inputs it is batched with?

Dynamic batching pads an input to its batch-mates' length, and int8 with per-batch activation
scales quantises it with their range: the same text may come back as another vector in another
batch. After the cell's window (never inside it), a handful of requests through the server's
own endpoint measure by how much:

- alone: every text involved, one request each, in the protocol's own single-input shape
  (the targets twice: a server that is not deterministic alone shows it there, batch size 1);
- in requests of several inputs (a multi-input request is a batch on every server, batching or
  not): each target among `SIZES[i] - 1` mates, the shortest or the longest texts of the run's
  payload (other padding, other activation ranges), at a position that varies;
- in concurrent bursts (`BURSTS`): the mates sent at once as single requests and the target
  just after them, so that a dynamic batcher queues them together (X-Batch-Size, where the
  server gives it, says what the target rode in: `batch_largest`).

Every answer of a batch, the mates' too, is compared with that text's answer alone. The
deviation is 1 - cosine, not the largest absolute difference of a coordinate: a search ranks by
cosine, so 1 - cosine is the figure in the retrieval figures' currency (a deviation of 1e-4
moves a cosine of 0.8 to 0.7999), and it does not depend on the model's norm or width, where a
coordinate's difference of 1e-3 means one thing for a normalised 384-wide vector and another
for an unnormalised 1024-wide one. Bit-identical answers give 0 either way. The cell reports the
largest deviation (a worst case over what was tried, not an estimate: no interval), the median,
and the answers compared.
"""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np
import numpy.typing as npt

from embbench.run.endpoint import Answer, Endpoint, most_inputs
from embbench.run.quality import probe_indices, unit_rows

SIZES = (2, 4, 8)  # inputs per multi-input request
BURSTS = (4, 8)  # concurrent single requests per burst
TARGETS = (0.0, 0.5, 1.0)  # quantiles of length of the payload's texts taken as targets
STAGGER_S = 0.005  # the target leaves this long after its mates: it joins their queue
# Columns of summary.csv (results/columns.py).
COLUMNS = ("batch_deviation", "batch_deviation_p50", "batch_inputs", "batch_largest")

Floats = npt.NDArray[np.float64]


def deviations(alone: npt.ArrayLike, batched: npt.ArrayLike) -> Floats:
    """1 - cosine of each row of `batched` with the same row of `alone`, never below 0 (float
    rounding of identical vectors may give -1e-16)."""
    a, b = unit_rows(np.atleast_2d(alone)), unit_rows(np.atleast_2d(batched))
    result: Floats = np.clip(1.0 - (a * b).sum(axis=1), 0.0, None)
    return result


@dataclass
class Invariance:
    """The deviations found, and the largest batch an answer is known to have ridden in."""

    found: list[float] = field(default_factory=list)
    largest: int | None = None
    refused: str | None = None  # why multi-input requests were left out, if they were

    def add(self, alone: npt.ArrayLike, batched: npt.ArrayLike, batch: int | None) -> None:
        self.found.extend(float(d) for d in deviations(alone, batched))
        if batch is not None:
            self.largest = max(batch, self.largest or 0)

    def columns(self) -> dict[str, Any]:
        if not self.found:
            return dict.fromkeys(COLUMNS)
        values = np.asarray(self.found)
        return {
            "batch_deviation": float(values.max()),
            "batch_deviation_p50": float(np.median(values)),
            "batch_inputs": len(values),
            "batch_largest": self.largest,
        }


@dataclass(frozen=True)
class Plan:
    """Which texts go where: targets, and the short and long mates (payload texts, by index)."""

    targets: tuple[int, ...]
    short: tuple[int, ...]
    long: tuple[int, ...]

    @property
    def texts(self) -> tuple[int, ...]:
        return tuple(dict.fromkeys((*self.targets, *self.short, *self.long)))

    def keeping(self, accepted: set[int]) -> Plan:
        """The plan without the texts the server refused."""
        return Plan(*(tuple(i for i in part if i in accepted)
                      for part in (self.targets, self.short, self.long)))  # fmt: skip

    def batches(self, most: int) -> list[tuple[int, ...]]:
        """Multi-input requests: each target among short, then long, mates, for each size up to
        `most`; the target's position moves with the batch (first, middle, last...)."""
        out = []
        turn = 0
        for target in self.targets:
            for mates in (self.short, self.long):
                for size in (s for s in SIZES if s <= most):
                    others = [m for m in mates if m != target][: size - 1]
                    at = turn % (len(others) + 1)
                    out.append((*others[:at], target, *others[at:]))
                    turn += 1
        return out

    def bursts(self) -> list[tuple[tuple[int, ...], int]]:
        """Concurrent bursts: (mates, target), the mates alternately long and short."""
        mixed = [m for pair in zip(self.long, self.short, strict=False) for m in pair]
        out: list[tuple[tuple[int, ...], int]] = []
        for target in self.targets:
            others = [m for m in dict.fromkeys(mixed) if m != target]
            out.extend((tuple(others[: size - 1]), target) for size in BURSTS)
        return out


def plan_for(texts: Sequence[str]) -> Plan:
    """Targets at TARGETS' quantiles of length; mates the shortest and the longest others."""
    targets = tuple(probe_indices(texts, TARGETS))
    order = [i for i in sorted(range(len(texts)), key=lambda i: (len(texts[i]), i))
             if i not in targets]  # fmt: skip
    need = max(*SIZES, *BURSTS) - 1
    return Plan(targets, tuple(order[:need]), tuple(order[::-1][:need]))


def measure(
    endpoint: Endpoint,
    texts: Sequence[str],
    info: Mapping[str, Any],
    open_endpoint: Callable[[], Endpoint],
) -> Invariance:
    """The requests of the module's docstring against a server that is otherwise idle.
    `open_endpoint` makes one more connection (a burst needs one per request in flight).
    Multi-input requests a server refuses (4xx: a /predict-only server) are left out."""
    plan = plan_for(texts)
    alone = {}
    for i in plan.texts:
        try:
            alone[i] = endpoint.one(texts[i]).vectors[0]
        except httpx.HTTPStatusError as exc:
            # Too long for a server told not to truncate: left out, like the load's 413s.
            if exc.response.status_code != 413:
                raise
    plan = plan.keeping(set(alone))
    if not plan.targets:
        raise ValueError("the server refused every target input (413)")
    result = Invariance()
    for i in plan.targets:
        result.add(alone[i], endpoint.one(texts[i]).vectors, 1)
    most = most_inputs(info, max(SIZES))
    for batch in plan.batches(most):
        try:
            answer = endpoint.many([texts[i] for i in batch])
        except httpx.HTTPStatusError as exc:
            if not 400 <= exc.response.status_code < 500:
                raise
            result.refused = f"HTTP {exc.response.status_code} to {len(batch)} inputs"
            break
        result.add(np.asarray([alone[i] for i in batch]), answer.vectors,
                   answer.batch or len(batch))  # fmt: skip
    for mates, target in plan.bursts():
        sent = _burst(open_endpoint, [texts[i] for i in (*mates, target)])
        for i, answer in zip((*mates, target), sent, strict=True):
            result.add(alone[i], answer.vectors, answer.batch if i == target else None)
    return result


def _burst(open_endpoint: Callable[[], Endpoint], texts: Sequence[str]) -> list[Answer]:
    """All but the last text at once, the last STAGGER_S later, each on its own connection."""
    endpoints = [open_endpoint() for _ in texts]
    try:
        with concurrent.futures.ThreadPoolExecutor(max_workers=len(texts)) as pool:
            futures = [pool.submit(e.one, t) for e, t in zip(endpoints[:-1], texts, strict=False)]
            time.sleep(STAGGER_S)
            futures.append(pool.submit(endpoints[-1].one, texts[-1]))
            return [f.result() for f in futures]
    finally:
        for each in endpoints:
            each.__exit__()
