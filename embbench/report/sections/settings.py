"""The settings a run was made with: its options, and each variant's label and non-default
options."""

from __future__ import annotations

from embbench.config.options import option_fields
from embbench.report import labels
from embbench.report.markdown import setting
from embbench.report.markdown import table as _table
from embbench.report.sections.base import ReportOptions, Section
from embbench.report.view import RunView
from embbench.results.record import RunRecord

# Options only: `given` (which names the user set) is bookkeeping, not a setting to show.
DEFAULT_OPTIONS = {f.name: f.default for f, _, _ in option_fields()}


def body(view: RunView, options: ReportOptions) -> list[str]:
    return _settings(view.record) or ["Not recorded in run.json."]


SECTION = Section("Settings", body)


def _settings(record: RunRecord) -> list[str]:
    rows = [[k, setting(v)] for k, v in record.settings.items() if v is not None]
    lines = _table(["setting", "value"], rows) if rows else []
    variants = [
        [labels.label_of(v), v.name,
         setting({k: x for k, x in v.options.items()
                  if k in DEFAULT_OPTIONS and x != DEFAULT_OPTIONS[k]}) or "defaults"]
        for v in record.variants
    ]  # fmt: skip
    headers = ["label", "variant", "options"]
    # A label too long for a legend is written short in the charts: say which is which.
    short = labels.short_names(record, (row[0] for row in variants))
    if any(short[row[0]] != row[0] for row in variants):
        headers.append("in charts")
        variants = [[*row, short[row[0]]] for row in variants]
    return [*lines, "", *_table(headers, variants)] if variants else lines
