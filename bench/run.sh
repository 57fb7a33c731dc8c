#!/usr/bin/env bash
# Benchmarks, reported as ratios to baselines measured in the same run. Builds in release mode.
# Usage: bench/run.sh [extra flags for `huitong bench log`, e.g. --proof-sizes 10000,1000000,10000000]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -p huitong
out=bench/results.md
{
  echo "# Huitong benchmarks"
  echo
  echo "Machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB, $(uname -sr); run $(date -u +%Y-%m-%dT%H:%MZ)"
  echo
  target/release/huitong bench log --dir "${BENCH_DIR:-target/bench-scratch}" "$@"
} | tee "$out"
echo "written to $out"
