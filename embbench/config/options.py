"""Server options, each declared once: name, type, default, help, validation and label.

`ServerOptions` is the one declaration. The `serve`/`run` flags (cli_options.py), the TOML keys
of a run file (config.py), the server's own `ServerConfig` (which holds a `ServerOptions`) and
the row labels all derive from its fields and their `spec` metadata, as uvicorn's `Config` is
the one place its options live. Adding an option means adding one field here.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from embbench.errors import ConfigError
from embbench.machine.host import cpu_count


@dataclass(frozen=True)
class Spec:
    """What the rest of embbench needs to know of one option besides its type and default."""

    help: str
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    # How a value other than the default shows in a row label: "{value}", "{name}={value}",
    # or a (true, false) pair for a switch. None: never in the label.
    label: str | tuple[str, str] | None = "{name}={value}"
    flag: str | None = None  # the command-line flag, when not --<name with dashes>


def option(default: Any, help: str, **spec: Any) -> Any:
    return field(default=default, metadata={"spec": Spec(help, **spec)})


@dataclass(frozen=True)
class ServerOptions:
    """How one server is run. `None` means "the variant's or the model's default".

    Field order is the order of the parts of a row label (default_label).
    """

    model: str | None = option(
        None, "Local folder or hub id (offline). Default: bundled all-MiniLM-L6-v2.", label=None
    )
    host: str = option("127.0.0.1", "Interface to bind.", label=None)
    port: int | None = option(None, "Port (default: a free one).", minimum=0, maximum=65535,
                              label=None)  # fmt: skip
    # fastembed: its onnxruntime session over our own ONNX export (servers/backends/fastembed.py).
    backend: str = option(
        "torch", "torch | onnx | openvino | fastembed.",
        choices=("torch", "onnx", "openvino", "fastembed"), label="{value}",
    )  # fmt: skip
    quantize: str = option(
        "none", "none | int8 (onnx, fastembed: dynamic; openvino: NNCF static) | bf16 (openvino).",
        choices=("none", "int8", "bf16"), label="{value}",
    )  # fmt: skip
    padding: str = option(
        "longest", "longest | max_length.", choices=("longest", "max_length"), label="{value}"
    )
    truncation: bool = option(
        True, "Truncate inputs to max_seq_length.", label=("truncation", "no-truncation")
    )
    workers: int | None = option(None, "Worker processes (per-worker, preload).", minimum=1)
    threads: int | None = option(
        None, "Intra-op threads per stream (default cores // (workers x streams)).", minimum=1
    )
    max_seq_length: int | None = option(
        None, "Tokens kept when truncating (default: the model's).", minimum=1
    )
    # How idle OpenMP threads wait: "passive" sleeps, "active" spins (see variants/base.py).
    omp_wait_policy: str = option(
        "passive", "passive | active | default.", choices=("passive", "active", "default"),
        label="omp={value}",
    )  # fmt: skip
    # Lengths that may share a batch: within this factor of the oldest's (0: arrival order).
    batch_spread: float = option(
        2.0, "Lengths in one batch within this factor of the oldest's (0: arrival order)."
    )
    # Forward passes that may run at once in one process, each on its own `threads`: the
    # rwlock pool's size, or the batched variant's batch workers. None: the variant's default.
    streams: int | None = option(
        None, "Forward passes at once per process (shared-rwlock, batched).", minimum=1
    )
    max_batch_size: int = option(
        32, "Largest batch (batched), largest slice of one request (mutex, rwlock).", minimum=1
    )
    # What carries requests to the API: FastAPI, or a bare ASGI callable (servers/asgi.py).
    http: str = option(
        "fastapi", "fastapi | asgi: the layer before the API.", choices=("fastapi", "asgi"),
        label="{value}",
    )  # fmt: skip
    max_batch_tokens: int = option(
        16384, "Most padded tokens in one forward pass (a batch, or a slice of one request).",
        minimum=1, label=None,
    )  # fmt: skip
    # batched: where a batch stops growing. On CPU a forward pass costs more per token beyond a
    # few hundred padded tokens (cache, attention's rows x length^2, fresh pages for large
    # tensors with the arena off), so filling up to max_batch_tokens was slower than batch 1
    # on the mixed payload; measured in servers/batching.py.
    batch_tokens: int = option(
        256, "batched: padded tokens a batch is filled up to (the oldest input always goes).",
        minimum=1,
    )  # fmt: skip
    max_body_bytes: int = option(1 << 20, "Largest request body.", minimum=1, label=None)
    # TEI's name and default: requests in flight beyond it are answered 429 with Retry-After.
    max_concurrent_requests: int = option(
        512, "Requests in flight before the server answers 429 (TEI's default).", minimum=1,
        maximum=1_000_000,
    )  # fmt: skip
    # Characters per input before tokenising: a cap on the tokeniser's work, not the model's.
    max_input_chars: int = option(
        100_000, "Longest input in characters (tokenising it costs CPU too).", minimum=1
    )
    enable_reload: bool = option(
        False, "Serve POST /reload (off: a client could swap the model under load).",
        label=("reload", "no-reload"),
    )  # fmt: skip
    # batched: streams x threads and the largest batch chosen from this machine's offline
    # ceiling (autotune.py), so that the default is the fast layout rather than a guess.
    autotune: bool = option(
        True, "batched: choose streams x threads and the largest batch from this machine's "
        "offline ceiling (measured once, cached); values given explicitly win.",
        label=("autotune", "no-autotune"),
    )  # fmt: skip
    # Each answer's Server-Timing, X-Batch-Size and X-Request-Id (servers/timing.py); off only
    # to measure what they cost.
    server_timing: bool = option(
        True, "Put Server-Timing (the request's phases), X-Batch-Size and X-Request-Id on "
        "every answer.", label=("server-timing", "no-server-timing"),
    )  # fmt: skip
    # Not an option: the names the user set (file or flags), so that a value equal to its
    # default still counts as given and wins over autotune. Filled by server_options and
    # override_options; not compared, so it never tells two equal settings apart.
    given: tuple[str, ...] = field(default=(), compare=False, repr=False)

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(ServerOptions)
        for each in fields(self):
            if _is_option(each):
                check_value(each.name, getattr(self, each.name), hints[each.name], spec_of(each))
        # From JSON (ServerConfig.from_json, run.json) it comes back as a list.
        object.__setattr__(self, "given", tuple(sorted(set(self.given))))
        if self.quantize == "int8" and self.backend not in ("onnx", "openvino", "fastembed"):
            raise ConfigError("--quantize int8 needs --backend onnx, openvino or fastembed")
        if self.quantize == "bf16" and self.backend != "openvino":
            raise ConfigError("--quantize bf16 needs --backend openvino")
        if self.batch_spread != 0 and self.batch_spread < 1:
            raise ConfigError(
                f"batch_spread must be 0 (arrival order) or >= 1, got {self.batch_spread}"
            )

    def is_given(self, name: str) -> bool:
        """Set by the user: named in a file or a flag, or (built in code) not the default."""
        default = next(f.default for f in fields(self) if f.name == name)
        return name in self.given or getattr(self, name) != default

    def resolved_workers(self, default: int) -> int:
        return self.workers or default

    def resolved_threads(self, workers: int, streams: int | None = None) -> int:
        # The cores shared out among the forward passes that run at once (workers x streams);
        # more threads than cores only makes them fight.
        return self.threads or max(1, cpu_count() // (workers * (streams or self.streams or 1)))


def _is_option(each: dataclasses.Field[Any]) -> bool:
    return "spec" in each.metadata


def spec_of(each: dataclasses.Field[Any]) -> Spec:
    spec = each.metadata.get("spec")
    return spec if isinstance(spec, Spec) else Spec(help="")


def option_fields() -> list[tuple[dataclasses.Field[Any], Any, Spec]]:
    """(field, resolved type, spec) of every server option, in declaration order."""
    hints = typing.get_type_hints(ServerOptions)
    return [(f, hints[f.name], spec_of(f)) for f in fields(ServerOptions) if _is_option(f)]


def base_type(annotation: Any) -> type:
    """`int` of `int | None`: the type a value must have when it is given."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        return base_type(args[0])
    return annotation if isinstance(annotation, type) else object


