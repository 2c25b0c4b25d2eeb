"""The commands about the model alone, with no server: `embbench model` (the folder as embbench
reads it, checked against sentence-transformers) and `embbench ceiling` (what it does offline)."""

from __future__ import annotations

import typer

from embbench.cli.render import err_console, fmt, friendly, print_table
from embbench.config.options import ServerOptions
from embbench.errors import ConfigError, EmbbenchError, ExitStatus


@friendly
def model_cmd(
    path: str | None = typer.Argument(None, help="Model folder (default: the bundled model)."),
    backend: str = typer.Option(
        "torch,onnx",
        "--backend",
        help="Comma-separated: torch, onnx, int8 (onnx quantised), openvino, openvino-int8.",
    ),
) -> None:
    """The model as embbench reads it, and each backend's embeddings against
    sentence-transformers' (cosine per input). Exit 2: refused; 1: a backend disagrees."""
    from embbench.config.model import resolve_spec
    from embbench.run.model_check import check_model

    spec = resolve_spec(path)
    facts = spec.describe()
    print_table(
        f"model {spec.name}",
        ["field", "value"],
        [[k, ", ".join(v) if isinstance(v, list) else fmt(v)] for k, v in facts.items()],
    )
    checks = check_model(spec, [b.strip() for b in backend.split(",") if b.strip()])
    inputs = list(checks[0].cosines) if checks else []
    print_table(
        "cosine to SentenceTransformer.encode (the lower of batched and one at a time)",
        ["backend", *inputs, "norm error", "threshold", "result"],
        [
            [c.backend, *(f"{c.cosines[i]:.5f}" for i in inputs), f"{c.norm_error:.1e}",
             f"{c.threshold:g}", "ok" if c.passed else "DISAGREES"]
            for c in checks
        ],
    )  # fmt: skip
    failed = [c.backend for c in checks if not c.passed]
    if failed:
        err_console.print(f"[red]disagrees with sentence-transformers[/]: {', '.join(failed)}")
        raise typer.Exit(int(ExitStatus.CELL_FAILED))


@friendly
def ceiling(
    backend: list[str] = typer.Option(
        ["torch"], "--backend", help="torch | onnx | openvino; repeatable."
    ),
    quantize: str = typer.Option(
        "none", "--quantize", help="none | int8 (onnx, openvino) | bf16 (openvino)."
    ),
    threads: int | None = typer.Option(
        None, "--threads", help="Intra-op threads per stream (default: every layout)."
    ),
    streams: int | None = typer.Option(
        None, "--streams", help="Sessions side by side (default: every layout)."
    ),
    payload: str = typer.Option("short", "--payload", help="short | medium | long | mixed."),
    seconds: float = typer.Option(3.0, "--seconds", help="Seconds per measurement."),
    model: str | None = typer.Option(None, "--model", help="Local folder (default: bundled)."),
) -> None:
    """The offline ceiling: one bare forward pass and the best batched sentences/s, no HTTP.

    Each way of filling the cores is measured (one session on all of them, one single-threaded
    session per core); the ceiling is the best. --threads/--streams pin one layout.
    """
    from embbench.servers.ceiling import measure_in_subprocess

    for flag, value in (("--threads", threads), ("--streams", streams)):
        if value is not None and value < 1:
            raise ConfigError(f"{flag} must be positive, got {value}")

    rows = []
    for name in backend:
        # --quantize applies to the backends that have it; the others run as they are.
        applies = name == "openvino" or (name == "onnx" and quantize == "int8")
        ServerOptions(backend=name, quantize=quantize if applies else "none")
        try:
            result = measure_in_subprocess(
                model,
                name,
                quantize if applies else "none",
                threads,
                payload,
                seconds,
                streams=streams,
            )
        except RuntimeError as exc:
            raise EmbbenchError(str(exc)) from None
        best = (result["threads"], result["streams"])
        for layout in result["layouts"]:
            mark = " *" if (layout["threads"], layout["streams"]) == best else ""
            rows.append(
                [name + mark, result["quantize"], str(layout["threads"]), str(layout["streams"]),
                 fmt(layout["batch1_ms"], 2), fmt(layout["sentences_per_s"]),
                 str(layout["best_batch"])]
            )  # fmt: skip
    print_table(
        f"offline ceiling of {result['model']} (tokenise + forward + pool, no HTTP; "
        "* the best layout)",
        ["backend", "quantize", "threads", "streams", "batch 1 p50 ms", "best sentences/s",
         "at batch"],
        rows,
    )  # fmt: skip
