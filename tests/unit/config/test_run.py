from __future__ import annotations

from pathlib import Path

import pytest

from embbench.config import run as cfg
from embbench.config.options import ServerOptions, default_label
from embbench.errors import ConfigError
from embbench.machine.host import cpu_count


def test_defaults_and_labels() -> None:
    assert default_label("batched", ServerOptions()) == "batched"
    opts = ServerOptions(backend="onnx", quantize="int8", truncation=False)
    assert default_label("batched", opts) == "batched[onnx,int8,no-truncation]"
    fast = ServerOptions(backend="onnx", streams=2, max_batch_size=8, http="asgi")
    assert default_label("batched", fast) == "batched[onnx,streams=2,max_batch_size=8,asgi]"


def test_options_set_for_every_variant_do_not_name_rows(tmp_path: Path) -> None:
    """[defaults] that every variant keeps stay out of the labels; one a variant overrides
    tells its rows apart, and names them."""
    path = tmp_path / "run.toml"
    path.write_text(
        "[defaults]\nmax_concurrent_requests = 2048\nbackend = 'onnx'\n"
        "[[variant]]\nname = 'batched'\n"
        "[[variant]]\nname = 'batched'\nquantize = 'int8'\n"
        "[[variant]]\nname = 'batched'\nbackend = 'torch'\n"
    )
    config = cfg.build_run_config(file=path)
    assert [v.display for v in config.variants] == [
        "batched[onnx]", "batched[onnx,int8]", "batched",
    ]  # fmt: skip
    assert all(v.options.max_concurrent_requests == 2048 for v in config.variants)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"padding": "left"}, "padding"),
        ({"quantize": "int8"}, "needs --backend onnx"),
        ({"workers": 0}, "workers"),
        ({"port": 70000}, "port"),
        ({"streams": 0}, "streams"),
        ({"http": "flask"}, "http must be one of fastapi, asgi"),
    ],
)
def test_bad_server_options(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ServerOptions(**kwargs)  # type: ignore[arg-type]


def test_threads_default_to_cores_over_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    from embbench.config import options

    monkeypatch.setattr(options, "cpu_count", lambda: 8)
    assert ServerOptions().resolved_threads(4) == 2
    assert ServerOptions().resolved_threads(16) == 1
    assert ServerOptions(threads=3).resolved_threads(4) == 3
    # Streams share the cores too: 8 cores, 2 workers x 2 streams -> 2 threads each.
    assert ServerOptions(streams=2).resolved_threads(2) == 2


def test_streams_only_where_passes_can_overlap() -> None:
    from embbench.variants import get_variant

    with pytest.raises(ConfigError, match="streams applies to shared-rwlock and batched"):
        get_variant("shared-mutex").check(ServerOptions(streams=2))
    get_variant("shared-mutex").check(ServerOptions(streams=1))
    config = get_variant("batched").server_config(ServerOptions(streams=2), 8000, "")
    assert config.streams == 2 and config.threads == max(1, cpu_count() // 2)
    assert get_variant("batched").server_config(ServerOptions(), 8000, "").streams == 1


def test_run_config_validation() -> None:
    runs = (cfg.VariantRun("batched"),)
    with pytest.raises(ConfigError, match="concurrency"):
        cfg.RunConfig(variants=runs, concurrency=(0,))
    with pytest.raises(ConfigError, match="payload"):
        cfg.RunConfig(variants=runs, payload="huge")
    with pytest.raises(ConfigError, match="no variant"):
        cfg.RunConfig(variants=())
    with pytest.raises(ConfigError, match="share the label"):
        cfg.RunConfig(variants=(cfg.VariantRun("batched"), cfg.VariantRun("batched")))
    with pytest.raises(ConfigError, match="ceiling_seconds must be positive"):
        cfg.RunConfig(variants=runs, ceiling_seconds=0)


def test_run_file(tmp_path: Path) -> None:
    path = tmp_path / "run.toml"
    path.write_text(
        """
[run]
concurrency = [1, 2]
duration = 3

[defaults]
threads = 1

[[variant]]
name = "batched"
backend = "onnx"

[[variant]]
name = "shared-mutex"
label = "mutex"
threads = 2
"""
    )
    run, variants = cfg.load_run_file(path)
    assert run == {"concurrency": (1, 2), "duration": 3}
    assert variants[0].options.threads == 1 and variants[0].options.backend == "onnx"
    assert variants[1].display == "mutex" and variants[1].options.threads == 2


@pytest.mark.parametrize(
    "text, message",
    [
        ("[run\n", "not valid TOML"),
        ("[runn]\n", "unknown section"),
        ("[run]\nspeed = 1\n", "unknown \\[run\\] key"),
        ("[[variant]]\nname='batched'\nfoo=1\n", "unknown server option 'foo'"),
        ("[[variant]]\nbackend='onnx'\n", "has no name"),
        ("[[variant]]\nname='batched'\npadding='left'\n", "padding"),
    ],
)
def test_bad_run_files(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        cfg.load_run_file(path)


def test_missing_run_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        cfg.load_run_file(tmp_path / "nope.toml")


def test_override_keeps_unset_flags() -> None:
    opts = ServerOptions(backend="onnx", threads=1)
    out = cfg.override_options(opts, {"threads": 2, "padding": None})
    assert out.backend == "onnx" and out.threads == 2 and out.padding == "longest"
