#!/bin/sh
# Installs the Debian packages a target needs, only those missing.
# usage: scripts/install-deps.sh build|test|bench
set -eu
build="gcc make libc-ares-dev libcrypt-dev pkg-config libkrb5-dev"
test="$build clang clang-format clang-tools lcov libclang-rt-14-dev libcmocka-dev python3 python3-pytest python3-socks
      python3-prometheus-client curl proxychains4 haproxy nodejs npm node-socks groff-base systemd
      iproute2 procps krb5-kdc krb5-admin-server krb5-user python3-gssapi
      build-essential debhelper dpkg-dev lintian mmdebstrap fakeroot prometheus logrotate binutils dante-server
      tinyproxy"
bench="$build python3 microsocks dante-server haproxy gnuplot-nox procps"
case "${1:-build}" in
  build) want=$build ;;
  test) want=$test ;;
  bench) want=$bench ;;
  *) echo "usage: $0 build|test|bench" >&2; exit 2 ;;
esac
missing=""
for p in $want; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "install-deps: missing Debian packages:$missing (run as root to install them)" >&2
  exit 1
fi
echo "install-deps: installing$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# dante-server's postinst tries to start a daemon that has no config yet; that is not our failure.
apt-get install -y -qq --no-install-recommends $missing >/dev/null || apt-get install -y -qq -f >/dev/null
# Errors stay on stderr; a failed install shows which package, and why.
