"""What a variant is: how to launch a server for it, and which protocol it speaks."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from embbench.config import ServerConfig, ServerOptions, cpu_count
from embbench.errors import ConfigError
from embbench.models import BUNDLED_MODEL, resolve_model


@dataclass(frozen=True)
class LaunchSpec:
    """A command to run in its own process group, and what to do once it is stopped."""

    argv: list[str]
    env: dict[str, str]
    protocol: str = "predict"
    info: dict[str, object] = field(default_factory=dict)
    # Extra clean-up after the process group is gone (a container to remove, say).
    cleanup: Callable[[], None] | None = None
    # The root of the process tree to sample, when it is not the launched process (a container's
    # first process, whose parent is the engine, not the `docker run` client).
    sample_pid: Callable[[], int | None] | None = None


class Variant:
    """Base of every variant: subclasses set the class attributes and `launch`."""

    name: str = ""
    summary: str = ""
    seed_analogue: str = ""
    default_workers: int = 1
    external: bool = False  # a peer server we do not write (TEI, infinity)
    protocol: str = "predict"

    def processes(self, options: ServerOptions) -> int:
        return options.resolved_workers(self.default_workers)

    def check(self, options: ServerOptions) -> None:
        """Raise a UsageError if this variant cannot run here as asked (before anything starts)."""

    def launch(self, options: ServerOptions, port: int, workdir: Path) -> LaunchSpec:
        raise NotImplementedError


class OwnVariant(Variant):
    """A server from embbench/servers with a given strategy and process model."""

    strategy = "mutex"
    preload = False

    def streams(self, options: ServerOptions) -> int:
        if options.streams is not None:
            return options.streams
        # The rwlock pool lets as many inferences overlap as there are cores (each on `threads`
        # of its own, so by default it oversubscribes, and the report says so); the batched
        # variant runs one batch at a time unless told otherwise.
        return max(2, cpu_count()) if self.strategy == "rwlock" else 1

    def server_config(self, options: ServerOptions, port: int, ready_dir: str) -> ServerConfig:
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
            preload=self.preload,
            ready_dir=ready_dir,
        )

    def check(self, options: ServerOptions) -> None:
        if (options.streams or 1) > 1 and self.strategy not in ("rwlock", "batched"):
            raise ConfigError(
                f"{self.name} runs one forward pass at a time per process; "
                "streams applies to shared-rwlock and batched"
            )
        resolve_model(options.model)

    def command(self, config: ServerConfig) -> list[str]:
        return [sys.executable, "-m", "embbench.servers"]

    def launch(self, options: ServerOptions, port: int, workdir: Path) -> LaunchSpec:
        ready_dir = workdir / "ready"
        ready_dir.mkdir(parents=True, exist_ok=True)
        config = self.server_config(options, port, str(ready_dir))
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
