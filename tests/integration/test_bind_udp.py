"""Integration tests for BIND and UDP ASSOCIATE.

Run: /usr/bin/python3 -m pytest -q tests/integration/test_bind_udp.py
(SOCKS5D_BIN picks the binary; `npm ci` in tests/integration first for the
node clients.) Every test starts its own socks5d on ports picked at run time,
stops it with SIGTERM at teardown and fails if it does not exit 0 or its
stderr holds a sanitizer report.

The npm `socks` client (pinned in package.json) is driven through js/*.js,
which print one JSON line. Its SocksClient.createConnection() accepts only
the 'connect' command (2.8.x validates that), so BIND and ASSOCIATE use the
event API: new SocksClient(options), 'bound' / 'established', .connect().

Soak: SOAK_ASSOCIATIONS (default 10000) UDP associations, 200 at a time,
each relaying one datagram, every other batch closed with resets; the run
must finish within SOAK_SECONDS (default 90). Release and ASan builds both
take about 1-2 s for 10000 here; lower SOAK_ASSOCIATIONS only if a slower
build or machine needs it.
"""

import os
import socket
import struct
import time

import pytest

import bindudp_support as bu
from bindudp_support import (
    CMD_BIND, CMD_UDP, IO_TIMEOUT, REP_NOT_ALLOWED, REP_SUCCEEDED, REP_TTL_EXPIRED,
)

USER, PASSWORD = "alice", "s3cret-pw"
LOOP4, LOOP6 = "127.0.0.1", "::1"
OTHER4 = "127.0.0.2"  # another loopback address: a "different host"


@pytest.fixture
def bu_servers(tmp_path):
    """Factory: bu_servers(*args, hosts=...) starts a socks5d; all are stopped
    (SIGTERM) and checked at teardown."""
    started = []

    def start(*args, hosts=(LOOP4,)):
        srv = bu.Socks5d(tmp_path, args, hosts, name="socks5d-%d" % len(started))
        started.append(srv)
        srv.start()
        print("socks5d pid %d %s, stderr in %s" % (srv.pid, srv.ports, srv.log_path))
        return srv

    yield start
    problems = []
    for srv in started:
        problems += srv.stop()
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


@pytest.fixture
def bu_users(tmp_path):
    return bu.make_users_file(tmp_path, {USER: PASSWORD})


@pytest.fixture
def bu_echo4():
    with bu.UdpPeer(LOOP4) as peer:
        yield peer


@pytest.fixture
def bu_echo6():
    with bu.UdpPeer(LOOP6) as peer:
        yield peer


def relay_roundtrip(client, relay, target, payload):
    """Sends payload to target through the relay; returns (host, port, data) of the answer."""
    client.sendto(bu.udp_wrap(target[0], target[1], payload), relay)
    client.settimeout(IO_TIMEOUT)
    data, src = client.recvfrom(70000)
    assert bu.same_ip(src[0], relay[0]) and src[1] == relay[1], "answer not from the relay"
    return bu.udp_unwrap(data)


# ====================================================================== npm socks


@pytest.mark.parametrize("auth", ["none", "userpass"])
@pytest.mark.parametrize("family", [4, 6])
def test_npm_socks_bind_relays_both_ways(bu_servers, bu_users, family, auth):
    args = ("--users", bu_users) if auth == "userpass" else ()
    srv = bu_servers(*args, hosts=(LOOP4, LOOP6))
    host = LOOP6 if family == 6 else LOOP4
    res = bu.run_node("bind.js", {
        "proxyHost": host, "proxyPort": srv.ports[host],
        "destHost": "::" if family == 6 else "0.0.0.0",
        "userId": USER if auth == "userpass" else None, "password": PASSWORD,
        "bytes": 256 * 1024, "timeoutMs": int(bu.scaled(15000)),
    })
    # The listener is on the address the client reached the proxy on.
    assert bu.same_ip(res["bound"]["host"], host)
    assert res["bound"]["port"] not in (0, srv.ports[host])
    # The second reply names the peer that connected.
    assert bu.same_ip(res["established"]["host"], res["peerLocal"]["host"])
    assert res["established"]["port"] == res["peerLocal"]["port"]
    assert res["clientToPeerOk"] and res["peerToClientOk"]
    line = srv.wait_access_line(["cmd=bind", "rep=0"])
    assert line["up"] == line["down"] == str(256 * 1024)
    if auth == "userpass":
        assert line["user"] == USER


@pytest.mark.parametrize("name_port", [False, True], ids=["port0", "named-port"])
@pytest.mark.parametrize("auth", ["none", "userpass"])
@pytest.mark.parametrize("family", [4, 6])
def test_npm_socks_associate_echoes_through_relay(bu_servers, bu_users, bu_echo4, bu_echo6, family,
                                                  auth, name_port):
    args = ("--users", bu_users) if auth == "userpass" else ()
    srv = bu_servers(*args, hosts=(LOOP4, LOOP6))
    host, echo = (LOOP6, bu_echo6) if family == 6 else (LOOP4, bu_echo4)
    res = bu.run_node("associate.js", {
        "proxyHost": host, "proxyPort": srv.ports[host], "family": family,
        "targetHost": echo.addr[0], "targetPort": echo.addr[1], "namePort": name_port,
        "userId": USER if auth == "userpass" else None, "password": PASSWORD,
        "count": 3, "timeoutMs": int(bu.scaled(15000)),
    })
    assert bu.same_ip(res["relay"]["host"], host)
    assert len(res["replies"]) == 3
    for r in res["replies"]:
        assert r["ok"], "echo payload differs"
        assert bu.same_ip(r["host"], echo.addr[0]) and r["port"] == echo.addr[1]
        assert r["frameNumber"] == 0
    line = srv.wait_access_line(["cmd=udp", "rep=0"])
    assert (line["dgrams_up"], line["dgrams_down"], line["dropped"]) == ("3", "3", "0")


# ====================================================================== PySocks


@pytest.mark.parametrize("auth", ["none", "userpass"])
def test_pysocks_udp_sendto_recvfrom_echo(bu_servers, bu_users, bu_echo4, auth):
    import socks  # PySocks (Debian python3-socks)
    args = ("--users", bu_users) if auth == "userpass" else ()
    srv = bu_servers(*args)
    s = socks.socksocket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        if auth == "userpass":
            s.set_proxy(socks.SOCKS5, LOOP4, srv.ports[LOOP4], username=USER, password=PASSWORD)
        else:
            s.set_proxy(socks.SOCKS5, LOOP4, srv.ports[LOOP4])
        s.settimeout(IO_TIMEOUT)
        for payload in (b"hello pysocks", b"x" * 4000):
            s.sendto(payload, bu_echo4.addr)
            data, src = s.recvfrom(65535)
            assert data == payload
            assert src[0] == bu_echo4.addr[0] and src[1] == bu_echo4.addr[1]
    finally:
        s.close()
    line = srv.wait_access_line(["cmd=udp", "rep=0"])
    assert line["dgrams_up"] == line["dgrams_down"] == "2"


# ====================================================================== UDP: who may send


def test_udp_named_port_drops_datagrams_from_other_source_port(bu_servers):
    srv = bu_servers()
    with bu.UdpPeer(LOOP4, echo=False) as sink:
        client, stranger = bu.udp_socket(LOOP4), bu.udp_socket(LOOP4)
        ctrl, relay = bu.udp_associate(srv.addr(), dst=(LOOP4, client.getsockname()[1]))
        try:
            stranger.sendto(bu.udp_wrap(*sink.addr, b"from the wrong port"), relay)
            client.sendto(bu.udp_wrap(*sink.addr, b"from the named port"), relay)
            # Same relay socket, sent in order: the second one arriving means the
            # first was processed; it must not have been relayed.
            assert sink.wait_for(b"from the named port") and sink.datas() == [b"from the named port"]
        finally:
            ctrl.close(), client.close(), stranger.close()
    line = srv.wait_access_line(["cmd=udp"])
    assert (line["dgrams_up"], line["dropped"]) == ("1", "1")


