"""SIGHUP reload: new sessions follow the new configuration while open
tunnels keep their snapshot; a bad configuration is logged and the old one
keeps running; listeners are reconciled without ever refusing a connection
on an address that stays; 200 streaming tunnels survive 20 reloads; the
metrics count reloads.

Most configurations here set `max-sessions` explicitly so that each test
checks its own feature; the default session limit across a reload has its
own test (test_reload_with_the_default_session_limit_keeps_accepting)."""
import random
import selectors
import signal
import socket
import threading
import time

import pytest

from harness import (EchoServer, bind_socket, greeting, open_tunnel, read_reply, recv_exact,
                     request, scaled, wait_until)
from ops_support import ops  # noqa: F401  (the fixture)
from ops_support import (connect_rep, idle_close_after, listening_ports, metric, parse_metrics,
                         refused, scrape)

RELOADED = "configuration reloaded"
LIMIT = "max-sessions 10000"


def assert_echo(sock, msg):
    sock.sendall(msg)
    assert recv_exact(sock, len(msg)) == msg


def reload(srv, conf, lines, what=RELOADED):
    """Rewrites the config file, sends SIGHUP and waits for the outcome."""
    n = srv.count(what)
    conf.write_text("\n".join(lines) + "\n")
    srv.signal(signal.SIGHUP)
    srv.wait_log(what, count=n + 1, timeout=scaled(10))


def listener_sock():
    """A listening socket whose connections are never accepted: a
    destination a CONNECT succeeds to (the kernel completes it)."""
    s = bind_socket("127.0.0.1")
    s.listen(256)
    return s


# ---------------------------------------------------------------- rules and snapshots


def test_new_rules_apply_to_new_sessions_and_an_open_tunnel_keeps_its_snapshot(ops, echo,
                                                                                target):
    def conf_a(port):
        return [f"listen 127.0.0.1:{port}", "auth none", LIMIT, "timeout idle 30s",
                f"deny to 127.0.0.1 port {target.port}", "allow"]

    def conf_b(port):
        return [f"listen 127.0.0.1:{port}", "auth none", LIMIT, "timeout idle 1s",
                f"deny to 127.0.0.1 port {echo.port}", "allow"]

    srv, (port,), conf = ops.start_conf(lambda ports: conf_a(ports[0]))
    old = open_tunnel(srv, *echo.addr)
    try:
        assert_echo(old, b"opened under A")
        assert connect_rep(srv, *target.addr) == 2
        reload(srv, conf, conf_b(port))
        # New sessions: B's rules.
        assert connect_rep(srv, *echo.addr) == 2
        s, rep = socks_connect_target(srv, target)
        assert rep == 0
        # ...and B's idle timeout.
        took = idle_close_after(s, 1 + scaled(3))
        assert took >= 0.7, took
        s.close()
        # The tunnel opened before: still relaying, still on A's 30 s idle
        # timeout (B's 1 s would have closed it).
        assert_echo(old, b"still here under B")
        time.sleep(2.2)
        assert_echo(old, b"idle for 2.2s and still open")
    finally:
        old.close()
    wait_until(lambda: len([l for l in srv.access_lines() if l["rep"] == "2"]) == 2, scaled(5),
               what="2 refused sessions in the access log")


def socks_connect_target(srv, target):
    s = srv.connect()
    s.sendall(greeting() + request(*target.addr))
    assert recv_exact(s, 2) == b"\x05\x00"
    rep = read_reply(s)[0]
    if rep == 0:
        target.accept()
    return s, rep


def test_reload_with_the_default_session_limit_keeps_accepting(ops, echo):
    """No max-sessions in the file: the limit derived from the fd limit at
    start-up must survive a reload."""
    srv, (port,), conf = ops.start_conf(lambda ports: [f"listen 127.0.0.1:{ports[0]}",
                                                       "auth none"])
    with open_tunnel(srv, *echo.addr) as s:
        assert_echo(s, b"before")
    reload(srv, conf, [f"listen 127.0.0.1:{port}", "auth none", "timeout idle 4m"])
    for i in range(3):
        with open_tunnel(srv, *echo.addr) as s:
            assert_echo(s, f"after the reload {i}".encode())


BAD_CONFIGS = {
    "unknown-directive": lambda c: c + ["frobnicate 1"],
    "bad-rule": lambda c: c[:-1] + ["allow to 10.0.0.1/8"],
    "bad-duration": lambda c: c + ["timeout idle 5x"],
    "missing-users-file": lambda c: c + ["users /nonexistent/socks5d-users"],
    "missing-include": lambda c: c + ["include /nonexistent/socks5d-extra.conf"],
    "new-listener-in-use": None,  # filled in by the test: a port we hold
}


