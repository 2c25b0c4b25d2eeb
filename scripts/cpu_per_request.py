"""Server CPU time per request, per thread, under a closed loop of keep-alive connections.

    python scripts/cpu_per_request.py --port 18001 --pid <server pid> [--connections 100]

A measuring aid for the server's own per-request work (README, "Mixed traffic, and the layout
chosen by itself"), not a load generator for benchmarks: `embbench run` drives servers with
Locust. This client is one asyncio process writing raw HTTP/1.1, so it takes less of a 2-core
machine than Locust does, and its windows are short enough to alternate two servers, or a
server and `python -m embbench.servers.ceiling`, on a machine whose speed drifts. It posts short
sentences of the corpus to /predict, warms up, then prints for one window: rps, the server's
CPU ms per request (user + system), the main thread's and each other busy thread's share.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time

import psutil

from embbench.config.payloads import load_corpus


def _bodies() -> list[bytes]:
    sentences = [s for s in load_corpus() if 8 <= len(s.split()) <= 30][:500]
    return [json.dumps({"text": s}).encode() for s in sentences]


def _thread_cpu(process: psutil.Process) -> dict[int, float]:
    return {t.id: t.user_time + t.system_time for t in process.threads()}


async def _client(host: str, port: int, bodies: list[bytes], counts: list[int]) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    rng = random.Random()
    try:
        while True:
            body = rng.choice(bodies)
            head = f"POST /predict HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/json\r\n"
            writer.write(f"{head}content-length: {len(body)}\r\n\r\n".encode() + body)
            reply = await reader.readuntil(b"\r\n\r\n")
            if not reply.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(f"server answered {reply.splitlines()[0]!r}")
            length = next(
                int(line.split(b":")[1])
                for line in reply.split(b"\r\n")
                if line.lower().startswith(b"content-length")
            )
            await reader.readexactly(length)
            counts[0] += 1
    finally:
        writer.close()


async def measure(host: str, port: int, pid: int, connections: int, seconds: float) -> str:
    bodies = _bodies()
    counts = [0]
    clients = [asyncio.create_task(_client(host, port, bodies, counts)) for _ in range(connections)]
    try:
        await asyncio.sleep(3)  # warm-up: every connection open and busy
        process = psutil.Process(pid)
        before, threads_before = process.cpu_times(), _thread_cpu(process)
        counts[0], start = 0, time.perf_counter()
        await asyncio.sleep(seconds)
        after, threads_after = process.cpu_times(), _thread_cpu(process)
        elapsed, done = time.perf_counter() - start, counts[0]
        for client in clients:
            if client.done() and client.exception():
                raise client.exception()  # type: ignore[misc]
    finally:
        for client in clients:
            client.cancel()
        await asyncio.gather(*clients, return_exceptions=True)
    cpu = (after.user - before.user) + (after.system - before.system)
    per = {k: (v - threads_before.get(k, 0.0)) * 1000 / done for k, v in threads_after.items()}
    others = sorted((ms for k, ms in per.items() if k != pid and ms > 0.0005), reverse=True)
    return (
        f"rps {done / elapsed:.1f}  server CPU ms/request {cpu * 1000 / done:.3f}  "
        f"main thread {per.get(pid, 0.0):.3f}  other threads {' '.join(f'{o:.3f}' for o in others)}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--pid", type=int, required=True, help="the server process to sample")
    parser.add_argument("--connections", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    print(asyncio.run(measure(args.host, args.port, args.pid, args.connections, args.seconds)))


if __name__ == "__main__":
    main()
