#!/usr/bin/env bash
# Builds the Go test corpus: every program x Go release x flavour, into
#   $GOERRPROF_CORPUS (default <repo>/.cache/corpus)/go<ver>/<prog>-<flavour>
# plus <corpus>/tools/gosym-oracle and <corpus>/manifest.tsv.
# Up-to-date binaries (matching .stamp) are skipped, so re-runs are fast.
#
# usage: build_go_corpus.sh [--versions "1.21.13 1.27.4"] [--programs "errgen demo"]
set -uo pipefail

SCRIPT_VERSION=1 # bump to force a rebuild of everything
repo=$(cd "$(dirname "$0")/.." && pwd)
src=$repo/testdata/go_binaries
corpus=${GOERRPROF_CORPUS:-$repo/.cache/corpus}
debian_go=/usr/lib/go-1.19/bin/go
proxy_go=$(command -v go || echo /usr/local/go/bin/go) # must be >= go1.21 (GOTOOLCHAIN)
oracle_go=/usr/local/go/bin/go

all_versions=$(grep -v '^#' "$src/versions.txt" | tr -s ' \n' ' ')
versions=$all_versions
programs="errgen inlframes demo parked parktrace"
while [ $# -gt 0 ]; do
  case $1 in
    --versions) versions=${2//go/}; shift 2 ;;
    --programs) programs=$2; shift 2 ;;
    *) echo "usage: $0 [--versions \"1.19 1.27.4\"] [--programs \"errgen inlframes demo\"]" >&2; exit 2 ;;
  esac
done
for v in $versions; do
  [[ " $all_versions " == *" $v "* ]] || { echo "unknown version $v (see $src/versions.txt)" >&2; exit 2; }
done

flavours_of() { # demo only needs the plain build
  [ "$1" = parktrace ] && { echo default stripped pie; return; } # no cgo flavour
  if [ "$1" = demo ]; then echo default; else echo default stripped pie cgo; fi
}

# Non-cgo flavours use CGO_ENABLED=0 so they are pure Go and internally
# linked on every release; cgo forces external linking via the tag's file.
flavour_env() {
  case $1 in
    cgo) echo 1 ;;
    *) echo 0 ;;
  esac
}
flavour_flags() {
  case $1 in
    default) ;;
    stripped) echo "-ldflags=-s -w" ;;
    pie) echo "-buildmode=pie" ;;
    cgo) echo "-tags=goerrprof_cgo" ;;
  esac
}

# tree_hash DIR FILE...: content hash of a program's sources.
tree_hash() {
  (cd "$1" && shift && find "$@" -type f \( -name '*.go' -o -name go.mod -o -name go.sum \) |
    LC_ALL=C sort | xargs sha256sum | sha256sum | cut -d' ' -f1)
}

built=0 cached=0 failures=() manifest=()
start=$SECONDS
mkdir -p "$corpus"

# build OUT STAMP DIR PKG GO TOOLCHAIN CGO [FLAGS]: go build unless up to date.
build() {
  local out=$1 stamp=$2 dir=$3 pkg=$4 gocmd=$5 tc=$6 cgo=$7 flags=${8:-}
  if [ -x "$out" ] && [ "$(cat "$out.stamp" 2>/dev/null)" = "$stamp" ]; then
    cached=$((cached + 1)); return 0
  fi
  mkdir -p "$(dirname "$out")"
  local args=(build -o "$out.tmp")
  [ -n "$flags" ] && args+=("$flags")
  if (cd "$dir" && env GOTOOLCHAIN="$tc" CGO_ENABLED="$cgo" GOFLAGS="-mod=mod -buildvcs=false" \
      "$gocmd" "${args[@]}" "$pkg") >"$out.log" 2>&1; then
    mv "$out.tmp" "$out" && echo "$stamp" >"$out.stamp" && rm -f "$out.log"
    built=$((built + 1))
  else
    rm -f "$out.tmp" "$out.stamp"
    failures+=("$out")
    echo "FAILED: $out (log: $out.log)" >&2
    tail -n 5 "$out.log" | sed 's/^/    /' >&2
    return 1
  fi
}

declare -A prog_hash
for p in $programs; do
  [ -d "$src/$p" ] || { echo "unknown program $p" >&2; exit 2; }
  prog_hash[$p]=$(tree_hash "$src" "$p" go.mod)
done

for v in $versions; do
  if [ "$v" = 1.19 ]; then
    gocmd=$debian_go tc=local
    [ -x "$gocmd" ] || { failures+=("go$v: $gocmd missing (install golang-1.19-go, scripts/setup.sh)"); echo "FAILED: ${failures[-1]}" >&2; continue; }
  else
    gocmd=$proxy_go tc=go$v
  fi
  # stdout alone is the label: the first use of a proxy release prints
  # "go: downloading ..." on stderr, which must not end up in it.
  errlog=$corpus/go$v.env.log
  if ! label=$(cd "$src" && env GOTOOLCHAIN=$tc GOFLAGS=-mod=mod "$gocmd" env GOVERSION 2>"$errlog") ||
    { [ "$tc" != local ] && [ "$label" != "go$v" ]; }; then
    failures+=("go$v: toolchain cannot be fetched/run: $(cat "$errlog" | tail -n 1) (got '$label')")
    echo "FAILED: ${failures[-1]}" >&2
    continue
  fi
  for p in $programs; do
    for fl in $(flavours_of "$p"); do
      out=$corpus/$label/$p-$fl
      stamp="v$SCRIPT_VERSION $label $fl ${prog_hash[$p]}"
      build "$out" "$stamp" "$src" "./$p" "$gocmd" "$tc" "$(flavour_env "$fl")" "$(flavour_flags "$fl")" &&
        manifest+=("$label	$p	$fl	$out")
    done
  done
done

oracle=$corpus/tools/gosym-oracle
counts="$built built, $cached up to date" # binaries only, not the oracle
build "$oracle" "v$SCRIPT_VERSION $("$oracle_go" env GOVERSION) $(tree_hash "$repo/tests/oracle" .)" \
  "$repo/tests/oracle" . "$oracle_go" local 0 || true

# Rows of programs/releases not built in this run stay (a --programs or
# --versions run adds to the manifest); rebuilt ones are replaced.
{
  printf 'go_version\tprogram\tflavour\tpath\n'
  if [ -f "$corpus/manifest.tsv" ]; then
    declare -A rebuilt
    for line in "${manifest[@]}"; do rebuilt[$(cut -f1,2 <<<"$line")]=1; done
    tail -n +2 "$corpus/manifest.tsv" | while IFS=$'\t' read -r gv pr fl pa; do
      [ -n "${rebuilt[$gv	$pr]:-}" ] && continue
      [ -x "$pa" ] && printf '%s\t%s\t%s\t%s\n' "$gv" "$pr" "$fl" "$pa"
    done
  fi
  for line in "${manifest[@]}"; do printf '%s\n' "$line"; done
} >"$corpus/manifest.tsv.tmp"
mv "$corpus/manifest.tsv.tmp" "$corpus/manifest.tsv"

echo "build_go_corpus: ${#manifest[@]} binaries ($counts, ${#failures[@]} failed) for" \
  "$(echo $versions | wc -w) Go releases + gosym-oracle in $((SECONDS - start))s -> $corpus/manifest.tsv"
if [ ${#failures[@]} -gt 0 ]; then
  printf 'build_go_corpus: FAILED: %s\n' "${failures[@]}" >&2
  exit 1
fi
