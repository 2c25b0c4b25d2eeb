"""The CI gate on a tiny real run: one assertion that passes, one that fails, the exit status
and the JUnit file (issue 30)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


def test_a_run_with_a_passing_and_a_failing_assertion(tmp_path: Path) -> None:
    # Two repeats of one cell, the least that gives an interval, and a wide one (t with one
    # degree of freedom): no server of ours serves a billion embeddings a second, so its
    # interval stays below that unless two repeats differ 14-fold; every answer agrees with
    # sentence-transformers, and cosine_min (the lowest over repeats) is judged exactly.
    out, junit, step = tmp_path / "results", tmp_path / "gate.xml", tmp_path / "step.md"
    cmd = [
        sys.executable, "-m", "embbench", "run", "--variant", "shared-mutex",
        "--concurrency", "2", "--duration", "2", "--warmup", "0.5", "--repeats", "2",
        "--out", str(out), "--run-id", "gate",
        "--assert", "cosine_min>=0.99", "--assert", "shared-mutex: rps>=1e9",
        "--junit", str(junit),
    ]  # fmt: skip
    env = dict(os.environ, HF_HUB_OFFLINE="1", GITHUB_STEP_SUMMARY=str(step))
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=240, check=False)
    output = done.stdout + done.stderr
    assert done.returncode == 3, output[-3000:]
    assert "gate failed" in done.stderr and "1 pass, 1 fail, 0 indeterminate" in done.stderr

    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite is not None and suite.get("name") == "embbench run gate"
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("2", "1", "0")
    cases = {c.get("classname"): c for c in suite.findall("testcase")}
    passed = cases["embbench.assert.cosine_min>=0.99"]
    failed = cases["embbench.assert.shared-mutex: rps>=1e+09"]
    assert passed.get("name") == "shared-mutex c=2" and passed.find("failure") is None
    failure = failed.find("failure")
    assert failure is not None and "beyond >= 1e+09" in (failure.get("message") or "")

    record = json.loads((out / "gate" / "run.json").read_text())
    assert record["assertions"] == ["cosine_min>=0.99", "shared-mutex: rps>=1e+09"]
    assert "assertions" not in record["config"]
    assert "| cosine_min>=0.99 | shared-mutex | c=2 | pass |" in step.read_text()
