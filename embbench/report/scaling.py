"""Scaling efficiency between the core counts a capacity run measured (`capacity --cores 1,2`),
with the interval the two capacities' own intervals give it. Only measured counts are set side
by side: nothing here extrapolates to a count that was not run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from embbench.report.plan import Measured


@dataclass(frozen=True)
class Scaling:
    """What more cores bought one variant: capacity at `cores_to` over `cores_from`, per core."""

    label: str
    cores_from: int
    cores_to: int
    efficiency: float  # (capacity_to / capacity_from) / (cores_to / cores_from); 1 is linear
    low: float | None  # from the two capacities' intervals (None: an edge not probed)
    high: float | None
    floor: bool  # a capacity that is only a floor enters it

    @property
    def words(self) -> str:
        gain = self.efficiency * self.cores_to / self.cores_from
        text = (f"{self.label}: {self.cores_to} cores sustain {gain:.2f}x what {self.cores_from} "
                f"{'core does' if self.cores_from == 1 else 'cores do'}: "
                f"{self.efficiency:.0%} scaling efficiency")  # fmt: skip
        if self.low is not None and self.high is not None:
            text += f" (within {self.low:.0%}-{self.high:.0%}, from the capacities' intervals)"
        else:
            text += " (interval open: a rate above a capacity was not probed)"
        if self.floor:
            text += "; one capacity is only a floor"
        return text + ". Other core counts were not measured: nothing is extrapolated."


def scaling(measured: Sequence[Measured]) -> list[Scaling]:
    """Per variant measured at several core counts: its fewest against each of the others."""
    groups: dict[str, list[Measured]] = {}
    for m in measured:
        if m.capacity_rps:
            groups.setdefault(m.base or m.label, []).append(m)
    out = []
    for base, rows in groups.items():
        rows = sorted(rows, key=lambda m: m.cores)
        first = rows[0]
        for other in rows[1:]:
            assert first.capacity_rps and other.capacity_rps
            ratio = other.cores / first.cores
            low = (other.capacity_rps / first.capacity_high_rps / ratio
                   if first.capacity_high_rps else None)  # fmt: skip
            high = (other.capacity_high_rps / first.capacity_rps / ratio
                    if other.capacity_high_rps else None)  # fmt: skip
            out.append(
                Scaling(
                    label=base,
                    cores_from=first.cores,
                    cores_to=other.cores,
                    efficiency=other.capacity_rps / first.capacity_rps / ratio,
                    low=low,
                    high=high,
                    floor=first.status != "found" or other.status != "found",
                )
            )
    return out
