from __future__ import annotations

from embbench.variants.base import OwnVariant, Traits


class Batched(OwnVariant):
    name = "batched"
    summary = "1 process, 1 model; a queue batches whatever requests wait, no artificial delay"
    seed_analogue = "TEI's router (dynamic batching)"
    strategy = "batched"
    traits = Traits(lock="queue", overlap=True, batching=True)
