"""Dante with GSS-API (client and server, built from Debian's source package,
see dante_support.py) and socks5d side by side.

- Dante's client against socks5d and against Dante's server at each
  protection level: a CONNECT carrying 8 MiB each way, checked by sha256,
  and Dante's own log saying which protection it used; and UDP at
  integrity and confidentiality (datagrams echoed, each one wrapped).
- The independent python3-gssapi client against both servers: what both
  support must pass on both. Where they differ, each server's own answer is
  asserted: socks5d answers a refused context with the RFC 1961 abort
  (01 ff), Dante closes without it."""
import hashlib
import os
import socket
import subprocess
import sys

import pytest

import dante_support
from gss_support import REALM, GssClient, gss_msg
from harness import UdpEcho, read_until_closed, recv_exact, scaled

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


@pytest.fixture(params=["socks5d", "dante"])
def server(request, realm, dante, socks5d, tmp_path):
    """(kind, (host, port)) of a server taking GSS-API at every level."""
    if request.param == "socks5d":
        srv = socks5d("--auth", "gssapi", "--gssapi-keytab", realm.keytab)
        yield "socks5d", srv.addr
        return
    sockd = dante_support.Sockd(tmp_path, realm.keytab)
    try:
        yield "dante", sockd.wait_ready().addr
    finally:
        sockd.stop()


def run_echo_client(conf, realm, echo):
    env = dict(dante_support.socksify_env(conf), KRB5CCNAME=realm.alice)
    return subprocess.run([sys.executable, "-c", ECHO_CLIENT, *map(str, echo.addr), str(SIZE)],
                          env=env, capture_output=True, text=True, timeout=scaled(60))


@pytest.mark.parametrize("enctype,level", [("clear", 0), ("integrity", 1),
                                           ("confidentiality", 2)])
def test_dante_client_through_socks5d(realm, dante, socks5d, echo, tmp_path, enctype, level):
    srv = socks5d("--auth", "gssapi", "--gssapi-keytab", realm.keytab)
    conf, log = tmp_path / "socks.conf", tmp_path / "dante.log"
    dante_support.client_conf(conf, srv.port, enctype, log)
    r = run_echo_client(conf, realm, echo)
    assert r.returncode == 0, r.stderr + (log.read_text() if log.exists() else "")
    sent, got = r.stdout.split()
    assert sent == got
    names = {0: "none", 1: "integrity", 2: "confidentiality"}
    line = srv.wait_access(1)[0]
    assert line["user"] == f"alice@{REALM}" and line["auth"] == f"gssapi/{names[level]}"
    assert int(line["up"]) == SIZE and int(line["down"]) == SIZE
    text = log.read_text()
    assert f"using gssapi {enctype} protection ({level})" in text, text[-2000:]


@pytest.mark.parametrize("enctype,level", [("clear", 0), ("integrity", 1),
                                           ("confidentiality", 2)])
def test_dante_client_through_dante_server(realm, dante, echo, tmp_path, enctype, level):
    """The test bed itself: Dante's client and server agree at every level."""
    sockd = dante_support.Sockd(tmp_path, realm.keytab).wait_ready()
    try:
        conf, log = tmp_path / "socks.conf", tmp_path / "dante.log"
        dante_support.client_conf(conf, sockd.port, enctype, log)
        r = run_echo_client(conf, realm, echo)
        assert r.returncode == 0, r.stderr + (log.read_text() if log.exists() else "")
        sent, got = r.stdout.split()
        assert sent == got
        assert f"using gssapi {enctype} protection ({level})" in log.read_text()
    finally:
        sockd.stop()


@pytest.mark.parametrize("level,nec", [(1, False), (2, False), (0, True)],
                         ids=["integrity", "confidentiality", "nec-clear"])
def test_python_client_on_both_servers(realm, server, echo, level, nec):
    kind, addr = server
    data = os.urandom(1 << 20)
    with socket.create_connection(addr, timeout=scaled(10)) as s:
        c = GssClient(s, realm.alice)
        assert c.handshake(level, nec) == level
        assert c.request(*echo.addr)[0] == 0
        c.send(data)
        assert hashlib.sha256(c.recv_exact(len(data))).digest() == hashlib.sha256(data).digest()


