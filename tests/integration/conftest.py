from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pytest

from embbench.config.model import resolve_model
from embbench.config.options import ServerOptions
from embbench.machine.process import LaunchSpec, ServerProcess, free_port
from embbench.variants import get_variant

pytestmark = pytest.mark.integration


@pytest.fixture(scope="session")
def model_path() -> Path:
    return resolve_model(None)


@pytest.fixture(scope="session")
def st_model(model_path: Path) -> Any:
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(model_path), device="cpu")


def st_encode(model: Any, texts: list[str]) -> np.ndarray:
    return np.asarray(model.encode(texts, convert_to_numpy=True, show_progress_bar=False))


@contextlib.contextmanager
def running_server(
    spec: LaunchSpec, log_path: Path, url: str, *, timeout: float = 180.0
) -> Iterator[ServerProcess]:
    """Start, wait until healthy, yield, and stop in `finally`."""
    server = ServerProcess(spec, log_path)
    try:
        server.start()
        server.wait_ready(url, timeout)
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def serve_variant(name: str, workdir: Path, **options: Any) -> Iterator[tuple[str, ServerProcess]]:
    port = free_port()
    spec = get_variant(name).launch(ServerOptions(**options), port, workdir)
    url = f"http://127.0.0.1:{port}"
    with running_server(spec, workdir / "server.log", url, timeout=180) as server:
        yield url, server


def tree_of(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []
