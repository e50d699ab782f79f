"""A fleet behind a load balancer: HAProxy (TCP mode, round robin, health
checks) in front of two socks5d nodes with the PROXY protocol, v2
(`send-proxy-v2`) and v1 (`send-proxy`).

    client 127.0.0.50 --> HAProxy 127.0.0.1:F --PROXY--> node a 127.0.0.11:P
                                               \\-PROXY--> node b 127.0.0.12:Q

HAProxy connects to the nodes from 127.0.0.1; the nodes must see (log, apply
rules to, hold UDP associations for) the real client 127.0.0.50. Each node
advertises its own listen address, so a UDP ASSOCIATE reply names the node
that holds the association. Measurements are printed with a "[fleet]"
prefix (pytest -s shows them).
"""
import signal
import socket
import struct
import time

import pytest

from fleet_support import (CHECK_FALL, CHECK_INTER_MS, CLIENT_IP, OTHER_CLIENT_IP, Fleet,
                           UdpEcho, check_body, connect_from, curl_via, echo_ok,
                           handshake_failures, log, metric_delta, owner, pysocks_get, start_node,
                           tunnel_from, udp_associate_from, udp_roundtrip)
from harness import (HTTP_BODY, greeting, read_until_closed, recv_exact, scaled,
                     wait_until)

VERSIONS = ["v2", "v1"]


@pytest.fixture
def fleet(socks5d, tmp_path):
    """Factory: fleet(version, node_args, grace) starts nodes a and b and an
    HAProxy in front of them. HAProxy is stopped (by PID) before the nodes,
    which the socks5d fixture then stops and checks (exit 0, no sanitizer
    report)."""
    made = []

    def make(version="v2", node_args=(), grace="2s"):
        f = Fleet(socks5d, tmp_path, version, node_args, grace)
        made.append(f)
        return f

    yield make
    for f in made:
        f.close()


@pytest.fixture
def udp_echo():
    e = UdpEcho()
    yield e
    e.close()


def client_ip(line):
    return line["client"].rsplit(":", 1)[0]


def diag(f):
    out = [f"--- haproxy ---\n{f.haproxy.log()[-4000:]}"]
    for n in f.nodes.values():
        out.append(f"--- node {n.name} ---\n{n.srv.log()[-4000:]}")
    return "\n".join(out)


def lines_by_node(f, pred):
    return {name: n.access(pred) for name, n in f.nodes.items()}


def wait_lines(f, pred, total, timeout=None):
    """Waits until the nodes together logged `total` lines matching pred;
    returns them by node."""
    try:
        wait_until(lambda: sum(map(len, lines_by_node(f, pred).values())) >= total,
                   timeout or scaled(5), what=f"{total} access-log lines")
    except AssertionError:
        raise AssertionError(f"expected {total} matching access-log lines\n{diag(f)}")
    return lines_by_node(f, pred)


# ---------------------------------------------------------------- 1, 6


@pytest.mark.parametrize("version", VERSIONS)
def test_curl_and_pysocks_through_haproxy_and_nodes_log_the_real_client(fleet, http_servers,
                                                                        version):
    f = fleet(version)
    port = http_servers.port
    for i in range(2):
        r = curl_via(f.addr, CLIENT_IP, f"http://localhost:{port}/fleet-curl-{i}")
        assert r.returncode == 0, r.stderr.decode() + diag(f)
        check_body(r.stdout)
    for i in range(2):
        check_body(pysocks_get(f.addr, CLIENT_IP, "localhost", port, f"/fleet-pysocks-{i}"))

    dst = f"localhost:{port}"
    by_node = wait_lines(f, lambda l: l.get("cmd") == "connect" and l.get("dst") == dst, 4)
    log(f"{version}: curl+PySocks sessions per node: "
        f"{ {k: len(v) for k, v in by_node.items()} }")
    for name, lines in by_node.items():
        # Round robin: two clients of each kind, one after the other, so each
        # node served some of them.
        assert lines, f"node {name} served none of the 4 sessions\n{diag(f)}"
        for l in lines:
            assert client_ip(l) == CLIENT_IP, (
                f"node {name} logged client {l['client']}, not the real client {CLIENT_IP} "
                f"(HAProxy connects from 127.0.0.1): {l['_line']}")
            assert l["rep"] == "0" and "error" not in l, l["_line"]
            assert int(l["down"]) > len(HTTP_BODY), l["_line"]
    # Nothing that served a request claims to come from HAProxy itself.
    for name, n in f.nodes.items():
        bad = n.access(lambda l: l.get("cmd") != "-" and client_ip(l) != CLIENT_IP)
        assert not bad, f"node {name}: sessions from another client: {bad}"


