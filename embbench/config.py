"""Configuration: frozen dataclasses built once (from flags or TOML) and validated there."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import tomllib

from embbench.errors import ConfigError

PADDINGS = ("longest", "max_length")
HTTP_LAYERS = ("fastapi", "asgi")
BACKENDS = ("torch", "onnx")
QUANTIZATIONS = ("none", "int8")
PROTOCOLS = ("predict", "tei", "openai")
PAYLOADS = ("short", "medium", "long", "mixed")
DEFAULT_CONCURRENCY = (10, 100, 1000)


def cpu_count() -> int:
    """Cores this process may run on (the affinity mask, not the host's total)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


@dataclass(frozen=True)
class ServerOptions:
    """How one server is run. `None` means "the variant's or the model's default"."""

    model: str | None = None
    host: str = "127.0.0.1"
    port: int | None = None
    workers: int | None = None
    threads: int | None = None
    padding: str = "longest"
    truncation: bool = True
    max_seq_length: int | None = None
    backend: str = "torch"
    quantize: str = "none"
    max_batch_size: int = 32
    max_batch_tokens: int = 16384
    # Lengths that may share a batch: within this factor of the oldest's (0: arrival order).
    batch_spread: float = 2.0
    max_body_bytes: int = 1 << 20
    # How idle OpenMP threads wait: "passive" sleeps, "active" spins (see server_env).
    omp_wait_policy: str = "passive"
    # Forward passes that may run at once in one process, each on its own `threads`: the
    # rwlock pool's size, or the batched variant's batch workers. None: the variant's default.
    streams: int | None = None
    # What carries requests to the API: FastAPI, or a bare ASGI callable (servers/asgi.py).
    http: str = "fastapi"

    def __post_init__(self) -> None:
        _choice("http", self.http, HTTP_LAYERS)
        _choice("omp_wait_policy", self.omp_wait_policy, ("passive", "active", "default"))
        _choice("padding", self.padding, PADDINGS)
        _choice("backend", self.backend, BACKENDS)
        _choice("quantize", self.quantize, QUANTIZATIONS)
        if self.quantize != "none" and self.backend != "onnx":
            raise ConfigError("--quantize int8 needs --backend onnx")
        for name in ("port", "workers", "threads", "max_seq_length", "streams"):
            value = getattr(self, name)
            if value is not None and value < (0 if name == "port" else 1):
                raise ConfigError(f"{name} must be positive, got {value}")
        if self.port is not None and self.port > 65535:
            raise ConfigError(f"port must be at most 65535, got {self.port}")
        if self.batch_spread != 0 and self.batch_spread < 1:
            raise ConfigError(
                f"batch_spread must be 0 (arrival order) or >= 1, got {self.batch_spread}"
            )
        for name in ("max_batch_size", "max_batch_tokens", "max_body_bytes"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)}")

    def resolved_workers(self, default: int) -> int:
        return self.workers or default

    def resolved_threads(self, workers: int, streams: int | None = None) -> int:
        # The cores shared out among the forward passes that run at once (workers x streams);
        # more threads than cores only makes them fight.
        return self.threads or max(1, cpu_count() // (workers * (streams or self.streams or 1)))


@dataclass(frozen=True)
class ServerConfig:
    """Everything a server process needs; passed to it as JSON (env EMBBENCH_SERVER_CONFIG)."""

    variant: str
    model_path: str
    host: str
    port: int
    workers: int
    threads: int
    strategy: str = "mutex"  # rwlock | mutex | batched: how requests reach the model
    streams: int = 1  # forward passes that may run at once in one process (rwlock, batched)
    http: str = "fastapi"
    preload: bool = False  # the model is loaded before fork (gunicorn --preload)
    padding: str = "longest"
    truncation: bool = True
    max_seq_length: int | None = None
    backend: str = "torch"
    quantize: str = "none"
    max_batch_size: int = 32
    max_batch_tokens: int = 16384
    # Lengths that may share a batch: within this factor of the oldest's (0: arrival order).
    batch_spread: float = 2.0
    max_body_bytes: int = 1 << 20
    model_name: str = ""
    ready_dir: str = ""
    omp_wait_policy: str = "passive"

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ServerConfig:
        return cls(**json.loads(text))


@dataclass(frozen=True)
class VariantRun:
    """One variant as it appears in a run: its name, its options and the label of its rows."""

    name: str
    options: ServerOptions = field(default_factory=ServerOptions)
    label: str = ""

    @property
    def display(self) -> str:
        return self.label or default_label(self.name, self.options)


@dataclass(frozen=True)
class RunConfig:
    variants: tuple[VariantRun, ...]
    concurrency: tuple[int, ...] = DEFAULT_CONCURRENCY
    duration: float = 15.0
    warmup: float = 5.0
    repeats: int = 1
    payload: str = "short"
    out: str = "results"
    run_id: str | None = None
    url: str | None = None
    protocol: str = "predict"
    pid: int | None = None
    load_processes: int = 1
    load_workers: int = 0  # Locust workers on other machines (`embbench load-worker`)
    master_port: int = 5557
    startup_timeout: float = 180.0
    seed: int = 0
    # Measure the offline ceiling of every backend in the run, before the cells and again after
    # them (embbench.ceiling), each measurement `ceiling_seconds` long.
    ceiling: bool = False
    ceiling_seconds: float = 3.0

    def __post_init__(self) -> None:
        if not self.variants and self.url is None:
            raise ConfigError("no variant given: pass --variant NAME or a config file")
        if not self.concurrency or any(c < 1 for c in self.concurrency):
            raise ConfigError(f"concurrency levels must be positive, got {self.concurrency}")
        if self.ceiling_seconds <= 0:
            raise ConfigError(f"ceiling_seconds must be positive, got {self.ceiling_seconds}")
        if self.duration <= 0 or self.warmup < 0:
            raise ConfigError("duration must be positive and warmup not negative")
        if self.repeats < 1:
            raise ConfigError(f"repeats must be at least 1, got {self.repeats}")
        if self.load_workers < 0:
            raise ConfigError(f"load workers must not be negative, got {self.load_workers}")
        if self.load_processes < 1:
            raise ConfigError(f"load processes must be at least 1, got {self.load_processes}")
        _choice("payload", self.payload, PAYLOADS)
        _choice("protocol", self.protocol, PROTOCOLS)
        labels = [v.display for v in self.variants]
        dupes = sorted({label for label in labels if labels.count(label) > 1})
        if dupes:
            raise ConfigError(f"two variants share the label {dupes[0]!r}; give one a `label`")


def default_label(name: str, options: ServerOptions) -> str:
    """`name[opt=value,...]` listing only what differs from the defaults, so rows stay apart."""
    base = ServerOptions()
    parts = []
    for opt in (
        "backend",
        "quantize",
        "padding",
        "truncation",
        "workers",
        "threads",
        "max_seq_length",
        "omp_wait_policy",
        "batch_spread",
        "streams",
        "max_batch_size",
        "http",
    ):
        value = getattr(options, opt)
        if value != getattr(base, opt):
            if opt == "truncation":
                parts.append("truncation" if value else "no-truncation")
            elif opt in ("backend", "quantize", "padding", "http"):
                parts.append(str(value))
            elif opt == "omp_wait_policy":
                parts.append(f"omp={value}")
            else:
                parts.append(f"{opt}={value}")
    return f"{name}[{','.join(parts)}]" if parts else name


def _choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")


_OPTION_FIELDS = {f.name for f in fields(ServerOptions)}
_RUN_FIELDS = {f.name for f in fields(RunConfig)} - {"variants"}


def server_options(values: Mapping[str, Any], where: str) -> ServerOptions:
    unknown = set(values) - _OPTION_FIELDS
    if unknown:
        raise ConfigError(f"{where}: unknown server option {sorted(unknown)[0]!r}")
    try:
        return ServerOptions(**values)
    except TypeError as exc:
        raise ConfigError(f"{where}: {exc}") from exc


def load_run_file(path: Path) -> tuple[dict[str, Any], list[VariantRun]]:
    """Read a TOML run file: `[run]` settings, `[defaults]` server options, `[[variant]]` rows."""
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError as exc:
        raise ConfigError(f"config file {path} does not exist") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc
    unknown = set(data) - {"run", "defaults", "variant"}
    if unknown:
        raise ConfigError(f"{path}: unknown section {sorted(unknown)[0]!r}")
    run = dict(data.get("run", {}))
    bad = set(run) - _RUN_FIELDS
    if bad:
        raise ConfigError(f"{path}: unknown [run] key {sorted(bad)[0]!r}")
    if "concurrency" in run:
        run["concurrency"] = tuple(run["concurrency"])
    defaults = dict(data.get("defaults", {}))
    server_options(defaults, f"{path} [defaults]")
    variants = []
    for index, entry in enumerate(data.get("variant", [])):
        entry = dict(entry)
        if "name" not in entry:
            raise ConfigError(f"{path}: variant #{index + 1} has no name")
        name = str(entry.pop("name"))
        label = str(entry.pop("label", ""))
        options = server_options({**defaults, **entry}, f"{path} variant {name!r}")
        variants.append(VariantRun(name=name, options=options, label=label))
    return run, variants


def override_options(options: ServerOptions, overrides: Mapping[str, Any]) -> ServerOptions:
    """Flags given on the command line win over the file (only those actually given)."""
    given = {k: v for k, v in overrides.items() if v is not None}
    try:
        return replace(options, **given)
    except TypeError as exc:
        raise ConfigError(str(exc)) from exc
