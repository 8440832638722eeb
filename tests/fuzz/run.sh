#!/usr/bin/env bash
# tests/fuzz/run.sh BUILD_DIR SECONDS: runs each fuzz target built in
# BUILD_DIR/tests/fuzz for SECONDS, starting from a temporary copy of its
# seed corpus (tests/fuzz/corpus/<target>; the copy grows, the seeds stay)
# after replaying its regressions (tests/fuzz/regressions/<target>), with
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
status=0
for t in fuzz_http fuzz_values fuzz_config fuzz_multipart fuzz_redis fuzz_json; do
  bin=$bindir/$t
  if [ ! -x "$bin" ]; then
    echo "$t: not built in $build (configure with -DLUAHOST_FUZZ=ON)" >&2
    status=1
    continue
  fi
  mkdir -p "$tmp/$t" "$bindir/artifacts/$t"
  cp "$here/corpus/$t/"* "$tmp/$t/" 2>/dev/null || true
  log=$bindir/artifacts/$t.log
  rc=0
  regs=("$here/regressions/$t/"*)
  if [ -e "${regs[0]}" ]; then   # known crashers first: each must now pass
    if ! "$bin" -detect_leaks=1 -timeout=10 "${regs[@]}" >"$log.regressions" 2>&1; then
      status=1
      echo "---- $t: a regression input in tests/fuzz/regressions/$t still fails; log: $log.regressions" >&2
      grep -E "Running:|PANIC|ERROR|check failed" "$log.regressions" | head -10 >&2
    fi
  fi
  "$bin" -max_total_time="$secs" -detect_leaks=1 -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$bindir/artifacts/$t/" \
    "$tmp/$t" >"$log" 2>&1 || rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  echo "$t: ${execs:-?} executions in ${secs} s (exit $rc)"
  if [ $rc -ne 0 ]; then
    status=1
    echo "---- $t failed; log: $log" >&2
    grep -E "ERROR|SUMMARY|check failed|Test unit written|^    #[0-9]" "$log" | head -40 >&2
  fi
done
exit $status
