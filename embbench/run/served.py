"""A server kept up across the cells of one variant in one repeat: its levels in turn.

A run starts a server per variant and repeat, not per cell (`reuse_server`, on by default):
the levels of the closed loop (10, 100, 1000 users) or the open loop's rates run one after the
other against it, each with its own Locust, warm-up and window. What a cell pays once per server
is then paid once per server: the launch (5-8 s for a torch server here), the probe of its
answers, its /info, and the retrieval set's documents (about 5 s; embedded after the first
window on the idle server, which makes them the same for its later cells). Repeats still start
their own servers, so a verdict over repeats pairs independent launches.

Every later cell starts from a server the earlier levels have loaded, as a production server
does; its warm-up, not a fresh start, is what separates its window from them. The levels run
in the same order for every variant, so each comparison at a level sees its servers in the
same state. run.json and summary.csv say which cell's server each cell measured (`server_cell`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from embbench.machine.process import ServerProcess
from embbench.run.agreement import CorpusEmbedder

# Row fields that describe a launch, not the server: only the cell that started it has them.
LAUNCH_ONLY = (
    "startup_s",
    "startup_rss_mb_peak",
    "startup_pss_mb_peak",
    "first_request_ms",
    "quiet_s",
    "quiet_cpu_pct",
)


@dataclass
class Served:
    """The live server of `key` (label, repeat) and what its first cell learnt of it."""

    key: tuple[str, int]
    server: ServerProcess | None = None
    url: str = ""
    protocol: str = ""
    cell: str = ""  # the cell that started it: its logs are under that cell's name
    # The row fields its start, /info and probe set (the launch's own cost left out).
    fields: dict[str, Any] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    info_text: str | None = None
    # The retrieval documents as this server embedded them after its first window.
    documents: CorpusEmbedder | None = None

    @property
    def live(self) -> bool:
        return self.server is not None and self.server.exited() is None

    def keep(self, server: ServerProcess, url: str, protocol: str, cell: str,
             row: dict[str, Any]) -> None:  # fmt: skip
        self.server, self.url, self.protocol, self.cell = server, url, protocol, cell
        self.fields = {k: v for k, v in row.items() if k not in LAUNCH_ONLY}

    def stop(self) -> None:
        """Stop the server (its whole tree) and forget it: the next cell starts its own."""
        server, self.server, self.documents = self.server, None, None
        if server is not None:
            server.stop()
