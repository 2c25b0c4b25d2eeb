"""The offline ceiling: what the model itself does on this machine, with no HTTP at all.

`measure_ceiling` times tokenise + forward + pool in one process: the latency of one bare
request (batch 1) and the best sentences/s over batch sizes (inputs sorted by length, so batches
waste no padding). It does so for each thread layout that fills the cores: one stream of
forward passes on every core, and one single-threaded stream per core side by side (what the
batched variant's `streams` and the multi-process variants run). The ceiling is the best layout,
drawn as a line in the report. Run in a subprocess
(`python -m embbench.servers.ceiling`) so that its thread settings and memory do not leak into the
orchestrator.

Sorting the whole payload by length is something no server can do: it only sees what is
waiting. So each layout also reports "reachable": the payload in arrival order through the
batched server's own `take_batch`, with `WINDOW` inputs waiting and each batch filled up to a
budget of tokens (`BATCH_TOKEN_BUDGETS`, the server's `batch_tokens`), the best budget kept.
On mixed inputs it can beat the sorted figure, whose fixed batch sizes put a paragraph's
quadratic attention and large tensors in with many rows: the output carries both, and a server
is to be judged against the higher.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

from embbench.machine.host import cpu_count

BATCH_SIZES = (1, 8, 32, 128)
# "reachable": inputs waiting when a batch is formed (a closed loop of 100 users keeps about
# that many queued) and the token budgets tried (the option batch_tokens' default among them).
WINDOW = 100
BATCH_TOKEN_BUDGETS = (128, 256, 512)


def layouts(cores: int) -> list[tuple[int, int]]:
    """(threads per stream, streams) pairs that fill `cores`: all in one, and one per core."""
    return sorted({(cores, 1), (1, cores)}, reverse=True)


def measure_ceiling(
    model_path: str,
    *,
    backend: str = "torch",
    quantize: str = "none",
    threads: int | None = None,
    streams: int | None = None,
    texts: Sequence[str],
    seconds: float = 3.0,
    batch_sizes: Sequence[int] = BATCH_SIZES,
    budgets: Sequence[int] = BATCH_TOKEN_BUDGETS,
) -> dict[str, Any]:
    """The best over layouts, with every layout's own numbers under "layouts", and under
    "reachable" the best a server forming batches from what is waiting was measured to do.

    `threads` and `streams` pin one layout (the other defaults to filling the cores).
    """
    cores = cpu_count()
    if threads or streams:
        streams = streams or max(1, cores // (threads or cores))
        chosen = [(threads or max(1, cores // streams), streams)]
    else:
        chosen = layouts(cores)
    measured = [
        _measure_layout(model_path, backend, quantize, t, n, texts, seconds, batch_sizes, budgets)
        for t, n in chosen
    ]
    fastest = max(measured, key=lambda m: m["sentences_per_s"])
    quickest = min(measured, key=lambda m: m["batch1_ms"])
    reachable = max(measured, key=lambda m: m["reachable"]["sentences_per_s"])
    return {
        "backend": backend,
        "quantize": quantize,
        "threads": fastest["threads"],
        "streams": fastest["streams"],
        "sentences_per_s": fastest["sentences_per_s"],
        "best_batch": fastest["best_batch"],
        "by_batch": fastest["by_batch"],
        "batch1_ms": quickest["batch1_ms"],
        "batch1_ms_p90": quickest["batch1_ms_p90"],
        "batch1_threads": quickest["threads"],
        "reachable": {
            **reachable["reachable"],
            "threads": reachable["threads"],
            "streams": reachable["streams"],
        },
        "layouts": measured,
    }


def _measure_layout(
    model_path: str,
    backend: str,
    quantize: str,
    threads: int,
    streams: int,
    texts: Sequence[str],
    seconds: float,
    batch_sizes: Sequence[int],
    budgets: Sequence[int],
) -> dict[str, Any]:
    from embbench.config.options import ServerOptions
    from embbench.servers.backends import backend_facts
    from embbench.servers.encoder import Encoder, EncoderSettings

    options = ServerOptions(backend=backend, quantize=quantize)
    first = Encoder(EncoderSettings(model_path=model_path, options=options, threads=threads))
    encoders = [first] + [first.replica() for _ in range(streams - 1)]
    for encoder in encoders:
        for _ in range(3):  # first calls allocate and pick kernels
            encoder.encode(texts[:8])
    single: list[float] = []
    deadline = time.perf_counter() + seconds
    index = 0
    while time.perf_counter() < deadline or len(single) < 20:
        start = time.perf_counter()
        first.encode([texts[index % len(texts)]])
        single.append((time.perf_counter() - start) * 1000)
        index += 1
    # Batches of inputs of like length, as a length-aware batcher forms them: padding one short
    # sentence to a long paragraph's length is what a ceiling must not pay, or servers beat it.
    by_length = sorted(texts, key=lambda text: len(first.tokenize(text)))
    by_batch: dict[int, float] = {}
    for size in batch_sizes:
        chunks = [by_length[i : i + size] for i in range(0, len(by_length), size)]
        by_batch[size] = _sentences_per_s(encoders, chunks, seconds, threads)
    best = max(by_batch, key=lambda size: by_batch[size])
    lengths = [len(first.tokenize(text)) for text in texts]
    by_tokens: dict[int, float] = {}
    for budget in budgets:
        formed = arrival_batches(
            lengths,
            window=WINDOW,
            max_batch_size=options.max_batch_size,
            batch_tokens=budget,
            spread=options.batch_spread,
        )
        chunks = [[texts[i] for i in batch] for batch in formed]
        by_tokens[budget] = _sentences_per_s(encoders, chunks, seconds, threads)
    best_budget = max(by_tokens, key=lambda budget: by_tokens[budget])
    return {
        "threads": threads,
        "streams": streams,
        # What the engine compiled, as it says (OpenVINO: precision and threads); {} if nothing.
        "engine": backend_facts(first.backend),
        "batch1_ms": statistics.median(single),
        "batch1_ms_p90": statistics.quantiles(single, n=10)[-1],
        "sentences_per_s": by_batch[best],
        "best_batch": best,
        "by_batch": {str(k): v for k, v in by_batch.items()},
        "reachable": {
            "sentences_per_s": by_tokens[best_budget],
            "batch_tokens": best_budget,
            "by_tokens": {str(k): v for k, v in by_tokens.items()},
            "window": WINDOW,
            "max_batch_size": options.max_batch_size,
        },
    }


def arrival_batches(
    lengths: Sequence[int],
    *,
    window: int,
    max_batch_size: int,
    batch_tokens: int,
    spread: float,
) -> list[list[int]]:
    """The batches (indices into `lengths`) a batched server would form from these inputs
    arriving in order, with up to `window` of them waiting whenever a batch is taken."""
    from embbench.servers.batching import Entry, Request, take_batch

    queue: list[Entry] = []
    batches: list[list[int]] = []
    arrived = 0
    while arrived < len(lengths) or queue:
        while len(queue) < window and arrived < len(lengths):
            # Stand-in ids: take_batch only looks at their number.
            ids = [0] * lengths[arrived]
            queue.append(Entry(Request(1), 0, ids, tag=arrived, seq=arrived))
            arrived += 1
        taken = take_batch(
            queue, max_batch_size=max_batch_size, max_batch_tokens=batch_tokens, spread=spread
        )
        batches.append([entry.seq for entry in taken])
    return batches


def _sentences_per_s(
    encoders: Sequence[Any],
    chunks: list[list[str]],
    seconds: float,
    threads: int,
) -> float:
    """Every encoder in its own thread, encoding chunks in turn until `seconds` have passed."""
    done = [0] * len(encoders)
    start = time.perf_counter()
    stop = start + seconds

    def stream(k: int) -> None:
        # OpenMP's thread count is per calling thread (torch): set it in each stream's own.
        encoders[k].set_threads(threads)
        index = k
        while time.perf_counter() < stop or done[k] == 0:
            batch = chunks[index % len(chunks)]
            encoders[k].encode(batch)
            done[k] += len(batch)
            index += len(encoders)

    workers = [threading.Thread(target=stream, args=(k,)) for k in range(len(encoders))]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return sum(done) / (time.perf_counter() - start)


def measure_in_subprocess(
    model: str | None,
    backend: str,
    quantize: str,
    threads: int | None,
    payload: str,
    seconds: float = 3.0,
    streams: int | None = None,
) -> dict[str, Any]:
    from embbench.config.model import resolve_spec

    # A model that cannot be served is refused here, in one line, not by the child's traceback.
    resolve_spec(model)
    argv = [
        sys.executable,
        "-m",
        "embbench.servers.ceiling",
        "--backend",
        backend,
        "--quantize",
        quantize,
        "--payload",
        payload,
        "--seconds",
        str(seconds),
    ]
    if model:
        argv += ["--model", model]
    if threads:
        argv += ["--threads", str(threads)]
    if streams:
        argv += ["--streams", str(streams)]
    env = dict(
        os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", OMP_WAIT_POLICY="PASSIVE"
    )
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=900, check=False)
    if done.returncode != 0:
        tail = "\n".join(done.stderr.strip().splitlines()[-5:])
        raise RuntimeError(f"ceiling measurement failed: {tail}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model")
    parser.add_argument("--backend", default="torch")
    parser.add_argument("--quantize", default="none")
    parser.add_argument("--threads", type=int)
    parser.add_argument("--streams", type=int)
    parser.add_argument("--payload", default="short")
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args(argv)
    from embbench.config.model import resolve_spec
    from embbench.config.payloads import build_payloads

    texts = build_payloads(args.payload, count=512)
    spec = resolve_spec(args.model)
    result = measure_ceiling(
        spec.path,
        backend=args.backend,
        quantize=args.quantize,
        threads=args.threads,
        streams=args.streams,
        texts=texts,
        seconds=args.seconds,
    )
    result["payload"] = args.payload
    # The model timed, by name and fingerprint (a model replaced in place is another ceiling).
    result["model"] = spec.summary()
    result["fingerprint"] = spec.fingerprint
    print(json.dumps(result))


if __name__ == "__main__":
    main()
