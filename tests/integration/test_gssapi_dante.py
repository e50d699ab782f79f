"""Dante's SOCKS client with GSS-API (built from Debian's source package, see
dante_support.py) against socks5d at each protection level: a CONNECT
carrying 8 MiB each way, checked by sha256, and Dante's own log saying which
protection it used."""
import hashlib
import os
import subprocess
import sys

import pytest

import dante_support
from gss_support import REALM
from harness import scaled

# Runs under libdsocks: sends SIZE random bytes to the echo server in 64 KiB
# chunks, reading each chunk's echo before the next (libdsocks wants one
# thread of I/O per encapsulated socket), and prints both digests.
ECHO_CLIENT = r"""
import hashlib, os, socket, sys
host, port, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
data = os.urandom(size)
s = socket.create_connection((host, port), timeout=60)
got = bytearray()
for i in range(0, size, 1 << 16):
    chunk = data[i:i + (1 << 16)]
    s.sendall(chunk)
    want = len(got) + len(chunk)
    while len(got) < want:
        b = s.recv(want - len(got))
        if not b:
            sys.exit("EOF after %d bytes" % len(got))
        got += b
print(hashlib.sha256(data).hexdigest(), hashlib.sha256(bytes(got)).hexdigest())
"""

SIZE = 8 << 20


@pytest.fixture(scope="session")
def dante():
    return dante_support.build()


@pytest.mark.parametrize("enctype,level", [("clear", 0), ("integrity", 1),
                                           ("confidentiality", 2)])
def test_dante_client_through_socks5d(realm, dante, socks5d, echo, tmp_path, enctype, level):
    srv = socks5d("--auth", "gssapi", "--gssapi-keytab", realm.keytab)
    conf, log = tmp_path / "socks.conf", tmp_path / "dante.log"
    dante_support.client_conf(conf, srv.port, enctype, log)
    env = dict(dante_support.socksify_env(conf), KRB5CCNAME=realm.alice)
    r = subprocess.run([sys.executable, "-c", ECHO_CLIENT, *map(str, echo.addr), str(SIZE)],
                       env=env, capture_output=True, text=True, timeout=scaled(60))
    assert r.returncode == 0, r.stderr + (log.read_text() if log.exists() else "")
    sent, got = r.stdout.split()
    assert sent == got
    names = {0: "none", 1: "integrity", 2: "confidentiality"}
    line = srv.wait_access(1)[0]
    assert line["user"] == f"alice@{REALM}" and line["auth"] == f"gssapi/{names[level]}"
    assert int(line["up"]) == SIZE and int(line["down"]) == SIZE
    text = log.read_text()
    assert f"using gssapi {enctype} protection ({level})" in text, text[-2000:]
