from __future__ import annotations

import os

# The model is bundled; nothing may reach for a hub, in tests least of all.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
