"""A chart's figure as inline SVG for the page, with its values as hover text.

matplotlib's own SVG backend draws the very figure the PNG is drawn from, so the page and the
PNGs cannot disagree, and it needs nothing beyond matplotlib. Text stays text (`svg.fonttype`
none: smaller, selectable, the page's font). Hover values are SVG <title> elements: each
labelled line, scatter and bar gets an id before drawing, and its <g> gets a <title> listing
its points, which every browser shows as a tooltip with no script.
"""

from __future__ import annotations

import html
import io
import re
from collections.abc import Iterable

import matplotlib
import numpy as np
from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.collections import PathCollection
from matplotlib.container import BarContainer, ErrorbarContainer
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

MAX_POINTS = 60  # a longer series (the timeline's) gets no hover text: a tooltip of it is noise
# Past this many points in one figure (a long run's timeline: 100 cells of 15 s of samples is
# about 2 MB of SVG paths), its long lines are drawn as an image inside the SVG, at
# RASTER_DPI; axes, ticks, text and short series stay vectors.
DENSE_POINTS = 20_000
RASTER_DPI = 144
RASTER_BELOW = 1.5  # under the lines' usual zorder (2), above the shaded spans' (1)


def inline_svg(fig: Figure, name: str, title: str = "") -> str:
    """The figure as an <svg> element to place in a page; ids are prefixed with `name`, so
    several charts on one page never share one."""
    titles = _hover_titles(fig, name)
    dense = _dense_lines(fig)
    zorders = [line.get_zorder() for line in dense]
    buffer = io.StringIO()
    try:
        # One image per axes of what is drawn below RASTER_BELOW (the series, moved there, and
        # the shaded windows under them): an image per line would weigh more than its path.
        for ax in fig.axes if dense else []:
            ax.set_rasterization_zorder(RASTER_BELOW)
        for line in dense:
            line.set_zorder(RASTER_BELOW - 0.1)
        with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": name}):
            fig.savefig(buffer, format="svg", dpi=RASTER_DPI)
    finally:
        for line, zorder in zip(dense, zorders, strict=True):
            line.set_zorder(zorder)
        for ax in fig.axes:
            ax.set_rasterization_zorder(None)
    text = buffer.getvalue()
    text = text[text.index("<svg") :]
    # The metadata block (creator, date) is for files, not for a page; without it the page of
    # a run is the same bytes each time it is written.
    text = re.sub(r"\s*<metadata>.*?</metadata>", "", text, count=1, flags=re.S)
    # Every id of this chart prefixed with its name (and every reference to one): matplotlib
    # numbers its groups per figure (`axes_1`), and a page holds several figures.
    text = re.sub(r'(\sid=")([^"]+)"', rf'\1{name}-\2"', text)
    text = re.sub(r'(href="#)([^"]+)"', rf'\1{name}-\2"', text)
    text = re.sub(r"url\(#([^)]+)\)", rf"url(#{name}-\1)", text)
    for gid, hover in titles.items():
        text = text.replace(
            f'<g id="{gid}">', f'<g id="{gid}"><title>{html.escape(hover)}</title>', 1
        )
    # Scale with the page: the viewBox keeps the proportions.
    text = re.sub(
        r'<svg([^>]*?) width="[^"]*" height="[^"]*"', r'<svg\1 width="100%"', text, count=1
    )
    label = html.escape(title or name, quote=True)
    return text.replace("<svg", f'<svg role="img" aria-label="{label}"', 1)


def _dense_lines(fig: Figure) -> list[Line2D]:
    """The series of a figure too dense for vectors (DENSE_POINTS), or none."""
    lines = [line for ax in fig.axes for line in ax.get_lines()]
    sizes = [np.size(line.get_xdata()) for line in lines]
    if sum(sizes) <= DENSE_POINTS:
        return []
    return [line for line, size in zip(lines, sizes, strict=True) if size > 2]


def _hover_titles(fig: Figure, name: str) -> dict[str, str]:
    titles: dict[str, str] = {}

    def add(artist: Artist, text: str) -> None:
        gid = f"hover-{len(titles)}"
        artist.set_gid(gid)
        titles[f"{name}-{gid}"] = text  # the id once prefixed (inline_svg)

    for ax in fig.axes:
        named = _container_labels(ax)
        for line in ax.get_lines():
            label = named.get(id(line), str(line.get_label()))
            if label.startswith("_"):
                continue
            if line.get_transform() != ax.transData:  # a target or a ceiling: a value alone
                add(line, label)
                continue
            points = _points(np.asarray(line.get_xdata()), np.asarray(line.get_ydata()))
            if points:
                add(line, f"{label}\n{_axes_names(ax)}\n{points}")
        for collection in ax.collections:
            label = str(collection.get_label())
            if isinstance(collection, PathCollection) and not label.startswith("_"):
                xy = np.asarray(collection.get_offsets())
                points = _points(xy[:, 0], xy[:, 1]) if xy.ndim == 2 and len(xy) else ""
                if points:
                    add(collection, f"{label}\n{_axes_names(ax)}\n{points}")
        ticks = _ticks(ax)
        for container in ax.containers:
            if isinstance(container, BarContainer):
                for bar in container.patches:
                    where = _nearest(ticks, bar.get_x() + bar.get_width() / 2)
                    add(bar, f"{where} {container.get_label()}: {_fmt(bar.get_height())}".strip())
    return titles


def _container_labels(ax: Axes) -> dict[int, str]:
    """An errorbar's data line carries no label itself; its container does."""
    return {
        id(c.lines[0]): str(c.get_label())
        for c in ax.containers
        if isinstance(c, ErrorbarContainer) and isinstance(c.lines[0], Line2D)
    }


def _points(xs: np.ndarray, ys: np.ndarray) -> str:
    pairs = [(x, y) for x, y in zip(xs, ys, strict=False) if _finite(x) and _finite(y)]
    if not pairs or len(pairs) > MAX_POINTS:
        return ""
    return "\n".join(f"{_fmt(x)} → {_fmt(y)}" for x, y in pairs)


def _axes_names(ax: Axes) -> str:
    x, y = (text.split(" (")[0] for text in (ax.get_xlabel(), ax.get_ylabel()))
    return f"{x} → {y}" if x and y else ""


def _ticks(ax: Axes) -> list[tuple[float, str]]:
    return [
        (float(t), lab.get_text())
        for t, lab in zip(ax.get_xticks(), ax.get_xticklabels(), strict=False)
    ]


def _nearest(ticks: Iterable[tuple[float, str]], x: float) -> str:
    found = min(ticks, key=lambda t: abs(t[0] - x), default=(0.0, ""))
    return found[1]


def _finite(value: object) -> bool:
    try:
        return bool(np.isfinite(float(value)))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False


def _fmt(value: object) -> str:
    try:
        return f"{float(value):.4g}"  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return str(value)
