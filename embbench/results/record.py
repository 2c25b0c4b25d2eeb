"""run.json as a typed object: its keys are spelled here (its ceilings' in ceilings.py, its
traits' in traits.py) and nowhere else.

`RunRecord` is what a run is (its config, the machine, package versions, git revision), how it
went (status, start and finish, each cell's outcome) and what it measured or chose besides its
cells (offline ceilings, each variant's traits, autotune's choices, a capacity target, the
model's description). run/ writes it (RunSession replaces fields as the run goes and dumps it
after each cell); report/ and the CLI read it with `RunRecord.load`, never a key of their own,
as pyperf's `Benchmark` owns its JSON form.

Format history (bump SCHEMA_VERSION and add a line when run.json changes shape or meaning; keep
reading every older version, migrating it in `_migrate`):
  1 (2026-11): a dict the runner filled key by key. Keys came over time, so a version 1 file
    may lack any of "pid", "order", "payload_stats", "traits" (the report then used the
    variants' current traits), "autotune", "ceiling", "ceiling_after", "ceiling_between",
    "capacity" and "slo_p99_ms"; "run_id" was always written.
  2 (2026-12): written by RunRecord, same keys and meanings. Every variant of ours has its
    "traits" (a version 1 file is given TRAITS_V1's, under what it recorded itself: what the
    report found in the registry when it read one);
    optional "model" (the served model's description); each "autotune" entry is what the
    variant's cells launched (resolved once per run, not again per cell); new ceilings no
    longer carry "cpu_ms_per_sentence" (never read; old ones keep it). Optional "command"
    (the command line that made the run, as argv; absent from older version 2 files).
    Optional "assertions" (issue 30): the run's `--assert` / [[assert]] checks as text
    (`batched: p99_ms<=50`), judged again by every report; absent when there were none and
    in older files. Not repeated in "config" (the session leaves RunConfig's field out).
    Optional "sequential" (issue 30, `--repeats auto`): the design that chose the repeats
    (method, alpha, looks, the level of every verdict, the cap) and its rounds; absent from
    runs with a fixed number of repeats, whose verdicts are at 95 %.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from embbench.errors import ResultsError
from embbench.machine.files import write_text_atomically
from embbench.machine.host import describe_host
from embbench.results.ceilings import Ceilings
from embbench.results.sequential import Sequential
from embbench.results.traits import TRAITS_V1, Traits
from embbench.results.verdicts import CONFIDENCE

SCHEMA_VERSION = 2
READS = (1, 2)  # schema versions `load` migrates to the current one

RUNNING, COMPLETE, INTERRUPTED, ABANDONED = "running", "complete", "interrupted", "abandoned"


@dataclass(frozen=True)
class Host:
    """The machine the run measured on; `facts` are all of them as recorded (host_info)."""

    cpu_model: str | None = None
    cores: int | None = None  # the affinity mask's, not the host's total
    memory_gb: float | None = None
    facts: Mapping[str, Any] = field(default_factory=dict, compare=False)

    @classmethod
    def from_json(cls, data: Any) -> Host:
        facts = dict(data) if isinstance(data, Mapping) else {}
        cores, memory = _float(facts.get("cores")), _float(facts.get("memory_gb"))
        return cls(
            cpu_model=facts.get("cpu_model") if isinstance(facts.get("cpu_model"), str) else None,
            cores=int(cores) if cores is not None and cores > 0 else None,
            memory_gb=memory,
            facts=facts,
        )

    def describe(self) -> str:
        """One line for captions and reports: CPU, cores, memory, platform."""
        return describe_host(self.facts)


@dataclass(frozen=True)
class Git:
    sha: str | None = None
    dirty: bool | None = None  # uncommitted changes to tracked files


@dataclass(frozen=True)
class CellOutcome:
    """How one cell ended, in run order (its numbers are summary.csv's row)."""

    cell: str
    status: str
    failure_reason: str | None = None


@dataclass(frozen=True)
class RecordedVariant:
    """A variant as the run's config named it: the label its rows carry, its options."""

    name: str
    label: str = ""
    options: Mapping[str, Any] = field(default_factory=dict)
    common: tuple[str, ...] = ()  # options set alike for every variant: not in the label


@dataclass(frozen=True)
class RunRecord:
    """run.json of one run, typed. Read one with `RunRecord.load(path)` (any version, migrated);
    change one with `dataclasses.replace` (frozen: a record is a value); write with `dump`.

    For a reader: `host.cores` / `host.describe()`, `status`, `cells`, `ceilings` (`.before`,
    `.between`, `.after`, `.around(backend, quantize, repeat)`, `best_rate` in ceilings.py),
    `traits_of(variant)`, `variants` and `settings` (the config without its variants),
    `autotune[label]` (what autotune chose for that label's cells), `slo_p99_ms`, `model`.
    """

    run_id: str = ""
    status: str | None = None  # running | complete | interrupted | abandoned (None: unsaid)
    pid: int | None = None  # whose run: a later start marks it abandoned if this is gone
    started_at: float | None = None
    finished_at: float | None = None
    host: Host = field(default_factory=Host)
    versions: Mapping[str, str] = field(default_factory=dict)
    git: Git = field(default_factory=Git)
    config: Mapping[str, Any] = field(default_factory=dict)  # RunConfig, as dataclasses.asdict
    payload_stats: Mapping[str, Any] | None = None
    order: tuple[str, ...] = ()  # planned cells, in run order
    traits: Mapping[str, Traits] = field(default_factory=dict)  # by variant name
    model: Mapping[str, Any] | None = None  # the served model's description, when recorded
    cells: tuple[CellOutcome, ...] = ()
    ceilings: Ceilings = field(default_factory=Ceilings)
    autotune: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # by label
    capacity: Mapping[str, Any] | None = None  # an `embbench capacity` run's target
    slo_p99_ms: float | None = None
    command: tuple[str, ...] | None = None  # the command line that made the run (argv)
    assertions: tuple[str, ...] = ()  # config/assertions.py's texts, e.g. "p99_ms<=50"
    sequential: Sequential | None = None  # how `--repeats auto` chose the repeats
    # Keys this version does not know (a hand-made fixture's note): kept and written back.
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False)

    # -- what readers ask ----------------------------------------------------------------

    def traits_of(self, variant: Any) -> Traits | None:
        """The traits the run recorded for a variant (None: a server not ours to describe)."""
        return self.traits.get(str(variant))

    @property
    def variants(self) -> tuple[RecordedVariant, ...]:
        found = self.config.get("variants")
        return tuple(
            RecordedVariant(
                name=str(v.get("name")),
                label=str(v.get("label") or ""),
                options=dict(v.get("options") or {}),
                common=tuple(str(c) for c in v.get("common") or ()),
            )
            for v in (found if isinstance(found, list | tuple) else [])
            if isinstance(v, Mapping)
        )

    @property
    def settings(self) -> dict[str, Any]:
        """The run's settings but its variants (a flag or a run file's top level)."""
        return {k: v for k, v in self.config.items() if k != "variants"}

    @property
    def verdict_confidence(self) -> float:
        """The level of the run's verdicts: 95 %, or an auto run's per-look level."""
        return CONFIDENCE if self.sequential is None else self.sequential.confidence

    def with_cell(self, outcome: CellOutcome) -> RunRecord:
        return dataclasses.replace(self, cells=(*self.cells, outcome))

    # -- its JSON form ---------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "schema_version": SCHEMA_VERSION,
            "run_id": self.run_id,
            "status": self.status,
            "pid": self.pid,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "host": dict(self.host.facts),
            "versions": dict(self.versions),
            "git": {"sha": self.git.sha, "dirty": self.git.dirty},
            "config": self.config,
            "payload_stats": self.payload_stats,
            "order": list(self.order),
            "traits": {name: t.to_json() for name, t in self.traits.items()},
            "model": self.model,
            "cells": [dataclasses.asdict(c) for c in self.cells],
            **self.ceilings.to_json(),
            "autotune": dict(self.autotune) or None,
            "capacity": self.capacity,
            "slo_p99_ms": self.slo_p99_ms,
            "command": list(self.command) if self.command is not None else None,
            "assertions": list(self.assertions) or None,
            "sequential": self.sequential.to_json() if self.sequential else None,
            **self.extra,
        }
        # Left out when unset, as the runner always did: a reader of the file sees what was.
        optional = ("status", "pid", "finished_at", "payload_stats", "model", "autotune",
                    "capacity", "slo_p99_ms", "command", "assertions",
                    "sequential")  # fmt: skip
        return {k: v for k, v in data.items() if not (k in optional and v is None)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any], run_id: str = "") -> RunRecord:
        """A record from run.json's contents of any version in READS (migrated); a mapping
        without "schema_version" is taken as the current version (a test's partial record).
        `run_id` names a run whose file has none (the folder's name)."""
        version = data.get("schema_version", SCHEMA_VERSION)
        if version not in READS:
            raise ResultsError(f"schema_version {version}; this embbench reads {READS}")
        data = _migrate(dict(data), version)
        known = {f.name for f in dataclasses.fields(cls)} | _SPLIT_KEYS
        git = _mapping(data.get("git"))
        return cls(
            run_id=str(data.get("run_id") or run_id),
            status=str(data["status"]) if data.get("status") else None,
            pid=data["pid"] if isinstance(data.get("pid"), int) else None,
            started_at=_float(data.get("started_at")),
            finished_at=_float(data.get("finished_at")),
            host=Host.from_json(data.get("host")),
            versions={str(k): str(v) for k, v in _mapping(data.get("versions")).items()},
            git=Git(sha=git.get("sha"), dirty=git.get("dirty")),
            config=_mapping(data.get("config")),
            payload_stats=data.get("payload_stats"),
            order=tuple(str(c) for c in data.get("order") or ()),
            traits={
                str(name): Traits.from_json(t)
                for name, t in _mapping(data.get("traits")).items()
                if isinstance(t, Mapping)
            },
            model=data.get("model") if isinstance(data.get("model"), Mapping) else None,
            cells=tuple(
                CellOutcome(str(c.get("cell")), str(c.get("status")), c.get("failure_reason"))
                for c in data.get("cells") or ()
                if isinstance(c, Mapping)
            ),
            ceilings=Ceilings.from_json(data),
            autotune={
                str(label): dict(choice)
                for label, choice in _mapping(data.get("autotune")).items()
                if isinstance(choice, Mapping)
            },
            capacity=data.get("capacity") if isinstance(data.get("capacity"), Mapping) else None,
            slo_p99_ms=_float(data.get("slo_p99_ms")),
            command=(
                tuple(str(a) for a in data["command"])
                if isinstance(data.get("command"), list)
                else None
            ),
            assertions=tuple(a for a in data.get("assertions") or () if isinstance(a, str)),
            sequential=(
                Sequential.from_json(data["sequential"])
                if isinstance(data.get("sequential"), Mapping)
                else None
            ),
            extra={k: v for k, v in data.items() if k not in known},
        )

    @classmethod
    def load(cls, path: Path) -> RunRecord:
        """Read a run.json (of any version in READS); a run without one raises ResultsError."""
        try:
            data = json.loads(path.read_text())
        except OSError as exc:
            raise ResultsError(f"cannot read {path}: {exc}") from exc
        except json.JSONDecodeError as exc:
            raise ResultsError(f"{path} is not valid JSON: {exc}") from exc
        if not isinstance(data, Mapping):
            raise ResultsError(f"{path} is not a run record")
        version = data.get("schema_version")
        if version not in READS:
            raise ResultsError(
                f"{path.parent} has schema_version {version}; this embbench reads "
                f"{', '.join(map(str, READS))}"
            )
        return cls.from_json(data, run_id=path.parent.name)

    def dump(self, path: Path) -> None:
        """Write run.json whole (a reader mid-run sees the previous record, never half)."""
        write_text_atomically(path, json.dumps(self.to_json(), indent=2, default=str) + "\n")


# Keys read into a field of another name, or into a part of one.
_SPLIT_KEYS = {"schema_version", "ceiling", "ceiling_between", "ceiling_after"}


def _migrate(data: dict[str, Any], version: int) -> dict[str, Any]:
    """An older run.json's contents in the current version's shape (see the format history)."""
    if version == 1:
        # Traits the run did not record are those the variants had when version 1 was written
        # (the report looked them up in the registry by the summary's variant names), field by
        # field; a variant recorded but unknown to the table keeps what it recorded.
        recorded = {k: v for k, v in _mapping(data.get("traits")).items() if isinstance(v, Mapping)}
        data["traits"] = {
            name: Traits.from_json(recorded.get(name, {}), TRAITS_V1.get(name)).to_json()
            for name in dict.fromkeys([*TRAITS_V1, *recorded])
        }
    return data


def _mapping(value: Any) -> dict[str, Any]:
    return dict(value) if isinstance(value, Mapping) else {}


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and not math.isnan(value)


def _float(value: Any) -> float | None:
    return float(value) if _number(value) else None
