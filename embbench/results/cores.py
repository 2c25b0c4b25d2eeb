"""How a label names the core count it was measured on (`capacity --cores 1,2`), written by
run/capacity.py and read back by report/plan.py: one format, one place."""

from __future__ import annotations

import re

_SUFFIX = re.compile(r" \((\d+) cores?\)$")


def cores_label(label: str, cores: int) -> str:
    """`shared-mutex (1 core)`: the rows of one core count apart from the other's."""
    return f"{label} ({cores} core{'s' if cores != 1 else ''})"


def base_label(label: str) -> str:
    """The label without its core count: `shared-mutex (1 core)` -> `shared-mutex`."""
    return _SUFFIX.sub("", label)
