# Sourced by scripts/kernel_matrix.sh: the results of every kernel into
# one table (stdout and Markdown), the details of what did not pass, and
# the counts for the closing line. Uses the main script's globals.
# ------------------------------------------------------------------ report

# reason KERNEL CAP DETAIL: one line saying why a capability did not pass:
# goerrprof's own message when it refused or a BPF object did not load (a
# refusal, or the verifier's last lines), else the failed tests and the
# first failure's message, else goerrprof's first message.
reason() {
  local log=$work/$1/$2.log line="" tests first
  if [ -f "$log" ]; then
    line=$(grep -o 'goerrprof: .*' "$log" |
      grep -vE 'goerrprof: (recording pid|warning: --goroutines|.*panics at [0-9]+ sites|command exited|overhead budget:)' |
      head -n 1)
    tests=$(grep '^\[  FAILED  \] [A-Za-z].* ([0-9]* ms)$' "$log" | sed 's/^\[  FAILED  \] //; s/ (.*//; s/,.*//' | sort -u | xargs)
    first=$(grep -A4 -m1 ': Failure$' "$log" | sed '1s|.*/||; 1s|: Failure$|:|' | grep -v '^\[' |
      tr '\n' ' ' | sed 's/  */ /g; s/ $//')
    if [ -n "$tests$first" ] && ! grep -qE "$REFUSAL_RE|does not load|verifier" <<<"$line"; then
      line="${tests:-?}: ${first:-see the log}"
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
  : >"$work/excerpts.txt"
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
      if [[ $cell == FAIL* ]]; then
        failed=1
        # What CI shows of a failure: each failed expectation, briefly.
        [ -f "$dir/$c.log" ] && grep -A6 ': Failure$' "$dir/$c.log" | grep -v '^--$' | head -n 40 |
          cut -c1-300 | sed "s|^|  $label $c: |" >>"$work/excerpts.txt"
      fi
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
  if [ -s "$work/excerpts.txt" ]; then
    echo
    echo "Failed expectations (the first 40 lines of each failing check):"
    cat "$work/excerpts.txt"
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
