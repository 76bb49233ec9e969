#!/usr/bin/env bash
# Builds and runs fuzz targets under AFL++ on the stable toolchain:
#   scripts/fuzz.sh TARGET|all [SECONDS] [EXECUTIONS]
# Each target runs until SECONDS (default 1800) or EXECUTIONS (default 10,000,000), whichever
# comes first, from its seeds (made by intelmesh-fuzz-seeds from the node's own entries, the
# deploy configs and ../shared) plus the corpus kept in fuzz/corpus/TARGET. Afterwards the grown
# corpus is minimized back into fuzz/corpus/TARGET, crash and hang inputs are copied to
# fuzz/crashes/TARGET (replayed by `cargo test -p intelmesh-fuzz`), and one line of figures is
# appended to fuzz/runs.tsv.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

targets_all="frame entry payload indicator config roster stix misp warninglist csv text taxii_query taxii_envelope"
target=${1:-}
seconds=${2:-1800}
executions=${3:-10000000}
if [[ -z "$target" ]]; then
    echo "usage: scripts/fuzz.sh TARGET|all [SECONDS] [EXECUTIONS]; targets: $targets_all" >&2
    exit 2
fi
if [[ "$target" == all ]]; then
    for t in $targets_all; do "$0" "$t" "$seconds" "$executions"; done
    exit 0
fi
if [[ " $targets_all " != *" $target "* ]]; then
    echo "unknown target $target; targets: $targets_all" >&2
    exit 2
fi

if ! command -v cargo-afl >/dev/null; then
    cargo install cargo-afl --locked
fi
# Builds AFL++ once per toolchain; says so (and fails) when it is already built.
cargo afl config --build >/dev/null 2>&1 || true
(cd fuzz/afl && cargo afl build --release)
runner="$repo/fuzz/afl/target/release/intelmesh-fuzz-afl"

work=$(mktemp -d "${TMPDIR:-/tmp}/intelmesh-fuzz-$target.XXXXXX")
trap 'rm -rf "$work"' EXIT
shared_arg=()
[[ -d ../shared ]] && shared_arg=(../shared)
cargo run -q --release -p intelmesh-fuzz --bin intelmesh-fuzz-seeds -- "$target" "$work/in" "${shared_arg[@]}"
mkdir -p "fuzz/corpus/$target" "fuzz/crashes/$target"
cp -n "fuzz/corpus/$target"/* "$work/in/" 2>/dev/null || true

export AFL_SKIP_CPUFREQ=1 AFL_NO_UI=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 AFL_NO_AFFINITY=1
cargo afl fuzz -i "$work/in" -o "$work/out" -V "$seconds" -E "$executions" -- "$runner" "$target" \
    > "$work/afl.log" 2>&1 || { tail -30 "$work/afl.log" >&2; exit 1; }

out="$work/out/default"
stat() { awk -F' *: *' -v k="$1" '$1 == k { print $2 }' "$out/fuzzer_stats"; }
for kind in crashes hangs; do
    for f in "$out/$kind"/id*; do
        if [[ -e "$f" ]]; then
            cp "$f" "fuzz/crashes/$target/$kind-$(sha256sum "$f" | cut -c1-16)"
        fi
    done
done
rm -rf "$work/min"
# The minimized queue covers what the kept corpus covered (it started from it): it replaces it,
# each file named by its content so runs never collide.
# `cargo afl cmin` runs afl-cmin.py, which records no coverage from a persistent-mode Rust
# target here (0 tuples); the awk version that AFL++ ships beside it works.
afl_bin=$(ls -d "$HOME"/.local/share/afl.rs/rustc-"$(rustc --version | cut -d' ' -f2)"-*/afl.rs-*/afl/bin | tail -1)
if AFL_PATH="$afl_bin" PATH="$afl_bin:$PATH" "$afl_bin/afl-cmin.awk" -i "$out/queue" -o "$work/min" \
    -- "$runner" "$target" > "$work/cmin.log" 2>&1 && compgen -G "$work/min/*" >/dev/null; then
    rm -f "fuzz/corpus/$target"/*
    for f in "$work/min"/*; do
        cp "$f" "fuzz/corpus/$target/$(sha256sum "$f" | cut -c1-16)"
    done
else
    echo "corpus minimization failed (see below); the kept corpus is unchanged" >&2
    tail -5 "$work/cmin.log" >&2
fi

line=$(printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s' "$(date -u +%FT%TZ)" "$target" "$(stat execs_done)" \
    "$(stat execs_per_sec)" "$(stat corpus_count)" "$(stat saved_crashes)" "$(stat saved_hangs)" \
    "$(stat run_time)")
[[ -f fuzz/runs.tsv ]] || printf 'date\ttarget\texecutions\texecs_per_sec\tpaths\tcrashes\thangs\tseconds\n' > fuzz/runs.tsv
echo "$line" >> fuzz/runs.tsv
echo "$line"
