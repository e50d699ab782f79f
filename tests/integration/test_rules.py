"""Access rules against a real server: who is refused at accept, which
destinations, ports, commands, names and users are refused with REP 2, that a
name or an IPv4-mapped address cannot get around an address rule, UDP
datagrams and BIND peers checked one by one, and protected mode.

Every refusal is checked on the wire (the exact REP, or no byte at all for a
client refused at accept) and in the access log (rule=FILE:LINE of the
deciding rule; no rule= field for the default).

Run: /usr/bin/python3 -m pytest -q tests/integration/test_rules.py
"""
import select
import socket
import subprocess

import pytest
import socks  # Debian python3-socks (PySocks)

from harness import (HTTP_BODY, free_port, open_tunnel, proxy_env, read_reply, read_until_closed,
                     recv_exact, scaled)
from security_support import (ALICE, BOB, CMD_BIND, CMD_UDP, REP_NOT_ALLOWED, REP_SUCCEEDED,
                              UdpEcho, ask, ask_rep, connect_from, echo_ok,
                              refused_before_greeting, run_expect_exit, udp_header, udp_unwrap)

CLI = "(command line)"


def rules_args(*rules):
    out = []
    for r in rules:
        out += ["--rule", r]
    return out


class Rules:
    """Rules written to a config file (most tests), so that the access log
    names them as FILE:LINE; ref(n) is how the n-th rule (1-based) is named.
    The command-line form (--rule, named "(command line):N") has its own
    tests below."""

    def __init__(self, tmp_path, *rules):
        self.path = tmp_path / f"rules-{len(list(tmp_path.glob('rules-*.conf')))}.conf"
        self.path.write_text("# rules under test\n" + "\n".join(rules) + "\n")
        self.args = ["-c", str(self.path)]

    def ref(self, n):
        return f"{self.path}:{n + 1}"


def refusal_line(srv, dst, n=1):
    """The access-log line of the refused request for `dst` ("host:port" as
    logged)."""
    lines = srv.wait_access(n, pred=lambda l: l.get("dst") == dst and l.get("rep") == "2")
    return lines[-1]


def curl(args, timeout=None):
    timeout = timeout or scaled(15)
    return subprocess.run(["curl", "-sS", "--noproxy", "", "--max-time", str(int(timeout)),
                           *args], capture_output=True, env=proxy_env(), timeout=timeout + 5)


# ---------------------------------------------------------------- refused at accept


@pytest.mark.parametrize("where", ["cli", "file"])
def test_client_denied_by_from_rule_is_dropped_before_any_byte(socks5d, echo, tmp_path, where):
    if where == "cli":
        srv = socks5d("--auth", "none", *rules_args("deny from 127.0.0.2", "allow"))
        rule = f"{CLI}:1"
    else:
        conf = tmp_path / "socks5d.conf"
        conf.write_text("# access rules\n"
                        "auth none\n"
                        "\n"
                        "deny from 127.0.0.2   # one bad client\n"
                        "allow\n")
        srv = socks5d("-c", str(conf))
        rule = f"{conf}:4"

    # The refused client: not a byte back, even to a valid greeting.
    with connect_from(srv, "127.0.0.2") as s:
        refused_before_greeting(s)
    (line,) = srv.wait_access(1, pred=lambda l: l["client"].startswith("127.0.0.2:"))
    assert line["rule"] == rule, line["_line"]
    assert line["cmd"] == "-" and line["rep"] == "-", line["_line"]
    assert "denied" in line.get("error", ""), line["_line"]

    # 127.0.0.1 is served.
    with open_tunnel(srv, *echo.addr) as s:
        echo_ok(s, b"loopback one")
    ok = srv.wait_access(1, pred=lambda l: l["client"].startswith("127.0.0.1:"))
    assert ok[0]["rep"] == "0", ok[0]["_line"]


def test_refused_clients_are_refused_every_time_and_others_are_served(socks5d, echo, tmp_path):
    rules = Rules(tmp_path, "deny from 127.0.0.2,127.0.0.3", "allow")
    srv = socks5d("--auth", "none", *rules.args)
    for i in range(20):
        with connect_from(srv, "127.0.0.2" if i % 2 else "127.0.0.3") as s:
            refused_before_greeting(s)
    with open_tunnel(srv, *echo.addr) as s:
        echo_ok(s)
    lines = srv.wait_access(20, pred=lambda l: l.get("rule") == rules.ref(1))
    assert len(lines) == 20


