"""Where the Rust seed server (rust/seed-server) loses or wins, measured piece by piece.

Issue 16's candidates, each measured here rather than guessed:

  kernels  candle against PyTorch at 1 and 2 threads, on the same token ids: the forward pass
           with pooling (batch 1 short sentences, sequence lengths, batch sizes, padding
           layouts, K concurrent streams on one model), and bare matmuls of MiniLM's shapes.
           candle runs in `seed-bench` (the server's own model code, `make rust`); PyTorch in
           embbench's Encoder. Each side is its own subprocess per thread count (both read
           their thread settings once), and the sides alternate within every round, so that
           drift of a shared machine hits both.
  lock     the server itself under a closed loop of c clients (10 actix workers, RwLock or
           Mutex, --threads 1 or 2), with its /stats counters read before and after: time
           waiting for the lock, time holding it, tokenising and forward time inside it.

Usage (prints Markdown; the raw JSON goes to --out):
  .venv/bin/python scripts/rust_explain.py kernels --rounds 3
  .venv/bin/python scripts/rust_explain.py lock --rounds 3 --seconds 15

scripts/rust_explain_torch.py is the PyTorch side of `kernels`, run by it in a subprocess.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from embbench.config.model import resolve_model  # noqa: E402
from embbench.config.payloads import build_payloads  # noqa: E402
from embbench.machine.process import LaunchSpec, free_port, running_server  # noqa: E402
from embbench.variants.rust import bench_binary_path, binary_path  # noqa: E402

MAX_SEQ_LENGTH = 256  # sentence-transformers' value for all-MiniLM-L6-v2, and both servers'
HIDDEN, INTERMEDIATE, HEADS, HEAD_DIM = 384, 1536, 12, 32  # all-MiniLM-L6-v2

# -- the plan: the same token ids and shapes for both engines ---------------------------------


def _tokenizer(model: Path) -> Any:
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(model / "tokenizer.json"))
    tok.no_padding()
    tok.enable_truncation(MAX_SEQ_LENGTH)
    return tok


def build_plan(model: Path, stream_seconds: float) -> dict[str, Any]:
    tok = _tokenizer(model)

    def ids(texts: Sequence[str]) -> list[list[int]]:
        return [list(e.ids) for e in tok.encode_batch(list(texts))]

    short = ids(build_payloads("short", count=32))
    mixed = ids(build_payloads("mixed", count=32))
    long_ids = ids([" ".join(build_payloads("long", count=2))])[0]  # 256 tokens after truncation

    def of_length(n: int) -> list[int]:
        return [*long_ids[: n - 1], long_ids[-1]]  # keep [SEP] last

    # max_length pads every input to 256 tokens: a few inputs show its cost, and keep it short.
    forward: list[dict[str, Any]] = [
        {"name": "short b1", "padding": "longest", "batches": [[s] for s in short]},
        {
            "name": "short b1 max_length",
            "padding": "max_length",
            "batches": [[s] for s in short[:4]],
        },
        {"name": "mixed b1", "padding": "longest", "batches": [[s] for s in mixed]},
    ]
    for n in (16, 64, 128, 256):
        forward.append({"name": f"len {n} b1", "padding": "longest", "batches": [[of_length(n)]]})
    for size, source, label in ((8, short, "short"), (8, mixed, "mixed")):
        batches = [source[i : i + size] for i in range(0, len(source), size)]
        for padding in ("longest", "none", "max_length"):
            some = batches[:1] if padding == "max_length" else batches[:4]
            forward.append(
                {"name": f"{label} b{size} {padding}", "padding": padding, "batches": some}
            )
    streams = [
        {
            "name": f"short b1 x{k}",
            "padding": "longest",
            "batches": [[s] for s in short],
            "streams": k,
            "seconds": stream_seconds,
        }
        for k in (1, 2, 10)
    ]
    matmul: list[dict[str, Any]] = []
    for m in (24, 128, 1024):
        matmul += [
            {
                "name": f"qkv/out {m}x{HIDDEN}x{HIDDEN}",
                "kind": "linear",
                "m": m,
                "k": HIDDEN,
                "n": HIDDEN,
            },
            {
                "name": f"up {m}x{HIDDEN}x{INTERMEDIATE}",
                "kind": "linear",
                "m": m,
                "k": HIDDEN,
                "n": INTERMEDIATE,
            },
            {
                "name": f"down {m}x{INTERMEDIATE}x{HIDDEN}",
                "kind": "linear",
                "m": m,
                "k": INTERMEDIATE,
                "n": HIDDEN,
            },
        ]
        if m <= 256:
            matmul.append(
                {
                    "name": f"scores {HEADS}x{m}x{HEAD_DIM}x{m}",
                    "kind": "bmm",
                    "batch": HEADS,
                    "m": m,
                    "k": HEAD_DIM,
                    "n": m,
                }
            )
    ops: list[dict[str, Any]] = []
    for m in (24, 128, 256):
        ops += [
            {"name": f"gelu_erf {m}x{INTERMEDIATE}", "op": "gelu_erf", "m": m, "n": INTERMEDIATE},
            {"name": f"layer_norm {m}x{HIDDEN}", "op": "layer_norm", "m": m, "n": HIDDEN},
        ]
        for op in ("scale_mask", "softmax", "softmax_last_dim"):
            ops.append({"name": f"{op} {HEADS}x{m}x{m}", "op": op, "heads": HEADS, "m": m})
    return {"forward": forward, "streams": streams, "matmul": matmul, "ops": ops}


# -- kernels: both engines, interleaved --------------------------------------------------------


# glibc's malloc gives buffers over its mmap threshold back to the kernel on free (and trims
# the heap), so candle's per-op tensors of a few MB are page-faulted anew on every call. These
# settings keep them in the heap: `candle-malloc` is candle with them (--malloc).
MALLOC_KEEP = {"MALLOC_MMAP_THRESHOLD_": "1000000000", "MALLOC_TRIM_THRESHOLD_": "1000000000"}


def _run_json(
    argv: list[str], log: Path, timeout: float = 1800, extra: dict[str, str] | None = None
) -> dict[str, Any]:
    env = dict(
        os.environ,
        **(extra or {}),
        TOKENIZERS_PARALLELISM="false",
        OMP_WAIT_POLICY="PASSIVE",
        HF_HUB_OFFLINE="1",
    )
    with open(log, "ab") as err:
        done = subprocess.run(
            argv,
            stdout=subprocess.PIPE,
            stderr=err,
            env=env,
            timeout=timeout,
            check=False,
            start_new_session=True,
        )
    if done.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed ({done.returncode}); see {log}")
    result: dict[str, Any] = json.loads(done.stdout.decode().strip().splitlines()[-1])
    return result


def run_kernels(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    model = resolve_model(args.model)
    plan_path = out / "plan.json"
    plan = build_plan(model, args.stream_seconds)
    plan = {key: value for key, value in plan.items() if key in args.sections.split(",")}
    plan_path.write_text(json.dumps(plan))
    engines = ["candle", "torch"] + (["candle-malloc"] if args.malloc else [])
    engines += ["onnx"] if args.onnx else []
    common = ["--min-seconds", str(args.min_seconds), "--min-runs", str(args.min_runs)]
    results: dict[str, list[dict[str, Any]]] = {}
    for round_ in range(args.rounds):
        # Alternate which engine goes first, round by round.
        order = engines if round_ % 2 == 0 else engines[::-1]
        for threads in (1, 2):
            for engine in order:
                if engine.startswith("candle"):
                    argv = [
                        str(bench_binary_path()),
                        "--model-dir",
                        str(model),
                        "--threads",
                        str(threads),
                        "--plan",
                        str(plan_path),
                        *common,
                    ]
                else:
                    argv = [
                        sys.executable,
                        str(Path(__file__).with_name("rust_explain_torch.py")),
                        "--backend",
                        engine,
                        "--model",
                        str(model),
                        "--threads",
                        str(threads),
                        "--plan",
                        str(plan_path),
                        *common,
                    ]
                print(
                    f"round {round_ + 1}: {engine} threads={threads} "
                    f"(load {os.getloadavg()[0]:.2f})",
                    file=sys.stderr,
                )
                extra = MALLOC_KEEP if engine == "candle-malloc" else None
                got = _run_json(argv, out / "kernels.log", extra=extra)
                results.setdefault(f"{engine}/{threads}", []).append(got)
    return results


def _median_of(runs: list[dict[str, Any]], section: str, name: str, key: str) -> float:
    return statistics.median(
        next(c[key] for c in run[section] if c["name"] == name) for run in runs
    )


def _min_of(runs: list[dict[str, Any]], section: str, name: str, key: str) -> float:
    return min(next(c[key] for c in run[section] if c["name"] == name) for run in runs)


def _section(
    results: dict[str, Any], section: str, title: str, key: str, engines: list[str]
) -> list[str]:
    """One table: the median over rounds of each case's median, both thread counts; the
    candle/torch ratio of those, and in brackets the ratio of the fastest runs (the least
    disturbed by other work on the machine)."""
    cases = results["candle/1"][0].get(section) or []
    engines = [e for e in engines if results[f"{e}/1"][0].get(section)]
    if not cases:
        return []
    head = " | ".join(f"{e} {t}t" for t in (1, 2) for e in engines)
    rows = [
        f"| {title} | {head} | candle/torch 1t | 2t |",
        "|---|" + "---:|" * (2 * len(engines) + 2),
    ]
    for case in cases:
        name = case["name"]
        med = {
            (e, t): _median_of(results[f"{e}/{t}"], section, name, key)
            for e in engines
            for t in (1, 2)
        }
        cells = [f"{med[(e, t)]:.2f}" for t in (1, 2) for e in engines]
        for t in (1, 2):
            ratio = med[("candle", t)] / med[("torch", t)]
            if "min_ms" in case:
                best = _min_of(results[f"candle/{t}"], section, name, "min_ms") / _min_of(
                    results[f"torch/{t}"], section, name, "min_ms"
                )
                cells.append(f"{ratio:.2f} ({best:.2f})")
            else:
                cells.append(f"{ratio:.2f}")
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    return [*rows, ""]


def render_kernels(results: dict[str, Any]) -> str:
    engines = sorted(
        {key.split("/")[0] for key in results},
        key=["candle", "torch", "candle-malloc", "onnx"].index,
    )
    rows = _section(results, "forward", "forward + pooling, ms per batch", "median_ms", engines)
    if results["candle/1"][0].get("streams"):
        heads = " | ".join(f"{e} {t}t /s (p50 ms)" for t in (1, 2) for e in engines)
        rows += [
            f"| streams on one model, short b1 | {heads} |",
            "|---|" + "---:|" * (2 * len(engines)),
        ]
        for case in results["candle/1"][0]["streams"]:
            cells = []
            for t in (1, 2):
                for e in engines:
                    runs = results[f"{e}/{t}"]
                    rate = _median_of(runs, "streams", case["name"], "batches_per_s")
                    p50 = _median_of(runs, "streams", case["name"], "median_ms")
                    cells.append(f"{rate:.0f} ({p50:.1f})")
            rows.append(f"| {case['streams']} | " + " | ".join(cells) + " |")
        rows.append("")
    rows += _section(results, "matmul", "matmul, GFLOP/s", "gflops", engines)
    rows += _section(results, "ops", "other ops, ms", "median_ms", engines)
    return "\n".join(rows)


# -- lock: the server under load, with its counters ----------------------------------------


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _closed_loop(port: int, texts: list[str], clients: int, seconds: float) -> list[float]:
    """`clients` threads, each one keep-alive connection, POST /predict back to back."""
    latencies: list[list[float]] = [[] for _ in range(clients)]
    stop = time.perf_counter() + seconds

    def client(j: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        index = j
        while time.perf_counter() < stop:
            body = json.dumps({"text": texts[index % len(texts)]})
            start = time.perf_counter()
            conn.request("POST", "/predict", body, {"content-type": "application/json"})
            reply = conn.getresponse()
            reply.read()
            if reply.status != 200:
                raise RuntimeError(f"HTTP {reply.status}")
            latencies[j].append((time.perf_counter() - start) * 1e3)
            index += clients
        conn.close()

    workers = [threading.Thread(target=client, args=(j,)) for j in range(clients)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return [x for each in latencies for x in each]


def _stats(port: int) -> dict[str, int]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/stats")
    got: dict[str, int] = json.loads(conn.getresponse().read())
    conn.close()
    return got


def measure_server(
    model: Path,
    config: tuple[str, int, int],
    workers: int,
    clients: int,
    seconds: float,
    log: Path,
) -> dict[str, Any]:
    lock, threads, pool = config
    port = free_port()
    argv = [
        str(binary_path()),
        "--model-dir",
        str(model),
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--threads",
        str(threads),
        "--lock",
        lock,
        "--pool-threads",
        str(pool),
    ]
    texts = build_payloads("short", count=512)
    spec = LaunchSpec(argv=argv, env=dict(os.environ))
    with running_server(spec, log, f"http://127.0.0.1:{port}", timeout=120) as server:
        assert server.pid is not None
        _closed_loop(port, texts, clients, 3.0)  # warm-up
        before, cpu0, own0 = _stats(port), _cpu_seconds(server.pid), time.process_time()
        wall0 = time.perf_counter()
        latencies = _closed_loop(port, texts, clients, seconds)
        wall = time.perf_counter() - wall0
        after, cpu1, own1 = _stats(port), _cpu_seconds(server.pid), time.process_time()
    d = {key: after[key] - before[key] for key in after if key not in ("holding", "max_holding")}
    n = d["requests"]
    ms = 1e-6 / n  # per request, in ms
    return {
        "lock": lock,
        "threads": threads,
        "pool_threads": pool,
        "workers": workers,
        "clients": clients,
        "rps": len(latencies) / wall,
        "p50_ms": statistics.median(latencies),
        "cpu_pct": 100 * (cpu1 - cpu0) / wall,
        "client_cpu_pct": 100 * (own1 - own0) / wall,
        "wait_ms": d["lock_wait_ns"] * ms,
        "hold_ms": d["lock_hold_ns"] * ms,
        "tokenize_ms": d["tokenize_ns"] * ms,
        "forward_ms": d["forward_ns"] * ms,
        "handler_ms": d["handler_ns"] * ms,
        "in_forward": d["lock_hold_ns"] / d["uptime_ns"],
        "max_holding": after["max_holding"],
        "requests": n,
    }


def parse_configs(text: str) -> list[tuple[str, int, int]]:
    """ "rwlock:2,mutex:1,rwlock:1:2" -> (lock, --threads, --pool-threads) triples."""
    configs = []
    for item in text.split(","):
        lock, threads, *pool = item.split(":")
        configs.append((lock, int(threads), int(pool[0]) if pool else int(threads)))
    return configs


def run_lock(args: argparse.Namespace, out: Path) -> list[dict[str, Any]]:
    model = resolve_model(args.model)
    configs = parse_configs(args.configs)
    rows = []
    for round_ in range(args.rounds):
        for config in configs if round_ % 2 == 0 else configs[::-1]:
            name = "-".join(map(str, config))
            load = os.getloadavg()[0]
            print(f"round {round_ + 1}: {name} (load {load:.2f})", file=sys.stderr)
            log = out / f"server-{name}-{round_}.log"
            row = measure_server(model, config, args.workers, args.clients, args.seconds, log)
            rows.append(dict(row, round=round_))
    return rows


def render_lock(rows: list[dict[str, Any]]) -> str:
    keys = [
        ("rps", "rps", 1),
        ("p50_ms", "p50 ms", 1),
        ("cpu_pct", "server CPU %", 0),
        ("wait_ms", "lock wait ms", 2),
        ("hold_ms", "lock hold ms", 2),
        ("tokenize_ms", "tokenise ms", 2),
        ("forward_ms", "forward ms", 2),
        ("handler_ms", "handler ms", 2),
        ("in_forward", "forwards at once", 2),
        ("client_cpu_pct", "client CPU %", 0),
    ]
    out = [
        "| lock, threads (pool) | " + " | ".join(label for _, label, _ in keys) + " |",
        "|---|" + "---:|" * len(keys),
    ]
    seen = dict.fromkeys(
        (r["lock"], r["threads"], r.get("pool_threads", r["threads"])) for r in rows
    )
    for lock, threads, pool in seen:
        mine = [
            r
            for r in rows
            if (r["lock"], r["threads"], r.get("pool_threads", threads)) == (lock, threads, pool)
        ]
        cells = [f"{statistics.median(r[k] for r in mine):.{d}f}" for k, _, d in keys]
        out.append(f"| {lock}, {threads} ({pool}) | " + " | ".join(cells) + " |")
    return "\n".join(out)


# -- the command line ------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("kernels", "lock"):
        p = sub.add_parser(name)
        p.add_argument("--model", help="model folder (default: the bundled all-MiniLM-L6-v2)")
        p.add_argument("--rounds", type=int, default=3)
        p.add_argument("--out", type=Path, help="folder for the raw JSON (a new one by default)")
        p.add_argument("--min-seconds", type=float, default=1.0)
        p.add_argument("--min-runs", type=int, default=5)
    kernels = sub.choices["kernels"]
    kernels.add_argument("--onnx", action="store_true", help="also onnxruntime")
    kernels.add_argument("--malloc", action="store_true", help="also candle with MALLOC_KEEP")
    kernels.add_argument("--stream-seconds", type=float, default=3.0)
    kernels.add_argument(
        "--sections", default="forward,streams,matmul,ops", help="which parts of the plan to run"
    )
    lock = sub.choices["lock"]
    lock.add_argument("--workers", type=int, default=10)
    lock.add_argument("--clients", type=int, default=10)
    lock.add_argument("--seconds", type=float, default=15.0)
    lock.add_argument(
        "--configs",
        default="rwlock:2,mutex:2,rwlock:1,mutex:1",
        help="lock:threads[:pool-threads], comma-separated",
    )
    args = parser.parse_args(argv)

    out = args.out or Path(tempfile.mkdtemp(prefix=f"rust-explain-{args.command}-"))
    out.mkdir(parents=True, exist_ok=True)
    load = os.getloadavg()
    if args.command == "kernels":
        results = run_kernels(args, out)
        table = render_kernels(results)
    else:
        rows = run_lock(args, out)
        results = {"rows": rows}
        table = render_lock(rows)
    results["loadavg_before"] = load
    results["loadavg_after"] = os.getloadavg()
    raw = out / f"{args.command}.json"
    raw.write_text(json.dumps(results, indent=1))
    print(table)
    print(f"\nload average before {load[0]:.2f}, after {os.getloadavg()[0]:.2f}; raw: {raw}")


if __name__ == "__main__":
    main()
