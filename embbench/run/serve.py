"""`embbench serve`: one variant in the foreground, stopped (workers included) on Ctrl-C/TERM."""

from __future__ import annotations

import shutil
import signal
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType

from embbench.config.options import ServerOptions
from embbench.machine.process import ServerProcess, ensure_port_free, free_port
from embbench.variants import get_variant


def serve_foreground(
    name: str, options: ServerOptions, on_ready: Callable[[str], None] | None = None
) -> int:
    variant = get_variant(name)
    variant.check(options)
    if options.port:
        ensure_port_free(options.host, options.port)
    port = options.port or free_port(options.host)
    workdir = Path(tempfile.mkdtemp(prefix="embbench-serve-"))
    spec = variant.launch(options, port, workdir)
    # The server's output goes to the terminal's log file path; show where it is.
    server = ServerProcess(spec, workdir / "server.log")
    url = f"http://{options.host}:{port}"

    def stop(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)
    previous_hup = signal.signal(signal.SIGHUP, stop)  # a closed terminal stops it like TERM
    try:
        server.start()
        server.wait_ready(url, timeout=300)
        if on_ready:
            on_ready(f"{url} (log: {server.log_path})")
        while server.exited() is None:
            time.sleep(0.5)
        return server.exited() or 0
    except KeyboardInterrupt:
        return 130
    finally:
        server.stop()
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGHUP, previous_hup)
        # The log went to the terminal's user as a path; the folder is ours to clean.
        shutil.rmtree(workdir, ignore_errors=True)
