#!/usr/bin/env bash
# Python tools for the tests that run third-party parts: the TAXII client check
# (tests/taxii/client_check.py: taxii2-client, stix2, stix2-validator), the metrics scrape
# (tests/metrics/scrape.py: prometheus-client's OpenMetrics parser) and tests/deploy.rs
# (kubernetes-validate for the Kubernetes manifests, PyYAML for the compose file); at pinned
# versions, with their dependencies pinned too, in a virtualenv at target/pyenv. Idempotent: a
# second run with the same pins only
# checks the imports. Quiet unless it fails; the last (only) stdout line is the python to run
# the check with (the test runner exports it as INTELMESH_PYTHON).
#
# Without a working `python3 -m venv` (Debian without python3-venv: no ensurepip), the
# packages go to target/pylib with `python3 -m pip install --target`, and the printed python
# is target/pylib/python, a wrapper that runs python3 with PYTHONPATH set to that folder.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON3="${PYTHON3:-python3}"
REQUIREMENTS="taxii2-client==2.3.0
stix2==3.0.2
stix2-validator==3.3.2
stix2-patterns==2.1.2
kubernetes-validate==1.37.0
PyYAML==6.0.4
importlib-resources==7.1.0
packaging==26.4
antlr4-python3-runtime==4.13.2
arrow==1.4.0
attrs==26.1.0
certifi==2026.10.19.post1
charset-normalizer==3.5.3
colorama==0.4.6
cpe==1.3.1
fqdn==1.6.0
idna==3.20
isoduration==20.11.0
jsonpointer==3.12
jsonschema==4.26.0
jsonschema-specifications==2025.9.1
lark==1.3.1
prometheus-client==0.26.0
python-dateutil==4.0.0
pytz==2026.6
referencing==0.37.0
requests==2.34.2
rfc3339-validator==0.1.4
rfc3986-validator==0.1.1
rfc3987-syntax==1.1.0
rpds-py==2026.9.1
simplejson==4.3.0
six==1.17.0
typing_extensions==4.16.0
tzdata==2026.6
uri-template==1.3.0
urllib3==2.8.0
webcolors==25.10.0"
IMPORTS="import taxii2client.v21, stix2, stix2validator, requests, prometheus_client.openmetrics.parser, kubernetes_validate, yaml"

log="$(mktemp)"
trap 'rm -f "$log"' EXIT
die() {
  echo "python-deps: $*" >&2
  if [ -s "$log" ]; then cat "$log" >&2; fi
  exit 1
}

command -v "$PYTHON3" >/dev/null 2>&1 || die "$PYTHON3 not found (install python3)"
mkdir -p target
# Two test runs at once must not build the same environment together.
if command -v flock >/dev/null 2>&1; then
  exec 9>target/.python-deps.lock
  flock 9
fi

# Installs the pins with the given pip command ("... -m pip install [--target DIR]"), then
# writes STAMP, which marks them as installed.
install_pins() {
  local stamp="$1"
  shift
  local reqs
  reqs="$(dirname "$stamp")/requirements.txt"
  printf '%s\n' "$REQUIREMENTS" >"$reqs"
  "$@" --quiet --disable-pip-version-check --no-input --no-deps -r "$reqs" >>"$log" 2>&1 ||
    die "pip install failed"
  printf '%s\n' "$REQUIREMENTS" >"$stamp"
}

up_to_date() { # stamp python
  [ -f "$1" ] && [ "$(cat "$1")" = "$REQUIREMENTS" ] && "$2" -c "$IMPORTS" >/dev/null 2>&1
}

venv=target/pyenv
venv_python="$PWD/$venv/bin/python"
stamp="$venv/.intelmesh-pins"
if up_to_date "$stamp" "$venv_python"; then
  echo "$venv_python"
  exit 0
fi
if [ ! -x "$venv_python" ] || ! "$venv_python" -m pip --version >/dev/null 2>&1; then
  rm -rf "$venv"
  "$PYTHON3" -m venv "$venv" >>"$log" 2>&1 || rm -rf "$venv"
fi
if [ -x "$venv_python" ]; then
  install_pins "$stamp" "$venv_python" -m pip install
  up_to_date "$stamp" "$venv_python" || die "installed, but the imports fail: $IMPORTS"
  echo "$venv_python"
  exit 0
fi

# Fallback: no venv (ensurepip missing); the system pip installs into target/pylib.
lib=target/pylib
wrapper="$PWD/$lib/python"
stamp="$lib/.intelmesh-pins"
mkdir -p "$lib"
cat >"$wrapper" <<EOF
#!/bin/sh
PYTHONPATH="$PWD/$lib/site\${PYTHONPATH:+:\$PYTHONPATH}" exec "$(command -v "$PYTHON3")" "\$@"
EOF
chmod +x "$wrapper"
if ! up_to_date "$stamp" "$wrapper"; then
  "$PYTHON3" -m pip --version >/dev/null 2>&1 ||
    die "neither 'python3 -m venv' nor 'python3 -m pip' works: install python3-venv (or python3-pip)"
  rm -rf "$lib/site" "$stamp"
  install_pins "$stamp" "$PYTHON3" -m pip install --target "$PWD/$lib/site"
  up_to_date "$stamp" "$wrapper" || die "installed into $lib, but the imports fail: $IMPORTS"
fi
echo "$wrapper"
