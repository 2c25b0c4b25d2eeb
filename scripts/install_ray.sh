#!/usr/bin/env bash
# Install Ray Serve into the main virtual environment (.venv), for the `ray-serve` variant.
#
# The main environment, not one of its own (unlike infinity-emb): `pip install --dry-run
# "ray[serve]==2.60.0"` in .venv only adds packages (aiohttp, grpcio, opencensus, ...) and
# upgrades or downgrades none of ours, and Ray's replicas run embbench's own encoder, which a
# separate environment would need a second copy of torch (5 GB) for. Measured here (packages
# from a fast mirror): 10 s, and .venv grew by 334 MB (docs/peers.md, "Ray Serve").
#
# `make peers` runs this; it is idempotent: a second run with the same pin does nothing.
# Usage: bash scripts/install_ray.sh   (from anywhere; paths are relative to the repo root)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${EMBBENCH_VENV:-$ROOT/.venv}"
PY="$VENV/bin/python"

# Must match RAY_VERSION in embbench/variants/ray_serve.py (a unit test checks that it does).
RAY_PIN="ray[serve]==2.60.0"
# Ours, restated in the same resolution, so that pip can never swap torch for another build
# (a looser spec pulls multi-GB CUDA wheels) while it resolves Ray's requirements.
TORCH_PIN="torch==2.13.0"

if [[ ! -x "$PY" ]]; then
  echo "no virtual environment at $VENV: run \`make venv\` first" >&2
  exit 1
fi

installed="$("$PY" -c 'import importlib.metadata as m; print(m.version("ray"))' 2>/dev/null || true)"
if [[ "$installed" == "${RAY_PIN##*==}" ]] && "$PY" -c 'import ray.serve' 2>/dev/null; then
  echo "Ray Serve already installed in $VENV ($RAY_PIN)"
  exit 0
fi

echo "installing $RAY_PIN into $VENV ..."
"$PY" -m pip install --quiet "$TORCH_PIN" "$RAY_PIN"
# A smoke test: the parts the launcher imports, and Ray's own CLI.
"$PY" -c 'import ray, ray.serve, fastapi; print("ray", ray.__version__)'
"$VENV/bin/ray" --version >/dev/null
echo "Ray Serve installed in $VENV"
