#!/usr/bin/env bash
# The kernel matrix: boots Debian's kernels under QEMU (TCG) and in each runs
# goerrprof end to end, then prints one table kernel x capability ->
# pass / FAIL / refused, with each BPF program's verified instructions when
# `goerrprof doctor --json` exists.
#
#   record              record --pid on errgen: counts and chains equal its truth
#                       (tests/record_test.cc, the newest Go release and go1.19 PIE)
#   record --goroutines park tracing on parktrace (record_goroutines_test, park_test)
#   record -- CMD       a Go command recorded from its first instruction, signals
#                       forwarded (ci_record_test)
#   goroutines          the snapshot against parked's own debug=2 dump (goroutines_test)
#   doctor              `goerrprof doctor --json` exits 0 (when the command exists)
#
# Kernels are Debian packages, resolved through the cloud meta-package of a
# suite, fetched with `apt-get download` through a private apt configuration
# (the machine's sources stay as they are) and unpacked with dpkg-deb: no
# modules needed. The guest is an initramfs of busybox-static, goerrprof, the
# gtest binaries and the Go targets at their host paths, with their shared
# libraries; tests/e2e/kernel_matrix_init.sh is its /init and
# tests/e2e/kernel_matrix_checks.sh runs the checks (also on the host for the
# `host` kernel). QEMU >= 10 (bookworm-backports; 7.2 panics 6.12 guests),
# busybox-static and cpio are installed when missing.
#
# usage: scripts/kernel_matrix.sh [--kernels LIST] [--build DIR] [--keep]
#          [--min-kernel X.Y] [--refresh] [--gz] [--jobs N]
#   --kernels   comma or space separated, of: bullseye (5.10) bookworm (6.1)
#               bookworm-backports (6.12) trixie (6.12) trixie-backports (7.3)
#               sid (7.x) experimental (7.x-rc) host (this machine's kernel, no VM);
#               "all" is every one. Default: all but experimental.
#   --build     the build directory (default <repo>/build)
#   --keep      keep the initramfs (tree and cpio) and every check's whole
#               output, passing ones too
#   --min-kernel  the minimum supported kernel (default $MIN_KERNEL below): a
#               kernel at or above it must pass every capability; below it,
#               each capability must pass or be refused in one line naming
#               what the kernel lacks (never FAIL). Otherwise exit 1.
#   --refresh   update the private apt lists even when they are fresh
#   --gz        gzip the initramfs (smaller; slower to unpack under TCG)
#   --jobs N    guests at a time (default 1: the machine is shared; each
#               guest keeps about one host core busy)
#
# Results: the table on stdout and, as Markdown, in
# <repo>/.cache/kernel_matrix/table.md; per kernel the serial console in
# .cache/kernel_matrix/<kernel>/serial.log and the failing checks' output in
# .cache/kernel_matrix/<kernel>/<capability>.log. Kernels and apt state are
# cached in <repo>/.cache/kernels.
set -uo pipefail

# The minimum supported kernel. The capture programs need bpf_loop (5.17+);
# 6.1 is the oldest longterm kernel with it, and the oldest one here.
MIN_KERNEL=${KM_MIN_KERNEL:-6.1}
QEMU_MIN_MAJOR=10
CHECK_TIMEOUT=${KM_CHECK_TIMEOUT:-180} # seconds per gtest binary inside a guest
VM_TIMEOUT=${KM_VM_TIMEOUT:-900}       # seconds per guest, boot to poweroff
VM_MEM=${KM_VM_MEM:-2048}              # MiB
VM_CPUS=${KM_VM_CPUS:-2}
# Expedited RCU grace periods: without it, a 6.1 guest (per-probe perf
# uprobes, no uprobe_multi) spends ~45 s of mostly idle time per `record`
# attach/detach of ~570 probes under TCG; with it ~15 s. It changes no
# feature the checks look at.
GUEST_CMDLINE="console=ttyS0 panic=-1 quiet random.trust_cpu=on mitigations=off rcupdate.rcu_expedited=1"
# A failing capability whose goerrprof message matches this is a deliberate
# refusal ("refused: <reason>") rather than a failure: record and doctor
# name the missing kernel feature in one line.
REFUSAL_RE=${KM_REFUSAL_RE:-'(kernel|Linux) .*(lacks|missing|needs|requires|not supported|unsupported|too old)|(lacks|missing|needs|requires) .*(kernel|Linux|bpf_loop|BTF|uprobe)'}
DEBIAN_MIRROR=http://deb.debian.org/debian
ALL_KERNELS="bullseye bookworm bookworm-backports trixie trixie-backports sid experimental host"
DEFAULT_KERNELS="bullseye bookworm bookworm-backports trixie trixie-backports sid host"
CAPS="record record_goroutines record_command goroutines"

