#!/usr/bin/env bash
# Builds and runs every fuzz target of imipd for SECONDS each (default 60), one after
# the other, on the committed seeds (seeds/<target>) plus what earlier runs found
# (corpus/<target>, not committed). Prints one line per target:
#
#   fuzz <target>: <executions> executions, <crashes> crashes
#
# and exits non-zero if any target crashed (panic, abort, timeout or out-of-memory;
# the input is saved under fuzz/artifacts/<target>/ and the end of the log is shown).
# Without a nightly toolchain or cargo-fuzz it says so and exits 0: fuzzing is an
# extra, not a build requirement.
#
# Usage: fuzz/run.sh [SECONDS]   (from anywhere; tests/fuzz_pass.rs calls it with 60 when CI=true)
set -uo pipefail

seconds="${1:-60}"
if ! [[ "$seconds" =~ ^[0-9]+$ ]] || [ "$seconds" -lt 1 ]; then
    echo "usage: $0 SECONDS (a whole number of seconds per target)" >&2
    exit 2
fi
cd "$(dirname "$0")" || exit 2
targets=(lmtp_session inbound_mail apply_itip)

if ! cargo +nightly --version >/dev/null 2>&1; then
    echo "fuzz: skipped, no nightly toolchain (install one with: rustup toolchain install nightly)"
    exit 0
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "fuzz: skipped, cargo-fuzz is not installed (install it with: cargo install cargo-fuzz --locked)"
    exit 0
fi

# The fuzz project keeps its own target folder (instrumented builds must not mix
# with the normal ones). -a: debug assertions (overflow checks) on; -s none: no
# AddressSanitizer, all of imipd is safe Rust and the runs go about twice as far.
unset CARGO_TARGET_DIR
build_flags=(-a -s none)
# One run at a time: runs share the build, the corpus and the logs (and 2 cores).
mkdir -p artifacts
if command -v flock >/dev/null 2>&1; then
    exec 9>artifacts/.run.lock
    if ! flock -n 9; then
        echo "fuzz: another fuzz/run.sh is running; waiting for it to finish"
        flock 9
    fi
fi
logs=artifacts/logs
mkdir -p "$logs"
if ! cargo +nightly fuzz build "${build_flags[@]}" >"$logs/build.log" 2>&1; then
    cat "$logs/build.log" >&2
    echo "fuzz: the fuzz targets do not build" >&2
    exit 1
fi
failed=0
for target in "${targets[@]}"; do
    mkdir -p "corpus/$target"
    log="$logs/$target.log"
    cargo +nightly fuzz run "${build_flags[@]}" "$target" "corpus/$target" "seeds/$target" -- \
        -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=30 \
        -dict="dict/$target.dict" -print_final_stats=1 >"$log" 2>&1
    status=$?
    # libFuzzer's final statistics; if they are missing, the last "#N" status line.
    runs=$(sed -n 's/^stat::number_of_executed_units: *\([0-9]*\).*/\1/p' "$log" | tail -n 1)
    if [ -z "$runs" ]; then
        runs=$(grep -oE '^#[0-9]+' "$log" | tail -n 1 | tr -d '#')
    fi
    crashes=0
    if [ "$status" -ne 0 ] || grep -qE '^==[0-9]+== ERROR: libFuzzer|^SUMMARY: libFuzzer|deadly signal' "$log"; then
        crashes=1
        failed=1
    fi
    echo "fuzz $target: ${runs:-0} executions, $crashes crashes"
    if [ "$crashes" -ne 0 ]; then
        # What went wrong (the panic message, or libFuzzer's verdict) and where the
        # input was saved; the whole log stays in $log.
        {
            echo "---- $target crashed (full log: fuzz/$log):"
            grep -vE '^#[0-9]+' "$log" | grep -m 1 -A 24 -E 'panicked at|ERROR: libFuzzer'
            grep -E 'Test unit written to|^\s+cargo fuzz (run|tmin)' "$log"
            echo "----"
        } >&2
    fi
done
exit "$failed"
