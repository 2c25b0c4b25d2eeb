"""How concurrent requests reach the model: the part that differs between variants.

Each strategy takes token ids (the HTTP layer tokenises) and returns embeddings; the event loop
never runs a forward pass itself, so /health and request parsing stay responsive under load.
No request monopolises the model: the lock strategies take a large request in slices of at most
`max_batch_size` inputs and `max_batch_tokens` padded tokens, each under the lock on its own
(asyncio's locks are FIFO, so another request's turn comes between two slices), and the batched
one queues every input on its own (batching.py). A strategy is chosen by name in STRATEGIES.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from time import perf_counter_ns
from typing import Protocol

import numpy as np

from embbench.config.wire import ServerConfig
from embbench.servers.batching import BatchQueue, split_batch
from embbench.servers.encoder import Embeddings, Encoder, TokenIds
from embbench.servers.locks import RWLock
from embbench.servers.timing import Phases, current


class Strategy(Protocol):
    encoder: Encoder
    can_reload: bool

    def encoders(self) -> list[Encoder]: ...

    # normalize: None is the model's own choice; a bool overrides it (TEI's `normalize`).
    async def embed(self, inputs: list[TokenIds], normalize: bool | None = None) -> Embeddings: ...

    async def reload(self, load: Callable[[], Encoder]) -> None: ...

    def healthy(self) -> bool: ...

    def stats(self) -> dict[str, int]: ...

    def close(self) -> None: ...


def _pad_to(encoder: Encoder) -> int | None:
    return encoder.max_seq_length if encoder.settings.options.padding == "max_length" else None


class _PoolStrategy:
    """Forward passes in a thread pool, each under `_guard` (a lock side, or nothing)."""

    can_reload = True

    def __init__(
        self,
        encoder: Encoder,
        pool_size: int,
        *,
        max_batch_size: int = 32,
        max_batch_tokens: int = 16384,
    ) -> None:
        self.encoder = encoder
        self.pool_size = pool_size
        self.max_batch_size = max_batch_size
        self.max_batch_tokens = max_batch_tokens
        self._pool = ThreadPoolExecutor(max_workers=pool_size, thread_name_prefix="infer")
        self._inflight = 0
        self._peak = 0
        self._counts = threading.Lock()
        self.rows = 0
        self.abandoned_rows = 0
        self.reloads = 0
        self.reloads_merged = 0
        self._reloading: asyncio.Future[None] | None = None

    def encoders(self) -> list[Encoder]:
        return [self.encoder]

    def _guard(self) -> contextlib.AbstractAsyncContextManager[None]:
        return contextlib.nullcontext()

    def _exclusive(self) -> contextlib.AbstractAsyncContextManager[None]:
        return contextlib.nullcontext()

    async def embed(self, inputs: list[TokenIds], normalize: bool | None = None) -> Embeddings:
        loop = asyncio.get_running_loop()
        parts: list[Embeddings] = []
        started = 0  # rows handed to a pool thread (counted there)
        phases: Phases | None = current.get()  # timing.py; None: not timed
        handed = 0  # when the slice under way was handed to the pool

        def compute(encoder: Encoder, batch: Sequence[TokenIds]) -> Embeddings:
            nonlocal started
            started += len(batch)
            with self._counts:
                self.rows += len(batch)
            if phases is None:
                return encoder.embed(batch, normalize)
            # Timed on the pool's thread. Waiting for a free thread of the pool counts as waiting
            # for the lock: with the rwlock it is the wait that there is (its read side only
            # waits for a reload). The hop back is the framework's share.
            begun = perf_counter_ns()
            phases.wait += begun - handed
            vectors = encoder.embed(batch, normalize)
            phases.forward += perf_counter_ns() - begun
            phases.batch_size = max(phases.batch_size, len(batch))
            return vectors

        slices = split_batch(
            inputs,
            max_batch_size=self.max_batch_size,
            max_batch_tokens=self.max_batch_tokens,
            pad_to=_pad_to(self.encoder),
        )
        try:
            for part in slices:
                asked = perf_counter_ns()
                async with self._guard():
                    if phases is not None:
                        phases.wait += perf_counter_ns() - asked
                    self._inflight += 1
                    self._peak = max(self._peak, self._inflight)
                    try:
                        handed = perf_counter_ns()
                        # The encoder of this slice's turn: a reload may swap it between two.
                        parts.append(
                            await loop.run_in_executor(
                                self._pool, compute, self.encoder, inputs[part]
                            )
                        )
                    finally:
                        self._inflight -= 1
        except asyncio.CancelledError:
            # The client went away: the slices not yet started are never run. (One already in
            # a pool thread runs to its end; the pool's size still bounds how many run.)
            self.abandoned_rows += len(inputs) - started
            raise
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    async def reload(self, load: Callable[[], Encoder]) -> None:
        """Build a new encoder outside the lock and swap it in under the write side. Reloads
        asked for while one is under way join it instead of queueing one each."""
        if self._reloading is None or self._reloading.done():
            self._reloading = asyncio.ensure_future(self._reload(load))
        else:
            self.reloads_merged += 1
        # Shielded: one caller giving up must not cancel the reload the others wait for.
        await asyncio.shield(self._reloading)

    async def _reload(self, load: Callable[[], Encoder]) -> None:
        fresh = await asyncio.get_running_loop().run_in_executor(None, load)
        async with self._exclusive():  # waits for the slices in flight, then only swaps
            self.encoder = fresh
        self.reloads += 1

    def healthy(self) -> bool:
        return True  # a pool's threads outlive the exceptions of the calls they run

    def stats(self) -> dict[str, int]:
        return {
            "pool_size": self.pool_size,
            "inflight_peak": self._peak,
            "rows": self.rows,
            "abandoned_rows": self.abandoned_rows,
            "reloads": self.reloads,
            "reloads_merged": self.reloads_merged,
        }

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


class RWLockStrategy(_PoolStrategy):
    """Shared model; inferences overlap under the read side; a reload's swap takes the write
    side."""

    def __init__(self, encoder: Encoder, pool_size: int, **limits: int) -> None:
        super().__init__(encoder, pool_size, **limits)
        self.lock = RWLock()

    @classmethod
    def from_config(cls, config: ServerConfig, encoder: Encoder) -> RWLockStrategy:
        return cls(encoder, config.streams, **_slice_limits(config))

    def _guard(self) -> contextlib.AbstractAsyncContextManager[None]:
        return self.lock.read()

    def _exclusive(self) -> contextlib.AbstractAsyncContextManager[None]:
        return self.lock.write()


class MutexStrategy(_PoolStrategy):
    """Shared model; one inference at a time (also what each worker of per-worker/preload does)."""

    def __init__(self, encoder: Encoder, **limits: int) -> None:
        super().__init__(encoder, pool_size=1, **limits)
        self.lock = asyncio.Lock()

    @classmethod
    def from_config(cls, config: ServerConfig, encoder: Encoder) -> MutexStrategy:
        return cls(encoder, **_slice_limits(config))

    @contextlib.asynccontextmanager
    async def _locked(self) -> AsyncIterator[None]:
        async with self.lock:
            yield

    def _guard(self) -> contextlib.AbstractAsyncContextManager[None]:
        return self._locked()

    def _exclusive(self) -> contextlib.AbstractAsyncContextManager[None]:
        return self._locked()


def _slice_limits(config: ServerConfig) -> dict[str, int]:
    return {
        "max_batch_size": config.options.max_batch_size,
        "max_batch_tokens": config.options.max_batch_tokens,
    }


class BatchedStrategy:
    """Shared model behind a queue that forms batches from whatever is waiting."""

    can_reload = False

    def __init__(
        self,
        encoder: Encoder,
        max_batch_size: int,
        max_batch_tokens: int,
        spread: float = 2.0,
        streams: int = 1,
    ) -> None:
        self.encoder = encoder
        # One batch worker per stream, each with its own encoder, all fed from one queue.
        self._encoders = [encoder] + [encoder.replica() for _ in range(streams - 1)]
        self.queue = BatchQueue(
            [e.embed for e in self._encoders],
            max_batch_size=max_batch_size,
            max_batch_tokens=max_batch_tokens,
            spread=spread,
            pad_to=_pad_to(encoder),
        )

    @classmethod
    def from_config(cls, config: ServerConfig, encoder: Encoder) -> BatchedStrategy:
        return cls(
            encoder,
            config.options.max_batch_size,
            min(config.options.max_batch_tokens, config.options.batch_tokens),  # batching.py
            config.options.batch_spread,
            streams=config.streams,
        )

    def encoders(self) -> list[Encoder]:
        return list(self._encoders)

    async def embed(self, inputs: list[TokenIds], normalize: bool | None = None) -> Embeddings:
        return await self.queue.embed(inputs, normalize, current.get())

    async def reload(self, load: Callable[[], Encoder]) -> None:
        raise NotImplementedError("the batched variant does not reload its model")

    def healthy(self) -> bool:
        return self.queue.alive()

    def stats(self) -> dict[str, int]:
        return {
            "streams": len(self._encoders),
            "batches": self.queue.batches,
            "rows": self.queue.rows,
            "abandoned_rows": self.queue.abandoned_rows,
            "worker_errors": self.queue.worker_errors,
        }

    def close(self) -> None:
        self.queue.close()


# Name (ServerConfig.strategy, set by the variant) -> how to build it, as uvicorn's
# HTTP_PROTOCOLS maps a name to its implementation.
STRATEGIES: dict[str, Callable[[ServerConfig, Encoder], Strategy]] = {
    "mutex": MutexStrategy.from_config,
    "rwlock": RWLockStrategy.from_config,
    "batched": BatchedStrategy.from_config,
}


class _SwappingEncoder:
    """An encoder whose batches come back rotated by one row: input k gets input k+1's vector,
    the bug a batcher that loses track of its rows would have. For tests only."""

    def __init__(self, encoder: Encoder) -> None:
        self._encoder = encoder

    def __getattr__(self, name: str) -> object:
        return getattr(self._encoder, name)

    def embed(self, batch: Sequence[TokenIds], normalize: bool | None = None) -> Embeddings:
        vectors = self._encoder.embed(batch, normalize)
        return np.roll(vectors, 1, axis=0) if len(vectors) > 1 else vectors


def _swapped(config: ServerConfig, encoder: Encoder) -> Strategy:
    return _rewrapped(config, encoder, _SwappingEncoder)


def _rewrapped(
    config: ServerConfig, encoder: Encoder, wrap: Callable[[Encoder], _SwappingEncoder]
) -> Strategy:
    """The batched strategy with every stream's encoder wrapped (a test strategy's fault)."""
    strategy = BatchedStrategy.from_config(config, encoder)
    strategy.close()
    streams = [wrap(e) for e in strategy.encoders()]
    strategy.queue = BatchQueue(
        [s.embed for s in streams],
        max_batch_size=config.options.max_batch_size,
        max_batch_tokens=config.options.max_batch_tokens,
        spread=config.options.batch_spread,
        pad_to=_pad_to(encoder),
    )
    return strategy


# The strategies whose requests wait in a batch queue rather than for a lock (the name of the
# `Server-Timing` phase before the forward pass: timing.py).
QUEUED_STRATEGIES = frozenset({"batched", "swapped", "perturbed"})


# Strategies that exist to prove a check catches them (a wrong server): registered only when
# the server's environment asks for them, so no run can pick one by mistake.
class _PerturbingEncoder(_SwappingEncoder):
    """An encoder that adds small random noise to every vector (cosine ~0.97 to the true one):
    wrong in a small way, as a bad quantisation or a subtly wrong pooling is. For tests only."""

    def __init__(self, encoder: Encoder) -> None:
        super().__init__(encoder)
        self._rng = np.random.default_rng(0)

    def embed(self, batch: Sequence[TokenIds], normalize: bool | None = None) -> Embeddings:
        vectors = self._encoder.embed(batch, normalize)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        noise = self._rng.normal(scale=0.25 / np.sqrt(vectors.shape[1]), size=vectors.shape)
        perturbed: Embeddings = (vectors + norms * noise).astype(vectors.dtype)
        return perturbed


def _perturbed(config: ServerConfig, encoder: Encoder) -> Strategy:
    return _rewrapped(config, encoder, _PerturbingEncoder)


TEST_STRATEGIES: dict[str, Callable[[ServerConfig, Encoder], Strategy]] = {
    "swapped": _swapped,
    "perturbed": _perturbed,
}
if os.environ.get("EMBBENCH_TEST_STRATEGIES") == "1":
    STRATEGIES.update(TEST_STRATEGIES)


def build_strategy(config: ServerConfig, encoder: Encoder) -> Strategy:
    try:
        factory = STRATEGIES[config.strategy]
    except KeyError:
        raise ValueError(
            f"unknown strategy {config.strategy!r}; choose one of {sorted(STRATEGIES)}"
        ) from None
    return factory(config, encoder)
