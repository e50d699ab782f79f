"""RFC 1928 / RFC 1929 on the wire, with raw sockets: every reply code this
machine lets the server produce, and the handshake's edge cases.

BIND and UDP ASSOCIATE have their own suite."""
import os
import socket
import subprocess
import threading
import time

import pytest

from harness import (HTTP_BODY, USERS, assert_closed_without_data, bind_socket,
                     full_backlog_listener, greeting, handshake, read_reply, read_until_closed,
                     recv_exact, request, scaled, userpass)

ALICE = ("alice", USERS["alice"])


@pytest.fixture
def srv(socks5d):
    return socks5d("--auth", "none")


@pytest.fixture
def auth_srv(socks5d, users_file):
    return socks5d("--auth", "userpass", "--users", users_file)


def expect_error_reply(sock, rep, timeout=None):
    """The server answers REP `rep` (BND zeroed) and then closes."""
    sock.settimeout(timeout or scaled(5))
    got, host, port, raw = read_reply(sock)
    assert got == rep, f"expected REP {rep:#04x}, got {got:#04x} ({raw!r})"
    assert port == 0 and host in ("0.0.0.0", "::"), f"error reply carries a BND: {raw!r}"
    rest = read_until_closed(sock, scaled(3))
    assert rest == b"", f"bytes after an error reply: {rest!r}"


def closed_port(host="127.0.0.1"):
    """A port nothing listens on, kept reserved by a bound, non-listening
    socket (connecting to it is refused)."""
    return bind_socket(host)


# ---------------------------------------------------------------- REP 0x00


def test_connect_success_reports_outbound_local_address_as_bnd(srv, target):
    with srv.connect() as c:
        rep, host, port, raw = handshake(c, *target.addr)
        assert rep == 0x00
        assert raw[3] == 0x01, "BND of an IPv4 connection must be ATYP 1"
        assert host == "127.0.0.1" and port != 0
        t = target.accept()
        # BND is the proxy's outbound socket: what the target sees as its peer.
        assert t.getpeername() == (host, port)
        c.sendall(b"ping")
        assert recv_exact(t, 4) == b"ping"
        t.sendall(b"pong")
        assert recv_exact(c, 4) == b"pong"


def test_connect_to_ipv6_target_reports_ipv6_bnd(srv, target6):
    with srv.connect() as c:
        rep, host, port, raw = handshake(c, *target6.addr)
        assert rep == 0x00
        assert raw[3] == 0x04 and host == "::1" and port != 0
        t = target6.accept()
        assert t.getpeername()[:2] == (host, port)


def test_connect_by_domain_localhost_succeeds(srv, echo):
    with srv.connect() as c:
        rep, *_ = handshake(c, "localhost", echo.port)
        assert rep == 0x00
        c.sendall(b"hello")
        assert recv_exact(c, 5) == b"hello"


# ---------------------------------------------------------------- error replies


def test_nonexistent_name_gets_host_unreachable_0x04(socks5d):
    # No internet here: the .invalid name (RFC 6761) never resolves. Whether
    # the resolver answers NXDOMAIN or does not answer, the reply is 0x04
    # no later than the connect timeout.
    srv = socks5d("--auth", "none", "--timeout-connect", "2s")
    with srv.connect() as c:
        t0 = time.monotonic()
        c.sendall(greeting() + request("nonexistent.invalid", 80))
        assert recv_exact(c, 2) == b"\x05\x00"
        expect_error_reply(c, 0x04, timeout=2 + scaled(3))
        assert time.monotonic() - t0 < 2 + scaled(3)
    (line,) = srv.wait_access(1)
    assert line["rep"] == "4" and line["dst"] == "nonexistent.invalid:80"


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "localhost"])
def test_closed_port_gets_connection_refused_0x05(srv, host):
    # For localhost both ::1 and 127.0.0.1 are tried; both refuse.
    fam_host = "::1" if host == "::1" else "127.0.0.1"
    with closed_port(fam_host) as hole, srv.connect() as c:
        c.sendall(greeting() + request(host, hole.getsockname()[1]))
        assert recv_exact(c, 2) == b"\x05\x00"
        expect_error_reply(c, 0x05)


def test_unanswered_connect_gets_ttl_expired_0x06_at_connect_timeout(socks5d):
    srv = socks5d("--auth", "none", "--timeout-connect", "1s")
    lsock, filler = full_backlog_listener()
    try:
        with srv.connect() as c:
            c.sendall(greeting())
            assert recv_exact(c, 2) == b"\x05\x00"
            t0 = time.monotonic()
            c.sendall(request(*lsock.getsockname()))
            expect_error_reply(c, 0x06, timeout=1 + scaled(3))
            elapsed = time.monotonic() - t0
            assert 0.9 <= elapsed < 1 + scaled(2), f"0x06 after {elapsed:.2f}s, timeout is 1s"
        (line,) = srv.wait_access(1)
        assert line["rep"] == "6"
    finally:
        filler.close()
        lsock.close()


