"""Metrics starvation (issue 10, finding 9): idle connections to the metrics
port must not lock a load balancer's health check out, and they must not stay
open for ever either."""
import socket
import time

from harness import free_port, read_until_closed, scaled
from security_support import fd_count

IDLE = 100
REQUEST_DEADLINE = 2.0  # metrics.c: REQUEST_TIMEOUT_MS


def healthz(port, timeout):
    """GET /healthz; returns (status line, seconds from connect to the whole answer)."""
    t0 = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(b"GET /healthz HTTP/1.0\r\n\r\n")
        answer = read_until_closed(s, timeout)
    return answer.split(b"\r\n", 1)[0], time.monotonic() - t0


def idle_connections(port, n):
    conns = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=scaled(5))
        conns.append(s)
    return conns


def still_open(s):
    """True if the server has not closed s (no EOF, no reset queued)."""
    s.setblocking(False)
    try:
        s.recv(1)  # b"": closed; bytes: the server spoke unasked
        return False
    except BlockingIOError:
        return True
    except ConnectionResetError:
        return False
    finally:
        s.setblocking(True)


def test_hundred_idle_connections_leave_healthz_answering(socks5d):
    port = free_port()
    srv = socks5d("--auth", "none", "--metrics", f"127.0.0.1:{port}", "-w", "1")
    status, _ = healthz(port, scaled(5))
    assert status == b"HTTP/1.0 200 OK"
    base = fd_count(srv.pid)
    conns = idle_connections(port, IDLE)
    try:
        # Give the server a moment to accept them all (bounded; checked below).
        deadline = time.monotonic() + scaled(2)
        while fd_count(srv.pid) < base + IDLE and time.monotonic() < deadline:
            time.sleep(0.02)
        # The health check answers at once, several times over...
        for _ in range(3):
            status, took = healthz(port, scaled(5))
            assert status == b"HTTP/1.0 200 OK", status
            assert took < 0.1, f"/healthz took {took * 1000:.0f} ms next to {IDLE} idle connections"
        # ... while the server holds every idle connection.
        assert fd_count(srv.pid) >= base + IDLE
        # Nobody was pushed out to make room: below the cap, all stay open
        # until their own deadline.
        assert all(still_open(s) for s in conns)
    finally:
        t_idle = time.monotonic()
        closed = 0
        try:
            # Each idle connection is closed by its request deadline, with no
            # byte from the client needed to notice.
            for s in conns:
                left = REQUEST_DEADLINE + scaled(3) - (time.monotonic() - t_idle)
                assert read_until_closed(s, max(0.05, left)) == b""
                closed += 1
        finally:
            for s in conns:
                s.close()
    assert closed == IDLE
    status, _ = healthz(port, scaled(5))
    assert status == b"HTTP/1.0 200 OK"


def test_past_the_cap_the_oldest_idle_connection_makes_room(socks5d):
    # 300 idle connections: more than the 256 served at once. The health
    # check still gets in, because the oldest idle ones are closed for it.
    port = free_port()
    socks5d("--auth", "none", "--metrics", f"127.0.0.1:{port}", "-w", "1")
    conns = idle_connections(port, 300)
    try:
        status, took = healthz(port, scaled(5))
        assert status == b"HTTP/1.0 200 OK", status
        assert took < 0.1, f"/healthz took {took * 1000:.0f} ms next to 300 idle connections"
        assert not still_open(conns[0]), "the oldest idle connection was kept"
        assert still_open(conns[-1]), "the newest idle connection was closed"
    finally:
        for s in conns:
            s.close()
