#!/usr/bin/env bash
# The test command: formatting, lints, then every test of the workspace.
# Needs a Rust toolchain (rustfmt and clippy components are added if missing) and python3 with
# PyPI reachable (the TAXII tests run real third-party clients; scripts/python-deps.sh), and
# Debian's chromium for the hub console test (scripts/browser-deps.sh, as root).
set -euo pipefail
cd "$(dirname "$0")/.."
for component in rustfmt clippy; do
  if ! rustup component list --installed 2>/dev/null | grep -q "^${component}"; then
    rustup component add "$component"
  fi
done
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# The TAXII client check's Python (taxii2-client, stix2, stix2-validator), for the tests.
INTELMESH_PYTHON="$(scripts/python-deps.sh | tail -n 1)"
export INTELMESH_PYTHON
# Headless Chromium, chromedriver and NSS tools for the hub console test (needs root to install).
scripts/browser-deps.sh
cargo test --workspace --locked
