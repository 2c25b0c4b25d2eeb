"""Configuration: frozen dataclasses built once (from flags or TOML) and validated there.

Server options are declared in options.py; this module holds what a run is made of, how a run
file is read, and the rules by which flags and a run file combine (`build_run_config`).
"""

from __future__ import annotations

import dataclasses
import tomllib
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from embbench.config.assertions import Assertion, assertions_from_file, parse_assertions
from embbench.config.options import (
    ServerOptions,
    Spec,
    check_value,
    default_label,
    option,
    override_options,
    server_options,
    spec_of,
)
from embbench.errors import ConfigError

PROTOCOLS = ("predict", "tei", "openai")
PAYLOADS = ("short", "medium", "long", "mixed")
DEFAULT_CONCURRENCY = (10, 100, 1000)
EXTERNAL = "external"  # the variant name of a server that runs elsewhere (--url)
AUTO = "auto"  # `--repeats auto`: repeats until decided (results/sequential.py)
AUTO_REPEATS = 2  # what an auto run gives every cell first: the fewest with an interval


@dataclass(frozen=True)
class VariantRun:
    """One variant as it appears in a run: its name, its options and the label of its rows."""

    name: str
    options: ServerOptions = field(default_factory=ServerOptions)
    label: str = ""
    # The run's quality_corpus for this variant's cells (None: the run's), so that one run can
    # interleave the same server with the retrieval measurement on and off (what it costs).
    quality_corpus: int | None = None
    # Options the run file's [defaults] set alike for every variant: they tell no row from
    # another, so they stay out of the labels (run.json keeps every variant's options).
    common: tuple[str, ...] = ()

    @property
    def display(self) -> str:
        return self.label or default_label(self.name, self.options, omit=self.common)


