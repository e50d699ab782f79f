"""Attacks by spoofed clients: PROXY headers from whoever can reach the port
(issue 10, finding 1).

A PROXY header sets the client address that `allow from` rules, per-IP
limits and login throttling judge. A listener that takes the header from
anyone lets every client claim to be 10.9.9.9; so a PROXY listener must
name its trusted senders, at start, with -t and on reload, and protected
mode counts `allow from` only where nobody else can write that header.
"""
import signal
import socket

from harness import (beyond_loopback_args, free_port, greeting, read_reply, recv_exact, request,
                     scaled, wait_until)
from ops_support import ops  # noqa: F401  (the fixture)
from security_support import REP_SUCCEEDED, run_expect_exit

CLAIMED = "10.9.9.9"  # the address an attacker claims: admitted by the rules
TRUSTED = "127.0.0.11"  # the balancer
ATTACKER = "127.0.0.1"
RULES = ["allow from 10.0.0.0/8", "deny"]
START_BOUND = 3  # seconds: a server that starts instead of refusing is killed then


def rule_args(rules=RULES):
    return [a for r in rules for a in ("--rule", r)]


def refuses_to_start(binary, *args):
    r = run_expect_exit(binary, *args, timeout=scaled(START_BOUND))
    assert r.returncode == 2, (r.returncode, r.stderr)
    return r.stderr


def spoofed(addr, source, payload=b""):
    """Connects from `source`, claims CLAIMED in a PROXY v1 header and asks
    for a CONNECT; returns (reply, sock) where reply is REP or None when the
    server closed without a byte."""
    s = socket.socket()
    s.settimeout(scaled(5))
    s.bind((source, 0))
    s.connect(addr)
    s.sendall(f"PROXY TCP4 {CLAIMED} {addr[0]} 40000 {addr[1]}\r\n".encode() + greeting())
    try:
        m = recv_exact(s, 2)
    except (EOFError, ConnectionResetError):
        s.close()
        return None, None
    assert m == b"\x05\x00", m
    s.sendall(payload)
    return read_reply(s)[0], s


def test_the_open_proxy_of_the_issue_refuses_to_start(socks5d_bin):
    port = free_port("0.0.0.0")
    err = refuses_to_start(socks5d_bin, "-l", f"0.0.0.0:{port} proxy-protocol", "--auth", "none",
                           *rule_args(), *beyond_loopback_args())
    assert f"listen 0.0.0.0:{port}: proxy-protocol needs proxy-protocol-from" in err, err
    # The global switch, and on loopback too: a local balancer forwards strangers.
    err = refuses_to_start(socks5d_bin, "-l", f"127.0.0.1:{port}", "--proxy-protocol", "--auth",
                           "none", *rule_args())
    assert f"listen 127.0.0.1:{port}: proxy-protocol needs" in err, err


def test_check_mode_names_the_listen_line(socks5d_bin, tmp_path):
    port = free_port()
    conf = tmp_path / "pp.conf"
    conf.write_text(f"auth none\nallow from 10.0.0.0/8\n  listen 127.0.0.1:{port} proxy-protocol\n")
    r = run_expect_exit(socks5d_bin, "-t", "-c", str(conf), timeout=scaled(START_BOUND))
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert r.stderr.startswith(f"{conf}:3:10: listen 127.0.0.1:{port}: proxy-protocol needs "
                               "proxy-protocol-from"), r.stderr


def test_protected_mode_ignores_allow_from_when_anyone_may_send_the_header(socks5d_bin):
    port = free_port("0.0.0.0")
    for trusted in ("0.0.0.0/0", "0.0.0.0/1,128.0.0.0/1", "::/0"):
        err = refuses_to_start(socks5d_bin, "-l", f"0.0.0.0:{port} proxy-protocol",
                               "--proxy-protocol-from", trusted, "--auth", "none", *rule_args(),
                               *beyond_loopback_args())
        assert f"open proxy on 0.0.0.0:{port}" in err, (trusted, err)


def test_a_trusted_balancer_is_served_and_a_spoofer_is_closed(socks5d, echo):
    # Already the behaviour with a trust list; kept as the positive control.
    port = free_port()
    srv = socks5d("--auth", "none", "--proxy-protocol", "--proxy-protocol-from", TRUSTED,
                  *rule_args(), listen=[f"127.0.0.1:{port}"])
    rep, s = spoofed(srv.addr, TRUSTED, request(*echo.addr))
    with s:
        assert rep == REP_SUCCEEDED
    assert spoofed(srv.addr, ATTACKER, request(*echo.addr)) == (None, None)


def test_reload_that_drops_the_trust_list_is_refused_and_the_old_one_stays(ops, echo):
    def conf(trust):
        return ["auth none", "proxy-protocol", *trust, *RULES]

    srv, _, path = ops.start_conf(
        lambda ports: conf([f"proxy-protocol-from {TRUSTED}"]),
        args=lambda ports: ["-l", f"127.0.0.1:{ports[0]}"])
    path.write_text("\n".join(conf([])) + "\n")
    srv.signal(signal.SIGHUP)
    wait_until(lambda: "reload failed" in srv.log() or "configuration reloaded" in srv.log(),
               scaled(10), what="the outcome of the reload")
    assert "reload failed" in srv.log() and "configuration reloaded" not in srv.log(), srv.log()
    assert "proxy-protocol needs proxy-protocol-from" in srv.log(), srv.log()
    # The old trust list holds: the spoofer is still closed, the balancer served.
    assert spoofed(srv.addr, ATTACKER, request(*echo.addr)) == (None, None)
    rep, s = spoofed(srv.addr, TRUSTED, request(*echo.addr))
    with s:
        assert rep == REP_SUCCEEDED
        s.sendall(b"ping")
        assert recv_exact(s, 4) == b"ping"