def check_value(name: str, value: Any, annotation: Any, spec: Spec) -> None:
    """Type, choices and range of one value; raises ConfigError naming the option."""
    if value is None:
        if type(None) in typing.get_args(annotation):
            return
        raise ConfigError(f"{name} must be given, got nothing")
    kind = base_type(annotation)
    # TOML and JSON have no int/float split worth refusing; a bool is never a number here.
    ok = isinstance(value, kind) and not (kind is not bool and isinstance(value, bool))
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        ok = True
    if not ok:
        raise ConfigError(f"{name} must be {_kind_name(kind)}, got {value!r}")
    if spec.choices and value not in spec.choices:
        raise ConfigError(f"{name} must be one of {', '.join(spec.choices)}; got {value!r}")
    if spec.minimum is not None and value < spec.minimum:
        word = "positive" if spec.minimum == 1 else f"at least {spec.minimum:g}"
        raise ConfigError(f"{name} must be {word}, got {value}")
    if spec.maximum is not None and value > spec.maximum:
        raise ConfigError(f"{name} must be at most {spec.maximum:g}, got {value}")


def _kind_name(kind: type) -> str:
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(
        kind, kind.__name__
    )


OPTION_NAMES = frozenset(f.name for f in fields(ServerOptions) if _is_option(f))


def server_options(values: Mapping[str, Any], where: str) -> ServerOptions:
    """ServerOptions from a mapping (a TOML table), every key and value checked."""
    unknown = set(values) - OPTION_NAMES
    if unknown:
        raise ConfigError(f"{where}: unknown server option {sorted(unknown)[0]!r}")
    try:
        return ServerOptions(**values, given=tuple(values))
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def override_options(options: ServerOptions, overrides: Mapping[str, Any]) -> ServerOptions:
    """Flags given on the command line win over the file (only those actually given)."""
    given = {k: v for k, v in overrides.items() if v is not None}
    unknown = set(given) - OPTION_NAMES
    if unknown:
        raise ConfigError(f"unknown server option {sorted(unknown)[0]!r}")
    return dataclasses.replace(options, **given, given=(*options.given, *given))


def default_label(name: str, options: ServerOptions, omit: Collection[str] = ()) -> str:
    """`name[opt=value,...]` listing only what differs from the defaults, so rows stay apart
    (`omit`: options the run set alike for every row)."""
    parts = []
    for each, _kind, spec in option_fields():
        value = getattr(options, each.name)
        if spec.label is None or value == each.default or each.name in omit:
            continue
        if isinstance(spec.label, tuple):
            parts.append(spec.label[0] if value else spec.label[1])
        else:
            parts.append(spec.label.format(name=each.name, value=value))
    return f"{name}[{','.join(parts)}]" if parts else name