@dataclass(frozen=True)
class RunConfig:
    """A run's settings; fields with `flag=True` in their spec are also `run` flags."""

    variants: tuple[VariantRun, ...]
    concurrency: tuple[int, ...] = option(
        DEFAULT_CONCURRENCY, "Levels, e.g. 10,100,1000.", minimum=1, maximum=20_000, label=None
    )
    # Open loop: arrival rates (requests/s) instead of users; each rate is a cell.
    rates: tuple[float, ...] = option(
        (), "Open loop: arrival rates, e.g. 20,40,80 (instead of --concurrency).", minimum=0.01,
        maximum=100_000, label=None, flag="--rate",
    )  # fmt: skip
    arrival: str = option(
        "poisson", "Open loop arrivals: poisson (seeded) | constant.",
        choices=("poisson", "constant"), label=None,
    )  # fmt: skip
    max_inflight: int = option(
        1000, "Open loop: requests in flight beyond which arrivals are dropped (and counted).",
        minimum=1, maximum=100_000, label=None,
    )  # fmt: skip
    duration: float = option(15.0, "Measured seconds per cell.", label=None)
    warmup: float = option(5.0, "Seconds of load excluded first.", minimum=0, label=None)
    # An integer, or "auto" (results/sequential.py): AUTO_REPEATS of every cell, then one
    # more round at a time only for the cells of comparisons still undecided, up to
    # max_repeats. Typed str first so that the flag takes `--repeats auto` (a digit string is
    # made an int in __post_init__).
    repeats: str | int = option(
        1, "Repeats of every cell (order counterbalanced), or auto: 2, then more only where a "
        "winner is undecided, up to --max-repeats.", minimum=1, label=None,
    )  # fmt: skip
    max_repeats: int = option(
        5, "With --repeats auto: the most repeats any cell gets.", minimum=AUTO_REPEATS + 1,
        maximum=20, label=None,
    )  # fmt: skip
    payload: str = option("short", "short | medium | long | mixed.", choices=PAYLOADS, label=None)
    out: str = option("results", "Results folder.", label=None)
    run_id: str | None = option(None, "Name of the run folder.", label=None)
    url: str | None = option(None, "Drive a server already running there.", label=None)
    protocol: str = option("predict", "predict | tei | openai (with --url).", choices=PROTOCOLS,
                           label=None)  # fmt: skip
    pid: int | None = option(None, "Process to sample (with --url).", minimum=1, label=None)
    load_processes: int = option(1, "Locust --processes.", minimum=1, maximum=64, label=None)
    # Locust workers on other machines (`embbench load-worker`).
    load_workers: int = option(
        0, "Wait for N `embbench load-worker`s (other machines).", minimum=0, maximum=1024,
        label=None,
    )  # fmt: skip
    master_port: int = option(5557, "Locust master port.", minimum=1, maximum=65535, label=None)
    # The correctness check under load (quality.py): answers kept per second per Locust process.
    check_rate: int = option(
        100, "Answers checked per second per Locust process (0: none).", minimum=0,
        maximum=100_000, label=None,
    )  # fmt: skip
    # Retrieval agreement (run/retrieval.py, run/agreement.py): chunks of the shipped corpus
    # embedded through each cell's endpoint after its window, and half as many sentence
    # queries inside it; 0: not measured. 48 sentences in a window cost it little (the
    # documents inside it cost 11.5 %: run/agreement.py); more narrows the intervals.
    quality_corpus: int = option(
        96, "Retrieval-agreement documents embedded per cell (0: none; min 10).", minimum=0,
        maximum=800, label=None,
    )  # fmt: skip
    # After a window (run/after_window.py), once per label (run/session.py): batch invariance
    # and the cache check.
    server_checks: bool = option(
        True, "After each label's first window: batch invariance and the cache-defeat check.",
        label=None,
    )  # fmt: skip
    # One server per variant and repeat, its levels run in turn against it (run/served.py);
    # false: a fresh server for every cell.
    reuse_server: bool = option(
        True, "One server per variant and repeat, its levels in turn (off: one per cell).",
        label=None,
    )  # fmt: skip
    startup_timeout: float = 180.0
    # `capacity --cores N`: the server's tree pinned to N cores (threads N), the load generator
    # to the others (machine/affinity.py); None: no pinning. Set per core count, not a flag.
    pin_cores: int | None = None
    # `capacity` sets it: the retrieval queries too are embedded after the window (the
    # documents always are: run/agreement.py). A capacity probe judges p99 at a low rate, where
    # even a few requests of its own would be part of the tail (shared-mutex "failed" 50 ms at
    # 1 rps on its own corpus traffic, run 20261203-224616). Not a flag.
    corpus_after_window: bool = False
    seed: int = option(0, "Seed of the payload sample and of the cell order.", label=None)
    # Variants' order in each repeat (plan.py): counterbalanced so drift hits all alike.
    order: str = option(
        "alternate", "alternate (reversed every other repeat) | shuffle (seeded) | fixed.",
        choices=("alternate", "shuffle", "fixed"), label=None,
    )  # fmt: skip
    # Measure the offline ceiling of every backend in the run, before the cells and again after
    # them (embbench.servers.ceiling), each measurement `ceiling_seconds` long.
    ceiling: bool = False
    ceiling_seconds: float = 3.0
    # What the run must show, judged after it (report/gate.py): `--assert` and [[assert]].
    assertions: tuple[Assertion, ...] = ()

    def corpus_of(self, run: VariantRun) -> int:
        """The retrieval corpus of `run`'s cells: its own quality_corpus, else the run's."""
        return self.quality_corpus if run.quality_corpus is None else run.quality_corpus

    @property
    def adaptive(self) -> bool:
        """`--repeats auto`: repeats are added where a verdict is undecided."""
        return self.repeats == AUTO

    @property
    def planned_repeats(self) -> int:
        """Repeats every cell gets (plan.py): the count, or an auto run's first AUTO_REPEATS."""
        return AUTO_REPEATS if isinstance(self.repeats, str) else self.repeats

    def __post_init__(self) -> None:
        if not self.variants and self.url is None:
            raise ConfigError("no variant given: pass --variant NAME or a config file")
        hints = typing.get_type_hints(RunConfig)
        for each in fields(self):
            if each.name in ("variants", "assertions"):
                continue
            value = getattr(self, each.name)
            if each.name == "concurrency":
                if not value or not isinstance(value, tuple):
                    raise ConfigError(f"concurrency levels must be positive, got {value}")
                for level in value:
                    check_value("concurrency levels", level, int, spec_of(each))
                continue
            if each.name == "repeats":
                object.__setattr__(self, "repeats", _repeats(value))
                continue
            if each.name == "rates":
                if not isinstance(value, tuple):
                    raise ConfigError(f"rates must be a list of numbers, got {value!r}")
                for rate in value:
                    check_value("rate", rate, float, spec_of(each))
                continue
            check_value(each.name, value, hints[each.name], spec_of(each))
        if self.load_workers and self.load_processes > 1:
            raise ConfigError(
                "--load-processes and --load-workers do not combine: with remote workers the "
                "local machine runs only Locust's master; start `embbench load-worker "
                "--processes N` on each worker machine instead"
            )
        if self.ceiling_seconds <= 0:
            raise ConfigError(f"ceiling_seconds must be positive, got {self.ceiling_seconds}")
        if self.duration <= 0:
            raise ConfigError("duration must be positive and warmup not negative")
        for corpus in (self.quality_corpus, *(v.quality_corpus for v in self.variants)):
            if corpus is not None:
                check_value("quality_corpus", corpus, int, spec_of(_QUALITY_CORPUS))
            if corpus is not None and 0 < corpus < 10:
                raise ConfigError(
                    f"--quality-corpus {corpus}: recall@10 needs at least 10 "
                    "documents (0 turns the measurement off)"
                )
        labels = [v.display for v in self.variants]
        dupes = sorted({label for label in labels if labels.count(label) > 1})
        if dupes:
            raise ConfigError(f"two variants share the label {dupes[0]!r}; give one a `label`")