repo=$(cd "$(dirname "$0")/.." && pwd)
build=$repo/build
kernels=$DEFAULT_KERNELS
keep=0 refresh=0 gz=0 jobs=1
die() { echo "kernel_matrix: $*" >&2; exit 2; }
note() { echo "kernel_matrix: $*" >&2; }

while [ $# -gt 0 ]; do
  case $1 in
    --kernels) [ $# -ge 2 ] || die "--kernels needs a list"; kernels=${2//,/ }; shift 2 ;;
    --build) [ $# -ge 2 ] || die "--build needs a directory"; build=$(cd "$2" 2>/dev/null && pwd) || die "no build directory $2"; shift 2 ;;
    --keep) keep=1; shift ;;
    --refresh) refresh=1; shift ;;
    --gz) gz=1; shift ;;
    --jobs) [[ ${2:-} =~ ^[1-9][0-9]*$ ]] || die "--jobs needs a number"; jobs=$2; shift 2 ;;
    --min-kernel) [ $# -ge 2 ] || die "--min-kernel needs X.Y"; MIN_KERNEL=$2; shift 2 ;;
    -h|--help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument $1 (see --help)" ;;
  esac
done
[ "$kernels" = all ] && kernels=$ALL_KERNELS
for k in $kernels; do
  [[ " $ALL_KERNELS " == *" $k "* ]] || die "unknown kernel '$k' (one of: $ALL_KERNELS)"
done
[ "$(id -u)" -eq 0 ] || die "needs root (installs packages; the host row loads BPF)"

kcache=$repo/.cache/kernels
work=$repo/.cache/kernel_matrix
mkdir -p "$kcache" "$work" || die "cannot create $kcache and $work"
exec 9>"$work/.lock"
flock -n 9 || die "another kernel_matrix.sh runs (lock $work/.lock)"

goerrprof=$build/goerrprof
[ -x "$goerrprof" ] || die "no $goerrprof: build first (cmake --build $build)"
for t in record_test record_goroutines_test ci_record_test goroutines_test park_test; do
  [ -x "$build/tests/$t" ] || die "no $build/tests/$t: build the tests first"
done
manifest=${GOERRPROF_CORPUS:-$repo/.cache/corpus}/manifest.tsv
[ -f "$manifest" ] || die "no $manifest: build the Go corpus (scripts/build_go_corpus.sh)"

vm_kernels=$(for k in $kernels; do [ "$k" = host ] || echo "$k"; done | xargs)
started=$SECONDS

# ---------------------------------------------------------------- apt, tools

# apt_opts DIR: a private apt configuration in DIR (sources.list there, its
# own lists and cache); the machine's /etc/apt/sources* are not read.
apt_opts() {
  local d=$1
  echo "-o Dir::Etc::sourcelist=$d/sources.list -o Dir::Etc::sourceparts=$d/empty.d \
-o Dir::State::Lists=$d/lists -o Dir::Cache=$d/cache -o Acquire::Languages=none \
-o Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false -o APT::Sandbox::User=root \
-o Dir::Etc::preferences=$d/preferences -o Dir::Etc::preferencesparts=$d/empty.d"
}

# apt_setup DIR SUITES...: writes the private sources and updates the lists
# when they are missing, older than a day, or --refresh. Returns 1 when the
# update failed and no lists are there.
apt_setup() {
  local d=$1; shift
  mkdir -p "$d/lists/partial" "$d/cache/archives/partial" "$d/empty.d"
  : >"$d/preferences"
  local want="" s
  for s in "$@"; do want+="deb $DEBIAN_MIRROR $s main"$'\n'; done
  [ "$(cat "$d/sources.list" 2>/dev/null)"$'\n' = "$want" ] || { printf '%s' "$want" >"$d/sources.list"; rm -f "$d/updated"; }
  if [ "$refresh" = 1 ] || [ ! -f "$d/updated" ] || [ -n "$(find "$d/updated" -mmin +1440)" ]; then
    # shellcheck disable=SC2046
    if apt-get $(apt_opts "$d") -q update >"$d/update.log" 2>&1; then
      touch "$d/updated"
      apt_updated=1
    elif ls "$d/lists/"*_Packages* >/dev/null 2>&1; then
      note "apt-get update for $* failed (see $d/update.log); using the lists from $(date -r "$d/updated" +%F 2>/dev/null || echo before)"
    else
      note "apt-get update for $* failed: $(grep -E '^(E|W):' "$d/update.log" | head -n 1)"
      return 1
    fi
  fi
}

ensure_tools() {
  local need=() v
  [ -x /bin/busybox ] && /bin/busybox --list 2>/dev/null | grep -qx timeout &&
    ! ldd /bin/busybox >/dev/null 2>&1 || need+=(busybox-static)
  command -v cpio >/dev/null || need+=(cpio)
  command -v jq >/dev/null || need+=(jq)
  command -v objcopy >/dev/null || need+=(binutils)
  if [ -n "$vm_kernels" ]; then
    v=$(qemu-system-x86_64 --version 2>/dev/null | sed -n 's/^QEMU emulator version \([0-9]*\)\..*/\1/p')
    [ -n "$v" ] && [ "$v" -ge "$QEMU_MIN_MAJOR" ] || need+=(qemu-system-x86)
  fi
  [ ${#need[@]} -eq 0 ] && return 0
  note "installing ${need[*]} (QEMU from bookworm-backports)"
  local d=$kcache/apt/tools
  apt_setup "$d" bookworm bookworm-backports || die "cannot reach the Debian archive to install ${need[*]}"
  # shellcheck disable=SC2046
  DEBIAN_FRONTEND=noninteractive apt-get $(apt_opts "$d") -o DPkg::Lock::Timeout=600 -q -y \
    --no-install-recommends -t bookworm-backports install "${need[@]}" >"$d/install.log" 2>&1 ||
    die "installing ${need[*]} failed: $(grep -E '^E:' "$d/install.log" | head -n 1) (log: $d/install.log)"
  if [ -n "$vm_kernels" ]; then
    v=$(qemu-system-x86_64 --version 2>/dev/null | sed -n 's/^QEMU emulator version \([0-9]*\)\..*/\1/p')
    [ -n "$v" ] && [ "$v" -ge "$QEMU_MIN_MAJOR" ] || die "QEMU $QEMU_MIN_MAJOR or newer is needed, have '${v:-none}'"
  fi
}

# ----------------------------------------------------------------- kernels

# deps_of DIR PKG: the package names PKG depends on (candidate version).
deps_of() {
  # shellcheck disable=SC2046
  apt-cache $(apt_opts "$1") show --no-all-versions "$2" 2>/dev/null |
    sed -n 's/^\(Pre-\)\{0,1\}Depends: //p' | tr ',|' '\n\n' | sed 's/^ *//; s/ .*//' | grep .
}

# fetch_kernel SUITE: resolves the suite's cloud kernel through its
# meta-package, downloads it unless cached, and leaves
# $kcache/SUITE/{vmlinuz,info}. info: "package version".
fetch_kernel() {
  local suite=$1 d=$kcache/apt/$1 out=$kcache/$1 apt_updated=0
  mkdir -p "$out"
  apt_setup "$d" "$suite" && fetch_kernel_once "$suite" && return 0
  # Lists up to a day old may name a package the archive has dropped since.
  if [ "$apt_updated" = 0 ]; then
    local refresh=1
    apt_setup "$d" "$suite" && fetch_kernel_once "$suite" && return 0
  fi
  [ -s "$out/vmlinuz" ] && { note "$suite: using the cached $(cat "$out/info")"; return 0; }
  return 1
}

fetch_kernel_once() {
  local suite=$1 d=$kcache/apt/$1 out=$kcache/$1
  local meta img pkg ver
  for meta in linux-image-cloud-amd64 linux-image-amd64; do
    img=$(deps_of "$d" "$meta" | grep -E '^linux-image-[0-9].*-amd64$' | head -n 1)
    [ -n "$img" ] && break
  done
  [ -n "$img" ] || { note "$suite: no linux-image-cloud-amd64 or linux-image-amd64 in the lists"; return 1; }
  # 7.x packaging: linux-image-* is a meta of linux-binary-* (the kernel) and modules.
  pkg=$(deps_of "$d" "$img" | grep -E '^linux-binary-[0-9]' | head -n 1)
  pkg=${pkg:-$img}
  # shellcheck disable=SC2046
  ver=$(apt-cache $(apt_opts "$d") show --no-all-versions "$pkg" 2>/dev/null | sed -n 's/^Version: //p' | head -n 1)
  [ -n "$ver" ] || { note "$suite: $pkg has no version in the lists"; return 1; }
  if [ -s "$out/vmlinuz" ] && [ "$(cat "$out/info" 2>/dev/null)" = "$pkg $ver" ]; then return 0; fi
  note "$suite: downloading $pkg $ver"
  local x=$out/x
  rm -rf "$x" && mkdir -p "$x/root"
  # shellcheck disable=SC2046
  (cd "$x" && apt-get $(apt_opts "$d") -q download "$pkg=$ver") >"$out/download.log" 2>&1 ||
    { note "$suite: apt-get download $pkg=$ver failed: $(grep -E '^E:' "$out/download.log" | head -n 1)"; rm -rf "$x"; return 1; }
  local deb
  deb=$(ls "$x"/*.deb 2>/dev/null | head -n 1)
  [ -n "$deb" ] && dpkg-deb -x "$deb" "$x/root" || { note "$suite: cannot unpack ${deb:-the download of $pkg}"; rm -rf "$x"; return 1; }
  # /boot/vmlinuz-* up to 6.x; /usr/lib/modules/*/vmlinuz in the 7.x linux-binary-* packages.
  local vmlinuz
  vmlinuz=$(ls "$x"/root/boot/vmlinuz-* "$x"/root/usr/lib/modules/*/vmlinuz 2>/dev/null | head -n 1)
  [ -n "$vmlinuz" ] || { note "$suite: $(basename "$deb") has no kernel image (/boot/vmlinuz-*, /usr/lib/modules/*/vmlinuz)"; rm -rf "$x"; return 1; }
  mv "$vmlinuz" "$out/vmlinuz"
  rm -rf "$x"
  echo "$pkg $ver" >"$out/info"
  return 0
}

# "5.10.223-1" -> 5.10.223, "7.3~rc7-1~exp1" -> 7.3-rc7, "6.12.95-1~bpo12+1" -> 6.12.95
upstream_version() { echo "$1" | sed 's/-[^-]*$//; s/~/-/'; }
# at_least A B: version A >= B (major.minor.patch, an -rc counts as its release)
at_least() {
  local a=${1%%-*} b=${2%%-*}
  [ "$(printf '%s\n%s\n' "$b" "$a" | sort -V | head -n 1)" = "$b" ]
}

# ------------------------------------------------------------- guest image

# The Go targets the checks use: the newest release in the corpus (what the
# tests pick as "newest") and the oldest (go1.19, Debian's), by flavour.
newest=$(awk -F'\t' 'NR > 1 && $2 == "errgen" { print $1 }' "$manifest" | sort -V | tail -n 1)
oldest=$(awk -F'\t' 'NR > 1 && $2 == "errgen" { print $1 }' "$manifest" | sort -V | head -n 1)
[ -n "$newest" ] || die "no errgen in $manifest: build the Go corpus (scripts/build_go_corpus.sh)"
N=$(echo "$newest" | tr '.-' '__') O=$(echo "$oldest" | tr '.-' '__')
targets="$newest errgen default|$newest errgen stripped|$oldest errgen pie|$newest parktrace stripped|\
$oldest parktrace pie|$newest parked default|$oldest parked pie"

# Which gtests prove a capability ("BINARY=Suite.Test:Suite.Test ...").
declare -A TESTS=(
  [record]="record_test=Record.${N}_errgen_default:Record.${O}_errgen_pie"
  [record_goroutines]="record_goroutines_test=RecordGoroutines.ParkProfileBesideErrors park_test=ParkTrace.${O}_parktrace_pie"
  [record_command]="ci_record_test=CiRecord.CommandErrorsFromItsFirstInstruction:CiRecord.SignalsAreForwarded"
  [goroutines]="goroutines_test=Goroutines.${N}_parked_default:Goroutines.${O}_parked_pie"
)
# When a capability fails, this command runs too (stderr kept) so the report
# can quote goerrprof's own words where the gtest does not print them.
errgen_newest=$(awk -F'\t' -v g="$newest" '$1 == g && $2 == "errgen" && $3 == "default" { print $4 }' "$manifest" | tail -n 1)
declare -A PROBE=(
  [record_command]="echo go | $goerrprof record -o /tmp/km_probe.pb.gz -- $errgen_newest -wait >/dev/null"
)
declare -A CAP_TITLE=(
  [record]="record" [record_goroutines]="record --goroutines" [record_command]="record -- CMD"
  [goroutines]="goroutines" [doctor]="doctor"
)

# `goerrprof doctor` is optional: the column appears when the binary has it.
doctor=0 usage=$("$goerrprof" --help 2>&1)
grep -q 'goerrprof doctor' <<<"$usage" && doctor=1

corpus=$work/corpus # a manifest of just the targets the guest carries
write_corpus() {
  mkdir -p "$corpus"
  printf 'go_version\tprogram\tflavour\tpath\n' >"$corpus/manifest.tsv"
  local t gv pr fl pa
  IFS='|' read -ra t <<<"$targets"
  for x in "${t[@]}"; do
    read -r gv pr fl <<<"$x"
    pa=$(awk -F'\t' -v g="$gv" -v p="$pr" -v f="$fl" '$1 == g && $2 == p && $3 == f { print $4 }' "$manifest" | tail -n 1)
    [ -n "$pa" ] && [ -x "$pa" ] || die "the corpus lacks $gv $pr $fl (manifest $manifest): run scripts/build_go_corpus.sh"
    printf '%s\t%s\t%s\t%s\n' "$gv" "$pr" "$fl" "$pa" >>"$corpus/manifest.tsv"
  done
}

# write_config FILE LOGDIR: the checks' configuration (tests/e2e/kernel_matrix_checks.sh).
write_config() {
  {
    echo "KM_BUILD='$build'"
    echo "KM_CORPUS='$corpus'"
    echo "KM_LOGDIR='$2'"
    echo "KM_CHECK_TIMEOUT=$CHECK_TIMEOUT"
    echo "KM_CAPS='$CAPS'"
    for c in $CAPS; do
      echo "KM_TESTS_$c='${TESTS[$c]}'"
      [ -n "${PROBE[$c]:-}" ] && echo "KM_PROBE_$c='${PROBE[$c]}'"
    done
    echo "KM_DOCTOR=$doctor"
    echo "KM_SEND_ALL=$keep"
  } >"$1"
}

root=$work/initramfs.d
declare -A copied=()
# add SRC [DEST]: a file into the guest tree at DEST (default: the same
# path); a dynamic executable with its shared libraries and loader (ldd).
# The build's own executables lose their debug info on the way (a quarter
# of the size); the Go targets stay byte for byte.
add() {
  local src=$1 dest=${2:-$1} lib
  [ -n "${copied[$dest]:-}" ] && return 0
  copied[$dest]=1
  [ -e "$src" ] || die "guest image: $src is missing"
  mkdir -p "$root$(dirname "$dest")"
  if [[ $src == "$build"/* ]]; then
    objcopy --strip-debug "$src" "$root$dest" || die "guest image: objcopy --strip-debug $src failed"
  else
    cp -L "$src" "$root$dest" || die "guest image: cannot copy $src"
  fi
  if [ "$(head -c 4 "$src" | od -An -c | tr -d ' ')" = '177ELF' ] && ldd "$src" >/dev/null 2>&1; then
    ! ldd "$src" | grep -q 'not found' ||
      die "guest image: $src needs a library that is not there: $(ldd "$src" | grep 'not found' | head -n 1)"
    for lib in $(ldd "$src" | awk '/=>/ && $3 ~ /^\// { print $3 } !/=>/ && $1 ~ /^\// { print $1 }'); do
      add "$lib"
    done
  fi
}

build_initramfs() {
  local t0=$SECONDS
  rm -rf "$root"
  mkdir -p "$root"/usr/{bin,sbin,lib,lib64} "$root"/{km,etc,proc,sys,dev,tmp,root,run}
  # Debian's merged /usr: the loader and libraries keep their ldd paths.
  for d in bin sbin lib lib64; do ln -s "usr/$d" "$root/$d"; done
  cp /bin/busybox "$root/usr/bin/busybox"
  ln -s busybox "$root/usr/bin/sh"
  cp "$repo/tests/e2e/kernel_matrix_init.sh" "$root/init"
  cp "$repo/tests/e2e/kernel_matrix_checks.sh" "$root/km/kernel_matrix_checks.sh"
  chmod 755 "$root/init"
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$root/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"
  write_config "$root/km/config.sh" /tmp/km_logs
  add "$goerrprof"
  for t in record_test record_goroutines_test ci_record_test goroutines_test park_test; do
    add "$build/tests/$t"
  done
  add /usr/sbin/bpftool # park_test checks that no program stays loaded
  add "$corpus/manifest.tsv"
  local p
  for p in $(tail -n +2 "$corpus/manifest.tsv" | cut -f4); do add "$p"; done
  # The gtests run `go tool pprof`; the guest has no Go toolchain, so
  # /usr/local/go/bin/go is a stand-in that runs a pprof built on the host.
  local pprof
  pprof=$(GOTOOLCHAIN=local /usr/local/go/bin/go tool -n pprof 2>/dev/null) && [ -x "$pprof" ] ||
    die "cannot find pprof (GOTOOLCHAIN=local /usr/local/go/bin/go tool -n pprof)"
  add "$pprof" /km/bin/pprof
  mkdir -p "$root/usr/local/go/bin"
  cat >"$root/usr/local/go/bin/go" <<'EOF'
#!/bin/sh
# kernel matrix guest: no Go toolchain, only `go tool pprof` (a pprof built on the host).
if [ "$1" = tool ] && [ "$2" = pprof ]; then shift 2; exec /km/bin/pprof "$@"; fi
echo "kernel matrix guest: only 'go tool pprof' is here, not 'go $*'" >&2
exit 127
EOF
  chmod 755 "$root/usr/local/go/bin/go"
  local out=$work/initramfs.cpio
  rm -f "$out" "$out.gz"
  (cd "$root" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) >"$out" ||
    die "cpio of $root failed"
  if [ "$gz" = 1 ]; then gzip -1 "$out" && out=$out.gz; fi
  initrd=$out
  note "initramfs: $(du -h "$initrd" | cut -f1) ($(find "$root" -type f | wc -l) files) in $((SECONDS - t0))s"
}

# ----------------------------------------------------------------- running

# parse KERNEL CONSOLE_FILE: the KM_* lines into $work/KERNEL/{results.tsv,doctor.json,*.log}.
parse() {
  local k=$1 dir=$work/$1 raw=$2
  # A kernel message may share a console line with ours: start at the tag.
  tr -d '\r' <"$raw" | awk 'match($0, /KM_[A-Z_]+ /) { print substr($0, RSTART) }' >"$dir/km.txt"
  : >"$dir/results.tsv"
  local cap status secs detail
  while read -r _ cap status secs detail; do
    printf '%s\t%s\t%s\t%s\n' "$cap" "$status" "$secs" "$detail" >>"$dir/results.tsv"
  done < <(grep '^KM_RESULT ' "$dir/km.txt")
  for cap in $CAPS; do
    grep "^KM_LOG $cap " "$dir/km.txt" | sed "s/^KM_LOG $cap //" >"$dir/$cap.log"
    [ -s "$dir/$cap.log" ] || rm -f "$dir/$cap.log"
  done
  sed -n 's/^KM_DOCTOR //p' "$dir/km.txt" >"$dir/doctor.json"
  sed -n 's/^KM_DOCTOR_ERR //p' "$dir/km.txt" >"$dir/doctor.err"
  sed -n 's/^KM_DOCTOR_RC //p' "$dir/km.txt" >"$dir/doctor.rc"
  sed -n 's/^KM_BEGIN //p' "$dir/km.txt" | head -n 1 >"$dir/uname"
}

run_host() {
  local dir=$work/host
  rm -rf "$dir" && mkdir -p "$dir/logs"
  write_config "$dir/config.sh" "$dir/logs"
  local t0=$SECONDS
  sh "$repo/tests/e2e/kernel_matrix_checks.sh" "$dir/config.sh" >"$dir/console.log" 2>&1
  echo $((SECONDS - t0)) >"$dir/wall"
  echo "host $(uname -r)" >"$dir/info"
  parse host "$dir/console.log"
  [ "$keep" = 1 ] || rm -rf "$dir/logs"
}

run_vm() {
  local k=$1 dir=$work/$1
  rm -rf "$dir" && mkdir -p "$dir"
  local t0=$SECONDS rc
  timeout -k 10 "$VM_TIMEOUT" nice -n 10 qemu-system-x86_64 -nodefaults -no-user-config \
    -accel tcg,thread=multi -cpu max -smp "$VM_CPUS" -m "$VM_MEM" \
    -kernel "$kcache/$k/vmlinuz" -initrd "$initrd" \
    -append "$GUEST_CMDLINE" \
    -display none -monitor none -serial "file:$dir/serial.log" -no-reboot \
    </dev/null >"$dir/qemu.log" 2>&1
  rc=$?
  echo $((SECONDS - t0)) >"$dir/wall"
  cp "$kcache/$k/info" "$dir/info"
  parse "$k" "$dir/serial.log"
  local end
  end=$(grep -c '^KM_END ' "$dir/km.txt")
  if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
    echo "guest still running after ${VM_TIMEOUT}s (killed)" >"$dir/vm_error"
  elif [ "$rc" -ne 0 ]; then
    echo "qemu exit $rc: $(tail -n 1 "$dir/qemu.log")" >"$dir/vm_error"
  elif [ "$end" -eq 0 ]; then
    local why
    why=$(tr -d '\r' <"$dir/serial.log" | grep -m1 -E 'Kernel panic|BUG:|Oops|Unable to mount|not syncing' || true)
    echo "guest ended before the checks finished${why:+: $why}" >"$dir/vm_error"
  fi
}

# ------------------------------------------------------------------ report

# reason KERNEL CAP DETAIL: one line saying why a capability did not pass:
# goerrprof's own message (a refusal, or a BPF load failure with the
# verifier's last lines) when the output has one, else the gtest failure.
reason() {
  local log=$work/$1/$2.log line=""
  if [ -f "$log" ]; then
    line=$(grep -o 'goerrprof: .*' "$log" |
      grep -vE 'goerrprof: (recording pid|warning: --goroutines|.*errors at [0-9]+ sites|command exited)' |
      head -n 1)
    if [ -z "$line" ]; then
      # The failed tests and the first failure's message, on one line.
      local tests first
      tests=$(grep '^\[  FAILED  \] [A-Za-z].* ([0-9]* ms)$' "$log" | sed 's/^\[  FAILED  \] //; s/ (.*//; s/,.*//' | sort -u | xargs)
      first=$(grep -A4 -m1 ': Failure$' "$log" | tail -n +2 | grep -v '^\[' | tr '\n' ' ' | sed 's/  */ /g; s/ $//')
      [ -n "$tests$first" ] && line="${tests:-?}: ${first:-see the log}"
    fi
  fi
  echo "${line:-$3}"
}

cell_of() { # KERNEL CAP -> "pass" | "FAIL: ..." | "refused: ..." | "-"
  local k=$1 cap=$2 dir=$work/$1 row status detail why
  row=$(awk -F'\t' -v c="$cap" '$1 == c' "$dir/results.tsv" 2>/dev/null | head -n 1)
  if [ -z "$row" ]; then
    why=$(cat "$dir/vm_error" 2>/dev/null)
    echo "FAIL: no result${why:+ ($why)}"
    return
  fi
  status=$(cut -f2 <<<"$row") detail=$(cut -f4 <<<"$row")
  if [ "$status" = pass ]; then echo pass; return; fi
  why=$(reason "$k" "$cap" "$detail")
  if grep -qE "$REFUSAL_RE" <<<"$why"; then echo "refused: $why"; else echo "FAIL: $why"; fi
}

doctor_cell() { # KERNEL -> doctor status
  local dir=$work/$1 rc why
  rc=$(cut -d' ' -f1 "$dir/doctor.rc" 2>/dev/null)
  [ -n "$rc" ] || { echo "FAIL: no result"; return; }
  [ "$rc" = 0 ] && { echo pass; return; }
  # doctor --json: {"ok", "checks": [{name, status, detail}], "programs": [...], "programs_error"}
  why=$(jq -rs '.[0] | [(.checks // [], .programs // [])[] | select(.status == "FAIL") | "\(.name): \(.detail)"]
      + (if .programs_error then ["programs: \(.programs_error)"] else [] end) | join("; ")' \
    "$dir/doctor.json" 2>/dev/null)
  [ -n "$why" ] || why=$(grep -v '^ *$' "$dir/doctor.err" | tail -n 1)
  why="exit $rc${why:+: $why}"
  if grep -qE "$REFUSAL_RE" <<<"$why"; then echo "refused: $why"; else echo "FAIL: $why"; fi
}

# Verified instructions per BPF program, from doctor's JSON ("programs":
# [{program, loaded, verified_insns}]): "name=N", "name=loads" where the
# kernel does not count (< 5.16), "name=no load".
insns_of() {
  local f=$work/$1/doctor.json out
  [ -s "$f" ] || { echo "-"; return; }
  out=$(jq -rs '.[0].programs // [] | map("\(.program // .name)=\(if .loaded == false then "no load"
      elif (.verified_insns // 0) > 0 then .verified_insns else "loads" end)") | join(", ")' "$f" 2>/dev/null) ||
    out="(doctor JSON unreadable)"
  echo "${out:--}"
}

aligned() { # TSV -> columns padded to width (no dependency on column(1))
  awk -F'\t' '{ for (i = 1; i <= NF; i++) { c[NR, i] = $i; if (length($i) > w[i]) w[i] = length($i) }; if (NF > n) n = NF }
    END { for (r = 1; r <= NR; r++) { line = ""; for (i = 1; i <= n; i++) line = line sprintf("%-" w[i] "s  ", c[r, i]); sub(/ +$/, "", line); print line } }' "$1"
}
markdown() { # TSV -> a Markdown table
  awk -F'\t' 'NR == 1 { printf "|"; for (i = 1; i <= NF; i++) printf " %s |", $i; printf "\n|"; for (i = 1; i <= NF; i++) printf "---|"; printf "\n"; next }
    { printf "|"; for (i = 1; i <= NF; i++) { v = $i; gsub(/\|/, "\\|", v); printf " %s |", v }; printf "\n" }' "$1"
}

report() {
  local caps_shown=$CAPS
  [ "$doctor" = 1 ] && caps_shown+=" doctor"
  local md=$work/table.md tsv=$work/table.tsv
  local header="kernel	uname -r	boot s	wall s" c
  for c in $caps_shown; do header+="	${CAP_TITLE[$c]}"; done
  [ "$doctor" = 1 ] && header+="	verified insns"
  echo "$header" >"$tsv"
  local times=$work/times.tsv theader="kernel	boot" secs
  for c in $caps_shown; do theader+="	${CAP_TITLE[$c]}"; done
  echo "$theader	wall" >"$times"
  : >"$work/details.txt"
  failed_kernels=() unrefused_kernels=() n_passed=0 n_failed=0
  local k info ver label uname boot wall row cell bad failed
  for k in $kernels; do
    local dir=$work/$k
    info=$(cat "$dir/info" 2>/dev/null)
    if [ "$k" = host ]; then
      ver=$(uname -r | sed 's/[-+].*//') label="$ver (host)"
    elif [ -n "$info" ]; then
      ver=$(upstream_version "${info#* }") label="$ver ($k)"
    else
      ver=999 label="? ($k)" # requested but not fetched: counts as failed
    fi
    uname=$(cat "$dir/uname" 2>/dev/null)
    boot=$(awk '{ print $2 }' <<<"$uname")
    [ "$k" = host ] && boot="" # the host's uptime is not a boot time
    wall=$(cat "$dir/wall" 2>/dev/null)
    row="$label	${uname%% *}	${boot:--}	${wall:--}"
    bad=0 failed=0
    for c in $caps_shown; do
      if [ "$c" = doctor ]; then cell=$(doctor_cell "$k"); else cell=$(cell_of "$k" "$c"); fi
      [ "$cell" = pass ] || { bad=1; printf '%s | %s | %s\n' "$label" "${CAP_TITLE[$c]}" "$cell" >>"$work/details.txt"; }
      [[ $cell == FAIL* ]] && failed=1
      # Counted for the closing line: a refusal is the expected result only
      # below the minimum supported kernel.
      if [ "$cell" = pass ] || { [[ $cell == refused* ]] && ! at_least "$ver" "$MIN_KERNEL"; }; then
        n_passed=$((n_passed + 1))
      else
        n_failed=$((n_failed + 1))
      fi
      local short=$cell
      [ ${#short} -gt 70 ] && short="${short:0:67}..."
      row+="	$short"
    done
    [ "$doctor" = 1 ] && row+="	$(insns_of "$k")"
    echo "$row" >>"$tsv"
    row="$label	${boot:--}"
    for c in $caps_shown; do
      if [ "$c" = doctor ]; then secs=$(cut -s -d' ' -f2 "$dir/doctor.rc" 2>/dev/null)
      else secs=$(awk -F'\t' -v c="$c" '$1 == c { print $3 }' "$dir/results.tsv" 2>/dev/null); fi
      row+="	${secs:--}"
    done
    echo "$row	${wall:--}" >>"$times"
    if at_least "$ver" "$MIN_KERNEL"; then
      [ "$bad" = 1 ] && failed_kernels+=("$label")
    else
      [ "$failed" = 1 ] && unrefused_kernels+=("$label")
    fi
  done

  echo
  aligned "$tsv"
  echo
  echo "Seconds (boot: guest uptime at /init; checks: guest clock; wall: host, boot to poweroff):"
  aligned "$times"
  if [ -s "$work/details.txt" ]; then
    echo
    echo "Not passing (full reasons; logs in $work/<kernel>/<capability>.log):"
    sed 's/^/  /' "$work/details.txt"
  fi
  {
    echo "Kernel matrix ($(date -u +%F), goerrprof $(git -C "$repo" rev-parse --short HEAD 2>/dev/null)," \
      "minimum supported kernel $MIN_KERNEL; QEMU TCG, $VM_CPUS vCPUs, $jobs guest(s) at a time; \`scripts/kernel_matrix.sh\`):"
    echo
    markdown "$tsv"
    if [ -s "$work/details.txt" ]; then
      echo
      sed 's/`/'"'"'/g; s/^/- /' "$work/details.txt"
    fi
    echo
    echo "Seconds per check (guest clock), boot (to /init) and wall (host, boot to poweroff):"
    echo
    markdown "$times"
  } >"$md"
}

# -------------------------------------------------------------------- main

ensure_tools
for k in $kernels; do rm -rf "${work:?}/$k"; done
for k in $vm_kernels; do
  fetch_kernel "$k" || { note "$k: no kernel (see above)"; mkdir -p "$work/$k"; echo "kernel not fetched" >"$work/$k/vm_error"; }
done
write_corpus
[ -n "$vm_kernels" ] && build_initramfs

summary() { # KERNEL: one line when it is done
  note "$1: $(awk -F'\t' '{ printf "%s=%s(%ss) ", $1, $2, $3 }' "$work/$1/results.tsv")$(cat "$work/$1/vm_error" 2>/dev/null) in $(cat "$work/$1/wall")s"
  grep '^KM_WARN ' "$work/$1/km.txt" | sed "s/^KM_WARN /kernel_matrix: $1: guest warning: /" >&2
}

# Guests first (--jobs at a time), then the host's own kernel alone: its
# checks are timed against the target programs' own clocks.
for k in $vm_kernels; do
  [ -s "$kcache/$k/vmlinuz" ] && [ ! -e "$work/$k/vm_error" ] || continue
  note "$k $(cat "$kcache/$k/info"): booting"
  if [ "$jobs" -le 1 ]; then
    run_vm "$k" && summary "$k"
  else
    while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do wait -n; done
    (run_vm "$k" && summary "$k") &
  fi
done
wait
if [[ " $kernels " == *" host "* ]]; then
  note "host $(uname -r): running the checks"
  run_host && summary host
fi

report
total=$((SECONDS - started))
printf '\nTotal: %s kernels in %ss (fetching, image, every guest).\n' "$(wc -w <<<"$kernels")" "$total" >>"$work/table.md"
echo
echo "kernel_matrix: $(wc -w <<<"$kernels") kernels in ${total}s; table: $work/table.md"
[ "$keep" = 1 ] || rm -rf "$root" "$work/initramfs.cpio" "$work/initramfs.cpio.gz"
status=0
if [ ${#failed_kernels[@]} -gt 0 ]; then
  echo "kernel_matrix: FAILED on supported kernels (>= $MIN_KERNEL): ${failed_kernels[*]}" >&2
  status=1
fi
if [ ${#unrefused_kernels[@]} -gt 0 ]; then
  echo "kernel_matrix: FAILED below $MIN_KERNEL without a one-line refusal: ${unrefused_kernels[*]}" >&2
  status=1
fi
[ "$status" = 0 ] && echo "kernel_matrix: every kernel >= $MIN_KERNEL passed every capability; older ones passed or refused"
# One check per kernel x capability (a refusal below the minimum counts as
# passed), in the plain form CI reads.
echo "kernel-matrix: $n_passed passed, $n_failed failed"
exit "$status"
