"""A user's mistake: one clear line on stderr, exit status 2, nothing started, no traceback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

FIXTURE = Path(__file__).parents[2] / "fixtures" / "results" / "20261124-000000"


def embbench(
    *args: str, cwd: Path | None = None, **extra_env: str
) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, COLUMNS="80", HF_HUB_OFFLINE="1", **extra_env)
    return subprocess.run(
        [sys.executable, "-m", "embbench", *args], capture_output=True, text=True, env=env,
        cwd=cwd, timeout=120, check=False,
    )  # fmt: skip


def assert_one_line_usage_error(done: subprocess.CompletedProcess[str], needle: str) -> None:
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    assert needle in lines[0] and "Traceback" not in done.stderr


@pytest.mark.parametrize(
    "args, needle",
    [
        (["run", "--variant", "nope"], "unknown variant 'nope'"),
        (["run", "--variant", "batched", "--concurrency", "ten"], "--concurrency"),
        (["run", "--variant", "batched", "--concurrency", "0"], "concurrency levels"),
        (["run", "--variant", "batched", "--payload", "huge"], "payload must be one of"),
        (["run", "--variant", "batched", "--padding", "left"], "padding must be one of"),
        (["run", "--variant", "batched", "--quantize", "int8"], "needs --backend onnx"),
        (["run", "--variant", "batched", "--model", "/no/such/model"], "model '/no/such/model'"),
        (["run", "--config", "/no/such.toml"], "does not exist"),
        (["run", "--url", "ftp://x", "--protocol", "tei"], "--url must start with http"),
        (["run", "--variant", "batched", "--bogus"], "No such option"),
        (["run", "--variant", "shared-mutex", "--streams", "2"], "streams applies to"),
        (["run", "--variant", "batched", "--http", "flask"], "http must be one of"),
        (["serve", "--variant", "nope"], "unknown variant"),
        (["ceiling", "--streams", "0"], "--streams must be positive"),
        (["report", "/no/such/run"], "is not an embbench run"),
        (["run", "--variant", "batched", "--run-id", "../x"], "--run-id '../x' must be a plain"),
        (["run", "--variant", "batched", "--concurrency", "1000000"], "at most 20000"),
        (
            ["run", "--variant", "batched", "--load-processes", "2", "--load-workers", "1"],
            "do not combine",
        ),
        (["run", "--variant", "batched", "--rate", "0"], "rate must be at least"),
        (["run", "--variant", "batched", "--rate", "x"], "--rate takes numbers"),
        (["run", "--variant", "batched", "--rate", "10", "--concurrency", "5"], "do not combine"),
        (["run", "--variant", "batched", "--arrival", "bursty"], "arrival must be one of"),
        (["capacity", "--variant", "batched", "--slo-p99-ms", "0"], "must be positive"),
    ],
)
def test_usage_errors(args: list[str], needle: str, tmp_path: Path) -> None:
    assert_one_line_usage_error(
        embbench(*args, "--out", str(tmp_path)) if args[0] == "run" else embbench(*args), needle
    )


def test_bad_config_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[[variant]]\nname = 'batched'\nworkers = 'two'\n")
    done = embbench("run", "--config", str(bad), "--out", str(tmp_path))
    assert done.returncode == 2 and "Traceback" not in done.stderr


def test_rust_variant_without_its_build(tmp_path: Path) -> None:
    done = embbench("run", "--variant", "rust-rwlock", "--out", str(tmp_path / "out"),
                    EMBBENCH_CACHE=str(tmp_path / "empty-cache"))  # fmt: skip
    assert_one_line_usage_error(done, "rust-rwlock needs the Rust server built")


def test_out_is_a_file(tmp_path: Path) -> None:
    target = tmp_path / "a-file"
    target.write_text("not a folder")
    done = embbench("run", "--variant", "batched", "--out", str(target))
    assert_one_line_usage_error(done, "is a file")


@pytest.mark.parametrize(
    "text, needle",
    [
        ("[[variant]]\nname = 'batched'\ntruncation = 'no'\n", "truncation must be true or false"),
        ("[run]\nduration = 'long'\n[[variant]]\nname = 'batched'\n", "duration must be a number"),
        ("[run]\nconcurrency = 10\n[[variant]]\nname = 'batched'\n", "list of numbers"),
    ],
)
def test_run_file_values_are_checked_by_type(tmp_path: Path, text: str, needle: str) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(text)
    done = embbench("run", "--config", str(bad), "--out", str(tmp_path / "out"))
    assert_one_line_usage_error(done, needle)


def test_port_in_use(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        done = embbench("run", "--variant", "shared-mutex", "--port", str(port), "--out",
                        str(tmp_path))  # fmt: skip
    assert_one_line_usage_error(done, f"port {port}")
    assert not any(tmp_path.iterdir())  # nothing was started or written


def test_report_without_runs(tmp_path: Path) -> None:
    assert_one_line_usage_error(embbench("report", "--out", str(tmp_path)), "no run under")


def test_report_end_to_end_and_never_overwrites(tmp_path: Path) -> None:
    import shutil

    run = tmp_path / FIXTURE.name
    shutil.copytree(FIXTURE, run)
    done = embbench("report", str(run), "--baseline", "shared-mutex")
    assert done.returncode == 0, done.stderr
    assert "winner at c=10" in done.stdout
    text = (run / "report.md").read_text()
    assert "## Against shared-mutex" in text and "charts/throughput.png" in text
    assert len(list((run / "charts").glob("*.png"))) == 4
    again = embbench("report", str(run))
    assert_one_line_usage_error(again, "pass --force")
    assert embbench("report", str(run), "--force").returncode == 0


def test_unknown_baseline(tmp_path: Path) -> None:
    import shutil

    run = tmp_path / FIXTURE.name
    shutil.copytree(FIXTURE, run)
    done = embbench("report", str(run), "--baseline", "nope")
    assert done.returncode == 2 and "nope" in done.stderr and not (run / "report.md").exists()


def test_variants_lists_the_registry() -> None:
    done = embbench("variants")
    assert done.returncode == 0
    for name in (
        "shared-rwlock",
        "shared-mutex",
        "per-worker",
        "preload",
        "batched",
        "tei",
        "infinity",
    ):
        assert name in done.stdout
