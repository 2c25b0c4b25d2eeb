"""Dynamic batching the way TEI's router does it: take what is waiting, no artificial wait.

A worker thread per stream owns a model. Each input of a request is its own queue entry (as in
TEI, whose router splits a batch request into one entry per input); whenever a worker is free it
takes as many waiting entries as fit under `max_batch_size` and `max_batch_tokens` (padded
tokens, since padding is what the forward pass pays for), runs one forward pass and wakes the
requests whose last row it computed. Under light load a batch is one request (no added
latency); under heavy load batches grow by themselves, up to the option `batch_tokens` (the
strategy passes the lower of it and `max_batch_tokens` as this queue's `max_batch_tokens`).

A batch stops at a few hundred tokens even when `max_batch_tokens` would allow thousands: on
CPU a forward pass costs more per token once it is large (caches, attention's rows x length^2,
fresh pages for large tensors with onnxruntime's arena off). A budget of tokens rather than of
rows adapts to the input: ten one-sentence rows, or one paragraph alone. The measurements
behind the default are beside `BatchQueue`.

Fairness between requests: entries are served in the order of a tag, the number of batches
taken before the request arrived plus the entry's row in its request (start-time fair
queueing, with "one row per batch" as every request's share). A one-sentence request that
arrives while a 64-input request is being worked through therefore goes before the rest of it,
and a steady stream of small requests cannot starve a large one either: each batch lets the
large one's next row catch up by one. Entries whose waiter is gone (a client that disconnected,
so its future was cancelled) are dropped before they reach the model.

Why one module of ~380 lines: the queue, the batch former and the workers share one invariant
(every waiter gets exactly its rows, in the order the batches were formed, or an error); split
apart, each part would have to re-check what the others guarantee.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import itertools
import logging
import threading
from collections.abc import Sequence
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass, field
from time import perf_counter_ns
from typing import Protocol

import numpy as np

from embbench.servers.encoder import Embeddings, TokenIds
from embbench.servers.timing import Phases

log = logging.getLogger("embbench.server")


# A request's waiter: a concurrent future for a caller on a plain thread, or an asyncio future
# of the event loop that awaits it (set from that loop: see `deliver`).
Waiter = Future[Embeddings] | asyncio.Future[Embeddings]


@dataclass(eq=False)
class Request:
    """One client request: its rows come back into `vectors` as the batches that hold them end."""

    rows: int
    normalize: bool | None = None  # None: the model's own choice (see Encoder.embed)
    future: Waiter = field(default_factory=Future)
    vectors: Embeddings | None = None
    remaining: int = -1
    # Its timing (perf_counter_ns; timing.py): queued, its batches' forward passes (stamped with
    # the start of the last one, so that two groups of one batch count apart), the end of the
    # batch that finished it, and the largest batch it rode in.
    submitted: int = 0
    forward: int = 0
    last_batch: int = 0
    finished: int = 0
    batch_size: int = 0

    def __post_init__(self) -> None:
        self.remaining = self.rows

    @property
    def abandoned(self) -> bool:
        # Cancelled by its waiter, or already failed by another of its batches.
        return self.future.done()


@dataclass(eq=False)
class Entry:
    """One input of a request: what batches are made of."""

    request: Request
    row: int
    ids: TokenIds
    tag: int = 0  # fair-queueing order (module docstring); ties go to the older entry
    seq: int = 0
    longest: int = field(init=False)  # its length, read many times when batches are formed

    def __post_init__(self) -> None:
        self.longest = len(self.ids)

    @property
    def order(self) -> tuple[int, int]:
        return self.tag, self.seq


def take_batch(
    queue: list[Entry],
    *,
    max_batch_size: int,
    max_batch_tokens: int,
    pad_to: int | None = None,
    spread: float = 2.0,
) -> list[Entry]:
    """Take the first waiting entry (the queue is kept in `Entry.order`) and the waiting ones
    that batch best with it; the rest stay queued, in order.

    The cost of a batch is rows x its longest row (x `pad_to` when padding to a fixed length),
    so a 250-token paragraph in a batch of 24-token sentences makes each of them cost 250. When
    padding to the longest, the others are taken closest in length to the first first, and only
    within `spread` times its length; the rest wait for a batch of their own length (each comes
    first in turn, so none waits forever). The first is always taken, even alone over the
    limits. What it buys on a mixed payload is measured by configs/ablation.toml (README).
    """
    # Runs on a batch worker, holding the GIL, once per batch over every waiting entry: each
    # entry's length is read once and the rest works on plain ints (at c=100, 84 entries
    # waiting, this took 68 us per batch with a key function reading the entries).
    anchor = queue[0]
    lengths = [entry.longest for entry in queue]
    first = lengths[0]
    rows = 1
    longest = max(first, pad_to or 0)
    by_length = pad_to is None and spread > 0
    order: Sequence[int] = range(1, len(queue))
    if by_length:
        # A stable sort: among equally close lengths, the one served first in order goes first.
        order = sorted(order, key=[abs(length - first) for length in lengths].__getitem__)
    low, high = first / (spread or 1), first * spread
    taken: list[int] = []
    for index in order:
        # Full, or not even a row as short as the longest taken fits: no later one can.
        if rows >= max_batch_size or (rows + 1) * longest > max_batch_tokens:
            break
        length = lengths[index]
        if by_length and not low <= length <= high:
            continue
        wider = length if length > longest else longest
        if (rows + 1) * wider <= max_batch_tokens:
            taken.append(index)
            rows, longest = rows + 1, wider
    taken.sort()
    batch = [anchor] + [queue[index] for index in taken]
    for index in reversed(taken):  # a few deletions, not a rebuilt queue
        del queue[index]
    del queue[0]
    return batch


def split_batch(
    inputs: Sequence[TokenIds], *, max_batch_size: int, max_batch_tokens: int, pad_to: int | None
) -> list[slice]:
    """Consecutive slices of `inputs`, each a forward pass within the batch limits (rows, and
    rows x padded length), so that a large request under a lock leaves gaps for others."""
    slices = []
    start, longest = 0, pad_to or 0
    for index, ids in enumerate(inputs):
        wider = max(longest, len(ids))
        rows = index - start + 1
        if rows > 1 and (rows > max_batch_size or rows * wider > max_batch_tokens):
            slices.append(slice(start, index))
            start, wider = index, max(pad_to or 0, len(ids))
        longest = wider
    slices.append(slice(start, len(inputs)))
    return slices


class Embed(Protocol):
    """Encoder.embed: called with one argument unless a request overrides normalisation."""

    def __call__(
        self, batch: Sequence[TokenIds], normalize: bool | None = None, /
    ) -> Embeddings: ...


Outcome = Embeddings | BaseException


def settle(future: Waiter, result: Outcome) -> None:
    """Hand a result to a waiter that may have gone: a cancelled future refuses set_result, and
    that refusal must not reach (and end) the worker thread. An asyncio future only on its
    loop's thread."""
    if future.done():
        return
    try:
        if isinstance(result, BaseException):
            future.set_exception(result)
        else:
            future.set_result(result)
    except (InvalidStateError, asyncio.InvalidStateError):  # cancelled since done() said no
        pass


