"""The CI gate from the command line: usage errors before anything starts (exit 2),
`compare --fail-on-regress` with its exit status, JUnit file and GitHub job summary."""

from __future__ import annotations

import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pandas as pd
import pytest

from tests.unit.cli.test_app import FIXTURE, assert_one_line_usage_error, embbench


@pytest.mark.parametrize(
    "args, needle",
    [
        (["run", "--variant", "batched", "--assert", "p98_ms<=50"], "'p98_ms' is not a numeric"),
        (["run", "--variant", "batched", "--assert", "p99_ms==50"], "operator must be one of"),
        (["run", "--variant", "batched", "--assert", "nope: rps>=1"], "no label 'nope'"),
        (["capacity", "--variant", "batched", "--slo-p99-ms", "50", "--assert", "rps>=1"],
         "not a numeric capacity.csv column"),
        (["compare", str(FIXTURE), str(FIXTURE), "--fail-on-regress", "rps:5%"],
         "is not COLUMN:+N%"),
        (["compare", str(FIXTURE), str(FIXTURE), "--fail-on-regress", "p98_ms:+5%"],
         "'p98_ms' is not a numeric"),
    ],
)  # fmt: skip
def test_gate_mistakes_are_one_line_and_exit_2(args: list[str], needle: str) -> None:
    assert_one_line_usage_error(embbench(*args), needle)


def slower_copy(tmp_path: Path, label: str, factor: float) -> Path:
    """The fixture run with one label's throughput scaled by `factor`."""
    copy = tmp_path / "new"
    shutil.copytree(FIXTURE, copy)
    summary = pd.read_csv(copy / "summary.csv")
    summary.loc[summary["label"] == label, "rps"] *= factor
    summary.to_csv(copy / "summary.csv", index=False)
    return copy


def test_compare_fails_on_a_regression_and_writes_junit_and_the_job_summary(
    tmp_path: Path,
) -> None:
    new = slower_copy(tmp_path, "batched", 0.5)
    junit, step = tmp_path / "out" / "gate.xml", tmp_path / "step.md"
    done = embbench(
        "compare", str(FIXTURE), str(new), "--fail-on-regress", "rps:-5%", "--junit",
        str(junit), GITHUB_STEP_SUMMARY=str(step),
    )  # fmt: skip
    assert done.returncode == 3, done.stdout + done.stderr
    assert "gate failed" in done.stderr
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite is not None and int(suite.get("failures") or 0) >= 1
    failed = [c for c in suite.findall("testcase") if c.find("failure") is not None]
    assert failed and all(c.get("name", "").startswith("batched ") for c in failed)
    assert all(c.get("classname") == "embbench.regress.rps:-5%" for c in failed)
    summary = step.read_text()
    assert summary.startswith("### regressions of new against 20261124-000000: fail")
    assert "| rps:-5% | batched |" in summary and "**FAIL**" in summary


def test_compare_of_a_run_with_itself_passes_and_strict_asks_for_a_decision(
    tmp_path: Path,
) -> None:
    same = slower_copy(tmp_path, "batched", 1.0)
    done = embbench("compare", str(FIXTURE), str(same), "--fail-on-regress", "rps:-5%")
    assert done.returncode == 0, done.stdout + done.stderr
    strict = embbench(
        "compare", str(FIXTURE), str(same), "--fail-on-regress", "rps:-5%,p99_ms:+1%",
        "--strict",
    )  # fmt: skip
    # Two repeats a side cannot exclude a 1 % rise in p99: undecided, exit 4 under --strict.
    assert strict.returncode == 4, strict.stdout + strict.stderr
    assert "would need about" in strict.stdout


def test_after_a_run_the_assertions_set_the_exit_status(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from embbench.cli import gate as gate_cli
    from embbench.config.run import build_run_config

    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    junit = tmp_path / "gate.xml"

    def status(*checks: str, strict: bool = False) -> int:
        config = build_run_config(variants=["batched"], assertions=checks)
        gate_cli.check_before(config, "run")
        return gate_cli.after_run("run", FIXTURE, config, junit=junit, strict=strict)

    assert status("cosine_min>=0.99") == 0
    assert status("batched: p99_ms<=100") == 3  # the fixture's p99 is about half a second
    assert status("batched: rps>=25") == 0  # 20.6-46.7 at c=10 straddles 25: undecided
    assert status("batched: rps>=25", strict=True) == 4
    cases = ET.parse(junit).getroot().iter("testcase")
    assert [c.find("failure").get("type") for c in cases] == ["indeterminate"] * 2  # type: ignore[union-attr]
    assert status() == 0  # no assertions: nothing to judge, an empty suite
    assert ET.parse(junit).getroot().get("tests") == "0"