@pytest.mark.parametrize("kind", list(BAD_CONFIGS))
def test_invalid_config_on_sighup_is_logged_and_the_old_one_keeps_serving(ops, echo, target,
                                                                           kind):
    def good(port):
        return [f"listen 127.0.0.1:{port}", "auth none", LIMIT,
                f"deny to 127.0.0.1 port {target.port}", "allow"]

    srv, (port,), conf = ops.start_conf(lambda ports: good(ports[0]))
    held = None
    try:
        if kind == "new-listener-in-use":
            held = bind_socket("127.0.0.1")
            held.listen(8)
            bad = good(port) + [f"listen 127.0.0.1:{held.getsockname()[1]}"]
        else:
            bad = BAD_CONFIGS[kind](good(port))
        with open_tunnel(srv, *echo.addr) as before:
            reload(srv, conf, bad, what="reload failed")
            assert srv.alive()
            assert_echo(before, b"open across a failed reload")
        log = srv.log()
        assert "reload" in log and RELOADED not in log, log
        # Still serving, on the old rules.
        with open_tunnel(srv, *echo.addr) as s:
            assert_echo(s, b"old config")
        assert connect_rep(srv, *target.addr) == 2
        if held is not None:
            assert listening_ports(srv.pid) == {port}
        # Fixed, the next SIGHUP goes through.
        reload(srv, conf, good(port)[:-2] + ["allow"])
        s, rep = socks_connect_target(srv, target)
        s.close()
        assert rep == 0
    finally:
        if held is not None:
            held.close()


def test_bad_reload_message_points_at_the_file_and_line(ops):
    srv, (port,), conf = ops.start_conf(lambda ports: [f"listen 127.0.0.1:{ports[0]}",
                                                       "auth none", LIMIT])
    reload(srv, conf, [f"listen 127.0.0.1:{port}", "auth none", LIMIT, "frobnicate 1"],
           what="reload failed")
    assert f"{conf}:4:" in srv.log(), srv.log()


# ---------------------------------------------------------------- listeners


class ConnectLoop:
    """A client connecting in a tight loop: each connection does the SOCKS5
    greeting (and, with `dst`, a CONNECT and one echo), then closes. Counts
    successes, refusals and other failures."""

    def __init__(self, addr, dst=None):
        self.addr, self.dst = addr, dst
        self.ok = self.refused = 0
        self.errors = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self):
        self._thread.start()
        return self

    def _one(self):
        s = socket.socket()
        s.settimeout(scaled(5))
        try:
            s.connect(self.addr)
            s.sendall(greeting() + (request(*self.dst) if self.dst else b""))
            assert recv_exact(s, 2) == b"\x05\x00"
            if self.dst:
                rep = read_reply(s)[0]
                assert rep == 0, f"REP {rep}"
                assert_echo(s, b"loop")
        finally:
            s.close()

    def _run(self):
        while not self._stop.is_set():
            try:
                self._one()
                self.ok += 1
            except ConnectionRefusedError:
                self.refused += 1
            except Exception as e:  # a reset, a close, a timeout, a wrong reply
                self.errors.append(repr(e))

    def stop(self):
        self._stop.set()
        self._thread.join(scaled(10))
        assert not self._thread.is_alive(), "connect loop did not stop"


def test_listener_reconciliation_keeps_p1_closes_p2_opens_p3(ops, echo):
    def conf(p1, other):
        return [f"listen 127.0.0.1:{p1}", f"listen 127.0.0.1:{other}", "auth none", LIMIT]

    srv, (p1, p2, p3), path = ops.start_conf(lambda ports: conf(ports[0], ports[1]), nports=3,
                                             listen=lambda ports: [f"127.0.0.1:{ports[0]}",
                                                                   f"127.0.0.1:{ports[1]}"])
    assert listening_ports(srv.pid) == {p1, p2}
    loop = ConnectLoop(("127.0.0.1", p1)).start()
    try:
        wait_until(lambda: loop.ok >= 20, scaled(5), what="the connect loop to run")
        # P1,P2 -> P1,P3, and back and forth, the loop hammering P1 throughout.
        for other in (p3, p2, p3):
            reload(srv, path, conf(p1, other))
            n = loop.ok
            wait_until(lambda: loop.ok >= n + 20, scaled(5), what="connects after the reload")
    finally:
        loop.stop()
    assert loop.refused == 0 and not loop.errors, \
        f"P1 during reloads: {loop.ok} served, {loop.refused} refused, errors {loop.errors[:5]}"
    wait_until(lambda: refused(("127.0.0.1", p2)), scaled(5), what=f"port {p2} closed")
    assert listening_ports(srv.pid) == {p1, p3}
    with open_tunnel(srv, *echo.addr) as s:
        assert_echo(s, b"via P1")
    s = srv.connect(addr=("127.0.0.1", p3))
    with s:
        s.sendall(greeting() + request(*echo.addr))
        assert recv_exact(s, 2) == b"\x05\x00" and read_reply(s)[0] == 0
        assert_echo(s, b"via P3")


