#!/bin/sh
# Runs each cmocka test binary; every one prints its own summary. Fails if any fails.
rc=0
for t in "$@"; do
  "$t" || rc=1
done
exit $rc
