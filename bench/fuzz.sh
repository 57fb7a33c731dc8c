#!/usr/bin/env bash
# Builds the fuzz targets in fuzz/ and runs each for a while with libFuzzer, printing each
# target's executions and coverage (libFuzzer's final stats).
#
#   bench/fuzz.sh [SECONDS] [TARGET...]   each target SECONDS (default 60)
#   bench/fuzz.sh --smoke [TARGET...]     10 s each, as CI runs it; fails on any crash
#   bench/fuzz.sh --build                 build only
#   bench/fuzz.sh --seeds                 rewrite the seed corpus fuzz/corpus/ from the code
#   bench/fuzz.sh --list                  the targets
#
# Works on stable Rust: the targets are built the way `cargo fuzz build -s none` builds them
# (SanitizerCoverage through -C flags, which are stable; no sanitizer, which would need -Z),
# so neither nightly nor cargo-fuzz is needed. `cargo fuzz run -s none <target>` in fuzz/
# works too, for those who have cargo-fuzz.
#
# Each run reads the seeds in fuzz/corpus/<target> and the crash inputs of bugs already fixed
# in fuzz/regressions/<target>, and keeps what it finds in
# fuzz/work/<target> (ignored by git); a crash is written to fuzz/artifacts/<target>/ and
# fails the script. Summary lines, one per target, go to stdout and to fuzz/work/summary.txt:
#   <target> seconds=<n> execs=<n> execs_per_sec=<n> cov=<n> ft=<n> corpus=<n> crash=<no|file>
# Set HUITONG_FUZZ_JOBS=N to run N targets at a time (default 1).
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
fuzz="$root/fuzz"
host="$(rustc -vV | sed -n 's/^host: //p')"
bin_dir="$fuzz/target/$host/release"

# What cargo-fuzz (0.13) passes for `-s none`, plus debug assertions and overflow checks
# (also in fuzz/Cargo.toml's release profile): an overflow is a finding.
export RUSTFLAGS="--cfg fuzzing -Cpasses=sancov-module \
-Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
-Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares \
-Cdebug-assertions -Coverflow-checks"

targets() {
    (cd "$fuzz/fuzz_targets" && ls ./*.rs | sed 's|^\./||; s|\.rs$||')
}

build() {
    # --target keeps the flags off build scripts and proc macros, as cargo-fuzz does.
    (cd "$fuzz" && cargo build --release --locked --target "$host" --bins)
}

seconds=60
mode=run
case "${1:-}" in
--smoke) seconds=10; shift ;;
--build) build; exit 0 ;;
--list) targets; exit 0 ;;
--seeds)
    # Without RUSTFLAGS: the seed writer is an ordinary program.
    rm -rf "$fuzz/corpus"
    (cd "$fuzz" && env -u RUSTFLAGS cargo run --locked --features seeds --bin seeds -- corpus)
    exit 0 ;;
[0-9]*) seconds="$1"; shift ;;
esac
[ "$mode" = run ]

selected=("$@")
if [ "${#selected[@]}" -eq 0 ]; then
    mapfile -t selected < <(targets)
fi

build

mkdir -p "$fuzz/work"
# Per invocation, so that two runs at once do not mix their lines; kept as summary.txt at the end.
summary="$fuzz/work/summary-$$.txt"
: >"$summary"

run_one() {
    local t="$1"
    local work="$fuzz/work/$t" seeds="$fuzz/corpus/$t" artifacts="$fuzz/artifacts/$t"
    local log="$fuzz/work/$t.log"
    mkdir -p "$work" "$artifacts"
    local start end status=0
    start=$(date +%s)
    # -rss_limit_mb and -timeout make a runaway allocation or a hang a finding too.
    # Crash inputs found before (fuzz/regressions/<target>) are replayed first, every run.
    local dirs=("$work" "$seeds")
    [ -d "$fuzz/regressions/$t" ] && dirs+=("$fuzz/regressions/$t")
    "$bin_dir/$t" "${dirs[@]}" \
        -max_total_time="$seconds" -print_final_stats=1 \
        -timeout=10 -rss_limit_mb=2048 -max_len=16384 \
        -artifact_prefix="$artifacts/" >"$log" 2>&1 || status=$?
    end=$(date +%s)
    final_stat() { sed -n "s/^stat::$1: *//p" "$log" | tail -1; }
    local cov ft crash
    # The last status line carries cov and ft ("#123 DONE cov: 456 ft: 789 corp: ...").
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
    ft=$(grep -o 'ft: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
    crash=no
    if [ "$status" -ne 0 ]; then
        crash=$(ls -t "$artifacts" 2>/dev/null | head -1)
        crash="${crash:-exit-$status}"
    fi
    local line
    line="$t seconds=$((end - start)) execs=$(final_stat number_of_executed_units) \
execs_per_sec=$(final_stat average_exec_per_sec) cov=${cov:-0} ft=${ft:-0} \
corpus=$(ls "$work" | wc -l) peak_rss_mb=$(final_stat peak_rss_mb) crash=$crash"
    echo "$line"
    echo "$line" >>"$summary"
    if [ "$status" -ne 0 ]; then
        echo "--- $t failed; the end of its log ($log):" >&2
        tail -40 "$log" >&2
        return 1
    fi
}

jobs_max="${HUITONG_FUZZ_JOBS:-1}"
for t in "${selected[@]}"; do
    if [ ! -x "$bin_dir/$t" ]; then
        echo "no such fuzz target: $t (bench/fuzz.sh --list)" >&2
        exit 2
    fi
    run_one "$t" &
    while [ "$(jobs -rp | wc -l)" -ge "$jobs_max" ]; do
        wait -n || true
    done
done
wait
cp "$summary" "$fuzz/work/summary.txt"
# Every run wrote its line; a failed one says which input.
if [ "$(wc -l <"$summary")" -ne "${#selected[@]}" ] || grep -qv ' crash=no$' "$summary"; then
    echo "fuzzing found a crash; see fuzz/artifacts/ and fuzz/work/*.log" >&2
    exit 1
fi