def test_udp_learned_port_drops_datagrams_from_second_socket(bu_servers):
    srv = bu_servers()
    with bu.UdpPeer(LOOP4, echo=False) as sink:
        first, second = bu.udp_socket(LOOP4), bu.udp_socket(LOOP4)
        ctrl, relay = bu.udp_associate(srv.addr(), dst=("0.0.0.0", 0))
        try:
            first.sendto(bu.udp_wrap(*sink.addr, b"one"), relay)   # port learned here
            sink.wait_for(b"one")
            second.sendto(bu.udp_wrap(*sink.addr, b"intruder"), relay)
            first.sendto(bu.udp_wrap(*sink.addr, b"two"), relay)
            sink.wait_for(b"two")
            assert sink.datas() == [b"one", b"two"]
        finally:
            ctrl.close(), first.close(), second.close()


def test_udp_drops_datagrams_from_other_ip_than_control_connection(bu_servers):
    srv = bu_servers()
    with bu.UdpPeer(LOOP4, echo=False) as sink:
        # The control connection comes from 127.0.0.1; a host at 127.0.0.2
        # must not be able to use the association, not even as its first sender.
        foreign, client = bu.udp_socket(OTHER4), bu.udp_socket(LOOP4)
        ctrl, relay = bu.udp_associate(srv.addr(), dst=("0.0.0.0", 0))
        try:
            assert ctrl.getsockname()[0] == LOOP4
            foreign.sendto(bu.udp_wrap(*sink.addr, b"from 127.0.0.2"), relay)
            client.sendto(bu.udp_wrap(*sink.addr, b"from 127.0.0.1"), relay)
            sink.wait_for(b"from 127.0.0.1")
            assert sink.datas() == [b"from 127.0.0.1"]
        finally:
            ctrl.close(), foreign.close(), client.close()


# ====================================================================== UDP: malformed


def test_udp_frag_nonzero_dropped(bu_servers, bu_echo4):
    srv = bu_servers()
    client = bu.udp_socket(LOOP4)
    ctrl, relay = bu.udp_associate(srv.addr())
    try:
        for frag in (1, 0x7F, 0x80, 0xFF):
            client.sendto(bu.udp_wrap(*bu_echo4.addr, b"fragment %d" % frag, frag=frag), relay)
        assert relay_roundtrip(client, relay, bu_echo4.addr, b"whole")[2] == b"whole"
        assert bu_echo4.datas() == [b"whole"]
    finally:
        ctrl.close(), client.close()
    line = srv.wait_access_line(["cmd=udp"])
    assert (line["dgrams_up"], line["dropped"]) == ("1", "4")


@pytest.mark.parametrize("family", [4, 6])
def test_udp_truncated_headers_dropped_and_association_survives(bu_servers, family):
    srv = bu_servers()
    target_host = LOOP6 if family == 6 else LOOP4
    with bu.UdpPeer(target_host, echo=True) as echo:
        header = bu.udp_header(*echo.addr)
        assert len(header) == (22 if family == 6 else 10)
        client = bu.udp_socket(LOOP4)
        ctrl, relay = bu.udp_associate(srv.addr())
        try:
            for n in range(len(header)):  # every proper prefix, the empty datagram included
                client.sendto(header[:n], relay)
            host, port, data = relay_roundtrip(client, relay, echo.addr, b"still alive")
            assert (data, port) == (b"still alive", echo.addr[1]) and bu.same_ip(host, echo.addr[0])
            assert echo.datas() == [b"still alive"]
        finally:
            ctrl.close(), client.close()
    line = srv.wait_access_line(["cmd=udp"])
    assert (line["dgrams_up"], line["dropped"]) == ("1", str(len(header)))


