"""Hostile and lazy clients: garbage, slow-loris, idle tunnels, the session
limit."""
import random
import selectors
import socket
import struct
import time

from harness import (bind_socket, greeting, open_tunnel, read_until_closed, recv_exact, request,
                     scaled, wait_until)


def rst_close(sock):
    """Closes with a RST instead of a FIN."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def garbage_cases(rng, closed_port):
    """Yields (kind, bytes to send, close with RST?). None of them can ever
    form a complete CONNECT/BIND/UDP request to anything but a refused
    loopback port, and none holds a complete domain name, so the garbage
    never makes the server send traffic off this machine (or ask DNS)."""
    full = greeting() + request("127.0.0.1", closed_port)
    not5 = [b for b in range(256) if b != 5]
    kinds = ["random", "bad-req-version", "bad-cmd", "bad-atyp", "truncated", "immediate",
             "rst", "rst-mid-handshake", "many-methods", "complete-refused", "huge",
             "auth-garbage", "truncated-domain"]
    for i in range(1000):
        kind = kinds[i % len(kinds)]
        tail = rng.randbytes(rng.randrange(0, 50))
        if kind == "random":
            data = bytes([rng.choice(not5)]) + rng.randbytes(rng.randrange(0, 200))
        elif kind == "bad-req-version":
            data = greeting() + bytes([rng.choice(not5), 1, 0]) + tail
        elif kind == "bad-cmd":
            data = greeting() + bytes([5, rng.choice([0] + list(range(4, 256))), 0]) + tail
        elif kind == "bad-atyp":
            data = greeting() + bytes([5, 1, 0, rng.choice([0, 2] + list(range(5, 256)))]) + tail
        elif kind in ("truncated", "rst-mid-handshake"):
            data = full[:rng.randrange(1, len(full))]
        elif kind in ("immediate", "rst"):
            data = b""
        elif kind == "many-methods":
            data = b"\x05\xff" + rng.randbytes(255)
        elif kind == "complete-refused":
            data = full
        elif kind == "huge":
            data = bytes([rng.choice(not5)]) + rng.randbytes(64 * 1024)
        elif kind == "auth-garbage":
            # Offers only userpass; then an RFC 1929 message that is
            # malformed, truncated, or well-formed with a random user.
            data = greeting((0x02,)) + bytes([rng.choice([1, 1, 1, 0, 2, 5])]) + tail
        else:  # truncated-domain: the length byte promises more than is sent
            data = greeting() + b"\x05\x01\x00\x03\xc8" + rng.randbytes(rng.randrange(0, 150))
        yield kind, data, kind.startswith("rst")


def test_1000_garbage_connections_leave_server_alive_and_without_leaked_fds(socks5d, users_file,
                                                                            echo):
    srv = socks5d("--auth", "none,userpass", "--users", users_file)
    # Warm up (first session allocations), then take the baseline.
    with open_tunnel(srv, *echo.addr) as s:
        s.sendall(b"warm")
        assert recv_exact(s, 4) == b"warm"
    wait_until(lambda: len(srv.access_lines()) == 1, scaled(5), what="warm-up session to end")
    baseline = srv.fd_count()

    seed = random.randrange(1 << 32)
    rng = random.Random(seed)
    hole = bind_socket("127.0.0.1")  # bound, never listening: connects are refused
    counts = {}
    try:
        batch = []
        for kind, data, rst in garbage_cases(rng, hole.getsockname()[1]):
            counts[kind] = counts.get(kind, 0) + 1
            s = srv.connect()
            if data:
                try:
                    s.sendall(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the server already gave up on it: fine
            if rst:
                rst_close(s)
            else:
                batch.append(s)
            # Close in batches so that some garbage sessions overlap.
            if len(batch) >= 25:
                for b in batch:
                    b.close()
                batch = []
        for b in batch:
            b.close()
    finally:
        hole.close()
    assert sum(counts.values()) == 1000

    assert srv.alive(), f"server died on garbage (seed {seed}):\n{srv.log()[-5000:]}"
    # A normal client is still served.
    with open_tunnel(srv, *echo.addr) as s:
        s.sendall(b"still here")
        assert recv_exact(s, 10) == b"still here"
    # Every garbage session ends and gives its descriptors back.
    try:
        wait_until(lambda: srv.fd_count() <= baseline + 2, scaled(10), interval=0.05,
                   what="fd count back to baseline")
    except AssertionError:
        raise AssertionError(f"fd count {srv.fd_count()} stays above baseline {baseline} "
                             f"(seed {seed}): {sorted(os_fds(srv.pid))}")
    assert srv.alive()


def os_fds(pid):
    import os
    out = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            out.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
        except OSError:
            pass
    return out


def test_slowloris_clients_are_cut_at_handshake_timeout_while_others_are_served(socks5d, echo):
    srv = socks5d("--auth", "none", "--timeout-handshake", "1s")
    n = 50
    sel = selectors.DefaultSelector()
    loris = []
    try:
        for _ in range(n):
            s = srv.connect()
            s.sendall(b"\x05")  # a greeting that never completes
            s.setblocking(False)
            loris.append((s, time.monotonic()))
            sel.register(s, selectors.EVENT_READ)
        # Meanwhile a normal client gets full service.
        t0 = time.monotonic()
        with open_tunnel(srv, *echo.addr) as s:
            s.sendall(b"not starved")
            assert recv_exact(s, 11) == b"not starved"
        served_after = time.monotonic() - loris[0][1]
        closed = {}
        deadline = time.monotonic() + 1 + scaled(3)
        while len(closed) < n and time.monotonic() < deadline:
            for key, _ in sel.select(timeout=0.1):
                s = key.fileobj
                try:
                    data = s.recv(64)
                except ConnectionResetError:
                    data = b""
                except BlockingIOError:
                    continue
                assert data == b"", f"slow client got bytes {data!r}"
                closed[s] = time.monotonic()
                sel.unregister(s)
        assert len(closed) == n, f"{n - len(closed)} of {n} stalled clients still open " \
                                 f"{deadline - t0:.1f}s after connecting"
        lives = [closed[s] - start for s, start in loris]
        assert served_after < min(lives), "the normal client was not served in the meantime"
        assert min(lives) >= 0.9, f"closed before the 1 s handshake timeout: {min(lives):.2f}s"
        assert max(lives) < 1 + scaled(1.5), f"closed late: {max(lives):.2f}s"
    finally:
        for s, _ in loris:
            s.close()
        sel.close()
    lines = srv.wait_access(n + 1)
    assert sum(1 for l in lines if l.get("error") == "handshake timeout") == n


def test_idle_timeout_closes_silent_tunnel_but_not_an_active_one(socks5d, target):
    srv = socks5d("--auth", "none", "--timeout-idle", "1s")
    c = open_tunnel(srv, *target.addr)
    t = target.accept()
    try:
        # Traffic every 0.3 s, for twice the idle timeout: the tunnel lives.
        start = time.monotonic()
        while time.monotonic() - start < 2.0:
            c.sendall(b"k")
            assert recv_exact(t, 1) == b"k"
            time.sleep(0.3)  # the pause between keep-alive bytes is what is tested
        t.sendall(b"last")
        assert recv_exact(c, 4) == b"last"
        last = time.monotonic()
        # Then silence: both ends see the tunnel closed about 1 s later.
        assert read_until_closed(c, 1 + scaled(2)) == b""
        quiet = time.monotonic() - last
        assert read_until_closed(t, scaled(2)) == b""
        assert 0.9 <= quiet < 1 + scaled(1.5), f"idle close after {quiet:.2f}s of silence"
    finally:
        c.close()
    (line,) = srv.wait_access(1)
    assert line.get("error") == "idle timeout"


def test_max_sessions_closes_the_sixth_connection_promptly(socks5d, echo):
    srv = socks5d("--auth", "none", "--max-sessions", "5")
    tunnels = [open_tunnel(srv, *echo.addr) for _ in range(5)]
    try:
        sixth = srv.connect()
        sixth.sendall(greeting())
        t0 = time.monotonic()
        assert read_until_closed(sixth, scaled(2)) == b"", "6th session got a reply"
        assert time.monotonic() - t0 < scaled(2)
        sixth.close()
        # The five are unaffected.
        for i, s in enumerate(tunnels):
            assert_echo(s, f"tunnel {i}".encode())
        # Freeing one slot admits a new session.
        tunnels.pop().close()

        def admitted():
            s = srv.connect()
            try:
                s.sendall(greeting() + request(*echo.addr))
                data = read_until_closed_or(s, 2 + 10)
                if len(data) < 12:
                    s.close()
                    return None
                assert data[:2] == b"\x05\x00" and data[3] == 0, data
                return s
            except OSError:
                s.close()
                return None

        s = wait_until(admitted, scaled(5), interval=0.05, what="a slot to free up")
        tunnels.append(s)
        assert_echo(s, b"new one")
    finally:
        for s in tunnels:
            s.close()


def assert_echo(sock, msg):
    sock.sendall(msg)
    assert recv_exact(sock, len(msg)) == msg


def read_until_closed_or(sock, n):
    """Reads until n bytes arrived or the peer closed."""
    data = b""
    sock.settimeout(scaled(2))
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            break
        data += chunk
    return data
