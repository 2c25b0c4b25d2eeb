#!/usr/bin/env bash
# Install infinity-emb (a peer embedding server) into its own virtual environment, .venv-infinity.
#
# Its own environment because its pins clash with ours (numpy<2, sentence-transformers<4,
# transformers<5, typer 0.12, rich<14, click<8.2). `make peers` runs this; it is idempotent: a
# stamp file records the pins it installed, and a second run with the same pins does nothing.
#
# Usage: bash scripts/install_infinity.sh   (from anywhere; paths are relative to the repo root)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv-infinity"
PYTHON="${PYTHON:-python3}"

# The pins. torch first and exactly: any looser spec lets pip pull a multi-GB CUDA build.
TORCH_PIN="torch==2.13.0"
INFINITY_PIN="infinity-emb[server,torch]==0.0.78"
# What infinity-emb 0.0.78 admits, fixed to a set that was seen to start and serve on CPU:
# sentence-transformers<4 (it calls its 3.x API), which in turn wants transformers<5.
# numpy<2 is infinity-emb's own cap.
OTHER_PINS=(
  "sentence-transformers==3.4.1"
  "transformers==4.57.6"
  "numpy==1.26.4"
)
STAMP="$VENV/.installed"
WANT="$TORCH_PIN $INFINITY_PIN ${OTHER_PINS[*]}"

if [[ -x "$VENV/bin/infinity_emb" && -f "$STAMP" && "$(cat "$STAMP")" == "$WANT" ]]; then
  echo "infinity-emb already installed in $VENV ($INFINITY_PIN)"
  exit 0
fi

echo "installing $INFINITY_PIN into $VENV (a few minutes) ..."
test -x "$VENV/bin/python" || "$PYTHON" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip --quiet)
"${PIP[@]}" install --upgrade pip
"${PIP[@]}" install "$TORCH_PIN"
# The torch pin again, as a requirement of the same resolution, so that pip never swaps it.
"${PIP[@]}" install "$TORCH_PIN" "$INFINITY_PIN" "${OTHER_PINS[@]}"
# A smoke test of the CLI. infinity makes `.infinity_cache` under INFINITY_HOME (else the working
# directory): keep it inside the venv.
INFINITY_HOME="$VENV" DO_NOT_TRACK=1 "$VENV/bin/infinity_emb" v2 --help >/dev/null
echo "$WANT" >"$STAMP"
echo "infinity-emb installed: $VENV/bin/infinity_emb"