def test_udp_domain_length_beyond_datagram_dropped(bu_servers, bu_echo4):
    srv = bu_servers()
    client = bu.udp_socket(LOOP4)
    ctrl, relay = bu.udp_associate(srv.addr())
    try:
        name = b"localhost"
        port = struct.pack("!H", bu_echo4.addr[1])
        bad = [
            b"\x00\x00\x00\x03" + bytes([200]) + name + port + b"data",  # length past the end
            b"\x00\x00\x00\x03" + bytes([len(name) + 3]) + name + port,  # eats the port
            b"\x00\x00\x00\x03" + bytes([len(name)]) + name + port[:1],  # port cut
            b"\x00\x00\x00\x03" + bytes([255]),                          # nothing after the length
        ]
        for d in bad:
            client.sendto(d, relay)
        # The same name, well formed, is resolved and relayed.
        host, got_port, data = relay_roundtrip(client, relay, ("localhost", bu_echo4.addr[1]), b"ok")
        assert (host, got_port, data) == (LOOP4, bu_echo4.addr[1], b"ok")
        assert bu_echo4.datas() == [b"ok"]
    finally:
        ctrl.close(), client.close()
    line = srv.wait_access_line(["cmd=udp"])
    assert (line["dgrams_up"], line["dropped"]) == ("1", str(len(bad)))


# ====================================================================== UDP: answers


def _reply_from_stranger(srv):
    """A target at 127.0.0.1 the client sent to, and a stranger at 127.0.0.2
    sending to the relay's outbound socket: returns the answers the client got
    (a final answer from the real target is the barrier)."""
    target, stranger = bu.udp_socket(LOOP4), bu.udp_socket(OTHER4)
    client = bu.udp_socket(LOOP4)
    ctrl, relay = bu.udp_associate(srv.addr())
    try:
        client.sendto(bu.udp_wrap(*target.getsockname(), b"hello target"), relay)
        data, outbound = target.recvfrom(65535)
        assert data == b"hello target"
        stranger.sendto(b"unsolicited", (LOOP4, outbound[1]))
        target.sendto(b"answer", outbound)
        got = []
        while True:
            host, port, data = bu.udp_unwrap(client.recvfrom(65535)[0])
            got.append((host, port, data))
            if data == b"answer":
                break
        assert bu.nothing_pending(client)
        return got, target.getsockname(), stranger.getsockname()
    finally:
        ctrl.close(), target.close(), stranger.close(), client.close()


def test_udp_answer_from_unknown_target_dropped(bu_servers):
    srv = bu_servers()
    got, target, _ = _reply_from_stranger(srv)
    assert got == [(LOOP4, target[1], b"answer")]
    line = srv.wait_access_line(["cmd=udp"])
    assert (line["dgrams_down"], line["dropped"]) == ("1", "1")


def test_udp_answer_from_unknown_target_delivered_with_full_cone(bu_servers):
    srv = bu_servers("--udp-full-cone")
    got, target, stranger = _reply_from_stranger(srv)
    assert got == [(OTHER4, stranger[1], b"unsolicited"), (LOOP4, target[1], b"answer")]


# ====================================================================== UDP: sizes


@pytest.mark.parametrize("client_host,target_host,size", [
    (LOOP6, LOOP4, 65507),  # the largest IPv4 payload: needs the IPv6 client leg for the header
    (LOOP4, LOOP4, 65507 - 10),  # the largest an IPv4 client can send with a 10-byte header
    (LOOP6, LOOP6, 65527 - 22),  # the largest an IPv6 client can send with a 22-byte header
], ids=["ipv4-target-65507", "ipv4-client-65497", "ipv6-client-65505"])
def test_udp_max_size_payload_relayed_intact(bu_servers, client_host, target_host, size):
    srv = bu_servers(hosts=(LOOP4, LOOP6))
    payload = os.urandom(size)
    with bu.UdpPeer(target_host, echo=True) as echo:
        client = bu.udp_socket(client_host, rcvbuf=1 << 20)
        ctrl, relay = bu.udp_associate(srv.addr(client_host))
        try:
            host, port, data = relay_roundtrip(client, relay, echo.addr, payload)
            assert len(data) == size and data == payload
            assert bu.same_ip(host, target_host) and port == echo.addr[1]
            assert echo.datas() == [payload]
        finally:
            ctrl.close(), client.close()


