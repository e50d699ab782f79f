#!/bin/sh
# Line and branch coverage of the unit and integration tests together.
#   usage: scripts/coverage.sh [FLOORS]
# Builds socks5d and the unit tests with gcc --coverage into build/cov, runs
# both suites against that build, writes the lcov report (HTML included) to
# build/coverage/ and fails when a floor is not met. FLOORS defaults to
# scripts/coverage-floors: "FILE MIN-LINE-PERCENT" lines, FILE "total" for
# the whole of src/.
set -eu
cd "$(dirname "$0")/.."
floors=${1:-scripts/coverage-floors}
out=build/coverage
rm -rf build/cov "$out"
mkdir -p "$out"
make -s CC=gcc CFLAGS="-O0 -g --coverage" BUILD=build/cov BIN=build/cov/socks5d build/cov/socks5d unit
# test_package.py tests its own package build, not build/cov/socks5d.
SOCKS5D_BIN="$PWD/build/cov/socks5d" /usr/bin/python3 -m pytest -q tests/integration \
  --ignore=tests/integration/test_package.py
lcov -q --rc lcov_branch_coverage=1 --capture --directory build/cov --output-file "$out/all.info"
lcov -q --rc lcov_branch_coverage=1 --extract "$out/all.info" "$PWD/src/*" --output-file "$out/src.info"
genhtml -q --branch-coverage --output-directory "$out/html" "$out/src.info"
# Per-file table: file, lines hit/found, branches hit/found.
awk -F: '
  /^SF:/ { f = $2; sub(".*/src/", "", f) }
  /^LH:/ { lh[f] = $2; tlh += $2 } /^LF:/ { lf[f] = $2; tlf += $2 }
  /^BRH:/ { bh[f] = $2; tbh += $2 } /^BRF:/ { bf[f] = $2; tbf += $2 }
  END {
    for (f in lf) printf "%-14s lines %6.1f%% (%d/%d)  branches %6.1f%%\n", f,
      100 * lh[f] / lf[f], lh[f], lf[f], bf[f] ? 100 * bh[f] / bf[f] : 100
    printf "%-14s lines %6.1f%% (%d/%d)  branches %6.1f%%\n", "total",
      100 * tlh / tlf, tlh, tlf, 100 * tbh / tbf
  }' "$out/src.info" | sort >"$out/summary.txt"
cat "$out/summary.txt"
# Every floor must hold.
rc=0
while read -r file min; do
  case "$file" in ''|'#'*) continue ;; esac
  got=$(awk -v f="$file" '$1 == f { sub("%", "", $3); print $3 }' "$out/summary.txt")
  if [ -z "$got" ]; then
    echo "coverage: no data for $file"; rc=1
  elif awk -v g="$got" -v m="$min" 'BEGIN { exit !(g < m) }'; then
    echo "coverage: $file at $got% lines, below its floor of $min%"; rc=1
  fi
done <"$floors"
[ $rc -eq 0 ] && echo "coverage: every floor met (report in $out/html/index.html)"
exit $rc
