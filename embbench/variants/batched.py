from __future__ import annotations

from typing import Any

from embbench.config.run import ServerOptions
from embbench.variants import autotune
from embbench.variants.base import OwnVariant, Traits


class Batched(OwnVariant):
    name = "batched"
    summary = (
        "1 process, 1 model; a queue batches whatever requests wait, no artificial delay; "
        "streams, threads and batch size tuned to this machine (--no-autotune: off)"
    )
    seed_analogue = "TEI's router (dynamic batching)"
    strategy = "batched"
    traits = Traits(lock="queue", overlap=True, batching=True)

    def prepare(self, options: ServerOptions) -> None:
        super().prepare(options)  # the ONNX export first: the ceiling runs on it
        if autotune.needs_ceiling(options):
            # Measured here, before any cell, on an otherwise idle machine; launch() then
            # reads it from the cache.
            autotune.ensure_ceiling(options)

    def pending(self, options: ServerOptions) -> str | None:
        return autotune.describe_pending(options)

    def tune(self, options: ServerOptions) -> tuple[ServerOptions, dict[str, Any] | None]:
        # `serve` comes here without prepare(): a missing ceiling is measured now.
        return autotune.tune(options)
