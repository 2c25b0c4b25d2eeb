"""`quality_corpus` per variant (config/run.py): one run can hold the same server with the
retrieval measurement on and off; and the experiment that does it parses."""

from __future__ import annotations

from pathlib import Path

import pytest

from embbench.config.run import RunConfig, VariantRun, build_run_config
from embbench.errors import ConfigError

CONFIGS = Path(__file__).parents[3] / "configs" / "experiments"


def test_the_quality_cost_experiment_interleaves_on_and_off() -> None:
    config = build_run_config(file=CONFIGS / "quality-cost.toml")
    by_label = {v.display: v for v in config.variants}
    assert set(by_label) == {"quality-on", "quality-off"}
    assert config.corpus_of(by_label["quality-on"]) == 96
    assert config.corpus_of(by_label["quality-off"]) == 0
    on, off = by_label["quality-on"].options, by_label["quality-off"].options
    assert on == off and on.backend == "onnx" and on.quantize == "int8"  # the same cell
    assert config.repeats == 4 and config.concurrency == (16,) and config.order == "alternate"


def test_a_variant_without_its_own_takes_the_runs_and_flags_keep_it(tmp_path: Path) -> None:
    file = tmp_path / "run.toml"
    file.write_text(
        '[run]\nquality_corpus = 40\n[[variant]]\nname = "batched"\nlabel = "a"\n'
        'quality_corpus = 0\n[[variant]]\nname = "batched"\nlabel = "b"\n'
    )
    config = build_run_config(file=file, server={"threads": 1})
    a, b = config.variants
    assert (config.corpus_of(a), config.corpus_of(b)) == (0, 40)
    assert a.options.threads == 1  # a server flag replaced the options, not the corpus


@pytest.mark.parametrize("corpus, message", [(5, "at least 10"), (900, "at most 800")])
def test_a_variants_corpus_is_checked_like_the_runs(corpus: int, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        RunConfig(variants=(VariantRun("batched", quality_corpus=corpus),))