_QUALITY_CORPUS = next(f for f in fields(RunConfig) if f.name == "quality_corpus")


def _repeats(value: Any) -> str | int:
    """A count of repeats (>= 1, given as a number or digits) or AUTO."""
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return value
    if value == AUTO:
        return AUTO
    raise ConfigError(f"repeats must be a positive integer or {AUTO!r}, got {value!r}")


def run_flag_fields() -> list[tuple[dataclasses.Field[Any], Any, Spec]]:
    """The RunConfig fields that are `run` flags (those declared with `option`)."""
    hints = typing.get_type_hints(RunConfig)
    return [(f, hints[f.name], spec_of(f)) for f in fields(RunConfig) if "spec" in f.metadata]


_RUN_FIELDS = {f.name for f in fields(RunConfig)} - {"variants", "assertions"}


def load_run_file(path: Path) -> tuple[dict[str, Any], list[VariantRun]]:
    """Read a TOML run file: `[run]` settings, `[defaults]` server options, `[[variant]]` rows
    and `[[assert]]` checks (returned under the settings' key "assertions")."""
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError as exc:
        raise ConfigError(f"config file {path} does not exist") from exc
    except IsADirectoryError as exc:
        raise ConfigError(f"config file {path} is a folder") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc
    unknown = set(data) - {"run", "defaults", "variant", "assert"}
    if unknown:
        raise ConfigError(f"{path}: unknown section {sorted(unknown)[0]!r}")
    run = dict(data.get("run", {}))
    bad = set(run) - _RUN_FIELDS
    if bad:
        raise ConfigError(f"{path}: unknown [run] key {sorted(bad)[0]!r}")
    for key in ("concurrency", "rates"):
        if key in run:
            if not isinstance(run[key], list):
                raise ConfigError(f"{path}: [run] {key} must be a list of numbers")
            run[key] = tuple(run[key])
    if "assert" in data:
        run["assertions"] = assertions_from_file(data["assert"], str(path))
    defaults = dict(data.get("defaults", {}))
    server_options(defaults, f"{path} [defaults]")
    variants = []
    for index, entry in enumerate(data.get("variant", [])):
        entry = dict(entry)
        if "name" not in entry:
            raise ConfigError(f"{path}: variant #{index + 1} has no name")
        name = str(entry.pop("name"))
        label = str(entry.pop("label", ""))
        corpus = entry.pop("quality_corpus", None)  # a run setting a variant may set for itself
        options = server_options({**defaults, **entry}, f"{path} variant {name!r}")
        variants.append(VariantRun(name=name, options=options, label=label, quality_corpus=corpus))
    common = tuple(
        sorted(k for k in defaults if len({getattr(v.options, k) for v in variants}) == 1)
    )
    return run, [dataclasses.replace(v, common=common) for v in variants]


def build_run_config(
    *,
    file: Path | None = None,
    variants: Sequence[str] = (),
    server: Mapping[str, Any] | None = None,
    settings: Mapping[str, Any] | None = None,
    label: str | None = None,
    assertions: Sequence[str] = (),
) -> RunConfig:
    """The rules by which flags and a run file combine into one RunConfig.

    - The file gives `[run]` settings and variants with their options.
    - Variants named on the command line replace the file's list, each keeping the file's
      options where the file has that variant.
    - Server flags (`server`, None = not given) win over every variant's options.
    - Run flags (`settings`, None = not given) win over the file's `[run]`.
    - With `--url`, the one variant is the external server, labelled `label` or "external".
    - Assertions (`--assert`) are added to the file's `[[assert]]` ones: each is a check, and
      a flag's check is one more, not a replacement.
    """
    given = {k: v for k, v in (settings or {}).items() if v is not None}
    if given.get("rates") and given.get("concurrency"):
        raise ConfigError(
            "--rate and --concurrency do not combine: a cell is an open loop (arrival rates) "
            "or a closed loop (users); run them apart"
        )
    run_settings: dict[str, Any] = {}
    runs: list[VariantRun] = []
    if file is not None:
        run_settings, runs = load_run_file(file)
    if variants:
        by_name = {r.name: r for r in runs}
        runs = [by_name.get(name, VariantRun(name=name)) for name in variants]
    overrides = dict(server or {})
    runs = [dataclasses.replace(r, options=override_options(r.options, overrides)) for r in runs]
    if given.get("url") is not None:
        options = override_options(ServerOptions(), overrides)
        runs = [VariantRun(name=EXTERNAL, options=options, label=label or EXTERNAL)]
    run_settings.update(given)
    checks = (*run_settings.pop("assertions", ()), *parse_assertions(assertions))
    unknown = set(run_settings) - _RUN_FIELDS
    if unknown:
        raise ConfigError(f"unknown run setting {sorted(unknown)[0]!r}")
    return RunConfig(variants=tuple(runs), assertions=checks, **run_settings)
