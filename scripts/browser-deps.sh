#!/usr/bin/env bash
# The real browser for the hub console test (tests/console.rs): Debian's chromium and
# chromedriver, NSS tools (certutil, pk12util: each test browser gets its own NSS database with
# the hub's CA and one client certificate) and openssl (the PKCS#12 file), plus the managed
# policy AutoSelectCertificateForUrls, so that headless Chromium presents that certificate to
# https://127.0.0.1:* without a prompt. Idempotent: quick when all is there. Installing needs
# root (CI runs as root).
set -euo pipefail

POLICY_DIR=/etc/chromium/policies/managed
POLICY="$POLICY_DIR/intelmesh-console-test.json"
POLICY_JSON='{"AutoSelectCertificateForUrls": ["{\"pattern\":\"https://127.0.0.1:*\",\"filter\":{}}"]}'
PACKAGES="chromium chromium-driver libnss3-tools openssl"

die() {
  echo "browser-deps: $*" >&2
  exit 1
}

have_all() {
  command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1 &&
    command -v certutil >/dev/null 2>&1 && command -v pk12util >/dev/null 2>&1 &&
    command -v openssl >/dev/null 2>&1
}

policy_ok() {
  [ -f "$POLICY" ] && [ "$(cat "$POLICY")" = "$POLICY_JSON" ]
}

if have_all && policy_ok; then
  exit 0
fi
# As root, or through password-less sudo where a CI runner is not root.
as_root=()
if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    as_root=(sudo -n env DEBIAN_FRONTEND=noninteractive)
  else
    die "needs root to install $PACKAGES and write $POLICY (run it with sudo once)"
  fi
fi

if ! have_all; then
  command -v apt-get >/dev/null 2>&1 || die "no apt-get: install $PACKAGES by hand"
  log="$(mktemp)"
  trap 'rm -f "$log"' EXIT
  export DEBIAN_FRONTEND=noninteractive
  # shellcheck disable=SC2086 # the package list is words
  if ! "${as_root[@]}" apt-get install -y --no-install-recommends $PACKAGES >"$log" 2>&1; then
    "${as_root[@]}" apt-get update >>"$log" 2>&1 || true
    # shellcheck disable=SC2086
    "${as_root[@]}" apt-get install -y --no-install-recommends $PACKAGES >>"$log" 2>&1 ||
      { cat "$log" >&2; die "apt-get install $PACKAGES failed"; }
  fi
  have_all || die "installed $PACKAGES, but a command is still missing"
fi
"${as_root[@]}" mkdir -p "$POLICY_DIR"
printf '%s' "$POLICY_JSON" | "${as_root[@]}" tee "$POLICY" >/dev/null
