#!/usr/bin/env bash
# Install fastembed into the main virtual environment (.venv), for the `fastembed` variant and
# `--backend fastembed` (embbench/servers/backends/fastembed.py).
#
# The main environment, since fastembed runs inside our own server. But not through pyproject:
# fastembed 0.9.1 declares huggingface-hub<2.0, and pip would downgrade ours (2.x, which
# transformers 5 and sentence-transformers 6 run on) to 1.x for it. fastembed only reaches the
# hub to download a model, and embbench hands it a local folder (specific_model_path), so it is
# installed without its dependency resolution, with the three packages it imports that .venv
# lacks, pinned. `pip check` then reports the huggingface-hub requirement; that is expected.
# Measured here (a warm mirror): 1 s, .venv grew by about 3 MB.
#
# `make peers` runs this; it is idempotent: a second run with the same pin does nothing.
# Usage: bash scripts/install_fastembed.sh   (from anywhere; paths are relative to the repo root)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${EMBBENCH_VENV:-$ROOT/.venv}"
PY="$VENV/bin/python"

FASTEMBED_PIN="fastembed==0.9.1"
# fastembed's own imports beyond what .venv has (numpy, onnxruntime, tokenizers, requests, tqdm).
OTHER_PINS=("loguru==0.7.3" "mmh3==5.3.1" "py_rust_stemmers==0.1.8")

if [[ ! -x "$PY" ]]; then
  echo "no virtual environment at $VENV: run \`make venv\` first" >&2
  exit 1
fi

installed="$("$PY" -c 'import importlib.metadata as m; print(m.version("fastembed"))' 2>/dev/null || true)"
if [[ "$installed" == "${FASTEMBED_PIN##*==}" ]] && "$PY" -c 'import fastembed' 2>/dev/null; then
  echo "fastembed already installed in $VENV ($FASTEMBED_PIN)"
  exit 0
fi

echo "installing $FASTEMBED_PIN into $VENV ..."
"$PY" -m pip install --quiet --no-deps "$FASTEMBED_PIN" "${OTHER_PINS[@]}"
"$PY" -c 'import fastembed; from fastembed import TextEmbedding; print("fastembed", fastembed.__version__)'
echo "fastembed installed in $VENV"