def test_garbage_context_token_on_both_servers(realm, server):
    kind, addr = server
    with socket.create_connection(addr, timeout=scaled(10)) as s:
        s.sendall(b"\x05\x01\x01" + gss_msg(1, b"\x60\x82not a kerberos token"))
        assert recv_exact(s, 2) == b"\x05\x01"
        rest = read_until_closed(s, scaled(5))
    # socks5d sends the RFC 1961 abort; Dante closes without it.
    assert rest == (b"\x01\xff" if kind == "socks5d" else b"")


def test_tampered_wrapped_message_closes_on_both_servers(realm, server, echo):
    kind, addr = server
    with socket.create_connection(addr, timeout=scaled(10)) as s:
        c = GssClient(s, realm.alice)
        c.handshake(1)
        assert c.request(*echo.addr)[0] == 0
        token = bytearray(c.ctx.wrap(b"hello", False).message)
        token[-1] ^= 1
        s.sendall(gss_msg(3, bytes(token)))
        assert read_until_closed(s, scaled(5)) == b""


def test_ticket_for_another_service_on_both_servers(realm, server):
    kind, addr = server
    with socket.create_connection(addr, timeout=scaled(10)) as s:
        c = GssClient(s, realm.alice, service="host@localhost")
        c.select_method()
        token = c.ctx.step()
        s.sendall(gss_msg(1, token))
        rest = read_until_closed(s, scaled(5))
    assert rest == (b"\x01\xff" if kind == "socks5d" else b"")


# Runs under libdsocks: sends datagrams of a few sizes to a UDP echo peer and
# checks each answer (and where it came from).
UDP_CLIENT = r"""
import os, socket, sys
host, port = sys.argv[1], int(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(20)
for size in (1, 1000, 8000):
    p = os.urandom(size)
    s.sendto(p, (host, port))
    d, src = s.recvfrom(65536)
    if d != p or src[1] != port:
        sys.exit("datagram of %d bytes came back as %d bytes from %r" % (size, len(d), src))
print("ok")
"""


def run_udp_client(conf, log, realm):
    """Dante's client sends UDP_CLIENT's datagrams; returns what the echo
    peer received."""
    env = dict(dante_support.socksify_env(conf), KRB5CCNAME=realm.alice)
    with UdpEcho() as peer:
        r = subprocess.run([sys.executable, "-c", UDP_CLIENT, *map(str, peer.addr)], env=env,
                           capture_output=True, text=True, timeout=scaled(60))
        assert r.returncode == 0, r.stderr + (log.read_text() if log.exists() else "")
        return list(peer.received)


@pytest.mark.parametrize("enctype,level", [("integrity", 1), ("confidentiality", 2)])
def test_dante_client_udp_through_socks5d(realm, dante, socks5d, tmp_path, enctype, level):
    srv = socks5d("--auth", "gssapi", "--gssapi-keytab", realm.keytab)
    conf, log = tmp_path / "socks.conf", tmp_path / "dante.log"
    dante_support.client_conf(conf, srv.port, enctype, log)
    assert len(run_udp_client(conf, log, realm)) == 3
    line = srv.wait_access(1)[0]
    assert line["cmd"] == "udp" and line["user"] == f"alice@{REALM}"
    assert (line["dgrams_up"], line["dgrams_down"], line["dropped"]) == ("3", "3", "0")
    text = log.read_text()
    assert f"using gssapi {enctype} protection ({level})" in text
    assert "command 3, reply 0" in text, text[-2000:]  # the association itself


@pytest.mark.parametrize("enctype,level", [("integrity", 1), ("confidentiality", 2)])
def test_dante_client_udp_through_dante_server(realm, dante, tmp_path, enctype, level):
    """The test bed for the test above: Dante's own server."""
    sockd = dante_support.Sockd(tmp_path, realm.keytab).wait_ready()
    try:
        conf, log = tmp_path / "socks.conf", tmp_path / "dante.log"
        dante_support.client_conf(conf, sockd.port, enctype, log)
        assert len(run_udp_client(conf, log, realm)) == 3
        text = log.read_text()
        assert f"using gssapi {enctype} protection ({level})" in text
        assert "command 3, reply 0" in text, text[-2000:]
    finally:
        sockd.stop()
