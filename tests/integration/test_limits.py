"""Session limits, failed-login throttling, per-user rate limits and
handshake slots against a real server.

Run: /usr/bin/python3 -m pytest -q tests/integration/test_limits.py
"""
import os
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import socks  # Debian python3-socks (PySocks)

from harness import open_tunnel, read_reply, recv_exact, request, scaled, userpass, wait_until
from harness import greeting as greeting_msg
from security_support import (ALICE, BOB, REP_NOT_ALLOWED, ask_rep, closes_all, connect_from,
                              echo_ok, negotiate, other_fds, refused_before_greeting,
                              wait_accepted)


def served(srv, echo, source=None, auth=None):
    """1 when a full CONNECT + echo works (from `source`), else 0."""
    try:
        s = connect_from(srv, source)
    except OSError:
        return 0
    with s:
        try:
            st = negotiate(s, auth)
            if auth and st != b"\x01\x00":
                return 0
            s.sendall(request(*echo.addr))
            if read_reply(s)[0] != 0:
                return 0
            echo_ok(s, b"served?")
            return 1
        except (OSError, EOFError, AssertionError):
            return 0


# ---------------------------------------------------------------- per IP


def test_max_sessions_per_ip_refuses_the_fourth_before_the_greeting(socks5d, echo):
    srv = socks5d("--auth", "none", "--max-sessions-per-ip", "3")
    held = []
    try:
        for i in range(3):
            held.append(open_tunnel(srv, *echo.addr))
        # The fourth from 127.0.0.1: closed without a byte, even to a greeting.
        with connect_from(srv, "127.0.0.1") as s:
            refused_before_greeting(s)
        (line,) = srv.wait_access(1, pred=lambda l: "error" in l)
        assert "too many sessions from this address" in line["error"], line["_line"]
        assert line["cmd"] == "-" and line["rep"] == "-", line["_line"]
        # Another address has its own count.
        assert served(srv, echo, source="127.0.0.2") == 1
        # The three still work.
        for i, s in enumerate(held):
            echo_ok(s, b"held %d" % i)
        # One ends: its slot comes back (the server sees the close a bit later).
        held.pop().close()
        wait_until(lambda: served(srv, echo, source="127.0.0.1"), scaled(5), interval=0.05,
                   what="a new session after one of three closed")
    finally:
        closes_all(held)


def test_max_sessions_per_ip_counts_handshakes_and_tunnels_alike(socks5d, echo):
    # One worker: it takes a connection's per-IP slot before it accepts the
    # next one from the queue, so the idle connection holds its slot before
    # the third arrives. With two, the other worker may judge the third
    # while the first is between accept and the slot (the limit still holds,
    # but the idle one is refused instead).
    srv = socks5d("-w", "1", "--auth", "none", "--max-sessions-per-ip", "2")
    held = []
    try:
        held.append(open_tunnel(srv, *echo.addr))
        idle = connect_from(srv)  # connected, nothing sent: a session in its handshake
        held.append(idle)
        with connect_from(srv) as s:
            refused_before_greeting(s)
        # The idle one is a live session all along: it completes normally.
        idle.sendall(greeting_msg() + request(*echo.addr))
        assert recv_exact(idle, 2) == b"\x05\x00"
        assert read_reply(idle)[0] == 0
        echo_ok(idle, b"late but fine")
    finally:
        closes_all(held)


# ---------------------------------------------------------------- per user


def test_max_sessions_per_user_refuses_the_third_alice_after_auth(socks5d, users_file, echo):
    srv = socks5d("--auth", "userpass", "--users", users_file, "--max-sessions-per-user", "2")
    held = []
    try:
        held += [open_tunnel(srv, *echo.addr, auth=ALICE) for _ in range(2)]
        # The third alice logs in fine, then her request is refused.
        assert ask_rep(srv, *echo.addr, auth=ALICE) == REP_NOT_ALLOWED
        (line,) = srv.wait_access(1, pred=lambda l: l["rep"] == "2")
        assert line["user"] == "alice", line["_line"]
        assert "too many sessions for this user" in line.get("error", ""), line["_line"]
        # bob is not affected, nor are alice's two tunnels.
        held += [open_tunnel(srv, *echo.addr, auth=BOB) for _ in range(2)]
        for s in held:
            echo_ok(s)
        # One of alice's ends: she may open another.
        held.pop(0).close()
        wait_until(lambda: served(srv, echo, auth=ALICE), scaled(5), interval=0.05,
                   what="alice served again after closing a session")
    finally:
        closes_all(held)


