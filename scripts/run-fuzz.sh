#!/bin/sh
# usage: run-fuzz.sh SECONDS TARGET...   Runs each libFuzzer target on its seed
# corpus (tests/fuzz/corpus/NAME) plus its regression inputs for SECONDS divided
# among the targets (at least 10 s each). Fails on any crash, leak or UB report.
set -u
total=$1; shift
per=$((total / $#)); [ "$per" -ge 10 ] || per=10
rc=0
for t in "$@"; do
  name=$(basename "$t" | sed 's/^fuzz_//')
  seeds="tests/fuzz/corpus/$name"
  work="build/fuzz/work-$name"
  log="build/fuzz/$name.log"
  mkdir -p "$work" "$seeds"
  if "$t" -max_total_time="$per" -print_final_stats=1 -artifact_prefix="build/fuzz/$name-" \
      "$work" "$seeds" >"$log" 2>&1; then
    echo "fuzz $name: ok, $(grep -ao 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$') executions in ${per}s"
  else
    echo "fuzz $name: FAILED (see $log)"; tail -n 40 "$log"; rc=1
  fi
done
exit $rc