# ---------------------------------------------------------------- under load


class Streamer:
    """Keeps every tunnel streaming: each sends its own pseudo-random byte
    stream (at most WINDOW bytes unanswered) and checks that the echo comes
    back byte for byte. One selector thread for all tunnels."""

    WINDOW = 48 * 1024
    CHUNK = 16 * 1024
    PATTERN_LEN = 1 << 20

    def __init__(self, socks):
        rng = random.Random(4711)
        pat = rng.randbytes(self.PATTERN_LEN)
        self.pat = pat + pat[:self.CHUNK * 4]
        self.socks = socks
        self.base = [rng.randrange(self.PATTERN_LEN) for _ in socks]
        self.sent = [0] * len(socks)
        self.recvd = [0] * len(socks)
        self.dead = {}  # index -> why
        self.sending = True
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _expect(self, i, off, n):
        p = (self.base[i] + off) % self.PATTERN_LEN
        return self.pat[p:p + n]

    def _run(self):
        sel = selectors.DefaultSelector()
        for i, s in enumerate(self.socks):
            s.setblocking(False)
            sel.register(s, selectors.EVENT_READ | selectors.EVENT_WRITE, i)
        read_only = False
        try:
            while not self._stop.is_set():
                for key, ev in sel.select(0.05):
                    i, s = key.data, key.fileobj
                    try:
                        if ev & selectors.EVENT_READ:
                            data = s.recv(65536)
                            if not data:
                                raise EOFError("tunnel closed by the proxy")
                            if data != self._expect(i, self.recvd[i], len(data)):
                                raise AssertionError(f"echo mismatch at byte {self.recvd[i]}")
                            self.recvd[i] += len(data)
                        room = self.WINDOW - (self.sent[i] - self.recvd[i])
                        if self.sending and room > 0 and ev & selectors.EVENT_WRITE:
                            n = s.send(self._expect(i, self.sent[i], min(room, self.CHUNK)))
                            self.sent[i] += n
                    except (BlockingIOError, InterruptedError):
                        pass
                    except Exception as e:
                        self.dead[i] = repr(e)
                        sel.unregister(s)
                        continue
                    want = selectors.EVENT_READ
                    if self.sending and self.sent[i] - self.recvd[i] < self.WINDOW:
                        want |= selectors.EVENT_WRITE
                    if key.events != want:
                        sel.modify(s, want, i)
                if not self.sending and not read_only:
                    read_only = True  # stop asking for writability
                    for i, s in enumerate(self.socks):
                        if i not in self.dead:
                            sel.modify(s, selectors.EVENT_READ, i)
        finally:
            sel.close()

    def start(self):
        self._thread.start()
        return self

    def drained(self):
        return all(self.recvd[i] == self.sent[i] for i in range(len(self.socks))
                   if i not in self.dead)

    def stop(self, timeout):
        """Stops sending, waits for every echo to come back, stops."""
        self.sending = False
        try:
            wait_until(self.drained, timeout, what="every tunnel's echo")
        finally:
            self._stop.set()
            self._thread.join(scaled(10))


TUNNELS = 200
RELOADS = 20


