"""How concurrent requests reach the model: the part that differs between variants.

Each strategy takes token ids (the HTTP layer tokenises) and returns embeddings; the event loop
never runs a forward pass itself, so /health and request parsing stay responsive under load.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

from embbench.servers.batching import BatchQueue
from embbench.servers.encoder import Embeddings, Encoder, TokenIds
from embbench.servers.locks import RWLock


class Strategy(Protocol):
    encoder: Encoder
    can_reload: bool

    def encoders(self) -> list[Encoder]: ...

    async def embed(self, inputs: list[TokenIds]) -> Embeddings: ...

    async def reload(self, load: Callable[[], Encoder]) -> None: ...

    def stats(self) -> dict[str, int]: ...

    def close(self) -> None: ...


class _PoolStrategy:
    """Forward passes in a thread pool, each under `_guard` (a lock side, or nothing)."""

    can_reload = True

    def __init__(self, encoder: Encoder, pool_size: int) -> None:
        self.encoder = encoder
        self.pool_size = pool_size
        self._pool = ThreadPoolExecutor(max_workers=pool_size, thread_name_prefix="infer")
        self._inflight = 0
        self._peak = 0

    def encoders(self) -> list[Encoder]:
        return [self.encoder]

    def _guard(self) -> contextlib.AbstractAsyncContextManager[None]:
        return contextlib.nullcontext()

    def _exclusive(self) -> contextlib.AbstractAsyncContextManager[None]:
        return contextlib.nullcontext()

    async def embed(self, inputs: list[TokenIds]) -> Embeddings:
        async with self._guard():
            self._inflight += 1
            self._peak = max(self._peak, self._inflight)
            try:
                loop = asyncio.get_running_loop()
                return await loop.run_in_executor(self._pool, self.encoder.embed, inputs)
            finally:
                self._inflight -= 1

    async def reload(self, load: Callable[[], Encoder]) -> None:
        async with self._exclusive():
            loop = asyncio.get_running_loop()
            self.encoder = await loop.run_in_executor(None, load)

    def stats(self) -> dict[str, int]:
        return {"pool_size": self.pool_size, "inflight_peak": self._peak}

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


class RWLockStrategy(_PoolStrategy):
    """Shared model; inferences overlap under the read side; a reload takes the write side."""

    def __init__(self, encoder: Encoder, pool_size: int) -> None:
        super().__init__(encoder, pool_size)
        self.lock = RWLock()

    def _guard(self) -> contextlib.AbstractAsyncContextManager[None]:
        return self.lock.read()

    def _exclusive(self) -> contextlib.AbstractAsyncContextManager[None]:
        return self.lock.write()


class MutexStrategy(_PoolStrategy):
    """Shared model; one inference at a time (also what each worker of per-worker/preload does)."""

    def __init__(self, encoder: Encoder) -> None:
        super().__init__(encoder, pool_size=1)
        self.lock = asyncio.Lock()

    @contextlib.asynccontextmanager
    async def _locked(self) -> AsyncIterator[None]:
        async with self.lock:
            yield

    def _guard(self) -> contextlib.AbstractAsyncContextManager[None]:
        return self._locked()

    def _exclusive(self) -> contextlib.AbstractAsyncContextManager[None]:
        return self._locked()


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
        pad_to = encoder.max_seq_length if encoder.settings.padding == "max_length" else None
        # One batch worker per stream, each with its own encoder, all fed from one queue.
        self._encoders = [encoder] + [encoder.replica() for _ in range(streams - 1)]
        self.queue = BatchQueue(
            [e.embed for e in self._encoders],
            max_batch_size=max_batch_size,
            max_batch_tokens=max_batch_tokens,
            spread=spread,
            pad_to=pad_to,
        )

    def encoders(self) -> list[Encoder]:
        return list(self._encoders)

    async def embed(self, inputs: list[TokenIds]) -> Embeddings:
        return await self.queue.embed(inputs)

    async def reload(self, load: Callable[[], Encoder]) -> None:
        raise NotImplementedError("the batched variant does not reload its model")

    def stats(self) -> dict[str, int]:
        return {
            "streams": len(self._encoders),
            "batches": self.queue.batches,
            "rows": self.queue.rows,
        }

    def close(self) -> None:
        self.queue.close()
