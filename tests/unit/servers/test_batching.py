from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from embbench.config.options import ServerOptions
from embbench.config.wire import ServerConfig
from embbench.servers.batching import BatchQueue, Entry, Request, split_batch, take_batch
from embbench.servers.strategies import BatchedStrategy


def queue_of(*lengths: int) -> list[Entry]:
    """One single-input request per length, in arrival order."""
    return [Entry(Request(1), 0, [1] * n, tag=0, seq=i) for i, n in enumerate(lengths)]


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
    assert [p.longest for p in batch] == [10, 10]
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


def gated_embed(gate: threading.Event) -> Callable[[list[list[int]]], np.ndarray]:
    """fake_embed, once `gate` is set: requests pile up behind the first batch meanwhile."""

    def embed(batch: list[list[int]]) -> np.ndarray:
        gate.wait(5)
        return fake_embed(batch)

    return embed


def test_queue_returns_each_request_its_own_rows() -> None:
    queue = BatchQueue(fake_embed, max_batch_size=4, max_batch_tokens=1000)
    try:
        futures = [queue.submit([[0] * n, [0] * (n + 1)]) for n in range(1, 9)]
        for n, future in enumerate(futures, start=1):
            assert future.result(timeout=5).ravel().tolist() == [n, n + 1]
        assert queue.rows == 16
    finally:
        queue.close()


def test_one_input_requests_get_their_own_row() -> None:
    gate = threading.Event()
    gated = gated_embed(gate)

    queue = BatchQueue(gated, max_batch_size=8, max_batch_tokens=1000)
    try:
        futures = [queue.submit([[0] * n]) for n in range(1, 7)]  # most share one batch
        gate.set()
        for n, future in enumerate(futures, start=1):
            vectors = future.result(timeout=5)
            assert vectors.shape == (1, 1) and vectors[0, 0] == n
    finally:
        queue.close()


def test_a_model_that_returns_too_few_rows_fails_its_waiters() -> None:
    queue = BatchQueue(lambda batch: fake_embed(batch)[:-1])
    try:
        with pytest.raises(RuntimeError, match="0 vectors came back for 1 inputs"):
            queue.submit([[0, 0]]).result(timeout=5)
        assert queue.alive()
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


def test_a_small_request_goes_before_the_rest_of_a_large_one() -> None:
    # Two rows per batch: the large request's first two rows (tags 0, 1) run while the small
    # one arrives; its tag (1 batch taken so far + row 0) comes before the large one's rows 2+.
    gate = threading.Event()
    entered = threading.Event()
    order: list[int] = []

    def embed(batch: list[list[int]]) -> np.ndarray:
        entered.set()
        gate.wait(5)
        order.extend(len(ids) for ids in batch)
        return fake_embed(batch)

    queue = BatchQueue(embed, max_batch_size=2, max_batch_tokens=1000)
    try:
        large = queue.submit([[0] * 5 for _ in range(6)])
        assert entered.wait(5)
        small = queue.submit([[0] * 2])
        gate.set()
        small.result(timeout=5)
        large.result(timeout=5)
        assert order == [5, 5, 2, 5, 5, 5, 5]
    finally:
        gate.set()
        queue.close()


def test_a_stream_of_small_requests_does_not_starve_a_large_one() -> None:
    queue_entries = queue_of()
    large = Request(3)
    queue_entries += [Entry(large, row, [0] * 9, tag=row, seq=row) for row in range(3)]
    # Small requests that arrived at rounds 0, 1, 2, 3: the large one's row r (tag r) goes
    # before the small ones of later rounds.
    queue_entries += [Entry(Request(1), 0, [0], tag=t, seq=10 + t) for t in range(4)]
    queue_entries.sort(key=lambda e: e.order)
    served = []
    while queue_entries:
        served += take_batch(queue_entries, max_batch_size=1, max_batch_tokens=1000)
    assert [e.longest for e in served] == [9, 1, 9, 1, 9, 1, 1]


def test_split_batch_bounds_rows_and_padded_tokens() -> None:
    ids = [[0] * n for n in (10, 10, 10, 50, 50, 5)]
    assert split_batch(ids, max_batch_size=2, max_batch_tokens=10_000, pad_to=None) == [
        slice(0, 2),
        slice(2, 4),
        slice(4, 6),
    ]
    # rows x longest: 10,10,10 (30) fit in 100; adding 50 would make 4 x 50.
    assert split_batch(ids, max_batch_size=32, max_batch_tokens=100, pad_to=None) == [
        slice(0, 3),
        slice(3, 5),
        slice(5, 6),
    ]
    assert split_batch(ids, max_batch_size=32, max_batch_tokens=300, pad_to=128) == [
        slice(0, 2),
        slice(2, 4),
        slice(4, 6),
    ]
    assert split_batch([[0] * 900], max_batch_size=1, max_batch_tokens=10, pad_to=None) == [
        slice(0, 1)
    ]


