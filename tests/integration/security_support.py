"""Helpers for the security tests (test_rules, test_limits, test_hardening,
test_stress): raw SOCKS5 exchanges from a chosen source address, replies read
without assuming success, /proc inspection of the server, a small UDP echo
peer, and start-up runs that are expected to fail.

Everything here has a deadline; servers are started through the conftest
`socks5d` factory (which stops and checks them), except the runs that must
exit at start-up (run_expect_exit), which are bounded by a timeout that kills
the process.
"""
import os
import pwd
import socket
import struct
import subprocess
import threading
import time
import warnings

from harness import (UdpEcho, SANITIZER_MARKERS, USERS, greeting, read_reply, read_until_closed,
                     recv_exact, request, scaled, userpass, wait_until)

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import crypt  # libxcrypt's crypt(3), the one socks5d uses

REP_SUCCEEDED = 0
REP_GENERAL_FAILURE = 1
REP_NOT_ALLOWED = 2
REP_CONN_REFUSED = 5

CMD_CONNECT, CMD_BIND, CMD_UDP = 1, 2, 3

ALICE = ("alice", USERS["alice"])
BOB = ("bob", USERS["bob"])

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


# --------------------------------------------------------------------------
# launching the server under a wrapper


class Wrapped:
    """Runs the server under a command prefix (prlimit, setpriv) through the
    `netns=` hook of the socks5d factory: Socks5d only needs `exec_prefix`
    (prepended to its argv; the wrappers used here exec the server, so the
    PID stays the server's) and `socket()` (client sockets: plain ones)."""

    def __init__(self, *prefix):
        self.exec_prefix = list(prefix)

    def socket(self, family=socket.AF_INET):
        return socket.socket(family, socket.SOCK_STREAM)


def as_user(name, exe=None):
    """A wrapper that starts the server as `name` (uid, gid, no groups).
    With `exe`, that copy of the binary runs instead of the one the factory
    names (which `name` may not be allowed to reach, e.g. under /root): a
    shell drops the factory's binary from the arguments and execs `exe`."""
    pw = pwd.getpwnam(name)
    prefix = ["setpriv", f"--reuid={pw.pw_uid}", f"--regid={pw.pw_gid}", "--clear-groups", "--"]
    if exe:
        prefix += ["/bin/sh", "-c", 'shift; exec "$0" "$@"', str(exe)]
    return Wrapped(*prefix)


def with_nofile(n):
    """A wrapper that starts the server with RLIMIT_NOFILE n:n."""
    return Wrapped("prlimit", f"--nofile={n}:{n}", "--")


