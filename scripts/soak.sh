#!/usr/bin/env bash
# The soak: scripts/soak.sh [MINUTES] (default 2) [--build DIR] (default build).
# Builds testdata/go_binaries/soaksvc with the machine's Go and runs
# tests/soak_test (tests/e2e/soak_test.cc): a loopback HTTP service under a
# seeded load, recorded throughout with errors and goroutine waits while a
# second recorder attaches and detaches every round; responses compared
# byte for byte with an unprofiled twin, counts with the service's own,
# the recorder's RSS watched. Needs root (BPF).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
minutes=2
build=build
while [ $# -gt 0 ]; do
  case $1 in
    --build) build=$2; shift 2 ;;
    [0-9]*) minutes=$1; shift ;;
    *) echo "usage: $0 [MINUTES] [--build DIR]" >&2; exit 2 ;;
  esac
done
cd "$repo"
[ -x "$build/tests/soak_test" ] && [ -x "$build/goerrprof" ] ||
  cmake --build "$build" --target goerrprof soak_test
out=$repo/.cache/soak
mkdir -p "$out"
(cd testdata/go_binaries && GOTOOLCHAIN=local /usr/local/go/bin/go build -o "$out/soaksvc" ./soaksvc)
GOERRPROF_SOAKSVC=$out/soaksvc GOERRPROF_SOAK_SECONDS=$((minutes * 60)) \
  TEST_TMPDIR=$(mktemp -d) "$build/tests/soak_test" --gtest_brief=1
