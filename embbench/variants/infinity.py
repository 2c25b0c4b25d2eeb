"""infinity-emb (michaelfeil/infinity), a peer server, run from its own virtual environment.

`make peers` (scripts/install_infinity.sh) installs it into `.venv-infinity` at the repo root:
its pins (numpy<2, sentence-transformers<4, transformers<5, ...) clash with ours. It serves the
same bundled model folder on CPU with its torch engine and its own dynamic batching, speaks an
OpenAI-style API (`POST /v1/embeddings` here, see `--url-prefix` below) and answers `GET /health`
with 200 only once the model is loaded and warmed up.
"""

from __future__ import annotations

import os
from pathlib import Path

from embbench.config.model import BUNDLED_MODEL, resolve_model
from embbench.config.options import ServerOptions
from embbench.errors import ConfigError, PeerUnavailableError
from embbench.machine.process import LaunchSpec
from embbench.results.traits import Traits
from embbench.variants.base import Variant

# Must match the pin in scripts/install_infinity.sh (a unit test checks that it does).
INFINITY_VERSION = "0.0.78"
# Where `make peers` installs it; EMBBENCH_INFINITY_VENV points elsewhere.
DEFAULT_VENV = Path(__file__).resolve().parents[2] / ".venv-infinity"
# infinity serves `/embeddings`; with this prefix its routes match OpenAI's (and our protocol's)
# `/v1/embeddings`. `/health` is mounted outside the prefix, so readiness is unchanged.
URL_PREFIX = "/v1"


def infinity_venv() -> Path:
    return Path(os.environ.get("EMBBENCH_INFINITY_VENV") or DEFAULT_VENV)


def infinity_cli(venv: Path | None = None) -> Path:
    return (venv or infinity_venv()) / "bin" / "infinity_emb"


def infinity_installed(venv: Path | None = None) -> bool:
    cli = infinity_cli(venv)
    return cli.is_file() and os.access(cli, os.X_OK)


class Infinity(Variant):
    name = "infinity"
    summary = "infinity-emb (torch engine, CPU) in its own venv; its own dynamic batching"
    seed_analogue = "a peer server users pick instead"
    default_workers = 1
    traits = Traits(ours=False, lock="queue", overlap=True, batching=True)
    protocol = "openai"

    def processes(self, options: ServerOptions) -> int:
        return 1  # one uvicorn process; --workers does not apply

    def check(self, options: ServerOptions) -> None:
        if not infinity_installed():
            raise PeerUnavailableError(
                "infinity-emb is not installed: run `make peers` (it installs into .venv-infinity)"
            )
        if options.backend != "torch":
            raise ConfigError(
                "infinity runs with its torch engine here: drop --backend onnx for it"
            )
        resolve_model(options.model)

    def command(self, options: ServerOptions, port: int) -> list[str]:
        # fmt: off
        return [
            str(infinity_cli()),
            "v2",
            "--model-id", str(resolve_model(options.model)),
            # The name the OpenAI-style "model" field carries (the runner sends this one).
            "--served-model-name", options.model or BUNDLED_MODEL,
            "--port", str(port),
            "--host", options.host,
            "--url-prefix", URL_PREFIX,
            "--engine", "torch",
            "--device", "cpu",
            "--dtype", "float32",
            # The same batch cap as our batched variant.
            "--batch-size", str(options.max_batch_size),
            # Warm up (the default) before /health says ready, as our servers do.
            "--model-warmup",
            # A cache of past results would turn repeated payloads into lookups.
            "--no-vector-disk-cache",
            # infinity's CPU defaults, stated: no torch.compile, no BetterTransformer (optimum).
            "--no-compile",
            "--no-bettertransformer",
            "--log-level", "info",
        ]
        # fmt: on

    def launch(self, options: ServerOptions, port: int, workdir: Path) -> LaunchSpec:
        workdir.mkdir(parents=True, exist_ok=True)
        threads = options.resolved_threads(1)
        env = dict(os.environ)
        # Its own interpreter and site-packages: nothing of ours may leak onto its path.
        for key in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV"):
            env.pop(key, None)
        env.update(
            # Usage telemetry off, both ways infinity reads it.
            INFINITY_ANONYMOUS_USAGE_STATS="0",
            DO_NOT_TRACK="1",
            HF_HUB_OFFLINE="1",
            TRANSFORMERS_OFFLINE="1",
            OMP_NUM_THREADS=str(threads),
            MKL_NUM_THREADS=str(threads),
            # infinity makes `.infinity_cache` under INFINITY_HOME (else the working directory).
            INFINITY_HOME=str(workdir),
            PYTHONUNBUFFERED="1",
            # Its Rich log handler wraps at 80 columns off a terminal; keep log lines whole.
            COLUMNS="160",
        )
        return LaunchSpec(
            argv=self.command(options, port),
            env=env,
            protocol=self.protocol,
            info={
                "workers": 1,
                "threads": threads,
                "strategy": "infinity dynamic batching",
                "version": INFINITY_VERSION,
                "batch_size": options.max_batch_size,
            },
        )
