"""Autotune's choice rule, its cache and the precedence of given values, with fake ceilings."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from embbench.config.options import ServerOptions, default_label, override_options, server_options
from embbench.config.run import build_run_config, load_run_file
from embbench.config.wire import ServerConfig
from embbench.variants import autotune, get_variant
from embbench.variants.ray_serve import option_argv


def layout(threads: int, streams: int, by_batch: dict[int, float], batch1_ms: float = 5.0) -> Any:
    return {"threads": threads, "streams": streams, "batch1_ms": batch1_ms,
            "by_batch": {str(k): v for k, v in by_batch.items()}}  # fmt: skip


# The shape of a real onnx int8 short-sentence ceiling on 2 cores: one session per core wins,
# batches of 8 are the best and 32 a little slower.
CEILING = {
    "payload": "short",
    "layouts": [
        layout(2, 1, {1: 390, 8: 498, 32: 466, 128: 304}, batch1_ms=2.5),
        layout(1, 2, {1: 839, 8: 1149, 32: 1077, 128: 742}, batch1_ms=4.0),
    ],
}


class FakeMeasure:
    def __init__(self, ceiling: dict[str, Any] = CEILING) -> None:
        self.ceiling = ceiling
        self.calls: list[ServerOptions] = []

    def __call__(self, options: ServerOptions) -> dict[str, Any]:
        self.calls.append(options)
        return self.ceiling


@pytest.fixture(autouse=True)
def cache_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("EMBBENCH_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "ceilings"


# -- the rule -------------------------------------------------------------------------------


def test_choose_takes_the_fastest_layout_and_the_smallest_batch_near_its_best() -> None:
    assert autotune.choose(CEILING) == autotune.Choice(threads=1, streams=2, max_batch_size=8)


def test_choose_prefers_a_larger_batch_when_the_smaller_ones_are_clearly_slower() -> None:
    ceiling = {"layouts": [layout(2, 1, {1: 100, 8: 200, 32: 300, 128: 290})]}
    assert autotune.choose(ceiling).max_batch_size == 32


def test_choose_takes_the_smallest_batch_within_the_tolerance() -> None:
    best = 1000.0
    just_in = best * (1 - autotune.BATCH_TOLERANCE) + 1
    ceiling = {"layouts": [layout(2, 1, {1: 10, 8: just_in, 32: best})]}
    assert autotune.choose(ceiling).max_batch_size == 8


def test_choose_breaks_a_near_tie_of_layouts_by_the_quicker_lone_request() -> None:
    ceiling = {
        "layouts": [
            layout(1, 2, {8: 1000}, batch1_ms=6.0),
            layout(2, 1, {8: 1000 * (1 - autotune.LAYOUT_TOLERANCE / 2)}, batch1_ms=3.0),
        ]
    }
    choice = autotune.choose(ceiling)
    assert (choice.threads, choice.streams) == (2, 1)


def test_choose_without_layouts_is_an_error() -> None:
    with pytest.raises(autotune.AutotuneError):
        autotune.choose({"sentences_per_s": 100.0})


# -- precedence -----------------------------------------------------------------------------


def test_tune_fills_in_what_was_left_and_records_where_each_value_came_from() -> None:
    fake = FakeMeasure()
    options, record = autotune.tune(ServerOptions(backend="onnx", quantize="int8"), fake)
    assert (options.streams, options.threads, options.max_batch_size) == (2, 1, 8)
    assert options.max_batch_tokens == ServerOptions().max_batch_tokens
    tuned = {"streams": "tuned", "threads": "tuned", "max_batch_size": "tuned"}
    assert record["sources"] == {**tuned, "max_batch_tokens": "default"}
    assert (record["streams"], record["threads"], record["max_batch_size"]) == (2, 1, 8)
    assert record["ceiling"]["source"] == "measured"
    assert record["ceiling"]["layouts"] == CEILING["layouts"]
    assert isinstance(record["ceiling"]["load_before"], float)  # a busy machine shows
    assert len(fake.calls) == 1


def test_given_values_win_even_when_equal_to_the_default() -> None:
    # From a run file: max_batch_size = 32 is the default value, but the user wrote it.
    given = server_options({"max_batch_size": 32, "max_batch_tokens": 4096}, "test")
    options, record = autotune.tune(given, FakeMeasure())
    assert options.max_batch_size == 32 and options.max_batch_tokens == 4096
    assert record["sources"]["max_batch_size"] == "given"
    assert record["sources"]["max_batch_tokens"] == "given"
    assert record["sources"]["streams"] == "tuned"


def test_flags_count_as_given() -> None:
    options = override_options(ServerOptions(), {"max_batch_size": 32, "threads": None})
    assert options.is_given("max_batch_size") and not options.is_given("threads")


def test_a_half_given_layout_is_the_users_and_the_other_half_follows_the_usual_rule() -> None:
    fake = FakeMeasure()
    options, record = autotune.tune(ServerOptions(streams=1), fake)
    assert options.streams == 1 and options.threads is None  # threads: cores // streams
    assert record["sources"]["streams"] == "given"
    assert record["sources"]["threads"] == "derived"
    assert record["sources"]["max_batch_size"] == "tuned"
    assert options.max_batch_size == 8


def test_a_given_layout_takes_its_batch_size_from_its_own_curve(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("embbench.config.options.cpu_count", lambda: 2)
    ceiling = {"layouts": [layout(2, 1, {8: 500, 32: 600}), layout(1, 2, {8: 1000, 32: 990})]}
    options, _ = autotune.tune(ServerOptions(streams=1), FakeMeasure(ceiling))
    assert (options.streams, options.max_batch_size) == (1, 32)
    assert autotune.choose(ceiling, (2, 1)) == autotune.Choice(2, 1, 32)
    assert autotune.choose(ceiling, (4, 1)).max_batch_size == 8  # not measured: the best's


def test_nothing_left_to_tune_measures_nothing() -> None:
    fake = FakeMeasure()
    options, record = autotune.tune(ServerOptions(streams=2, max_batch_size=16), fake)
    assert fake.calls == [] and record["ceiling"] is None
    assert (options.streams, options.max_batch_size) == (2, 16)
    assert not autotune.needs_ceiling(ServerOptions(streams=2, max_batch_size=16))


def test_autotune_off_keeps_the_old_defaults_and_measures_nothing() -> None:
    fake = FakeMeasure()
    options, record = autotune.tune(ServerOptions(autotune=False), fake)
    assert fake.calls == [] and record["enabled"] is False
    assert options == ServerOptions(autotune=False)
    assert set(record["sources"].values()) == {"default"}
    assert record["streams"] == 1 and record["max_batch_size"] == 32


# -- the cache ------------------------------------------------------------------------------


def test_a_cache_hit_does_not_measure(cache_in_tmp: Path) -> None:
    fake = FakeMeasure()
    autotune.tune(ServerOptions(), fake)
    _, record = autotune.tune(ServerOptions(), fake)
    assert len(fake.calls) == 1
    assert record["ceiling"]["source"] == "cache"
    assert Path(record["ceiling"]["file"]).parent == cache_in_tmp


def test_the_key_tells_backends_models_and_machines_apart(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    base = autotune.ceiling_key(ServerOptions())
    others = [
        autotune.ceiling_key(ServerOptions(backend="onnx")),
        autotune.ceiling_key(ServerOptions(backend="onnx", quantize="int8")),
        autotune.ceiling_key(ServerOptions(model=str(tmp_path))),
    ]
    # Options the ceiling does not depend on share its entry.
    same = ServerOptions(padding="max_length", http="asgi", max_batch_size=8)
    assert autotune.ceiling_key(same) == base
    monkeypatch.setattr(autotune, "runtime_version", lambda backend: "0.0-other")
    others.append(autotune.ceiling_key(ServerOptions()))
    monkeypatch.setattr(autotune, "machine_id", lambda: "another-machine")
    others.append(autotune.ceiling_key(ServerOptions()))
    monkeypatch.setattr(autotune, "cpu_count", lambda: 64)
    others.append(autotune.ceiling_key(ServerOptions()))
    paths = {autotune.cache_path(key) for key in [base, *others]}
    assert len(paths) == len(others) + 1


def test_an_entry_of_another_key_or_a_broken_file_is_a_miss(cache_in_tmp: Path) -> None:
    key = autotune.ceiling_key(ServerOptions())
    path = autotune.cache_path(key)
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    assert autotune.load_cached(key) is None
    path.write_text(json.dumps({"format": 1, "key": {**key, "cores": 999}, "ceiling": CEILING}))
    assert autotune.load_cached(key) is None
    fake = FakeMeasure()
    assert autotune.ensure_ceiling(ServerOptions(), fake).source == "measured"
    assert autotune.load_cached(key) is not None and len(fake.calls) == 1


def test_the_write_is_whole_or_nothing(cache_in_tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key = autotune.ceiling_key(ServerOptions())
    autotune.save_ceiling(key, CEILING)
    assert [p.name for p in cache_in_tmp.iterdir()] == [autotune.cache_path(key).name]

    def broken_replace(src: str, dst: Path) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(autotune.os, "replace", broken_replace)
    with pytest.raises(OSError):
        autotune.save_ceiling(key, {"layouts": []})
    # The old entry is intact and no temporary file is left behind.
    assert [p.name for p in cache_in_tmp.iterdir()] == [autotune.cache_path(key).name]
    cached = autotune.load_cached(key)
    assert cached is not None and cached.ceiling == CEILING


def test_a_failed_measurement_is_a_typed_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def failing(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("ceiling measurement failed: out of memory")

    monkeypatch.setattr("embbench.servers.ceiling.measure_in_subprocess", failing)
    with pytest.raises(autotune.AutotuneError, match="out of memory"):
        autotune.tune(ServerOptions())


# -- where it shows -------------------------------------------------------------------------


def test_batched_launch_carries_the_choice_to_the_server(tmp_path: Path) -> None:
    options = ServerOptions(backend="onnx", quantize="int8")
    autotune.save_ceiling(autotune.ceiling_key(options), CEILING)
    spec = get_variant("batched").launch(options, 18123, tmp_path / "work")
    config = ServerConfig.from_json(str(spec.env["EMBBENCH_SERVER_CONFIG"]))
    assert (config.streams, config.threads, config.options.max_batch_size) == (2, 1, 8)
    assert spec.info["streams"] == 2 and spec.info["threads"] == 1
    assert spec.env["OMP_NUM_THREADS"] == "1"
    assert config.autotune is not None and config.autotune["ceiling"]["source"] == "cache"


def test_a_cell_launches_the_choice_the_run_recorded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The run tunes once (its record goes to run.json); a cell launches that record, even when
    # the cache has changed since (another run measured the machine again).
    options = ServerOptions(backend="onnx", quantize="int8")
    autotune.save_ceiling(autotune.ceiling_key(options), CEILING)
    batched = get_variant("batched")
    _, choice = batched.tune(options)
    assert choice is not None
    autotune.cache_path(autotune.ceiling_key(options)).unlink()  # nothing to choose from now

    def measure_again(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a cell chose again")

    monkeypatch.setattr("embbench.servers.ceiling.measure_in_subprocess", measure_again)
    spec = batched.launch_tuned(options, choice, 18125, tmp_path / "work")
    config = ServerConfig.from_json(str(spec.env["EMBBENCH_SERVER_CONFIG"]))
    assert (config.streams, config.threads, config.options.max_batch_size) == (2, 1, 8)
    assert config.autotune == choice
    assert autotune.applied(options, choice).max_batch_size == 8


def test_a_variant_that_chooses_nothing_launches_as_ever_in_a_cell(tmp_path: Path) -> None:
    # ray-serve is one of ours with a launch of its own: a cell must reach it, not ours.
    spec = get_variant("ray-serve").launch_tuned(ServerOptions(), None, 18126, tmp_path / "w")
    try:
        assert spec.argv[:3] == [sys.executable, "-m", "embbench.servers.ray_launch"]
    finally:
        if spec.cleanup is not None:
            spec.cleanup()


def test_other_variants_choose_nothing(tmp_path: Path) -> None:
    spec = get_variant("shared-mutex").launch(ServerOptions(), 18124, tmp_path / "work")
    config = ServerConfig.from_json(str(spec.env["EMBBENCH_SERVER_CONFIG"]))
    assert config.autotune is None and config.options.max_batch_size == 32


def test_given_names_survive_the_trip_to_the_server_and_stay_out_of_flags() -> None:
    options = server_options({"max_batch_size": 32, "autotune": False}, "test")
    config = ServerConfig(variant="batched", model_path="m", port=1, workers=1, threads=1,
                          options=options)  # fmt: skip
    again = ServerConfig.from_json(config.to_json())
    assert again.options.given == ("autotune", "max_batch_size")
    assert again.options == options
    assert "--given" not in option_argv(options)
    assert default_label("batched", options) == "batched[no-autotune]"


def test_a_run_file_marks_what_it_sets_as_given(tmp_path: Path) -> None:
    path = tmp_path / "run.toml"
    path.write_text('[defaults]\nbackend = "onnx"\n[[variant]]\nname = "batched"\n'
                    "max_batch_size = 32\n")  # fmt: skip
    _, runs = load_run_file(path)
    assert runs[0].options.given == ("backend", "max_batch_size")
    config = build_run_config(file=path, server={"streams": 2, "threads": None})
    assert config.variants[0].options.given == ("backend", "max_batch_size", "streams")
