from __future__ import annotations

import asyncio

from embbench.servers.locks import RWLock


def test_readers_overlap() -> None:
    async def scenario() -> int:
        lock = RWLock()
        peak = 0

        async def reader() -> None:
            nonlocal peak
            async with lock.read():
                peak = max(peak, lock.readers)
                await asyncio.sleep(0.01)

        await asyncio.gather(*(reader() for _ in range(5)))
        return peak

    assert asyncio.run(scenario()) == 5


def test_writer_is_alone_and_waits_for_readers() -> None:
    async def scenario() -> list[str]:
        lock = RWLock()
        events: list[str] = []

        async def reader(name: str) -> None:
            async with lock.read():
                events.append(f"{name}+")
                await asyncio.sleep(0.02)
                assert not lock.writing
                events.append(f"{name}-")

        async def writer() -> None:
            await asyncio.sleep(0.005)  # arrive while the readers hold the lock
            async with lock.write():
                assert lock.readers == 0
                events.append("W")

        await asyncio.gather(reader("a"), reader("b"), writer())
        return events

    events = asyncio.run(scenario())
    assert events.index("W") > events.index("a-")
    assert events.index("W") > events.index("b-")


def test_waiting_writer_blocks_new_readers() -> None:
    async def scenario() -> list[str]:
        lock = RWLock()
        events: list[str] = []

        async def first_reader() -> None:
            async with lock.read():
                await asyncio.sleep(0.03)
                events.append("r1")

        async def writer() -> None:
            await asyncio.sleep(0.005)
            async with lock.write():
                events.append("w")

        async def late_reader() -> None:
            await asyncio.sleep(0.01)  # arrives after the writer started waiting
            async with lock.read():
                events.append("r2")

        await asyncio.gather(first_reader(), writer(), late_reader())
        return events

    assert asyncio.run(scenario()) == ["r1", "w", "r2"]
