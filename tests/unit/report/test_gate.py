"""The CI gate on one run: pass / fail / indeterminate against the run's intervals, on fixed
data, with the boundary cases; capacity assertions; the JUnit file; the report's section."""

from __future__ import annotations

import math
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from embbench.config.assertions import parse_assertion
from embbench.report import gate, stats
from embbench.report.gate import FAIL, INDETERMINATE, PASS
from embbench.report.gate_output import junit_xml, verdict_table
from embbench.report.publish import publish_report
from embbench.report.view import RunView
from embbench.results.record import RunRecord

FIXTURE = Path(__file__).parents[2] / "fixtures" / "results" / "20261124-000000"
# Three repeats whose 95 % interval (t on the logs, 2 df) is about 40.6-58.9.
P99 = (45.0, 50.0, 52.0)


def verdict(text: str, values: Any) -> str:
    return gate.judge_values(parse_assertion(text), "x", "c=10", values).verdict


def test_the_interval_is_the_reports() -> None:
    low, high = stats.mean_interval(P99) or (0.0, 0.0)
    judged = gate.judge_values(parse_assertion("p99_ms<=100"), "x", "c=10", P99)
    assert (judged.low, judged.high) == (low, high) and judged.value == 50.0
    assert 40 < low < 41 and 58 < high < 59


@pytest.mark.parametrize(
    "text, expected",
    [
        ("p99_ms<=70", PASS),  # the whole interval below the bound
        ("p99_ms<=30", FAIL),  # the whole interval above it
        ("p99_ms<=50", INDETERMINATE),  # straddles: the median (50) meets it, the run can't tell
        ("p99_ms>=30", PASS),
        ("p99_ms>=70", FAIL),
        ("p99_ms>50", INDETERMINATE),
    ],
)
def test_pass_fail_indeterminate(text: str, expected: str) -> None:
    assert verdict(text, P99) == expected


def test_boundaries_are_the_operators() -> None:
    low, high = stats.mean_interval(P99) or (0.0, 0.0)
    # An interval ending exactly on the bound meets <= and >=, not < or >.
    assert verdict(f"p99_ms<={high!r}", P99) == PASS
    assert verdict(f"p99_ms<{high!r}", P99) == INDETERMINATE
    assert verdict(f"p99_ms>={low!r}", P99) == PASS
    assert verdict(f"p99_ms>{low!r}", P99) == INDETERMINATE
    # Starting exactly on it: beyond a strict bound, not beyond an inclusive one.
    assert verdict(f"p99_ms<{low!r}", P99) == FAIL
    assert verdict(f"p99_ms<={low!r}", P99) == INDETERMINATE
    # No spread: a zero-width interval is judged as the value itself.
    assert verdict("rps>=100", (100.0, 100.0, 100.0)) == PASS
    assert verdict("rps>100", (100.0, 100.0, 100.0)) == FAIL


def test_without_an_interval_the_gate_does_not_guess() -> None:
    one = gate.judge_values(parse_assertion("p99_ms<=1000"), "x", "c=10", [50.0])
    assert one.verdict == INDETERMINATE and "one ok repeat" in one.detail
    assert one.value == 50.0 and math.isnan(one.low)
    none = gate.judge_values(parse_assertion("p99_ms<=1000"), "x", "c=10", [math.nan])
    assert none.verdict == INDETERMINATE and none.detail == "no ok repeat"


def test_minimums_counts_and_zeros_are_judged_exactly() -> None:
    # cosine_min is the lowest over repeats: one repeat below the bound fails it.
    assert verdict("cosine_min>=0.99", (0.999, 0.985, 0.9995)) == FAIL
    assert verdict("cosine_min>=0.98", (0.999, 0.985)) == PASS
    assert verdict("cosine_min>=0.98", (0.985,)) == PASS  # exact: one repeat is enough
    # failures are summed: 0 + 0 + 3 = 3.
    assert verdict("failures<=2", (0, 0, 3)) == FAIL
    assert verdict("failures<=3", (0, 0, 3)) == PASS
    # An estimate with zeros (error_rate) takes the arithmetic interval, not the log one.
    assert verdict("error_rate<=0.5", (0.0, 0.001, 0.002)) == PASS
    assert verdict("error_rate<=0.0001", (0.0, 0.0, 0.0)) == PASS


def summary(rows: list[tuple[str, int, int, str, float, float]]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {"variant": label, "label": label, "concurrency": c, "repeat": r, "status": s,
             "rps": rps, "latency_p99_ms": p99, "requests": 2000, "cell": f"{label}-c{c}-r{r}"}
            for label, c, r, s, rps, p99 in rows
        ]
    )  # fmt: skip


