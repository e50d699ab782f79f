"""SOCKS4/4a on the SOCKS5 port, upstream routes and chains, outbound
addresses: real clients (curl, proxychains4, PySocks, raw sockets) and real
upstreams (socks5d itself, Debian's danted and tinyproxy), each started by the
test on a free port with its own configuration."""
import ipaddress
import json
import os
import socket
import struct
import subprocess
import threading

import pytest

import bindudp_support as bu
from ops_support import curl
from harness import (HTTP_BODY, UdpEcho, USERS, echo_roundtrip, free_port, open_tunnel,
                     proxy_env, read_reply, read_until_closed, recv_exact, request, scaled,
                     wait_until)
from security_support import (ALICE, BOB, ask, ask_rep, echo_ok, negotiate, udp_header,
                              udp_unwrap)

REP_GENERAL_FAILURE = 1
REP_NOT_ALLOWED = 2
REP_CONN_REFUSED = 5


def run_curl(args, timeout=None):
    timeout = timeout or scaled(15)
    return subprocess.run(["curl", "-sS", "--noproxy", "", "--max-time", str(int(timeout)),
                           *args], capture_output=True, env=proxy_env(), timeout=timeout + 5)


def write_conf(tmp_path, name, lines):
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def wait_listening(port, proc, what):
    def up():
        if proc.poll() is not None:
            raise AssertionError(f"{what} exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return True
        except OSError:
            return False
    wait_until(up, scaled(10), what=f"{what} to listen on {port}")


def stop(proc):
    """Ends a process this test started, by its PID."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(scaled(5))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


# ---------------------------------------------------------------- upstream servers


@pytest.fixture
def danted(tmp_path):
    """Debian's Dante server (dante-server) on a free loopback port, no auth,
    in the foreground so its PID is the one to stop."""
    port = free_port()
    conf = write_conf(tmp_path, "danted.conf", [
        f"logoutput: {tmp_path}/danted.log",
        f"internal: 127.0.0.1 port = {port}",
        "external: 127.0.0.1",
        "socksmethod: none",
        "clientmethod: none",
        "user.privileged: root",
        "user.unprivileged: nobody",
        "client pass { from: 127.0.0.0/8 to: 0.0.0.0/0 }",
        "socks block { from: 0.0.0.0/0 to: 0.0.0.0/0 port = 9 log: connect error }",
        "socks pass { from: 127.0.0.0/8 to: 0.0.0.0/0 log: connect error }",
    ])
    proc = subprocess.Popen(["danted", "-f", conf, "-p", str(tmp_path / "danted.pid"), "-N", "1"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        wait_listening(port, proc, "danted")
        yield port, tmp_path / "danted.log"
    finally:
        stop(proc)


@pytest.fixture
def tinyproxy(tmp_path):
    """Debian's tinyproxy (an HTTP CONNECT proxy) on a free loopback port,
    with Basic auth for alice."""
    port = free_port()
    conf = write_conf(tmp_path, "tinyproxy.conf", [
        f"Port {port}", "Listen 127.0.0.1", "Timeout 30", "MaxClients 20", "Allow 127.0.0.1",
        f"BasicAuth alice {USERS['alice']}", "LogLevel Info",
    ])
    proc = subprocess.Popen(["tinyproxy", "-d", "-c", conf], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_listening(port, proc, "tinyproxy")
        yield port
    finally:
        stop(proc)


# ---------------------------------------------------------------- SOCKS4 and SOCKS4a


def socks4_request(port, ip="127.0.0.1", user=b"", name=None, cmd=1):
    packed = socket.inet_aton("0.0.0.1" if name is not None else ip)
    msg = struct.pack(">BBH", 4, cmd, port) + packed + user + b"\0"
    if name is not None:
        msg += name + b"\0"
    return msg


def socks4_reply(sock):
    r = recv_exact(sock, 8)
    assert r[0] == 0, f"SOCKS4 reply VN {r[0]}"
    return r[1], socket.inet_ntoa(r[4:8]), struct.unpack(">H", r[2:4])[0]


def raw(srv, payload):
    s = srv.connect()
    s.sendall(payload)
    return s


@pytest.mark.parametrize("mode", ["--socks4", "--socks4a"])
def test_curl_socks4_and_4a_fetch_through_the_socks5_port(socks5d, http_servers, mode):
    srv = socks5d("--auth", "none", "--socks4")
    host = "localhost" if mode == "--socks4a" else "127.0.0.1"
    r = run_curl([mode, f"127.0.0.1:{srv.port}", "-U", "carol:",
                  f"http://{host}:{http_servers.port}/s4"])
    assert r.returncode == 0, r.stderr.decode()
    assert r.stdout == HTTP_BODY
    (line,) = srv.wait_access(1)
    assert line["rep"] == "0" and line["cmd"] == "connect"
    assert line["proto"] == "socks4"
    assert line["userid"] == "carol"
    assert line["user"] == "-"
    if mode == "--socks4a":
        assert line["dst"] == f"localhost:{http_servers.port}"
    # The same port still speaks SOCKS5.
    r = run_curl(["--socks5-hostname", f"127.0.0.1:{srv.port}",
                  f"http://localhost:{http_servers.port}/s5"])
    assert r.returncode == 0 and r.stdout == HTTP_BODY


def test_socks4_is_off_by_default(socks5d, echo):
    srv = socks5d("--auth", "none")
    with raw(srv, socks4_request(echo.port)) as s:
        assert read_until_closed(s, scaled(3)) == b""
    r = run_curl(["--socks4", f"127.0.0.1:{srv.port}", "http://127.0.0.1:1/"])
    assert r.returncode != 0


def test_socks4_in_the_config_file(socks5d, echo, tmp_path):
    conf = write_conf(tmp_path, "s4.conf", ["auth none", "socks4 yes"])
    srv = socks5d("-c", conf)
    with raw(srv, socks4_request(echo.port, user=b"dave")) as s:
        assert socks4_reply(s)[0] == 0x5A
        echo_ok(s)


def test_proxychains_with_a_socks4_hop(socks5d, http_servers, tmp_path):
    srv = socks5d("--auth", "none", "--socks4")
    conf = write_conf(tmp_path, "pc.conf", ["strict_chain", "tcp_read_time_out 15000",
                                            "tcp_connect_time_out 8000", "[ProxyList]",
                                            f"socks4 127.0.0.1 {srv.port}"])
    r = subprocess.run(["proxychains4", "-q", "-f", conf, "curl", "-sS", "--max-time", "10",
                        f"http://127.0.0.1:{http_servers.port}/pc4"], capture_output=True,
                       env=proxy_env(), timeout=scaled(20))
    assert r.returncode == 0, r.stderr.decode()
    assert r.stdout == HTTP_BODY
    (line,) = srv.wait_access(1)
    assert line["proto"] == "socks4" and line["rep"] == "0"


def test_socks4_bind_gives_two_replies(socks5d):
    srv = socks5d("--auth", "none", "--socks4")
    with raw(srv, socks4_request(0, ip="127.0.0.1", cmd=2)) as s:
        cd, host, port = socks4_reply(s)
        assert cd == 0x5A and port != 0
        peer = socket.create_connection((host if host != "0.0.0.0" else "127.0.0.1", port))
        with peer:
            cd2, _, _ = socks4_reply(s)
            assert cd2 == 0x5A
            peer.sendall(b"hello")
            assert recv_exact(s, 5) == b"hello"


@pytest.mark.parametrize("payload", [
    pytest.param(socks4_request(80, user=b"x" * 300), id="userid-over-255"),
    pytest.param(socks4_request(80, name=b"a" * 300), id="name-over-255"),
    pytest.param(socks4_request(80, ip="0.0.0.0"), id="dst-0.0.0.0"),
    pytest.param(socks4_request(80, name=b""), id="socks4a-empty-name"),
    pytest.param(socks4_request(80, name=b"bad\\name"), id="socks4a-bad-name"),
    pytest.param(b"\x04\x03\x00\x50\x7f\x00\x00\x01\x00", id="udp-command"),
])
def test_malformed_socks4_is_rejected_with_5b(socks5d, payload):
    srv = socks5d("--auth", "none", "--socks4")
    with raw(srv, payload) as s:
        assert socks4_reply(s)[0] == 0x5B
        assert read_until_closed(s, scaled(3)) == b""
    assert srv.alive()


@pytest.mark.parametrize("payload", [b"\x04", b"\x04\x01\x00\x50\x7f\x00", b"\x04\x01\x00\x50\x7f"
                                     b"\x00\x00\x01abc", b"\x04\x01\x00\x50\x00\x00\x00\x01\x00exa"],
                         ids=["vn-only", "half-header", "no-userid-nul", "no-name-nul"])
def test_truncated_socks4_gets_no_reply(socks5d, payload):
    srv = socks5d("--auth", "none", "--socks4")
    s = raw(srv, payload)
    s.shutdown(socket.SHUT_WR)
    with s:
        assert read_until_closed(s, scaled(3)) == b""
    assert srv.alive()


def test_socks4_clients_are_unauthenticated_for_rules(socks5d, echo, tmp_path, users_file):
    conf = write_conf(tmp_path, "r.conf", ["auth none,userpass", f"users {users_file}",
                                           "socks4 yes", "allow user alice", "deny"])
    srv = socks5d("-c", conf)
    # USERID "alice" is a claim, not a login: user rules never match it.
    with raw(srv, socks4_request(echo.port, user=b"alice")) as s:
        assert socks4_reply(s)[0] == 0x5B
    rep, _, _, s = ask(srv, "127.0.0.1", echo.port, auth=ALICE)
    with s:
        assert rep == 0


def test_socks4_needs_auth_none_among_the_methods(socks5d_bin, users_file):
    # SOCKS4 cannot log in: with userpass required it would be a way around it.
    r = subprocess.run([socks5d_bin, "-t", "--auth", "userpass", "--users", users_file,
                        "--socks4"], capture_output=True, text=True, timeout=scaled(10))
    assert r.returncode != 0
    assert "socks4" in r.stderr and "auth none" in r.stderr


# ---------------------------------------------------------------- routes


def test_socks5d_through_socks5d_passes_the_name_on(socks5d, http_servers):
    far = socks5d("--auth", "none")
    near = socks5d("--auth", "none", "--route", f"via socks5://127.0.0.1:{far.port}")
    r = run_curl(["--socks5-hostname", f"127.0.0.1:{near.port}",
                  f"http://localhost:{http_servers.port}/chain"])
    assert r.returncode == 0, r.stderr.decode()
    assert r.stdout == HTTP_BODY
    (line,) = near.wait_access(1)
    assert line["via"] == f"socks5://127.0.0.1:{far.port}"
    (fline,) = far.wait_access(1)
    # The far end got the name, not an address: it resolved it.
    assert fline["dst"] == f"localhost:{http_servers.port}"
    assert fline["rep"] == "0"


def test_a_chain_of_three_with_auth_at_each_hop(socks5d, users_file, echo, tmp_path):
    hops = [socks5d("--auth", "userpass", "--users", users_file) for _ in range(3)]
    alice = f"alice:{USERS['alice']}"
    bob = "bob:" + "".join(c if c.isalnum() else f"%{ord(c):02X}" for c in USERS["bob"])
    chain = " ".join(f"socks5://{cred}@127.0.0.1:{h.port}"
                     for cred, h in zip([alice, bob, alice], hops))
    conf = write_conf(tmp_path, "chain.conf", ["auth none", f"route via {chain}"])
    near = socks5d("-c", conf)
    rep, _, _, s = ask(near, "127.0.0.1", echo.port)
    with s:
        assert rep == 0
        echo_ok(s, b"through three hops")
    for h, user in zip(hops, ["alice", "bob", "alice"]):
        (line,) = h.wait_access(1)
        assert line["user"] == user and line["rep"] == "0"
    # The credentials never reach a log line.
    assert USERS["alice"] not in near.log()
    assert "p%40ss" not in near.log() and USERS["bob"] not in near.log()


def test_credentials_on_the_command_line_are_refused(socks5d_bin, tmp_path):
    r = subprocess.run([socks5d_bin, "-t", "--route", "via socks5://u:p@127.0.0.1:1080"],
                       capture_output=True, text=True, timeout=scaled(10))
    assert r.returncode != 0
    assert "only in the configuration file" in r.stderr


def test_config_dump_masks_upstream_passwords(socks5d_bin, tmp_path):
    conf = write_conf(tmp_path, "m.conf", ["route via socks5://alice:hunter2@127.0.0.1:1080"])
    r = subprocess.run([socks5d_bin, "-T", "-c", conf], capture_output=True, text=True,
                       timeout=scaled(10))
    assert r.returncode == 0, r.stderr
    assert "hunter2" not in r.stdout + r.stderr
    assert "socks5://alice:***@127.0.0.1:1080" in r.stdout


def test_socks5d_through_danted(socks5d, danted, http_servers):
    port, log = danted
    near = socks5d("--auth", "none", "--route", f"via socks5://127.0.0.1:{port}")
    r = run_curl(["--socks5-hostname", f"127.0.0.1:{near.port}",
                  f"http://127.0.0.1:{http_servers.port}/dante"])
    assert r.returncode == 0, r.stderr.decode()
    assert r.stdout == HTTP_BODY
    wait_until(lambda: f"127.0.0.1.{http_servers.port}" in log.read_text(), scaled(5),
               what="danted to log the connect")
    # danted refuses port 9 by its rule: the client gets danted's REP.
    assert ask_rep(near, "127.0.0.1", 9) == REP_NOT_ALLOWED


def test_socks5d_through_tinyproxy_http_connect(socks5d, tinyproxy, http_servers, tmp_path):
    conf = write_conf(tmp_path, "tp.conf", [
        "auth none", f"route via http://alice:{USERS['alice']}@127.0.0.1:{tinyproxy}"])
    near = socks5d("-c", conf)
    r = run_curl(["--socks5-hostname", f"127.0.0.1:{near.port}",
                  f"http://localhost:{http_servers.port}/tinyproxy"])
    assert r.returncode == 0, r.stderr.decode()
    assert r.stdout == HTTP_BODY
    # Without the credentials tinyproxy answers 407: not allowed.
    bare = socks5d("--auth", "none", "--route", f"via http://127.0.0.1:{tinyproxy}")
    assert ask_rep(bare, "127.0.0.1", http_servers.port) == REP_NOT_ALLOWED


def test_failover_skips_a_dead_first_hop(socks5d, echo):
    far = socks5d("--auth", "none")
    dead = free_port()
    near = socks5d("--auth", "none", "--route",
                   f"via socks5://127.0.0.1:{dead} | socks5://127.0.0.1:{far.port}")
    for i in range(3):
        rep, _, _, s = ask(near, "127.0.0.1", echo.port)
        with s:
            assert rep == 0
            echo_ok(s)
    lines = near.wait_access(3)
    assert all(l["via"] == f"socks5://127.0.0.1:{far.port}" for l in lines)
    assert len(far.wait_access(3)) == 3


def test_upstream_refusal_is_passed_on(socks5d, tmp_path):
    closed = free_port()
    conf = write_conf(tmp_path, "far.conf", ["auth none", "deny port 7", "allow"])
    far = socks5d("-c", conf)
    near = socks5d("--auth", "none", "--route", f"via socks5://127.0.0.1:{far.port}")
    assert ask_rep(near, "127.0.0.1", 7) == REP_NOT_ALLOWED
    assert ask_rep(near, "127.0.0.1", closed) == REP_CONN_REFUSED


def test_routes_match_like_rules_first_match_wins(socks5d, echo, users_file):
    far = socks5d("--auth", "none")
    near = socks5d("--auth", "none,userpass", "--users", users_file,
                   "--route", f"user bob via socks5://127.0.0.1:{far.port}",
                   "--route", "to any via direct")
    for auth, via in ((BOB, f"socks5://127.0.0.1:{far.port}"), (ALICE, "direct")):
        rep, _, _, s = ask(near, "127.0.0.1", echo.port, auth=auth)
        with s:
            assert rep == 0
            echo_ok(s)
        line = near.wait_access(1, pred=lambda l, u=auth[0]: l["user"] == u)[0]
        assert line["via"] == via


def test_bind_through_an_upstream_socks5(socks5d):
    far = socks5d("--auth", "none")
    near = socks5d("--auth", "none", "--route", f"via socks5://127.0.0.1:{far.port}")
    rep, host, port, s = ask(near, "127.0.0.1", 0, cmd=2)
    with s:
        assert rep == 0 and port != 0
        # The listener is the far end's: the peer connects there.
        with socket.create_connection((host, port), timeout=scaled(5)) as peer:
            rep2, _, pport, _ = read_reply(s)
            assert rep2 == 0 and pport == peer.getsockname()[1]
            peer.sendall(b"from the peer")
            assert recv_exact(s, 13) == b"from the peer"
            s.sendall(b"to the peer")
            assert recv_exact(peer, 11) == b"to the peer"
    (fline,) = far.wait_access(1)
    assert fline["cmd"] == "bind" and fline["rep"] == "0"
    (line,) = near.wait_access(1)
    assert line["cmd"] == "bind" and line["via"] == f"socks5://127.0.0.1:{far.port}"


@pytest.fixture
def udp_echo():
    e = UdpEcho("127.0.0.1")
    yield e
    e.close()


@pytest.mark.parametrize("auth", [False, True], ids=["noauth", "userpass"])
def test_udp_through_an_upstream_socks5_with_npm_socks(socks5d, udp_echo, users_file, tmp_path,
                                                       auth):
    if auth:
        far = socks5d("--auth", "userpass", "--users", users_file)
        conf = write_conf(tmp_path, "udp.conf", [
            "auth none", f"route via socks5://alice:{USERS['alice']}@127.0.0.1:{far.port}"])
        near = socks5d("-c", conf)
    else:
        far = socks5d("--auth", "none")
        near = socks5d("--auth", "none", "--route", f"via socks5://127.0.0.1:{far.port}")
    res = bu.run_node("associate.js", {
        "proxyHost": "127.0.0.1", "proxyPort": near.port, "family": 4,
        "targetHost": udp_echo.addr[0], "targetPort": udp_echo.addr[1], "namePort": False,
        "userId": None, "password": None, "count": 3, "timeoutMs": int(scaled(15000)),
    })
    assert len(res["replies"]) == 3
    for r in res["replies"]:
        assert r["ok"], "echo payload differs"
        assert r["host"] == udp_echo.addr[0] and r["port"] == udp_echo.addr[1]
    # Each datagram reached the echo once; both ends logged the association.
    assert len(udp_echo.received) == 3
    for lines, via in ((near.wait_access(1), f"socks5://127.0.0.1:{far.port}"),
                       (far.wait_access(1), None)):
        (line,) = lines
        assert line["cmd"] == "udp" and line["rep"] == "0"
        assert (line["dgrams_up"], line["dgrams_down"], line["dropped"]) == ("3", "3", "0")
        assert line.get("via") == via


def associate(near, udp_echo, count=3):
    return bu.run_node("associate.js", {
        "proxyHost": "127.0.0.1", "proxyPort": near.port, "family": 4,
        "targetHost": udp_echo.addr[0], "targetPort": udp_echo.addr[1], "namePort": False,
        "userId": None, "password": None, "count": count, "timeoutMs": int(scaled(15000)),
    })


def test_udp_through_a_chain_of_three_with_npm_socks(socks5d, udp_echo, users_file, tmp_path):
    a, c = socks5d("--auth", "none"), socks5d("--auth", "none")
    b = socks5d("--auth", "userpass", "--users", users_file)
    chain = (f"socks5://127.0.0.1:{a.port} socks5://alice:{USERS['alice']}@127.0.0.1:{b.port} "
             f"socks5://127.0.0.1:{c.port}")
    near = socks5d("-c", write_conf(tmp_path, "udp3.conf", ["auth none", f"route via {chain}"]))
    res = associate(near, udp_echo)
    assert len(res["replies"]) == 3
    for r in res["replies"]:
        assert r["ok"], "echo payload differs"
        assert r["host"] == udp_echo.addr[0] and r["port"] == udp_echo.addr[1]
    assert len(udp_echo.received) == 3
    # Every hop relayed each datagram once, each way, in an association of
    # its own: nested headers, stripped one per relay.
    for hop in (a, b, c):
        (line,) = hop.wait_access(1, pred=lambda l: l["cmd"] == "udp")
        assert line["rep"] == "0"
        assert (line["dgrams_up"], line["dgrams_down"], line["dropped"]) == ("3", "3", "0")
    (line,) = near.wait_access(1)
    assert (line["dgrams_up"], line["dgrams_down"], line["dropped"]) == ("3", "3", "0")
    assert line["via"] == chain.replace(f"alice:{USERS['alice']}@", "")


def test_a_chained_udp_association_ends_with_an_earlier_hops_association(socks5d):
    mport = free_port()
    a = socks5d("--auth", "none", "--metrics", f"127.0.0.1:{mport}")
    b = socks5d("--auth", "none")
    near = socks5d("--auth", "none", "--route",
                   f"via socks5://127.0.0.1:{a.port} socks5://127.0.0.1:{b.port}")
    rep, _, _, s = ask(near, "0.0.0.0", 0, cmd=3)
    with s:
        assert rep == 0
        code, body = curl(f"http://127.0.0.1:{mport}/sessions")
        (udp,) = [x for x in json.loads(body)["sessions"] if x.get("cmd") == "udp"]
        code, _ = curl(f"http://127.0.0.1:{mport}/sessions/close?id={udp['id']}", "-X", "POST")
        assert code == 200
        # The first hop's association is gone: so is the client's.
        assert read_until_closed(s, scaled(5)) == b""
    (line,) = near.wait_access(1)
    assert line["error"] == "upstream ended a UDP association of the chain"


@pytest.mark.parametrize("refuser", [0, 1], ids=["first-hop", "last-hop"])
def test_udp_through_a_chain_with_a_hop_that_refuses_udp(socks5d, refuser):
    hops = [socks5d("--auth", "none", *(["--no-udp"] if i == refuser else [])) for i in range(2)]
    near = socks5d("--auth", "none", "--route",
                   " ".join(["via"] + [f"socks5://127.0.0.1:{h.port}" for h in hops]))
    # The hop's own answer to a client, passed on as it is.
    direct = ask_rep(hops[refuser], "0.0.0.0", 0, cmd=3)
    assert direct != 0
    assert ask_rep(near, "0.0.0.0", 0, cmd=3) == direct


def test_udp_through_a_chain_with_an_http_hop_is_refused(socks5d):
    a = socks5d("--auth", "none")
    near = socks5d("--auth", "none", "--route",
                   f"via socks5://127.0.0.1:{a.port} http://127.0.0.1:{free_port()}")
    assert ask_rep(near, "0.0.0.0", 0, cmd=3) == 7
    (line,) = near.wait_access(1)
    assert line["error"] == "no alternative of the route carries UDP (SOCKS5 hops only)"


def test_udp_skips_alternatives_that_cannot_carry_it(socks5d, udp_echo):
    """An HTTP or SOCKS4a alternative cannot carry UDP: the association goes
    through the first alternative that can, and no hop is held down for it
    (a CONNECT still takes the first alternative)."""
    a = socks5d("--auth", "none")
    http_hop = f"http://127.0.0.1:{free_port()}"
    route = f"via {http_hop} | socks4a://127.0.0.1:{a.port} | socks5://127.0.0.1:{a.port}"
    near = socks5d("--auth", "none", "--route", route)
    echoed_through(near, udp_echo, f"socks5://127.0.0.1:{a.port}")
    # The CONNECT tries the HTTP hop first (nothing listens there).
    assert ask_rep(near, "127.0.0.1", 9, cmd=1) != 0
    wait_until(lambda: f"via={http_hop}" in near.log(), scaled(5), what="the failover line")
    # The log keeps its order: the first failover is the CONNECT's, so the
    # association before it failed over from nothing.
    failovers = [ln for ln in near.log().splitlines() if "failing over" in ln]
    assert f"via={http_hop}" in failovers[0], failovers


def echoed_through(near, udp_echo, via, n=1):
    """npm socks: three datagrams echoed through near's n-th association,
    whose access line names `via`."""
    res = associate(near, udp_echo)
    assert [r["ok"] for r in res["replies"]] == [True] * 3
    line = near.wait_access(n, pred=lambda l: l["rep"] == "0")[n - 1]
    assert line["cmd"] == "udp" and line["via"] == via
    assert (line["dgrams_up"], line["dgrams_down"], line["dropped"]) == ("3", "3", "0")


def test_udp_fails_over_when_an_earlier_hop_refuses_its_association(socks5d, udp_echo, echo):
    # A carries the stream to B (B grants the association), then refuses one
    # of its own: the chain through A is broken, not answered.
    a = socks5d("--auth", "none", "--no-udp")
    b, spare = socks5d("--auth", "none"), socks5d("--auth", "none")
    near = socks5d("--auth", "none", "--route",
                   f"via socks5://127.0.0.1:{a.port} socks5://127.0.0.1:{b.port} | "
                   f"socks5://127.0.0.1:{spare.port}")
    for n in (1, 2):
        echoed_through(near, udp_echo, f"socks5://127.0.0.1:{spare.port}", n)
    assert f"failing over: socks5://127.0.0.1:{a.port}: " in near.log()
    # Held down: the second association did not go through A.
    assert len(a.wait_access(2)) == 2  # the stream to B, the refused association
    assert sorted(l["cmd"] for l in a.access_lines()) == ["connect", "udp"]
    # A refused UDP only: it is up, and a stream still goes through it.
    with open_tunnel(near, *echo.addr) as t:
        assert echo_roundtrip(t, b"a stream through A") == b"a stream through A"
    (line,) = near.wait_access(1, pred=lambda l: l["cmd"] == "connect")
    assert line["via"] == f"socks5://127.0.0.1:{a.port} socks5://127.0.0.1:{b.port}"


def test_udp_fails_over_when_an_earlier_hop_is_down(socks5d, udp_echo):
    b, spare = socks5d("--auth", "none"), socks5d("--auth", "none")
    near = socks5d("--auth", "none", "--route",
                   f"via socks5://127.0.0.1:{free_port()} socks5://127.0.0.1:{b.port} | "
                   f"socks5://127.0.0.1:{spare.port}")
    echoed_through(near, udp_echo, f"socks5://127.0.0.1:{spare.port}")
    assert b.access_lines() == []


class StreamOnlyHop:
    """A SOCKS5 hop (no auth) that carries CONNECT and never answers UDP
    ASSOCIATE: an earlier hop whose association stays silent."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.held, self.done = [], threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.done.is_set():
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(c)
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        try:
            c.settimeout(scaled(10))
            recv_exact(c, 3)
            c.sendall(b"\x05\x00")
            ver, cmd, _, atyp = recv_exact(c, 4)
            n = {1: 4, 4: 16}.get(atyp) or recv_exact(c, 1)[0]
            host = recv_exact(c, n)
            port = struct.unpack(">H", recv_exact(c, 2))[0]
            if cmd != 1:
                return  # silent: held open until the test ends
            host = socket.inet_ntop(socket.AF_INET6 if atyp == 4 else socket.AF_INET, host) \
                if atyp != 3 else host.decode()
            up = socket.create_connection((host, port), scaled(5))
            self.held.append(up)
            c.sendall(b"\x05\x00\x00\x01" + bytes(6))
            self._pipe(c, up)
        except OSError:
            pass

    def _pipe(self, c, up):
        import select
        c.settimeout(None)
        while not self.done.is_set():
            r, _, _ = select.select([c, up], [], [], 0.1)
            for x in r:
                data = x.recv(65536)
                if not data:
                    return
                (up if x is c else c).sendall(data)

    def close(self):
        self.done.set()
        self.sock.close()
        for c in self.held:
            c.close()


def test_udp_fails_over_when_an_earlier_hops_association_never_answers(socks5d, udp_echo):
    quiet = StreamOnlyHop()
    try:
        b, spare = socks5d("--auth", "none"), socks5d("--auth", "none")
        near = socks5d("--auth", "none", "--timeout-connect", "1s", "--route",
                       f"via socks5://127.0.0.1:{quiet.port} socks5://127.0.0.1:{b.port} | "
                       f"socks5://127.0.0.1:{spare.port}")
        echoed_through(near, udp_echo, f"socks5://127.0.0.1:{spare.port}")
        assert "failing over: upstream UDP association timeout" in near.log()
    finally:
        quiet.close()


def wildcard_udp_ports(pid):
    """The ports of the UDP sockets process pid has bound to 0.0.0.0."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:["):
            inodes.add(link[8:-1])
    ports = []
    with open(f"/proc/{pid}/net/udp") as f:
        for line in f.readlines()[1:]:
            w = line.split()
            ip, port = w[1].split(":")
            if w[9] in inodes and ip == "00000000":
                ports.append(int(port, 16))
    return ports


@pytest.mark.parametrize("source", ["127.0.0.2", "127.0.0.1"], ids=["other-ip", "other-port"])
def test_a_forged_answer_behind_a_full_cone_first_hop_is_dropped(socks5d, udp_echo, source):
    # The first hop relays answers from anyone (full cone). Somebody who is
    # not the second hop's relay sends it a datagram whose own header names
    # our target: the first hop frames it with the sender's address, and
    # socks5d must see that it did not come from the second hop's relay.
    a = socks5d("--auth", "none", "--udp-full-cone")
    b = socks5d("--auth", "none")
    near = socks5d("--auth", "none", "--route",
                   f"via socks5://127.0.0.1:{a.port} socks5://127.0.0.1:{b.port}")
    rep, host, port, ctl = ask(near, "0.0.0.0", 0, cmd=3)
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    forger = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with ctl, client, forger:
        assert rep == 0
        client.bind(("127.0.0.1", 0))
        client.settimeout(scaled(5))
        forger.bind((source, 0))
        target = udp_header(*udp_echo.addr)
        client.sendto(target + b"real 0", (host, port))
        assert udp_unwrap(client.recv(4096))[2] == b"real 0"
        # A's socket towards B: the one it bound to the wildcard address.
        (a_out,) = wildcard_udp_ports(a.pid)
        forger.sendto(target + b"forged", ("127.0.0.1", a_out))
        client.sendto(target + b"real 1", (host, port))
        # In order: the forged datagram reached socks5d before this answer.
        assert udp_unwrap(client.recv(4096))[2] == b"real 1"
    (line,) = near.wait_access(1)
    assert (line["dgrams_up"], line["dgrams_down"], line["dropped"]) == ("2", "2", "1")
    (aline,) = a.wait_access(1, pred=lambda l: l["cmd"] == "udp")
    assert aline["dgrams_down"] == "3"  # A passed the forged datagram on


# ---------------------------------------------------------------- outbound addresses

PREFIX = ipaddress.ip_network("2001:db8:1::/64")


class PeerRecorder:
    """A target on [::1] in the namespace that records the source address of
    every connection (TCP) or datagram (UDP, echoed back)."""

    def __init__(self, netns, kind=socket.SOCK_STREAM):
        self.sock = netns.socket(socket.AF_INET6, kind)
        self.sock.bind(("::1", 0))
        self.sock.settimeout(0.1)
        if kind == socket.SOCK_STREAM:
            self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.peers = []
        self.stop = False
        self.thread = threading.Thread(target=self._run, args=(kind,), daemon=True)
        self.thread.start()

    def _run(self, kind):
        stream = kind == socket.SOCK_STREAM
        while not self.stop:
            try:
                got, peer = self.sock.accept() if stream else self.sock.recvfrom(2048)
            except OSError:
                continue
            self.peers.append(peer[0])  # before the answer: the test reads it after
            if stream:
                got.close()
            else:
                self.sock.sendto(got, peer)

    def close(self):
        self.stop = True
        self.thread.join(5)
        self.sock.close()


@pytest.fixture
def ns6(netns):
    subprocess.run(netns.exec_prefix + ["ip", "-6", "route", "add", "local", str(PREFIX), "dev",
                                        "lo"], check=True, capture_output=True)
    rec = PeerRecorder(netns)
    yield netns, rec
    rec.close()


def connect_n(srv, port, n, auth=None):
    """n CONNECTs to [::1]:port through srv, from inside its namespace."""
    for _ in range(n):
        with srv.connect() as s:
            st = negotiate(s, auth)
            assert st in (None, b"\x01\x00")
            s.sendall(request("::1", port))
            assert read_reply(s)[0] == 0


def test_random_outbound_addresses_are_distinct_in_the_prefix(socks5d, ns6):
    netns, rec = ns6
    srv = socks5d("--auth", "none", "--route", f"via direct out random {PREFIX}", netns=netns)
    connect_n(srv, rec.port, 20)
    wait_until(lambda: len(rec.peers) >= 20, scaled(5), what="20 connections at the target")
    addrs = {ipaddress.ip_address(p) for p in rec.peers}
    assert all(a in PREFIX for a in addrs)
    assert len(addrs) >= 19  # 64 random bits each


def test_sticky_outbound_address_is_one_per_user(socks5d, ns6, users_file):
    netns, rec = ns6
    srv = socks5d("--auth", "userpass", "--users", users_file, "--route",
                  f"via direct out sticky {PREFIX}", netns=netns)
    seen = {}
    for auth in (ALICE, BOB, ALICE, BOB, ALICE):
        before = len(rec.peers)
        connect_n(srv, rec.port, 1, auth=auth)
        wait_until(lambda: len(rec.peers) > before, scaled(5), what="the connection")
        seen.setdefault(auth[0], set()).add(rec.peers[-1])
    assert len(seen["alice"]) == 1 and len(seen["bob"]) == 1
    assert seen["alice"] != seen["bob"]
    assert all(ipaddress.ip_address(a) in PREFIX for s in seen.values() for a in s)


def test_fixed_outbound_address(socks5d, ns6):
    netns, rec = ns6
    srv = socks5d("--auth", "none", "--route", "via direct out 2001:db8:1::7", netns=netns)
    connect_n(srv, rec.port, 3)
    wait_until(lambda: len(rec.peers) >= 3, scaled(5), what="3 connections at the target")
    assert set(rec.peers) == {"2001:db8:1::7"}


def udp_echo_through(srv, netns, port, payloads):
    """One association through srv (in netns): each payload to [::1]:port and
    its echo back."""
    with srv.connect() as ctl:
        negotiate(ctl)
        ctl.sendall(request("::", 0, cmd=3))
        rep, host, rport, _ = read_reply(ctl)
        assert rep == 0
        # From the control connection's address (the server's is IPv4 here).
        u = netns.socket(socket.AF_INET, socket.SOCK_DGRAM)
        with u:
            u.bind((ctl.getsockname()[0], 0))
            u.settimeout(scaled(5))
            for p in payloads:
                u.sendto(udp_header("::1", port) + p, (host, rport))
                assert udp_unwrap(u.recv(4096))[2] == p


def test_udp_relays_leave_from_the_routes_random_source(socks5d, ns6):
    netns, _ = ns6
    rec = PeerRecorder(netns, socket.SOCK_DGRAM)
    try:
        srv = socks5d("--auth", "none", "--route", f"via direct out random {PREFIX}", netns=netns)
        for i in range(4):
            udp_echo_through(srv, netns, rec.port, [b"a%d" % i, b"b%d" % i])
        addrs = [ipaddress.ip_address(p) for p in rec.peers]
        assert len(addrs) == 8 and all(a in PREFIX for a in addrs)
        # One source per association, a new one for the next.
        per_assoc = [set(addrs[i:i + 2]) for i in range(0, 8, 2)]
        assert all(len(s) == 1 for s in per_assoc)
        assert len(set.union(*per_assoc)) == 4
    finally:
        rec.close()