def test_cli_rules_are_named_by_their_position(socks5d, echo):
    """--rule options are logged as "(command line):N", N counting the
    --rule options from 1 (like lines of a file)."""
    p = echo.port
    srv = socks5d("--auth", "none",
                  *rules_args("deny to 127.0.0.2", f"deny to 127.0.0.3 port {p}", "allow"))
    assert ask_rep(srv, "127.0.0.2", p) == REP_NOT_ALLOWED
    assert ask_rep(srv, "127.0.0.3", p) == REP_NOT_ALLOWED
    assert refusal_line(srv, f"127.0.0.2:{p}")["rule"] == f"{CLI}:1"
    assert refusal_line(srv, f"127.0.0.3:{p}")["rule"] == f"{CLI}:2"
    with open_tunnel(srv, *echo.addr) as s:
        echo_ok(s)


def test_cli_rules_replace_the_config_files_rules(socks5d, echo, tmp_path):
    rules = Rules(tmp_path, "deny")
    srv = socks5d("--auth", "none", *rules.args, *rules_args("deny to 127.0.0.2", "allow"))
    with open_tunnel(srv, *echo.addr) as s:
        echo_ok(s, b"the file's deny is gone")
    assert ask_rep(srv, "127.0.0.2", echo.port) == REP_NOT_ALLOWED


# ---------------------------------------------------------------- destinations


def test_destination_cidr_rule_refuses_v4_and_its_mapped_forms(socks5d, echo, echo6, tmp_path):
    rules = Rules(tmp_path, "deny to 127.0.0.0/8", "allow")
    srv = socks5d("--auth", "none", *rules.args)
    port = echo.port
    # The address, its IPv4-mapped IPv6 form (ATYP 4) and both as text (ATYP 3).
    for host in ("127.0.0.1", "::ffff:127.0.0.1", b"127.0.0.1", b"::ffff:127.0.0.1",
                 "127.0.0.2"):
        assert ask_rep(srv, host, port) == REP_NOT_ALLOWED, host
    lines = srv.wait_access(5, pred=lambda l: l["rep"] == "2")
    assert {l["rule"] for l in lines} == {rules.ref(1)}, [l["_line"] for l in lines]
    assert all(l["addr"] in ("-", "0.0.0.0:0") or not l["addr"].endswith(f":{port}")
               for l in lines), "a refused request was connected"
    before = echo.accepted
    # IPv6 loopback is not in 127.0.0.0/8: served.
    with open_tunnel(srv, *echo6.addr) as s:
        echo_ok(s, b"v6 allowed")
    assert echo.accepted == before, "the v4 echo server was reached"


def test_port_rules_single_port_and_range(socks5d, echo, http_servers):
    e, h = echo.port, http_servers.port
    other = free_port()
    while other in (e, h - 1, h, h + 1):
        other = free_port()
    srv = socks5d("--auth", "none",
                  *rules_args(f"allow cmd connect port {e}", f"allow port {h - 1}-{h + 1}"))
    with open_tunnel(srv, "127.0.0.1", e) as s:
        echo_ok(s, b"exact port")
    # A real client through the range rule.
    r = curl(["--socks5", f"127.0.0.1:{srv.port}", f"http://127.0.0.1:{h}/range"])
    assert r.returncode == 0, r.stderr.decode()
    assert r.stdout == HTTP_BODY
    # Outside both: the default (deny), no rule named.
    for port in (other, e + 1 if e + 1 not in (h - 1, h, h + 1) else e - 1):
        assert ask_rep(srv, "127.0.0.1", port) == REP_NOT_ALLOWED, port
    lines = srv.wait_access(2, pred=lambda l: l["rep"] == "2")
    assert all("rule" not in l for l in lines), [l["_line"] for l in lines]


def test_port_rule_deny_range_then_allow(socks5d, echo, http_servers, tmp_path):
    e, h = echo.port, http_servers.port
    lo, hi = (e, e) if abs(e - h) <= 1 else (e - 1, e + 1)
    rules = Rules(tmp_path, f"deny port {lo}-{hi}", "allow")
    srv = socks5d("--auth", "none", *rules.args)
    assert ask_rep(srv, "127.0.0.1", e) == REP_NOT_ALLOWED
    assert refusal_line(srv, f"127.0.0.1:{e}")["rule"] == rules.ref(1)
    r = curl(["--socks5", f"127.0.0.1:{srv.port}", f"http://127.0.0.1:{h}/outside"])
    assert r.returncode == 0, r.stderr.decode()
    assert r.stdout == HTTP_BODY


