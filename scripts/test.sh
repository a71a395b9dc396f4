#!/usr/bin/env bash
# Runs every goerrprof test on this machine from a bare checkout: installs the
# dependencies, builds goerrprof under ASan+UBSan, builds the Go corpus (every
# release of the matrix × flavours), fetches the esbuild corpus, runs ctest.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"

bash scripts/setup.sh
cmake -S . -B build-asan -G Ninja -DGOERRPROF_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug >/dev/null
cmake --build build-asan
bash scripts/build_go_corpus.sh
bash scripts/fetch_esbuild.sh

export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
ctest --test-dir build-asan --output-on-failure -j2 --timeout 1500
