"""The server checks run once per label (run/session.py): the first cell of a label makes them,
its later cells (repeats, levels, capacity probes) skip them, and a label whose check could
not be made tries again in its next cell. The cells are fakes; what is under test is the
session's bookkeeping of which config each cell gets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from embbench.config.run import RunConfig, VariantRun
from embbench.results.record import RunRecord
from embbench.run import session as session_mod
from embbench.run.after_window import COLUMNS
from embbench.run.plan import Cell, plan
from embbench.run.progress import ProgressListener
from embbench.run.session import RunOutcome, RunSession


class _Summary:
    def append(self, row: dict[str, Any]) -> None:
        pass


class _Session(RunSession):
    def __init__(self, config: RunConfig, folder: Path) -> None:
        self.config, self.progress = config, ProgressListener()
        self.run_dir, self.payloads = folder, ["a text"]
        self.outcome = RunOutcome(folder)
        self.record = RunRecord(run_id="checks")
        self.summary = _Summary()  # type: ignore[assignment]
        self.server_checked = set()
        self.reuse_servers, self.served = False, None

    def save(self) -> None:
        pass


def test_checks_once_per_label_and_again_after_a_check_that_was_not_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[tuple[str, bool]] = []
    unanswered = {"shared-mutex"}  # its first check fails: columns left empty

    class FakeRunner:
        def __init__(self, config: RunConfig, cell: Cell, *args: Any, **kwargs: Any) -> None:
            self.config, self.cell = config, cell

        def run(self) -> dict[str, Any]:
            label = self.cell.run.display
            seen.append((label, self.config.server_checks))
            row: dict[str, Any] = {"status": "ok", "label": label}
            if self.config.server_checks:
                made = label not in unanswered
                unanswered.discard(label)
                row.update(dict.fromkeys(COLUMNS, 1.0 if made else None))
            return row

    monkeypatch.setattr(session_mod, "CellRunner", FakeRunner)
    config = RunConfig(
        variants=(VariantRun("shared-rwlock"), VariantRun("shared-mutex")),
        concurrency=(10, 100), repeats=2,
    )  # fmt: skip
    session = _Session(config, tmp_path)
    for cell in plan(config):
        session.run_cell(cell)
    checked = [label for label, on in seen if on]
    assert sorted(checked) == ["shared-mutex", "shared-mutex", "shared-rwlock"]
    assert len(seen) == 8 and session.server_checked == {"shared-rwlock", "shared-mutex"}


def test_a_variant_keeps_one_server_per_repeat_and_the_machine_is_alone_for_ceilings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With reuse, the cells of one variant and repeat get the same holder (run/served.py),
    the next variant or repeat a new one, the old one stopped first; a ceiling or the end of
    the run stops the last."""
    given: list[tuple[str, Any]] = []
    stopped: list[tuple[str, int]] = []

    class FakeRunner:
        def __init__(self, config: RunConfig, cell: Cell, *args: Any, **kwargs: Any) -> None:
            self.cell, self.served = cell, kwargs["served"]

        def run(self) -> dict[str, Any]:
            given.append((self.cell.name, self.served))
            return {"status": "ok", "label": self.cell.run.display}

    monkeypatch.setattr(session_mod, "CellRunner", FakeRunner)
    monkeypatch.setattr(
        session_mod.Served, "stop", lambda served: stopped.append(served.key)
    )  # fmt: skip
    monkeypatch.setattr(session_mod, "measure_ceilings", lambda *args: [])
    config = RunConfig(
        variants=(VariantRun("shared-rwlock"), VariantRun("shared-mutex")),
        concurrency=(10, 100), repeats=2,
    )  # fmt: skip
    session = _Session(config, tmp_path)
    session.reuse_servers = True
    cells = plan(config)
    for cell in cells[:4]:
        session.run_cell(cell)
    holders = [served for _, served in given]
    assert holders[0] is holders[1] and holders[2] is holders[3] and holders[1] is not holders[2]
    assert [h.key for h in holders[::2]] == [("shared-rwlock", 0), ("shared-mutex", 0)]
    assert stopped == [("shared-rwlock", 0)]  # before the next variant's first cell
    session.measure_ceilings(session_mod.BETWEEN, repeat=0)
    assert stopped[-1] == ("shared-mutex", 0) and session.served is None
    session.run_cell(cells[4])
    assert given[-1][1].key == ("shared-mutex", 1)  # odd repeat: the variants reversed