# ---------------------------------------------------------------- 2


@pytest.mark.parametrize("version", VERSIONS)
def test_client_rule_applies_to_the_real_client_behind_haproxy(fleet, echo, version):
    f = fleet(version, node_args=("--rule", f"deny from {CLIENT_IP}", "--rule", "allow"))
    before = {n: node.metrics() for n, node in f.nodes.items()}
    # The denied client: the node closes (after the PROXY header) without
    # answering the greeting, and HAProxy passes the close on.
    for _ in range(4):
        s = connect_from(CLIENT_IP, f.addr)
        try:
            try:
                s.sendall(greeting((0x00,)))
            except OSError:
                pass  # already closed
            data = read_until_closed(s, scaled(5))
            assert data == b"", f"denied client got {data!r}"
        finally:
            s.close()
    # Another client is served.
    for i in range(4):
        s, _, _ = tunnel_from(OTHER_CLIENT_IP, f.addr, *echo.addr)
        try:
            assert echo_ok(s, f"allowed {i}".encode())
        finally:
            s.close()

    denied = wait_lines(f, lambda l: client_ip(l) == CLIENT_IP, 4)
    served = wait_lines(f, lambda l: client_ip(l) == OTHER_CLIENT_IP, 4)
    log(f"{version}: denied per node { {k: len(v) for k, v in denied.items()} }, "
        f"served per node { {k: len(v) for k, v in served.items()} }")
    for name in f.nodes:
        assert denied[name], f"node {name} refused none of {CLIENT_IP}'s connections\n{diag(f)}"
        assert served[name], f"node {name} served none of {OTHER_CLIENT_IP}'s tunnels\n{diag(f)}"
        for l in denied[name]:
            assert l.get("error") == "client denied by rule", l["_line"]
            assert l.get("rule"), f"no rule named in {l['_line']}"
            assert l["cmd"] == "-", l["_line"]
        for l in served[name]:
            assert l["cmd"] == "connect" and l["rep"] == "0" and "error" not in l, l["_line"]
        after = f.nodes[name].metrics()
        refused = metric_delta(before[name], after, 'socks5d_refused_total{reason="rule"}')
        assert refused == len(denied[name]), (name, refused, len(denied[name]))


# ---------------------------------------------------------------- 3


def test_round_robin_spreads_connections_over_both_nodes(fleet, echo):
    f = fleet("v2")
    n = 20
    for i in range(n):
        s, _, _ = tunnel_from(CLIENT_IP, f.addr, *echo.addr)
        try:
            assert echo_ok(s, f"spread {i}".encode())
        finally:
            s.close()
    dst = f"127.0.0.1:{echo.port}"
    by_node = wait_lines(f, lambda l: l.get("cmd") == "connect" and l.get("dst") == dst, n)
    counts = {k: len(v) for k, v in by_node.items()}
    log(f"v2: {n} connections per node: {counts}")
    assert sum(counts.values()) == n, counts
    for name, c in counts.items():
        assert c >= n // 4, f"round robin gave node {name} only {c} of {n}: {counts}"
    for lines in by_node.values():
        for l in lines:
            assert client_ip(l) == CLIENT_IP and l["rep"] == "0", l["_line"]


# ---------------------------------------------------------------- 4