def test_refused_user_session_does_not_leak_a_user_slot(socks5d, users_file, echo):
    srv = socks5d("--auth", "userpass", "--users", users_file, "--max-sessions-per-user", "1")
    for _ in range(5):
        # The previous tunnel's slot comes back once the server saw it close.
        s = wait_until(lambda: tunnel_or_none(srv, echo, ALICE), scaled(5), interval=0.05,
                       what="alice's slot back")
        with s:
            echo_ok(s)
            assert ask_rep(srv, *echo.addr, auth=ALICE) == REP_NOT_ALLOWED
    lines = srv.wait_access(5, pred=lambda l: l["rep"] == "2")
    assert all("too many sessions for this user" in l["error"] for l in lines)


def tunnel_or_none(srv, echo, auth):
    s = connect_from(srv)
    try:
        assert negotiate(s, auth) == b"\x01\x00"
        s.sendall(request(*echo.addr))
        if read_reply(s)[0] == 0:
            return s
    except (OSError, EOFError):
        pass
    s.close()
    return None


# ---------------------------------------------------------------- failed logins


def login_status(srv, auth, source=None):
    """The RFC 1929 status the server answers (b'\\x01\\x00' is success), or
    b'' when it closed without one."""
    with connect_from(srv, source) as s:
        s.sendall(greeting_msg((0x02,)))
        assert recv_exact(s, 2) == b"\x05\x02"
        s.sendall(userpass(*auth))
        try:
            return recv_exact(s, 2)
        except (EOFError, ConnectionResetError):
            return b""


def test_failed_logins_throttle_the_user_at_the_address_not_others(socks5d, users_file, echo):
    srv = socks5d("--auth", "userpass", "--users", users_file, "--auth-fail-limit", "3",
                  "--auth-fail-window", "60s", "--auth-fail-cooldown", "2s")
    assert login_status(srv, ALICE) == b"\x01\x00"  # fine before any failure
    for _ in range(3):
        assert login_status(srv, ("alice", "wrong")) == b"\x01\x01"
    blocked_at = time.monotonic()
    # Now even alice's right password is refused from 127.0.0.1, during the cooldown...
    assert login_status(srv, ALICE) == b"\x01\x01"
    assert time.monotonic() - blocked_at < 1, "too slow to observe a 2 s cooldown"
    # ...while bob at the same address (the same office NAT) and alice from
    # 127.0.0.2 log in and are served.
    assert served(srv, echo, auth=BOB) == 1
    assert served(srv, echo, source="127.0.0.2", auth=ALICE) == 1
    lines = srv.wait_access(1, pred=lambda l: "too many failed logins for this user" in
                            l.get("error", ""))
    assert all(l["client"].startswith("127.0.0.1:") for l in lines)
    # After the cooldown the right password works again from 127.0.0.1.
    wait_until(lambda: login_status(srv, ALICE) == b"\x01\x00", 2 + scaled(3), interval=0.2,
               what="login accepted after the cooldown")
    assert served(srv, echo, auth=ALICE) == 1


def test_failed_logins_for_unknown_users_count_toward_the_address_ceiling(socks5d, users_file,
                                                                          echo):
    srv = socks5d("--auth", "userpass", "--users", users_file, "--auth-fail-limit", "3",
                  "--auth-fail-address-limit", "3", "--auth-fail-window", "60s",
                  "--auth-fail-cooldown", "60s")
    for i in range(3):
        assert login_status(srv, (f"guess{i}", "password")) == b"\x01\x01"
    assert login_status(srv, ALICE) == b"\x01\x01"
    srv.wait_access(1, pred=lambda l: l.get("error") == "too many failed logins from this address")
    assert served(srv, echo, source="127.0.0.2", auth=ALICE) == 1


def test_failed_logins_below_the_limit_do_not_block(socks5d, users_file, echo):
    srv = socks5d("--auth", "userpass", "--users", users_file, "--auth-fail-limit", "3",
                  "--auth-fail-window", "60s", "--auth-fail-cooldown", "60s")
    # Two failures (a wrong password, an unknown user) stay under the limit.
    assert login_status(srv, ("bob", "nope")) == b"\x01\x01"
    assert login_status(srv, ("no-such-user", "x")) == b"\x01\x01"
    assert login_status(srv, BOB) == b"\x01\x00"
    assert served(srv, echo, auth=ALICE) == 1


