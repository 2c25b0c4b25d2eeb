"""StartupWatch on a real child that allocates while it "starts": the peak is seen, and the
cost of a launch that fails is not left running."""

from __future__ import annotations

import subprocess
import sys
import time

from embbench.machine.startup import StartupWatch

CHILD = (
    "import time\n"
    "block = bytearray(120 * 1024 * 1024)\n"  # touched below, so resident
    "for i in range(0, len(block), 4096): block[i] = 1\n"
    "time.sleep(0.8)\n"
    "del block\n"
    "time.sleep(30)\n"
)


def test_watch_sees_the_start_up_peak() -> None:
    watch = StartupWatch(interval=0.05)
    watch.start()
    child = subprocess.Popen([sys.executable, "-c", CHILD])
    try:
        watch.point(lambda: child.pid)
        time.sleep(1.6)  # past the allocation: "ready" with the block freed
        cost = watch.ready()
    finally:
        child.kill()
        child.wait()
    assert cost.seconds >= 1.6
    assert cost.samples > 3
    assert cost.rss_mb_peak > 120  # the freed block still counts: it was the peak
    assert cost.pss_mb_peak > 100


def test_watch_of_a_root_not_there_yet_reports_nothing() -> None:
    watch = StartupWatch(interval=0.05)
    watch.start()
    watch.point(lambda: None)  # a container whose first process has not appeared
    time.sleep(0.2)
    cost = watch.ready()
    assert cost.samples == 0 and cost.rss_mb_peak == 0.0


def test_stop_without_point_is_harmless() -> None:
    watch = StartupWatch()
    watch.start()
    watch.stop()