@pytest.mark.parametrize("dst", ["192.0.2.1", "2001:db8::1"], ids=["ipv4", "ipv6"])
def test_no_route_gets_network_unreachable_0x03(socks5d, netns, dst):
    # This machine has default routes for both families, so an unroutable
    # address would leave the machine. Instead the server runs in a private
    # network namespace that has only loopback: there connect() fails at
    # once with ENETUNREACH, and nothing can be sent anywhere.
    srv = socks5d("--auth", "none", netns=netns)
    with srv.connect() as c:
        c.sendall(greeting() + request(dst, 80))
        assert recv_exact(c, 2) == b"\x05\x00"
        expect_error_reply(c, 0x03)


@pytest.mark.parametrize("route,rep", [("unreachable", 0x04), ("prohibit", 0x01)])
def test_kernel_route_type_decides_the_reply(socks5d, netns, route, rep):
    # In a private namespace, an `unreachable` route makes connect() fail with
    # EHOSTUNREACH (host unreachable, 0x04) and a `prohibit` route with EACCES,
    # which is no ruleset of socks5d's and no RFC cause: general failure, 0x01.
    subprocess.run(netns.exec_prefix + ["ip", "route", "add", route, "192.0.2.0/24"],
                   check=True, capture_output=True)
    srv = socks5d("--auth", "none", netns=netns)
    with srv.connect() as c:
        c.sendall(greeting() + request("192.0.2.7", 80))
        assert recv_exact(c, 2) == b"\x05\x00"
        expect_error_reply(c, rep)
    (line,) = srv.wait_access(1)
    assert line["rep"] == str(rep)


def test_rule_refusal_gets_not_allowed_0x02_other_targets_pass(socks5d, target, echo):
    srv = socks5d("--auth", "none", "--rule", f"deny to 127.0.0.1 port {target.port}",
                  "--rule", "allow")
    with srv.connect() as c:
        c.sendall(greeting() + request(*target.addr))
        assert recv_exact(c, 2) == b"\x05\x00"
        expect_error_reply(c, 0x02)
    target.lsock.settimeout(0.2)
    with pytest.raises(socket.timeout):
        target.lsock.accept()  # refused before any connect
    with srv.connect() as c:
        assert handshake(c, *echo.addr)[0] == 0


def test_name_resolving_only_to_denied_addresses_gets_0x02(socks5d, echo):
    srv = socks5d("--auth", "none", "--rule", "deny to 127.0.0.0/8,::1", "--rule", "allow")
    with srv.connect() as c:
        c.sendall(greeting() + request("localhost", echo.port))
        assert recv_exact(c, 2) == b"\x05\x00"
        expect_error_reply(c, 0x02)


@pytest.mark.parametrize("cmd", [0x00, 0x04, 0x7F, 0xFF])
def test_unknown_command_gets_0x07_then_close(srv, echo, cmd):
    with srv.connect() as c:
        c.sendall(greeting() + request(*echo.addr, cmd=cmd))
        assert recv_exact(c, 2) == b"\x05\x00"
        expect_error_reply(c, 0x07)


@pytest.mark.parametrize("atyp", [0x00, 0x02, 0x05, 0xFF])
def test_unknown_address_type_gets_0x08_then_close(srv, atyp):
    with srv.connect() as c:
        c.sendall(greeting() + bytes([5, 1, 0, atyp]) + b"\x7f\x00\x00\x01\x00\x50")
        assert recv_exact(c, 2) == b"\x05\x00"
        expect_error_reply(c, 0x08)


@pytest.mark.parametrize("ver", [0x04, 0x00, 0x06])
def test_bad_request_version_gets_general_failure_0x01(srv, target, ver):
    with srv.connect() as c:
        c.sendall(greeting() + request(*target.addr, ver=ver))
        assert recv_exact(c, 2) == b"\x05\x00"
        expect_error_reply(c, 0x01)
    # The bad request was not acted on.
    target.lsock.settimeout(0.2)
    with pytest.raises(socket.timeout):
        target.lsock.accept()


def test_zero_length_domain_gets_general_failure_0x01(srv):
    with srv.connect() as c:
        c.sendall(greeting() + b"\x05\x01\x00\x03\x00\x00\x50")
        assert recv_exact(c, 2) == b"\x05\x00"
        expect_error_reply(c, 0x01)


