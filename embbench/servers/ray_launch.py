"""`python -m embbench.servers.ray_launch`: start Ray, deploy ray_app's application, serve until
SIGTERM, SIGINT or SIGHUP, then stop Ray (variant `ray-serve`).

Run by embbench, it starts a local Ray head of its own (GCS, raylet, replicas: all descendants
of this process, so the sampler sees the engine's whole cost). With `--address auto` (or
HOST:6379) it deploys onto a running Ray cluster instead, and removes its application when
stopped. The deployment itself (replicas, batching, the API) is in ray_app.py, imported here by
its module name so that Ray pickles its classes by reference for the replicas.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import shutil
import signal
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from embbench.machine.host import cpu_count
from embbench.servers.ray_app import (
    APP_NAME,
    QUIET_LOGS,
    VARIANT,
    RayServeSettings,
    build_app,
    parse_settings,
)

log = logging.getLogger("embbench.ray")
# Ray's own default is 30 % of the memory for the object store; nothing large travels through
# it here (requests and vectors are small), so a small one keeps /dev/shm and PSS honest.
OBJECT_STORE_BYTES = 128 * 1024 * 1024
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
# How long a stop may take in order before this process exits at once. Ray's own processes die
# with it either way: ray.init starts GCS, raylet and its monitors with the parent-death signal
# SIGKILL, and the replicas exit when their raylet is gone (2 s here). An orderly stop takes
# 2.3 s when only this process gets SIGTERM (embbench killed: PR_SET_PDEATHSIG); when the whole
# process group gets it (embbench's stop), raylet and GCS each wait for the other and an
# orderly stop took 8.9 s, past embbench's grace of 8 s.
STOP_TIMEOUT_S = 3.0


def start_ray(settings: RayServeSettings) -> None:
    # The environment first: Ray reads its settings once, when it is imported.
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no reports home
    if settings.address is None and "RAY_AUTH_MODE" not in os.environ:
        # Ray's token authentication stays on, with a token of this head's own in the
        # environment its processes inherit: Ray would otherwise write one to ~/.ray.
        os.environ["RAY_AUTH_MODE"] = "token"
        os.environ.setdefault("RAY_AUTH_TOKEN", secrets.token_hex(32))
    import ray

    if settings.address is not None:
        ray.init(address=settings.address, namespace="embbench", log_to_driver=True)
        return
    # "local": a new head even where RAY_ADDRESS or a running cluster would be found. Enough
    # logical CPUs for every replica to be placed, whatever the thread count asked for.
    ray.init(
        address="local",
        namespace="embbench",
        num_cpus=max(cpu_count(), settings.replicas * settings.threads),
        include_dashboard=False,
        object_store_memory=OBJECT_STORE_BYTES,
        # Loopback: this head serves this machine only (its ports are not for the network).
        _node_ip_address="127.0.0.1",
        _temp_dir=settings.temp_dir,
        log_to_driver=True,
    )


def deploy(settings: RayServeSettings) -> None:
    from ray import serve

    serve.start(
        proxy_location="HeadOnly",
        http_options={"host": settings.options.host, "port": settings.port},
        logging_config=QUIET_LOGS,
    )
    # Returns once every replica is running (its model loaded and warmed).
    serve.run(build_app(settings), name=APP_NAME, route_prefix="/", logging_config=QUIET_LOGS)


def stop_ray(settings: RayServeSettings, timeout: float = STOP_TIMEOUT_S) -> bool:
    """Leave Ray in order, within `timeout`; False if it did not (see STOP_TIMEOUT_S).

    A local head (GCS, raylet and through it every replica) stops with ray.shutdown. On a
    cluster, the application (and Serve's controller and proxies) is removed first.
    """

    def shut_down() -> None:
        import ray

        if settings.address is not None and ray.is_initialized():
            from ray import serve

            remove_serve: Callable[[], None] = serve.shutdown  # untyped in Ray
            remove_serve()
        ray.shutdown()

    worker = threading.Thread(target=shut_down, name="ray-shutdown", daemon=True)
    worker.start()
    worker.join(timeout)
    return not worker.is_alive()


def release_temp_dir(temp_dir: Path, logs_dir: Path | None) -> None:
    """Keep Ray's logs of a local head in `logs_dir` (with the cell's), then remove its session
    folder. Idempotent: the launcher does it as it exits, embbench's clean-up again in case the
    launcher was killed first."""
    logs = temp_dir / "session_latest" / "logs"
    if logs_dir is not None and logs.is_dir():
        with contextlib.suppress(OSError, shutil.Error):
            shutil.copytree(logs.resolve(), logs_dir, dirs_exist_ok=True)
    shutil.rmtree(temp_dir, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    settings = parse_settings(argv)

    def on_signal(signum: int, frame: object) -> None:
        log.info("signal %s: stopping", signal.Signals(signum).name)
        raise SystemExit(0)  # unwinds whatever runs (serving, or a deploy under way) to `finally`

    try:
        start_ray(settings)
        # After ray.init, which installs a SIGTERM handler of its own (sys.exit).
        for sig in STOP_SIGNALS:
            signal.signal(sig, on_signal)
        deploy(settings)
        where = f"http://{settings.options.host}:{settings.port}"
        log.info(
            "serving %s: %d replicas x %d threads at %s (%s)",
            VARIANT, settings.replicas, settings.threads, where, settings.options,
        )  # fmt: skip
        while True:
            signal.pause()
    finally:
        # A second signal (embbench's TERM reaches the whole process group, Ray's daemons too,
        # and the kernel's parent-death TERM may follow) must not cut the shutdown short.
        for sig in STOP_SIGNALS:
            signal.signal(sig, signal.SIG_IGN)
        in_order = stop_ray(settings)
        if settings.temp_dir is not None and settings.address is None:
            logs_dir = Path(settings.logs_dir) if settings.logs_dir else None
            release_temp_dir(Path(settings.temp_dir), logs_dir)
        if not in_order:
            log.warning(
                "Ray did not stop within %.0f s: exiting, its processes with me", STOP_TIMEOUT_S
            )
            logging.shutdown()
            # Not sys.exit: Ray's atexit hook would wait for the same shutdown again.
            os._exit(0)


if __name__ == "__main__":
    main()