def test_cmd_rule_connect_allowed_bind_denied(socks5d, echo, tmp_path):
    rules = Rules(tmp_path, "deny cmd bind", "allow cmd connect,udp")
    srv = socks5d("--auth", "none", *rules.args)
    assert ask_rep(srv, "0.0.0.0", 0, cmd=CMD_BIND) == REP_NOT_ALLOWED
    (line,) = srv.wait_access(1, pred=lambda l: l["cmd"] == "bind")
    assert line["rep"] == "2" and line["rule"] == rules.ref(1), line["_line"]
    with open_tunnel(srv, *echo.addr) as s:
        echo_ok(s, b"connect allowed")
    rep, _, _, ctl = ask(srv, "0.0.0.0", 0, cmd=CMD_UDP)
    ctl.close()
    assert rep == REP_SUCCEEDED


def test_cmd_rule_only_connect_allowed_default_denies_bind_and_udp(socks5d, echo):
    srv = socks5d("--auth", "none", *rules_args("allow cmd CONNECT"))
    with open_tunnel(srv, *echo.addr) as s:
        echo_ok(s)
    assert ask_rep(srv, "0.0.0.0", 0, cmd=CMD_BIND) == REP_NOT_ALLOWED
    assert ask_rep(srv, "0.0.0.0", 0, cmd=CMD_UDP) == REP_NOT_ALLOWED
    lines = srv.wait_access(2, pred=lambda l: l["rep"] == "2")
    assert sorted(l["cmd"] for l in lines) == ["bind", "udp"]
    assert all("rule" not in l for l in lines), "the default decided: no rule to name"


# Names that the wildcard pattern covers (any case, a trailing dot) and names
# it must not cover (the apex, look-alikes). Names that are not host names
# ("x.example.test..", a NUL inside) never reach the rules: test_attack_names.
WILDCARD_HITS = ["www.example.test", "A.B.EXAMPLE.test", "www.Example.Test."]
WILDCARD_MISSES = ["example.test", "EXAMPLE.TEST.", "badexample.test", "example.test.evil",
                   "www.example.tes"]


def test_domain_pattern_wildcard_vs_apex_case_insensitive(socks5d, tmp_path):
    # The first two rules deny, so nothing is ever resolved: the access
    # log's rule= tells which one decided. (The allow rule, never reached,
    # keeps the client from being refused at accept.)
    rules = Rules(tmp_path, "deny to *.Example.TEST", "deny port 443", "allow port 9")
    srv = socks5d("--auth", "none", *rules.args)
    for name in WILDCARD_HITS + WILDCARD_MISSES:
        assert ask_rep(srv, name, 443) == REP_NOT_ALLOWED, name
    lines = srv.wait_access(len(WILDCARD_HITS) + len(WILDCARD_MISSES))
    by_rule = {}
    for l in lines:
        by_rule.setdefault(l["rule"], []).append(l["dst"])
    assert len(by_rule.get(rules.ref(1), [])) == len(WILDCARD_HITS), by_rule
    assert len(by_rule.get(rules.ref(2), [])) == len(WILDCARD_MISSES), by_rule
    for d in by_rule[rules.ref(1)]:
        assert ".example.test" in d.lower(), by_rule


def test_domain_pattern_allow_subdomain_only(socks5d, http_servers):
    h = http_servers.port
    srv = socks5d("--auth", "none", *rules_args(f"allow to *.LocalHost port {h}"))
    # A real client sending the name (resolved by the proxy: *.localhost is loopback).
    r = curl(["--socks5-hostname", f"127.0.0.1:{srv.port}", f"http://App.LOCALHOST:{h}/sub"])
    assert r.returncode == 0, r.stderr.decode()
    assert r.stdout == HTTP_BODY
    # The apex is not covered by *.localhost.
    assert ask_rep(srv, "localhost", h) == REP_NOT_ALLOWED
    line = refusal_line(srv, f"localhost:{h}")
    assert "rule" not in line, line["_line"]