# ---------------------------------------------------------------- greeting


@pytest.mark.parametrize("msg", [b"\x04\x01\x00", b"\x04\x01\x00\x50\x7f\x00\x00\x01\x00",
                                 b"\x00\x01\x00", b"GET / HTTP/1.0\r\n\r\n"],
                         ids=["socks4-like", "socks4-connect", "ver0", "http"])
def test_greeting_with_wrong_version_is_closed_without_reply(srv, msg):
    with srv.connect() as c:
        c.sendall(msg)
        assert_closed_without_data(c)


def test_greeting_with_zero_methods_is_closed_without_reply(srv):
    with srv.connect() as c:
        c.sendall(b"\x05\x00")
        assert_closed_without_data(c)


def test_no_acceptable_method_gets_05ff_then_close(srv):
    with srv.connect() as c:
        c.sendall(greeting((0x01, 0x02, 0x80)))  # GSSAPI, userpass, private: not none
        assert read_until_closed(c, scaled(3)) == b"\x05\xff"


def test_userpass_required_but_client_offers_only_none_gets_05ff(auth_srv):
    with auth_srv.connect() as c:
        c.sendall(greeting((0x00,)))
        assert read_until_closed(c, scaled(3)) == b"\x05\xff"


# ---------------------------------------------------------------- RFC 1929


def test_userpass_success_then_connect(auth_srv, echo):
    with auth_srv.connect() as c:
        rep, *_ = handshake(c, *echo.addr, auth=ALICE)
        assert rep == 0
        c.sendall(b"authenticated")
        assert recv_exact(c, 13) == b"authenticated"
    (line,) = auth_srv.wait_access(1)
    assert line["user"] == "alice"


@pytest.mark.parametrize("user,password", [("alice", "wrong"), ("alice", "secret "),
                                           ("mallory", "secret"), ("ALICE", "secret")],
                         ids=["wrong-password", "password-with-extra-space", "unknown-user",
                              "user-name-case"])
def test_failed_userpass_gets_0101_then_close(auth_srv, user, password):
    with auth_srv.connect() as c:
        c.sendall(greeting((0x02,)))
        assert recv_exact(c, 2) == b"\x05\x02"
        c.sendall(userpass(user, password))
        assert read_until_closed(c, scaled(5)) == b"\x01\x01"


@pytest.mark.parametrize("msg", [b"\x05\x05alice\x06secret", b"\x01\x00\x06secret",
                                 b"\x01\x05alice\x00"],
                         ids=["auth-version-5", "empty-user", "empty-password"])
def test_malformed_userpass_gets_0101_then_close(auth_srv, msg):
    with auth_srv.connect() as c:
        c.sendall(greeting((0x02,)))
        assert recv_exact(c, 2) == b"\x05\x02"
        c.sendall(msg)
        assert read_until_closed(c, scaled(5)) == b"\x01\x01"


def test_failed_auth_followed_by_pipelined_request_never_connects(auth_srv, target):
    with auth_srv.connect() as c:
        c.sendall(greeting((0x02,)) + userpass("alice", "wrong") + request(*target.addr))
        assert read_until_closed(c, scaled(5)) == b"\x05\x02\x01\x01"
    target.lsock.settimeout(0.3)
    with pytest.raises(socket.timeout):
        target.lsock.accept()


@pytest.mark.parametrize("order,offered,chosen", [
    ("userpass,none", (0x00, 0x02), 0x02),
    ("userpass,none", (0x02, 0x00), 0x02),
    ("userpass,none", (0x00,), 0x00),
    ("none,userpass", (0x02, 0x00), 0x00),
    ("none,userpass", (0x02,), 0x02),
])
def test_method_choice_follows_server_preference_order(socks5d, users_file, echo, order,
                                                       offered, chosen):
    srv = socks5d("--auth", order, "--users", users_file)
    with srv.connect() as c:
        c.sendall(greeting(offered))
        assert recv_exact(c, 2) == bytes([5, chosen])
        if chosen == 0x02:
            c.sendall(userpass(*ALICE))
            assert recv_exact(c, 2) == b"\x01\x00"
        c.sendall(request(*echo.addr))
        rep, *_ = read_reply(c)
        assert rep == 0
        c.sendall(b"x")
        assert recv_exact(c, 1) == b"x"


# ---------------------------------------------------------------- framing


def send_bytewise(sock, data, pause=0.005):
    for i in range(len(data)):
        sock.sendall(data[i:i + 1])
        time.sleep(pause)  # the point of this test: each byte in its own segment


