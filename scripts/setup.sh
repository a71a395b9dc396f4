#!/usr/bin/env bash
# Installs every build and test dependency of goerrprof from Debian packages.
# Safe to re-run: apt-get skips what is already installed.
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config git ca-certificates
  clang llvm libclang-rt-14-dev libbpf-dev bpftool
  libelf-dev libdw-dev libunwind-dev zlib1g-dev
  protobuf-compiler libprotobuf-dev golang-github-google-pprof-dev
  libabsl-dev libgtest-dev libgmock-dev libcapstone-dev
  golang-1.19-go jq curl
)
# npm (for the esbuild corpus) comes with the machine's Node.js; Debian's npm
# package conflicts with it, so only install it where no npm exists.
command -v npm >/dev/null 2>&1 || packages+=(npm)

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
echo "setup: all ${#packages[@]} packages present"

# Prometheus for tests/agent (the agent scraped by a real Prometheus server),
# unpacked from Debian's package into .cache rather than installed:
# installing it starts a Prometheus server on 0.0.0.0:9090 as a service.
repo="$(cd "$(dirname "$0")/.." && pwd)"
prom="$repo/.cache/prometheus"
if [ ! -x "$prom/usr/bin/prometheus" ]; then
  tmp=$(mktemp -d)
  if ! (cd "$tmp" && apt-get download -qq prometheus 2>/dev/null); then
    $SUDO apt-get update -qq
    (cd "$tmp" && apt-get download -qq prometheus)
  fi
  mkdir -p "$prom"
  dpkg-deb -x "$tmp"/prometheus_*.deb "$prom"
  rm -rf "$tmp"
fi
echo "setup: prometheus $("$prom/usr/bin/prometheus" --version 2>&1 | head -n 1 | awk '{print $3}') in $prom"
