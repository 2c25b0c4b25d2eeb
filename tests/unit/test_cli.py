"""A user's mistake: one clear line on stderr, exit status 2, nothing started, no traceback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

FIXTURE = Path(__file__).parent.parent / "fixtures" / "results" / "20261124-000000"


def embbench(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, COLUMNS="80", HF_HUB_OFFLINE="1")
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