def test_handshake_sent_one_byte_at_a_time(srv, echo):
    with srv.connect() as c:
        send_bytewise(c, greeting((0x80, 0x00)))
        assert recv_exact(c, 2) == b"\x05\x00"
        send_bytewise(c, request("localhost", echo.port))
        rep, *_ = read_reply(c)
        assert rep == 0
        c.sendall(b"bytewise")
        assert recv_exact(c, 8) == b"bytewise"


def test_userpass_handshake_sent_one_byte_at_a_time(auth_srv, echo):
    with auth_srv.connect() as c:
        send_bytewise(c, greeting((0x02,)))
        assert recv_exact(c, 2) == b"\x05\x02"
        send_bytewise(c, userpass(*ALICE))
        assert recv_exact(c, 2) == b"\x01\x00"
        send_bytewise(c, request(*echo.addr))
        rep, *_ = read_reply(c)
        assert rep == 0


def http_get(host, port):
    return f"GET /early HTTP/1.0\r\nHost: {host}:{port}\r\n\r\n".encode()


def check_http_response(data):
    head, sep, body = data.partition(b"\r\n\r\n")
    assert sep, f"no HTTP response: {data[:200]!r}"
    assert head.startswith(b"HTTP/1.0 200") or head.startswith(b"HTTP/1.1 200"), head
    assert body == HTTP_BODY


def test_pipelined_greeting_request_and_early_data_in_one_send(srv, http_servers):
    with srv.connect() as c:
        req = http_get("127.0.0.1", http_servers.port)
        c.sendall(greeting() + request("127.0.0.1", http_servers.port) + req)
        assert recv_exact(c, 2) == b"\x05\x00"
        rep, *_ = read_reply(c)
        assert rep == 0
        check_http_response(read_until_closed(c, scaled(10)))
    (line,) = srv.wait_access(1)
    assert line["up"] == str(len(req))


def test_pipelined_userpass_handshake_and_early_data_in_one_send(auth_srv, http_servers):
    with auth_srv.connect() as c:
        req = http_get("localhost", http_servers.port)
        c.sendall(greeting((0x02,)) + userpass(*ALICE) + request("localhost", http_servers.port)
                  + req)
        assert recv_exact(c, 4) == b"\x05\x02\x01\x00"
        rep, *_ = read_reply(c)
        assert rep == 0
        check_http_response(read_until_closed(c, scaled(10)))
    (line,) = auth_srv.wait_access(1)
    assert line["user"] == "alice" and line["up"] == str(len(req))


def test_request_followed_by_fin_is_still_served(srv, echo):
    # A client may send its whole request and half-close at once.
    with srv.connect() as c:
        c.sendall(greeting() + request(*echo.addr) + b"last words")
        c.shutdown(socket.SHUT_WR)
        data = read_until_closed(c, scaled(5))
    assert data[:2] == b"\x05\x00"
    assert data[2:6] == b"\x05\x00\x00\x01", data[2:12]
    assert data[12:] == b"last words"


def test_pipelined_handshake_with_1mib_early_data_arrives_intact(srv, echo):
    # More early data than one handshake buffer holds: the rest must follow
    # from the socket once the relay starts, in order.
    payload = os.urandom(1 << 20)
    with srv.connect() as c:
        c.settimeout(scaled(20))
        sender = threading.Thread(
            target=lambda: c.sendall(greeting() + request(*echo.addr) + payload))
        sender.start()
        assert recv_exact(c, 2) == b"\x05\x00"
        rep, *_ = read_reply(c)
        assert rep == 0
        got = recv_exact(c, len(payload))
        sender.join(scaled(20))
        assert got == payload


def test_cached_credentials_still_check_the_password(socks5d, users_file, echo):
    # One worker, so the second and third sessions meet the first one's
    # verification cache.
    srv = socks5d("--auth", "userpass", "--users", users_file, "-w", "1")
    with srv.connect() as c:
        assert handshake(c, *echo.addr, auth=ALICE)[0] == 0
    # A cache hit, with the request and early data pipelined behind it.
    with srv.connect() as c:
        c.sendall(greeting((0x02,)) + userpass(*ALICE) + request(*echo.addr) + b"cached")
        assert recv_exact(c, 4) == b"\x05\x02\x01\x00"
        assert read_reply(c)[0] == 0
        assert recv_exact(c, 6) == b"cached"
    # The cache never lets a wrong password through.
    with srv.connect() as c:
        c.sendall(greeting((0x02,)) + userpass("alice", "secreT") + request(*echo.addr))
        assert read_until_closed(c, scaled(5)) == b"\x05\x02\x01\x01"
