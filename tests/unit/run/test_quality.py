"""The pure logic of the check under load: mismatches, percentiles, the reference cache."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest

from embbench.load import answers
from embbench.report import quality as report_quality
from embbench.run import quality
from embbench.run.quality import Kept

# Four inputs, three of them apart, the last the same as the first after truncation.
REFS = np.array(
    [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]], dtype=np.float32
)


def body(vector: list[float]) -> bytes:
    return json.dumps({"embeddings": [vector]}).encode()


def kept(index: int, vector: list[float], start: float = 100.0) -> Kept:
    return Kept(index, start, 10.0, body(vector))


def test_an_answer_closer_to_another_input_is_mismatched() -> None:
    answers = [
        kept(0, [0.99, 0.1, 0.0]),  # its own, a little off
        kept(1, [0.0, 0.0, 1.0]),  # input 2's vector: a swap
        kept(2, [0.6, 0.0, 0.8]),  # off, but still nearest its own
    ]
    verdict = quality.check_answers(answers, "predict", REFS, threshold=0.999)
    assert verdict.checked == 3 and verdict.mismatched == 1 and verdict.malformed == 0
    assert list(verdict.nearest) == [1, 2, 0]
    assert verdict.cosines[1] == pytest.approx(0.0)
    assert verdict.nearest_cosines[1] == pytest.approx(1.0)
    assert verdict.cosines[2] == pytest.approx(0.8)


def test_inputs_the_threshold_cannot_tell_apart_are_one_input() -> None:
    # Input 3's reference is input 0's: an answer for 0 equal to it is no mismatch, whichever
    # of the twins noise puts it nearer.
    verdict = quality.check_answers([kept(0, [1.0, 0.0, 0.0])], "predict", REFS, threshold=0.97)
    assert verdict.mismatched == 0 and verdict.nearest[0] in (1, 2)
    # With no other input left to compare with, there is no nearest other.
    lone = quality.check_answers([kept(0, [1.0, 0.0])], "predict", REFS[:1, :2], threshold=0.97)
    assert lone.nearest[0] == -1 and lone.mismatched == 0


def test_malformed_answers_are_counted_and_score_zero() -> None:
    answers = [
        Kept(0, 100.0, 1.0, b"not json"),
        kept(1, [0.0, 1.0]),  # the wrong width
        kept(9, [0.0, 1.0, 0.0]),  # an input the payload set does not have
        kept(1, [0.0, 1.0, 0.0]),
    ]
    verdict = quality.check_answers(answers, "predict", REFS, threshold=0.999)
    assert verdict.malformed == 3 and verdict.mismatched == 0
    assert list(verdict.cosines) == pytest.approx([0.0, 0.0, 0.0, 1.0])
    reason = quality.failure(verdict, 0.0, 0.999)
    assert reason is not None and "3 answers held no embedding" in reason


def test_other_protocols_are_parsed() -> None:
    tei = Kept(2, 1.0, 1.0, json.dumps([[0.0, 0.0, 2.0]]).encode())
    openai = Kept(
        1, 1.0, 1.0, json.dumps({"data": [{"index": 0, "embedding": [0.0, 3.0, 0.0]}]}).encode()
    )
    assert quality.check_answers([tei], "tei", REFS, 0.999).cosines[0] == pytest.approx(1.0)
    assert quality.check_answers([openai], "openai", REFS, 0.999).cosines[0] == pytest.approx(1.0)


def test_summary_and_failure() -> None:
    answers = [kept(1, [0.0, 1.0, 0.0])] * 99 + [kept(2, [0.0, 0.6, 0.8])]
    verdict = quality.check_answers(answers, "predict", REFS, threshold=0.97)
    summary = verdict.summary()
    assert summary["checked"] == 100 and summary["mismatched"] == 0
    assert summary["cosine_p1"] == pytest.approx(0.8)  # the lowest of 100: an observed value
    assert summary["cosine_p50"] == pytest.approx(1.0)
    assert quality.failure(verdict, 0.99, 0.97) is None
    low = quality.failure(verdict, 0.8, 0.97)
    assert low is not None and "cosine 0.8000 < 0.97" in low
    empty = quality.check_answers([], "predict", REFS, 0.97)
    assert empty.summary() == {"checked": 0, "mismatched": 0, "cosine_p1": None,
                               "cosine_p50": None}  # fmt: skip
    assert quality.failure(empty, None, 0.97) is None


def test_percentile_is_an_observed_value() -> None:
    values = list(range(1, 101))  # 1..100
    assert quality.percentile(values, 1) == 1.0  # numpy's linear would say 1.99
    assert quality.percentile(values, 50) == 50.0
    assert quality.percentile([0.5], 1) == 0.5
    assert math.isnan(quality.percentile([], 1))


def test_records_round_trip_and_a_cut_record_ends_the_file(tmp_path: Path) -> None:
    data = answers.encode_record(3, 10.5, 12.25, b"[[1.0]]") + answers.encode_record(
        7, 11.0, 1.0, b"xyz"
    )
    assert list(answers.decode_records(data)) == [
        Kept(3, 10.5, 12.25, b"[[1.0]]"),
        Kept(7, 11.0, 1.0, b"xyz"),
    ]
    assert len(list(answers.decode_records(data[:-1]))) == 1
    (tmp_path / "responses-1.bin").write_bytes(data)
    (tmp_path / "responses-2.bin").write_bytes(answers.encode_record(1, 20.0, 0.0, b"{}"))
    (tmp_path / "requests-1.csv").write_text("not read")
    found = answers.read_kept(tmp_path)
    assert sorted(k.index for k in found) == [1, 3, 7]
    # The window counts answers that completed in it, as measure.in_window counts requests.
    assert [k.index for k in answers.in_window(found, 10.51, 11.01)] == [3, 7]


def test_probe_indices_span_the_lengths() -> None:
    texts = ["x" * n for n in (50, 3, 200, 7, 7, 90, 12, 1000, 40, 5, 60)]
    picked = quality.probe_indices(texts)
    lengths = [len(texts[i]) for i in picked]
    assert lengths[0] == 3 and lengths[-1] == 1000 and lengths == sorted(lengths)
    assert len(set(picked)) == len(picked) <= len(quality.PROBE_QUANTILES)
    assert quality.probe_indices(["only"]) == [0]
    assert quality.probe_indices([]) == []


class Counting:
    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[str, ...], int | None]] = []

    def __call__(self, model: str, texts: tuple[str, ...], seq: int | None) -> np.ndarray:
        self.calls.append((model, texts, seq))
        return np.arange(len(texts) * 2, dtype=np.float32).reshape(len(texts), 2)


@pytest.fixture(autouse=True)
def fresh_memo(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(quality, "_memo", {})


def test_references_are_computed_once_then_read_from_disk(tmp_path: Path) -> None:
    compute = Counting()
    first = quality.references("m", ["a", "b"], None, compute=compute, root=tmp_path)
    quality._memo.clear()  # a later run: a new process
    again = quality.references("m", ["a", "b"], None, compute=compute, root=tmp_path)
    assert len(compute.calls) == 1 and np.array_equal(first, again)
    [saved] = (tmp_path / "references").iterdir()
    assert saved.suffix == ".npy" and not saved.name.startswith(".")  # no temporary left


def test_a_damaged_cache_file_is_computed_again(tmp_path: Path) -> None:
    compute = Counting()
    quality.references("m", ["a"], None, compute=compute, root=tmp_path)
    [saved] = (tmp_path / "references").iterdir()
    saved.write_bytes(b"cut short")
    quality._memo.clear()
    vectors = quality.references("m", ["a"], None, compute=compute, root=tmp_path)
    assert len(compute.calls) == 2 and vectors.shape == (1, 2)


def test_cache_keys_follow_model_texts_and_truncation(tmp_path: Path) -> None:
    key = quality.reference_key
    assert key("m", ["a", "b"], None) == key("m", ["a", "b"], None)
    assert key("m", ["a", "b"], None) != key("m", ["b", "a"], None)
    assert key("m", ["a b"], None) != key("m", ["a", "b"], None)
    assert key("m", ["a"], None) != key("m", ["a"], 128)
    assert key("m", ["a"], None) != key("other", ["a"], None)
    # A model folder is known by its files: replacing one in place changes the key.
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    before = key(str(folder), ["a"], None)
    (folder / "config.json").write_text('{"changed": true}')
    assert key(str(folder), ["a"], None) != before


def test_cache_root_follows_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("EMBBENCH_CACHE", str(tmp_path))
    assert quality.cache_root() == tmp_path
    monkeypatch.delenv("EMBBENCH_CACHE")
    assert quality.cache_root() == Path.home() / ".cache" / "embbench"


def test_label_quality_pools_the_cells_of_a_label() -> None:
    rows = [
        {"label": "int8", "quantize": "int8", "checked": 100, "mismatched": 0,
         "cosine_min": 0.975, "cosine_p1": 0.985, "cosine_p50": 0.993, "cosine_threshold": 0.97},
        {"label": "int8", "quantize": "int8", "checked": 50, "mismatched": 2,
         "cosine_min": 0.40, "cosine_p1": 0.41, "cosine_p50": 0.995, "cosine_threshold": 0.97},
        {"label": "fp32", "quantize": "none", "checked": float("nan"), "mismatched": None,
         "cosine_min": 1.0, "cosine_p1": None, "cosine_p50": None, "cosine_threshold": 0.999},
    ]  # fmt: skip
    [int8] = report_quality.label_quality(rows)
    assert int8["cells"] == 2 and int8["checked"] == 150 and int8["mismatched"] == 2
    assert int8["cosine_min"] == 0.40 and int8["cosine_p1"] == 0.41
    assert int8["cosine_p50"] == pytest.approx(0.994)


def test_the_swapping_strategy_exists_only_when_asked_for() -> None:
    import os
    import subprocess
    import sys

    code = "from embbench.servers.strategies import STRATEGIES; print('swapped' in STRATEGIES)"
    for value, expected in (("", "False"), ("1", "True")):
        env = {**os.environ, "EMBBENCH_TEST_STRATEGIES": value}
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
        assert out.stdout.strip() == expected, out.stderr


def test_the_swapping_encoder_rotates_a_batch_and_leaves_one_alone() -> None:
    from embbench.servers.strategies import _SwappingEncoder

    class Identity:
        max_seq_length = 7

        def embed(self, batch: list[list[int]], normalize: bool | None = None) -> np.ndarray:
            return np.array([[float(ids[0])] for ids in batch])

    swapping = _SwappingEncoder(Identity())  # type: ignore[arg-type]
    assert swapping.embed([[1], [2], [3]]).ravel().tolist() == [3.0, 1.0, 2.0]
    assert swapping.embed([[1]]).ravel().tolist() == [1.0]
    assert swapping.max_seq_length == 7


def test_the_check_rate_reaches_locust_as_an_option(tmp_path: Path) -> None:
    # An option, not the environment: Locust's master sends its options to remote workers.
    from embbench.load.locust import LoadSpec, locust_command

    spec = LoadSpec("http://h", "predict", 4, 10.0, ["a"], tmp_path, tmp_path / "l.log")
    argv, _ = locust_command(dataclasses.replace(spec, check_rate=100), tmp_path / "p.json")
    assert argv[argv.index("--embbench-check-rate") + 1] == "100"
    argv, _ = locust_command(spec, tmp_path / "p.json")
    assert "--embbench-check-rate" not in argv
