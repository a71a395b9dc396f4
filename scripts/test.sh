#!/usr/bin/env bash
# Runs every goerrprof test on this machine from a bare checkout: installs the
# dependencies, builds goerrprof under ASan+UBSan, checks that a Go release
# downloads into an empty module cache, builds the Go corpus (every release
# of the matrix × flavours), fetches the esbuild corpus, runs ctest, then
# the kernel matrix under QEMU.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"

bash scripts/setup.sh
# The tests run /usr/local/go/bin/go, and its GOTOOLCHAIN fetches the
# corpus's releases: Go >= 1.21 there (no Debian 12 package has one).
gover=$(GOTOOLCHAIN=local /usr/local/go/bin/go env GOVERSION 2>/dev/null || true)
if [ -z "$gover" ] || [ "$(printf '%s\n' go1.21 "$gover" | sort -V | head -n 1)" != go1.21 ]; then
  echo "test.sh: FAILED: need Go >= 1.21 in /usr/local/go (found: ${gover:-none}); see https://go.dev/doc/install" >&2
  exit 1
fi
cmake -S . -B build-asan -G Ninja -DGOERRPROF_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug >/dev/null
cmake --build build-asan
# A fresh machine fetches every Go release: prove that path on each run with
# one release downloaded into an empty private module cache (~20 s).
bash scripts/check_fresh_go.sh build-asan/goerrprof
bash scripts/build_go_corpus.sh
bash scripts/fetch_esbuild.sh
# The agent's OTLP tests push to a real OpenTelemetry Collector, built from
# the module proxy's collector modules (~1 min on an empty module cache).
bash scripts/build_otelcol.sh
# `go tool pprof` is not shipped prebuilt (Go 1.25+): with a cold GOCACHE
# build it once here (~40 s), not in the first tests that run it under
# their timeouts.
GOTOOLCHAIN=local /usr/local/go/bin/go tool -n pprof >/dev/null ||
  { echo "test.sh: FAILED: cannot build go tool pprof (GOTOOLCHAIN=local /usr/local/go/bin/go)" >&2; exit 1; }

export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
ctest --test-dir build-asan --output-on-failure -j2 --timeout 1500

# Fuzzing smoke: each libFuzzer harness (tests/fuzz, clang, ASan + UBSan)
# for 60 s, two at a time, from seeds written from the Go corpus.
bash scripts/fuzz.sh 60

# The kernel matrix: Debian's kernels from 5.10 to 7.x booted under QEMU, each
# running record, record --goroutines, record -- CMD, record --max-overhead,
# goroutines and doctor
# end to end; every kernel from the minimum supported one up must pass
# (~3 min for 7 kernels). A release build: ASan under TCG is too slow.
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build --target goerrprof record_test record_goroutines_test ci_record_test \
  goroutines_test park_test record_cli_test agent_test soak_test
bash scripts/kernel_matrix.sh --jobs 2 --build build

# The 2-minute soak on the release build (ASan's quarantine would hide a
# leak or fake one): a loopback HTTP service recorded throughout, responses
# and counts exact, the recorder's RSS flat after warm-up.
bash scripts/soak.sh 2 --build build
