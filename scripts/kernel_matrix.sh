#!/usr/bin/env bash
# The kernel matrix: boots Debian's kernels under QEMU (TCG) and in each runs
# goerrprof end to end, then prints one table kernel x capability ->
# pass / FAIL / refused, with each BPF program's verified instructions when
# `goerrprof doctor --json` exists.
#
#   record              record --pid on errgen: counts and chains equal its truth
#                       (tests/e2e/record_test.cc, the newest Go release and go1.19 PIE)
#   record --goroutines park tracing on parktrace (record_goroutines_test, park_test)
#   record -- CMD       a Go command recorded from its first instruction, signals
#                       forwarded (ci_record_test)
#   record --max-overhead  the overhead budget takes a storm's site off and back
#                       (per-site links: uprobe_multi swaps, or perf links before
#                       6.6) and estimates it (record_cli_test RecordBudgetTest)
#   goroutines          the snapshot against parked's own debug=2 dump (goroutines_test)
#   agent               `goerrprof agent` finds errgen processes started after it (the
#                       /proc scan, and exec events alone), /metrics equals their
#                       truth, and replicas share one program and its links
#                       (unfiltered uprobe_multi, or perf uprobes for pid -1), also
#                       from two overlay "containers" of one image, and PIE replicas
#                       at their own load biases (agent_test)
#   doctor              `goerrprof doctor --json` exits 0 (when the command exists)
#
# Kernels are Debian packages, resolved through the cloud meta-package of a
# suite, fetched with `apt-get download` through a private apt configuration
# (the machine's sources stay as they are) and unpacked with dpkg-deb; of
# the modules only overlay.ko is kept (the guest's /init loads it). The
# guest is an initramfs of busybox-static, goerrprof, the gtest binaries
# and the Go targets at their host paths, with their shared libraries;
# tests/e2e/kernel_matrix_init.sh is its /init and
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
CAPS="record record_goroutines record_command record_budget goroutines agent"

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
for t in record_test record_goroutines_test ci_record_test goroutines_test park_test record_cli_test \
  agent_test; do
  [ -x "$build/tests/$t" ] || die "no $build/tests/$t: build the tests first"
done
manifest=${GOERRPROF_CORPUS:-$repo/.cache/corpus}/manifest.tsv
[ -f "$manifest" ] || die "no $manifest: build the Go corpus (scripts/build_go_corpus.sh)"

vm_kernels=$(for k in $kernels; do [ "$k" = host ] || echo "$k"; done | xargs)
started=$SECONDS

# Tools, kernels and the guest image; the report (kept apart for size).
. "$repo/scripts/kernel_matrix/prepare.sh"
. "$repo/scripts/kernel_matrix/report.sh"

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

# A kernel that crashes while booting, before any check ran, is booted once
# more: TCG can race the kernel's own text patching across vCPUs (6.12.95
# once died of an int3 in hrtimer code at 1.3 s). A second crash stands.
run_vm() {
  local k=$1 dir=$work/$1
  run_vm_once "$k"
  if [ ! -s "$dir/results.tsv" ] && tr -d '\r' <"$dir/serial.log" 2>/dev/null |
    grep -qE 'Kernel panic|BUG:|Oops'; then
    note "$k: the kernel crashed while booting, before any check ($(cat "$dir/vm_error" 2>/dev/null)); booting it again"
    cp "$dir/serial.log" "$work/$k.first-boot.serial.log"
    run_vm_once "$k"
  fi
}

run_vm_once() {
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
