#!/usr/bin/env bash
# Build the Rust seed server (rust/seed-server) in release mode and print the binary's path.
# seed-bench (its model code timed without HTTP, for scripts/rust_explain.py) is built beside it.
# The target directory is a cache outside the clone, shared by every clone of this machine:
#   ${EMBBENCH_CACHE:-$HOME/.cache/embbench}/rust-target
# Extra arguments go to cargo (e.g. --quiet).
set -euo pipefail

cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null 2>&1; then
    echo "error: cargo not found; install Rust (https://rustup.rs) to build the rust-* variants" >&2
    exit 1
fi

export CARGO_TARGET_DIR="${EMBBENCH_CACHE:-$HOME/.cache/embbench}/rust-target"
# cargo's progress goes to stderr; stdout carries only the binary's path.
cargo build --release --locked --manifest-path rust/seed-server/Cargo.toml "$@" >&2
echo "$CARGO_TARGET_DIR/release/seed-server"
