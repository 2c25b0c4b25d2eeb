"""Pinning a real process tree, threads included, onto a set of cores."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import psutil
import pytest

from embbench.errors import ConfigError
from embbench.machine.affinity import available, mask_of, pin_tree, split_cores

CHILD = (
    "import threading, time, subprocess, sys\n"
    "threading.Thread(target=time.sleep, args=(30,), daemon=True).start()\n"
    "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(30)'])\n"
    "time.sleep(30)\n"
)


def test_split_and_pin() -> None:
    cores = available()
    server, rest = split_cores(1)
    assert len(server) == 1 and server | rest == set(cores) and not server & rest
    with pytest.raises(ConfigError, match="--cores"):
        split_cores(len(cores) + 1)
    child = subprocess.Popen([sys.executable, "-c", CHILD])
    try:
        time.sleep(1.0)  # its thread and its own child exist
        assert pin_tree(child.pid, server) >= 3  # main thread, the extra thread, the grandchild
        for tid in os.listdir(f"/proc/{child.pid}/task"):
            assert mask_of(int(tid)) == server
    finally:
        for proc in psutil.Process(child.pid).children(recursive=True):
            proc.kill()
        child.kill()
        child.wait()
    assert pin_tree(child.pid, server) == 0  # gone: nothing to pin, no error


def test_capacity_cores_are_checked_before_anything_runs() -> None:
    from embbench.cli.plan import parse_cores
    from embbench.run.capacity import Target

    assert parse_cores("2,1") == (1, 2) and parse_cores("") == ()
    for bad in ("1,1", "one"):
        with pytest.raises(ConfigError, match="--cores"):
            parse_cores(bad)
    with pytest.raises(ConfigError, match="--cores"):
        Target(50.0, cores=(len(available()) + 1,))
