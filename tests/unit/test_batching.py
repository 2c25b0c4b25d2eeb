from __future__ import annotations

import collections
import threading
from collections.abc import Callable

import numpy as np
import pytest

from embbench.servers.batching import BatchQueue, Pending, take_batch


def queue_of(*lengths: int) -> collections.deque[Pending]:
    return collections.deque(Pending([[1] * n]) for n in lengths)


def test_takes_everything_that_fits() -> None:
    q = queue_of(5, 5, 5)
    batch = take_batch(q, max_batch_size=8, max_batch_tokens=1000)
    assert len(batch) == 3 and not q


def test_bounded_by_batch_size() -> None:
    q = queue_of(5, 5, 5, 5)
    assert len(take_batch(q, max_batch_size=3, max_batch_tokens=1000)) == 3
    assert len(q) == 1


def test_bounded_by_padded_tokens() -> None:
    # rows x longest: 2 x 10 = 20 fits in 25; a third row of 10 would be 30.
    q = queue_of(10, 10, 10)
    batch = take_batch(q, max_batch_size=32, max_batch_tokens=25)
    assert [len(p.inputs[0]) for p in batch] == [10, 10]
    assert len(q) == 1


def test_closest_lengths_join_first_and_order_is_kept() -> None:
    # The oldest is 20; of the rest, 21 and 19 are closest, 30 and 38 wait (all within spread 2).
    q = queue_of(20, 30, 21, 38, 19)
    batch = take_batch(q, max_batch_size=3, max_batch_tokens=100_000)
    assert [p.longest for p in batch] == [20, 21, 19]
    assert [p.longest for p in q] == [30, 38]


def test_arrival_order_when_spread_is_zero() -> None:
    q = queue_of(20, 30, 21, 38, 19)
    batch = take_batch(q, max_batch_size=3, max_batch_tokens=100_000, spread=0)
    assert [p.longest for p in batch] == [20, 30, 21]
    assert [p.longest for p in q] == [38, 19]


def test_lengths_far_apart_wait_for_their_own_batch() -> None:
    q = queue_of(20, 250, 24, 18, 300)
    batch = take_batch(q, max_batch_size=32, max_batch_tokens=100_000)
    assert [p.longest for p in batch] == [20, 24, 18]
    assert [p.longest for p in q] == [250, 300]  # still in arrival order
    assert [p.longest for p in take_batch(q, max_batch_size=32, max_batch_tokens=100_000)] == [
        250,
        300,
    ]


def test_fixed_padding_ignores_lengths() -> None:
    q = queue_of(20, 250, 24)
    batch = take_batch(q, max_batch_size=32, max_batch_tokens=100_000, pad_to=256)
    assert len(batch) == 3


def test_padding_to_fixed_length_counts_the_padding() -> None:
    q = queue_of(3, 3, 3)
    batch = take_batch(q, max_batch_size=32, max_batch_tokens=600, pad_to=256)
    assert len(batch) == 2  # 2 x 256 = 512 fits, 3 x 256 does not


def test_oversized_first_item_still_served() -> None:
    q = queue_of(500, 1)
    assert len(take_batch(q, max_batch_size=32, max_batch_tokens=100)) == 1


def fake_embed(batch: list[list[int]]) -> np.ndarray:
    # Row i's "embedding" is its length: enough to check that results go back to their owners.
    return np.array([[float(len(ids))] for ids in batch], dtype=np.float32)


def test_queue_returns_each_request_its_own_rows() -> None:
    queue = BatchQueue(fake_embed, max_batch_size=4, max_batch_tokens=1000)
    try:
        futures = [queue.submit([[0] * n, [0] * (n + 1)]) for n in range(1, 9)]
        for n, future in enumerate(futures, start=1):
            assert future.result(timeout=5).ravel().tolist() == [n, n + 1]
        assert queue.rows == 16
    finally:
        queue.close()


def test_queue_batches_what_waits() -> None:
    gate = threading.Event()
    entered = threading.Event()
    sizes: list[int] = []

    def slow_embed(batch: list[list[int]]) -> np.ndarray:
        entered.set()
        gate.wait(5)
        sizes.append(len(batch))
        return fake_embed(batch)

    queue = BatchQueue(slow_embed, max_batch_size=32, max_batch_tokens=10_000)
    try:
        first = queue.submit([[0]])
        assert entered.wait(5)  # the worker is busy with the first request
        rest = [queue.submit([[0, 0]]) for _ in range(5)]  # wait behind the first batch
        gate.set()
        first.result(timeout=5)
        for future in rest:
            future.result(timeout=5)
        assert sizes == [1, 5]
    finally:
        queue.close()


def test_failure_reaches_every_waiter_and_worker_survives() -> None:
    calls = 0

    def flaky(batch: list[list[int]]) -> np.ndarray:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("boom")
        return fake_embed(batch)

    queue = BatchQueue(flaky)
    try:
        with pytest.raises(RuntimeError, match="boom"):
            queue.submit([[0]]).result(timeout=5)
        assert queue.submit([[0, 0]]).result(timeout=5).ravel().tolist() == [2.0]
    finally:
        queue.close()


def test_streams_run_batches_side_by_side() -> None:
    # Two streams: while the first request holds one of them, the other serves the next.
    gate = threading.Event()
    first_in = threading.Event()
    calls: list[str] = []

    def stream(name: str) -> Callable[[list[list[int]]], np.ndarray]:
        def embed(batch: list[list[int]]) -> np.ndarray:
            calls.append(name)
            if len(calls) == 1:
                first_in.set()
                assert gate.wait(5)
            return fake_embed(batch)

        return embed

    queue = BatchQueue([stream("a"), stream("b")], max_batch_size=1, max_batch_tokens=1000)
    try:
        held = queue.submit([[0]])
        assert first_in.wait(5)
        assert queue.submit([[0, 0]]).result(timeout=5).ravel().tolist() == [2.0]
        assert not held.done() and sorted(calls) == ["a", "b"]
        gate.set()
        assert held.result(timeout=5).ravel().tolist() == [1.0]
    finally:
        gate.set()
        queue.close()