def test_long_rule_in_config_file_keeps_all_its_clauses(socks5d, socks5d_bin, echo, tmp_path):
    """A rule line of ~1.2 kB (lines may be up to 4 kB): its last clause
    must not be lost. Loading the file may refuse the rule, but must not cut
    it into a different, valid rule (here: without its port restriction)."""
    port = free_port()
    while port == echo.port:
        port = free_port()
    nets = ["127.0.0.1"] + [f"10.{i}.{j}.0/24" for i in range(10) for j in range(10)]
    rule = f"allow to {','.join(nets)} port {port}"
    assert len(rule) > 1100
    conf = tmp_path / "long.conf"
    conf.write_text(f"auth none\n{rule}\n")
    r = run_expect_exit(socks5d_bin, "-t", "-c", str(conf))
    if r.returncode != 0:  # refusing the line is fine; it must say where
        assert r.returncode == 2 and f"{conf}:2" in r.stderr, (r.returncode, r.stderr)
        return
    srv = socks5d("-c", str(conf))
    # 127.0.0.1 is allowed only on `port`: the echo port is refused by default.
    rep = ask_rep(srv, *echo.addr)
    assert rep == REP_NOT_ALLOWED, \
        f"127.0.0.1:{echo.port} answered REP {rep}: the rule lost its 'port {port}' clause"


# ---------------------------------------------------------------- names vs address rules


@pytest.mark.parametrize("name", ["localhost", "LOCALHOST.", "app.localhost", "Foo.LocalHost."])
def test_name_resolving_to_denied_address_is_refused(socks5d, echo, echo6, tmp_path, name):
    rules = Rules(tmp_path, "deny to 127.0.0.0/8,::1", "allow")
    srv = socks5d("--auth", "none", *rules.args)
    assert ask_rep(srv, name, echo.port) == REP_NOT_ALLOWED
    line = srv.wait_access(1)[0]
    assert line["rep"] == "2" and line["rule"] == rules.ref(1), line["_line"]


def test_name_never_reaches_denied_v4_address_but_may_use_allowed_v6(socks5d, http_servers):
    """`deny to 127.0.0.0/8` then `allow`: localhost resolves to ::1 and
    127.0.0.1; only ::1 may be dialled."""
    h = http_servers.port
    srv = socks5d("--auth", "none", *rules_args("deny to 127.0.0.0/8", "allow"))
    v4_before = len(http_servers.v4.hits)
    s = socks.socksocket(socket.AF_INET, socket.SOCK_STREAM)
    s.set_proxy(socks.SOCKS5, "127.0.0.1", srv.port, rdns=True)
    s.settimeout(scaled(10))
    try:
        s.connect(("localhost", h))
        s.sendall(b"GET /pysocks HTTP/1.0\r\nHost: localhost\r\n\r\n")
        data = bytearray()
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    finally:
        s.close()
    assert data.endswith(HTTP_BODY)
    line = srv.wait_access(1)[0]
    assert line["rep"] == "0" and line["addr"] == f"[::1]:{h}", line["_line"]
    assert len(http_servers.v4.hits) == v4_before, "the denied v4 address was reached"


def test_deny_private_refuses_private_and_special_destinations(socks5d, tmp_path):
    # Not reachable and not needed: the refusal comes before any connect
    # (a short connect timeout bounds the test should one slip through).
    targets = ["127.0.0.1", "::1", "169.254.169.254", "10.1.2.3", "::ffff:169.254.169.254",
               "::ffff:10.1.2.3", "0.0.0.0", "172.16.5.4", "192.168.1.1", "100.64.0.1",
               "fe80::1", "fd00::1", "224.0.0.1", "::"]
    rules = Rules(tmp_path, "deny-private", "allow")
    srv = socks5d("--auth", "none", "--timeout-connect", "1s", *rules.args)
    for host in targets:
        assert ask_rep(srv, host, 80) == REP_NOT_ALLOWED, host
    lines = srv.wait_access(len(targets))
    assert all(l["rep"] == "2" and l["rule"] == rules.ref(1) for l in lines), \
        [l["_line"] for l in lines if l.get("rule") != rules.ref(1)]


# ---------------------------------------------------------------- users


