"""The metrics endpoint follows Prometheus conventions: the standard
process_* metrics with the values /proc gives, the time of the last good
configuration load, HEAD and query strings on /healthz and /metrics, output
that `promtool check metrics` accepts, and the alerting rules and Grafana
dashboard in packaging/ that name only metrics the server exports."""
import json
import os
import re
import signal
import socket
import subprocess
import time

from harness import (REPO, USERS, echo_roundtrip, free_port, handshake, open_tunnel,
                     read_until_closed, scaled, wait_until)
from ops_support import ops  # noqa: F401  (the fixture)
from ops_support import curl, http_raw, metric, parse_metrics, scrape

ALERTS = REPO / "packaging" / "prometheus-alerts.yml"
DASHBOARD = REPO / "packaging" / "grafana-dashboard.json"


def start(ops, extra=()):
    def conf(ports):
        return [f"listen 127.0.0.1:{ports[0]}", f"metrics 127.0.0.1:{ports[1]}", "auth none",
                "max-sessions 1000", *extra]

    srv, ports, path = ops.start_conf(conf, nports=2,
                                      listen=lambda ports: [f"127.0.0.1:{ports[0]}"])
    return srv, ports[1], path, conf(ports)


def reload(srv, path, lines, what):
    n = srv.count(what)
    path.write_text("\n".join(lines) + "\n")
    srv.signal(signal.SIGHUP)
    srv.wait_log(what, count=n + 1, timeout=scaled(10))


def proc_start_time(pid):
    btime = next(int(l.split()[1]) for l in open("/proc/stat") if l.startswith("btime "))
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return btime + int(fields[19]) / os.sysconf("SC_CLK_TCK")


def test_process_metrics_match_proc(ops, echo):
    srv, mport, _, _ = start(ops)
    tunnels = [open_tunnel(srv, *echo.addr) for _ in range(5)]
    m = parse_metrics(scrape(mport))
    fds = len(os.listdir(f"/proc/{srv.pid}/fd"))
    soft = int(re.search(r"^Max open files\s+(\d+)", open(f"/proc/{srv.pid}/limits").read(),
                         re.M).group(1))
    rss = int(re.search(r"^VmRSS:\s+(\d+) kB", open(f"/proc/{srv.pid}/status").read(),
                        re.M).group(1)) * 1024
    # The five tunnels (two descriptors each) are among the open ones.
    assert fds - 2 <= metric(m, "process_open_fds") <= fds + 2 and fds >= 10
    assert metric(m, "process_max_fds") == soft
    assert abs(metric(m, "process_start_time_seconds") - proc_start_time(srv.pid)) < 0.05
    assert 0.5 * rss < metric(m, "process_resident_memory_bytes") < 2 * rss
    cpu0 = metric(m, "process_cpu_seconds_total")
    for s in tunnels:
        for _ in range(50):
            assert echo_roundtrip(s, b"x" * 65536) == b"x" * 65536
        s.close()
    cpu1 = metric(parse_metrics(scrape(mport)), "process_cpu_seconds_total")
    assert 0 < cpu0 < cpu1


def test_reload_timestamp_moves_only_on_success(ops):
    srv, mport, path, good = start(ops)
    before = time.time()

    def stamp():
        return metric(parse_metrics(scrape(mport)),
                      "socks5d_config_last_reload_success_timestamp_seconds")

    started = stamp()
    assert proc_start_time(srv.pid) - 1 <= started <= before
    reload(srv, path, good + ["frobnicate 1"], "reload failed")
    assert stamp() == started
    reload(srv, path, good + ["timeout idle 2m"], "configuration reloaded")
    reloaded = stamp()
    assert before <= reloaded <= time.time()
    reload(srv, path, good + ["listen 127.0.0.1:99999"], "reload failed")
    assert stamp() == reloaded