def _settle_all(outcomes: list[tuple[Waiter, Outcome]]) -> None:
    for future, result in outcomes:
        settle(future, result)


def deliver(outcomes: Sequence[tuple[Request, Outcome]]) -> None:
    """Settle the waiters of finished requests, from a batch worker. The asyncio ones of one
    loop are settled by a single callback on that loop, so a batch of eight requests wakes the
    event loop once, not eight times (asyncio.wrap_future schedules one callback per future)."""
    on_loops: dict[asyncio.AbstractEventLoop, list[tuple[Waiter, Outcome]]] = {}
    for request, result in outcomes:
        future = request.future
        if isinstance(future, asyncio.Future):
            on_loops.setdefault(future.get_loop(), []).append((future, result))
        else:
            settle(future, result)
    for loop, pairs in on_loops.items():
        # A closed loop raises RuntimeError: the server is stopping and its waiters are gone.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(_settle_all, pairs)


# Why batches stop at `batch_tokens` (options.py, default 256), measured on onnxruntime int8
# with one thread (the dynamo graph; the fused one of onnx_export.py has the same shape), CPU
# time per row: 24-token rows 1.65 ms at batch 8, 1.83 ms at batch 32; 256-token rows 23.7 ms
# alone, 41 ms at batch 8, 53 ms at batch 32, 22 ms of it page faults (with the arena on: 24.8,
# 26.5, 29.4 ms). The mixed payload replayed in arrival order through `take_batch` with 100
# entries waiting, one single-threaded session: 89 sentences per CPU second with batches of up
# to 32 rows and 16384 tokens, 155 with 8 rows, 204 one at a time, 230 with 256 tokens (128:
# 223; 384: 218; 512: 190-197); two threads per session: 80, 136, 169 and 205 (its best too).
# Short sentences: 604 with 256 tokens, 583 with 8 rows and 16384 tokens. torch, one thread:
# mixed 52 with 32 rows and 16384 tokens, 64 with 256 tokens (512: 67); short 155 and 165.
class BatchQueue:
    """Queue + a worker thread per `embed` (a stream), each running batches from `take_batch`."""

    def __init__(
        self,
        embed: Embed | Sequence[Embed],
        *,
        max_batch_size: int = 32,
        max_batch_tokens: int = 16384,
        pad_to: int | None = None,
        spread: float = 2.0,
    ) -> None:
        self._spread = spread
        self._max_batch_size = max_batch_size
        self._max_batch_tokens = max_batch_tokens
        self._pad_to = pad_to
        self._queue: list[Entry] = []
        self._ready = threading.Condition()
        self._closed = False
        self._seq = itertools.count()
        self.batches = 0  # also the fair-queueing clock (module docstring)
        self.rows = 0
        self.abandoned_rows = 0  # dropped unrun: their client had gone
        self.worker_errors = 0
        # Set when a waiter may have gone (a cancelled request, a failed batch): the next batch
        # first drops the queued entries of such requests. Without it every batch would walk
        # the whole queue asking each entry's future.
        self._maybe_abandoned = False
        embeds = [embed] if callable(embed) else list(embed)
        self._threads = [
            threading.Thread(target=self._work, args=(e,), name=f"batch-worker-{i}", daemon=True)
            for i, e in enumerate(embeds)
        ]
        for thread in self._threads:
            thread.start()

    def submit(
        self, inputs: list[TokenIds], normalize: bool | None = None, future: Waiter | None = None
    ) -> Waiter:
        """Queue a request's inputs; its vectors arrive in `future` (a new concurrent one by
        default)."""
        return self._submit(inputs, normalize, future).future

    def _submit(
        self, inputs: list[TokenIds], normalize: bool | None, future: Waiter | None
    ) -> Request:
        if future is None:
            future = Future()
            future.add_done_callback(self._mark_if_cancelled)
        request = Request(len(inputs), normalize, future)
        request.submitted = perf_counter_ns()
        with self._ready:
            if self._closed:
                raise RuntimeError("batch queue is closed")
            queue = self._queue
            for row, ids in enumerate(inputs):
                entry = Entry(request, row, ids, tag=self.batches + row, seq=next(self._seq))
                if not queue or queue[-1].order <= entry.order:
                    queue.append(entry)  # a one-input request comes after all that wait
                else:
                    bisect.insort(queue, entry, key=lambda e: e.order)
            self._ready.notify()
        return request

    async def embed(
        self, inputs: list[TokenIds], normalize: bool | None = None, phases: Phases | None = None
    ) -> Embeddings:
        """The request's vectors; `phases` (timing.py), if given, gets its queue wait, its
        forward passes and its batch size."""
        # Cancelling this coroutine (the client went away) cancels the future, so the entries
        # not yet taken are dropped instead of computed.
        future: asyncio.Future[Embeddings] = asyncio.get_running_loop().create_future()
        request = self._submit(inputs, normalize, future)
        try:
            vectors = await future
        except asyncio.CancelledError:
            self._maybe_abandoned = True
            raise
        if phases is not None:
            # Queued until its last batch ended, less its own forward passes (two streams may
            # run two of its batches at once: never more than the time it spent here).
            spent = request.finished - request.submitted
            forward = min(request.forward, spent)
            phases.forward += forward
            phases.wait += spent - forward
            phases.batch_size = max(phases.batch_size, request.batch_size)
        return vectors

    def _mark_if_cancelled(self, future: Future[Embeddings]) -> None:
        if future.cancelled():
            self._maybe_abandoned = True

    def alive(self) -> bool:
        """Every batch worker still running (or the queue was closed on purpose)."""
        return self._closed or all(thread.is_alive() for thread in self._threads)

    def close(self) -> None:
        with self._ready:
            self._closed = True
            self._ready.notify_all()
        for thread in self._threads:
            thread.join(timeout=5)

    def _next_batch(self) -> list[Entry] | None:
        """The next batch to run, or None once closed; under the condition's lock."""
        while True:
            if self._maybe_abandoned:
                self._maybe_abandoned = False
                kept = [entry for entry in self._queue if not entry.request.abandoned]
                self.abandoned_rows += len(self._queue) - len(kept)
                self._queue = kept
            if not self._queue:
                if self._closed:
                    return None
                self._ready.wait()
                continue
            batch = take_batch(
                self._queue,
                max_batch_size=self._max_batch_size,
                max_batch_tokens=self._max_batch_tokens,
                pad_to=self._pad_to,
                spread=self._spread,
            )
            if self._queue:  # more than this batch took: another stream may start on it
                self._ready.notify()
            # A waiter that went since the last sweep: its entries are dropped here.
            live = [entry for entry in batch if not entry.request.abandoned]
            self.abandoned_rows += len(batch) - len(live)
            if live:
                self.batches += 1
                return live

    def _work(self, embed: Embed) -> None:
        while True:
            try:
                with self._ready:
                    batch = self._next_batch()
                if batch is None:
                    return
                self._run(embed, batch)
            except Exception:  # a bug here must not silently stop every later request
                self.worker_errors += 1
                log.exception("batch worker: unexpected error; the worker goes on")

    def _run(self, embed: Embed, batch: list[Entry]) -> None:
        # Requests that override the model's normalisation (TEI's normalize=false) are rare:
        # they get a forward pass of their own rather than a flag carried through every row.
        groups: dict[bool | None, list[Entry]] = {}
        for entry in batch:
            groups.setdefault(entry.request.normalize, []).append(entry)
        for normalize, entries in groups.items():
            self._run_group(embed, entries, normalize)

    def _run_group(self, embed: Embed, batch: list[Entry], normalize: bool | None) -> None:
        flat = [entry.ids for entry in batch]
        try:
            begun = perf_counter_ns()
            vectors = embed(flat) if normalize is None else embed(flat, normalize)
            ended = perf_counter_ns()
            if len(vectors) != len(flat):
                raise RuntimeError(f"{len(vectors)} vectors came back for {len(flat)} inputs")
        except Exception as exc:  # hand the failure to every waiter; the worker lives on
            self._maybe_abandoned = True  # their other rows, still queued, are for nobody now
            deliver([(request, exc) for request in {entry.request: None for entry in batch}])
            return
        finished: list[tuple[Request, Outcome]] = []
        took, size = ended - begun, len(flat)
        with self._ready:
            self.rows += size
            for position, entry in enumerate(batch):
                request = entry.request
                if request.rows == 1:  # most requests: their row of the batch is the answer
                    request.forward, request.batch_size, request.finished = took, size, ended
                    finished.append((request, vectors[position : position + 1]))
                    continue
                if request.last_batch != begun:  # its first row in this forward pass
                    request.last_batch = begun
                    request.forward += took
                    request.batch_size = max(request.batch_size, size)
                    request.finished = ended
                vector = vectors[position]
                rows = request.vectors
                if rows is None:
                    rows = request.vectors = np.empty((request.rows, len(vector)), np.float32)
                rows[entry.row] = vector
                request.remaining -= 1
                if request.remaining == 0:
                    finished.append((request, rows))
        deliver(finished)
