"""infinity-emb as a real subprocess, benchmarked like our own servers (needs `make peers`).

TEI's /embed protocol against a running server is covered by
tests/integration/test_run.py::test_external_url_with_tei_protocol.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from embbench.config.run import RunConfig, VariantRun
from embbench.results import folder as results
from embbench.run.session import run_benchmark
from embbench.variants.infinity import INFINITY_VERSION, infinity_installed

pytestmark = [pytest.mark.integration, pytest.mark.peers]


@pytest.mark.skipif(not infinity_installed(), reason="infinity-emb not installed: run `make peers`")
def test_infinity_short_benchmark(tmp_path: Path) -> None:
    config = RunConfig(
        variants=(VariantRun("infinity"),),
        concurrency=(4,),
        duration=3,
        warmup=2,
        out=str(tmp_path),
    )
    outcome = run_benchmark(config)
    assert not outcome.interrupted
    [row] = outcome.rows
    log = outcome.run_dir / "logs" / f"{row['cell']}.server.log"
    assert row["status"] == results.OK, (row.get("failure_reason"), log.read_text()[-3000:])
    assert row["protocol"] == "openai"
    assert row["workers"] == 1
    assert row["rps"] > 0 and row["failures"] == 0
    assert row["cosine_min"] >= 0.999
    assert row["cpu_pct_mean"] > 0
    # It really was infinity that answered, with telemetry off.
    text = " ".join(log.read_text().split())
    assert f"Version {INFINITY_VERSION}" in text
    assert "Anonymized usage statistics are disabled" in text
