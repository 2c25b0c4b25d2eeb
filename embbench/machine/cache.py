"""Where embbench keeps what it measured or built once per machine: one root for all of it.

`${EMBBENCH_CACHE:-~/.cache/embbench}` holds the ONNX exports (`onnx/`), the offline ceilings
autotune chooses from (`ceilings/`), the reference embeddings of payload sets (`references/`)
and the Rust server's build (`rust-target/`, also read by scripts/build_rust.sh). Outside the
clone, so that a fresh checkout (CI's) reuses them; deleting a folder makes it measured or built
again.
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    return Path(os.environ.get("EMBBENCH_CACHE") or Path.home() / ".cache" / "embbench")
