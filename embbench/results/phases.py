"""Names of the server-side phases of a request, declared once.

Our servers send `Server-Timing` with these phases (DESIGN.md, "HTTP API of our servers"); the
load generator writes one request-log column per phase (`srv_<phase>_ms`) plus the batch size and
the request id; the cell's record keeps, for the requests around the median and around p99, the
mean of each part (`p50_<part>_ms`, `p99_<part>_ms`, declared in columns.py from `SUMMARY`).
Light on purpose: the locustfile imports it inside Locust.
"""

from __future__ import annotations

# In the order the servers send them, `total` last (arrival in the handler -> body ready).
PHASES = ("admission", "lock", "queue", "tokenize", "forward", "pool", "serialize", "total")
STEPS = PHASES[:-1]  # the phases that add up to (at most) `total`
# TEI's own headers, mapped onto the same phases.
TEI_HEADERS = (
    ("x-queue-time", "queue"),
    ("x-tokenization-time", "tokenize"),
    ("x-inference-time", "forward"),
    ("x-total-time", "total"),
)


def phase_column(phase: str) -> str:
    return f"srv_{phase}_ms"


# The request log's columns after `scheduled` (results/folder.py REQUEST_COLUMNS); empty when the
# server sent none.
TIMING_COLUMNS = (*(phase_column(p) for p in PHASES), "batch_size", "request_id")

# "Where the p99 went": per group of requests (around the median, around p99) the mean of each
# step, `other` (the server's total minus its steps: framework overhead), `outside` (client
# latency minus the server's total: network, the client's queue, an open loop's lateness),
# the group's mean client `latency`, and its mean batch size and how many of its requests were
# timed.
GROUPS = ("p50", "p99")
PARTS = (*STEPS, "other", "outside")


def part_column(group: str, part: str) -> str:
    return f"{group}_{part}_ms"


def latency_column(group: str) -> str:
    return f"{group}_latency_ms"


def batch_column(group: str) -> str:
    return f"{group}_batch_size"


def timed_column(group: str) -> str:
    return f"{group}_timed"


# summary.csv columns (name, is a count) in declaration order.
SUMMARY: tuple[tuple[str, bool], ...] = tuple(
    item
    for group in GROUPS
    for item in (
        *((part_column(group, part), False) for part in PARTS),
        (latency_column(group), False),
        (batch_column(group), False),
        (timed_column(group), True),
    )
)