def test_cancelled_waiters_are_skipped_and_the_worker_lives_on() -> None:
    gate = threading.Event()
    entered = threading.Event()
    computed: list[int] = []

    def embed(batch: list[list[int]]) -> np.ndarray:
        entered.set()
        gate.wait(5)
        computed.extend(len(ids) for ids in batch)
        return fake_embed(batch)

    queue = BatchQueue(embed, max_batch_size=2, max_batch_tokens=1000)
    try:
        running = queue.submit([[0] * 3])
        assert entered.wait(5)
        waiting = queue.submit([[0] * 4, [0] * 4, [0] * 4])
        assert running.cancel() and waiting.cancel()  # both clients gave up
        gate.set()
        # The running batch ends with nobody to take its result (a set_result on a cancelled
        # future used to raise in the worker and end it); the waiting rows are never run.
        assert queue.submit([[0] * 7]).result(timeout=5).ravel().tolist() == [7.0]
        assert computed == [3, 7]
        assert queue.abandoned_rows == 3
        assert queue.alive()
    finally:
        gate.set()
        queue.close()


def test_asyncio_cancellation_reaches_the_queue() -> None:
    gate = threading.Event()
    embed = gated_embed(gate)

    queue = BatchQueue(embed, max_batch_size=1, max_batch_tokens=1000)

    async def scenario() -> None:
        first = asyncio.ensure_future(queue.embed([[0]]))
        second = asyncio.ensure_future(queue.embed([[0], [0]]))
        await asyncio.sleep(0.05)
        second.cancel()  # what guard.py does when the client goes away
        await asyncio.sleep(0.05)
        gate.set()
        assert (await first).ravel().tolist() == [1.0]

    try:
        asyncio.run(scenario())
        assert queue.submit([[0, 0]]).result(timeout=5).ravel().tolist() == [2.0]
        assert queue.abandoned_rows == 2
    finally:
        gate.set()
        queue.close()


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_dead_worker_is_reported() -> None:
    class Fatal(BaseException):
        pass

    def embed(batch: list[list[int]]) -> np.ndarray:
        raise Fatal  # not an Exception: nothing in the worker may catch it

    queue = BatchQueue(embed)
    try:
        assert queue.alive()
        queue.submit([[0]])
        for thread in queue._threads:
            thread.join(timeout=5)
        assert not queue.alive()
    finally:
        queue.close()


def fake_encoder(sizes: list[int], gate: threading.Event, entered: threading.Event) -> Any:
    """Enough of an Encoder for BatchedStrategy: records each batch's rows, the first one held."""

    def embed(batch: list[list[int]], normalize: bool | None = None) -> np.ndarray:
        entered.set()
        assert gate.wait(5)
        sizes.append(len(batch))
        return fake_embed(batch)

    encoder = SimpleNamespace(
        settings=SimpleNamespace(options=ServerOptions()), max_seq_length=256, embed=embed
    )
    encoder.replica = lambda: encoder
    return encoder


@pytest.mark.parametrize(
    ("options", "rows"),
    [
        ({}, [1, 10, 10, 10, 10, 9]),  # 10 x 24 = 240 <= batch_tokens 256; 11 x 24 is over
        ({"batch_tokens": 100_000}, [1, 32, 17]),  # max_batch_size binds instead
        ({"batch_tokens": 100_000, "max_batch_tokens": 48}, [1, 2] + [2] * 24),  # the hard cap
    ],
)
def test_batched_strategy_fills_a_batch_up_to_batch_tokens(
    options: dict[str, int], rows: list[int]
) -> None:
    sizes: list[int] = []
    gate, entered = threading.Event(), threading.Event()
    config = ServerConfig(
        variant="batched",
        model_path="unused",
        port=0,
        workers=1,
        threads=1,
        options=ServerOptions(**options),  # type: ignore[arg-type]
        strategy="batched",
    )
    strategy = BatchedStrategy.from_config(config, fake_encoder(sizes, gate, entered))
    try:
        first = strategy.queue.submit([[0] * 24])
        assert entered.wait(5)  # the worker holds the first; the rest wait together
        rest = [strategy.queue.submit([[0] * 24]) for _ in range(sum(rows) - 1)]
        gate.set()
        for future in [first, *rest]:
            future.result(timeout=5)
        assert sizes == rows
    finally:
        gate.set()
        strategy.close()


def test_the_default_batch_budget_is_below_the_hard_cap() -> None:
    # The queue's limit is the lower of the two; a default budget above the cap would be moot.
    assert ServerOptions().batch_tokens < ServerOptions().max_batch_tokens


def test_a_batch_wakes_the_event_loop_once() -> None:
    """The waiters of one batch are settled by one callback on their loop, not one each."""
    gate = threading.Event()
    embed = gated_embed(gate)

    queue = BatchQueue(embed, max_batch_size=8, max_batch_tokens=1000)

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        calls = []
        original = loop.call_soon_threadsafe

        def counting(callback: Any, *args: Any, **kwargs: Any) -> Any:
            calls.append(callback)
            return original(callback, *args, **kwargs)

        loop.call_soon_threadsafe = counting  # type: ignore[method-assign]
        first = asyncio.ensure_future(queue.embed([[0]]))
        await asyncio.sleep(0.05)  # taken alone, held at the gate
        rest = [asyncio.ensure_future(queue.embed([[0] * n])) for n in (2, 2, 3)]
        await asyncio.sleep(0.05)
        gate.set()
        results = await asyncio.gather(first, *rest)
        assert [r.ravel().tolist() for r in results] == [[1.0], [2.0], [2.0], [3.0]]
        assert len(calls) == 2  # two batches: the first alone, then the three together

    try:
        asyncio.run(scenario())
    finally:
        gate.set()
        queue.close()