# ---------------------------------------------------------------- rate limit


MIB = 1 << 20


def _download(srv, size, auth, timeout):
    """Downloads `size` bytes from a fresh sender through the proxy; returns
    the seconds it took from the CONNECT reply to the last byte."""
    lsock = socket.create_server(("127.0.0.1", 0))
    lsock.settimeout(timeout)
    payload = os.urandom(size)
    errors = []

    def sender():
        try:
            c, _ = lsock.accept()
            with c:
                c.sendall(payload)
        except OSError as e:
            errors.append(e)

    t = threading.Thread(target=sender, daemon=True)
    t.start()
    try:
        s = socks.socksocket(socket.AF_INET, socket.SOCK_STREAM)
        s.set_proxy(socks.SOCKS5, "127.0.0.1", srv.port, username=auth[0] if auth else None,
                    password=auth[1] if auth else None)
        s.settimeout(timeout)
        with s:
            s.connect(lsock.getsockname())
            t0 = time.monotonic()
            got = recv_exact(s, size)
            took = time.monotonic() - t0
        assert got == payload, "payload corrupted"
    finally:
        t.join(timeout)
        lsock.close()
    assert not errors, errors
    return took


def test_rate_limit_slows_the_limited_user_only(socks5d, users_file):
    rate = 256 * 1024
    srv = socks5d("--auth", "userpass", "--users", users_file, "--rate-limit", "alice 256k")
    expected = MIB / rate  # 4 s at 256 KiB/s (an initial burst may shave some off)
    took = _download(srv, MIB, ALICE, timeout=expected * 3 + scaled(10))
    print(f"\nalice (256k): 1 MiB in {took:.2f}s (expected ~{expected:.1f}s)")
    assert took >= 0.7 * expected, f"1 MiB at 256 KiB/s took only {took:.2f}s"
    # bob has no limit: the same download just completes (no speed assertion).
    took_bob = _download(srv, MIB, BOB, timeout=scaled(30))
    print(f"bob (unlimited): 1 MiB in {took_bob:.2f}s")
    lines = srv.wait_access(2)
    assert {l["user"] for l in lines} == {"alice", "bob"}
    assert all(int(l["down"]) == MIB for l in lines), [l["_line"] for l in lines]


def _transfer(srv, direction, auths, size, timeout):
    """Moves `size` bytes through one tunnel per entry of `auths`, all at
    once, in one direction only: "up" sends to a sink that never writes,
    "down" receives from a source that never reads. Returns the seconds from
    the start signal to each tunnel's last byte, in order. Each byte is
    counted where it leaves the proxy, so the other direction's limit
    cannot slow this one down."""
    lsock = socket.create_server(("127.0.0.1", 0))
    lsock.settimeout(timeout)
    payload = os.urandom(size)
    go = threading.Event()
    ends, errors = [], []
    lock = threading.Lock()

    def peer(c):
        try:
            with c:
                c.settimeout(timeout)
                if direction == "down":
                    go.wait(timeout)
                    c.sendall(payload)
                    return
                got = recv_exact(c, size)
                with lock:
                    ends.append(time.monotonic())
                assert got == payload, "upload corrupted"
        except (OSError, AssertionError, EOFError) as e:
            errors.append(e)

    def acceptor():
        try:
            for _ in auths:
                c, _ = lsock.accept()
                threading.Thread(target=peer, args=(c,), daemon=True).start()
        except OSError as e:
            errors.append(e)

    def client(s):
        try:
            go.wait(timeout)
            if direction == "up":
                s.sendall(payload)
                s.shutdown(socket.SHUT_WR)
                return
            got = recv_exact(s, size)
            with lock:
                ends.append(time.monotonic())
            assert got == payload, "download corrupted"
        except (OSError, AssertionError, EOFError) as e:
            errors.append(e)

    acc = threading.Thread(target=acceptor, daemon=True)
    acc.start()
    tunnels = [open_tunnel(srv, *lsock.getsockname(), auth=a, timeout=timeout) for a in auths]
    threads = [threading.Thread(target=client, args=(s,), daemon=True) for s in tunnels]
    try:
        for t in threads:
            t.start()
        t0 = time.monotonic()
        go.set()
        wait_until(lambda: len(ends) == len(auths) or errors, timeout,
                   what=f"{len(auths)} transfers {direction}")
    finally:
        go.set()
        for s in tunnels:
            s.close()
        lsock.close()
        for t in threads + [acc]:
            t.join(timeout)
    assert not errors, errors
    return sorted(e - t0 for e in ends)


