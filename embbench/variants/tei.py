"""Hugging Face Text Embeddings Inference (TEI), a peer server, run as its CPU Docker image.

Where a Docker engine answers, embbench starts the pinned CPU image with the model folder mounted
read-only and removes the container when the cell ends (also on Ctrl-C: ServerProcess.stop runs
`LaunchSpec.cleanup` in `finally`). Where none does, `check` says in one line how to attach to a
TEI started by hand (`embbench run --url ... --protocol tei`).

`docker run` is a client: its process tree holds none of the container's processes. The
container's own processes are found with `container_pids(name)` (see there).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import uuid
from pathlib import Path

from embbench.config.model import BUNDLED_MODEL, resolve_model
from embbench.config.options import ServerOptions
from embbench.errors import PeerUnavailableError
from embbench.machine.children import pid_alive
from embbench.machine.process import LaunchSpec
from embbench.results.traits import Traits
from embbench.variants.base import Variant

# The CPU image, pinned to a release (x86-64). Tags are listed at
# https://github.com/huggingface/text-embeddings-inference/pkgs/container/text-embeddings-inference
# (CPU tags are `cpu-X.Y.Z`; `cpu-X.Y` and `cpu-latest` move).
TEI_IMAGE = "ghcr.io/huggingface/text-embeddings-inference:cpu-1.9.4"
# Where the model folder is mounted inside the container.
MODEL_MOUNT = "/data"
# TEI's default is 512 requests in flight, past which it answers 429: too few for the 1000-user
# level. A semaphore's size, so a generous value costs nothing; 429s are still counted apart.
MAX_CONCURRENT_REQUESTS = 4096
DOCKER_TIMEOUT = 20.0

OWNER_LABEL = "io.embbench.owner-pid"

NO_ENGINE = (
    "tei needs a Docker engine (none here); start TEI yourself and run "
    "`embbench run --url http://HOST:PORT --protocol tei`"
)


def docker_command(
    model_dir: Path,
    port: int,
    host: str,
    container_name: str,
    max_concurrent_requests: int,
    threads: int | None,
    *,
    max_batch_tokens: int = 16384,
    max_batch_requests: int | None = None,
    served_model_name: str = BUNDLED_MODEL,
    image: str = TEI_IMAGE,
) -> list[str]:
    """The `docker run` command line of one TEI container serving `model_dir` on host:port."""
    # fmt: off
    argv = [
        "docker", "run",
        "--rm",  # removed when it stops (cleanup's `docker rm -f` covers a client killed hard)
        "--name", container_name,
        # Whose container this is: a later run removes those whose embbench is gone (kill -9).
        "--label", f"{OWNER_LABEL}={os.getpid()}",
        "--pull", "missing",  # pull the pinned tag once; never replace a local copy
        "-p", f"{host}:{port}:80",  # only on the address asked for (127.0.0.1 by default)
        "-v", f"{Path(model_dir).resolve()}:{MODEL_MOUNT}:ro",  # the same files as ours, read-only
        "-e", "HF_HUB_OFFLINE=1",  # a local folder: nothing to fetch
    ]
    if threads:
        # The intra-op pool of TEI's CPU backends (MKL/OpenMP), as OMP/MKL_NUM_THREADS for ours.
        argv += ["-e", f"OMP_NUM_THREADS={threads}", "-e", f"MKL_NUM_THREADS={threads}"]
    argv += [
        image,
        # The router's own flags (text-embeddings-router --help):
        "--model-id", MODEL_MOUNT,  # a local folder (config.json, tokenizer.json, safetensors)
        "--served-model-name", served_model_name,  # the "model" of its OpenAI-style replies
        "--hostname", "0.0.0.0",  # inside the container; -p above restricts the host side
        "--port", "80",
        # Requests in flight before TEI answers 429: raised for the 1000-user level.
        "--max-concurrent-requests", str(max_concurrent_requests),
        # Tokens in one forward pass (TEI's default 16384; the same cap as our batched variant).
        "--max-batch-tokens", str(max_batch_tokens),
        # Inputs a client may send in one request: we send one, TEI's default (32) is plenty.
        "--max-client-batch-size", "32",
        # Inputs over the model's limit are cut, not refused (our servers truncate by default;
        # the /embed requests also say `"truncate": true`).
        "--auto-truncate",
    ]
    # fmt: on
    if max_batch_requests is not None:
        # Requests in one batch (unbounded in TEI by default; our batched variant's cap).
        argv += ["--max-batch-requests", str(max_batch_requests)]
    if threads:
        # Tokenizer threads (TEI's default: one per core).
        argv += ["--tokenization-workers", str(threads)]
    return argv


def docker_engine_error() -> str | None:
    """None if a Docker engine answers here, else why not (one line)."""
    if shutil.which("docker") is None:
        return "no docker CLI"
    try:
        probe = subprocess.run(
            ["docker", "info", "--format", "{{.ServerVersion}}"],
            capture_output=True,
            text=True,
            timeout=DOCKER_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"docker info failed: {exc}"
    if probe.returncode != 0 or not probe.stdout.strip():
        lines = (probe.stderr or probe.stdout).strip().splitlines()
        return lines[-1] if lines else f"docker info exited with {probe.returncode}"
    return None


def remove_container(name: str) -> None:
    """`docker rm -f NAME`, quietly: the container may already be gone (--rm)."""
    with contextlib.suppress(OSError, subprocess.TimeoutExpired):
        subprocess.run(
            ["docker", "rm", "-f", name],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=DOCKER_TIMEOUT,
            check=False,
        )


def remove_stale_containers() -> list[str]:
    """Remove the containers of embbench processes that are gone (a run killed with -9 never
    reached its clean-up); returns their ids."""
    try:
        listed = subprocess.run(
            ["docker", "ps", "-a", "--filter", f"label={OWNER_LABEL}",
             "--format", f'{{{{.ID}}}} {{{{.Label "{OWNER_LABEL}"}}}}'],
            capture_output=True, text=True, timeout=DOCKER_TIMEOUT, check=False,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return []
    stale = []
    for line in listed.stdout.splitlines():
        ident, _, owner = line.partition(" ")
        if owner.isdigit() and not pid_alive(int(owner)):
            remove_container(ident)
            stale.append(ident)
    return stale


def container_pids(name: str) -> list[int]:
    """Host pids of the roots of container `name`'s process tree ([] if it is not running).

    `docker inspect -f {{.State.Pid}}` gives the pid, in the host's namespace, of the container's
    first process (TEI's image runs `text-embeddings-router` as that process); every other process
    of the container descends from it. Sample it as a process-tree root, like our servers' pid.
    Needs the engine on this host (not inside a VM, as with Docker Desktop) and, for PSS/USS,
    the right to read its /proc (root, since the container runs as root).
    """
    try:
        out = subprocess.run(
            ["docker", "inspect", "-f", "{{.State.Pid}}", name],
            capture_output=True,
            text=True,
            timeout=DOCKER_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return []
    if out.returncode != 0:
        return []
    pid = out.stdout.strip()
    return [int(pid)] if pid.isdigit() and int(pid) > 0 else []


class Tei(Variant):
    name = "tei"
    summary = "Hugging Face Text Embeddings Inference, CPU Docker image (or --url to a running one)"
    seed_analogue = "TEI"
    default_workers = 1
    traits = Traits(ours=False, lock="queue", overlap=True, batching=True)
    protocol = "tei"

    def processes(self, options: ServerOptions) -> int:
        return 1

    def check(self, options: ServerOptions) -> None:
        if docker_engine_error() is not None:
            raise PeerUnavailableError(NO_ENGINE)
        resolve_model(options.model)

    def prepare(self, options: ServerOptions) -> None:
        remove_stale_containers()

    def launch(self, options: ServerOptions, port: int, workdir: Path) -> LaunchSpec:
        workdir.mkdir(parents=True, exist_ok=True)
        name = f"embbench-tei-{port}-{uuid.uuid4().hex[:8]}"
        argv = docker_command(
            resolve_model(options.model),
            port,
            options.host,
            name,
            MAX_CONCURRENT_REQUESTS,
            options.threads,
            max_batch_tokens=options.max_batch_tokens,
            max_batch_requests=options.max_batch_size,
            served_model_name=options.model or BUNDLED_MODEL,
        )
        return LaunchSpec(
            argv=argv,
            env=dict(os.environ),
            protocol=self.protocol,
            cleanup=lambda: remove_container(name),
            sample_pid=lambda: next(iter(container_pids(name)), None),
            info={
                "workers": 1,
                # Unset, TEI sizes its pools by the cores, as resolved_threads(1) does.
                "threads": options.resolved_threads(1),
                "strategy": "tei router (token-based dynamic batching)",
                "image": TEI_IMAGE,
                "container": name,
                "max_concurrent_requests": MAX_CONCURRENT_REQUESTS,
            },
        )