def test_udp_answer_too_big_for_client_leg_dropped_association_survives(bu_servers):
    srv = bu_servers()
    target, client = bu.udp_socket(LOOP4), bu.udp_socket(LOOP4, rcvbuf=1 << 20)
    ctrl, relay = bu.udp_associate(srv.addr())
    try:
        client.sendto(bu.udp_wrap(*target.getsockname(), b"hi"), relay)
        data, outbound = target.recvfrom(100)
        assert data == b"hi"
        # 65,507 bytes is a legal IPv4 datagram, but with the 10-byte header it
        # no longer fits one to an IPv4 client: dropped, the next one goes through.
        target.sendto(os.urandom(65507), outbound)
        target.sendto(b"small", outbound)
        host, port, data = bu.udp_unwrap(client.recvfrom(70000)[0])
        assert (host, port, data) == (LOOP4, target.getsockname()[1], b"small")
        assert bu.nothing_pending(client)
    finally:
        ctrl.close(), target.close(), client.close()
    line = srv.wait_access_line(["cmd=udp"])
    assert (line["dgrams_up"], line["dgrams_down"], line["dropped"]) == ("1", "1", "1")


def test_udp_burst_beyond_per_event_budget_fully_relayed(bu_servers, bu_echo4):
    # The relay reads at most 64 datagrams per socket per event, then comes
    # back: a burst of 120 must neither stall nor lose any on loopback.
    n = 120
    srv = bu_servers()
    client = bu.udp_socket(LOOP4, rcvbuf=8 << 20)
    ctrl, relay = bu.udp_associate(srv.addr())
    try:
        want = {b"burst %03d" % i for i in range(n)}
        for d in sorted(want):
            client.sendto(bu.udp_wrap(*bu_echo4.addr, d), relay)
        got = set()
        while len(got) < n:
            got.add(bu.udp_unwrap(client.recvfrom(65535)[0])[2])
        assert got == want
    finally:
        ctrl.close(), client.close()
    line = srv.wait_access_line(["cmd=udp"])
    assert (line["dgrams_up"], line["dgrams_down"], line["dropped"]) == (str(n), str(n), "0")


# ====================================================================== UDP: lifetime


@pytest.mark.parametrize("close", ["fin", "rst"])
def test_udp_association_torn_down_when_control_connection_closes(bu_servers, bu_echo4, close):
    srv = bu_servers()
    before = bu.stable_fd_count(srv.pid)
    client = bu.udp_socket(LOOP4)
    ctrl, relay = bu.udp_associate(srv.addr())
    try:
        assert relay_roundtrip(client, relay, bu_echo4.addr, b"ping")[2] == b"ping"
        # control connection + relay socket + outbound socket
        assert bu.fd_count(srv.pid) >= before + 3
    finally:
        if close == "rst":
            bu.rst_close(ctrl)
        else:
            ctrl.close()
    bu.wait_fd_count(srv.pid, before)
    # The relay port is closed: a datagram to it now draws a port unreachable.
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.connect(relay)
    probe.setblocking(False)

    def refused():
        try:
            probe.send(bu.udp_wrap(*bu_echo4.addr, b"late"))
            probe.recv(100)
        except ConnectionRefusedError:
            return True
        except BlockingIOError:
            return False
        return False

    try:
        bu.wait_until(refused, IO_TIMEOUT, "ICMP port unreachable from the closed relay", 0.05)
    finally:
        probe.close(), client.close()
    assert bu_echo4.datas() == [b"ping"]
    line = srv.wait_access_line(["cmd=udp"])
    assert (line["rep"], line["dgrams_up"], line["dgrams_down"]) == ("0", "1", "1")


def test_udp_idle_timeout_closes_control_connection(bu_servers):
    srv = bu_servers("--timeout-udp", "1s")
    before = bu.stable_fd_count(srv.pid)
    ctrl, relay = bu.udp_associate(srv.addr())
    t0 = time.monotonic()
    try:
        assert bu.peer_closed(ctrl, timeout=bu.scaled(5.0)), "association still open 5s after a 1s idle timeout"
        elapsed = time.monotonic() - t0
    finally:
        ctrl.close()
    assert 0.9 <= elapsed < bu.scaled(4.0), "closed after %.2fs with --timeout-udp 1s" % elapsed
    line = srv.wait_access_line(["cmd=udp"])
    assert 'error="idle' in " ".join(srv.access_lines()) and line["rep"] == "0"
    bu.wait_fd_count(srv.pid, before)