def test_allow_user_alice_does_not_allow_anonymous_clients(socks5d, users_file, echo,
                                                          http_servers):
    srv = socks5d("--auth", "userpass,none", "--users", users_file,
                  *rules_args("allow user alice"))
    # Anonymous (method 0x00 offered, accepted by the server): refused, for
    # every command (a UDP association no datagram could ever use is
    # refused too, not granted).
    assert ask_rep(srv, *echo.addr) == REP_NOT_ALLOWED
    assert ask_rep(srv, "0.0.0.0", 0, cmd=CMD_BIND) == REP_NOT_ALLOWED
    assert ask_rep(srv, "0.0.0.0", 0, cmd=CMD_UDP) == REP_NOT_ALLOWED
    # bob authenticates fine but no rule allows him.
    assert ask_rep(srv, *echo.addr, auth=BOB) == REP_NOT_ALLOWED
    # alice: raw client and curl.
    with open_tunnel(srv, *echo.addr, auth=ALICE) as s:
        echo_ok(s, b"alice")
    r = curl(["--socks5", f"127.0.0.1:{srv.port}", "-U", f"{ALICE[0]}:{ALICE[1]}",
              f"http://127.0.0.1:{http_servers.port}/alice"])
    assert r.returncode == 0, r.stderr.decode()
    assert r.stdout == HTTP_BODY
    refused = srv.wait_access(4, pred=lambda l: l["rep"] == "2")
    assert sorted(l["user"] for l in refused) == ["-", "-", "-", "bob"]
    assert all("rule" not in l for l in refused)  # the default denied them


def test_deny_user_bob_does_not_deny_anonymous_clients(socks5d, users_file, echo, tmp_path):
    rules = Rules(tmp_path, "deny user bob", "allow")
    srv = socks5d("--auth", "userpass,none", "--users", users_file, *rules.args)
    with open_tunnel(srv, *echo.addr) as s:  # anonymous: not matched by `deny user bob`
        echo_ok(s, b"anonymous")
    with open_tunnel(srv, *echo.addr, auth=ALICE) as s:
        echo_ok(s, b"alice")
    assert ask_rep(srv, *echo.addr, auth=BOB) == REP_NOT_ALLOWED
    (line,) = srv.wait_access(1, pred=lambda l: l["rep"] == "2")
    assert line["user"] == "bob" and line["rule"] == rules.ref(1), line["_line"]


def test_allow_user_any_means_any_authenticated_user(socks5d, users_file, echo, tmp_path):
    rules = Rules(tmp_path, "allow user any", "deny")
    srv = socks5d("--auth", "userpass,none", "--users", users_file, *rules.args)
    assert ask_rep(srv, *echo.addr) == REP_NOT_ALLOWED
    (line,) = srv.wait_access(1, pred=lambda l: l["rep"] == "2")
    assert line["user"] == "-" and line["rule"] == rules.ref(2), line["_line"]
    for who in (ALICE, BOB):
        with open_tunnel(srv, *echo.addr, auth=who) as s:
            echo_ok(s, who[0].encode())


# ---------------------------------------------------------------- UDP and BIND


def _recv_dgram(sock, timeout):
    r, _, _ = select.select([sock], [], [], timeout)
    if not r:
        return None
    return sock.recvfrom(70000)[0]


def test_udp_datagrams_to_denied_destinations_are_dropped_association_stays(socks5d):
    srv = socks5d("--auth", "none", *rules_args("deny to 127.0.0.0/8", "allow"))
    with UdpEcho("127.0.0.1") as e4, UdpEcho("::1") as e6:
        rep, rhost, rport, ctl = ask(srv, "0.0.0.0", 0, cmd=CMD_UDP)
        with ctl:
            assert rep == REP_SUCCEEDED
            relay = (rhost, rport)
            u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            u.bind(("127.0.0.1", 0))
            with u:
                denied = [("127.0.0.1", e4.addr[1]), ("::ffff:127.0.0.1", e4.addr[1]),
                          (b"localhost", e4.addr[1]), ("127.0.0.2", e4.addr[1])]
                for host, port in denied:
                    u.sendto(udp_header(host, port) + b"must not pass", relay)
                    assert _recv_dgram(u, 0.3) is None, f"a datagram to {host!r} came back"
                # The association is still there: an allowed destination works.
                u.sendto(udp_header(*e6.addr) + b"allowed", relay)
                got = _recv_dgram(u, scaled(3))
                assert got is not None, "no answer from the allowed destination"
                host, port, payload = udp_unwrap(got)
                assert (host, port, payload) == (e6.addr[0], e6.addr[1], b"allowed")
                assert e4.received == [], f"denied destination got {e4.received!r}"
        line = srv.wait_access(1)[0]
        assert line["cmd"] == "udp" and line["rep"] == "0", line["_line"]
        assert line["dropped"] == str(len(denied)) and line["dgrams_up"] == "1", line["_line"]


