"""Names the resolver reads differently from the rules (issue 10, finding 4),
and the peer a BIND request names (hardening items on BIND).

The server runs in a network namespace with a search list and ndots:5 (as
in a Kubernetes pod; given through LOCALDOMAIN and RES_OPTIONS, which the
resolver reads exactly like the `search` and `options` lines of
/etc/resolv.conf), a hosts file of its own (CARES_HOSTS), and a tiny DNS
server inside the namespace, on the address /etc/resolv.conf names, that
knows secret.corp.example. The rules deny *.corp.example; every spelling an
attacker can send for that host must be refused, the host must see no
connection and no datagram, and the DNS server must never be asked for it.
"""
import select
import socket

import pytest

from dns_support import dns_namespace
from harness import read_reply, read_until_closed, recv_exact, request, scaled, wait_until
from security_support import (CMD_BIND, CMD_CONNECT, CMD_UDP, REP_NOT_ALLOWED, REP_SUCCEEDED,
                              negotiate, udp_header)

REP_HOST_UNREACHABLE = 4

SECRET = "secret.corp.example"
# What the DNS server knows (A records only; AAAA answers are empty).
ZONE = {SECRET: "127.0.0.1", "open.example": "127.0.0.1", "peer.example": "127.0.0.2",
        "both.example": "127.0.0.3"}

# Spellings of SECRET: through the search list, in another case with the
# trailing dot, with a backslash escape c-ares would decode, fully qualified.
SPELLINGS = ["secret", "SECRET.corp.example.", "secret.corp.exampl\\e", "secret.corp.example."]

RULES = ["--rule", "deny to *.corp.example", "--rule", "allow"]


@pytest.fixture
def dns_ns(tmp_path):
    """(namespace, DNS server): a search list and ndots:5, a hosts file with
    localhost only, and the DNS server on the system's first name server
    address, which exists only inside the namespace."""
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 localhost\n::1 localhost\n")
    ns, dns = dns_namespace(hosts, ZONE, env={"LOCALDOMAIN": "corp.example",
                                              "RES_OPTIONS": "ndots:5 timeout:1"})
    yield ns, dns
    dns.close()
    ns.close()


class Listener:
    """A TCP listener in the namespace that counts the connections it gets."""

    def __init__(self, ns, host="127.0.0.1"):
        self.sock = ns.socket()
        self.sock.bind((host, 0))
        self.sock.listen(16)
        self.sock.setblocking(False)
        self.port = self.sock.getsockname()[1]

    def accepted(self):
        n = 0
        while True:
            try:
                c, _ = self.sock.accept()
            except BlockingIOError:
                return n
            c.close()
            n += 1


def ns_ask(srv, host, port, cmd=CMD_CONNECT):
    """Greeting and one request from inside the namespace; returns (rep,
    bnd_host, bnd_port, sock). The caller closes sock."""
    s = srv.socket()
    try:
        s.settimeout(scaled(5))
        s.connect(srv.addr)
        negotiate(s)
        s.sendall(request(host, port, cmd=cmd))
        rep, bh, bp, _ = read_reply(s)
    except BaseException:
        s.close()
        raise
    return rep, bh, bp, s


def refused(srv, host, port, cmd):
    """The REP a request gets, which must not be success; the connection
    must then close."""
    rep, _, _, s = ns_ask(srv, host, port, cmd)
    with s:
        assert rep != REP_SUCCEEDED, f"{cmd=} {host!r}: accepted"
        assert read_until_closed(s, scaled(3)) == b""
    return rep


# ---------------------------------------------------------------- finding 4


@pytest.mark.parametrize("name", SPELLINGS)
def test_connect_to_a_denied_host_by_another_spelling_is_refused(socks5d, dns_ns, name):
    ns, dns = dns_ns
    srv = socks5d("--auth", "none", *RULES, netns=ns)
    target = Listener(ns)
    rep = refused(srv, name, target.port, CMD_CONNECT)
    assert rep in (REP_NOT_ALLOWED, REP_HOST_UNREACHABLE), rep
    assert target.accepted() == 0
    assert SECRET not in [a.lower() for a in dns.asked], dns.asked
    # The same server reaches a name the rules allow, through the same DNS.
    rep, _, _, s = ns_ask(srv, "open.example", target.port)
    s.close()
    assert rep == REP_SUCCEEDED
    assert wait_until(target.accepted, scaled(3), what="the allowed connection") == 1


