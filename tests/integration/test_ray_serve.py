"""The ray-serve variant as a real Ray head, Serve deployment and HTTP server (needs `make peers`).

One server start for the whole module (Ray takes ~20 s to come up on 2 cores): its answers, its
Server-Timing and 300 requests at once (test_server_timing's checks), its process tree as the
sampler sees it, and, after the stop, that nothing of that Ray is left (the last test, and again
when the module's fixture ends).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil
import pytest

from embbench.config.options import ServerOptions
from embbench.machine.process import ServerProcess, free_port
from embbench.machine.sampler import TreeMeter
from embbench.variants import get_variant
from embbench.variants.ray_serve import ray_version, tagged_processes
from tests.integration.conftest import st_encode, tree_of
from tests.integration.test_server_timing import CAP, check_flood, check_timing

pytestmark = [
    pytest.mark.integration,
    pytest.mark.peers,
    pytest.mark.skipif(ray_version() is None, reason="Ray Serve not installed: run `make peers`"),
]

# What a local Ray head consists of besides the replicas (process names, as psutil reads them).
RAY_DAEMONS = {"raylet", "gcs_server"}


class RayServer:
    """The one server of this module: its URL, its launcher's tree, its Ray's tag, and a stop
    that reports what of that Ray is still running once the stop has returned."""

    def __init__(self, workdir: Path) -> None:
        port = free_port()
        self.workdir = workdir
        # The cap of test_server_timing's flood, per replica: below Serve's max_ongoing_requests
        # (2 x max_batch_size = 64), so a replica holds more than the cap and refuses the rest.
        options = ServerOptions(max_concurrent_requests=CAP)
        self.spec = get_variant("ray-serve").launch(options, port, workdir)
        self.url = f"http://127.0.0.1:{port}"
        self.tag = str(self.spec.info["ray_tag"])
        self.temp_dir = Path(self.spec.argv[self.spec.argv.index("--temp-dir") + 1])
        self.server = ServerProcess(self.spec, workdir / "server.log")
        self.left: list[tuple[int, str]] | None = None

    def start(self) -> None:
        self.server.start()
        self.server.wait_ready(self.url, timeout=180)
        assert self.server.pid is not None
        self.pid = self.server.pid
        self.names = [proc.name() for proc in tree_of(self.pid)]

    def stop(self) -> list[tuple[int, str]]:
        if self.left is None:
            self.server.stop()  # TERM the group, grace, KILL, reap; then the variant's clean-up
            self.left = [(p.pid, p.name()) for p in tagged_processes(self.tag)]
            # And by its command line, which names the session folder, any daemon of it.
            self.left += [
                (pid, name)
                for pid, name, argv in _processes()
                if name in RAY_DAEMONS and str(self.temp_dir) in argv
            ]
        return self.left


def _processes() -> list[tuple[int, str, str]]:
    found = []
    for proc in psutil.process_iter():
        try:
            found.append((proc.pid, proc.name(), " ".join(proc.cmdline())))
        except psutil.Error:  # gone meanwhile
            continue
    return found


@pytest.fixture(scope="module")
def ray_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RayServer]:
    server = RayServer(tmp_path_factory.mktemp("ray-serve"))
    try:
        server.start()
        yield server
    finally:
        left = server.stop()
    assert not left, f"left behind: {left}"


def post(url: str, path: str, **kwargs: Any) -> httpx.Response:
    return httpx.post(url + path, timeout=60, **kwargs)


def test_predict_is_the_reference_embedding(ray_server: RayServer, st_model: Any) -> None:
    text = "Ray Serve hands each request to one of its replicas."
    reply = post(ray_server.url, "/predict", json={"text": text})
    assert reply.status_code == 200, reply.text
    [vector] = np.asarray(reply.json()["embeddings"], dtype=np.float32)
    assert vector.shape == (384,)
    assert abs(float(np.linalg.norm(vector)) - 1.0) < 1e-4
    [reference] = st_encode(st_model, [text])
    cosine = float(vector @ reference / np.linalg.norm(reference))
    assert cosine >= 0.999


def test_embed_takes_one_input_or_a_list(ray_server: RayServer, st_model: Any) -> None:
    texts = ["short", "a somewhat longer sentence, to be padded with the first one"]
    reply = post(ray_server.url, "/embed", json={"inputs": texts})
    assert reply.status_code == 200, reply.text
    vectors = np.asarray(reply.json(), dtype=np.float32)
    assert vectors.shape == (2, 384)
    reference = st_encode(st_model, texts)
    cosines = (vectors * reference).sum(axis=1) / np.linalg.norm(reference, axis=1)
    assert cosines.min() >= 0.999
    one = post(ray_server.url, "/embed", json={"inputs": "short"})
    assert np.asarray(one.json()).shape == (1, 384)


@pytest.mark.parametrize(
    ("path", "body", "status", "error_type"),
    [
        ("/predict", b'{"text": ', 400, "malformed_json"),
        ("/predict", b'{"txt": "hello"}', 422, "validation"),
        ("/predict", b'{"text": 3}', 422, "validation"),
        ("/embed", b'{"inputs": []}', 422, "validation"),
        ("/predict", b'{"text": "   "}', 422, "validation"),
    ],
)
def test_bad_input_is_a_json_4xx(
    ray_server: RayServer, path: str, body: bytes, status: int, error_type: str
) -> None:
    reply = post(ray_server.url, path, content=body, headers={"Content-Type": "application/json"})
    assert reply.status_code == status, reply.text
    assert reply.json()["error_type"] == error_type and reply.json()["error"]


def test_health_and_info(ray_server: RayServer) -> None:
    assert httpx.get(ray_server.url + "/health", timeout=10).status_code == 200
    info = httpx.get(ray_server.url + "/info", timeout=10).json()
    assert info["variant"] == "ray-serve" and info["backend"] == "torch"
    assert info["workers"] == info["replicas"] == 2
    assert info["ray_version"] == ray_version()
    assert info["max_input_length"] == 256
    assert info["max_concurrent_requests"] == CAP and "requests_in_flight" in info["admission"]


def test_the_sampler_sees_the_whole_engine(ray_server: RayServer) -> None:
    # GCS, raylet and both replicas descend from the launched process: its tree is the cost.
    assert set(ray_server.names) >= RAY_DAEMONS, ray_server.names
    replicas = [n for n in ray_server.names if n.startswith("ray::ServeReplica")]
    assert len(replicas) == 2, ray_server.names
    meter = TreeMeter(ray_server.pid)
    meter.refresh()
    pss_mb = meter.read()[2]
    assert pss_mb > 200  # two models, at least


def test_replicas_run_with_the_thread_count_asked(ray_server: RayServer) -> None:
    threads = str(ray_server.spec.info["threads"])
    replicas = [p for p in tree_of(ray_server.pid) if p.name().startswith("ray::ServeReplica")]
    assert replicas
    for proc in replicas:
        assert proc.environ().get("OMP_NUM_THREADS") == threads


def test_a_request_says_where_its_time_went(ray_server: RayServer) -> None:
    # Serve's batch queue in the replica is the wait; the proxy's hop lies outside `total`.
    check_timing(ray_server.url, "queue")


def test_beyond_the_cap_only_200s_and_429s(ray_server: RayServer) -> None:
    check_flood(ray_server.url)


def test_stop_leaves_no_ray_process(ray_server: RayServer) -> None:
    # Last in this module: it stops the module's server.
    assert ray_server.stop() == []
    assert not ray_server.temp_dir.exists()
    # Ray's own logs are kept with the cell's.
    assert (ray_server.workdir / "ray-logs" / "raylet.out").is_file()
