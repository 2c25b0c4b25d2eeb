"""The prices a report and a plan assume unless told otherwise, in one place."""

from __future__ import annotations

# USD per core-hour: about what an on-demand general-purpose cloud vCPU costs (2026); pass
# --price-per-core-hour for your own. The cost counts the server's CPU time only.
DEFAULT_PRICE_PER_CORE_HOUR = 0.05
HOURS_PER_MONTH = 730.0  # a month of a replica that runs all the time (8,760 h / 12)
