from __future__ import annotations

from embbench.results.traits import Traits
from embbench.variants.base import OwnVariant


class SharedRWLock(OwnVariant):
    name = "shared-rwlock"
    summary = (
        "1 process, 1 model; inferences overlap in a thread pool under an async RW lock's read side"
    )
    seed_analogue = "Rust shared model + tokio RwLock"
    strategy = "rwlock"
    traits = Traits(lock="rwlock", overlap=True)
