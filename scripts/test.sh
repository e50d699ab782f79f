#!/bin/sh
# The whole test suite (what `make test` and CI run):
#   1. install the Debian packages and the npm client the tests use;
#   2. release build: cmocka unit tests, then the integration tests;
#   3. the same under ASan+UBSan (clang), failing on any report;
#   4. every libFuzzer target for a bounded time (FUZZ_SECONDS, default 60).
set -eu
cd "$(dirname "$0")/.."
scripts/install-deps.sh test
if [ -f tests/integration/package.json ]; then
  (cd tests/integration && npm ci --no-audit --no-fund --silent)
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
SOCKS5D_BIN="$PWD/build/asan/socks5d" /usr/bin/python3 -m pytest -q tests/integration

echo "== fuzzing"
make -s fuzz FUZZ_SECONDS="${FUZZ_SECONDS:-60}"
echo "== all tests passed"