def test_a_run_is_judged_per_label_and_level() -> None:
    rows = [("a", 10, r, "ok", rps, p99) for r, (rps, p99) in enumerate(
        [(100, 20), (104, 22), (98, 21)])]  # fmt: skip
    rows += [("b", 10, r, "ok", rps, p99) for r, (rps, p99) in enumerate(
        [(50, 80), (52, 90), (49, 85)])]  # fmt: skip
    rows += [("b", 100, r, "failed" if r else "ok", 60.0, 900.0) for r in range(3)]
    view = RunView.of(summary(rows), {"run_id": "t"})
    judged = gate.judge_all(view, [parse_assertion("p99_ms<=50"), parse_assertion("a: rps>=90")])
    found = {(j.check, j.label, j.level): j.verdict for j in judged}
    assert found == {
        ("p99_ms<=50", "a", "c=10"): PASS,
        ("p99_ms<=50", "b", "c=10"): FAIL,
        ("p99_ms<=50", "b", "c=100"): INDETERMINATE,  # one ok repeat: no interval
        ("a: rps>=90", "a", "c=10"): PASS,
    }
    assert gate.outcome(judged) == FAIL
    assert gate.outcome([j for j in judged if j.verdict != FAIL]) == INDETERMINATE
    assert gate.outcome([]) == PASS


def test_capacity_assertions() -> None:
    table = pd.DataFrame(
        [
            {"variant": "a", "label": "a", "slo_p99_ms": 50, "status": "found",
             "qps_at_slo": 420.0, "p99_at_slo_ms": 45.0},
            {"variant": "b", "label": "b", "slo_p99_ms": 50, "status": "indeterminate",
             "qps_at_slo": 380.0, "p99_at_slo_ms": 48.0},
            {"variant": "c", "label": "c", "slo_p99_ms": 50, "status": "indeterminate",
             "qps_at_slo": 450.0, "p99_at_slo_ms": 48.0},
            {"variant": "d", "label": "d", "slo_p99_ms": 50, "status": "none",
             "qps_at_slo": math.nan, "p99_at_slo_ms": math.nan},
        ]
    )  # fmt: skip
    judged = gate.judge_capacity(table, [parse_assertion("capacity>=400")])
    # b passes 380 rps and its boundary is unknown: it may hold 400, or not.
    assert [j.verdict for j in judged] == [PASS, INDETERMINATE, PASS, FAIL]
    assert judged[0].level == "p99 <= 50 ms"
    upper = gate.judge_capacity(table, [parse_assertion("c: capacity<=500")])
    assert [j.verdict for j in upper] == [INDETERMINATE]


def test_junit_has_a_testcase_per_check_and_cell() -> None:
    judged = [
        gate.judge_values(parse_assertion("p99_ms<=70"), "a", "c=10", P99),
        gate.judge_values(parse_assertion("p99_ms<=30"), "a", "c=10", P99),
        gate.judge_values(parse_assertion("p99_ms<=50"), "a", "c=10", P99),
    ]
    root = ET.fromstring(junit_xml(judged, "embbench run t"))
    suite = root.find("testsuite")
    assert suite is not None and suite.get("name") == "embbench run t"
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("3", "1", "1")
    cases = suite.findall("testcase")
    assert [c.get("classname") for c in cases] == [
        "embbench.assert.p99_ms<=70", "embbench.assert.p99_ms<=30", "embbench.assert.p99_ms<=50"
    ]  # fmt: skip
    assert cases[0].get("name") == "a c=10" and cases[0].find("failure") is None
    assert cases[1].find("failure") is not None and cases[2].find("skipped") is not None
    props = {p.get("name"): p.get("value") for p in cases[2].iter("property")}
    assert props["verdict"] == INDETERMINATE and float(props["value"]) == 50.0
    strict = ET.fromstring(junit_xml(judged, "s", strict=True)).find("testsuite")
    assert strict is not None and strict.get("failures") == "2" and strict.get("skipped") == "0"
    failure = strict.findall("testcase")[2].find("failure")
    assert failure is not None and failure.get("type") == INDETERMINATE
    assert verdict_table(judged)[2].startswith("| p99_ms<=70 | a | c=10 | pass |")


def test_the_report_shows_the_recorded_assertions(tmp_path: Path) -> None:
    run_dir = tmp_path / FIXTURE.name
    shutil.copytree(FIXTURE, run_dir)
    for name in ("report.md", "charts"):
        shutil.rmtree(run_dir / name, ignore_errors=True) if name == "charts" else (
            run_dir / name).unlink(missing_ok=True)  # fmt: skip
    path = run_dir / "run.json"
    record = RunRecord.load(path)
    assert record.assertions == ()  # an older run: none, and it loads unchanged
    record = RunRecord.from_json(
        {**record.to_json(), "assertions": ["p99_ms<=100000", "batched: rps>=1e6"]}
    )
    record.dump(path)
    assert RunRecord.load(path).assertions == ("p99_ms<=100000", "batched: rps>=1e6")
    published = publish_report(run_dir, out=tmp_path, force=True)
    text = published.markdown.read_text()
    assert "## Assertions" in text and "Outcome: **fail**" in text
    assert "| batched: rps>=1e+06 |" in text or "| batched: rps>=1e6 |" in text