def test_head_and_query_strings(ops):
    # drain-delay: /healthz answers 503 for a while before the process exits.
    srv, mport, _, _ = start(ops, ["drain-delay 2s"])
    base = f"http://127.0.0.1:{mport}"
    assert curl(base + "/healthz?probe=lb&t=1") == (200, b"ok\n")
    code, body = curl(base + "/metrics?name[]=up")
    assert code == 200 and b"process_start_time_seconds" in body
    assert curl(base + "/nope?x=/metrics")[0] == 404
    head = http_raw(mport, b"HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 200 OK\r\n") and head.endswith(b"\r\n\r\n"), head
    assert b"Content-Length: 3\r\n" in head
    head = http_raw(mport, b"HEAD /metrics?x HTTP/1.1\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 200 OK\r\n") and head.endswith(b"\r\n\r\n"), head
    assert b"# TYPE" not in head
    assert http_raw(mport, b"PUT /healthz HTTP/1.0\r\n\r\n").startswith(
        b"HTTP/1.0 405 Method Not Allowed\r\n")
    srv.signal(signal.SIGTERM)
    # Draining: HEAD gives the 503 a load balancer probing with HEAD needs.
    wait_until(lambda: b" 503 " in http_raw(mport, b"HEAD /healthz HTTP/1.0\r\n\r\n")
               .split(b"\r\n")[0], scaled(5), what="HEAD /healthz 503 while draining")
    srv.wait(scaled(10))


def test_promtool_accepts_the_exposition(ops, echo):
    srv, mport, _, _ = start(ops)
    with open_tunnel(srv, *echo.addr) as s:
        assert echo_roundtrip(s, b"ping") == b"ping"
    text = scrape(mport)
    r = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr


