"""Failover between route alternatives (`via A | B`) beyond a dead first
hop: a later hop of a chain that cannot be reached, an upstream that closes
mid-handshake or never answers. REP codes an upstream answers (the last
hop's refusal of the request or of our login) are passed on and do not fail
over. Hold-down state is kept per hop across a reload (SIGHUP) for hops
still configured and forgotten for hops removed. A first hop whose name
does not resolve (not found, no address, no usable address, a lookup that
times out: asked of a DNS server of the test in a network namespace) fails
over too. Upstreams are real socks5d processes, and a raw-socket fake
upstream for the drops."""
import signal
import socket
import threading
import time

import pytest

from dns_support import NODATA, dns_namespace
from harness import USERS, bind_socket, free_port, recv_exact, scaled, wait_until
from security_support import ask, ask_rep, echo_ok

REP_GENERAL_FAILURE = 1
REP_NOT_ALLOWED = 2
REP_HOST_UNREACHABLE = 4
REP_TTL_EXPIRED = 6
RELOADED = "configuration reloaded"


class FakeUpstream:
    """A listening socket that accepts and misbehaves: 'close' closes at
    once, 'greet-close' reads the greeting, answers method 0 and closes,
    'silent' reads and never answers (until the test ends). Counts accepts."""

    def __init__(self, mode):
        self.mode = mode
        self.accepts = 0
        self.sock = bind_socket("127.0.0.1")
        self.sock.listen(64)
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.held = []
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.done.is_set():
            try:
                c, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            self.accepts += 1
            if self.mode == "greet-close":
                c.settimeout(scaled(5))
                try:
                    c.recv(16)
                    c.sendall(b"\x05\x00")
                except OSError:
                    pass
            if self.mode == "silent":
                self.held.append(c)
            else:
                c.close()

    def close(self):
        self.done.set()
        self.thread.join(scaled(5))
        self.sock.close()
        for c in self.held:
            c.close()


@pytest.fixture
def fake():
    made = []

    def make(mode):
        f = FakeUpstream(mode)
        made.append(f)
        return f
    yield make
    for f in made:
        f.close()


def logged(srv, text):
    """Lines reach the log from a log thread: wait for them."""
    wait_until(lambda: text in srv.log(), scaled(5), what=f"{text!r} in the log")


def hop(port, cred=""):
    return f"socks5://{cred}127.0.0.1:{port}"


def via_of(srv, n):
    return [line["via"] for line in srv.wait_access(n)]


def connect_ok(srv, echo):
    rep, _, _, s = ask(srv, "127.0.0.1", echo.port)
    with s:
        assert rep == 0
        echo_ok(s)


def test_a_later_hop_that_cannot_be_reached_fails_over_and_is_held_down(socks5d, echo):
    first, spare = socks5d("--auth", "none"), socks5d("--auth", "none")
    dead = free_port()
    near = socks5d("--auth", "none", "--route",
                   f"via {hop(first.port)} {hop(dead)} | {hop(spare.port)}")
    connect_ok(near, echo)
    # The first hop answered "connection refused" for the second: the chain
    # broke at the second hop, and that is the one named and held down.
    logged(near, "failing over: " + hop(dead) + ": ")
    first.wait_access(1)
    connect_ok(near, echo)
    assert via_of(near, 2) == [hop(spare.port)] * 2
    assert len(spare.wait_access(2)) == 2
    # Held down: the second request never went through the first hop.
    assert len(first.access_lines()) == 1


@pytest.mark.parametrize("mode", ["close", "greet-close"])
def test_an_upstream_that_closes_mid_handshake_fails_over(socks5d, echo, fake, mode):
    drop = fake(mode)
    spare = socks5d("--auth", "none")
    near = socks5d("--auth", "none", "--route", f"via {hop(drop.port)} | {hop(spare.port)}")
    connect_ok(near, echo)
    connect_ok(near, echo)
    assert via_of(near, 2) == [hop(spare.port)] * 2
    assert drop.accepts == 1  # held down after the first drop


def test_an_upstream_that_never_answers_fails_over_after_the_connect_timeout(socks5d, echo, fake):
    silent = fake("silent")
    spare = socks5d("--auth", "none")
    near = socks5d("--auth", "none", "--timeout-connect", "1s", "--route",
                   f"via {hop(silent.port)} | {hop(spare.port)}")
    t0 = time.monotonic()
    connect_ok(near, echo)
    assert time.monotonic() - t0 >= 0.9
    assert via_of(near, 1) == [hop(spare.port)]
    logged(near, "upstream handshake timeout")


@pytest.mark.parametrize("mode,rep", [("close", REP_GENERAL_FAILURE),
                                      ("silent", REP_TTL_EXPIRED)])
def test_a_drop_with_no_alternative_left_tells_the_client(socks5d, echo, fake, mode, rep):
    bad = fake(mode)
    near = socks5d("--auth", "none", "--timeout-connect", "1s", "--route",
                   f"via {hop(bad.port)}")
    assert ask_rep(near, "127.0.0.1", echo.port) == rep


def test_a_refusal_answered_by_the_last_hop_is_passed_on_without_failover(socks5d, echo,
                                                                          users_file, tmp_path):
    far_conf = tmp_path / "far.conf"
    far_conf.write_text(f"auth userpass\nusers {users_file}\ndeny port 7\nallow\n")
    far, spare = socks5d("-c", str(far_conf)), socks5d("--auth", "none")
    good = "alice:" + USERS["alice"] + "@"
    conf = tmp_path / "near.conf"
    conf.write_text("auth none\n"
                    f"route port 7 via {hop(far.port, good)} | {hop(spare.port)}\n"
                    f"route via {hop(far.port, 'alice:wrong@')} | {hop(spare.port)}\n")
    near = socks5d("-c", str(conf))
    for _ in range(2):
        # The far end denies port 7 by its rule, and refuses the wrong login:
        # both answers go to the client, and the far end is not held down.
        assert ask_rep(near, "127.0.0.1", 7) == REP_NOT_ALLOWED
        assert ask_rep(near, "127.0.0.1", echo.port) == REP_NOT_ALLOWED
    assert len(far.wait_access(2, pred=lambda l: l["rep"] == "2")) == 2
    assert spare.access_lines() == []
    assert "failing over" not in near.log()


