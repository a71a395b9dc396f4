#!/usr/bin/env bash
# bench/snapshot: `goerrprof goroutines` snapshot time for 1 000, 10 000 and
# 100 000 parked goroutines vs the target's own runtime.Stack(all) and
# debug=2 goroutine profile, and the scheduling delay the target saw during
# each; measured side by side in one run. Needs ptrace rights on the target
# (same user, or root).
# Usage: bench/snapshot/run.sh [N...]
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$repo"
build=build-bench
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" --target goerrprof snapshot_bench >/dev/null
bash scripts/build_go_corpus.sh >/dev/null
newest=$(awk -F'\t' '$2 == "parked" && $3 == "default" {print $1}' .cache/corpus/manifest.tsv |
         sed 's/^go//' | sort -V | tail -1)
parked=$(awk -F'\t' -v v="go$newest" '$1 == v && $2 == "parked" && $3 == "default" {print $4}' \
         .cache/corpus/manifest.tsv)
echo "target: $parked (go$newest); $(nproc) CPUs"
GOERRPROF="$build/goerrprof" timeout --foreground -k 10 1800 "$build/bench/snapshot_bench" \
  "$parked" "$@"
