#!/usr/bin/env bash
# Proves that the corpus works on a machine that has never fetched a Go
# release: with an empty private GOMODCACHE and GOCACHE (temporary, removed
# afterwards) GOTOOLCHAIN=go<ver> must download the release from the module
# proxy (`go: downloading go<ver> (...)` on stderr), build a corpus program
# with it, and goerrprof must read that release back from the binary. The
# machine's own Go caches are neither used nor touched.
#
# usage: check_fresh_go.sh GOERRPROF [VERSION]
#   VERSION: a proxy release of testdata/go_binaries/versions.txt (default:
#   the newest). GOERRPROF_FRESH_GO_TIMEOUT bounds the download and build
#   (seconds, default 120; it takes about 20 s). Prints one line; a failure
#   is one line on stderr and exit status 1.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
src=$repo/testdata/go_binaries
program=parktrace # the corpus program with the fewest packages to compile

fail() {
  echo "check_fresh_go: FAILED: $*" >&2
  exit 1
}
[ $# -ge 1 ] && [ $# -le 2 ] || { echo "usage: $0 GOERRPROF [VERSION]" >&2; exit 2; }
goerrprof=$1
proxy_versions=$(echo $(grep -v '^#' "$src/versions.txt" | grep -vx '1\.19'))
version=${2:-$(echo $proxy_versions | tr ' ' '\n' | tail -n 1)}
[[ " $proxy_versions " == *" ${version#go} "* ]] ||
  fail "$version is not a proxy release of $src/versions.txt ($proxy_versions)"
version=${version#go}
limit=${GOERRPROF_FRESH_GO_TIMEOUT:-120}
go=$(command -v go || echo /usr/local/go/bin/go) # >= go1.21, as build_go_corpus.sh's
[ -x "$goerrprof" ] || fail "no goerrprof at $goerrprof (build it first)"
[ -x "$go" ] || fail "no go command (need go >= 1.21 on PATH or in /usr/local/go)"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/goerrprof-fresh-go.XXXXXX")
# The module cache is read-only by design: make it removable first.
trap 'chmod -R u+w "$tmp" 2>/dev/null; rm -rf "$tmp"' EXIT

start=$SECONDS
# GOENV=off and a private GOPATH: no user setting and nothing of the
# machine's caches takes part. GOPROXY/GOSUMDB pass through (mirrors).
rc=0
(cd "$src" && timeout --kill-after=10 "$limit" env GOENV=off GOPATH="$tmp/gopath" \
  GOMODCACHE="$tmp/mod" GOCACHE="$tmp/cache" GOTOOLCHAIN="go$version" CGO_ENABLED=0 \
  GOFLAGS="-mod=mod -buildvcs=false" "$go" build -o "$tmp/$program" "./$program") \
  >"$tmp/build.log" 2>&1 || rc=$?
[ $rc -ne 124 ] && [ $rc -ne 137 ] ||
  fail "go$version: fetching the release and building $program took over ${limit}s" \
    "(last: $(tail -n 1 "$tmp/build.log"))"
[ $rc -eq 0 ] ||
  fail "go$version: building $program with an empty module cache failed: $(tail -n 1 "$tmp/build.log")"
grep -q "^go: downloading go$version (" "$tmp/build.log" ||
  fail "go$version: no 'go: downloading go$version' on stderr: the release was not fetched" \
    "($(head -n 1 "$tmp/build.log"))"
compgen -G "$tmp/mod/golang.org/toolchain@v0.0.1-go$version.*" >/dev/null ||
  fail "go$version: the release is not in the private module cache $tmp/mod"
got=$("$goerrprof" inspect --json "$tmp/$program" 2>"$tmp/inspect.err" | jq -r .go_version) ||
  fail "goerrprof inspect $program failed: $(tail -n 1 "$tmp/inspect.err")"
[ "$got" = "go$version" ] || fail "goerrprof inspect reads '$got' from $program built by go$version"
echo "check_fresh_go: go$version fetched into an empty module cache, $program built with it," \
  "goerrprof reads $got, in $((SECONDS - start))s"
