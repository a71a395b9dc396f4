#!/usr/bin/env bash
# The main job on the bundled demo target: installs dependencies, builds
# goerrprof and the demo Go program, then runs goerrprof on it.
# Usage: scripts/demo.sh [--pid PID]   (with a PID: that process instead)
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"

bash scripts/setup.sh >/dev/null
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build >/dev/null

if [ "${1:-}" = "--pid" ]; then
  exec build/goerrprof inspect --pid "$2"
fi

demo="$repo/.cache/demo/demo"
mkdir -p "$(dirname "$demo")"
(cd testdata/go_binaries && go build -o "$demo" ./demo)
build/goerrprof inspect "$demo"
