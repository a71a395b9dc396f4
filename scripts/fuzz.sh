#!/usr/bin/env bash
# Builds the libFuzzer harnesses (tests/fuzz: clang, ASan + UBSan) in
# build-fuzz if needed, writes their seeds from the Go corpus, and runs each
# harness for SECONDS (default 60), two at a time. Fails on any crash, leak,
# undefined behaviour, slow input (over 20 s) or memory blow-up (over 2 GB);
# the input that did it is kept under build-fuzz/fuzz-work/artifacts/.
# Prints each harness's executions and the total.
#
# usage: fuzz.sh [SECONDS] [HARNESS...]   (harnesses: elf patch profile record goroutines)
# env:   GOERRPROF_FUZZ_BUILD (build dir), GOERRPROF_FUZZ_JOBS (parallel runs, 2)
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
secs=${1:-60}
[ $# -gt 0 ] && shift
harnesses=("$@")
[ ${#harnesses[@]} -gt 0 ] || harnesses=(record profile elf patch goroutines)
build=${GOERRPROF_FUZZ_BUILD:-$repo/build-fuzz}
jobs=${GOERRPROF_FUZZ_JOBS:-2}
work=$build/fuzz-work

if [ ! -f "$build/build.ninja" ]; then
  CC=clang CXX=clang++ cmake -S "$repo" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DGOERRPROF_FUZZ=ON >/dev/null
fi
cmake --build "$build" --target fuzzers -- -j"$jobs"

rm -rf "$work/seeds"
mkdir -p "$work/seeds"
"$build/fuzz/fuzz_seeds" "$work/seeds"

export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:allocator_may_return_null=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1

# One harness: its corpus grows across runs; the seeds are read each time.
# The binary harnesses get a dictionary of the magics, names and extreme
# varints the readers compare against (with it, the elf harness re-found
# the pc-value overflow of issue 12 in 30 s; without, 7 M runs did not).
run_one() {
  local name=$1 extra=()
  case $name in elf | patch) extra=(-dict="$repo/tests/fuzz/go_binary.dict") ;; esac
  mkdir -p "$work/corpus/$name" "$work/artifacts/$name"
  nice -n 10 "$build/fuzz/${name}_fuzzer" -max_total_time="$secs" -print_final_stats=1 \
    -timeout=20 -rss_limit_mb=2048 -malloc_limit_mb=2048 -len_control=0 "${extra[@]}" \
    -artifact_prefix="$work/artifacts/$name/" "$work/corpus/$name" "$work/seeds/$name" \
    >"$work/$name.log" 2>&1
}

declare -A pid_of
failed=()
running=0
for name in "${harnesses[@]}"; do
  [ -x "$build/fuzz/${name}_fuzzer" ] || { echo "fuzz.sh: no harness $name" >&2; exit 2; }
  if [ "$running" -ge "$jobs" ]; then
    wait -n || true
    running=$((running - 1))
  fi
  run_one "$name" &
  pid_of[$name]=$!
  running=$((running + 1))
done

total=0
for name in "${harnesses[@]}"; do
  rc=0
  wait "${pid_of[$name]}" || rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/$name.log" | tail -n 1)
  execs=${execs:-0}
  total=$((total + execs))
  if [ "$rc" -ne 0 ]; then
    failed+=("$name")
    printf 'fuzz %-11s FAILED (exit %d) after %d executions; log: %s\n' "$name" "$rc" "$execs" \
      "$work/$name.log"
    grep -E '^(==[0-9]+==ERROR|SUMMARY|.*runtime error|artifact_prefix|Test unit written)' \
      "$work/$name.log" | head -n 8 || true
  else
    printf 'fuzz %-11s %12d executions in %ss\n' "$name" "$execs" "$secs"
  fi
done
printf 'fuzz total       %12d executions\n' "$total"
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz.sh: FAILED: ${failed[*]}" >&2
  exit 1
fi
