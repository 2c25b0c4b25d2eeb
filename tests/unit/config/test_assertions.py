"""Assertions and regression thresholds as the config reads them: syntax, aliases, run files."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from embbench.config.assertions import (
    Assertion,
    Threshold,
    parse_assertion,
    parse_thresholds,
)
from embbench.config.run import build_run_config
from embbench.errors import ConfigError
from embbench.report import gate


@pytest.mark.parametrize(
    "text, label, column, op, bound",
    [
        ("p99_ms<=50", None, "latency_p99_ms", "<=", 50.0),
        ("  rps >= 400 ", None, "rps", ">=", 400.0),
        ("batched: rps>2.5e2", "batched", "rps", ">", 250.0),
        ("batched, onnx int8: cosine_min>=0.99", "batched, onnx int8", "cosine_min", ">=", 0.99),
        ("failures<1", None, "failures", "<", 1.0),
        ("capacity>=400", None, "qps_at_slo", ">=", 400.0),
    ],
)
def test_assertions_parse(text: str, label: str | None, column: str, op: str, bound: float) -> None:
    found = parse_assertion(text)
    assert (found.label, found.resolved, found.op, found.bound) == (label, column, op, bound)
    assert parse_assertion(found.text) == found  # the recorded text reads back the same


@pytest.mark.parametrize(
    "text, needle",
    [
        ("p99_ms==50", "operator must be one of"),
        ("p99_ms=50", "operator must be one of"),
        ("p99_ms=<50", "operator must be one of"),
        ("p99_ms<=fast", "is not [LABEL:]COLUMN OP NUMBER"),
        ("<=50", "is not [LABEL:]COLUMN OP NUMBER"),
        ("p99_ms<=inf", "is not [LABEL:]COLUMN OP NUMBER"),
    ],
)
def test_bad_assertions_are_config_errors(text: str, needle: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(needle)):
        parse_assertion(text)


def test_unknown_or_non_numeric_columns_are_refused_before_a_run() -> None:
    with pytest.raises(
        ConfigError, match=re.escape("'p98_ms' is not a numeric summary.csv column")
    ):
        gate.check_columns([parse_assertion("p98_ms<=50")])
    with pytest.raises(ConfigError, match=re.escape("not a numeric summary.csv column")):
        gate.check_columns([parse_assertion("backend>=1")])  # text, not a number
    with pytest.raises(ConfigError, match=re.escape("capacity.csv")):
        gate.check_columns([parse_assertion("p99_ms<=50")], gate.CAPACITY)
    gate.check_columns([parse_assertion("capacity>=400")], gate.CAPACITY)
    gate.check_columns([parse_assertion("p99_ms<=50"), parse_assertion("cosine>=0.99")])
    with pytest.raises(ConfigError, match="no label 'nope'"):
        gate.check_labels([parse_assertion("nope: rps>=1")], ["batched"])


def test_thresholds_parse_with_their_worse_direction() -> None:
    rps, p99 = parse_thresholds("rps:-5%, p99_ms:+10%")
    assert rps == Threshold("rps", -5.0) and rps.limit == pytest.approx(0.95)
    assert p99.resolved == "latency_p99_ms" and p99.limit == pytest.approx(1.10)
    for bad, needle in (
        ("rps:5", "is not COLUMN"),
        ("rps-5%", "is not COLUMN"),
        ("rps:+0%", "nonzero"),
        ("rps:-100%", "nonzero"),
        ("rps:-5%,rps:-3%", "names rps twice"),
        (",", "at least one"),
    ):
        with pytest.raises(ConfigError, match=needle):
            parse_thresholds(bad)


def test_run_file_assert_tables_and_flags_add_up(tmp_path: Path) -> None:
    file = tmp_path / "run.toml"
    file.write_text(
        '[[variant]]\nname = "batched"\n\n'
        '[[assert]]\nthat = "p99_ms<=50"\n\n'
        '[[assert]]\nthat = "rps>=400"\nlabel = "batched"\n'
    )
    config = build_run_config(file=file, assertions=["cosine_min>=0.99"])
    assert config.assertions == (
        Assertion("p99_ms", "<=", 50.0),
        Assertion("rps", ">=", 400.0, "batched"),
        Assertion("cosine_min", ">=", 0.99),
    )
    file.write_text('[[variant]]\nname = "batched"\n\n[[assert]]\nwhat = "p99_ms<=50"\n')
    with pytest.raises(ConfigError, match="needs `that"):
        build_run_config(file=file)
    file.write_text('[[variant]]\nname = "batched"\n\n[[assert]]\nthat = "a: rps>1"\nlabel = "b"\n')
    with pytest.raises(ConfigError, match="names label 'a'"):
        build_run_config(file=file)
