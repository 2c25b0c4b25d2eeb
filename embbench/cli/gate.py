"""The CI gate's face: checks validated before anything starts, verdicts printed after, the
JUnit file and GitHub Actions' job summary written, and the exit status chosen.

The judging itself is report/gate.py (one run's assertions) and report/regress.py (two runs);
this module only renders what they found and maps it to an exit status:
3 (ExitStatus.GATE_FAILED) when a check failed, 4 (GATE_UNDECIDED) with --strict when none
failed but one was indeterminate, 0 otherwise. A failed cell (1) and an interrupt (130) keep
their own status and outrank these.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from embbench.cli.render import console, err_console, print_table
from embbench.config.assertions import Threshold, parse_thresholds
from embbench.config.run import RunConfig
from embbench.errors import ExitStatus
from embbench.report import gate
from embbench.report.gate_output import WORDS, counts, junit_xml, verdict_table
from embbench.report.regress import check_regressions
from embbench.report.view import RunView
from embbench.results.folder import load_run

STEP_SUMMARY = "GITHUB_STEP_SUMMARY"  # GitHub Actions appends this file to the job's page

JUNIT_HELP = (
    "Write the checks' verdicts as JUnit XML here: one testcase per check and cell; a fail is "
    "a <failure>, an indeterminate one a <skipped> (a <failure> with --strict)."
)
REGRESS_HELP = (
    "e.g. 'rps:-5%,p99_ms:+10%' (the sign is the worse direction): exit 3 where a cell of b "
    "changed beyond its threshold and significantly (Welch t on the logs, 95 %); a threshold "
    "the repeats cannot detect is said so, with the repeats that would."
)
STRICT_HELP = "An indeterminate check fails the gate too (exit 4 when none failed)."
ASSERT_HELP = (
    "[LABEL:]COLUMN OP NUMBER, e.g. 'p99_ms<=50', 'batched: rps>=400' (OP: <= >= < >; a "
    "summary.csv column, or for capacity a capacity.csv one, or a short name: p50_ms, p99_ms, "
    "cpu_pct, pss_mb, capacity, ...); repeatable. Judged after the run against its 95 % "
    "intervals: pass, fail (exit 3) or indeterminate (exit 0; 4 with --strict)."
)


def check_before(config: RunConfig, table: str) -> None:
    """Unknown columns or labels in the config's assertions: ConfigError, before any cell."""
    gate.check_columns(config.assertions, table)
    known = [v.display for v in config.variants] + [v.name for v in config.variants]
    gate.check_labels(config.assertions, known)


def after_run(
    command: str, run_dir: Path, config: RunConfig, *, junit: Path | None, strict: bool
) -> int:
    """The config's assertions against the run just written: printed, written, an exit
    status (0 with no assertions)."""
    judged = (
        gate.judge_all(RunView(load_run(run_dir)), config.assertions) if config.assertions else []
    )
    suite = f"embbench {command} {run_dir.name}"
    return finish(judged, suite=suite, junit=junit, strict=strict, title="assertions")


def thresholds_before(text: str | None) -> tuple[Threshold, ...]:
    """--fail-on-regress parsed and its columns checked (ConfigError: exit 2)."""
    thresholds = parse_thresholds(text) if text is not None else ()
    gate.check_columns(thresholds, gate.RUN)
    return thresholds


def after_compare(
    run_a: Path, run_b: Path, thresholds: Sequence[Threshold], junit: Path | None, strict: bool
) -> int:
    """b against a on each threshold: printed, written, an exit status."""
    judged = check_regressions(load_run(run_a), load_run(run_b), thresholds)
    return finish(
        judged,
        suite=f"embbench compare {run_a.name} {run_b.name}",
        junit=junit,
        strict=strict,
        title=f"regressions of {run_b.name} against {run_a.name}",
    )


def finish(
    judgements: Sequence[gate.Judgement],
    *,
    suite: str,
    junit: Path | None,
    strict: bool,
    title: str,
) -> int:
    """Print the verdicts, write the JUnit file and the job summary; the gate's exit status."""
    if judgements:
        print_table(
            f"{title}: {counts(judgements)}",
            ["check", "label", "level", "verdict", "why"],
            [[j.check, j.label, j.level, WORDS[j.verdict].strip("*"), j.detail]
             for j in judgements],
        )  # fmt: skip
    if junit is not None:
        junit.parent.mkdir(parents=True, exist_ok=True)
        junit.write_text(junit_xml(judgements, suite, strict=strict))
        console.print(f"junit: {junit}", markup=False, highlight=False)
    summary = os.environ.get(STEP_SUMMARY)
    if summary and judgements:
        word = gate.outcome(judgements)
        lines = [
            f"### {title}: {word}",
            "",
            f"{counts(judgements)}",
            "",
            *verdict_table(judgements),
        ]
        with open(summary, "a", encoding="utf-8") as handle:
            handle.write("\n".join(lines) + "\n\n")
    word = gate.outcome(judgements)
    if word == gate.FAIL:
        err_console.print(f"[red]gate failed[/]: {counts(judgements)}")
        return int(ExitStatus.GATE_FAILED)
    if word == gate.INDETERMINATE:
        if strict:
            err_console.print(f"[yellow]gate undecided[/] (--strict): {counts(judgements)}")
            return int(ExitStatus.GATE_UNDECIDED)
        err_console.print(f"[yellow]gate passed with undecided checks[/]: {counts(judgements)}")
    return int(ExitStatus.OK)
