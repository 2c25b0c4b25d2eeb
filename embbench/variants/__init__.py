"""The registry of variants: a new strategy is a new module and one line here."""

from __future__ import annotations

from embbench.errors import UnknownVariantError
from embbench.machine.process import LaunchSpec
from embbench.variants.base import OwnVariant, Variant
from embbench.variants.batched import Batched
from embbench.variants.fastembed import Fastembed
from embbench.variants.infinity import Infinity
from embbench.variants.per_worker import PerWorker
from embbench.variants.preload import Preload
from embbench.variants.ray_serve import RayServe
from embbench.variants.rust import RUST_VARIANTS
from embbench.variants.shared_mutex import SharedMutex
from embbench.variants.shared_rwlock import SharedRWLock
from embbench.variants.tei import Tei

REGISTRY: dict[str, Variant] = {
    v.name: v
    for v in (
        SharedRWLock(),
        SharedMutex(),
        PerWorker(),
        Preload(),
        Batched(),
        Fastembed(),
        Tei(),
        Infinity(),
        RayServe(),
        *RUST_VARIANTS,
    )
}

__all__ = ["REGISTRY", "LaunchSpec", "OwnVariant", "Variant", "get_variant"]


def get_variant(name: str) -> Variant:
    try:
        return REGISTRY[name]
    except KeyError:
        raise UnknownVariantError(
            f"unknown variant {name!r}; choose one of {', '.join(REGISTRY)}"
        ) from None