def test_alerting_rules_pass_promtool():
    r = subprocess.run(["promtool", "check", "rules", str(ALERTS)], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 0 and "SUCCESS" in r.stdout, r.stdout + r.stderr


def exported_names(text):
    names = set(re.findall(r"^# TYPE (\S+) (\S+)", text, re.M))
    out = {"up"}
    for name, kind in names:
        out.add(name)
        if kind == "histogram":
            out |= {name + "_bucket", name + "_sum", name + "_count"}
    return out


def test_rules_and_dashboard_name_only_exported_metrics(ops):
    srv, mport, _, _ = start(ops)
    exported = exported_names(scrape(mport))
    dash = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    exprs += re.findall(r"^\s+expr: (.+)$", ALERTS.read_text(), re.M)
    exprs += [re.sub(r"\s+", " ", e) for e in re.findall(r"expr: \|\n((?:\s{10}.*\n)+)",
                                                         ALERTS.read_text())]
    used = {n for e in exprs for n in re.findall(r"\b((?:socks5d|process)_\w+|up)\b", e)}
    assert used and used <= exported, sorted(used - exported)
    assert {"socks5d_config_last_reload_success_timestamp_seconds", "process_open_fds",
            "socks5d_sessions_active"} <= used


def test_connections_are_counted_per_listener_across_reloads(ops, echo):
    def conf(ports, third=False):
        lines = [f"listen 127.0.0.1:{ports[0]}", f"listen 127.0.0.1:{ports[1]}",
                 f"metrics 127.0.0.1:{ports[2]}", "auth none", "max-sessions 1000"]
        return lines + ([f"listen 127.0.0.1:{ports[3]}"] if third else [])

    srv, ports, path = ops.start_conf(conf, nports=4,
                                      listen=lambda p: [f"127.0.0.1:{p[0]}", f"127.0.0.1:{p[1]}"])
    a, b, mport, c = ports

    def counts():
        m = parse_metrics(scrape(mport))
        return {p: metric(m, "socks5d_listener_connections_total", listener=f"127.0.0.1:{p}")
                for p in (a, b, c)}

    def tunnel_via(port):
        s = socket.create_connection(("127.0.0.1", port), timeout=scaled(5))
        s.sendall(b"\x05\x01\x00")
        assert s.recv(2) == b"\x05\x00"
        s.close()

    for _ in range(3):
        tunnel_via(a)
    for _ in range(2):
        tunnel_via(b)
    wait_until(lambda: counts() == {a: 3, b: 2, c: 0}, scaled(5), what="3 and 2 connections")
    reload(srv, path, conf(ports, third=True), "configuration reloaded")
    tunnel_via(c)
    tunnel_via(a)
    wait_until(lambda: counts() == {a: 4, b: 2, c: 1}, scaled(5), what="4, 2 and 1 connections")
    reload(srv, path, conf(ports), "configuration reloaded")
    # A listener that is gone keeps its count: counters never go down.
    assert counts() == {a: 4, b: 2, c: 1}


def test_open_sessions_and_handshake_failures_are_counted_per_listener(ops, echo):
    """Which listener carries the load and which one's clients fail their
    handshake (a balancer without PROXY headers, a scanned public address):
    the gauge and the failures carry the accepting listener's label."""
    def conf(ports):
        return [f"listen 127.0.0.1:{ports[0]}", f"listen 127.0.0.1:{ports[1]}",
                f"metrics 127.0.0.1:{ports[2]}", "auth none", "max-sessions 1000"]

    srv, ports, _ = ops.start_conf(conf, nports=3,
                                   listen=lambda p: [f"127.0.0.1:{p[0]}", f"127.0.0.1:{p[1]}"])
    a, b, mport = ports

    def by_listener():
        m = parse_metrics(scrape(mport))
        return {name: {p: metric(m, f"socks5d_listener_{name}", listener=f"127.0.0.1:{p}")
                       for p in (a, b)}
                for name in ("sessions_active", "handshake_failures_total")}

    def tunnel_via(port):
        s = socket.create_connection(("127.0.0.1", port), timeout=scaled(5))
        assert handshake(s, *echo.addr)[0] == 0
        return s

    tunnels = [tunnel_via(a), tunnel_via(a), tunnel_via(b)]
    for _ in range(2):
        with socket.create_connection(("127.0.0.1", b), timeout=scaled(5)) as s:
            s.sendall(b"\x07\x01\x00")  # not SOCKS
            assert read_until_closed(s, scaled(5)) == b""
    wait_until(lambda: by_listener() == {"sessions_active": {a: 2, b: 1},
                                         "handshake_failures_total": {a: 0, b: 2}},
               scaled(5), what="2 and 1 open, 0 and 2 failed")
    assert metric(parse_metrics(scrape(mport)), "socks5d_sessions_active") == 3
    for s in tunnels:
        s.close()
    wait_until(lambda: by_listener()["sessions_active"] == {a: 0, b: 0}, scaled(5),
               what="no session open on either listener")


def test_per_user_counters_are_capped_and_off_by_default(socks5d, users_file, echo):
    mport = free_port()
    srv = socks5d("--users", users_file, "--metrics", str(mport), "--metrics-users", "1")
    alice = [open_tunnel(srv, *echo.addr, auth=("alice", USERS["alice"])) for _ in range(3)]
    bob = open_tunnel(srv, *echo.addr, auth=("bob", USERS["bob"]))
    for s in alice + [bob]:
        assert echo_roundtrip(s, b"z" * 1000) == b"z" * 1000
    m = parse_metrics(scrape(mport))
    assert metric(m, "socks5d_user_sessions_total", user="alice") == 3
    assert metric(m, "socks5d_user_sessions_active", user="alice") == 3
    # One user's worth of series: bob is counted under the overflow label.
    assert metric(m, "socks5d_user_sessions_active", user="_other") == 1
    assert not [k for k in m if ("user", "bob") in k[1]]
    alice[0].close()
    wait_until(lambda: metric(parse_metrics(scrape(mport)), "socks5d_user_bytes_total",
                              user="alice", direction="up") == 1000, scaled(5),
               what="alice's bytes after her first tunnel ended")
    text = scrape(mport)
    r = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr
    for s in alice[1:] + [bob]:
        s.close()
    # Without the option no per-user series exist at all.
    mport2 = free_port()
    srv2 = socks5d("--users", users_file, "--metrics", str(mport2))
    with open_tunnel(srv2, *echo.addr, auth=("alice", USERS["alice"])):
        assert "socks5d_user_" not in scrape(mport2)
