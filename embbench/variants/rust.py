"""The article's own server: actix-web + candle BERT (rust/seed-server), in its five setups.

Built by `make rust` (scripts/build_rust.sh) into a cache outside the clone. One binary; the
setups are its flags: the model shared behind a tokio RwLock or a Mutex, or one model per actix
worker, and the article's tokenizer without padding or truncation. candle's compute threads
belong to the process, shared by its workers, so `threads` defaults to every core.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from pathlib import Path

from embbench.config.model import BUNDLED_MODEL, ModelSpec, resolve_spec
from embbench.config.options import ServerOptions
from embbench.errors import ModelError, PeerUnavailableError
from embbench.machine.host import cpu_count
from embbench.machine.process import LaunchSpec
from embbench.results.traits import Traits
from embbench.variants.base import Variant


def cache_dir() -> Path:
    return Path(os.environ.get("EMBBENCH_CACHE") or Path.home() / ".cache" / "embbench")


def binary_path() -> Path:
    return cache_dir() / "rust-target" / "release" / "seed-server"


# What the Rust server computes (candle's BERT, one pooling, an optional L2 normalisation).
RUST_MODEL_TYPES = ("bert",)
RUST_POOLING = ("mean", "cls", "max")


def rust_refusal(spec: ModelSpec) -> str | None:
    """Why the Rust server cannot serve `spec` as sentence-transformers computes it, or None."""
    if spec.model_type not in RUST_MODEL_TYPES:
        return f"model_type {spec.model_type!r} (the Rust server runs BERT only)"
    if len(spec.pooling) != 1 or spec.pooling[0] not in RUST_POOLING:
        return f"pooling {spec.pooling_name!r} (the Rust server pools {'/'.join(RUST_POOLING)})"
    if spec.dense:
        return "a Dense module (the Rust server has none)"
    if spec.default_prompt:
        return f"default prompt {spec.default_prompt_name!r} (the Rust server adds no prompt)"
    return None


@functools.lru_cache(maxsize=4)
def _help_text(binary: str, mtime_ns: int) -> str:
    """This build's --help: which flags it takes ("" if it does not run)."""
    try:
        done = subprocess.run(
            [binary, "--help"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return done.stdout


def _takes_model_flags(binary: str, mtime_ns: int) -> bool:
    """Whether this build of the server takes --pooling and --normalize (older ones do not)."""
    text = _help_text(binary, mtime_ns)
    return "--pooling" in text and "--normalize" in text


def takes_request_cap() -> bool:
    """Whether the built server takes --max-concurrent-requests. A build from before it is
    still run, without a cap, as it was (`make rust` brings the cap): refusing it would fail
    runs that worked, for a flag that only matters beyond the cap."""
    binary = binary_path()
    if not binary.is_file():
        return True  # check() refuses to launch it anyway
    return "--max-concurrent-requests" in _help_text(str(binary), binary.stat().st_mtime_ns)


def bench_binary_path() -> Path:
    """seed-bench, built beside the server: its model code timed without HTTP."""
    return binary_path().with_name("seed-bench")


class RustServer(Variant):
    """One of the article's configurations of the actix-web + candle server."""

    seed_analogue = "the article's Rust server"
    default_workers = 2

    def __init__(self, name: str, lock: str, sharing: str, raw_tokenizer: bool = False) -> None:
        self.name = name
        self.lock = lock
        self.sharing = sharing
        self.raw_tokenizer = raw_tokenizer
        what = "one model per actix worker" if sharing == "per-worker" else "one shared model"
        guard = "tokio RwLock" if lock == "rwlock" else "Mutex"
        self.summary = f"actix-web + candle (Rust), {what} behind a {guard}" + (
            ", no padding or truncation (the article's tokenizer)" if raw_tokenizer else ""
        )
        self.traits = Traits(lock=lock, overlap=lock == "rwlock",
                             multi_process=False, shared_memory=sharing == "shared")  # fmt: skip

    def check(self, options: ServerOptions) -> None:
        if not binary_path().is_file():
            how = "run `make rust`" if shutil.which("cargo") else "install Rust, then `make rust`"
            raise PeerUnavailableError(
                f"{self.name} needs the Rust server built at {binary_path()}: {how}"
            )
        if not _takes_model_flags(str(binary_path()), binary_path().stat().st_mtime_ns):
            raise PeerUnavailableError(
                f"{self.name}: the Rust server at {binary_path()} predates --pooling and "
                "--normalize; rebuild it with `make rust`"
            )
        spec = resolve_spec(options.model)
        refusal = rust_refusal(spec)
        if refusal:
            raise ModelError(f"{self.name} cannot serve {spec.model_id}: {refusal}")

    def launch(self, options: ServerOptions, port: int, workdir: Path) -> LaunchSpec:
        workers = self.processes(options)
        threads = options.threads or cpu_count()
        spec = resolve_spec(options.model)
        # The facts as sentence-transformers reads them (config/model.py), always passed: the
        # server's own reading of the folder is not relied on.
        seq = min(options.max_seq_length or spec.max_seq_length, spec.max_positions)
        argv = [
            str(binary_path()),
            "--model-dir", str(spec.path),
            "--model-id", options.model or BUNDLED_MODEL,
            "--host", options.host,
            "--port", str(port),
            "--workers", str(workers),
            "--threads", str(threads),
            "--lock", self.lock,
            "--sharing", self.sharing,
            "--max-body-bytes", str(options.max_body_bytes),
            "--variant-name", self.name,
            "--pooling", spec.pooling_name,
            "--normalize", "true" if spec.normalize else "false",
            "--max-seq-length", str(seq),
        ]  # fmt: skip
        if takes_request_cap():
            # The Python servers' cap and default, per process (every actix worker's requests).
            argv += ["--max-concurrent-requests", str(options.max_concurrent_requests)]
        if not options.server_timing:
            argv.append("--no-server-timing")
        if self.raw_tokenizer:
            argv.append("--no-padding-truncation")
        else:
            argv += ["--padding", options.padding.replace("_", "-")]
            if not options.truncation:
                argv.append("--no-truncation")
        return LaunchSpec(
            argv=argv,
            env={**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn")},
            info={
                # Workers are actix threads of one process; candle's threads are the process's.
                "workers": 1,
                "threads": threads,
                "streams": workers if self.lock == "rwlock" else 1,
                "strategy": f"actix {self.lock} {self.sharing}",
                "actix_workers": workers,
            },
        )


RUST_VARIANTS = (
    RustServer("rust-rwlock", "rwlock", "shared"),
    RustServer("rust-rwlock-raw", "rwlock", "shared", raw_tokenizer=True),
    RustServer("rust-per-worker-rwlock", "rwlock", "per-worker"),
    RustServer("rust-mutex", "mutex", "shared"),
    RustServer("rust-per-worker-mutex", "mutex", "per-worker"),
)
