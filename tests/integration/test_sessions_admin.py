"""The live session list on the metrics address: GET /sessions (JSON: id,
client, user, destination, bytes, age in ms, across all workers) and POST
/sessions/close?id=N or ?user=NAME, which ends one session or all of a
user's. Each worker answers about its own sessions through its mailbox.
Only loopback clients may use either by default. Attacker tests: another
address, malformed and ambiguous queries, parallel and abandoned requests
while tunnels open and close."""
import json
import socket
import subprocess
import threading
import time

from harness import (NetNS, USERS, echo_roundtrip, free_port, open_tunnel, read_until_closed,
                     scaled, wait_until)
from ops_support import curl, http_raw


def start(socks5d, users_file, *extra, netns=None, metrics_host="127.0.0.1"):
    mport = free_port()
    srv = socks5d("--users", users_file, "-w", "2", "--metrics", f"{metrics_host}:{mport}",
                  *extra, netns=netns)
    return srv, mport


def sessions(mport):
    code, body = curl(f"http://127.0.0.1:{mport}/sessions")
    assert code == 200, (code, body)
    return json.loads(body)["sessions"]


def close(mport, query):
    code, body = curl(f"http://127.0.0.1:{mport}/sessions/close?{query}", "-X", "POST")
    assert code == 200, (code, body)
    return json.loads(body)["closed"]


def tunnels_of(srv, echo, user, n):
    out = []
    for _ in range(n):
        s = open_tunnel(srv, *echo.addr, auth=(user, USERS[user]))
        assert echo_roundtrip(s, b"x" * 1000) == b"x" * 1000
        out.append(s)
    return out


def is_open(s):
    try:
        return echo_roundtrip(s, b"still") == b"still"
    except OSError:
        return False


def closed_by_server(s):
    return read_until_closed(s, scaled(5)) == b""


def by_user(listed):
    out = {}
    for e in listed:
        out.setdefault(e["user"], []).append(e)
    return out


def test_list_shows_every_workers_sessions_with_their_fields(socks5d, users_file, echo):
    srv, mport = start(socks5d, users_file)
    alice = tunnels_of(srv, echo, "alice", 6)
    bob = tunnels_of(srv, echo, "bob", 2)
    listed = sessions(mport)
    assert len(listed) == 8, listed
    users = by_user(listed)
    assert len(users["alice"]) == 6 and len(users["bob"]) == 2
    ids = {e["id"] for e in listed}
    assert len(ids) == 8
    # Sessions from both workers: the id carries the worker's number.
    assert len({int(i) >> 40 for i in ids}) == 2, ids
    clients = {s.getsockname()[1] for s in alice + bob}
    for e in listed:
        host, port = e["client"].rsplit(":", 1)
        assert host == "127.0.0.1" and int(port) in clients
        assert e["cmd"] == "connect" and e["dst"] == f"127.0.0.1:{echo.addr[1]}"
        assert e["rep"] == "0"
        assert int(e["up"]) == 1000 and int(e["down"]) == 1000
        assert 0 <= int(e["ms"]) < scaled(30) * 1000
    time.sleep(0.05)
    later = {e["id"]: int(e["ms"]) for e in sessions(mport)}
    assert all(later[e["id"]] >= int(e["ms"]) + 50 for e in listed)
    for s in alice + bob:
        s.close()
    wait_until(lambda: sessions(mport) == [], scaled(5), what="an empty session list")


def test_close_one_session_by_id(socks5d, users_file, echo):
    srv, mport = start(socks5d, users_file)
    tunnels = tunnels_of(srv, echo, "alice", 4)
    port_of = {s.getsockname()[1]: s for s in tunnels}
    victim = sessions(mport)[0]
    assert close(mport, f"id={victim['id']}") == 1
    gone = port_of[int(victim["client"].rsplit(":", 1)[1])]
    assert closed_by_server(gone)
    assert all(is_open(s) for s in tunnels if s is not gone)
    assert victim["id"] not in {e["id"] for e in sessions(mport)}
    assert close(mport, f"id={victim['id']}") == 0
    srv_log = wait_until(lambda: "closed by the operator" in srv.log() and srv.log(), scaled(5))
    assert "metrics: 1 session of id " in srv_log
    line = [l for l in srv.access_lines() if l.get("error") == "closed by the operator"]
    assert len(line) == 1 and line[0]["user"] == "alice"


def test_close_all_of_a_users_sessions_across_workers(socks5d, users_file, echo):
    srv, mport = start(socks5d, users_file)
    alice = tunnels_of(srv, echo, "alice", 8)
    bob = tunnels_of(srv, echo, "bob", 3)
    assert close(mport, "user=alice") == 8
    assert all(closed_by_server(s) for s in alice)
    assert all(is_open(s) for s in bob)
    assert set(by_user(sessions(mport))) == {"bob"}
    # A name with the bytes of another user's name, percent-encoded.
    assert close(mport, "user=b%6fb") == 3
    assert all(closed_by_server(s) for s in bob)
    assert "metrics: 8 sessions of user alice closed" in srv.log()


