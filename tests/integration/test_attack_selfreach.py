"""Attacks on deny-private through the proxy host itself (issue 10, finding 5).

A service bound to 0.0.0.0 on the proxy host answers on every address of the
host, not only on 127.0.0.1: a client that names the host's own interface
address reaches it. Each test runs in a network namespace of its own, where
the "public" addresses (1.2.3.4, 5.6.7.8) are put on lo, a victim service
listens on 0.0.0.0, and nothing can leave the machine.
"""
import socket
import subprocess
import time

from harness import read_reply, recv_exact, request, scaled, greeting
from security_support import REP_NOT_ALLOWED, REP_SUCCEEDED

VICTIM_PORT = 8080


def ip(ns, *args):
    subprocess.run(ns.exec_prefix + ["ip", *args], check=True, capture_output=True,
                   timeout=scaled(10))


def victim(ns):
    """A listener on 0.0.0.0 inside the namespace: the local-only service."""
    s = ns.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", VICTIM_PORT))
    s.listen(16)
    s.settimeout(0)
    return s


def victim_reached(lst):
    """Whether a connection reached the victim since the last call (each one
    found is accepted and closed)."""
    reached = False
    while True:
        try:
            c, _ = lst.accept()
        except BlockingIOError:
            return reached
        c.close()
        reached = True


def rep_for(ns, srv, host, port=VICTIM_PORT):
    """One CONNECT through srv from inside the namespace; returns REP."""
    s = ns.socket(socket.AF_INET)
    with s:
        s.settimeout(scaled(5))
        s.connect(srv.addr)
        s.sendall(greeting())
        assert recv_exact(s, 2) == b"\x05\x00"
        s.sendall(request(host, port))
        rep, _, _, _ = read_reply(s)
        return rep


def start(socks5d, ns, *rules):
    args = ["--auth", "none", "--timeout-connect", "1s"]
    for r in rules:
        args += ["--rule", r]
    return socks5d(*args, listen=["127.0.0.1:1080"], netns=ns)


def test_connect_to_the_hosts_own_interface_address_is_refused(socks5d, netns):
    ip(netns, "addr", "add", "1.2.3.4/32", "dev", "lo")
    lst = victim(netns)
    with lst:
        srv = start(socks5d, netns, "deny-private", "allow")
        # The spellings of the same host: plain, mapped, NAT64, 6to4, compatible.
        for host in ("1.2.3.4", "::ffff:1.2.3.4", "64:ff9b::102:304", "2002:102:304::1",
                     "::102:304", "127.0.0.1", "0.0.0.0"):
            assert rep_for(netns, srv, host) == REP_NOT_ALLOWED, host
        assert not victim_reached(lst), "a refused CONNECT reached the local service"
        # The same address is served when no rule forbids it: the refusal
        # above is deny-private's, not the network's.
        open_srv = socks5d("--auth", "none", "--rule", "allow", listen=["127.0.0.1:1081"],
                           netns=netns)
        assert rep_for(netns, open_srv, "1.2.3.4") == REP_SUCCEEDED
        assert victim_reached(lst)


def test_an_address_added_at_run_time_is_refused_without_reload(socks5d, netns):
    lst = victim(netns)
    with lst:
        srv = start(socks5d, netns, "deny-private", "allow")
        ip(netns, "addr", "add", "5.6.7.8/32", "dev", "lo")
        added = time.monotonic()
        # The server learns of the address from netlink; until it does, a
        # CONNECT may still pass. It must be refused well within 5 s.
        deadline = added + scaled(5)
        while rep_for(netns, srv, "5.6.7.8") != REP_NOT_ALLOWED:
            assert time.monotonic() < deadline, "5.6.7.8 still reachable 5 s after it was added"
            time.sleep(0.05)
        victim_reached(lst)
        for host in ("5.6.7.8", "::ffff:5.6.7.8", "64:ff9b::506:708"):
            assert rep_for(netns, srv, host) == REP_NOT_ALLOWED, host
        assert not victim_reached(lst)
        # Once the address is gone, it is just another unreachable host
        # (nothing routes out of the namespace): not refused by rule any more.
        ip(netns, "addr", "del", "5.6.7.8/32", "dev", "lo")
        deadline = time.monotonic() + scaled(5)
        while rep_for(netns, srv, "5.6.7.8") == REP_NOT_ALLOWED:
            assert time.monotonic() < deadline, "5.6.7.8 still refused 5 s after removal"
            time.sleep(0.05)
        assert "reload" not in srv.log()


def test_special_purpose_and_metadata_addresses_are_refused(socks5d, netns):
    # Refused by rule before any connect; in the namespace nothing routes, so
    # a CONNECT that slipped through would end in another REP, never 2.
    targets = ["100.100.100.200", "168.63.129.16", "192.0.0.192", "192.0.0.170", "192.0.2.1",
               "198.18.0.1", "198.19.255.254", "198.51.100.7", "203.0.113.9", "240.0.0.1",
               "255.255.255.255", "fd00:ec2::254", "fd20:ce::254", "64:ff9b:1::1", "100::1",
               "2001:2::1", "2001:db8::1", "3fff::1", "5f00::1", "64:ff9b::a9fe:a9fe",
               "2002:a9fe:a9fe::1", "::ffff:0:a9fe:a9fe"]
    srv = start(socks5d, netns, "deny-private", "allow")
    got = {host: rep_for(netns, srv, host, 80) for host in targets}
    assert all(rep == REP_NOT_ALLOWED for rep in got.values()), got
