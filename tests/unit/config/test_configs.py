"""Every run file under configs/ loads through the project's own loader into a valid RunConfig.

A config that drifts from the options it names (a renamed option, a removed variant, a key of
the wrong type) fails here, not an hour into `make bench` or an experiment's rerun.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from embbench.config.run import RunConfig, build_run_config, load_run_file
from embbench.variants import REGISTRY

CONFIGS = Path(__file__).resolve().parents[3] / "configs"
FILES = sorted(CONFIGS.rglob("*.toml"))


def _id(path: Path) -> str:
    return path.relative_to(CONFIGS).as_posix()


def test_the_make_targets_configs_are_at_the_top() -> None:
    # `make bench`, `make smoke` and `make capacity` name these paths.
    for name in ("default.toml", "smoke.toml", "capacity.toml"):
        assert (CONFIGS / name).is_file(), name


@pytest.mark.parametrize("path", FILES, ids=_id)
def test_config_builds_a_run(path: Path) -> None:
    _, variants = load_run_file(path)
    assert variants, f"{_id(path)} lists no [[variant]]"
    config = build_run_config(file=path)
    assert isinstance(config, RunConfig)
    assert len(config.variants) >= 1
    for run in config.variants:
        assert run.name in REGISTRY, f"{_id(path)}: unknown variant {run.name!r}"


@pytest.mark.parametrize("path", FILES, ids=_id)
def test_config_says_what_it_measures(path: Path) -> None:
    # A config introduces itself by what it measures, not by the issue that asked for it.
    text = path.read_text()
    assert text.startswith("#"), f"{_id(path)} does not open with a comment"
    assert not re.search(r"\bissue\s*#?\d", text, re.IGNORECASE), _id(path)