@pytest.mark.parametrize("direction", ["up", "down"])
def test_rate_limit_holds_per_user_across_parallel_tunnels(socks5d, users_file, direction):
    # Four tunnels of alice share her 256 KiB/s, in each direction on its own:
    # with a bucket per tunnel they would move 4x as fast. Several workers,
    # so the tunnels land on different threads.
    rate, size, n = 256 * 1024, 256 * 1024, 4
    srv = socks5d("--workers", "4", "--auth", "userpass", "--users", users_file,
                  "--rate-limit", "alice 256k")
    expected = n * size / rate  # 4 s for 1 MiB in all (the burst may shave 1/4 s off)
    ends = _transfer(srv, direction, [ALICE] * n, size, timeout=expected * 3 + scaled(10))
    print(f"\nalice (256k) x{n} {direction}: {n * size >> 10} KiB, tunnels done at "
          f"{', '.join(f'{e:.2f}' for e in ends)}s (expected ~{expected:.1f}s)")
    assert ends[-1] >= 0.75 * expected, f"{n} tunnels moved {n * size} bytes in {ends[-1]:.2f}s"
    # They share it about evenly: none gets most of the rate for itself.
    assert ends[0] >= 0.4 * expected, f"one tunnel finished at {ends[0]:.2f}s"
    # bob has no limit and is not held back by alice's: the same transfer,
    # alongside four more of alice's, ends long before alice's limit would
    # allow it (a liveness bound 2 s wide, not a speed claim).
    alice_took = []

    def alice_again():
        alice_took.append(_transfer(srv, direction, [ALICE] * n, size,
                                    timeout=expected * 3 + scaled(10))[-1])

    alice = threading.Thread(target=alice_again, daemon=True)
    alice.start()
    took_bob = _transfer(srv, direction, [BOB] * n, size, timeout=scaled(30))[-1]
    alice.join(expected * 3 + scaled(10))
    print(f"bob (unlimited) x{n} {direction}: {took_bob:.2f}s")
    assert took_bob < expected / 2, f"bob took {took_bob:.2f}s, as if alice's limit held him"
    assert alice_took and alice_took[0] >= 0.75 * expected, alice_took


def test_rate_limit_applies_to_uploads_too(socks5d, users_file):
    # Upload to a sink that sends nothing back: only the upload limit can
    # make this slow (an echo would be slowed by the download limit alone).
    srv = socks5d("--auth", "userpass", "--users", users_file, "--rate-limit", "user alice 128k")
    size = 384 * 1024
    expected = size / (128 * 1024)  # 3 s
    (took,) = _transfer(srv, "up", [ALICE], size, timeout=expected * 3 + scaled(10))
    print(f"\nalice (128k) upload of {size >> 10} KiB: {took:.2f}s (expected ~{expected:.1f}s)")
    assert took >= 0.7 * expected


# ---------------------------------------------------------------- handshake slots


def test_max_handshakes_refuses_beyond_the_stalled_ones_then_recovers(socks5d, echo):
    hs_timeout = scaled(2)
    # One worker, so the sixth is judged after the fifth took its slot (see
    # test_max_sessions_per_ip_counts_handshakes_and_tunnels_alike).
    srv = socks5d("-w", "1", "--auth", "none", "--max-handshakes", "5",
                  "--timeout-handshake", f"{int(hs_timeout * 1000)}ms")
    tunnel = open_tunnel(srv, *echo.addr)  # established before: not a handshake any more
    stalled = []
    try:
        echo_ok(tunnel, b"settled")
        base = other_fds(srv.pid)
        for i in range(5):
            s = connect_from(srv)
            if i % 2:
                s.sendall(b"\x05")  # a greeting that never completes
            stalled.append(s)
        wait_accepted(srv, base, 5)
        t0 = time.monotonic()
        with connect_from(srv) as sixth:
            refused_before_greeting(sixth, timeout=hs_timeout)
        refused_in = time.monotonic() - t0
        assert refused_in < hs_timeout / 2, f"the 6th took {refused_in:.2f}s to be refused"
        (line,) = srv.wait_access(1, pred=lambda l: "handshakes" in l.get("error", ""))
        assert "too many handshakes in progress" in line["error"], line["_line"]
        # The established tunnel is not affected.
        echo_ok(tunnel, b"tunnel still works")
        # The stalled ones time out and give their slots back.
        for s in stalled:
            s.settimeout(hs_timeout + scaled(3))
            try:
                assert s.recv(16) == b""
            except ConnectionResetError:
                pass
        wait_until(lambda: served(srv, echo), scaled(5), interval=0.05,
                   what="a new client served after the stalled handshakes timed out")
        echo_ok(tunnel, b"and still")
    finally:
        closes_all(stalled)
        tunnel.close()


