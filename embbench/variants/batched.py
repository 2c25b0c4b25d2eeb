from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from embbench.config.options import ServerOptions
from embbench.machine.process import LaunchSpec
from embbench.results.traits import Traits
from embbench.variants import autotune
from embbench.variants.base import OwnVariant


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
            # Measured here, before any cell, on an otherwise idle machine; the run's tune()
            # then reads it from the cache, once, and its cells launch what that chose.
            autotune.ensure_ceiling(options)

    def pending(self, options: ServerOptions) -> str | None:
        return autotune.describe_pending(options)

    def tune(self, options: ServerOptions) -> tuple[ServerOptions, dict[str, Any] | None]:
        # `serve` comes here without prepare(): a missing ceiling is measured now.
        return autotune.tune(options)

    def launch_tuned(
        self, options: ServerOptions, choice: Mapping[str, Any] | None, port: int, workdir: Path
    ) -> LaunchSpec:
        # A cell of a run: the values the run chose once and recorded, not a new choice.
        if choice is None:
            return self.launch(options, port, workdir)
        return self.server_spec(autotune.applied(options, choice), choice, port, workdir)
