from __future__ import annotations

from embbench.results.traits import Traits
from embbench.variants.base import OwnVariant


class SharedMutex(OwnVariant):
    name = "shared-mutex"
    summary = "1 process, 1 model; an async mutex lets one inference run at a time"
    seed_analogue = "Rust shared model + Mutex"
    strategy = "mutex"
    traits = Traits(lock="mutex")