def test_names_outside_host_name_syntax_get_host_unreachable(socks5d, dns_ns):
    ns, dns = dns_ns
    srv = socks5d("--auth", "none", *RULES, netns=ns)
    target = Listener(ns)
    for name in ["open.exampl\\e", "open\\.example", "open.example..", "open example",
                 b"open.example\x00.org", "fe80::1%lo"]:
        assert refused(srv, name, target.port, CMD_CONNECT) == REP_HOST_UNREACHABLE, name
    assert target.accepted() == 0
    assert dns.asked == []


def udp_associate(srv):
    """UDP ASSOCIATE from inside the namespace: (control socket, relay address)."""
    rep, rhost, rport, ctl = ns_ask(srv, "0.0.0.0", 0, CMD_UDP)
    assert rep == REP_SUCCEEDED
    return ctl, (rhost, rport)


def test_udp_to_a_denied_host_by_any_spelling_is_dropped(socks5d, dns_ns):
    ns, dns = dns_ns
    srv = socks5d("--auth", "none", *RULES, netns=ns)
    target = ns.socket(socket.AF_INET, socket.SOCK_DGRAM)
    target.bind(("127.0.0.1", 0))
    port = target.getsockname()[1]
    client = ns.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client.bind(("127.0.0.1", 0))
    ctl, relay = udp_associate(srv)
    with ctl, client, target:
        for i, name in enumerate(SPELLINGS + ["secret.corp.exampl\\e."]):
            client.sendto(udp_header(name, port) + b"bad %d" % i, relay)
            # One lookup at a time, in order: once a datagram to an allowed
            # name arrives, the one before it has been dealt with.
            got = _control_arrives(client, target, relay, port, i)
            assert got == b"good %d" % i, f"{name!r} reached the host: {got!r}"
    assert SECRET not in [a.lower() for a in dns.asked], dns.asked


def test_udp_to_a_name_that_does_not_resolve_is_dropped_and_the_association_lives(socks5d,
                                                                                  dns_ns):
    ns, dns = dns_ns
    srv = socks5d("--auth", "none", netns=ns)
    target = ns.socket(socket.AF_INET, socket.SOCK_DGRAM)
    target.bind(("127.0.0.1", 0))
    port = target.getsockname()[1]
    client = ns.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client.bind(("127.0.0.1", 0))
    ctl, relay = udp_associate(srv)
    with ctl, client, target:
        client.sendto(udp_header("nowhere.example", port) + b"bad 0", relay)
        assert _control_arrives(client, target, relay, port, 0) == b"good 0"
        assert "nowhere.example" in dns.asked, dns.asked
    (line,) = srv.wait_access(1)
    assert line["rep"] == "0" and int(line["dropped"]) >= 1, line


def _control_arrives(client, target, relay, port, i):
    """Sends datagrams to open.example (the same host) until one arrives;
    returns it, or a datagram that should never have arrived. Late copies
    of earlier control datagrams are skipped. Bounded in count and time."""
    want = b"good %d" % i
    for _ in range(30):
        client.sendto(udp_header("open.example", port) + want, relay)
        while select.select([target], [], [], scaled(0.2))[0]:
            data = target.recv(2048)
            if data == want or not data.startswith(b"good "):
                return data
    raise AssertionError("no datagram to an allowed name got through")


@pytest.mark.parametrize("name", SPELLINGS)
def test_bind_naming_a_denied_host_by_another_spelling_is_refused(socks5d, dns_ns, name):
    ns, dns = dns_ns
    srv = socks5d("--auth", "none", *RULES, netns=ns)
    rep = refused(srv, name, 0, CMD_BIND)
    assert rep in (REP_NOT_ALLOWED, REP_HOST_UNREACHABLE), rep
    assert SECRET not in [a.lower() for a in dns.asked], dns.asked


