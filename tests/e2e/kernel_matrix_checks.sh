#!/bin/sh
# The capability checks of the kernel matrix, run on one kernel: inside a
# QEMU guest (from tests/e2e/kernel_matrix_init.sh) or directly on the host
# (`scripts/kernel_matrix.sh --kernels host`). POSIX sh: the guest has
# busybox only.
#
# usage: kernel_matrix_checks.sh CONFIG
# CONFIG (written by scripts/kernel_matrix.sh) sets:
#   KM_BUILD          the build directory (goerrprof, tests/*)
#   KM_CORPUS         a corpus directory whose manifest.tsv lists the Go
#                     targets that are present (GOERRPROF_CORPUS)
#   KM_LOGDIR         where each check's full output goes
#   KM_CHECK_TIMEOUT  seconds, per check
#   KM_CAPS           the capabilities to check, in order
#   KM_TESTS_<cap>    gtests of a capability: "BINARY=Suite.Test:Suite.Test ..."
#                     (exact names; every one must run and pass)
#   KM_PROBE_<cap>    optional: a shell command run when the capability
#                     failed, its output added to the log (goerrprof's own
#                     words where the gtest does not print them)
#   KM_DOCTOR         1: also run `goerrprof doctor --json`
#   KM_SEND_ALL       1: send every check's whole output, not just the end
#                     of a failed one's
#
# Prints on stdout, one per line (read by scripts/kernel_matrix.sh):
#   KM_BEGIN <uname -r> <uptime: seconds since boot>
#   KM_RESULT <cap> pass|fail <seconds> <detail>
#   KM_LOG <cap> <a line of the check's output>     (failed checks: the last lines)
#   KM_DOCTOR_RC <exit code> <seconds>, KM_DOCTOR <a line of doctor's JSON>,
#   KM_DOCTOR_ERR <a line of its stderr>
#   KM_END <seconds>
set -u
. "$1"
mkdir -p "$KM_LOGDIR"
export GOERRPROF_CORPUS="$KM_CORPUS" GOERRPROF_BIN="$KM_BUILD/goerrprof"

now() { cut -d' ' -f1 /proc/uptime; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# The last lines of a failed check's output, prefixed for the host.
send_log() { # CAP FILE
  if [ "${KM_SEND_ALL:-0}" = 1 ]; then
    sed "s/^/KM_LOG $1 /" "$2"
  else
    tail -n 150 "$2" | cut -c1-800 | sed "s/^/KM_LOG $1 /"
  fi
}

begin=$(now)
echo "KM_BEGIN $(uname -r) $begin"

for cap in $KM_CAPS; do
  start=$(now)
  log=$KM_LOGDIR/$cap.log
  : >"$log"
  eval "tests=\${KM_TESTS_$cap:-}"
  status=pass detail=""
  for item in $tests; do
    bin=$KM_BUILD/tests/${item%%=*}
    filter=${item#*=}
    want=$(echo "$filter" | tr ':' '\n' | grep -c .)
    one=$log.one
    timeout "$KM_CHECK_TIMEOUT" "$bin" --gtest_filter="$filter" >"$one" 2>&1 </dev/null
    rc=$?
    { echo "=== $bin --gtest_filter=$filter (exit $rc)"; cat "$one"; } >>"$log"
    ok=$(grep -c '^\[       OK \]' "$one")
    skipped=$(grep -c '^\[  SKIPPED \]' "$one")
    if [ "$rc" -eq 124 ] || [ "$rc" -eq 143 ] || [ "$rc" -eq 137 ]; then
      status=fail detail="$detail ${item%%=*}: timed out after ${KM_CHECK_TIMEOUT}s;"
    elif [ "$rc" -ne 0 ]; then
      failed=$(grep '^\[  FAILED  \] [A-Za-z]' "$one" | sed 's/^\[  FAILED  \] //; s/ (.*//; s/,.*//' |
        sort -u | tr '\n' ' ')
      status=fail detail="$detail ${item%%=*} exit $rc: ${failed:-no test result};"
    elif [ "$skipped" -ne 0 ] || [ "$ok" -lt "$want" ]; then
      # A filter that matches nothing, or a skipped test, passes in gtest
      # but not here: every named test must run and pass.
      status=fail detail="$detail ${item%%=*}: $ok of $want tests passed ($skipped skipped);"
    fi
    rm -f "$one"
  done
  [ -z "$tests" ] && status=fail detail="no tests configured"
  eval "probe=\${KM_PROBE_$cap:-}"
  if [ "$status" = fail ] && [ -n "$probe" ]; then
    echo "=== diagnosis: $probe" >>"$log"
    timeout "$KM_CHECK_TIMEOUT" sh -c "$probe" >>"$log" 2>&1 </dev/null
    echo "=== (exit $?)" >>"$log"
  fi
  echo "KM_RESULT $cap $status $(since "$start") ${detail# }"
  [ "$status" = pass ] && [ "${KM_SEND_ALL:-0}" != 1 ] || send_log "$cap" "$log"
done

if [ "${KM_DOCTOR:-0}" = 1 ]; then
  start=$(now)
  timeout "$KM_CHECK_TIMEOUT" "$KM_BUILD/goerrprof" doctor --json \
    >"$KM_LOGDIR/doctor.json" 2>"$KM_LOGDIR/doctor.err" </dev/null
  rc=$?
  echo "KM_DOCTOR_RC $rc $(since "$start")"
  sed 's/^/KM_DOCTOR /' "$KM_LOGDIR/doctor.json"
  tail -n 40 "$KM_LOGDIR/doctor.err" | cut -c1-600 | sed 's/^/KM_DOCTOR_ERR /'
fi

echo "KM_END $(since "$begin")"