def test_node_killed_sessions_survive_and_haproxy_moves_new_connections(fleet, echo):
    # Long enough that a loaded machine cannot outlast it: the test ends the
    # last session itself and checks the exit right after.
    grace = scaled(30)
    f = fleet("v2", grace=f"{int(grace)}s")
    nodes = list(f.nodes.values())

    # One finished handshake on each node (round robin: two in a row);
    # the node is the process holding the tunnel's outbound socket.
    sessions = {}
    opened = []
    try:
        for _ in range(6):
            s, bhost, bport = tunnel_from(CLIENT_IP, f.addr, *echo.addr)
            opened.append(s)
            node = owner(nodes, "tcp", local=(bhost, bport), remote=echo.addr)
            assert node is not None, f"no node holds the tunnel from {bhost}:{bport}"
            sessions.setdefault(node.name, s)
            if len(sessions) == 2:
                break
        assert len(sessions) == 2, f"six tunnels, all on {list(sessions)}\n{diag(f)}"
        victim, survivor = f.nodes["a"], f.nodes["b"]
        s_victim, s_survivor = sessions["a"], sessions["b"]
        for s in (s_victim, s_survivor):
            assert echo_ok(s, b"before the kill")
        victim_lines_before = len(victim.access())

        t_kill = time.monotonic()
        victim.srv.signal(signal.SIGTERM)
        # During the grace period both established sessions keep working.
        assert echo_ok(s_survivor, b"survivor right after the kill")
        assert echo_ok(s_victim, b"victim right after the kill (draining)")
        # The draining node says so on /healthz.
        wait_until(lambda: victim.healthz() == 503, scaled(5), what="/healthz 503 on the victim")
        assert survivor.healthz() == 200

        # HAProxy's health check marks the node down.
        try:
            wait_until(lambda: f.haproxy.status("a").startswith("DOWN"), scaled(10), interval=0.01,
                       what="HAProxy to mark node a DOWN")
        except AssertionError:
            raise AssertionError(f"HAProxy never marked the killed node down\n{diag(f)}")
        t_down = time.monotonic() - t_kill
        log(f"v2: killed node marked DOWN by HAProxy after {t_down * 1000:.0f} ms "
            f"(check inter {CHECK_INTER_MS} ms, fall {CHECK_FALL})")
        assert f.haproxy.status("b") == "UP"

        # Every new connection from now on succeeds, through the survivor.
        dst = f"127.0.0.1:{echo.port}"
        survivor_before = len(survivor.access(lambda l: l.get("dst") == dst))
        n_new = 10
        for i in range(n_new):
            s, bhost, bport = tunnel_from(CLIENT_IP, f.addr, *echo.addr)
            try:
                assert owner(nodes, "tcp", local=(bhost, bport), remote=echo.addr) is survivor
                assert echo_ok(s, f"after down {i}".encode())
            finally:
                s.close()
        wait_until(lambda: len(survivor.access(lambda l: l.get("dst") == dst)) >=
                   survivor_before + n_new, scaled(5), what="the survivor's access-log lines")
        log(f"v2: after the kill {n_new}/{n_new} new connections succeeded, all via node "
            f"{survivor.name}")

        # The old sessions still work, the victim is still draining.
        assert echo_ok(s_survivor, b"survivor after mark-down")
        assert echo_ok(s_victim, b"victim after mark-down")
        assert victim.srv.alive(), "the victim exited before its grace period or last session"
        assert time.monotonic() - t_kill < grace, "the test outlived the grace period"

        # Its last session ends: the victim exits 0 at once.
        s_victim.close()
        t_close = time.monotonic()
        assert victim.srv.wait(scaled(5)) == 0
        log(f"v2: victim exited {1000 * (time.monotonic() - t_close):.0f} ms after its last "
            f"session closed")
        new = victim.access()[victim_lines_before:]
        drained = [l for l in new if l.get("cmd") == "connect"]
        assert drained and client_ip(drained[0]) == CLIENT_IP and "error" not in drained[0], new
        assert echo_ok(s_survivor, b"survivor after the victim exited")
    finally:
        for s in opened:
            s.close()


