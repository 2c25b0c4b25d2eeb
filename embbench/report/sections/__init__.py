"""The sections of report.md, in the order it shows them: one module each, one line here.

document.py writes the header and then every section of SECTIONS; a section whose body is None
for a run (no capacity.csv, no baseline asked for) is left out. See base.py for what a section is.
"""

from __future__ import annotations

from embbench.report.sections import (
    answer,
    assertions,
    baseline,
    capacity,
    ceiling,
    charts,
    failed,
    noise,
    phases,
    quality,
    results,
    settings,
    startup,
    why,
    winners,
)
from embbench.report.sections.base import Section

SECTIONS: tuple[Section, ...] = (
    answer.SECTION,
    settings.SECTION,
    results.SECTION,
    quality.SECTION,
    ceiling.SECTION,
    capacity.SECTION,
    startup.SECTION,
    assertions.SECTION,
    noise.SECTION,
    winners.SECTION,
    baseline.SECTION,
    phases.SECTION,
    why.SECTION,
    failed.SECTION,
    charts.SECTION,
)