def test_200_streaming_tunnels_survive_20_reloads(ops, capsys):
    echo = EchoServer("127.0.0.1")
    ops.cleanups.append(echo.close)
    xa, xb = listener_sock(), listener_sock()
    ops.cleanups.append(xa.close)
    ops.cleanups.append(xb.close)
    pa, pb = xa.getsockname()[1], xb.getsockname()[1]

    def conf(ports, deny=None):
        return [f"listen 127.0.0.1:{ports[0]}", f"metrics 127.0.0.1:{ports[1]}", "auth none",
                LIMIT, "timeout idle 1m"] + \
            ([f"deny to 127.0.0.1 port {deny}"] if deny else []) + ["allow"]

    srv, ports, path = ops.start_conf(conf, nports=2,
                                      listen=lambda ports: [f"127.0.0.1:{ports[0]}"])
    t_start = time.monotonic()
    socks = [open_tunnel(srv, *echo.addr) for _ in range(TUNNELS)]
    for s in socks:
        ops.cleanups.append(s.close)
    streamer = Streamer(socks).start()
    loop = ConnectLoop(srv.addr, dst=echo.addr).start()
    try:
        wait_until(lambda: sum(streamer.recvd) > 0, scaled(5), what="streaming to start")
        for i in range(1, RELOADS + 1):
            deny, other = (pb, pa) if i % 2 else (pa, pb)
            reload(srv, path, conf(ports, deny))
            # Once the reload is reported done, every new session follows it
            # (busy workers included).
            assert connect_rep(srv, "127.0.0.1", deny) == 2, f"reload {i}"
            assert connect_rep(srv, "127.0.0.1", other) == 0, f"reload {i}"
            time.sleep(0.3)
        last = list(streamer.recvd)
        wait_until(lambda: all(streamer.recvd[i] > last[i] for i in range(TUNNELS)
                               if i not in streamer.dead) or streamer.dead,
                   scaled(10), what="every tunnel to move data after the last reload")
    finally:
        loop.stop()
        streamer.stop(scaled(20))
    elapsed = time.monotonic() - t_start
    moved = sum(streamer.sent) + sum(streamer.recvd)
    # After the last reload (to the config denying pa): its rule applies.
    assert connect_rep(srv, "127.0.0.1", pa) == 2
    assert connect_rep(srv, "127.0.0.1", pb) == 0
    for s in socks:
        s.close()
    m = parse_metrics(scrape(ports[1]))
    server_bytes = metric(m, "socks5d_bytes_total", direction="up") + \
        metric(m, "socks5d_bytes_total", direction="down")
    with capsys.disabled():
        print(f"\n[reload under load] tunnels={TUNNELS} reloads={srv.count(RELOADED)} "
              f"bytes_moved={moved} ({moved / 2**20:.1f} MiB through the tunnels, up+down; "
              f"socks5d_bytes_total says {server_bytes / 2**20:.1f} MiB) "
              f"dropped_tunnels={len(streamer.dead)} loop_connects_ok={loop.ok} "
              f"loop_refused={loop.refused} loop_errors={len(loop.errors)} "
              f"time={elapsed:.1f}s")
    assert not streamer.dead, f"{len(streamer.dead)} tunnels dropped: " \
        f"{list(streamer.dead.items())[:5]}"
    assert all(streamer.sent[i] == streamer.recvd[i] > 0 for i in range(TUNNELS))
    assert loop.refused == 0 and not loop.errors, \
        f"connect loop: {loop.ok} ok, {loop.refused} refused, errors {loop.errors[:5]}"
    assert loop.ok > 0
    assert server_bytes >= moved  # the server relayed at least what the tunnels saw
    assert srv.count(RELOADED) == RELOADS
    assert "reload failed" not in srv.log()
    assert "slow to take the new configuration" not in srv.log()


# ---------------------------------------------------------------- metrics


def test_metrics_count_reloads_and_the_last_outcome(ops, echo):
    def good(ports):
        return [f"listen 127.0.0.1:{ports[0]}", f"metrics 127.0.0.1:{ports[1]}", "auth none",
                LIMIT]

    srv, ports, path = ops.start_conf(good, nports=2,
                                      listen=lambda ports: [f"127.0.0.1:{ports[0]}"])
    mport = ports[1]

    def values():
        m = parse_metrics(scrape(mport))
        return (metric(m, "socks5d_config_reloads_total"),
                metric(m, "socks5d_config_last_reload_success"))

    assert values() == (0, 1)
    reload(srv, path, good(ports) + ["frobnicate 1"], what="reload failed")
    wait_until(lambda: values() == (1, 0), scaled(5), what="reloads 1, last success 0")
    reload(srv, path, good(ports) + ["timeout idle 2m"])
    wait_until(lambda: values() == (2, 1), scaled(5), what="reloads 2, last success 1")
    reload(srv, path, good(ports) + ["listen 127.0.0.1:99999"], what="reload failed")
    wait_until(lambda: values() == (3, 0), scaled(5), what="reloads 3, last success 0")
    with open_tunnel(srv, *echo.addr) as s:
        assert_echo(s, b"metrics and all")
