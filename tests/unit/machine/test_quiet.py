"""Third-party progress bars off: in this process and in the environment children inherit."""

from __future__ import annotations

import os

import pytest

from embbench.machine import quiet
from embbench.machine.host import SIMD_FLAGS, cpu_flags, host_info


def test_quiet_libraries_sets_what_is_unset_and_tells_transformers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in quiet.QUIET_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TRANSFORMERS_VERBOSITY", "info")  # the user's own setting wins
    from transformers.utils import logging

    try:
        quiet.quiet_libraries()
        assert os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] == "1"
        assert os.environ["TRANSFORMERS_VERBOSITY"] == "info"
        assert not logging.is_progress_bar_enabled()
    finally:
        logging.enable_progress_bar()  # type: ignore[no-untyped-call]


def test_the_host_records_its_simd_flags() -> None:
    flags = cpu_flags()
    assert set(flags) <= set(SIMD_FLAGS)
    assert host_info()["cpu_flags"] == flags
