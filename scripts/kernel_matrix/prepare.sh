# Sourced by scripts/kernel_matrix.sh: the tools (QEMU 10, busybox,
# cpio) and the kernels through a private apt configuration, and the guest
# image (initramfs). Uses the main script's settings and globals.
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
  # Its overlayfs module too (the agent's containers check): in the image
  # package up to 6.x, in linux-modules-* with the 7.x packaging.
  local mods
  mods=$(deps_of "$d" "$img" | grep -E '^linux-modules-[0-9]' | head -n 1)
  if [ -s "$out/vmlinuz" ] && [ "$(cat "$out/info" 2>/dev/null)" = "$pkg $ver" ] &&
     [ -d "$out/modules" ]; then return 0; fi
  note "$suite: downloading $pkg $ver${mods:+ and $mods}"
  local x=$out/x
  rm -rf "$x" && mkdir -p "$x/root"
  # shellcheck disable=SC2046
  (cd "$x" && apt-get $(apt_opts "$d") -q download "$pkg=$ver" ${mods:+"$mods=$ver"}) >"$out/download.log" 2>&1 ||
    { note "$suite: apt-get download $pkg=$ver failed: $(grep -E '^E:' "$out/download.log" | head -n 1)"; rm -rf "$x"; return 1; }
  local deb
  for deb in "$x"/*.deb; do
    [ -e "$deb" ] && dpkg-deb -x "$deb" "$x/root" || { note "$suite: cannot unpack ${deb:-the download of $pkg}"; rm -rf "$x"; return 1; }
  done
  # modules/<release>/overlay.ko, uncompressed (busybox insmod reads plain
  # modules); a kernel without one (built in, or none) gets an empty dir.
  rm -rf "$out/modules" && mkdir -p "$out/modules"
  local ko rel
  ko=$(find "$x/root" -name 'overlay.ko*' -path '*/fs/overlayfs/*' 2>/dev/null | head -n 1)
  if [ -n "$ko" ]; then
    rel=$(echo "$ko" | sed -n 's|.*/lib/modules/\([^/]*\)/.*|\1|p')
    mkdir -p "$out/modules/$rel"
    case $ko in
      *.xz) xz -dc "$ko" >"$out/modules/$rel/overlay.ko" ;;
      *.zst) zstd -qdc "$ko" >"$out/modules/$rel/overlay.ko" ;;
      *) cp "$ko" "$out/modules/$rel/overlay.ko" ;;
    esac || { note "$suite: cannot decompress $ko"; rm -rf "$out/modules/$rel"; }
  fi
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
  [record_goroutines]="record_goroutines_test=RecordGoroutines.ParkProfileBesideErrors:RecordGoroutines.SampledWaitsOfPid park_test=ParkTrace.${O}_parktrace_pie"
  [record_budget]="record_cli_test=RecordBudgetTest.StormSiteGoesOffAndIsEstimated:RecordBudgetTest.ZeroObservesEverything"
  [record_command]="ci_record_test=CiRecord.CommandErrorsFromItsFirstInstruction:CiRecord.SignalsAreForwarded"
  [goroutines]="goroutines_test=Goroutines.${N}_parked_default:Goroutines.${O}_parked_pie"
  [agent]="agent_test=AgentTest.CountsEqualErrgenTruth:AgentTest.ExecEventsFindNewPrograms:AgentTest.ReplicasShareOneProgramAndRing:AgentTest.ContainersOfOneImageShareOneProgram:AgentTest.PieReplicasShareOneProgram"
)
# When a capability fails, this command runs too (stderr kept) so the report
# can quote goerrprof's own words where the gtest does not print them.
errgen_newest=$(awk -F'\t' -v g="$newest" '$1 == g && $2 == "errgen" && $3 == "default" { print $4 }' "$manifest" | tail -n 1)
declare -A PROBE=(
  [record_command]="echo go | $goerrprof record -o /tmp/km_probe.pb.gz -- $errgen_newest -wait >/dev/null"
  [record_budget]="$goerrprof record --max-overhead=1% -o /tmp/km_probe.pb.gz -- $errgen_newest -storm 1000 >/dev/null"
)
declare -A CAP_TITLE=(
  [record]="record" [record_goroutines]="record --goroutines" [record_command]="record -- CMD"
  [record_budget]="record --max-overhead"
  [goroutines]="goroutines" [agent]="agent" [doctor]="doctor"
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
  for t in record_test record_goroutines_test ci_record_test goroutines_test park_test \
    record_cli_test agent_test; do
    add "$build/tests/$t"
  done
  add /usr/sbin/bpftool # park_test checks that no program stays loaded
  # Each kernel's overlayfs module, by release; /init loads the running one's.
  local m
  for m in "$kcache"/*/modules/*/overlay.ko; do
    [ -e "$m" ] && add "$m" "/lib/modules/$(basename "$(dirname "$m")")/overlay.ko"
  done
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
