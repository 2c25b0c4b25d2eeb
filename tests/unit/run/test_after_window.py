"""The checks after a cell's window (run/invariance.py, run/cache_check.py): the deviation's
maths, which texts go in which batch, the cache decision on fixed samples (its boundary too),
and both measurements driven through a made-up endpoint (no server: the logic, not the HTTP)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import httpx
import numpy as np
import pytest

from embbench.run import after_window, cache_check, invariance
from embbench.run.endpoint import Answer, Endpoint, many_request, most_inputs

# -- batch invariance: the deviation ---------------------------------------------------------


def test_identical_vectors_deviate_by_nothing_whatever_their_scale() -> None:
    vectors = np.random.default_rng(0).normal(size=(5, 16))
    assert invariance.deviations(vectors, vectors).max() == pytest.approx(0.0, abs=1e-12)
    # 1 - cosine ignores the norm: an unnormalised model's answers compare alike.
    assert invariance.deviations(vectors, 3.0 * vectors).max() == pytest.approx(0.0, abs=1e-12)
    assert (invariance.deviations(vectors, vectors) >= 0).all()


def test_the_deviation_is_one_minus_the_cosine() -> None:
    alone = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 2.0]])
    batched = np.array([[1.0, 1.0], [-1.0, 0.0], [0.0, 1.0]])
    found = invariance.deviations(alone, batched)
    assert found == pytest.approx([1 - np.sqrt(0.5), 2.0, 0.0])


def test_the_columns_are_the_largest_the_median_and_the_count() -> None:
    result = invariance.Invariance()
    assert result.columns() == dict.fromkeys(invariance.COLUMNS)
    alone = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    result.add(alone, alone, None)
    result.add(np.array([1.0, 0.0]), np.array([[1.0, 0.1]]), 4)
    result.add(np.array([1.0, 0.0]), np.array([[1.0, 0.0]]), 2)
    columns = result.columns()
    assert columns["batch_inputs"] == 5 and columns["batch_largest"] == 4
    assert columns["batch_deviation"] == pytest.approx(1 - 1 / np.sqrt(1.01))
    assert columns["batch_deviation_p50"] == pytest.approx(0.0, abs=1e-12)


# -- batch invariance: the plan --------------------------------------------------------------

TEXTS = [f"text {'word ' * (i % 23)}{i}" for i in range(40)]


def test_the_plan_puts_each_target_among_short_and_long_mates_at_moving_positions() -> None:
    plan = invariance.plan_for(TEXTS)
    assert len(plan.targets) == 3
    lengths = [len(TEXTS[i]) for i in plan.short + plan.long]
    assert max(len(TEXTS[i]) for i in plan.short) <= min(len(TEXTS[i]) for i in plan.long)
    assert len(lengths) == 14 and not set(plan.targets) & set(plan.short + plan.long)
    batches = plan.batches(most=8)
    assert len(batches) == 3 * 2 * len(invariance.SIZES)
    assert sorted({len(b) for b in batches}) == list(invariance.SIZES)
    positions = {b.index(t) for b in batches for t in plan.targets if t in b}
    assert len(positions) > 2  # first, middle, last...
    # A server that takes at most 4 inputs per request gets no batch of 8.
    assert max(len(b) for b in plan.batches(most=4)) == 4
    for mates, target in plan.bursts():
        assert target in plan.targets and target not in mates
    assert sorted({len(m) + 1 for m, _ in plan.bursts()}) == list(invariance.BURSTS)


def test_requests_of_several_inputs_use_the_list_shapes() -> None:
    path, body, shape = many_request("predict", ["a", "b"], "m")
    assert (path, shape) == ("/embed", "tei") and b'"inputs": ["a", "b"]' in body
    path, body, shape = many_request("openai", ["a", "b"], "m")
    assert (path, shape) == ("/v1/embeddings", "openai") and b'"input": ["a", "b"]' in body
    assert most_inputs({"max_client_batch_size": 4}, 8) == 4
    assert most_inputs({}, 8) == 8 and most_inputs({"max_client_batch_size": None}, 8) == 8


# -- the cache decision ----------------------------------------------------------------------


def test_an_honest_server_with_ten_percent_noise_is_not_flagged() -> None:
    rng = np.random.default_rng(1)
    for seed in range(20):
        repeat = 10.0 * rng.lognormal(0, 0.1, size=32)
        distinct = 10.0 * rng.lognormal(0, 0.1, size=32)
        verdict = cache_check.judge(repeat, distinct, seed=seed)
        assert not verdict.flagged and verdict.low < 1.1 < verdict.high + 0.2


def test_a_cache_is_flagged() -> None:
    rng = np.random.default_rng(2)
    repeat = 1.5 * rng.lognormal(0, 0.1, size=32)  # served from memory
    distinct = 10.0 * rng.lognormal(0, 0.1, size=32)
    verdict = cache_check.judge(repeat, distinct)
    assert verdict.flagged and verdict.speedup > 5 and verdict.pairs == 32
    assert verdict.low <= verdict.speedup <= verdict.high
    assert verdict.columns()["cache_flag"] is True


def test_exactly_ten_percent_faster_is_not_more_than_ten_percent() -> None:
    # 11 / 10 is 1.1000000000000001 in floats: still not "more than 10 %".
    assert not cache_check.judge([10.0] * 32, [11.0] * 32).flagged
    assert cache_check.judge([10.0] * 32, [11.05] * 32).flagged


def test_a_point_above_ten_percent_within_the_noise_is_not_enough() -> None:
    # The medians say 1.2, but half the pairs say 0.8: the interval reaches below 1.1.
    verdict = cache_check.judge([10.0] * 16, [8.0] * 7 + [12.0] * 9)
    assert verdict.speedup == pytest.approx(1.2)
    assert verdict.low < 1.1 and not verdict.flagged


def test_a_true_ten_percent_in_heavy_noise_and_drift_is_rarely_flagged() -> None:
    # An honest server at the boundary (repeats truly 10 % faster), each request +-30 % and
    # each pair's moment of the machine +-20 %: flagged in at most a few % of experiments.
    rng = np.random.default_rng(5)
    flagged = 0
    for seed in range(200):
        drift = rng.lognormal(0, 0.2, size=32)
        repeat = 10.0 * drift * rng.lognormal(0, 0.3, size=32)
        distinct = 11.0 * drift * rng.lognormal(0, 0.3, size=32)
        flagged += cache_check.judge(repeat, distinct, seed=seed).flagged
    assert flagged <= 8  # 4 %; a point estimate alone would flag about half


def test_the_decision_is_seeded_and_refuses_bad_samples() -> None:
    a, b = [10.0, 11.0, 9.0, 12.0], [10.5, 9.5, 13.0, 11.0]
    assert cache_check.judge(a, b, seed=4) == cache_check.judge(a, b, seed=4)
    with pytest.raises(ValueError, match="paired"):
        cache_check.judge([1.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="positive"):
        cache_check.judge([0.0], [1.0])


def test_distinct_texts_are_the_same_words_in_other_orders() -> None:
    text = "the quick brown fox jumps over the lazy dog"
    others = cache_check.reorderings(text, 33)
    assert len(set(others)) == 33 and text not in others
    assert all(sorted(o.split()) == sorted(text.split()) for o in others)
    assert cache_check.reorderings(text, 5, seed=1) == cache_check.reorderings(text, 5, seed=1)
    with pytest.raises(ValueError, match="too few"):
        cache_check.reorderings("two words", 5)
    assert cache_check.base_text(["too short", "a b c"]) is None
    picked = cache_check.base_text(["one two three four five six", "a b c d e f g h i j k l"])
    assert picked is not None and len(picked.split()) >= cache_check.MIN_WORDS


# -- both measurements through a made-up endpoint --------------------------------------------


def _vector(text: str) -> np.ndarray[Any, Any]:
    rng = np.random.default_rng(abs(hash(text)) % (1 << 32))
    return rng.normal(size=8)


class FakeEndpoint(Endpoint):
    """Vectors by text; `jitter` moves a text's vector with its batch's size; `cached` answers
    texts it has seen in 1 ms instead of 10 (made-up latencies: the decision, not a clock)."""

    def __init__(
        self, jitter: float = 0.0, cached: bool = False, refuse: bool = False,
        longest: int | None = None,
    ) -> None:  # fmt: skip
        # No connection: the answers are made up here. `longest`: words beyond which a text is
        # refused, 413 (a server told not to truncate).
        self.jitter, self.cached, self.refuse, self.longest = jitter, cached, refuse, longest
        self.seen: set[str] = set()
        self.requests = 0

    def _answer(self, texts: Sequence[str]) -> Answer:
        self.requests += 1
        if self.longest is not None and any(len(t.split()) > self.longest for t in texts):
            request = httpx.Request("POST", "http://x/embed")
            raise httpx.HTTPStatusError("413", request=request, response=httpx.Response(413))
        vectors = np.asarray([_vector(t) + self.jitter * (len(texts) - 1) for t in texts])
        fast = self.cached and all(t in self.seen for t in texts)
        self.seen.update(texts)
        return Answer(vectors, 1.0 if fast else 10.0, len(texts))

    def one(self, text: str) -> Answer:
        return self._answer([text])

    def many(self, texts: Sequence[str]) -> Answer:
        if self.refuse:
            request = httpx.Request("POST", "http://x/embed")
            raise httpx.HTTPStatusError("404", request=request, response=httpx.Response(404))
        return self._answer(texts)

    def __exit__(self, *exc: object) -> None:
        pass


PAYLOAD = [" ".join(f"w{j}" for j in range(6 + i % 20)) + f" t{i}" for i in range(60)]


def test_an_invariant_server_deviates_by_nothing_and_a_batch_dependent_one_is_caught() -> None:
    fine = invariance.measure(FakeEndpoint(), PAYLOAD, {}, FakeEndpoint)
    columns = fine.columns()
    assert columns["batch_deviation"] == pytest.approx(0.0, abs=1e-12)
    # 3 twice alone, 3 targets x 2 kinds x (2 + 4 + 8), 3 targets x (4 + 8) in bursts.
    assert columns["batch_inputs"] == 3 + 3 * 2 * 14 + 3 * 12
    assert columns["batch_largest"] == 8
    moved = invariance.measure(
        FakeEndpoint(jitter=0.05), PAYLOAD, {}, lambda: FakeEndpoint(jitter=0.05)
    )
    assert moved.columns()["batch_deviation"] > 1e-3


def test_a_server_refusing_several_inputs_is_measured_with_bursts_only() -> None:
    refusing = FakeEndpoint(refuse=True)
    found = invariance.measure(refusing, PAYLOAD, {}, FakeEndpoint)
    assert found.refused is not None and found.columns()["batch_inputs"] == 3 + 3 * 12


def test_inputs_too_long_for_a_server_that_does_not_truncate_are_left_out() -> None:
    strict = FakeEndpoint(longest=20)
    found = invariance.measure(strict, PAYLOAD, {}, lambda: FakeEndpoint(longest=20))
    columns = found.columns()
    assert found.refused is None and columns["batch_deviation"] == pytest.approx(0.0, abs=1e-12)
    assert 0 < columns["batch_inputs"] < 3 + 3 * 2 * 14 + 3 * 12
    with pytest.raises(ValueError, match="every target"):
        invariance.measure(FakeEndpoint(longest=0), PAYLOAD, {}, FakeEndpoint)


def test_the_cache_check_flags_a_caching_endpoint_only() -> None:
    honest = cache_check.measure(FakeEndpoint(), PAYLOAD)
    caching = cache_check.measure(FakeEndpoint(cached=True), PAYLOAD)
    assert honest is not None and caching is not None
    assert not honest.flagged and honest.speedup == 1.0 and honest.pairs == cache_check.PAIRS
    assert caching.flagged and caching.speedup == pytest.approx(10.0)


def test_the_columns_of_both_checks_are_declared() -> None:
    from embbench.results.columns import BY_NAME

    assert all(name in BY_NAME for name in after_window.COLUMNS)
