"""The rust-* variants as launch commands: the request cap reaches the Rust server. Nothing is
built or started here (tests/integration/test_server_timing.py floods the real server)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from embbench.config.options import ServerOptions
from embbench.variants import get_variant
from embbench.variants import rust as rust_mod

ROOT = Path(__file__).resolve().parents[3]
NAMES = [variant.name for variant in rust_mod.RUST_VARIANTS]


def flag(argv: list[str], name: str) -> str:
    """The value after `name` in argv."""
    assert name in argv, f"{name} missing from {argv}"
    return argv[argv.index(name) + 1]


@pytest.mark.parametrize("name", NAMES)
def test_the_request_cap_is_passed(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rust_mod, "takes_request_cap", lambda: True)
    variant = get_variant(name)
    capped = variant.launch(ServerOptions(max_concurrent_requests=32), 18100, tmp_path).argv
    assert flag(capped, "--max-concurrent-requests") == "32"
    default = variant.launch(ServerOptions(), 18100, tmp_path).argv
    assert flag(default, "--max-concurrent-requests") == str(
        ServerOptions().max_concurrent_requests
    )


def test_a_build_from_before_the_cap_runs_without_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rust_mod, "takes_request_cap", lambda: False)
    options = ServerOptions(max_concurrent_requests=32)
    argv = get_variant("rust-rwlock").launch(options, 18100, tmp_path).argv
    assert "--max-concurrent-requests" not in argv


def test_the_servers_default_cap_is_ours() -> None:
    # The server run by hand (no flag) caps where ours and TEI's do.
    main = (ROOT / "rust" / "seed-server" / "src" / "main.rs").read_text()
    found = re.search(
        r"#\[arg\(long, default_value_t = (\d+)[^\]]*\]\s*max_concurrent_requests:", main
    )
    assert found, "no --max-concurrent-requests in rust/seed-server/src/main.rs"
    assert int(found.group(1)) == ServerOptions().max_concurrent_requests