# ---------------------------------------------------------------- BIND by name


def _peer(ns, source, port=0):
    p = ns.socket()
    p.settimeout(scaled(5))
    p.bind((source, port))
    return p


def _turned_away(ns, ctl, bound, source, port=0):
    """A peer from source:port connects to the BIND port: it must be closed
    without data and the client must get no second reply."""
    with _peer(ns, source, port) as p:
        p.connect(bound)
        assert read_until_closed(p, scaled(3)) == b"", "a refused peer got data"
    r, _, _ = select.select([ctl], [], [], 0.3)
    assert not r, f"unexpected bytes on the control connection: {ctl.recv(64)!r}"


def _admitted(ns, ctl, bound, source, port=0):
    with _peer(ns, source, port) as p:
        p.connect(bound)
        rep, phost, pport, _ = read_reply(ctl)
        assert rep == REP_SUCCEEDED
        assert (phost, pport) == p.getsockname()
        p.sendall(b"from peer")
        assert recv_exact(ctl, 9) == b"from peer"


def test_bind_by_name_admits_only_a_peer_at_the_names_address(socks5d, dns_ns):
    ns, dns = dns_ns
    srv = socks5d("--auth", "none", netns=ns)
    rep, bhost, bport, ctl = ns_ask(srv, "peer.example", 0, CMD_BIND)
    with ctl:
        assert rep == REP_SUCCEEDED
        _turned_away(ns, ctl, (bhost, bport), "127.0.0.3")
        _turned_away(ns, ctl, (bhost, bport), "127.0.0.1")
        _admitted(ns, ctl, (bhost, bport), "127.0.0.2")
    assert "peer.example" in dns.asked


def test_bind_by_a_name_that_does_not_resolve_is_refused(socks5d, dns_ns):
    ns, _ = dns_ns
    srv = socks5d("--auth", "none", netns=ns)
    assert refused(srv, "nowhere.example", 0, CMD_BIND) == REP_HOST_UNREACHABLE


def test_bind_by_a_name_whose_addresses_are_all_denied_is_refused(socks5d, dns_ns):
    ns, _ = dns_ns
    srv = socks5d("--auth", "none", "--rule", "deny cmd bind to 127.0.0.2", "--rule", "allow",
                  netns=ns)
    assert refused(srv, "peer.example", 0, CMD_BIND) == REP_NOT_ALLOWED


# ---------------------------------------------------------------- BIND and `port`


def test_bind_holds_the_peer_to_a_nonzero_requested_port(socks5d, netns):
    srv = socks5d("--auth", "none", netns=netns)
    want, other = 40001, 40002  # the namespace is fresh: both are free
    rep, bhost, bport, ctl = ns_ask(srv, "127.0.0.2", want, CMD_BIND)
    with ctl:
        assert rep == REP_SUCCEEDED
        _turned_away(netns, ctl, (bhost, bport), "127.0.0.2", other)
        _admitted(netns, ctl, (bhost, bport), "127.0.0.2", want)


def test_bind_port_clause_matches_the_peers_port(socks5d, netns):
    """`deny cmd bind port 1000-1999`: a request naming such a port is
    refused, and with port 0 (any) a peer from such a port is turned away,
    while one from another port is admitted."""
    srv = socks5d("--auth", "none", "--rule", "deny cmd bind port 1000-1999", "--rule", "allow",
                  netns=netns)
    assert refused(srv, "127.0.0.2", 1500, CMD_BIND) == REP_NOT_ALLOWED
    rep, bhost, bport, ctl = ns_ask(srv, "0.0.0.0", 0, CMD_BIND)
    with ctl:
        assert rep == REP_SUCCEEDED
        _turned_away(netns, ctl, (bhost, bport), "127.0.0.2", 1500)
        _admitted(netns, ctl, (bhost, bport), "127.0.0.2", 2500)
