#!/usr/bin/env bash
# tests/fuzz/run.sh BUILD_DIR SECONDS: runs each fuzz target built in
# BUILD_DIR/tests/fuzz for about SECONDS of CPU (all side by side),
# starting from a temporary copy of its seed corpus
# (tests/fuzz/corpus/<target>; the copy grows, the seeds stay) after
# replaying its regressions (tests/fuzz/regressions/<target>), with
# leak detection.  Prints the executions per target; exits non-zero if any
# target found a crash, a leak or a timeout (the reproducer is kept in the
# build dir and its path printed).
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=${1:?usage: tests/fuzz/run.sh BUILD_DIR SECONDS}
secs=${2:?usage: tests/fuzz/run.sh BUILD_DIR SECONDS}
bindir=$(cd "$build" && pwd)/tests/fuzz
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
# The targets run side by side: with fewer CPUs than targets each runs
# longer in proportion (SECONDS x TARGETS / CPUs), so that it gets about
# SECONDS of a CPU as it would alone, and CI waits that instead of
# TARGETS x SECONDS.
targets=(fuzz_http fuzz_values fuzz_config fuzz_multipart fuzz_redis fuzz_json fuzz_fetch_h1)
ncpu=$(nproc 2>/dev/null || echo 1)
[ "$ncpu" -gt ${#targets[@]} ] && ncpu=${#targets[@]}
wall=$(( secs * ${#targets[@]} / ncpu ))
run_target() {   # run_target NAME: its report in $tmp/NAME.report, status in $tmp/NAME.status
  local t=$1 bin=$bindir/$1 st=0
  exec >"$tmp/$t.report" 2>&1
  if [ ! -x "$bin" ]; then
    echo "$t: not built in $build (configure with -DLUAHOST_FUZZ=ON)"
    echo 1 >"$tmp/$t.status"
    return
  fi
  mkdir -p "$tmp/$t" "$bindir/artifacts/$t"
  cp "$here/corpus/$t/"* "$tmp/$t/" 2>/dev/null || true
  local log=$bindir/artifacts/$t.log rc=0
  local regs=("$here/regressions/$t/"*)
  if [ -e "${regs[0]}" ]; then   # known crashers first: each must now pass
    if ! "$bin" -detect_leaks=1 -timeout=10 "${regs[@]}" >"$log.regressions" 2>&1; then
      st=1
      echo "---- $t: a regression input in tests/fuzz/regressions/$t still fails; log: $log.regressions"
      grep -E "Running:|PANIC|ERROR|check failed" "$log.regressions" | head -10
    fi
  fi
  "$bin" -max_total_time="$wall" -detect_leaks=1 -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$bindir/artifacts/$t/" \
    "$tmp/$t" >"$log" 2>&1 || rc=$?
  local execs
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  echo "$t: ${execs:-?} executions in ${wall} s beside the others (exit $rc)"
  if [ $rc -ne 0 ]; then
    st=1
    echo "---- $t failed; log: $log"
    grep -E "ERROR|SUMMARY|check failed|Test unit written|^    #[0-9]" "$log" | head -40
  fi
  echo $st >"$tmp/$t.status"
}
for t in "${targets[@]}"; do
  run_target "$t" &
done
wait
status=0
for t in "${targets[@]}"; do
  cat "$tmp/$t.report"
  [ "$(cat "$tmp/$t.status" 2>/dev/null || echo 1)" = 0 ] || status=1
done
exit $status
