"""The access log: exactly one line per session, with the documented fields
and byte counts that match the traffic."""
import re
import socket

import pytest

from harness import (USERS, bind_socket, greeting, open_tunnel, read_reply, read_until_closed,
                     recv_exact, request, scaled, userpass)

FIELDS = ["time", "client", "user", "cmd", "dst", "addr", "rep", "up", "down", "ms"]
TIME_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


def check_shape(line):
    keys = [k for k in line if not k.startswith("_")]
    assert keys[:len(FIELDS)] == FIELDS, f"fields out of order or missing: {line['_line']}"
    assert set(keys) - set(FIELDS) <= {"error"}, line["_line"]
    assert TIME_RE.match(line["time"]), line["time"]
    assert line["ms"].isdigit() and line["up"].isdigit() and line["down"].isdigit()


def exchange(c, t, up, down):
    c.sendall(up)
    assert recv_exact(t, len(up)) == up
    t.sendall(down)
    assert recv_exact(c, len(down)) == down


def test_one_line_per_session_with_fields_and_exact_byte_counts(socks5d, users_file, target,
                                                                  target6):
    srv = socks5d("--auth", "userpass,none", "--users", users_file)
    hole = bind_socket("127.0.0.1")  # bound, not listening: refused
    hole_port = hole.getsockname()[1]
    try:
        # 1. no auth, IPv4 literal
        c = open_tunnel(srv, *target.addr)
        c_port = c.getsockname()[1]
        t = target.accept()
        exchange(c, t, b"u" * 1000, b"d" * 3000)
        exchange(c, t, b"U" * 234, b"D" * 1)
        c.close()
        assert read_until_closed(t, scaled(5)) == b""
        t.close()
        # 2. userpass, domain name (localhost: [::1] is tried first)
        c2 = srv.connect()
        c2_port = c2.getsockname()[1]
        c2.sendall(greeting((0x02,)) + userpass("alice", USERS["alice"]) +
                   request("localhost", target6.port))
        assert recv_exact(c2, 4) == b"\x05\x02\x01\x00"
        assert read_reply(c2)[0] == 0
        t2 = target6.accept()
        exchange(c2, t2, b"x" * 77, b"y" * 12345)
        t2.close()
        assert read_until_closed(c2, scaled(5)) == b""
        c2.close()
        # 3. a refused connect
        c3 = srv.connect()
        c3_port = c3.getsockname()[1]
        c3.sendall(greeting() + request("127.0.0.1", hole_port))
        data = read_until_closed(c3, scaled(5))
        assert data[:4] == b"\x05\x00\x05\x05"
        c3.close()
    finally:
        hole.close()

    lines = srv.wait_access(3)
    # Give a stray extra line the chance to show up before counting.
    with pytest.raises(AssertionError):
        srv.wait_access(4, timeout=0.3)
    for line in lines:
        check_shape(line)
    by_port = {int(l["client"].rsplit(":", 1)[1]): l for l in lines}
    assert set(by_port) == {c_port, c2_port, c3_port}

    l1 = by_port[c_port]
    assert l1["client"] == f"127.0.0.1:{c_port}"
    assert l1["user"] == "-" and l1["cmd"] == "connect" and l1["rep"] == "0"
    assert l1["dst"] == f"127.0.0.1:{target.port}"
    assert l1["addr"] == f"127.0.0.1:{target.port}"
    assert (l1["up"], l1["down"]) == ("1234", "3001")
    assert "error" not in l1

    l2 = by_port[c2_port]
    assert l2["user"] == "alice" and l2["rep"] == "0"
    assert l2["dst"] == f"localhost:{target6.port}"
    assert l2["addr"] == f"[::1]:{target6.port}"
    assert (l2["up"], l2["down"]) == ("77", "12345")

    l3 = by_port[c3_port]
    assert l3["user"] == "-" and l3["rep"] == "5"
    assert l3["dst"] == f"127.0.0.1:{hole_port}"
    assert l3["addr"] == "-"
    assert (l3["up"], l3["down"]) == ("0", "0")
    assert l3.get("error"), "a failed session must say why"


def test_handshake_failures_are_logged_with_reason(socks5d, users_file):
    srv = socks5d("--auth", "userpass", "--users", users_file)
    with srv.connect() as c:  # wrong password
        c.sendall(greeting((0x02,)) + userpass("alice", "nope"))
        assert read_until_closed(c, scaled(5)) == b"\x05\x02\x01\x01"
    with srv.connect() as c:  # no acceptable method
        c.sendall(greeting((0x00,)))
        assert read_until_closed(c, scaled(5)) == b"\x05\xff"
    lines = srv.wait_access(2)
    for line in lines:
        check_shape(line)
        assert line["rep"] == "-" and line["dst"] == "-" and line["addr"] == "-"
        assert line["up"] == "0" and line["down"] == "0"
        assert line.get("error")


def test_quiet_flag_suppresses_access_log(socks5d, echo):
    srv = socks5d("--auth", "none", "-q")
    with open_tunnel(srv, *echo.addr) as s:
        s.sendall(b"shh")
        assert recv_exact(s, 3) == b"shh"
    # The session is over once the echo target saw it close; still no line.
    with open_tunnel(srv, *echo.addr) as s:
        s.sendall(b"x")
        assert recv_exact(s, 1) == b"x"
        s.shutdown(socket.SHUT_WR)
        assert read_until_closed(s, scaled(5)) == b""
    assert srv.access_lines() == []
