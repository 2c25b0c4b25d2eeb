"""What a variant is: its traits, how to prepare and launch a server for it, its protocol.

A variant owns its behaviour: the runner and the report never test a variant's name. They ask
its `traits` (recorded in run.json, so that a report explains a run by what its servers were).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from embbench.config.model import BUNDLED_MODEL, resolve_model, resolve_spec
from embbench.config.options import ServerOptions
from embbench.config.wire import ServerConfig
from embbench.errors import ConfigError
from embbench.machine.host import cpu_count
from embbench.machine.process import LaunchSpec
from embbench.results.traits import Traits


class Variant:
    """Base of every variant: subclasses set the class attributes and `launch`."""

    name: str = ""
    summary: str = ""
    seed_analogue: str = ""
    default_workers: int = 1
    protocol: str = "predict"
    traits: Traits = Traits()

    @property
    def external(self) -> bool:
        """A peer server we do not write (TEI, infinity)."""
        return not self.traits.ours

    def processes(self, options: ServerOptions) -> int:
        return options.resolved_workers(self.default_workers)

    def check(self, options: ServerOptions) -> None:
        """Raise a UsageError if this variant cannot run here as asked (before anything starts)."""

    def prepare(self, options: ServerOptions) -> None:
        """Work done once before the first cell rather than in a cell's start-up."""

    def pending(self, options: ServerOptions) -> str | None:
        """What prepare() will spend a while on, for the progress line (None: nothing slow)."""
        return None

    def tune(self, options: ServerOptions) -> tuple[ServerOptions, dict[str, Any] | None]:
        """The options to launch with once the variant has chosen what was left to it, and the
        record of that choice (None: this variant chooses nothing for itself)."""
        return options, None

    def launch(self, options: ServerOptions, port: int, workdir: Path) -> LaunchSpec:
        raise NotImplementedError

    def launch_tuned(
        self, options: ServerOptions, choice: Mapping[str, Any] | None, port: int, workdir: Path
    ) -> LaunchSpec:
        """Launch as `tune` chose once for the run (`choice`: its record, as run.json keeps it;
        None: nothing chosen), without choosing again, so that every cell of a run launches
        the server its record names. A variant that tunes overrides this."""
        return self.launch(options, port, workdir)


class OwnVariant(Variant):
    """A server from embbench/servers with a given strategy and process model."""

    strategy = "mutex"  # a name in servers/strategies: how requests reach the model

    def streams(self, options: ServerOptions) -> int:
        if options.streams is not None:
            return options.streams
        # The rwlock pool lets as many inferences overlap as there are cores (each on `threads`
        # of its own, so by default it oversubscribes, and the report says so); the batched
        # variant runs one batch at a time unless told otherwise.
        return max(2, cpu_count()) if self.traits.lock == "rwlock" else 1

    def server_config(
        self,
        options: ServerOptions,
        port: int,
        ready_dir: str,
        autotune: dict[str, Any] | None = None,
    ) -> ServerConfig:
        workers = self.processes(options)
        threads = options.resolved_threads(workers)
        model_path = resolve_model(options.model)
        return ServerConfig(
            variant=self.name,
            model_path=str(model_path),
            model_name=options.model or BUNDLED_MODEL,
            port=port,
            workers=workers,
            threads=threads,
            options=options,
            strategy=self.strategy,
            streams=self.streams(options),
            preload=self.traits.shared_memory,
            ready_dir=ready_dir,
            autotune=autotune,
        )

    def check(self, options: ServerOptions) -> None:
        if (options.streams or 1) > 1 and not self.traits.overlap:
            raise ConfigError(
                f"{self.name} runs one forward pass at a time per process; "
                "streams applies to shared-rwlock and batched"
            )
        # The model is read (and refused, in one line) before anything starts.
        resolve_spec(options.model)

    def prepare(self, options: ServerOptions) -> None:
        if options.backend in ("onnx", "fastembed"):
            # The export takes a minute: once per run, not inside a cell's start-up timeout.
            from embbench.servers.backends.onnx_export import export_onnx

            spec = resolve_spec(options.model)
            export_onnx(Path(spec.transformer_path), quantize=options.quantize)
        elif options.backend == "openvino":
            # The export, and NNCF's calibration for int8, likewise once per run.
            from embbench.servers.backends.openvino_model import openvino_model

            spec = resolve_spec(options.model)
            openvino_model(Path(spec.transformer_path), quantize=options.quantize)

    def command(self, config: ServerConfig) -> list[str]:
        return [sys.executable, "-m", "embbench.servers"]

    def launch(self, options: ServerOptions, port: int, workdir: Path) -> LaunchSpec:
        options, choice = self.tune(options)
        return self.server_spec(options, choice, port, workdir)

    def server_spec(
        self, options: ServerOptions, choice: Mapping[str, Any] | None, port: int, workdir: Path
    ) -> LaunchSpec:
        """How to start our server with these (resolved) options; `choice`: autotune's record
        of how they were chosen, shown by /info."""
        ready_dir = workdir / "ready"
        ready_dir.mkdir(parents=True, exist_ok=True)
        config = self.server_config(
            options, port, str(ready_dir), dict(choice) if choice is not None else None
        )
        return LaunchSpec(
            argv=self.command(config),
            env=server_env(config),
            info={
                "workers": config.workers,
                "threads": config.threads,
                "strategy": config.strategy,
                "streams": config.streams,
            },
        )


def server_env(config: ServerConfig) -> dict[str, str]:
    env = dict(os.environ)
    threads = str(config.threads)
    env.update(
        EMBBENCH_SERVER_CONFIG=config.to_json(),
        # Read by OpenMP/MKL when their pools start: the same count torch.set_num_threads sets.
        OMP_NUM_THREADS=threads,
        MKL_NUM_THREADS=threads,
        # The tokenizer's own thread pool is unused per request and warns after fork.
        TOKENIZERS_PARALLELISM="false",
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        PYTHONUNBUFFERED="1",
    )
    # libgomp's default lets idle OpenMP threads spin. With the event loop and a load generator
    # on the same 2 cores, ad-hoc runs saw a spinning team member and a descheduled one stall
    # each other on some runs and not others; PASSIVE did not. configs/ablation.toml measures
    # both (README: not reproduced there, and spinning was faster at c=100).
    if config.options.omp_wait_policy != "default":
        env["OMP_WAIT_POLICY"] = config.options.omp_wait_policy.upper()
    else:
        env.pop("OMP_WAIT_POLICY", None)
    return env
