#!/bin/sh
# The whole test suite (what `make test` and CI run):
#   1. install the Debian packages and the npm client the tests use;
#   2. release build: cmocka unit tests, then the integration tests;
#   3. the same under ASan+UBSan (clang), failing on any report, with the
#      coverage run of step 6 beside it;
#   4. a ThreadSanitizer build through the tests that cross threads (reload,
#      auth pool, metrics, shared limits, the route hold-down table);
#   5. formatting (clang-format), no include cycle in src/ and the clang
#      static analyzer, zero reports;
#   6. line and branch coverage of unit + integration tests against floors;
#   7. every libFuzzer target for a bounded time (FUZZ_SECONDS, default 60).
set -eu
cd "$(dirname "$0")/.."
scripts/install-deps.sh test
# The npm client pinned in package-lock.json. When the registry cannot be
# used (no route, or a TLS-intercepting egress whose CA this system does not
# carry), Debian's build of the same package stands in, and says so.
if ! (cd tests/integration && npm ci --no-audit --no-fund --silent); then
  echo "test.sh: npm ci failed; using Debian's node-socks $(sed -n 's/.*"version": *"\(.*\)".*/\1/p' /usr/share/nodejs/socks/package.json) instead"
  mkdir -p tests/integration/node_modules
  ln -sfn /usr/share/nodejs/socks tests/integration/node_modules/socks
  export NODE_PATH=/usr/share/nodejs
fi

echo "== release build: unit tests"
make -s all
make -s unit
echo "== release build: integration tests"
SOCKS5D_BIN="$PWD/bin/socks5d" /usr/bin/python3 -m pytest -q tests/integration

echo "== ASan+UBSan build: unit and integration tests"
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:halt_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
make -s CC=clang CFLAGS="-O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all" \
  BUILD=build/asan BIN=build/asan/socks5d build/asan/socks5d unit
# The coverage build and its run of both suites go on meanwhile: the two
# integration suites mostly wait on sockets and timers, so side by side they
# take little more than the longer one (its report is printed below).
mkdir -p build
scripts/coverage.sh >build/coverage.log 2>&1 &
coverage=$!
# test_package.py builds and installs its own package (no SOCKS5D_BIN): once is enough.
asan=0
SOCKS5D_BIN="$PWD/build/asan/socks5d" /usr/bin/python3 -m pytest -q tests/integration \
  --ignore=tests/integration/test_package.py || asan=$?
cov=0
wait "$coverage" || cov=$?
echo "== coverage (run beside the ASan suite)"
cat build/coverage.log
[ "$asan" = 0 ] || { echo "test.sh: ASan integration tests failed"; exit 1; }
[ "$cov" = 0 ] || { echo "test.sh: coverage run failed"; exit 1; }

echo "== ThreadSanitizer build: cross-thread integration tests"
# A second SIGTERM exits at once by design, without joining the workers.
export TSAN_OPTIONS="halt_on_error=1 report_thread_leaks=0"
make -s tsan
SOCKS5D_BIN="$PWD/build/tsan/socks5d" /usr/bin/python3 -m pytest -q tests/integration/test_reload.py tests/integration/test_limits.py \
  tests/integration/test_ops.py tests/integration/test_routes_failover.py tests/integration/test_balance.py

echo "== formatting and static analysis"
make -s format-check
python3 scripts/include-cycles.py
make -s analyze

echo "== fuzzing"
make -s fuzz FUZZ_SECONDS="${FUZZ_SECONDS:-60}"
echo "== all tests passed"
