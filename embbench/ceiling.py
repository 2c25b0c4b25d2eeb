"""The offline ceiling: what the model itself does on this machine, with no HTTP at all.

`measure_ceiling` times tokenise + forward + pool in one process: the latency of one bare
request (batch 1) and the best sentences/s over batch sizes (inputs sorted by length, so batches
waste no padding). A server can approach these, never
pass them, so the report draws them as lines. Run in a subprocess (`python -m embbench.ceiling`)
so that its thread settings and memory do not leak into the orchestrator.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

from embbench.config import cpu_count

BATCH_SIZES = (1, 8, 32, 128)


def measure_ceiling(
    model_path: str,
    *,
    backend: str = "torch",
    quantize: str = "none",
    threads: int | None = None,
    texts: Sequence[str],
    seconds: float = 3.0,
    batch_sizes: Sequence[int] = BATCH_SIZES,
) -> dict[str, Any]:
    from embbench.servers.encoder import Encoder, EncoderSettings

    threads = threads or cpu_count()
    encoder = Encoder(
        EncoderSettings(model_path=model_path, backend=backend, quantize=quantize, threads=threads)
    )
    for _ in range(3):  # first calls allocate and pick kernels
        encoder.encode(texts[:8])
    single: list[float] = []
    deadline = time.perf_counter() + seconds
    index = 0
    while time.perf_counter() < deadline or len(single) < 20:
        start = time.perf_counter()
        encoder.encode([texts[index % len(texts)]])
        single.append((time.perf_counter() - start) * 1000)
        index += 1
    # Batches of inputs of like length, as a length-aware batcher forms them: padding one short
    # sentence to a long paragraph's length is what a ceiling must not pay, or servers beat it.
    by_length = sorted(texts, key=lambda text: len(encoder.tokenize(text)))
    by_batch: dict[int, float] = {}
    for size in batch_sizes:
        chunks = [by_length[i : i + size] for i in range(0, len(by_length), size)]
        done, index, start = 0, 0, time.perf_counter()
        while time.perf_counter() - start < seconds or done == 0:
            batch = chunks[index % len(chunks)]
            encoder.encode(batch)
            done += len(batch)
            index += 1
        by_batch[size] = done / (time.perf_counter() - start)
    best = max(by_batch, key=lambda size: by_batch[size])
    return {
        "backend": backend,
        "quantize": quantize,
        "threads": threads,
        "batch1_ms": statistics.median(single),
        "batch1_ms_p90": statistics.quantiles(single, n=10)[-1],
        "sentences_per_s": by_batch[best],
        "best_batch": best,
        "by_batch": {str(k): v for k, v in by_batch.items()},
    }


def measure_in_subprocess(
    model: str | None,
    backend: str,
    quantize: str,
    threads: int | None,
    payload: str,
    seconds: float = 3.0,
) -> dict[str, Any]:
    argv = [
        sys.executable,
        "-m",
        "embbench.ceiling",
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
    env = dict(
        os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", OMP_WAIT_POLICY="PASSIVE"
    )
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
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
    parser.add_argument("--payload", default="short")
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args(argv)
    from embbench.models import resolve_model
    from embbench.payloads import build_payloads

    texts = build_payloads(args.payload, count=512)
    result = measure_ceiling(
        str(resolve_model(args.model)),
        backend=args.backend,
        quantize=args.quantize,
        threads=args.threads,
        texts=texts,
        seconds=args.seconds,
    )
    result["payload"] = args.payload
    print(json.dumps(result))


if __name__ == "__main__":
    main()