# ---------------------------------------------------------------- 5, 6


@pytest.mark.parametrize("version", VERSIONS)
def test_udp_associate_through_haproxy_names_the_accepting_node(fleet, udp_echo, version):
    f = fleet(version)
    nodes = list(f.nodes.values())
    seen = {}
    udp_lines = {name: 0 for name in f.nodes}
    for i in range(2):
        usock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        usock.bind((CLIENT_IP, 0))
        ctl = None
        try:
            ctl, bhost, bport = udp_associate_from(CLIENT_IP, f.addr, usock.getsockname()[1])
            assert bhost in Fleet.NODE_IPS.values(), (
                f"BND.ADDR {bhost} is not a node's advertised address (HAProxy is 127.0.0.1)")
            node = f.node_at(bhost)
            # The node named in the reply is the one holding the relay socket,
            # bound on the address the TCP connection reached it at.
            holder = owner(nodes, "udp", local=(None, bport))
            assert holder is node, f"reply names {node}, the relay is held by {holder}"
            assert owner(nodes, "udp", local=(node.ip, bport)) is node
            payload = f"udp via {version} #{i}".encode()
            fhost, fport, data = udp_roundtrip(usock, (bhost, bport), udp_echo.addr, payload)
            assert (fhost, fport) == udp_echo.addr and data == payload
            seen[node.name] = (bhost, bport)
        finally:
            if ctl:
                ctl.close()
            usock.close()
        # The association's log line is on the node the reply named.
        udp_lines[node.name] += 1
        lines = wait_lines(f, lambda l: l.get("cmd") == "udp", i + 1)
        assert {k: len(v) for k, v in lines.items()} == udp_lines, lines
        l = lines[node.name][-1]
        assert client_ip(l) == CLIENT_IP, l["_line"]
        assert int(l["dgrams_up"]) >= 1 and int(l["dgrams_down"]) >= 1, l["_line"]
        assert "error" not in l, l["_line"]
    log(f"{version}: UDP associations (node: BND) {seen}")
    assert set(seen) == {"a", "b"}, f"both associations on one node: {seen}"


# ---------------------------------------------------------------- 7


@pytest.mark.parametrize("version", VERSIONS)
def test_health_checks_do_not_spam_the_access_log(fleet, version):
    f = fleet(version)
    idle = 2.0
    before = {n: (node.metrics(), len(node.access())) for n, node in f.nodes.items()}
    time.sleep(idle)  # the observation window: only HAProxy's checks arrive
    expected = idle * 1000 / CHECK_INTER_MS
    problems = []
    for name, node in f.nodes.items():
        m0, n0 = before[name]
        m1 = node.metrics()
        new = node.access()[n0:]
        probes = metric_delta(m0, m1, "socks5d_probes_total")
        hs = {k: v - handshake_failures(m0).get(k, 0) for k, v in handshake_failures(m1).items()
              if v - handshake_failures(m0).get(k, 0)}
        sessions = metric_delta(m0, m1, "socks5d_sessions_total")
        log(f"{version}: node {name} in {idle:.0f} s idle: probes_total +{probes:.0f}, "
            f"handshake failures +{hs or 0}, sessions +{sessions:.0f}, access-log lines "
            f"+{len(new)} ({sum('error' in l for l in new)} with error=)")
        # The checks happened and the counters account for them.
        accounted = probes + sum(hs.values())
        if accounted < expected / 2:
            problems.append(f"node {name}: only {accounted:.0f} connections counted, "
                            f"~{expected:.0f} health checks expected")
        errors = [l["_line"] for l in new if "error" in l]
        if errors:
            problems.append(f"node {name}: {len(errors)} access-log error lines for health "
                            f"checks, e.g. {errors[0]}")
    assert not problems, "\n".join(problems)


# ---------------------------------------------------------------- 8


def v1_header(src, dst):
    return f"PROXY TCP4 {src[0]} {dst[0]} {src[1]} {dst[1]}\r\n".encode()


