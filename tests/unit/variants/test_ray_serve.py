"""The ray-serve variant as a launch command: registry, "cannot run here", flags, clean-up.

Nothing here starts Ray (tests/integration/test_ray_serve.py does). "Ray is not installed" is
made real the way Python itself spells it, `sys.modules["ray"] = None` (import ray fails).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from embbench.config.options import ServerOptions
from embbench.errors import ConfigError, ExitStatus, PeerUnavailableError
from embbench.machine.host import cpu_count
from embbench.variants import REGISTRY, get_variant
from embbench.variants import ray_serve as ray_mod
from embbench.variants.ray_serve import RAY_VERSION, RayServe

ROOT = Path(__file__).resolve().parents[3]
NO_RAY = "ray-serve needs Ray Serve: run `make peers`"


def flag(argv: list[str], name: str) -> str:
    assert name in argv, f"{name} missing from {argv}"
    return argv[argv.index(name) + 1]


def test_registered_as_ours() -> None:
    variant = get_variant("ray-serve")
    assert isinstance(variant, RayServe) and REGISTRY["ray-serve"] is variant
    # Our encoder in every replica: it stands against the offline ceiling as ours do.
    assert not variant.external
    traits = variant.traits
    assert traits.lock == "queue" and traits.batching and traits.multi_process and traits.overlap
    assert variant.protocol == "predict"
    assert variant.processes(ServerOptions()) == 2
    assert variant.processes(ServerOptions(workers=3)) == 3


def test_check_without_ray(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)
    assert ray_mod.ray_version() is None
    with pytest.raises(PeerUnavailableError) as info:
        RayServe().check(ServerOptions())
    assert str(info.value) == NO_RAY


def test_check_refuses_what_does_not_apply() -> None:
    # Usage errors, whether Ray is installed or not.
    with pytest.raises(ConfigError, match="--workers"):
        RayServe().check(ServerOptions(streams=2))
    with pytest.raises(ConfigError, match="FastAPI"):
        RayServe().check(ServerOptions(http="asgi"))


def test_run_without_ray_exits_2_with_one_line(tmp_path: Path) -> None:
    out = tmp_path / "results"
    code = (
        "import sys; sys.modules['ray'] = None\n"
        "from embbench.cli.app import main\n"
        "sys.argv = ['embbench', 'run', '--variant', 'ray-serve', '--concurrency', '1',"
        f" '--out', {str(out)!r}]\n"
        "main()\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "400"}
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
        cwd=ROOT,
    )
    assert proc.returncode == ExitStatus.USAGE, proc.stderr
    lines = [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
    assert len(lines) == 1 and NO_RAY in lines[0], lines
    assert not out.exists()  # nothing was started or written


def test_launch_spec(tmp_path: Path) -> None:
    from embbench.servers.ray_app import parse_settings

    spec = RayServe().launch(ServerOptions(max_batch_size=8), 18090, tmp_path / "work")
    try:
        argv = spec.argv
        assert argv[:3] == [sys.executable, "-m", "embbench.servers.ray_launch"]
        assert flag(argv, "--port") == "18090" and flag(argv, "--workers") == "2"
        threads = max(1, cpu_count() // 2)
        assert flag(argv, "--threads") == str(threads)
        temp_dir = Path(flag(argv, "--temp-dir"))
        assert temp_dir.is_dir() and len(str(temp_dir)) < 40  # room for Ray's socket paths
        assert spec.protocol == "predict" and spec.cleanup is not None
        assert spec.info["workers"] == spec.info["replicas"] == 2
        assert spec.info["threads"] == threads
        # The launcher reads back what the variant resolved.
        settings = parse_settings(argv[3:])
        assert settings.port == 18090 and settings.address is None
        assert settings.replicas == 2 and settings.threads == threads
        assert settings.options.max_batch_size == 8
        assert settings.temp_dir == str(temp_dir)
        env = spec.env
        assert (
            env[ray_mod.TAG_ENV] == spec.info["ray_tag"] and env["RAY_USAGE_STATS_ENABLED"] == "0"
        )
        assert env["OMP_NUM_THREADS"] == str(threads) and env["HF_HUB_OFFLINE"] == "1"
        assert "RAY_ADDRESS" not in env
        # Two cells never share a Ray instance's tag or folder.
        other = RayServe().launch(ServerOptions(), 18091, tmp_path / "work2")
        assert other.info["ray_tag"] != spec.info["ray_tag"]
        assert other.cleanup is not None
        other.cleanup()
    finally:
        assert spec.cleanup is not None
        spec.cleanup()  # quiet when no Ray ever ran
    assert not temp_dir.exists()


def test_flags_round_trip() -> None:
    from embbench.servers.ray_app import parse_settings

    options = ServerOptions(
        host="127.0.0.2", port=9000, backend="onnx", quantize="int8", padding="max_length",
        truncation=False, workers=3, threads=1, max_seq_length=128, batch_spread=0.0,
        max_batch_size=4, omp_wait_policy="active",
    )  # fmt: skip
    argv = ray_mod.option_argv(options)
    assert "--no-truncation" in argv and "--model" not in argv
    assert parse_settings(argv).options == options
    assert ray_mod.option_argv(ServerOptions()) == []
    settings = parse_settings(["--address", "auto", "--workers", "4"])
    assert settings.address == "auto" and settings.replicas == 4 and settings.port == 8000


def test_bad_flag_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    from embbench.servers.ray_app import parse_settings

    with pytest.raises(SystemExit) as info:
        parse_settings(["--workers", "0"])
    assert info.value.code == 2
    assert "workers must be positive" in capsys.readouterr().err


def test_constants_agree() -> None:
    from embbench.servers import ray_app

    assert RayServe.default_workers == ray_app.DEFAULT_REPLICAS
    script = (ROOT / "scripts" / "install_ray.sh").read_text()
    assert f'RAY_PIN="ray[serve]=={RAY_VERSION}"' in script
    assert 'TORCH_PIN="torch==2.13.0"' in script


def test_importing_the_registry_does_not_import_ray() -> None:
    code = (
        "import sys, embbench.variants\n"
        "heavy = [m for m in ('ray', 'fastapi', 'torch') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert proc.stdout.strip() == ""


def test_kill_tagged_finds_only_its_own(tmp_path: Path) -> None:
    tag = "embbench-ray-unit-test"
    env = {**os.environ, ray_mod.TAG_ENV: tag}
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], env=env)
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert [p.pid for p in ray_mod.tagged_processes(tag)] == [sleeper.pid]
        assert ray_mod.kill_tagged(tag) == [sleeper.pid]
        sleeper.wait(timeout=5)  # reaped already by kill_tagged's wait (it is our child)
        assert bystander.poll() is None
    finally:
        for proc in (sleeper, bystander):
            proc.kill()
            proc.wait()
