#!/usr/bin/env bash
# bench/park: what `record --goroutines` park tracing costs a park-heavy Go
# program (parktrace -pingpong: unbuffered channel round trips), side by
# side in one run: untraced, empty uprobes at the three tracing sites, under
# ParkTracer, and the raw uprobe trap (overheadtarget, as bench/overhead).
# Reports parks/s, cost per park (us) and that cost over one raw trap.
# Then sampled waits (record --goroutines=sample) beside tracing with
# --mix goroutines (10 000) waiting meanwhile: the ping-pong's slowdown
# under WaitSampler at --hz (19), and each (function, wait reason)'s share
# of blocked time in the sampled and the traced profile.
# Needs root (BPF, uprobes).
# Usage: bench/park/run.sh [--n ROUND_TRIPS] [--m TRAP_CALLS] [--reps R] [--mix K] [--hz HZ]
#                          [--trace-n ROUND_TRIPS]
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$repo"
build=${GOERRPROF_BENCH_BUILD:-build-bench}
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" --target park_bench >/dev/null
bash scripts/build_go_corpus.sh >/dev/null
(cd testdata/go_binaries && GOTOOLCHAIN=local go build -o "$repo/$build/bench/overheadtarget" ./overheadtarget)
newest=$(awk -F'\t' '$2 == "parktrace" && $3 == "default" {print $1}' .cache/corpus/manifest.tsv |
         sed 's/^go//' | sort -V | tail -1)
parktrace=$(awk -F'\t' -v v="go$newest" '$1 == v && $2 == "parktrace" && $3 == "default" {print $4}' \
            .cache/corpus/manifest.tsv)
echo "target: $parktrace (go$newest); $(nproc) CPUs"
timeout --foreground -k 10 1800 "$build/bench/park_bench" --parktrace "$parktrace" \
  --target "$build/bench/overheadtarget" "$@"