# ---------------------------------------------------------------- session limit, two workers


def _session(srv, echo):
    """A CONNECT to echo that got reply 0, kept open; None when the server
    closed the connection instead (refused at accept)."""
    s = socket.create_connection(srv.addr, timeout=scaled(5))
    data = b""
    try:
        s.sendall(greeting_msg() + request(*echo.addr))
        while len(data) < 12:
            chunk = s.recv(12 - len(data))
            if not chunk:
                break
            data += chunk
    except (ConnectionResetError, BrokenPipeError):
        data = b""
    if len(data) == 12:
        assert data[:2] == b"\x05\x00" and data[3] == 0, data
        return s
    assert data == b"", f"a refused session got {data!r}"
    s.close()
    return None


def _fill(srv, echo, attempts):
    """Sessions from `attempts` serial tries: a try is refused only by the
    limit, never by a contender's try in flight."""
    return [s for s in (_session(srv, echo) for _ in range(attempts)) if s]


@pytest.mark.parametrize("limit", [8, 600])
def test_max_sessions_holds_across_two_workers_under_parallel_clients(socks5d, echo, limit):
    # Each worker admits from its own lease of the shared count: at most
    # `limit` sessions at once, whoever accepts them, and at most 2 batches
    # per worker kept unused (600 / (256 * 2) = 1; 8: exact).
    kept = 2 * 2 * (limit // 512)
    srv = socks5d("-w", "2", "--auth", "none", "--max-sessions", str(limit),
                  "--max-sessions-per-ip", "100000", "--max-handshakes", "100000")
    held = []
    base = other_fds(srv.pid)
    try:
        with ThreadPoolExecutor(16) as pool:
            held = [s for s in pool.map(lambda _: _session(srv, echo), range(limit + limit // 2))
                    if s]
        assert len(held) <= limit, f"{len(held)} sessions admitted at once, limit {limit}"
        held += _fill(srv, echo, limit - len(held) + 20)
        assert limit - kept <= len(held) <= limit
        for s in held[:3]:
            echo_ok(s, b"still relaying")
        # Every slot comes back: as many sessions as before fit again.
        n = len(held)
        closes_all(held)
        wait_until(lambda: other_fds(srv.pid) <= base, scaled(5), interval=0.05,
                   what="every session to end")
        held = _fill(srv, echo, limit + 20)
        assert limit - kept <= len(held) <= limit and len(held) >= n - kept
    finally:
        closes_all(held)


def _still_open(sock):
    """1 while the server keeps sock open without a byte, 0 once it closed it."""
    sock.setblocking(False)
    try:
        data = sock.recv(1)
    except BlockingIOError:
        return 1
    except ConnectionResetError:
        return 0
    assert data == b"", f"a refused connection got {data!r}"
    return 0


def test_max_handshakes_holds_across_two_workers_under_parallel_clients(socks5d):
    # 30 clients connect at once and stall in the handshake; both workers
    # accept them, and exactly 8 hold a slot: the rest are closed at once.
    srv = socks5d("-w", "2", "--auth", "none", "--max-handshakes", "8",
                  "--max-sessions-per-ip", "1000", "--timeout-handshake", "60s")
    with ThreadPoolExecutor(16) as pool:
        stalled = list(pool.map(lambda _: connect_from(srv), range(30)))
    try:
        def refused():
            return [l for l in srv.access_lines() if "handshakes" in l.get("error", "")]
        wait_until(lambda: len(refused()) >= 22, scaled(5), what="22 refusals")
        held = sum(_still_open(s) for s in stalled)
        assert held == 8, f"{held} connections hold a handshake slot, limit 8"
        assert len(refused()) == 22
    finally:
        closes_all(stalled)