def reload(srv, conf, text):
    n = srv.log().count(RELOADED)
    conf.write_text(text)
    srv.signal(signal.SIGHUP)
    wait_until(lambda: srv.log().count(RELOADED) > n, scaled(10), what="the reload")


def test_hold_down_survives_a_reload_for_hops_still_configured(socks5d, echo, fake, tmp_path):
    drop = fake("close")
    spare = socks5d("--auth", "none")
    conf = tmp_path / "near.conf"
    both = f"auth none\nroute via {hop(drop.port)} | {hop(spare.port)}\n"
    conf.write_text(both)
    near = socks5d("-c", str(conf))
    connect_ok(near, echo)
    assert drop.accepts == 1
    # The same hop in a changed configuration: still held down.
    reload(near, conf, both + "timeout-idle 4m\n")
    connect_ok(near, echo)
    assert drop.accepts == 1
    # A configuration without the hop forgets it; named again, it is tried.
    reload(near, conf, f"auth none\nroute via {hop(spare.port)}\n")
    connect_ok(near, echo)
    reload(near, conf, both)
    connect_ok(near, echo)
    assert drop.accepts == 2
    assert via_of(near, 4) == [hop(spare.port)] * 4


def test_parallel_failovers_on_both_workers_during_reloads(socks5d, echo, fake, tmp_path):
    # The hold-down table is one for the process: both workers hold hops
    # down and read them while the main thread's reloads add and drop them
    # (run under ThreadSanitizer by scripts/test.sh).
    drop = fake("close")
    spare = socks5d("--auth", "none")
    conf = tmp_path / "near.conf"
    both = f"auth none\nroute via {hop(drop.port)} | {hop(spare.port)}\n"
    conf.write_text(both)
    near = socks5d("-c", str(conf), "-w", "2")
    errors = []

    def client():
        try:
            for _ in range(4):
                connect_ok(near, echo)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(repr(e))

    for text in (f"auth none\nroute via {hop(spare.port)}\n", both) * 2:
        threads = [threading.Thread(target=client) for _ in range(8)]
        for t in threads:
            t.start()
        reload(near, conf, text)
        for t in threads:
            t.join(scaled(30))
        assert not any(t.is_alive() for t in threads)
    assert errors == []
    assert set(via_of(near, 4 * 8 * 4)) == {hop(spare.port)}


# ---------------------------------------------------------------- hop names

# The names of the first hop, and how each fails: the DNS server answers
# NXDOMAIN for nosuch.invalid, no address for empty.example, an address the
# namespace has no route to for unusable.example, and nothing at all for
# silent.example (the lookup outlasts the 1 s connect timeout).
HOP_NAMES = {"nosuch.invalid": "name not found", "empty.example": "name not found",
             "unusable.example": "Network is unreachable", "silent.example": "timeout"}


@pytest.fixture
def hop_dns(tmp_path):
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 localhost\n")
    ns, dns = dns_namespace(hosts, {"empty.example": NODATA, "unusable.example": "192.0.2.1"},
                            silent=["silent.example"])
    yield ns, dns
    dns.close()
    ns.close()


def tunnel_ok(srv, target):
    """A CONNECT through srv to the listening socket target (both in the
    namespace), with bytes both ways."""
    rep, _, _, s = ask(srv, "127.0.0.1", target.getsockname()[1])
    with s:
        assert rep == 0
        c, _ = target.accept()
        with c:
            s.sendall(b"ping")
            assert recv_exact(c, 4) == b"ping"
            c.sendall(b"pong")
            assert recv_exact(s, 4) == b"pong"


@pytest.mark.parametrize("name", sorted(HOP_NAMES))
def test_a_first_hop_whose_name_fails_fails_over_and_is_held_down(socks5d, hop_dns, name):
    ns, dns = hop_dns
    target = ns.socket()
    target.bind(("127.0.0.1", 0))
    target.listen(4)
    target.settimeout(scaled(5))
    with target:
        spare = socks5d("--auth", "none", netns=ns)
        near = socks5d("--auth", "none", "--timeout-connect", "1s", "--route",
                       f"via socks5://{name}:1080 | {hop(spare.port)}", netns=ns)
        tunnel_ok(near, target)
        logged(near, f"failing over: resolve socks5://{name}:1080: {HOP_NAMES[name]}"
               if name != "unusable.example" else
               f"failing over: connect socks5://{name}:1080: {HOP_NAMES[name]}")
        asked = len(dns.asked)
        tunnel_ok(near, target)
        assert via_of(near, 2) == [hop(spare.port)] * 2
    # Held down: the second request did not look the name up again.
    assert len(dns.asked) == asked
    assert near.log().count("failing over") == 1


def test_a_first_hop_whose_name_fails_with_no_alternative_left_is_host_unreachable(socks5d,
                                                                                     hop_dns):
    ns, _ = hop_dns
    near = socks5d("--auth", "none", "--route", "via socks5://nosuch.invalid:1080", netns=ns)
    assert ask_rep(near, "127.0.0.1", 9) == REP_HOST_UNREACHABLE
    (line,) = near.wait_access(1)
    assert line["error"] == "resolve socks5://nosuch.invalid:1080: name not found"