def test_udp_datagrams_keep_association_alive_past_timeout(bu_servers, bu_echo4):
    srv = bu_servers("--timeout-udp", "2s")
    client = bu.udp_socket(LOOP4)
    ctrl, relay = bu.udp_associate(srv.addr())
    try:
        t_end = time.monotonic() + 5.0  # 2.5 idle timeouts
        last, max_gap, i = time.monotonic(), 0.0, 0
        while time.monotonic() < t_end:
            payload = b"keepalive %d" % i
            try:
                got = relay_roundtrip(client, relay, bu_echo4.addr, payload)[2]
            except socket.timeout:
                raise AssertionError("association died despite traffic (longest gap between "
                                     "datagrams %.2fs, --timeout-udp 2s)" % max_gap) from None
            assert got == payload
            assert bu.nothing_pending(ctrl), "control connection closed despite traffic"
            now = time.monotonic()
            max_gap, last = max(max_gap, now - last), now
            time.sleep(0.1)  # pacing the traffic is the point of this test
            i += 1
        assert bu.peer_closed(ctrl, timeout=bu.scaled(6.0)), "no idle timeout once traffic stopped"
        quiet = time.monotonic() - last  # since the last answer came back
        assert 1.8 <= quiet < bu.scaled(5.0), "closed %.2fs after the last datagram" % quiet
    finally:
        ctrl.close(), client.close()


def test_udp_access_log_counts_datagrams_and_bytes(bu_servers, bu_echo4):
    srv = bu_servers()
    client = bu.udp_socket(LOOP4)
    ctrl, relay = bu.udp_associate(srv.addr(), dst=("0.0.0.0", 0))
    ctrl_port = ctrl.getsockname()[1]
    payloads = [b"abc", b"hello", b"x" * 1000]
    try:
        client.sendto(bu.udp_wrap(*bu_echo4.addr, b"dropped", frag=1), relay)
        for p in payloads:
            assert relay_roundtrip(client, relay, bu_echo4.addr, p)[2] == p
    finally:
        ctrl.close(), client.close()
    line = srv.wait_access_line(["cmd=udp", "client=127.0.0.1:%d " % ctrl_port])
    total = str(sum(map(len, payloads)))
    assert line["rep"] == "0"
    assert line["dst"] == "0.0.0.0:0"
    assert (line["up"], line["down"]) == (total, total)
    assert (line["dgrams_up"], line["dgrams_down"], line["dropped"]) == ("3", "3", "1")
    assert len([ln for ln in srv.access_lines() if "cmd=udp" in ln]) == 1


# ====================================================================== BIND


def test_bind_refuses_peer_from_wrong_ip_then_accepts_named_ip(bu_servers):
    srv = bu_servers()
    ctrl = bu.socks_open(srv.addr())
    stranger = good = None
    try:
        rep, bound = bu.socks_request(ctrl, CMD_BIND, LOOP4, 0)
        assert rep == REP_SUCCEEDED and bound[0] == LOOP4 and bound[1] != 0
        stranger = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        stranger.settimeout(IO_TIMEOUT)
        stranger.bind((OTHER4, 0))
        stranger.connect(bound)
        assert bu.peer_closed(stranger), "peer from 127.0.0.2 was not turned away"
        assert bu.nothing_pending(ctrl), "a second reply was sent for the refused peer"
        good = socket.create_connection(bound, timeout=IO_TIMEOUT, source_address=(LOOP4, 0))
        rep, peer = bu.read_reply(ctrl)
        assert rep == REP_SUCCEEDED
        assert peer == good.getsockname()
        ctrl.sendall(b"to peer")
        assert bu.recv_exact(good, 7) == b"to peer"
        good.sendall(b"to client")
        assert bu.recv_exact(ctrl, 9) == b"to client"
    finally:
        for s in (ctrl, stranger, good):
            if s:
                s.close()


