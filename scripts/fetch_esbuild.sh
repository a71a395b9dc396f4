#!/usr/bin/env bash
# Fetches the esbuild releases pinned in testdata/go_binaries/esbuild_versions.txt
# (stripped Go binaries built by various Go releases) from npm into
#   <repo>/.cache/esbuild/<version>/esbuild   and   .cache/esbuild/manifest.tsv
# Already fetched versions are skipped.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
list=$repo/testdata/go_binaries/esbuild_versions.txt
cache=$repo/.cache/esbuild
mkdir -p "$cache"
go=$(command -v go || echo /usr/local/go/bin/go) # PATH may lack /usr/local/go/bin

# built_by BIN GOVER: true if BIN was built by GOVER. `go version` needs
# .go.buildinfo; without it, look for the runtime.buildVersion string.
built_by() {
  local got
  got=$("$go" version "$1" 2>&1 || true)
  if [[ $got =~ :\ (go1[.0-9]+)$ ]]; then
    [ "${BASH_REMATCH[1]}" = "$2" ]
  else
    grep -aqx -e "$2" <(strings -n 6 "$1")
  fi
}

npm_checked=""
fetch() { # fetch VERSION DEST
  local ver=$1 dest=$2 pkg tmp tgz
  if [ -z "$npm_checked" ]; then
    command -v npm >/dev/null || { echo "fetch_esbuild: npm not installed" >&2; exit 1; }
    npm view esbuild version >/dev/null 2>&1 ||
      { echo "fetch_esbuild: npm registry unreachable (npm view esbuild failed)" >&2; exit 1; }
    npm_checked=1
  fi
  # The linux binary moved from esbuild-linux-64 to @esbuild/linux-x64 in 0.16.
  if [ "$(printf '%s\n' "$ver" 0.16.0 | sort -V | head -n 1)" = 0.16.0 ]; then
    pkg=@esbuild/linux-x64
  else
    pkg=esbuild-linux-64
  fi
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' RETURN
  tgz=$(cd "$tmp" && npm pack --silent "$pkg@$ver" 2>"$tmp/err" | tail -n 1) ||
    { echo "fetch_esbuild: npm pack $pkg@$ver failed: $(tail -n 1 "$tmp/err")" >&2; exit 1; }
  tar -xzf "$tmp/$tgz" -C "$tmp" package/bin/esbuild
  mkdir -p "$(dirname "$dest")"
  mv "$tmp/package/bin/esbuild" "$dest"
}

rows=()
while read -r ver gover _; do
  case $ver in '' | '#'*) continue ;; esac
  bin=$cache/$ver/esbuild
  [ -x "$bin" ] || fetch "$ver" "$bin"
  built_by "$bin" "$gover" || { echo "fetch_esbuild: $bin was not built by $gover" >&2; exit 1; }
  rows+=("$gover	$ver	$bin")
done <"$list"

{
  printf 'go_version\tesbuild_version\tpath\n'
  printf '%s\n' "${rows[@]}"
} >"$cache/manifest.tsv"
echo "fetch_esbuild: ${#rows[@]} esbuild binaries -> $cache/manifest.tsv"
