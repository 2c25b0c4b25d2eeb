"""The peers' launch commands and their "cannot run here" paths (tei, infinity).

Nothing here pretends to be TEI: the Docker command is checked as a command, and the missing
engine is this machine's real state where it has none.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from embbench.config.model import BUNDLED_MODEL, resolve_model
from embbench.config.options import ServerOptions
from embbench.errors import ConfigError, ExitStatus, PeerUnavailableError
from embbench.variants import REGISTRY, get_variant
from embbench.variants import infinity as infinity_mod
from embbench.variants import tei as tei_mod
from embbench.variants.infinity import INFINITY_VERSION, Infinity
from embbench.variants.tei import TEI_IMAGE, Tei, docker_command, docker_engine_error

ROOT = Path(__file__).resolve().parents[3]


def flag(argv: list[str], name: str) -> str:
    """The value after `name` in argv."""
    assert name in argv, f"{name} missing from {argv}"
    return argv[argv.index(name) + 1]


# -- tei ------------------------------------------------------------------------------------------


def test_docker_command(tmp_path: Path) -> None:
    argv = docker_command(tmp_path, 18080, "127.0.0.1", "embbench-tei-x", 2048, 2)
    assert argv[:3] == ["docker", "run", "--rm"]
    assert flag(argv, "--name") == "embbench-tei-x"
    assert flag(argv, "-p") == "127.0.0.1:18080:80"
    # The model folder, read-only, is what TEI serves.
    assert flag(argv, "-v") == f"{tmp_path.resolve()}:/data:ro"
    image_at = argv.index(TEI_IMAGE)
    docker_part, router_part = argv[:image_at], argv[image_at + 1 :]
    assert "--model-id" in router_part and flag(router_part, "--model-id") == "/data"
    assert int(flag(router_part, "--max-concurrent-requests")) >= 1024
    assert "--auto-truncate" in router_part and flag(router_part, "--port") == "80"
    assert flag(router_part, "--tokenization-workers") == "2"
    assert "OMP_NUM_THREADS=2" in docker_part and "MKL_NUM_THREADS=2" in docker_part
    # No threads given: TEI keeps its own defaults.
    plain = docker_command(tmp_path, 18080, "127.0.0.1", "n", 2048, None)
    assert "--tokenization-workers" not in plain
    assert not any(a.startswith(("OMP_NUM_THREADS", "MKL_NUM_THREADS")) for a in plain)


def test_tei_image_is_pinned() -> None:
    # A release tag, never a moving one (`latest`, `cpu-1.9`).
    assert re.fullmatch(
        r"ghcr\.io/huggingface/text-embeddings-inference:cpu-\d+\.\d+\.\d+", TEI_IMAGE
    )


def test_tei_launch_spec(tmp_path: Path) -> None:
    spec = Tei().launch(ServerOptions(), 18081, tmp_path / "work")
    assert spec.protocol == "tei" and spec.cleanup is not None
    assert spec.info["image"] == TEI_IMAGE
    name = str(spec.info["container"])
    assert flag(spec.argv, "--name") == name
    assert flag(spec.argv, "-v") == f"{resolve_model(None)}:/data:ro"
    assert flag(spec.argv, "--served-model-name") == BUNDLED_MODEL
    assert int(flag(spec.argv, "--max-concurrent-requests")) >= 1024
    # Two cells never share a container name.
    assert Tei().launch(ServerOptions(), 18081, tmp_path / "work").info["container"] != name


def test_tei_cleanup_removes_the_container(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[list[str]] = []

    def fake_run(argv: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        calls.append(argv)
        return subprocess.CompletedProcess(argv, 1, "", "No such container")

    monkeypatch.setattr(tei_mod.subprocess, "run", fake_run)
    spec = Tei().launch(ServerOptions(), 18082, tmp_path / "work")
    assert spec.cleanup is not None
    spec.cleanup()  # quiet even when the container is already gone
    assert calls == [["docker", "rm", "-f", str(spec.info["container"])]]
    assert tei_mod.container_pids("gone") == []


def test_tei_check_without_docker_cli(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tei_mod.shutil, "which", lambda name: None)
    with pytest.raises(PeerUnavailableError) as info:
        Tei().check(ServerOptions())
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("tei needs a Docker engine")
    assert "--url http://HOST:PORT --protocol tei" in message


def test_tei_check_with_cli_but_no_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tei_mod.shutil, "which", lambda name: "/usr/bin/docker")

    def no_daemon(argv: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        assert argv[:2] == ["docker", "info"]
        return subprocess.CompletedProcess(
            argv, 1, "", "Cannot connect to the Docker daemon at unix:///var/run/docker.sock."
        )

    monkeypatch.setattr(tei_mod.subprocess, "run", no_daemon)
    assert docker_engine_error() == (
        "Cannot connect to the Docker daemon at unix:///var/run/docker.sock."
    )
    with pytest.raises(PeerUnavailableError, match=r"^tei needs a Docker engine"):
        Tei().check(ServerOptions())


def test_tei_check_passes_with_an_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tei_mod.shutil, "which", lambda name: "/usr/bin/docker")
    monkeypatch.setattr(
        tei_mod.subprocess,
        "run",
        lambda argv, **kw: subprocess.CompletedProcess(argv, 0, "28.2.2\n", ""),
    )
    Tei().check(ServerOptions())


@pytest.mark.skipif(
    docker_engine_error() is None,
    reason="a Docker engine is available here: `run --variant tei` would start it",
)
def test_run_tei_without_docker_engine_exits_2_with_one_line(tmp_path: Path) -> None:
    out = tmp_path / "results"
    # Wide enough that Rich does not wrap the one line of the error.
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "400"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "embbench",
            "run",
            "--variant",
            "tei",
            "--concurrency",
            "1",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
        cwd=ROOT,
    )
    assert proc.returncode == ExitStatus.USAGE, proc.stderr
    lines = [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert "tei needs a Docker engine" in lines[0] and "--protocol tei" in lines[0]
    assert not out.exists()  # nothing was started or written


# -- infinity -------------------------------------------------------------------------------------


def test_infinity_check_without_its_venv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMBBENCH_INFINITY_VENV", str(tmp_path / "no-venv"))
    with pytest.raises(PeerUnavailableError) as info:
        Infinity().check(ServerOptions())
    assert str(info.value) == (
        "infinity-emb is not installed: run `make peers` (it installs into .venv-infinity)"
    )


def fake_venv(tmp_path: Path) -> Path:
    """A folder shaped like .venv-infinity, for what does not run it."""
    cli = tmp_path / "venv" / "bin" / "infinity_emb"
    cli.parent.mkdir(parents=True)
    cli.write_text("#!/bin/sh\nexit 1\n")
    cli.chmod(0o755)
    return tmp_path / "venv"


def test_infinity_launch_spec(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    venv = fake_venv(tmp_path)
    monkeypatch.setenv("EMBBENCH_INFINITY_VENV", str(venv))
    monkeypatch.setenv("PYTHONPATH", "/somewhere/of/ours")
    variant = Infinity()
    variant.check(ServerOptions())
    with pytest.raises(ConfigError, match="torch"):
        variant.check(ServerOptions(backend="onnx"))
    spec = variant.launch(ServerOptions(threads=2), 18083, tmp_path / "work")
    argv = spec.argv
    assert argv[:2] == [str(venv / "bin" / "infinity_emb"), "v2"]
    assert flag(argv, "--model-id") == str(resolve_model(None))
    assert flag(argv, "--served-model-name") == BUNDLED_MODEL
    assert flag(argv, "--port") == "18083" and flag(argv, "--host") == "127.0.0.1"
    assert flag(argv, "--engine") == "torch" and flag(argv, "--device") == "cpu"
    assert flag(argv, "--url-prefix") == "/v1"  # so that it serves /v1/embeddings
    assert "--no-model-warmup" not in argv and "--no-vector-disk-cache" in argv
    assert spec.protocol == "openai"
    env = spec.env
    assert env["INFINITY_ANONYMOUS_USAGE_STATS"] == "0" and env["DO_NOT_TRACK"] == "1"
    assert env["HF_HUB_OFFLINE"] == "1"
    assert env["OMP_NUM_THREADS"] == env["MKL_NUM_THREADS"] == "2"
    assert "PYTHONPATH" not in env
    assert env["INFINITY_HOME"] == str(tmp_path / "work")
    assert spec.info["workers"] == 1 and spec.info["threads"] == 2
    assert spec.info["version"] == INFINITY_VERSION


def test_infinity_pin_matches_the_install_script() -> None:
    script = (ROOT / "scripts" / "install_infinity.sh").read_text()
    assert f"infinity-emb[server,torch]=={INFINITY_VERSION}" in script
    # torch exactly, and first: a looser spec pulls a multi-GB CUDA build.
    assert 'TORCH_PIN="torch==2.13.0"' in script
    assert script.index('"$TORCH_PIN"\n') < script.index('"$INFINITY_PIN"')


def test_peers_are_registered() -> None:
    assert isinstance(get_variant("tei"), Tei) and isinstance(get_variant("infinity"), Infinity)
    assert REGISTRY["tei"].external and REGISTRY["infinity"].external
    assert infinity_mod.DEFAULT_VENV == ROOT / ".venv-infinity"


def test_fastembed_check_without_fastembed(monkeypatch: pytest.MonkeyPatch) -> None:
    from embbench.variants import fastembed as fastembed_mod

    real = fastembed_mod.importlib.util.find_spec
    monkeypatch.setattr(
        fastembed_mod.importlib.util, "find_spec",
        lambda name, *a: None if name == "fastembed" else real(name, *a),
    )  # fmt: skip
    with pytest.raises(PeerUnavailableError, match="make peers"):
        get_variant("fastembed").check(ServerOptions(backend="fastembed"))