def test_bind_timeout_replies_ttl_expired(bu_servers):
    srv = bu_servers("--timeout-bind", "1s")
    before = bu.stable_fd_count(srv.pid)
    ctrl = bu.socks_open(srv.addr())
    try:
        rep, bound = bu.socks_request(ctrl, CMD_BIND, "0.0.0.0", 0)
        assert rep == REP_SUCCEEDED
        t0 = time.monotonic()
        rep, _ = bu.read_reply(ctrl)
        elapsed = time.monotonic() - t0
        assert rep == REP_TTL_EXPIRED
        assert 0.9 <= elapsed < bu.scaled(4.0), "REP 6 after %.2fs with --timeout-bind 1s" % elapsed
        assert bu.peer_closed(ctrl)
    finally:
        ctrl.close()
    # The listener goes with the session (closed just after the control
    # connection: wait for the fds before probing the port).
    bu.wait_fd_count(srv.pid, before)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(bound, timeout=IO_TIMEOUT).close()
    assert srv.wait_access_line(["cmd=bind"])["rep"] == "6"


@pytest.mark.parametrize("close", ["fin", "rst"])
def test_bind_client_gone_closes_listener(bu_servers, close):
    srv = bu_servers()
    before = bu.stable_fd_count(srv.pid)
    ctrl = bu.socks_open(srv.addr())
    rep, bound = bu.socks_request(ctrl, CMD_BIND, "0.0.0.0", 0)
    assert rep == REP_SUCCEEDED
    if close == "rst":
        bu.rst_close(ctrl)
    else:
        ctrl.close()
    # Session, control connection and listener gone; no connection attempt
    # before that, so none can be taken as the BIND peer.
    bu.wait_fd_count(srv.pid, before)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(bound, timeout=IO_TIMEOUT).close()
    line = srv.wait_access_line(["cmd=bind"])
    assert line["rep"] == "0" and line["addr"] == "-"


@pytest.mark.parametrize("flag", ["--no-bind", "--no-udp"])
def test_disabled_command_replies_not_allowed(bu_servers, flag):
    srv = bu_servers(flag)
    expect = {CMD_BIND: REP_NOT_ALLOWED if flag == "--no-bind" else REP_SUCCEEDED,
              CMD_UDP: REP_NOT_ALLOWED if flag == "--no-udp" else REP_SUCCEEDED}
    for cmd, want in expect.items():
        ctrl = bu.socks_open(srv.addr())
        try:
            rep, _ = bu.socks_request(ctrl, cmd, "0.0.0.0", 0)
            assert rep == want, "cmd %d with %s: REP %d" % (cmd, flag, rep)
            if want == REP_NOT_ALLOWED:
                assert bu.peer_closed(ctrl)
        finally:
            ctrl.close()


# ====================================================================== soak


