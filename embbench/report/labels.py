"""The run's labels as charts and the page show them: one colour each, and a short name.

A label names a variant and its options (`batched[onnx,int8,streams=2,max_batch_size=8]`): too
long for a legend. Charts write the short name, and the settings table (report.md and the page)
pairs it with the whole label and options. Colours follow the order the run's config lists its
variants in, so a label has the same colour in every chart of a run, whatever subset a chart
draws. No matplotlib here: the page's tables use the same colours.
"""

from __future__ import annotations

from collections.abc import Iterable

from embbench.config.options import ServerOptions, default_label
from embbench.errors import EmbbenchError
from embbench.results.record import RecordedVariant, RunRecord

# matplotlib's tab10, in its order: the default cycle, readable on white.
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
           "#7f7f7f", "#bcbd22", "#17becf")  # fmt: skip
SHORT = 20  # a label up to this many characters is its own short name


def ordered(record: RunRecord, labels: Iterable[object] = ()) -> list[str]:
    """The run's labels in its config's order, then any other label met in `labels`."""
    found = [label_of(v) for v in record.variants]
    return list(dict.fromkeys([*found, *(str(label) for label in labels)]))


def colors(record: RunRecord, labels: Iterable[object] = ()) -> dict[str, str]:
    """A colour per label (hex), the same in every chart and table of a run."""
    return {label: PALETTE[i % len(PALETTE)] for i, label in enumerate(ordered(record, labels))}


def short_names(record: RunRecord, labels: Iterable[object] = ()) -> dict[str, str]:
    """A short name per label: the label itself when short, else its variant's name, numbered
    when it is taken (`batched`, `batched #2`): by another long label of the same variant, or
    by a label that is that name itself (a short name must not read as another label)."""
    names = ordered(record, labels)
    out = {label: label for label in names if len(label) <= SHORT}
    taken = set(out.values())
    for label in names:
        if label in out:
            continue
        base = label.split("[", 1)[0][:SHORT] or label[:SHORT]
        name, count = base, 1
        while name in taken:
            count += 1
            name = f"{base} #{count}"
        out[label] = name
        taken.add(name)
    return {label: out[label] for label in names}


def label_of(entry: RecordedVariant) -> str:
    """The label its rows carry: the given one, or the name with its non-default options."""
    if entry.label:
        return entry.label
    try:
        return default_label(entry.name, ServerOptions(**entry.options), omit=entry.common)
    except (TypeError, EmbbenchError):  # options written by another embbench version
        return entry.name
