#!/usr/bin/env bash
# Builds the test OpenTelemetry Collector (tests/agent/otelcol: the real OTLP
# receiver + a file exporter for profiles) into <repo>/.cache/otelcol/otelcol,
# so the agent tests can export OTLP profiles to a real collector and read
# back what it received. Modules come from the Go module proxy (130 modules,
# about 115 MB of zips into an empty module cache; about a minute in all).
# Skipped when the binary is newer than main.go, go.mod and go.sum.
# Prints one line; on failure, the end of the go log on stderr and status 1.
#
# usage: build_otelcol.sh
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
src=tests/agent/otelcol
out=.cache/otelcol/otelcol

if [ -x "$out" ] && [ "$out" -nt $src/main.go ] && [ "$out" -nt $src/go.mod ] && [ "$out" -nt $src/go.sum ]; then
  echo "build_otelcol: $out up to date"
  exit 0
fi

start=$SECONDS
mkdir -p "$(dirname "$out")"
rm -f "$out.tmp"
# -s -w: no debug info, the tests only run it; CGO_ENABLED=0: no C toolchain.
# The go command's output (a "go: downloading" line per module on a fresh
# cache) goes to $out.log, shown only on failure.
if ! (cd $src && env GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS="-mod=readonly -buildvcs=false" \
  nice /usr/local/go/bin/go build -trimpath -ldflags="-s -w" -o "$repo/$out.tmp" .) >"$out.log" 2>&1; then
  rm -f "$out.tmp"
  echo "build_otelcol: FAILED (log: $out.log)" >&2
  tail -n 20 "$out.log" | sed 's/^/    /' >&2
  exit 1
fi
mv "$out.tmp" "$out"
rm -f "$out.log"
echo "build_otelcol: built $out ($(($(stat -c %s "$out") / 1048576)) MiB) in $((SECONDS - start))s"
