"""Autotune: the batched server chooses its own layout from this machine's offline ceiling.

The layout is streams x threads and the largest batch (the most tokens in one batch stays at
its default: the ceiling times sentences, not tokens). A hand-tuned layout (configs/fast.toml)
reached most of the ceiling where the untuned defaults did not, and users only got it by
reading that file. The ceiling (ceiling.py) measures, per way of filling the cores,
sentences/s at each batch size and the latency of one bare request: what the choice needs,
without HTTP in the way.

The measurement (every layout at every batch size) is too slow to repeat at each start, so it
is cached per machine, model and backend under
`${EMBBENCH_CACHE:-~/.cache/embbench}/ceilings/`, written atomically (a reader never sees half
a file, two writers leave one whole file); a hit is one small JSON read. Values the user gave
always win over tuned ones, and the record of the choice says which were given, tuned or left
at their default: the server shows it in /info, the run in run.json.

Cache file format history:
- 1: {"format", "key", "measured_at", "load_before", "ceiling"}; ceiling as
  ceiling.measure_ceiling returns it; load_before is the 1-minute load average when measuring
  began (a ceiling measured on a busy machine is low, and that shows in /info and run.json).
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
import json
import os
import platform
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from embbench.config.model import BUNDLED_MODEL, resolve_spec
from embbench.config.options import ServerOptions
from embbench.errors import EmbbenchError, UsageError
from embbench.machine.cache import cache_root
from embbench.machine.files import write_text_atomically
from embbench.machine.host import cpu_count, cpu_model
from embbench.servers.backends.onnx_export import EXPORTERS

FORMAT = 1
# Short sentences: `serve` knows nothing of the traffic to come, and a layout must not change
# with a run's --payload, or one label would name different servers in different runs. Short
# sentences are the common embedding request (and most of the mixed payload); longer inputs
# are bounded by max_batch_tokens, which autotune leaves alone.
PAYLOAD = "short"
SECONDS = 3.0  # per measurement, the ceiling's own default
# Within this fraction of the best, a layout or batch size counts as "as fast": the spread of
# repeated ceiling measurements on a shared 2-core machine is of this order.
LAYOUT_TOLERANCE = 0.05
BATCH_TOLERANCE = 0.05

TUNED = "tuned"  # chosen from the ceiling
GIVEN = "given"  # the user's value
DERIVED = "derived"  # follows from a given value by the usual rule (threads = cores // streams)
DEFAULT = "default"  # autotune does not choose it: the option's default


class AutotuneError(EmbbenchError):
    """The ceiling that autotune needs could not be measured."""


Measure = Callable[[ServerOptions], dict[str, Any]]


# -- the choice rule (pure) ----------------------------------------------------------------


@dataclass(frozen=True)
class Choice:
    threads: int
    streams: int
    max_batch_size: int


def choose(ceiling: Mapping[str, Any], layout: tuple[int, int] | None = None) -> Choice:
    """The layout and batch size a server should use, from a ceiling's per-layout numbers.

    Layout: the highest sentences/s at its best batch size; among layouts within
    LAYOUT_TOLERANCE of it, the one whose lone request is quickest (a lightly loaded server
    then answers sooner at no cost in throughput). Batch size: the smallest whose sentences/s
    is within BATCH_TOLERANCE of that layout's best, since a server's queueing delay grows with
    the batch while the throughput has stopped growing. `layout` (threads, streams) pins the
    layout when the user gave it; its own curve then sets the batch size if it was measured.
    """
    layouts = list(ceiling.get("layouts") or [])
    if not layouts:
        raise AutotuneError("the ceiling has no per-layout numbers to choose from")

    def best(each: Mapping[str, Any]) -> float:
        return max(float(v) for v in each["by_batch"].values())

    top = max(best(each) for each in layouts)
    near = [each for each in layouts if best(each) >= (1 - LAYOUT_TOLERANCE) * top]
    chosen = min(near, key=lambda each: (float(each["batch1_ms"]), -best(each)))
    if layout is not None:
        pinned = [each for each in layouts if (each["threads"], each["streams"]) == layout]
        chosen = pinned[0] if pinned else chosen
    by_batch = {int(size): float(rate) for size, rate in chosen["by_batch"].items()}
    enough = (1 - BATCH_TOLERANCE) * max(by_batch.values())
    batch = min(size for size, rate in by_batch.items() if rate >= enough)
    threads, streams = layout or (int(chosen["threads"]), int(chosen["streams"]))
    return Choice(threads=threads, streams=streams, max_batch_size=batch)


# -- which values are left to choose --------------------------------------------------------


def sources(options: ServerOptions) -> dict[str, str]:
    """Where each value of the layout comes from before any ceiling is read."""
    layout_given = options.is_given("streams") or options.is_given("threads")
    found = {
        "streams": GIVEN if options.is_given("streams") else DEFAULT,
        "threads": GIVEN if options.is_given("threads") else DEFAULT,
        "max_batch_size": GIVEN if options.is_given("max_batch_size") else DEFAULT,
        # The ceiling times sentences, not tokens: no measurement here says what a token
        # budget should be, and the default never cuts a batch of 32 inputs of 512 tokens.
        "max_batch_tokens": GIVEN if options.is_given("max_batch_tokens") else DEFAULT,
    }
    if not options.autotune:
        return found
    if layout_given:
        # A half-given layout is the user's: the other half follows the usual rule, as it did
        # before autotune, rather than a ceiling measured for layouts the user ruled out.
        for name in ("streams", "threads"):
            if found[name] == DEFAULT:
                found[name] = DERIVED
    else:
        found["streams"] = found["threads"] = TUNED
    if found["max_batch_size"] == DEFAULT:
        found["max_batch_size"] = TUNED
    return found


def needs_ceiling(options: ServerOptions) -> bool:
    return TUNED in sources(options).values()


# -- the cache ------------------------------------------------------------------------------


def cache_dir() -> Path:
    return cache_root() / "ceilings"


def machine_id() -> str:
    """What tells this machine from another with the same CPU: its machine-id, else hostname."""
    for path in ("/etc/machine-id", "/var/lib/dbus/machine-id"):
        try:
            text = Path(path).read_text().strip()
        except OSError:
            continue
        if text:
            return text
    return platform.node()


def model_key(model: str | None) -> str:
    """The model's fingerprint (config/model.py): a model replaced in place is another model;
    the same files under another path are the same. A name that does not resolve stays a name
    (the variant's check refuses it before a ceiling is wanted)."""
    try:
        return resolve_spec(model).fingerprint
    except UsageError:
        return model or BUNDLED_MODEL


def ceiling_key(options: ServerOptions) -> dict[str, Any]:
    """Everything the ceiling depends on that may differ between two cache entries."""
    return {
        "format": FORMAT,
        "machine": machine_id(),
        "cpu_model": cpu_model(),
        "cores": cpu_count(),  # the affinity mask: `taskset` makes another machine
        "model": model_key(options.model),
        "backend": options.backend,
        "quantize": options.quantize,
        "payload": PAYLOAD,
        # A new runtime brings new kernels: its ceiling is another machine's, as it were.
        "runtime": runtime_version(options.backend),
        # Another way of exporting the graph (fused attention, say) is another model to time.
        "graph": list(EXPORTERS) if options.backend in ("onnx", "openvino") else None,
        # OpenVINO's int8 is NNCF's: a new NNCF quantises (and so runs) another model.
        **({"nncf": runtime_version("nncf")} if options.backend == "openvino" else {}),
    }


def runtime_version(backend: str) -> str | None:
    package = {"torch": "torch", "onnx": "onnxruntime"}.get(backend, backend)
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def cache_path(key: Mapping[str, Any], directory: Path | None = None) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    name = f"{key['backend']}-{key['quantize']}-{digest}.json"
    return (directory or cache_dir()) / name


@dataclass(frozen=True)
class CachedCeiling:
    path: Path
    measured_at: float
    ceiling: dict[str, Any]
    source: str  # "cache" (read) or "measured" (by this call)
    load_before: float | None = None


def load_cached(key: Mapping[str, Any], directory: Path | None = None) -> CachedCeiling | None:
    """The cached ceiling of `key`, or None when absent, unreadable or of another key."""
    path = cache_path(key, directory)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("key") != dict(key):
        return None  # another format, or a digest shared by another key: measure again
    ceiling = data.get("ceiling")
    if not isinstance(ceiling, dict) or not ceiling.get("layouts"):
        return None
    load = data.get("load_before")
    return CachedCeiling(
        path, float(data.get("measured_at", 0.0)), ceiling, "cache",
        float(load) if isinstance(load, (int, float)) else None,
    )  # fmt: skip


def save_ceiling(
    key: Mapping[str, Any],
    ceiling: Mapping[str, Any],
    directory: Path | None = None,
    load_before: float | None = None,
) -> CachedCeiling:
    """Write the entry next to its final name, then rename it there (machine/files.py)."""
    path = cache_path(key, directory)
    measured_at = time.time()
    entry = {"format": FORMAT, "key": dict(key), "measured_at": measured_at,
             "load_before": load_before, "ceiling": dict(ceiling)}  # fmt: skip
    write_text_atomically(path, json.dumps(entry, indent=2))
    return CachedCeiling(path, measured_at, dict(ceiling), "measured", load_before)


def measure(options: ServerOptions) -> dict[str, Any]:
    """The ceiling of every layout, in a subprocess (its threads and memory stay there)."""
    from embbench.servers.ceiling import measure_in_subprocess

    try:
        return measure_in_subprocess(
            options.model, options.backend, options.quantize, None, PAYLOAD, seconds=SECONDS
        )
    except (RuntimeError, OSError, ValueError) as exc:
        raise AutotuneError(f"autotune could not measure the offline ceiling: {exc}") from exc


def ensure_ceiling(
    options: ServerOptions, measure: Measure = measure, directory: Path | None = None
) -> CachedCeiling:
    key = ceiling_key(options)
    cached = load_cached(key, directory)
    if cached is not None:
        return cached
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return save_ceiling(key, measure(options), directory, load)


def describe_pending(options: ServerOptions, directory: Path | None = None) -> str | None:
    """A progress line when a ceiling will be measured, None when the cache has it."""
    if not needs_ceiling(options) or load_cached(ceiling_key(options), directory):
        return None
    kind = options.backend + ("" if options.quantize == "none" else f" {options.quantize}")
    return f"autotune: measuring the offline ceiling of {kind} (once; cached in {cache_dir()})"


# -- applying it ----------------------------------------------------------------------------


def tune(
    options: ServerOptions, measure: Measure = measure, directory: Path | None = None
) -> tuple[ServerOptions, dict[str, Any]]:
    """`options` with the values left to autotune filled in, and the record of the choice."""
    found = sources(options)
    cached = ensure_ceiling(options, measure, directory) if TUNED in found.values() else None
    tuned: dict[str, Any] = {}
    if cached is not None:
        pinned = None
        if found["streams"] != TUNED:
            streams = options.streams or 1
            pinned = (options.resolved_threads(1, streams), streams)
        choice = choose(cached.ceiling, pinned)
        for name, source in found.items():
            if source == TUNED:
                tuned[name] = getattr(choice, name)
    resolved = dataclasses.replace(options, **tuned)
    return resolved, record(resolved, found, cached)


def record(
    options: ServerOptions, found: Mapping[str, str], cached: CachedCeiling | None
) -> dict[str, Any]:
    """The choice as /info and run.json show it: values, where each came from, the numbers."""
    streams = options.streams or 1
    values = {
        "streams": streams,
        "threads": options.resolved_threads(1, streams),
        "max_batch_size": options.max_batch_size,
        "max_batch_tokens": options.max_batch_tokens,
    }
    ceiling = None
    if cached is not None:
        ceiling = {
            "source": cached.source,
            "file": str(cached.path),
            "measured_at": cached.measured_at,
            "load_before": cached.load_before,
            "payload": cached.ceiling.get("payload", PAYLOAD),
            "layouts": cached.ceiling.get("layouts"),
        }
    return {
        "enabled": options.autotune,
        **values,
        "sources": dict(found),
        "rule": {"layout_tolerance": LAYOUT_TOLERANCE, "batch_tolerance": BATCH_TOLERANCE},
        "ceiling": ceiling,
    }


def applied(options: ServerOptions, choice: Mapping[str, Any]) -> ServerOptions:
    """`options` with the values `tune` chose, read back from the record of its choice (what
    run.json keeps under "autotune"): a run tunes once, and every cell launches what it recorded
    rather than choosing again from a cache that may have changed in between."""
    sources = choice.get("sources") or {}
    return dataclasses.replace(
        options, **{name: choice[name] for name, source in sources.items() if source == TUNED}
    )