def run_expect_exit(binary, *args, timeout=None):
    """Runs socks5d to completion (it is expected to refuse to start);
    a server that keeps running is killed at the deadline and reported.
    Returns the CompletedProcess; fails on a sanitizer report."""
    timeout = timeout or scaled(10)
    try:
        r = subprocess.run([binary, *args], capture_output=True, text=True, timeout=timeout,
                           stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as e:  # subprocess.run killed it
        raise AssertionError(f"socks5d {' '.join(args)} still running after {timeout:.0f}s "
                             f"(expected it to refuse to start); stderr:\n{e.stderr}")
    reports = [m for m in SANITIZER_MARKERS if m in r.stderr]
    assert not reports, f"sanitizer report from socks5d {' '.join(args)}:\n{r.stderr}"
    return r




def sha512(password, rounds=None):
    """A sha512-crypt hash; many rounds make a verification slow on purpose."""
    return crypt.crypt(password, crypt.mksalt(crypt.METHOD_SHA512, rounds=rounds))


# --------------------------------------------------------------------------
# clients


def connect_from(srv, source=None, timeout=None):
    """A TCP connection to the server (in its network namespace, if it runs
    in one), from `source` (an address on this host, e.g. 127.0.0.2) when
    given."""
    host = srv.addr[0]
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = srv.socket(family)
    try:
        s.settimeout(timeout or scaled(5))
        if source:
            s.bind((source, 0))
        s.connect(srv.addr)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except BaseException:
        s.close()
        raise
    return s


def negotiate(sock, auth=None):
    """Greeting (offering userpass when auth=(user, pass), else no auth) and,
    with auth, the RFC 1929 exchange. Returns the 2-byte RFC 1929 status
    (b'\\x01\\x00' on success) or None without auth."""
    sock.sendall(greeting((0x02,) if auth else (0x00,)))
    m = recv_exact(sock, 2)
    assert m == (b"\x05\x02" if auth else b"\x05\x00"), f"method reply {m!r}"
    if not auth:
        return None
    sock.sendall(userpass(*auth))
    return recv_exact(sock, 2)


def ask(srv, host, port, cmd=CMD_CONNECT, auth=None, source=None):
    """Greeting, optional login (which must succeed), one request; returns
    (rep, bnd_host, bnd_port, sock). The caller closes sock."""
    s = connect_from(srv, source)
    try:
        st = negotiate(s, auth)
        if auth:
            assert st == b"\x01\x00", f"login as {auth[0]} answered {st!r}"
        s.sendall(request(host, port, cmd=cmd))
        rep, bh, bp, _ = read_reply(s)
    except BaseException:
        s.close()
        raise
    return rep, bh, bp, s


def ask_rep(srv, host, port, cmd=CMD_CONNECT, auth=None, source=None):
    """Like ask(), but returns only the REP code; a refusal must also end the
    connection."""
    rep, _, _, s = ask(srv, host, port, cmd, auth, source)
    with s:
        if rep != REP_SUCCEEDED:
            assert read_until_closed(s, scaled(3)) == b"", "bytes after a refusal"
    return rep


def refused_before_greeting(sock, timeout=None):
    """Sends a greeting on a connection the server should already have
    dropped (or drops on sight) and checks nothing ever comes back: EOF or a
    reset, and not one byte."""
    try:
        sock.sendall(greeting())
    except (BrokenPipeError, ConnectionResetError):
        return  # already closed by the server: nothing was answered
    data = read_until_closed(sock, timeout or scaled(3))
    assert data == b"", f"the server answered a connection it should have refused: {data!r}"


def echo_bulk(sock, data):
    """Pushes data through an echo tunnel while reading the echo back (so
    neither side's buffers fill up) and checks it comes back intact."""
    got = bytearray()
    sent = 0
    while sent < len(data) or len(got) < len(data):
        if sent < len(data):
            sent += sock.send(data[sent:sent + 65536])
        chunk = sock.recv(1 << 20)
        assert chunk, "tunnel closed mid-transfer"
        got += chunk
    assert bytes(got) == data


def echo_ok(sock, payload=b"ping"):
    sock.sendall(payload)
    assert recv_exact(sock, len(payload)) == payload


def rst_close(sock):
    """Closes with a RST instead of a FIN."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    sock.close()


def closes_all(socks):
    for s in socks:
        try:
            s.close()
        except OSError:
            pass
    socks.clear()


# --------------------------------------------------------------------------
# UDP


def udp_header(host, port):
    """A SOCKS5 UDP request header for host:port (IPv4/IPv6 literals as
    addresses, anything else as a domain)."""
    return b"\x00\x00\x00" + request(host, port)[3:]


def udp_unwrap(dgram):
    """(host, port, payload) from a relayed datagram."""
    assert dgram[:3] == b"\x00\x00\x00", dgram[:8]
    atyp = dgram[3]
    if atyp == 1:
        host = socket.inet_ntop(socket.AF_INET, dgram[4:8])
        rest = dgram[8:]
    elif atyp == 4:
        host = socket.inet_ntop(socket.AF_INET6, dgram[4:20])
        rest = dgram[20:]
    else:
        n = dgram[4]
        host = dgram[5:5 + n].decode()
        rest = dgram[5 + n:]
    return host, struct.unpack(">H", rest[:2])[0], rest[2:]


# --------------------------------------------------------------------------
# /proc


def proc_status(pid):
    """/proc/PID/status as a dict of field -> text."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            out[k] = v.strip()
    return out


def cpu_seconds(pid):
    """utime + stime of the whole process (all threads), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        stat = f.read()
    fields = stat[stat.rindex(")") + 2:].split()
    # fields[0] is field 3 (state): utime is field 14, stime field 15.
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def rss_bytes(pid):
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * PAGE


def fd_count(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def fd_targets(pid):
    out = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            out.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
        except OSError:
            pass
    return sorted(out)


def limit_row(pid, name):
    """(soft, hard) of one row of /proc/PID/limits, e.g. 'Max core file size'."""
    with open(f"/proc/{pid}/limits") as f:
        for line in f:
            if line.startswith(name):
                parts = line[len(name):].split()
                return parts[0], parts[1]
    raise AssertionError(f"no '{name}' in /proc/{pid}/limits")


def is_pipe(target):
    return target.startswith("pipe:")


def fd_split(pid):
    """(pipe fds, all other fds) the server holds. Idle splice pipes are kept
    in a bounded per-worker pool, so they are counted apart: the other
    descriptors (sockets, files, epoll, eventfd) must come back to their
    level exactly, pipes only within the pool's bound."""
    t = fd_targets(pid)
    pipes = sum(1 for x in t if is_pipe(x))
    return pipes, len(t) - pipes


def other_fds(pid):
    return fd_split(pid)[1]


# Idle splice pipes a worker keeps (POOL_MAX_FREE in src/worker.c), two fds each.
POOLED_PIPES_PER_WORKER = 64


def wait_accepted(srv, base, n, timeout=None):
    """Waits until the server holds n more non-pipe descriptors than `base`
    (other_fds before the connections were made): n connections that send
    nothing are accepted (and hold whatever slot accept gives them) once it
    does. Connections complete in the kernel before the server accepts them,
    and the workers accept from separate queues, so without this a later
    connection could be accepted before an earlier one."""
    wait_until(lambda: other_fds(srv.pid) >= base + n, timeout or scaled(5), interval=0.01,
               what=f"the server to accept {n} connection(s)")


def settle_fd_count(pid, timeout, at_most, count=fd_count, what="fd count"):
    """Waits until count(pid) (by default: every descriptor) is at most
    `at_most`; returns it."""
    try:
        wait_until(lambda: count(pid) <= at_most, timeout, interval=0.05,
                   what=f"{what} <= {at_most}")
        return count(pid)
    except AssertionError:
        raise AssertionError(f"{what} {count(pid)} stays above {at_most}: {fd_targets(pid)}")


def timed(fn, *args, **kw):
    t0 = time.monotonic()
    r = fn(*args, **kw)
    return r, time.monotonic() - t0