def test_udp_soak_associations_leave_fd_count_unchanged(bu_servers, bu_echo4):
    total = int(os.environ.get("SOAK_ASSOCIATIONS", "10000"))
    batch = 200
    time_bound = float(os.environ.get("SOAK_SECONDS", "90"))
    srv = bu_servers()
    before = bu.stable_fd_count(srv.pid)
    proxy = srv.addr()
    # All associations learn this one client socket's port from its first datagram.
    client = bu.udp_socket(LOOP4, rcvbuf=8 << 20)
    request = b"\x05\x01\x00" + b"\x05\x03\x00" + bu.encode_addr("0.0.0.0", 0)
    t_start = time.monotonic()
    done = 0
    nbatch = 0
    try:
        while done < total:
            n = min(batch, total - done)
            ctrls = []
            try:
                for _ in range(n):
                    c = socket.create_connection(proxy, timeout=IO_TIMEOUT)
                    c.sendall(request)  # greeting and request in one go
                    ctrls.append(c)
                relays = []
                for c in ctrls:
                    assert bu.recv_exact(c, 2) == b"\x05\x00"
                    rep, relay = bu.read_reply(c)
                    assert rep == REP_SUCCEEDED
                    relays.append(relay)
                for i, relay in enumerate(relays):
                    client.sendto(bu.udp_wrap(*bu_echo4.addr, b"%d" % (done + i)), relay)
                answered = set()
                client.settimeout(IO_TIMEOUT)
                while len(answered) < n:
                    data, src = client.recvfrom(65535)
                    answered.add(src[1])
                    assert bu.udp_unwrap(data)[0] == LOOP4
                assert answered == {r[1] for r in relays}
            finally:
                for i, c in enumerate(ctrls):
                    if nbatch % 2:
                        bu.rst_close(c)  # every other batch ends with resets
                    else:
                        c.close()
            done += n
            nbatch += 1
            assert time.monotonic() - t_start < time_bound, (
                "soak too slow: %d associations in %.0fs" % (done, time_bound))
        bu.wait_fd_count(srv.pid, before, timeout=bu.scaled(15.0))
    finally:
        client.close()
    # Still serving.
    ctrl, relay = bu.udp_associate(proxy)
    try:
        c2 = bu.udp_socket(LOOP4)
        assert relay_roundtrip(c2, relay, bu_echo4.addr, b"after soak")[2] == b"after soak"
        c2.close()
    finally:
        ctrl.close()


# ====================================================================== options


def _free_udp_pair():
    for _ in range(200):
        lo = bu.free_port(LOOP4, socket.SOCK_DGRAM)
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.bind((LOOP4, lo + 1))
            return lo
        except OSError:
            continue
    raise AssertionError("no two consecutive free UDP ports")


def test_udp_ports_option_confines_relay_ports(bu_servers, bu_echo4):
    lo = _free_udp_pair()
    srv = bu_servers("--udp-ports", "%d-%d" % (lo, lo + 1))
    a1, r1 = bu.udp_associate(srv.addr())
    a2, r2 = bu.udp_associate(srv.addr())
    third = None
    try:
        assert {r1[1], r2[1]} == {lo, lo + 1}
        # The range is used up: the next association is refused, not put elsewhere.
        third = bu.socks_open(srv.addr())
        rep, _ = bu.socks_request(third, CMD_UDP, "0.0.0.0", 0)
        assert rep == 0x01
        assert bu.peer_closed(third)
        a1.close()
        # Its port is free again as soon as the association is gone.

        def reopened():
            c = bu.socks_open(srv.addr())
            rep, relay = bu.socks_request(c, CMD_UDP, "0.0.0.0", 0)
            if rep == REP_SUCCEEDED:
                return c, relay
            c.close()
            return None

        a1, r3 = bu.wait_until(reopened, IO_TIMEOUT, "a relay port to be free again", 0.05)
        assert r3[1] == r1[1]
        client = bu.udp_socket(LOOP4)
        assert relay_roundtrip(client, r3, bu_echo4.addr, b"in range")[2] == b"in range"
        client.close()
    finally:
        for s in (a1, a2, third):
            if s:
                s.close()


def test_advertise_address_in_bind_and_udp_replies(bu_servers, bu_echo4):
    srv = bu_servers("--advertise", "192.0.2.7")
    ctrl, relay = bu.udp_associate(srv.addr())
    try:
        assert relay[0] == "192.0.2.7"
        # The port is the real relay socket's, on the address we came in on.
        client = bu.udp_socket(LOOP4)
        assert relay_roundtrip(client, (LOOP4, relay[1]), bu_echo4.addr, b"adv")[2] == b"adv"
        client.close()
    finally:
        ctrl.close()
    ctrl = bu.socks_open(srv.addr())
    try:
        rep, bound = bu.socks_request(ctrl, CMD_BIND, "0.0.0.0", 0)
        assert rep == REP_SUCCEEDED and bound[0] == "192.0.2.7"
        peer = socket.create_connection((LOOP4, bound[1]), timeout=IO_TIMEOUT)
        rep, who = bu.read_reply(ctrl)
        assert rep == REP_SUCCEEDED and who == peer.getsockname()
        peer.close()
    finally:
        ctrl.close()
