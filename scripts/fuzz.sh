#!/usr/bin/env bash
# Builds and runs fuzz targets under AFL++ on the stable toolchain:
#   [FUZZ_JOBS=N] scripts/fuzz.sh TARGET|all [SECONDS] [EXECUTIONS]
# Each target runs until SECONDS (default 1800) or EXECUTIONS (default 10,000,000, counted over
# all jobs), whichever comes first, on FUZZ_JOBS cores (default 1; with N, one main AFL++
# instance and N-1 secondaries share their finds through one output directory), from its seeds
# (made by intelmesh-fuzz-seeds from the node's own entries, the deploy configs and ../shared)
# plus the corpus kept in fuzz/corpus/TARGET. Afterwards the grown corpus is minimized back
# into fuzz/corpus/TARGET, crash and hang inputs are copied to
# fuzz/crashes/TARGET (replayed by `cargo test -p intelmesh-fuzz`), and one line of figures is
# appended to fuzz/runs.tsv.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

# The targets, in the order of intelmesh_fuzz::TARGETS (fuzz/src/lib.rs), their one list.
targets_all=$(sed -n 's/^    ("\([a-z_]*\)", .*),$/\1/p' fuzz/src/lib.rs | tr '\n' ' ')
target=${1:-}
seconds=${2:-1800}
executions=${3:-10000000}
jobs=${FUZZ_JOBS:-1}
if ! [[ "$jobs" =~ ^[1-9][0-9]*$ ]]; then
    echo "FUZZ_JOBS must be a whole number of at least 1, not '$jobs'" >&2
    exit 2
fi
if [[ -z "$target" ]]; then
    echo "usage: [FUZZ_JOBS=N] scripts/fuzz.sh TARGET|all [SECONDS] [EXECUTIONS]; targets: $targets_all" >&2
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
# Each instance stops after SECONDS or its share of the executions.
per_job=$(( (executions + jobs - 1) / jobs ))
fuzz() { cargo afl fuzz -i "$work/in" -o "$work/out" -V "$seconds" -E "$per_job" "$@" -- "$runner" "$target"; }
secondaries=()
if (( jobs > 1 )); then
    for j in $(seq 2 "$jobs"); do
        fuzz -S "s$j" > "$work/afl-s$j.log" 2>&1 &
        secondaries+=($!)
    done
    main_args=(-M main)
else
    main_args=()
fi
fuzz "${main_args[@]}" > "$work/afl.log" 2>&1 || { tail -30 "$work/afl.log" >&2; kill "${secondaries[@]}" 2>/dev/null || true; exit 1; }
for pid in "${secondaries[@]}"; do wait "$pid" || true; done

stats() { cat "$work"/out/*/fuzzer_stats; }
stat_sum() { stats | awk -F' *: *' -v k="$1" '$1 == k { s += $2 } END { printf "%.2f\n", s }' | sed 's/\.00$//'; }
stat_max() { stats | awk -F' *: *' -v k="$1" '$1 == k && $2 > m { m = $2 } END { print m + 0 }'; }
for out in "$work"/out/*/; do
    for kind in crashes hangs; do
        for f in "$out/$kind"/id*; do
            if [[ -e "$f" ]]; then
                cp "$f" "fuzz/crashes/$target/$kind-$(sha256sum "$f" | cut -c1-16)"
            fi
        done
    done
done
# The queues of all instances, one directory, each file named by its content.
mkdir -p "$work/queue"
for f in "$work"/out/*/queue/id*; do
    cp "$f" "$work/queue/$(sha256sum "$f" | cut -c1-16)"
done
rm -rf "$work/min"
# The minimized queue covers what the kept corpus covered (it started from it): it replaces it,
# each file named by its content so runs never collide.
# `cargo afl cmin` runs afl-cmin.py, which records no coverage from a persistent-mode Rust
# target here (0 tuples); the awk version that AFL++ ships beside it works.
afl_bin=$(ls -d "$HOME"/.local/share/afl.rs/rustc-"$(rustc --version | cut -d' ' -f2)"-*/afl.rs-*/afl/bin | tail -1)
if AFL_PATH="$afl_bin" PATH="$afl_bin:$PATH" "$afl_bin/afl-cmin.awk" -i "$work/queue" -o "$work/min" \
    -- "$runner" "$target" > "$work/cmin.log" 2>&1 && compgen -G "$work/min/*" >/dev/null; then
    rm -f "fuzz/corpus/$target"/*
    for f in "$work/min"/*; do
        cp "$f" "fuzz/corpus/$target/$(sha256sum "$f" | cut -c1-16)"
    done
else
    echo "corpus minimization failed (see below); the kept corpus is unchanged" >&2
    tail -5 "$work/cmin.log" >&2
fi

line=$(printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s' "$(date -u +%FT%TZ)" "$target" "$(stat_sum execs_done)" \
    "$(stat_sum execs_per_sec)" "$(stat_max corpus_count)" "$(stat_sum saved_crashes)" \
    "$(stat_sum saved_hangs)" "$(stat_sum run_time)")
# `seconds` is summed over the jobs (core-seconds), so executions per second stay per core.
[[ -f fuzz/runs.tsv ]] || printf 'date\ttarget\texecutions\texecs_per_sec\tpaths\tcrashes\thangs\tseconds\n' > fuzz/runs.tsv
echo "$line" >> fuzz/runs.tsv
echo "$line"
