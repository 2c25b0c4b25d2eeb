"""The checks that run after a cell's measured window, on the server still up and otherwise
idle: batch invariance (invariance.py) and the cache-defeat check (cache_check.py).

They are requests of their own, so they must never fall inside the window: run/cell.py calls
`check_server` once Locust and the retrieval corpus's client have stopped. A check the server
cannot answer leaves its columns empty and says why; it never fails the cell, whose numbers
were measured before it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import httpx

from embbench.run import cache_check, invariance
from embbench.run.endpoint import Endpoint

COLUMNS = (*invariance.COLUMNS, *cache_check.COLUMNS)


def check_server(
    url: str,
    protocol: str,
    texts: Sequence[str],
    *,
    model: str,
    info: Mapping[str, Any],
    warn: Callable[[str], None],
    seed: int = 0,
) -> dict[str, Any]:
    """The summary columns of both checks against the server at `url` (None where not run)."""
    row: dict[str, Any] = dict.fromkeys(COLUMNS)

    def connect() -> Endpoint:
        return Endpoint(url, protocol, model)

    with connect() as endpoint:
        try:
            found = invariance.measure(endpoint, texts, info, connect)
            row.update(found.columns())
            if found.refused:
                warn(f"batch invariance: multi-input requests refused ({found.refused}); "
                     "measured with concurrent single requests only")  # fmt: skip
        except (httpx.HTTPError, ValueError, KeyError, TypeError, IndexError) as exc:
            warn(f"batch invariance not measured: {type(exc).__name__}: {exc}"[:500])
        try:
            verdict = cache_check.measure(endpoint, texts, seed)
            if verdict is None:
                warn("cache check not made: no input long enough, or too few pairs in time")
            else:
                row.update(verdict.columns())
        except (httpx.HTTPError, ValueError, KeyError, TypeError, IndexError) as exc:
            warn(f"cache check not made: {type(exc).__name__}: {exc}"[:500])
    return row
