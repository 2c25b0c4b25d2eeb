"""run.json as a typed object: old versions load and migrate, the current one round-trips."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from embbench.errors import ResultsError
from embbench.results.ceilings import Ceiling, Ceilings, best_rate
from embbench.results.record import SCHEMA_VERSION, CellOutcome, RunRecord
from embbench.results.traits import TRAITS_V1, Traits

FIXTURE = Path(__file__).parents[2] / "fixtures" / "results" / "20261124-000000"


def test_the_version_1_fixture_loads_with_its_fields_typed() -> None:
    record = RunRecord.load(FIXTURE / "run.json")
    assert record.run_id == "20261124-000000" and record.status == "complete"
    assert record.host.cores == 2 and "24 GB memory" in record.host.describe()
    assert record.git.sha == "0" * 40 and record.git.dirty is False
    assert record.versions["torch"] == "2.13.0"
    assert [v.name for v in record.variants] == ["shared-rwlock", "shared-mutex", "batched"]
    assert record.settings["concurrency"] == [10, 100] and "variants" not in record.settings
    assert record.cells[10] == CellOutcome(
        "010-shared-mutex-c100-r1",
        "failed",
        "server exited with code -9 during the measured window; "
        "see logs/010-shared-mutex-c100-r1.log",
    )
    [ceiling] = record.ceilings.before
    assert (ceiling.backend, ceiling.quantize, ceiling.sentences_per_s) == ("torch", "none", 45.0)
    assert ceiling.streams is None  # from before thread layouts were measured
    assert best_rate(ceiling) == (45.0, "sorted")


def test_version_1_without_traits_gets_those_of_its_time() -> None:
    # The report once asked the registry; the migration's table says what it said then.
    record = RunRecord.load(FIXTURE / "run.json")
    assert record.traits_of("shared-rwlock") == Traits(lock="rwlock", overlap=True)
    assert record.traits_of("batched") == TRAITS_V1["batched"]
    assert record.traits_of("external") is None


def test_version_1_recorded_traits_win_field_by_field() -> None:
    data = {"schema_version": 1, "traits": {"batched": {"lock": "mutex"}, "mine": {"ours": 0}}}
    record = RunRecord.from_json(data)
    assert record.traits_of("batched") == dataclasses.replace(TRAITS_V1["batched"], lock="mutex")
    assert record.traits_of("mine") == Traits(ours=False)


def test_the_current_version_round_trips(tmp_path: Path) -> None:
    record = dataclasses.replace(
        RunRecord.load(FIXTURE / "run.json"),
        autotune={"batched": {"streams": 2, "sources": {"streams": "tuned"}}},
        model={"model": "m", "dimensions": 384},
        slo_p99_ms=50.0,
    )
    path = tmp_path / "run.json"
    record.dump(path)
    written = json.loads(path.read_text())
    assert written["schema_version"] == SCHEMA_VERSION
    assert written["fixture"] == "hand-made for tests; not a measurement"  # kept as it was
    assert written["ceiling"] == [{"backend": "torch", "quantize": "none", "sentences_per_s": 45.0}]
    assert "ceiling_after" not in written  # nothing measured there
    again = RunRecord.load(path)
    assert again == record and again.to_json() == written
    assert [p.name for p in tmp_path.iterdir()] == ["run.json"]  # no temporary left


def test_ceilings_around_a_repeat_and_in_order() -> None:
    def one(rate: float, after: int | None = None) -> Ceiling:
        entry = {"backend": "onnx", "quantize": "int8", "sentences_per_s": rate}
        return dataclasses.replace(Ceiling.from_json(entry), after_repeat=after)

    ceilings = Ceilings(before=(one(10.0),), between=(one(8.0, 0),), after=(one(4.0),))
    assert [c.sentences_per_s for c in ceilings.around("onnx", "int8", 1)] == [8.0, 4.0]
    assert [when for when, _ in ceilings.in_order()] == ["", " after repeat 0", " after the cells"]
    assert ceilings.to_json()["ceiling_between"][0]["after_repeat"] == 0
    assert ceilings.first("onnx", None) is None and ceilings.first("onnx", "int8") is not None


def test_other_versions_are_refused(tmp_path: Path) -> None:
    for version in (None, 99):
        path = tmp_path / f"v{version}" / "run.json"
        path.parent.mkdir()
        path.write_text(json.dumps({"schema_version": version}))
        with pytest.raises(ResultsError, match=f"schema_version {version}"):
            RunRecord.load(path)
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ResultsError, match="not valid JSON"):
        RunRecord.load(tmp_path / "bad.json")
