"""The answers the load generator keeps for the correctness check, in their binary side file.

Each Locust process appends records to `responses-<pid>.bin` beside its request log (the
locustfile packs them with the same struct, without importing this module: it stays light);
after the cell the run side reads them back here.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

# One kept response in a side file: input index, start (epoch s), latency (ms), body length.
RECORD = struct.Struct("<IddI")
RESPONSES_GLOB = "responses-*.bin"


@dataclass(frozen=True)
class Kept:
    """One response body the load generator kept, with the input it answered."""

    index: int
    start: float  # epoch s
    latency_ms: float
    body: bytes

    @property
    def end(self) -> float:
        return self.start + self.latency_ms / 1000.0


def encode_record(index: int, start: float, latency_ms: float, body: bytes) -> bytes:
    return RECORD.pack(index, start, latency_ms, len(body)) + body


def decode_records(data: bytes) -> Iterator[Kept]:
    """The complete records of a side file; a record cut by an interrupt ends the file."""
    offset = 0
    while offset + RECORD.size <= len(data):
        index, start, latency, size = RECORD.unpack_from(data, offset)
        body_at = offset + RECORD.size
        if body_at + size > len(data):
            return
        yield Kept(index, start, latency, data[body_at : body_at + size])
        offset = body_at + size


def read_kept(folder: Path) -> list[Kept]:
    kept: list[Kept] = []
    for path in sorted(folder.glob(RESPONSES_GLOB)):
        kept.extend(decode_records(path.read_bytes()))
    return kept


def in_window(kept: Sequence[Kept], start: float, end: float) -> list[Kept]:
    """Responses that completed inside the window, as measure.in_window counts requests."""
    return [k for k in kept if start <= k.end <= end]
