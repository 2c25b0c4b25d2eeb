"""The gate's verdicts for people and for CI: a Markdown table (report.md, GitHub Actions' job
summary) and JUnit XML (`--junit FILE`), from gate.py's and regress.py's Judgements.

JUnit: one <testcase> per judgement, that is per check and per cell it covers (classname the
check, name the label and level), so a CI system lists each as a test. A fail is a <failure>.
An indeterminate verdict is a <skipped> with the reason as its message: CI systems show
skipped tests apart and do not fail the build on them, which is what an undecided check is
(not shown to pass, not shown to fail); every testcase also carries a `verdict` property
(pass / fail / indeterminate), so a tool can tell an indeterminate check from a real skip.
With `strict` (the CLI's --strict, where indeterminate fails the job) it is a <failure> of
type "indeterminate" instead.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from collections.abc import Sequence

from embbench.report.gate import FAIL, INDETERMINATE, PASS, Judgement, number
from embbench.report.markdown import table

WORDS = {PASS: "pass", FAIL: "**FAIL**", INDETERMINATE: "indeterminate"}


def verdict_table(judgements: Sequence[Judgement]) -> list[str]:
    """check | label | level | verdict | value (interval) | why: a Markdown table."""
    rows = [[j.check, j.label, j.level, WORDS[j.verdict], _value(j), j.detail] for j in judgements]
    return table(["check", "label", "level", "verdict", "value (95 % interval)", "why"], rows)


def counts(judgements: Sequence[Judgement]) -> str:
    """`3 pass, 1 fail, 0 indeterminate`."""
    found = [j.verdict for j in judgements]
    return ", ".join(f"{found.count(word)} {word}" for word in (PASS, FAIL, INDETERMINATE))


def junit_xml(judgements: Sequence[Judgement], suite: str, strict: bool = False) -> str:
    """A JUnit XML document with one testsuite named `suite`."""
    failures = sum(j.verdict == FAIL or (strict and j.verdict == INDETERMINATE) for j in judgements)
    skipped = 0 if strict else sum(j.verdict == INDETERMINATE for j in judgements)
    totals = {
        "tests": str(len(judgements)),
        "failures": str(failures),
        "errors": "0",
        "skipped": str(skipped),
    }
    root = ET.Element("testsuites", {"name": "embbench", **totals})
    group = ET.SubElement(root, "testsuite", {"name": suite, **totals, "time": "0"})
    for each in judgements:
        case = ET.SubElement(
            group,
            "testcase",
            {"classname": f"embbench.{each.kind}.{each.check}", "name": each.subject or "run",
             "time": "0"},
        )  # fmt: skip
        properties = ET.SubElement(case, "properties")
        for name, value in (
            ("verdict", each.verdict),
            ("value", _xml_number(each.value)),
            ("low", _xml_number(each.low)),
            ("high", _xml_number(each.high)),
        ):
            ET.SubElement(properties, "property", {"name": name, "value": value})
        message = f"{each.check} on {each.subject}: {each.detail}"
        if each.verdict == FAIL:
            ET.SubElement(case, "failure", {"message": message, "type": each.kind}).text = message
        elif each.verdict == INDETERMINATE and strict:
            ET.SubElement(
                case, "failure", {"message": message, "type": INDETERMINATE}
            ).text = message
        elif each.verdict == INDETERMINATE:
            ET.SubElement(case, "skipped", {"message": f"indeterminate: {message}"})
        ET.SubElement(case, "system-out").text = message
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def _value(each: Judgement) -> str:
    if math.isnan(each.value):
        return "—"
    if each.kind == "regress":  # a ratio new / base, shown as a change in %
        head = f"{(each.value - 1) * 100:+.1f} %"
        if math.isnan(each.low):
            return head
        return f"{head} ({(each.low - 1) * 100:+.1f} to {(each.high - 1) * 100:+.1f} %)"
    if math.isnan(each.low) or each.low == each.high:
        return number(each.value)
    high = number(each.high) if math.isfinite(each.high) else "∞"
    return f"{number(each.value)} ({number(each.low)}–{high})"


def _xml_number(value: float) -> str:
    return "" if math.isnan(value) else f"{value:.6g}"
