"""Third-party progress bars and notices kept out of embbench's terminal output.

transformers draws `Loading weights: 100%|...| 103/103` with tqdm whenever a model loads, and
huggingface_hub its download bars; between embbench's own lines they read as noise (issue 29).
`QUIET_ENV` turns them off for this process and for every child that inherits its environment
(the ceiling's subprocess, Locust, the servers; those log to files anyway); `quiet_libraries`
sets it and, when transformers is already imported, tells it too. Set only where unset: a
user's own setting wins.
"""

from __future__ import annotations

import os
import sys

QUIET_ENV = {
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",  # huggingface_hub's bars, and transformers' (it asks hub)
    "TRANSFORMERS_VERBOSITY": "error",  # no advisory warnings between our lines
    "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
    "TOKENIZERS_PARALLELISM": "false",  # no fork warning from tokenizers in children
}


def quiet_libraries() -> None:
    """Turn the progress bars of transformers and huggingface_hub off, here and in children."""
    for name, value in QUIET_ENV.items():
        os.environ.setdefault(name, value)
    if "transformers" in sys.modules:  # imported before: it read its environment already
        from transformers.utils import logging

        logging.disable_progress_bar()  # type: ignore[no-untyped-call]
        logging.set_verbosity_error()  # type: ignore[no-untyped-call]
