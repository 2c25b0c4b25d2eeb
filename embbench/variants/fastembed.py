"""fastembed's engine behind our own batched server: the same HTTP side, queue, tokeniser and
pooling as `batched`, with fastembed's onnxruntime session over our own ONNX export in place of
ours (servers/backends/fastembed.py), so that a run compares the engine and nothing else.

The backend is named, not implied (`backend = "fastembed"`): a row's backend column then says
what ran. fastembed's `parallel` (worker processes inside its offline `embed`) has no place in a
server; the variant's `streams` and `workers` play that part, and /info records `parallel`
as None.
"""

from __future__ import annotations

import importlib.util

from embbench.config.options import ServerOptions
from embbench.errors import ConfigError, PeerUnavailableError
from embbench.variants.batched import Batched


class Fastembed(Batched):
    name = "fastembed"
    summary = (
        "batched, with fastembed's onnxruntime session over our ONNX export as the engine "
        "(give --backend fastembed; --quantize int8 for the dynamic int8 export)"
    )
    seed_analogue = "fastembed (Qdrant), served by our own HTTP server"

    def check(self, options: ServerOptions) -> None:
        if options.backend != "fastembed":
            raise ConfigError(
                "the fastembed variant runs fastembed's engine: give it --backend fastembed "
                '(in a run file: backend = "fastembed")'
            )
        # Found before the server starts: otherwise the cell fails on a server log's ImportError.
        if importlib.util.find_spec("fastembed") is None:
            raise PeerUnavailableError(
                "the fastembed variant needs fastembed: run `make peers` "
                "(scripts/install_fastembed.sh installs it into .venv)"
            )
        super().check(options)
