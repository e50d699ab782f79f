"""Fault injection (issue 10, finding 8): with epoll_ctl, accept4, socket,
splice and pipe2 failing now and then, socks5d must never close a descriptor
twice (in a threaded server the second close can hit another session's reused
descriptor), must not crash, must not leak, and must serve normally once the
faults stop.

The faults come from faultinject/shim.c, loaded with LD_PRELOAD; it also
tracks every descriptor the process opens and closes and reports double
closes (see the comment at its top)."""
import os
import socket
import struct
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from harness import (UdpEcho, greeting, read_reply, recv_exact, request, scaled)
from security_support import (CMD_BIND, CMD_UDP, POOLED_PIPES_PER_WORKER, REP_SUCCEEDED, Wrapped,
                              connect_from, echo_bulk, echo_ok, fd_split, other_fds,
                              settle_fd_count)

SHIM = Path(__file__).parent / "faultinject" / "shim.c"
CALLS = ("epoll_ctl", "accept4", "socket", "splice", "pipe2")
WORKERS = 2
ROUNDS = 3
BULK = 600 * 1024  # past RELAY_SPLICE_AFTER: spliced


@pytest.fixture(scope="module")
def shim(tmp_path_factory):
    out = tmp_path_factory.mktemp("shim") / "faultinject.so"
    r = subprocess.run(["cc", "-shared", "-fPIC", "-O1", "-Wall", "-Wextra", "-Werror", "-o",
                        str(out), str(SHIM), "-ldl"], capture_output=True, text=True,
                       timeout=scaled(60))
    assert r.returncode == 0, r.stderr
    return out


def injected(shim, report, arm):
    # ASan insists on being first in the library list; the shim only wraps
    # libc calls, so the order does not matter here.
    asan = [o for o in os.environ.get("ASAN_OPTIONS", "").split(":") if o]
    asan.append("verify_asan_link_order=0")
    return Wrapped("env", f"LD_PRELOAD={shim}", f"FAULT_REPORT={report}", f"FAULT_ARM={arm}",
                   f"FAULT_CALLS={','.join(CALLS)}", "FAULT_EVERY=7",
                   "ASAN_OPTIONS=" + ":".join(asan))


# ---------------------------------------------------------------- clients


def socks(srv, host, port, cmd=1):
    """Greeting and request; returns (rep, bnd host, bnd port, sock)."""
    s = connect_from(srv, timeout=scaled(5))
    try:
        s.sendall(greeting() + request(host, port, cmd=cmd))
        if recv_exact(s, 2) != b"\x05\x00":
            raise EOFError("bad method reply")
        rep, host, port, _ = read_reply(s)
    except BaseException:
        s.close()
        raise
    return rep, host, port, s


def do_connect(srv, echo, udp_peer):
    rep, _, _, s = socks(srv, *echo.addr)
    with s:
        assert rep == REP_SUCCEEDED, rep
        echo_ok(s, b"through the tunnel")


def do_bulk(srv, echo, udp_peer, size=BULK):
    rep, _, _, s = socks(srv, *echo.addr)
    with s:
        assert rep == REP_SUCCEEDED, rep
        echo_bulk(s, os.urandom(size))


def do_bind(srv, echo, udp_peer):
    rep, host, port, s = socks(srv, "127.0.0.1", 0, cmd=CMD_BIND)
    with s:
        assert rep == REP_SUCCEEDED, rep
        with socket.create_connection((host, port), timeout=scaled(5)) as peer:
            assert read_reply(s)[0] == REP_SUCCEEDED
            peer.sendall(b"peer")
            assert recv_exact(s, 4) == b"peer"


def do_udp(srv, echo, udp_peer):
    rep, host, port, s = socks(srv, "0.0.0.0", 0, cmd=CMD_UDP)
    with s, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
        assert rep == REP_SUCCEEDED, rep
        u.settimeout(scaled(2))
        hdr = b"\x00\x00\x00\x01" + socket.inet_aton(udp_peer.addr[0]) + \
            struct.pack(">H", udp_peer.addr[1])
        u.sendto(hdr + b"dgram", (host, port))
        assert u.recvfrom(65536)[0] == hdr + b"dgram"


KINDS = (do_connect, do_bulk, do_bind, do_udp)


def run_load(srv, echo, udp_peer, rounds, per_kind, kinds=KINDS):
    """Runs rounds x per_kind sessions of every kind, 16 at a time; returns
    (succeeded, failed). Every client operation has a timeout."""
    def one(fn):
        try:
            fn(srv, echo, udp_peer)
            return True
        except (OSError, EOFError, AssertionError):
            return False

    jobs = [k for _ in range(rounds) for k in kinds for _ in range(per_kind)]
    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(one, jobs))
    return results.count(True), results.count(False)


def report_lines(report):
    return report.read_text().splitlines() if report.exists() else []


def test_injected_faults_no_double_close_no_leak_then_serves(socks5d, echo, shim, tmp_path):
    report, arm = tmp_path / "faults.report", tmp_path / "faults.armed"
    srv = socks5d("--auth", "none", "-w", str(WORKERS), "--timeout-connect", "3s",
                  netns=injected(shim, report, arm))
    with UdpEcho() as udp_peer:
        # Unarmed: everything works, and the descriptors settle to a baseline
        # (no bulk yet: the pipe pool stays empty, so bulk tunnels under
        # injection have to make pipes).
        ok, failed = run_load(srv, echo, udp_peer, 1, 2, (do_connect, do_bind, do_udp))
        assert failed == 0 and ok == 6
        baseline = other_fds(srv.pid)

        arm.write_text("")
        t0 = time.monotonic()
        ok, failed = run_load(srv, echo, udp_peer, ROUNDS, 8)
        took = time.monotonic() - t0
        arm.unlink()
        lines = report_lines(report)
        counts = {c: lines.count(f"inject {c}") for c in CALLS}
        print(f"\nunder injection: {ok} sessions ok, {failed} failed in {took:.1f}s; "
              f"injected {counts}")
        assert srv.alive()
        for c in CALLS:
            assert counts[c] > 0, f"no {c} failure was injected: {counts}"
        assert ok > 0, "nothing worked under injection"
        # The one property of this test: no descriptor closed twice.
        bad = [l for l in lines if not l.startswith("inject ")]
        assert not bad, f"descriptor errors under injection: {bad[:20]}"

        # Faults gone: no descriptor leaked, and every kind is served again.
        settle_fd_count(srv.pid, scaled(10), baseline, count=other_fds, what="non-pipe fd count")
        assert fd_split(srv.pid)[0] <= 2 * POOLED_PIPES_PER_WORKER * WORKERS
        ok, failed = run_load(srv, echo, udp_peer, 1, 4)
        assert failed == 0 and ok == 16
    bad = [l for l in report_lines(report) if not l.startswith("inject ")]
    assert not bad, f"descriptor errors: {bad[:20]}"
