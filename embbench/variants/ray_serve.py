"""Ray Serve (`ray-serve`): our encoder in the replicas of a Ray Serve deployment.

The distributed engine users grow into when one machine is not enough, measured here on one.
`make peers` (scripts/install_ray.sh) installs `ray[serve]` into the main environment (its
requirements clash with none of ours). The server is embbench/servers/ray_launch.py (with
ray_app.py, the deployment): it starts a local Ray head of its own (GCS, raylet, Serve's
controller and HTTP proxy, one actor process per replica), deploys a FastAPI ingress whose
replicas each hold an Encoder and batch with `@serve.batch`, and speaks our API (/predict,
/embed, /health, /info).

`--workers` is the replica count (default 2) and `--threads` each replica's intra-op threads
(default cores // replicas), as for per-worker, the same idea done by hand.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.metadata
import importlib.util
import sys
import tempfile
import uuid
from pathlib import Path

import psutil

from embbench.config.model import resolve_spec
from embbench.config.options import ServerOptions, option_fields
from embbench.errors import ConfigError, PeerUnavailableError
from embbench.machine.process import LaunchSpec
from embbench.results.traits import Traits
from embbench.variants.base import OwnVariant, server_env

# Must match the pin in scripts/install_ray.sh (a unit test checks that it does).
RAY_VERSION = "2.60.0"
# Every process of a Ray instance inherits it from the launcher (replicas too): the clean-up
# finds leftovers by it, since a Ray worker rewrites its own command line.
TAG_ENV = "EMBBENCH_RAY_TAG"


def option_argv(options: ServerOptions) -> list[str]:
    """The flags that give `options` to the launcher (ray_launch; ray_app parses them): those
    that differ from the defaults, one flag per server option, named after it."""
    argv: list[str] = []
    for each, _kind, _spec in option_fields():
        value, flag = getattr(options, each.name), each.name.replace("_", "-")
        if value == each.default:
            continue
        if isinstance(value, bool):
            argv.append(f"--{flag}" if value else f"--no-{flag}")
        else:
            argv += [f"--{flag}", str(value)]
    return argv


def ray_version() -> str | None:
    """The installed Ray's version, or None; without importing it (that takes seconds)."""
    if importlib.util.find_spec("ray") is None:
        return None
    try:
        return importlib.metadata.version("ray")
    except importlib.metadata.PackageNotFoundError:
        return None


def tagged_processes(tag: str) -> list[psutil.Process]:
    """Processes whose environment carries TAG_ENV=tag: a Ray instance's, since every one of its
    processes inherits the launcher's environment, and a Ray worker rewrites its command line."""
    found = []
    for proc in psutil.process_iter():
        with contextlib.suppress(psutil.Error):  # gone meanwhile, or not ours to read
            if proc.environ().get(TAG_ENV) == tag:
                found.append(proc)
    return found


def kill_tagged(tag: str, timeout: float = 5.0) -> list[int]:
    """SIGKILL what is left of a Ray instance and wait for it; returns the pids it found."""
    procs = tagged_processes(tag)
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(procs, timeout=timeout)
    return [proc.pid for proc in procs]


def ray_cleanup(tag: str, temp_dir: Path, logs_dir: Path) -> None:
    """After the launcher's process group is gone: nothing of its Ray may stay behind.

    The group's TERM and KILL do not reach Ray's worker processes (each replica, Serve's
    controller and proxy lead process groups of their own); they exit once their raylet is gone
    (about 2 s), and whatever has not is killed here. The launcher keeps Ray's logs and removes
    its session folder as it exits; done again here in case it was killed first.
    """
    from embbench.servers.ray_launch import release_temp_dir

    kill_tagged(tag)
    release_temp_dir(temp_dir, logs_dir)


class RayServe(OwnVariant):
    name = "ray-serve"
    summary = "Ray Serve deployment: R replicas (one process and model each), @serve.batch"
    seed_analogue = "the distributed engine users grow into"
    # ray_app.DEFAULT_REPLICAS, for a launch by hand (a unit test checks that they agree).
    default_workers = 2
    strategy = "ray-serve"
    # Our encoder in every replica, so it stands against the offline ceiling as ours do; the
    # queue is Serve's batch queue, one per replica process.
    traits = Traits(ours=True, lock="queue", overlap=True, multi_process=True, batching=True)
    protocol = "predict"

    def check(self, options: ServerOptions) -> None:
        if (options.streams or 1) > 1:
            raise ConfigError(
                "ray-serve runs one batch at a time per replica: "
                "ask for more replicas with --workers instead of --streams"
            )
        if options.http != "fastapi":
            raise ConfigError("ray-serve serves through Serve's FastAPI ingress: drop --http asgi")
        if ray_version() is None:
            raise PeerUnavailableError("ray-serve needs Ray Serve: run `make peers`")
        resolve_spec(options.model)

    def launch(self, options: ServerOptions, port: int, workdir: Path) -> LaunchSpec:
        workdir.mkdir(parents=True, exist_ok=True)
        config = self.server_config(options, port, ready_dir="")
        # Ray keeps Unix sockets under its session folder, whose path must stay under 108
        # bytes: a short folder in /tmp rather than the cell's work folder.
        temp_dir = Path(tempfile.mkdtemp(prefix="embbench-ray-"))
        tag = f"embbench-ray-{uuid.uuid4().hex[:12]}"
        resolved = dataclasses.replace(
            options, port=port, workers=config.workers, threads=config.threads
        )
        env = server_env(config)
        env.pop("RAY_ADDRESS", None)  # a local head of our own, never a cluster named there
        env.update({TAG_ENV: tag, "RAY_USAGE_STATS_ENABLED": "0"})
        logs_dir = workdir / "ray-logs"
        argv = [sys.executable, "-m", "embbench.servers.ray_launch",
                "--temp-dir", str(temp_dir), "--logs-dir", str(logs_dir)]  # fmt: skip
        return LaunchSpec(
            argv=argv + option_argv(resolved),
            env=env,
            protocol=self.protocol,
            info={
                "workers": config.workers,
                "threads": config.threads,
                "strategy": "ray serve batch",
                "replicas": config.workers,
                "version": ray_version() or "",
                "batch_size": options.max_batch_size,
                "ray_tag": tag,
            },
            cleanup=lambda: ray_cleanup(tag, temp_dir, logs_dir),
        )
