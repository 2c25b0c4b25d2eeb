"""A real batched server tunes itself from a cached ceiling and says so in /info and run.json.

The cache is seeded with a ceiling of the shape this machine measures, so the test spends no
time measuring: what it checks is the path from cache to server, not the numbers.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from embbench.config.options import ServerOptions
from embbench.config.run import RunConfig, VariantRun
from embbench.run.progress import ProgressListener
from embbench.run.session import run_benchmark
from embbench.variants import autotune
from tests.integration.conftest import serve_variant
from tests.unit.variants.test_autotune import CEILING

pytestmark = pytest.mark.integration


@pytest.fixture
def seeded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("EMBBENCH_CACHE", str(tmp_path / "cache"))
    return autotune.save_ceiling(autotune.ceiling_key(ServerOptions()), CEILING).path


def test_a_tuned_server_reports_its_choice_in_info(seeded: Path, tmp_path: Path) -> None:
    with serve_variant("batched", tmp_path / "srv") as (url, _server):
        info = httpx.get(url + "/info", timeout=10).json()
    tuned = info["autotune"]
    assert (tuned["streams"], tuned["threads"], tuned["max_batch_size"]) == (2, 1, 8)
    assert tuned["sources"]["max_batch_size"] == "tuned"
    assert tuned["ceiling"]["source"] == "cache" and tuned["ceiling"]["file"] == str(seeded)
    assert tuned["ceiling"]["layouts"] == CEILING["layouts"]
    # The server runs what it reports.
    assert (info["streams"], info["threads"], info["max_batch_requests"]) == (2, 1, 8)
    assert info["stats"]["streams"] == 2


def test_a_run_records_the_choice_per_row_and_given_values_win(
    seeded: Path, tmp_path: Path
) -> None:
    given = ServerOptions(max_batch_size=4)
    config = RunConfig(
        variants=(VariantRun("batched"), VariantRun("batched", given)),
        concurrency=(2,), duration=2.0, warmup=0.5, out=str(tmp_path / "results"),
    )  # fmt: skip
    outcome = run_benchmark(config, ProgressListener())
    assert not outcome.interrupted and outcome.failed == 0
    meta = json.loads((outcome.run_dir / "run.json").read_text())
    tuned, pinned = meta["autotune"]["batched"], meta["autotune"]["batched[max_batch_size=4]"]
    assert tuned["max_batch_size"] == 8 and tuned["sources"]["max_batch_size"] == "tuned"
    assert pinned["max_batch_size"] == 4 and pinned["sources"]["max_batch_size"] == "given"
    assert tuned["ceiling"]["file"] == str(seeded)
    infos = sorted((outcome.run_dir / "logs").glob("*.info.json"))
    reported = [json.loads(path.read_text())["autotune"]["max_batch_size"] for path in infos]
    assert sorted(reported) == [4, 8]
