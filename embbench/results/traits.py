"""What kind of server a variant runs, as a run records it (run.json's "traits").

A variant declares its traits (variants/*.py: `traits = Traits(...)`); the run writes them
down, and the report's explanations rest on what was written, never on the registry: a report
reads only the record, and a variant that changes later must not rewrite old runs' reasons.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Traits:
    """What kind of server a variant runs: the facts the report's explanations rest on."""

    ours: bool = True  # embbench's own server (False: a peer such as TEI or infinity)
    # What keeps inferences apart in one process: "mutex" (one at a time), "rwlock" (readers
    # overlap), "queue" (a batching queue), "" (not ours to say).
    lock: str = "mutex"
    overlap: bool = False  # may forward passes overlap inside one process?
    multi_process: bool = False  # one model per worker process
    shared_memory: bool = False  # workers share the model's pages (loaded before fork)
    batching: bool = False  # requests are batched together

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any], fallback: Traits | None = None) -> Traits:
        """The recorded traits; a field missing from them (an older run) is `fallback`'s."""
        base = fallback or cls()
        known = {f.name for f in dataclasses.fields(cls)}
        return dataclasses.replace(base, **{k: v for k, v in data.items() if k in known})


# The variants that existed while run.json was at version 1 and their traits then, copied from
# variants/*.py (2026-12): runs of version 1 that lack recorded traits (or some of them) are
# given these by the migration (record.py), so that the report need not ask variants/.
TRAITS_V1: dict[str, Traits] = {
    "shared-rwlock": Traits(lock="rwlock", overlap=True),
    "shared-mutex": Traits(lock="mutex"),
    "per-worker": Traits(lock="mutex", multi_process=True),
    "preload": Traits(lock="mutex", multi_process=True, shared_memory=True),
    "batched": Traits(lock="queue", overlap=True, batching=True),
    "tei": Traits(ours=False, lock="queue", overlap=True, batching=True),
    "infinity": Traits(ours=False, lock="queue", overlap=True, batching=True),
    "ray-serve": Traits(lock="queue", overlap=True, multi_process=True, batching=True),
    "rust-rwlock": Traits(lock="rwlock", overlap=True, shared_memory=True),
    "rust-rwlock-raw": Traits(lock="rwlock", overlap=True, shared_memory=True),
    "rust-per-worker-rwlock": Traits(lock="rwlock", overlap=True),
    "rust-mutex": Traits(lock="mutex", shared_memory=True),
    "rust-per-worker-mutex": Traits(lock="mutex"),
}
