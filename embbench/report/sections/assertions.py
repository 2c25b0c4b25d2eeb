"""The run's assertions (`--assert`, [[assert]]) and their verdicts, judged again from the
run's numbers as `embbench run` judged them when it finished (report/gate.py)."""

from __future__ import annotations

from embbench.config.assertions import parse_assertion
from embbench.errors import ConfigError
from embbench.report import gate
from embbench.report.gate_output import counts, verdict_table
from embbench.report.sections.base import ReportOptions, Section
from embbench.report.view import RunView

INTRO = (
    "Each assertion is judged per label and level against the 95 % interval of the run's "
    "repeats: pass (the whole interval meets the bound), fail (the whole interval is beyond "
    "it), indeterminate (it straddles the bound, or fewer than two ok repeats give no "
    "interval). Minimums, counts and settings are judged exactly."
)


def body(view: RunView, options: ReportOptions) -> list[str] | None:
    if not view.record.assertions:
        return None
    try:
        assertions = [parse_assertion(text) for text in view.record.assertions]
    except ConfigError as exc:
        return [f"The recorded assertions could not be read: {exc}"]
    judged = gate.judge_all(view, assertions)
    return [INTRO, "", f"Outcome: **{gate.outcome(judged)}** ({counts(judged)}).", "",
            *verdict_table(judged)]  # fmt: skip


SECTION = Section("Assertions", body)
