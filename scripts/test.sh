#!/usr/bin/env bash
# The test command: formatting, lints, then every test of the workspace.
# Needs only a Rust toolchain (rustfmt and clippy components are added if missing).
set -euo pipefail
cd "$(dirname "$0")/.."
for component in rustfmt clippy; do
  if ! rustup component list --installed 2>/dev/null | grep -q "^${component}"; then
    rustup component add "$component"
  fi
done
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
