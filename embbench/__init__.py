"""embbench: which way of serving a sentence-embedding model should I run, on this machine?"""

from __future__ import annotations

__version__ = "0.1.0"
