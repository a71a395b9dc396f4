#!/usr/bin/env bash
# The main job on the bundled demo target: installs dependencies, builds
# goerrprof and the demo Go program, records the demo's errors for a few
# seconds and shows the profile with `go tool pprof`.
# Usage: scripts/demo.sh [--pid PID] [--duration 5s]   (--pid: your process)
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"
pid="" duration="5s"
while [ $# -gt 0 ]; do
  case "$1" in
    --pid) pid="$2"; shift 2 ;;
    --duration) duration="$2"; shift 2 ;;
    *) echo "usage: $0 [--pid PID] [--duration D]" >&2; exit 2 ;;
  esac
done

bash scripts/setup.sh >/dev/null
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build >/dev/null
export GOTOOLCHAIN=local
go=$(command -v go || echo /usr/local/go/bin/go) # PATH may lack /usr/local/go/bin
[ -x "$go" ] || { echo "demo: FAILED: no go command on PATH or in /usr/local/go/bin" >&2; exit 1; }
# Built on first use since Go 1.25 (~40 s with a cold cache): before the demo
# starts, with its errors shown, rather than silently during the output.
"$go" tool -n pprof >/dev/null
out="$repo/.cache/demo/errors.pb.gz"
mkdir -p "$(dirname "$out")"

demo_pid=""
cleanup() { if [ -n "$demo_pid" ]; then kill "$demo_pid" 2>/dev/null || true; fi; }
trap cleanup EXIT
if [ -z "$pid" ]; then
  demo="$repo/.cache/demo/demo"
  (cd testdata/go_binaries && "$go" build -o "$demo" ./demo)
  exec 3< <("$demo")          # prints "ready <pid>", then keeps creating errors
  read -r ready pid <&3
  demo_pid="$pid"
  echo "demo target started: $ready $pid"
fi

build/goerrprof inspect --pid "$pid" | sed -n '1,2p;/^functions/p;/^error types/p'
build/goerrprof record --pid "$pid" --duration "$duration" -o "$out"
echo
echo "== go tool pprof -top $out"
"$go" tool pprof -top -nodecount=15 "$out" 2>/dev/null
echo
echo "== errors by type (go tool pprof -tags)"
"$go" tool pprof -tags -tagshow='^error\.type$' "$out" 2>/dev/null
echo "== only *fs.PathError (go tool pprof -traces -tagfocus='error.type=^\\*fs\\.PathError\$')"
"$go" tool pprof -traces -tagfocus='error.type=^\*fs\.PathError$' "$out" 2>/dev/null | sed -n '/-----/,$p' | head -20
echo
echo "== errors by the creating goroutine: its pprof label 'service' and its go statement"
"$go" tool pprof -tags -tagshow='^service$|^goroutine\.created_by$' "$out" 2>/dev/null
echo
echo "== every goroutine of the target, read from its memory (goerrprof goroutines --text)"
build/goerrprof goroutines --pid "$pid" --text 2>/dev/null | head -24
