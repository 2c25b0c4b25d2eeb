"""The settings a run was made with: its options, and each variant's label and non-default
options."""

from __future__ import annotations

from embbench.config.options import option_fields
from embbench.config.run import ServerOptions, default_label
from embbench.errors import EmbbenchError
from embbench.report.markdown import setting
from embbench.report.markdown import table as _table
from embbench.report.sections.base import ReportOptions, Section
from embbench.report.view import RunView
from embbench.results.record import RecordedVariant, RunRecord

# Options only: `given` (which names the user set) is bookkeeping, not a setting to show.
DEFAULT_OPTIONS = {f.name: f.default for f, _, _ in option_fields()}


def body(view: RunView, options: ReportOptions) -> list[str]:
    return _settings(view.record) or ["Not recorded in run.json."]


SECTION = Section("Settings", body)


def _settings(record: RunRecord) -> list[str]:
    rows = [[k, setting(v)] for k, v in record.settings.items() if v is not None]
    lines = _table(["setting", "value"], rows) if rows else []
    variants = [
        [_variant_label(v), v.name,
         setting({k: x for k, x in v.options.items()
                  if k in DEFAULT_OPTIONS and x != DEFAULT_OPTIONS[k]}) or "defaults"]
        for v in record.variants
    ]  # fmt: skip
    return [*lines, "", *_table(["label", "variant", "options"], variants)] if variants else lines


def _variant_label(entry: RecordedVariant) -> str:
    """The label its rows carry: the given one, or the name with its non-default options."""
    if entry.label:
        return entry.label
    try:
        return default_label(entry.name, ServerOptions(**entry.options))
    except (TypeError, EmbbenchError):  # options written by another embbench version
        return entry.name