def test_malformed_and_ambiguous_requests_close_nothing(socks5d, users_file, echo):
    srv, mport = start(socks5d, users_file)
    tunnels = tunnels_of(srv, echo, "alice", 2)
    some_id = sessions(mport)[0]["id"]
    base = f"http://127.0.0.1:{mport}"
    for q in ["", "?", "?id=", "?id=0", "?id=abc", f"?id={some_id}x", f"?id=-{some_id}",
              f"?id={some_id}&user=alice", "?user=al%zzice", "?user=al%00ice", "?user=" + "a" * 256,
              "?users=alice", "?ID=" + some_id]:
        code, body = curl(base + "/sessions/close" + q, "-X", "POST")
        assert code == 400, (q, code, body)
    assert curl(base + "/sessions/close?user=" + "%61" * 400, "-X", "POST")[0] == 414
    assert curl(base + "/sessions/close?user=alice")[0] == 405  # GET must not close
    assert curl(base + "/sessions", "-X", "POST")[0] == 405
    assert curl(base + "/sessions", "-X", "DELETE")[0] == 405
    assert all(is_open(s) for s in tunnels)
    assert len(sessions(mport)) == 2


def test_only_loopback_clients_may_list_or_close(socks5d, users_file, echo):
    ns = NetNS()
    try:
        subprocess.run(ns.exec_prefix + ["ip", "addr", "add", "10.77.0.1/32", "dev", "lo"],
                       check=True, capture_output=True, timeout=10)
        srv, mport = start(socks5d, users_file, netns=ns, metrics_host="0.0.0.0")
        s = srv.connect()
        s.sendall(b"\x05\x01\x02")
        assert s.recv(2) == b"\x05\x02"

        def ask(src, req):
            c = ns.socket()
            c.settimeout(scaled(5))
            c.bind((src, 0))
            c.connect((src, mport))
            c.sendall(req)
            out = b""
            while True:
                chunk = c.recv(65536)
                if not chunk:
                    break
                out += chunk
            c.close()
            return out

        for req in (b"GET /sessions HTTP/1.0\r\n\r\n",
                    b"POST /sessions/close?user=alice HTTP/1.0\r\n\r\n",
                    b"POST /sessions/close?id=1099511627777 HTTP/1.0\r\n\r\n"):
            assert ask("10.77.0.1", req).startswith(b"HTTP/1.0 403 "), req
        # /metrics and /healthz stay open to the network.
        assert ask("10.77.0.1", b"GET /healthz HTTP/1.0\r\n\r\n").startswith(b"HTTP/1.0 200 ")
        answer = ask("127.0.0.1", b"GET /sessions HTTP/1.0\r\n\r\n")
        assert answer.startswith(b"HTTP/1.0 200 ") and b'"user":"-"' in answer, answer
        s.close()
    finally:
        ns.close()


def test_parallel_and_abandoned_requests_during_churn(socks5d, users_file, echo):
    srv, mport = start(socks5d, users_file)
    stop = threading.Event()
    errors = []

    def churn():
        try:
            while not stop.is_set():
                s = open_tunnel(srv, *echo.addr, auth=("bob", USERS["bob"]))
                echo_roundtrip(s, b"y")
                s.close()
        except Exception as e:  # noqa: BLE001 (reported below)
            errors.append(repr(e))

    keep = tunnels_of(srv, echo, "alice", 3)
    t = threading.Thread(target=churn)
    t.start()
    try:
        deadline = time.monotonic() + scaled(3)
        rounds = 0
        while time.monotonic() < deadline and rounds < 40:
            # Abandoned: the request, then gone before the workers answer.
            a = socket.create_connection(("127.0.0.1", mport))
            a.sendall(b"GET /sessions HTTP/1.0\r\n\r\n")
            a.close()
            b = socket.create_connection(("127.0.0.1", mport))
            b.sendall(b"POST /sessions/close?user=nobody HTTP/1.0\r\n\r\n")
            b.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            b.close()
            answers = []
            workers = [threading.Thread(target=lambda: answers.append(
                http_raw(mport, b"GET /sessions HTTP/1.0\r\n\r\n"))) for _ in range(4)]
            for w in workers:
                w.start()
            for w in workers:
                w.join(scaled(10))
            assert len(answers) == 4
            for a_ in answers:
                head, _, body = a_.partition(b"\r\n\r\n")
                assert head.startswith(b"HTTP/1.0 200 "), a_[:200]
                listed = json.loads(body)["sessions"]
                assert sum(e["user"] == "alice" for e in listed) == 3
            rounds += 1
        assert rounds >= 5
    finally:
        stop.set()
        t.join(scaled(10))
    assert not errors, errors
    assert all(is_open(s) for s in keep)
    assert close(mport, "user=alice") == 3


def test_metrics_sessions_off_and_any(socks5d, users_file, echo):
    srv, mport = start(socks5d, users_file, "--metrics-sessions", "off")
    s = open_tunnel(srv, *echo.addr, auth=("alice", USERS["alice"]))
    base = f"http://127.0.0.1:{mport}"
    assert curl(base + "/sessions")[0] == 404
    assert curl(base + "/sessions/close?user=alice", "-X", "POST")[0] == 404
    assert is_open(s)
    assert curl(base + "/metrics")[0] == 200
    s.close()
    ns = NetNS()
    try:
        subprocess.run(ns.exec_prefix + ["ip", "addr", "add", "10.77.0.1/32", "dev", "lo"],
                       check=True, capture_output=True, timeout=10)
        srv, mport = start(socks5d, users_file, "--metrics-sessions", "any", netns=ns,
                           metrics_host="0.0.0.0")
        c = ns.socket()
        c.settimeout(scaled(5))
        c.bind(("10.77.0.1", 0))
        c.connect(("10.77.0.1", mport))
        c.sendall(b"GET /sessions HTTP/1.0\r\n\r\n")
        answer = read_until_closed(c, scaled(5))
        assert answer.startswith(b"HTTP/1.0 200 ") and b'{"sessions":[' in answer, answer
    finally:
        ns.close()
