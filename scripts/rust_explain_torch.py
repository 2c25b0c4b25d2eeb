"""The PyTorch side of `scripts/rust_explain.py kernels`: the same plan as seed-bench runs.

Run by rust_explain.py in its own process per thread count (PyTorch reads some thread settings
once); prints one JSON object shaped like seed-bench's. The forward passes go through embbench's
Encoder (tokenised ids in, pooled vectors out); matmuls and ops are bare torch calls.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

MAX_SEQ_LENGTH = 256  # as rust_explain.py and both servers


def _time_runs(fn: Callable[[], object], min_seconds: float, min_runs: int) -> list[float]:
    """Milliseconds of each run after three untimed ones, as seed-bench's `time_runs`."""
    for _ in range(3):
        fn()
    runs: list[float] = []
    deadline = time.perf_counter() + min_seconds
    while len(runs) < min_runs or time.perf_counter() < deadline:
        start = time.perf_counter()
        fn()
        runs.append((time.perf_counter() - start) * 1e3)
    return runs


def torch_worker(args: argparse.Namespace) -> None:
    import copy
    import dataclasses

    import torch

    from embbench.config.options import ServerOptions
    from embbench.servers.encoder import Encoder, EncoderSettings

    plan = json.loads(Path(args.plan).read_text())
    options = ServerOptions(backend=args.backend, max_seq_length=MAX_SEQ_LENGTH)
    base = Encoder(EncoderSettings(str(args.model), options=options, threads=args.threads))
    encoders = {}
    for padding in ("longest", "max_length"):
        twin = copy.copy(base)
        twin.settings = dataclasses.replace(
            base.settings, options=dataclasses.replace(options, padding=padding)
        )
        encoders[padding] = twin

    def embed(batch: list[list[int]], padding: str) -> None:
        if padding == "none":  # one forward pass per input, as the Rust server's no padding
            for ids in batch:
                encoders["longest"].embed([ids])
        else:
            encoders[padding].embed(batch)

    forward = []
    for case in plan.get("forward", []):
        batches, padding = case["batches"], case["padding"]
        runs = _time_runs(
            lambda b=batches, p=padding: [embed(x, p) for x in b], args.min_seconds, args.min_runs
        )
        forward.append(
            {
                "name": case["name"],
                "padding": padding,
                "runs": len(runs),
                "median_ms": statistics.median(runs) / len(batches),
                "min_ms": min(runs) / len(batches),
            }
        )
    streams = [_torch_streams(base, embed, case, args.threads) for case in plan.get("streams", [])]
    # Bare kernels are torch's whatever the backend: only the torch worker runs them.
    kernels = args.backend == "torch"
    matmul = []
    with torch.inference_mode():
        for case in plan.get("matmul", []) if kernels else []:
            b, m, k, n = case.get("batch", 1), case["m"], case["k"], case["n"]
            if case["kind"] == "linear":
                x, w = torch.randn(b * m, k), torch.randn(n, k)
                runs = _time_runs(
                    lambda x=x, w=w: torch.nn.functional.linear(x, w),
                    args.min_seconds,
                    args.min_runs,
                )
            else:
                a, c = torch.randn(b, m, k), torch.randn(b, n, k)
                runs = _time_runs(
                    lambda a=a, c=c: torch.matmul(a, c.transpose(-1, -2)),
                    args.min_seconds,
                    args.min_runs,
                )
            ms = statistics.median(runs)
            matmul.append(
                {
                    "name": case["name"],
                    "kind": case["kind"],
                    "shape": [b, m, k, n],
                    "runs": len(runs),
                    "median_ms": ms,
                    "gflops": 2 * b * m * k * n / (ms * 1e6),
                }
            )
        ops = [_torch_op(case, args) for case in plan.get("ops", [])] if kernels else []
    print(
        json.dumps(
            {
                "engine": args.backend,
                "version": torch.__version__,
                "threads": args.threads,
                "torch_threads": torch.get_num_threads(),
                "forward": forward,
                "streams": streams,
                "matmul": matmul,
                "ops": ops,
            }
        )
    )


def _torch_op(case: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """seed-bench's `ops`, as PyTorch (and HF BERT's eager attention) computes them."""
    import math

    import torch
    import torch.nn.functional as F

    h, m, n = case.get("heads", 1), case["m"], case.get("n", 0)
    scores = torch.randn(1, h, m, m)
    fn: Callable[[], object]
    if case["op"] == "gelu_erf":
        x, elements = torch.randn(1, m, n), m * n
        fn = lambda: F.gelu(x)  # noqa: E731
    elif case["op"] == "layer_norm":
        x, w, elements = torch.randn(1, m, n), torch.ones(n), m * n
        fn = lambda: F.layer_norm(x, (n,), w, torch.zeros(n), 1e-12)  # noqa: E731
    elif case["op"] == "scale_mask":
        mask, elements = torch.zeros(1, 1, 1, m), h * m * m
        fn = lambda: scores / math.sqrt(32) + mask  # noqa: E731
    else:  # softmax, softmax_last_dim: one torch kernel
        elements = h * m * m
        fn = lambda: torch.softmax(scores, -1)  # noqa: E731
    runs = _time_runs(fn, args.min_seconds, args.min_runs)
    ms = statistics.median(runs)
    return {"name": case["name"], "op": case["op"], "elements": elements, "runs": len(runs),
            "median_ms": ms, "ns_per_element": ms * 1e6 / elements}  # fmt: skip


def _torch_streams(
    encoder: Any, embed: Callable[[list[list[int]], str], None], case: dict[str, Any], threads: int
) -> dict[str, Any]:
    """K Python threads on one model, as the shared-rwlock server runs its forward passes."""
    batches, padding, k = case["batches"], case["padding"], case["streams"]
    latencies: list[list[float]] = [[] for _ in range(k)]
    stop = time.perf_counter() + case["seconds"]

    def stream(j: int) -> None:
        encoder.set_threads(threads)  # OpenMP's count is per calling thread
        index = j
        while time.perf_counter() < stop:
            start = time.perf_counter()
            embed(batches[index % len(batches)], padding)
            latencies[j].append((time.perf_counter() - start) * 1e3)
            index += k

    started = time.perf_counter()
    workers = [threading.Thread(target=stream, args=(j,)) for j in range(k)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    done = [x for each in latencies for x in each]
    return {
        "name": case["name"],
        "padding": padding,
        "streams": k,
        "done": len(done),
        "batches_per_s": len(done) / (time.perf_counter() - started),
        "median_ms": statistics.median(done),
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--plan", required=True)
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--backend", default="torch")
    parser.add_argument("--model", required=True)
    parser.add_argument("--min-seconds", type=float, default=1.0)
    parser.add_argument("--min-runs", type=int, default=5)
    torch_worker(parser.parse_args(argv))


if __name__ == "__main__":
    main()
