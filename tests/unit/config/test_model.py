"""ModelSpec: a model folder read as sentence-transformers reads it, or refused in one line.

The folders are written by hand (JSON, the bundled tokenizer, a few tiny tensors): no model
runs here. tests/integration/test_models.py serves real tiny models built with
sentence-transformers and compares the answers.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from embbench.config.model import ModelSpec, bundled_model_path, read_spec, resolve_spec
from embbench.errors import ExitStatus, ModelError, ModelNotFoundError, UsageError
from embbench.variants.rust import rust_refusal

VOCAB, HIDDEN = 100, 8
ST6 = "sentence_transformers.base.modules.transformer.Transformer"
POOLING = "sentence_transformers.sentence_transformer.modules.pooling.Pooling"
OLD_POOLING = "sentence_transformers.models.Pooling"
DENSE = "sentence_transformers.base.modules.dense.Dense"
NORMALIZE = "sentence_transformers.base.modules.normalize.Normalize"


def _write(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


def _tensors(path: Path, tensors: dict[str, tuple[int, ...]]) -> None:
    from safetensors.numpy import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    save_file({k: rng.standard_normal(v).astype(np.float32) for k, v in tensors.items()}, path)


def make_folder(
    root: Path,
    *,
    config: dict[str, Any] | None = None,
    modules: list[tuple[str, str]] | None = None,  # (path, type) after the Transformer
    pooling: dict[str, Any] | None = None,
    st_config: dict[str, Any] | None = None,
    tokenizer_config: dict[str, Any] | None = None,
    bert_config: dict[str, Any] | None = None,
) -> Path:
    """A BERT folder with a Pooling (pooling_mode mean) unless told otherwise."""
    root.mkdir(parents=True, exist_ok=True)
    base = {"model_type": "bert", "architectures": ["BertModel"], "hidden_size": HIDDEN,
            "vocab_size": VOCAB, "max_position_embeddings": 512, "pad_token_id": 0}  # fmt: skip
    _write(root / "config.json", {**base, **(config or {})})
    shutil.copy(bundled_model_path() / "tokenizer.json", root / "tokenizer.json")
    _tensors(root / "model.safetensors", {"embeddings.word_embeddings.weight": (VOCAB, HIDDEN)})
    if tokenizer_config is not None:
        _write(root / "tokenizer_config.json", tokenizer_config)
    if bert_config is not None:
        _write(root / "sentence_bert_config.json", bert_config)
    if st_config is not None:
        _write(root / "config_sentence_transformers.json", st_config)
    if modules is None:
        modules = [("1_Pooling", POOLING)]
    listed = [{"idx": 0, "name": "0", "path": "", "type": ST6}]
    listed += [{"idx": i + 1, "name": str(i + 1), "path": p, "type": t}
               for i, (p, t) in enumerate(modules)]  # fmt: skip
    _write(root / "modules.json", listed)
    if any(p == "1_Pooling" for p, _ in modules):
        _write(root / "1_Pooling" / "config.json", pooling or {"pooling_mode": "mean"})
    return root


# -- what is read -------------------------------------------------------------------------------


def test_the_bundled_model() -> None:
    spec = resolve_spec(None)
    assert spec.bundled and spec.model_type == "bert"
    assert (spec.pooling, spec.normalize, spec.dense) == (("mean",), True, ())
    assert (spec.max_seq_length, spec.max_positions, spec.dimensions) == (256, 512, 384)
    assert len(spec.fingerprint) == 64 and spec.short_fingerprint == spec.fingerprint[:12]
    assert "all-MiniLM-L6-v2" in spec.summary() and spec.short_fingerprint in spec.summary()
    assert spec.describe()["pooling"] == "mean"


def test_sentence_transformers_6_format(tmp_path: Path) -> None:
    folder = make_folder(
        tmp_path / "m",
        modules=[("1_Pooling", POOLING), ("2_Normalize", NORMALIZE)],
        pooling={"embedding_dimension": HIDDEN, "pooling_mode": "cls", "include_prompt": True},
        tokenizer_config={"model_max_length": 128},
    )
    spec = read_spec(folder)
    assert (spec.pooling, spec.normalize, spec.max_seq_length) == (("cls",), True, 128)
    assert not spec.bundled and spec.dimensions == HIDDEN


def test_older_format_booleans_and_sentence_bert_config(tmp_path: Path) -> None:
    flags = {"word_embedding_dimension": HIDDEN, "pooling_mode_cls_token": False,
             "pooling_mode_mean_tokens": False, "pooling_mode_max_tokens": True}  # fmt: skip
    folder = make_folder(
        tmp_path / "m",
        modules=[("1_Pooling", OLD_POOLING)],
        pooling=flags,
        bert_config={"max_seq_length": 200, "do_lower_case": False},
        tokenizer_config={"model_max_length": 512},
    )
    spec = read_spec(folder)
    assert spec.pooling == ("max",) and not spec.normalize
    assert spec.max_seq_length == 200  # sentence_bert_config.json wins over tokenizer_config


@pytest.mark.parametrize(
    ("config", "bert_config", "tokenizer_config", "expected"),
    [
        # transformers' "unlimited" sentinel: the positions decide.
        ({}, None, {"model_max_length": 1000000000000000019884624838656}, 512),
        ({}, None, None, 512),
        # model_max_length above the positions is capped at them (as sentence-transformers).
        ({"max_position_embeddings": 128}, None, {"model_max_length": 512}, 128),
        # XLM-R: 514 positions start at pad_token_id + 1 = 2: 512 tokens.
        ({"model_type": "xlm-roberta", "pad_token_id": 1, "max_position_embeddings": 514},
         None, None, 512),
        ({"model_type": "xlm-roberta", "pad_token_id": 1, "max_position_embeddings": 514},
         None, {"model_max_length": 514}, 512),
        # sentence_bert_config beyond the positions: capped too (it would fail on a long input).
        ({"model_type": "mpnet", "pad_token_id": 1, "max_position_embeddings": 514},
         {"max_seq_length": 1000}, None, 512),
    ],
)  # fmt: skip
def test_max_seq_length(
    tmp_path: Path,
    config: dict[str, Any],
    bert_config: dict[str, Any] | None,
    tokenizer_config: dict[str, Any] | None,
    expected: int,
) -> None:
    folder = make_folder(
        tmp_path / "m", config=config, bert_config=bert_config, tokenizer_config=tokenizer_config
    )
    spec = read_spec(folder)
    assert spec.max_seq_length == expected
    assert spec.max_seq_length <= spec.max_positions


def test_a_plain_transformers_folder_is_mean_pooled(tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "m")
    (folder / "modules.json").unlink()
    spec = read_spec(folder)
    assert (spec.pooling, spec.normalize, spec.dense) == (("mean",), False, ())


def test_a_transformer_in_its_own_folder(tmp_path: Path) -> None:
    """sentence-transformers 1.x kept the transformer in 0_Transformer/."""
    inner = make_folder(tmp_path / "m" / "0_Transformer", bert_config={"max_seq_length": 64})
    (inner / "modules.json").unlink()
    root = tmp_path / "m"
    shutil.move(str(inner / "1_Pooling"), str(root / "1_Pooling"))
    old_transformer = "sentence_transformers.models.Transformer"
    listed = [
        {"idx": 0, "name": "0", "path": "0_Transformer", "type": old_transformer},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": OLD_POOLING},
    ]
    _write(root / "modules.json", listed)
    spec = resolve_spec(str(root))
    assert spec.transformer_path == str(inner.resolve()) and spec.max_seq_length == 64


def test_several_modes_dense_and_prompts(tmp_path: Path) -> None:
    folder = make_folder(
        tmp_path / "m",
        modules=[("1_Pooling", POOLING), ("2_Dense", DENSE), ("3_Normalize", NORMALIZE)],
        pooling={"pooling_mode": ["cls", "mean"]},
        st_config={"prompts": {"query": "query: ", "document": ""}, "default_prompt_name": "query"},
    )
    dense = {"in_features": 2 * HIDDEN, "out_features": 4, "bias": True,
             "activation_function": "torch.nn.modules.activation.Tanh"}  # fmt: skip
    _write(folder / "2_Dense" / "config.json", dense)
    _tensors(
        folder / "2_Dense" / "model.safetensors",
        {"linear.weight": (4, 2 * HIDDEN), "linear.bias": (4,)},
    )
    spec = read_spec(folder)
    assert spec.pooling == ("cls", "mean") and spec.dimensions == 4
    assert spec.default_prompt == "query: " and spec.normalize
    weights = spec.dense[0].weights()
    x = np.ones((3, 2 * HIDDEN), dtype=np.float32)
    assert weights.apply(x).shape == (3, 4)
    assert rust_refusal(spec) is not None


def test_the_fingerprint_follows_the_files_not_the_path(tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "a")
    first = read_spec(folder).fingerprint
    copy = tmp_path / "b"
    shutil.copytree(folder, copy)
    assert read_spec(copy).fingerprint == first
    _write(copy / "1_Pooling" / "config.json", {"pooling_mode": "cls"})
    assert read_spec(copy).fingerprint != first


def test_what_the_rust_server_runs(tmp_path: Path) -> None:
    assert rust_refusal(resolve_spec(None)) is None
    xlmr = make_folder(
        tmp_path / "x",
        config={"model_type": "xlm-roberta", "pad_token_id": 1, "max_position_embeddings": 514},
    )
    assert "model_type 'xlm-roberta'" in str(rust_refusal(read_spec(xlmr)))
    last = make_folder(tmp_path / "l", pooling={"pooling_mode": "lasttoken"})
    assert "pooling 'lasttoken'" in str(rust_refusal(read_spec(last)))
    prompt = make_folder(
        tmp_path / "p", st_config={"prompts": {"q": "query: "}, "default_prompt_name": "q"}
    )
    assert "prompt" in str(rust_refusal(read_spec(prompt)))


# -- what is refused, in one line ------------------------------------------------------------------


def _not_json(p: Path) -> None:
    (p / "config.json").write_text("{not json")


def _no_weights(p: Path) -> None:
    (p / "model.safetensors").unlink()


def _bad_modules(p: Path) -> None:
    _write(p / "modules.json", {"0": "Transformer"})


def _no_pooling_folder(p: Path) -> None:
    shutil.rmtree(p / "1_Pooling")


def _garbage_tokenizer(p: Path) -> None:
    (p / "tokenizer.json").write_text('{"version": "1.0", "model": {"type": "Nonsense"}}')


def _config(**changes: Any) -> Callable[[Path], None]:
    def change(p: Path) -> None:
        config = json.loads((p / "config.json").read_text())
        _write(p / "config.json", {**config, **changes})

    return change


def _shape_mismatch(p: Path) -> None:
    _tensors(p / "model.safetensors", {"embeddings.word_embeddings.weight": (VOCAB, HIDDEN * 2)})


def _pooling(conf: dict[str, Any]) -> Callable[[Path], None]:
    return lambda p: _write(p / "1_Pooling" / "config.json", conf)


def _module(kind: str) -> Callable[[Path], None]:
    def change(p: Path) -> None:
        listed = json.loads((p / "modules.json").read_text())
        listed.append({"idx": 2, "name": "2", "path": "2_X", "type": kind})
        _write(p / "modules.json", listed)

    return change


def _st_config(conf: dict[str, Any]) -> Callable[[Path], None]:
    return lambda p: _write(p / "config_sentence_transformers.json", conf)


def _dense_activation(p: Path) -> None:
    _module(DENSE)(p)
    softmax = "torch.nn.modules.activation.Softmax"
    conf = {"in_features": HIDDEN, "out_features": 4, "activation_function": softmax}
    _write(p / "2_X" / "config.json", conf)
    _tensors(p / "2_X" / "model.safetensors", {"linear.weight": (4, HIDDEN)})


def _dense_shape(p: Path) -> None:
    _module(DENSE)(p)
    _write(p / "2_X" / "config.json", {"in_features": HIDDEN, "out_features": 4})
    _tensors(p / "2_X" / "model.safetensors", {"linear.weight": (5, HIDDEN)})


REFUSALS: dict[str, tuple[Callable[[Path], None], str]] = {
    "config-not-json": (_not_json, "config.json is not valid JSON"),
    "no-weights": (_no_weights, "no weights file (model.safetensors or pytorch_model.bin)"),
    "bad-modules": (_bad_modules, "modules.json is not a list of modules"),
    "no-pooling-folder": (_no_pooling_folder, "1_Pooling/config.json is missing"),
    "garbage-tokenizer": (_garbage_tokenizer, "tokenizer.json cannot be read by tokenizers"),
    "unknown-model-type": (_config(model_type="frobnet"), "model_type 'frobnet' is not supported"),
    "t5": (_config(model_type="t5", is_encoder_decoder=True), "is an encoder-decoder model"),
    "decoder": (
        _config(model_type="llama", architectures=["LlamaForCausalLM"]),
        "is a decoder model",
    ),
    "shape-mismatch": (_shape_mismatch, "embeddings.word_embeddings.weight has shape"),
    "pooling-mode": (_pooling({"pooling_mode": "attention"}), "pooling_mode 'attention'"),
    "pooling-dimension": (
        _pooling({"pooling_mode": "mean", "embedding_dimension": 3}),
        "embedding dimension 3 does not match",
    ),
    "unknown-module": (_module("sentence_transformers.models.LayerNorm"), "LayerNorm (2_X)"),
    "include-prompt": (
        lambda p: (
            _pooling({"pooling_mode": "mean", "include_prompt": False})(p),
            _st_config({"prompts": {"q": "query: "}})(p),
        ),
        "include_prompt=false",
    ),
    "default-prompt": (
        _st_config({"prompts": {"q": "query: "}, "default_prompt_name": "query"}),
        "default_prompt_name 'query' is not one of its prompts",
    ),
    "dense-activation": (_dense_activation, "activation_function torch.nn.modules.activation"),
    "dense-shape": (_dense_shape, "linear.weight has shape [5, 8]"),
    "truncation-side": (
        lambda p: _write(p / "tokenizer_config.json", {"truncation_side": "left"}),
        "truncation_side 'left'",
    ),
}


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_each_broken_or_unsupported_folder_is_refused_in_one_line(
    tmp_path: Path, case: str
) -> None:
    folder = make_folder(tmp_path / case)
    change, needle = REFUSALS[case]
    change(folder)
    with pytest.raises(ModelError) as caught:
        read_spec(folder)
    message = str(caught.value)
    assert needle in message
    assert "\n" not in message and message.startswith(f"model {folder}: ")
    assert caught.value.exit_status == ExitStatus.USAGE


def test_missing_folder_and_tokenizer(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="neither a folder"):
        resolve_spec(str(tmp_path / "nowhere"))
    folder = make_folder(tmp_path / "m")
    (folder / "tokenizer.json").unlink()
    with pytest.raises(ModelNotFoundError, match=r"lacks config\.json or tokenizer\.json"):
        resolve_spec(str(folder))


# -- refused before anything starts, by every command ----------------------------------------------


def _embbench(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "embbench", *args],
        capture_output=True, text=True, timeout=120, cwd=cwd, env=env, check=False,
    )  # fmt: skip


@pytest.mark.parametrize(
    "command",
    [
        ["model"],
        ["serve", "--variant", "shared-mutex"],
        ["run", "--variant", "batched", "--duration", "1", "--concurrency", "1"],
        ["capacity", "--variant", "batched", "--slo-p99-ms", "50"],
        ["ceiling"],
    ],
    ids=lambda c: c[0],
)
def test_every_command_refuses_a_broken_model_with_exit_2(
    tmp_path: Path, command: list[str]
) -> None:
    folder = make_folder(tmp_path / "t5", config={"model_type": "t5", "is_encoder_decoder": True})
    out = tmp_path / "results"
    args = [*command, str(folder)] if command == ["model"] else [*command, "--model", str(folder)]
    if command[0] in ("run", "capacity"):
        args += ["--out", str(out)]
    done = _embbench(*args, cwd=tmp_path)
    assert done.returncode == int(ExitStatus.USAGE), done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "encoder-decoder" in lines[0], done.stderr
    assert not out.exists() or not any(out.iterdir())  # no run folder was made


def test_a_spec_is_a_value() -> None:
    spec = resolve_spec(None)
    assert isinstance(spec, ModelSpec)
    with pytest.raises(AttributeError):
        spec.max_seq_length = 1  # type: ignore[misc]
    assert issubclass(ModelError, UsageError)