def v2_header(src, dst, ver_cmd=0x21):
    sig = b"\r\n\r\n\x00\r\nQUIT\n"
    body = socket.inet_aton(src[0]) + socket.inet_aton(dst[0]) + struct.pack(">HH", src[1],
                                                                              dst[1])
    return sig + bytes([ver_cmd, 0x11]) + struct.pack(">H", len(body)) + body


def closed_without_reply(addr, payload, within):
    """Connects from 127.0.0.1, sends payload, and returns what came back
    before the close (which must come within `within` seconds)."""
    s = connect_from("127.0.0.1", addr)
    try:
        try:
            s.sendall(payload)
        except OSError:
            pass  # closed already: what we check
        return read_until_closed(s, within)
    finally:
        s.close()


def test_untrusted_source_and_malformed_headers_are_closed(socks5d):
    trusted = start_node(socks5d, "t", "127.0.0.11")
    untrusted = start_node(socks5d, "u", "127.0.0.13", trusted="10.0.0.0/8")
    within = scaled(3)  # well before the 10 s handshake timeout
    real = (CLIENT_IP, 40000)

    # Positive control: a well-formed header from a trusted sender works.
    for hdr in (v1_header(real, trusted.addr), v2_header(real, trusted.addr)):
        s = connect_from("127.0.0.1", trusted.addr)
        try:
            s.sendall(hdr + greeting((0x00,)))
            assert recv_exact(s, 2) == b"\x05\x00"
        finally:
            s.close()

    # An untrusted sender is closed, whatever header it sends.
    m0 = untrusted.metrics()
    for hdr in (v1_header(real, untrusted.addr), v2_header(real, untrusted.addr)):
        t0 = time.monotonic()
        assert closed_without_reply(untrusted.addr, hdr + greeting((0x00,)), within) == b""
        log(f"untrusted sender closed after {1000 * (time.monotonic() - t0):.0f} ms")
    lines = untrusted.srv.wait_access(2)
    for l in lines:
        assert l["error"] == "PROXY protocol from an untrusted address", l["_line"]
        assert client_ip(l) == "127.0.0.1", l["_line"]
    assert metric_delta(m0, untrusted.metrics(),
                        'socks5d_handshake_failures_total{reason="proxy_protocol"}') == 2

    # On a trusted connection: no header, or a broken one.
    bad = {
        "plain SOCKS greeting": greeting((0x00,)),
        "HTTP request": b"GET / HTTP/1.0\r\n\r\n",
        "v1 port out of range": b"PROXY TCP4 127.0.0.50 127.0.0.11 99999 1080\r\n",
        "v1 bad address": b"PROXY TCP4 127.0.0.500 127.0.0.11 4000 1080\r\n",
        "v1 without CRLF": b"PROXY TCP4 127.0.0.50 127.0.0.11 4000 1080\n" + b"x" * 120,
        "v2 version 1": v2_header(real, trusted.addr, ver_cmd=0x11),
        "v2 command 3": v2_header(real, trusted.addr, ver_cmd=0x23),
    }
    # The two control sessions log once the server sees them close, which
    # may be later than this: count from after their lines, or one of them
    # would be read as a broken header's.
    trusted.srv.wait_access(2)
    m0 = trusted.metrics()
    n0 = len(trusted.access())
    for what, payload in bad.items():
        t0 = time.monotonic()
        data = closed_without_reply(trusted.addr, payload, within)
        assert data == b"", f"{what}: got {data!r}"
        log(f"{what}: closed after {1000 * (time.monotonic() - t0):.0f} ms")
    wait_until(lambda: len(trusted.access()) >= n0 + len(bad), scaled(5),
               what="an access-log line per broken header")
    new = trusted.access()[n0:]
    for l in new:
        assert l.get("error") and l["cmd"] == "-", l["_line"]
        assert client_ip(l) == "127.0.0.1", l["_line"]
    assert metric_delta(m0, trusted.metrics(),
                        'socks5d_handshake_failures_total{reason="proxy_protocol"}') == len(bad)