def test_udp_association_allowed_when_only_destination_rules_allow_udp(socks5d, tmp_path):
    """`allow cmd udp to ::1 port P` with the default deny: the association
    (which names no destination) is granted; datagrams are then checked one
    by one: to [::1]:P they pass, anywhere else they are dropped."""
    with UdpEcho("::1") as e6, UdpEcho("127.0.0.1") as e4:
        rules = Rules(tmp_path, f"allow cmd udp to ::1 port {e6.addr[1]}")
        srv = socks5d("--auth", "none", *rules.args)
        rep, rhost, rport, ctl = ask(srv, "0.0.0.0", 0, cmd=CMD_UDP)
        with ctl:
            assert rep == REP_SUCCEEDED
            u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            u.bind(("127.0.0.1", 0))
            with u:
                u.sendto(udp_header(*e4.addr) + b"no", (rhost, rport))
                assert _recv_dgram(u, 0.3) is None
                u.sendto(udp_header(*e6.addr) + b"yes", (rhost, rport))
                got = _recv_dgram(u, scaled(3))
                assert got is not None and udp_unwrap(got)[2] == b"yes"
            assert e4.received == []
        # CONNECT is not allowed by that rule.
        assert ask_rep(srv, "::1", e6.addr[1]) == REP_NOT_ALLOWED


def test_bind_peer_from_denied_address_is_turned_away(socks5d):
    srv = socks5d("--auth", "none", *rules_args("deny cmd bind to 127.0.0.2", "allow"))
    # Naming the denied host in the request is refused outright.
    assert ask_rep(srv, "127.0.0.2", 0, cmd=CMD_BIND) == REP_NOT_ALLOWED
    rep, bhost, bport, ctl = ask(srv, "0.0.0.0", 0, cmd=CMD_BIND)
    with ctl:
        assert rep == REP_SUCCEEDED and bport != 0
        bad = socket.socket()
        bad.settimeout(scaled(5))
        bad.bind(("127.0.0.2", 0))
        with bad:
            bad.connect((bhost, bport))
            assert read_until_closed(bad, scaled(3)) == b"", "a denied peer got data"
        # The client got no second reply for it; the wait goes on.
        r, _, _ = select.select([ctl], [], [], 0.3)
        assert not r, f"unexpected bytes on the control connection: {ctl.recv(64)!r}"
        good = socket.create_connection((bhost, bport), timeout=scaled(5))
        with good:
            rep2, phost, pport, _ = read_reply(ctl)
            assert rep2 == REP_SUCCEEDED
            assert (phost, pport) == good.getsockname()
            good.sendall(b"from peer")
            assert recv_exact(ctl, 9) == b"from peer"
            ctl.sendall(b"to peer")
            assert recv_exact(good, 7) == b"to peer"


# ---------------------------------------------------------------- protected mode


def test_protected_mode_starts_with_client_restricted_allow_rules(socks5d, echo):
    port = free_port("0.0.0.0")
    srv = socks5d("--auth", "none", "--allow-root",
                  *rules_args("allow from 127.0.0.0/8"), listen=[f"0.0.0.0:{port}"])
    with open_tunnel(srv, *echo.addr) as s:
        echo_ok(s, b"protected mode")


@pytest.mark.parametrize("rules", [["allow"], ["allow from 0.0.0.0/0"], ["allow from ::/0"],
                                   ["allow from 127.0.0.0/8", "allow to 127.0.0.1"],
                                   ["allow from 10.0.0.0/8,0.0.0.0/0"]],
                         ids=["allow", "all-v4", "all-v6", "one-unrestricted", "list-with-all"])
def test_protected_mode_refuses_unrestricted_allow_rules(socks5d_bin, rules):
    port = free_port("0.0.0.0")
    r = run_expect_exit(socks5d_bin, "-l", f"0.0.0.0:{port}", "--auth", "none", "--allow-root",
                        *rules_args(*rules))
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert "open proxy" in r.stderr and "--open-proxy" in r.stderr, r.stderr
