"""Operations: the config file (-c, -t, errors with file:line:column,
command-line overrides, durations and sizes), shutdown (drain, second signal,
/healthz), sd_notify, socket activation, log files (SIGUSR1 reopen, json,
off, -q), the metrics endpoint, and the packaging and documentation files.

Reload (SIGHUP) is in test_reload.py."""
import json
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import threading
import time
import urllib.parse
from pathlib import Path

import pytest

from harness import (HTTP_BODY, REPO, USERS, beyond_loopback_args, bind_socket, free_port,
                     greeting, open_tunnel, proxy_env, read_until_closed, recv_exact, scaled,
                     userpass, wait_until)
from ops_support import ops  # noqa: F401  (the fixture)
from ops_support import (NotifySocket, PortInUse, UdpEcho, connect_rep, connect_result, curl,
                         http_raw, idle_close_after, listening_ports, metric, parse_metrics,
                         port_bindable, refused, scrape, udp_associate, udp_roundtrips)

ALICE = ("alice", USERS["alice"])
BOB = ("bob", USERS["bob"])


def assert_echo(sock, msg):
    sock.sendall(msg)
    assert recv_exact(sock, len(msg)) == msg


def curl_via(proxy_port, url, user, timeout=None):
    """curl through the SOCKS5 proxy with a login; returns (exit code, body)."""
    name, password = user
    proxy = (f"socks5://{urllib.parse.quote(name, safe='')}:"
             f"{urllib.parse.quote(password, safe='')}@127.0.0.1:{proxy_port}")
    r = subprocess.run(["curl", "-sS", "--max-time", str(timeout or scaled(10)), "--proxy", proxy,
                        "-o", "-", url], capture_output=True, env=proxy_env(),
                       timeout=(timeout or scaled(10)) + 5)
    return r.returncode, r.stdout, r.stderr


# ====================================================================== config file


def test_config_file_with_include_serves_a_real_client(ops, users_file, http_servers, target):
    """listen/auth/users/timeouts/rules and an include (relative to the
    including file) in one config; curl gets through it with a login."""
    (ops.dir / "rules.d").mkdir()
    ops.conf([
        "# rules for the test (included)",
        f"deny to 127.0.0.1 port {target.port}   # a comment after a rule",
        "allow user alice",
        "deny",
    ], name="rules.d/access.conf")

    def render(ports):
        return [
            "# socks5d test configuration",
            "",
            f"listen 127.0.0.1:{ports[0]}",
            "auth userpass",
            f"users {users_file}",
            "timeout handshake 5s",
            "timeout-connect 3s",
            "timeout idle 30s",
            "\ttimeout udp 1m   # indented with a tab",
            "include rules.d/access.conf",
        ]

    srv, (port,), _ = ops.start_conf(render)
    url = f"http://127.0.0.1:{http_servers.port}/file"
    rc, body, err = curl_via(port, url, ALICE)
    assert rc == 0, f"curl through socks5d failed ({rc}): {err!r}\n{srv.log()}"
    assert body == HTTP_BODY
    # bob logs in fine but no rule allows him: the catch-all deny from the include.
    rc, body, err = curl_via(port, url, BOB)
    assert rc != 0 and body == b"", (rc, err)
    # The included deny rule wins over "allow user alice" for the target port.
    assert connect_rep(srv, *target.addr, auth=ALICE) == 2
    # Sessions are logged as they end, just after the client saw the reply.
    wait_until(lambda: any(l["user"] == "bob" and l["rep"] == "2" for l in srv.access_lines()),
               scaled(5), what="bob's refused session in the access log")
    denied = wait_until(lambda: [l for l in srv.access_lines()
                                 if l["dst"] == f"127.0.0.1:{target.port}"], scaled(5),
                        what="the denied CONNECT in the access log")
    assert denied[0]["rep"] == "2"
    assert "access.conf:2" in denied[0].get("rule", ""), denied[0]["_line"]


@pytest.mark.parametrize("flag", ["-t", "--check"])
def test_check_mode_prints_ok_exits_0_and_does_not_bind(ops, users_file, flag):
    # We hold the port (bound, not listening): a server that tried to bind it
    # would fail with "Address already in use".
    held = bind_socket("127.0.0.1")
    port = held.getsockname()[1]
    try:
        ops.write("inc.conf", "timeout idle 5m\n")
        conf = ops.conf([f"listen 127.0.0.1:{port}", "auth userpass", f"users {users_file}",
                         "include inc.conf", "allow user alice"])
        t0 = time.monotonic()
        r = ops.run(flag, "-c", str(conf))
        assert r.returncode == 0, r.stderr
        assert "configuration OK" in r.stdout, (r.stdout, r.stderr)
        assert "Address already in use" not in r.stderr
        assert time.monotonic() - t0 < scaled(5)
        assert connect_result(("127.0.0.1", port)) == "refused"
    finally:
        held.close()
    assert port_bindable(port)


def _err_case(files, where=None, message=None):
    return {"files": files, "where": where, "message": message}


# files: name -> lines ("{p}" is the listen port, "{dir}" the config directory)
# where: (file, line, column) the message must start with; None for
# cross-option errors, which need only a clear message.
ERROR_CASES = {
    "unknown-directive": _err_case(
        {"socks5d.conf": ["# listeners", "listen 127.0.0.1:{p}", "  frobnicate on"]},
        ("socks5d.conf", 3, 3), "unknown directive 'frobnicate'"),
    "bad-duration-two-words": _err_case(
        {"socks5d.conf": ["listen 127.0.0.1:{p}", "timeout idle 5x"]},
        ("socks5d.conf", 2, 14), "5x"),
    "bad-duration-dashed": _err_case(
        {"socks5d.conf": ["listen 127.0.0.1:{p}", "timeout-idle 5x"]},
        ("socks5d.conf", 2, 14), "5x"),
    "zero-duration": _err_case(
        {"socks5d.conf": ["listen 127.0.0.1:{p}", "", "shutdown-grace 0"]},
        ("socks5d.conf", 3, 16), "greater than zero"),
    "bad-listen-port": _err_case(
        {"socks5d.conf": ["auth none", "listen 127.0.0.1:{p}", "listen 127.0.0.1:99999"]},
        ("socks5d.conf", 3, 8), "127.0.0.1:99999"),
    "bad-listen-host": _err_case(
        {"socks5d.conf": ["listen 127.0.0.1:{p}", "listen    localhost:1080"]},
        ("socks5d.conf", 2, 11), "localhost:1080"),
    "bad-rule": _err_case(
        {"socks5d.conf": ["listen 127.0.0.1:{p}", "auth none", "allow to 10.0.0.0/33"]},
        ("socks5d.conf", 3, 10), "10.0.0.0/33"),
    "include-missing": _err_case(
        {"socks5d.conf": ["listen 127.0.0.1:{p}", "include missing.conf"]},
        ("socks5d.conf", 2, 9), "missing.conf"),
    "error-in-included-file": _err_case(
        {"socks5d.conf": ["listen 127.0.0.1:{p}", "include extra.conf"],
         "extra.conf": ["auth none", "max-sessions lots"]},
        ("extra.conf", 2, 14), "lots"),
    "bad-rate-size": _err_case(
        {"socks5d.conf": ["listen 127.0.0.1:{p}", "rate-limit user alice 10X"]},
        ("socks5d.conf", 2, None), "10X"),
    "duplicate-listener": _err_case(
        {"socks5d.conf": ["listen 127.0.0.1:{p}", "auth none", "listen 127.0.0.1:{p}"]},
        None, "127.0.0.1:{p}"),
    "missing-users-file": _err_case(
        {"socks5d.conf": ["listen 127.0.0.1:{p}", "users {dir}/no-such-users"]},
        None, "{dir}/no-such-users"),
    "unreadable-users-file": _err_case(
        # A directory: unreadable as a file even for root.
        {"socks5d.conf": ["listen 127.0.0.1:{p}", "users {dir}"]},
        None, "{dir}"),
    "userpass-without-users": _err_case(
        {"socks5d.conf": ["listen 127.0.0.1:{p}", "auth userpass"]}, None, "users file"),
    "rate-limit-unknown-user": _err_case(
        {"socks5d.conf": ["listen 127.0.0.1:{p}", "users USERS", "rate-limit user carol 1M"]},
        None, "carol"),
}


@pytest.mark.parametrize("case", list(ERROR_CASES))
def test_config_error_exits_2_with_location_and_never_binds(ops, users_file, case):
    spec = ERROR_CASES[case]
    port = free_port()

    def fill(s):
        return s.replace("{p}", str(port)).replace("{dir}", str(ops.dir)).replace(
            "USERS", users_file)

    for name, lines in spec["files"].items():
        ops.conf([fill(l) for l in lines], name=name)
    conf = ops.path("socks5d.conf")
    for args in (["-t", "-c", str(conf)], ["-c", str(conf)]):
        r = ops.run(*args)
        assert r.returncode == 2, f"{args}: exit {r.returncode}\n{r.stderr}"
        assert "configuration OK" not in r.stdout
        assert " listening on " not in r.stderr, r.stderr
        if spec["where"]:
            fname, line, col = spec["where"]
            prefix = f"{ops.path(fname)}:{line}:{col or 'COLUMN'}:"
            pat = rf"^{re.escape(str(ops.path(fname)))}:{line}:{col or r'[0-9]+'}:"
            lines = [l for l in r.stderr.splitlines() if re.match(pat, l)]
            assert lines, (f"expected a message starting {prefix!r} (file:line:column of the "
                           f"offending text); got:\n{r.stderr}")
            assert fill(spec["message"]) in lines[0], r.stderr
        else:
            assert fill(spec["message"]) in r.stderr, r.stderr
            assert len(r.stderr.strip()) > 10
        # Never half-started: nothing listens on the configured port.
        assert connect_result(("127.0.0.1", port)) == "refused"
        assert port_bindable(port)


def test_listener_that_cannot_bind_stops_start_up_without_a_half_started_server(ops):
    p1 = free_port()
    held = bind_socket("127.0.0.1")
    held.listen(8)
    p2 = held.getsockname()[1]
    try:
        conf = ops.conf(["auth none", f"listen 127.0.0.1:{p1}", f"listen 127.0.0.1:{p2}"])
        r = ops.run("-c", str(conf))
        assert r.returncode != 0, r.stderr
        assert "Address already in use" in r.stderr, r.stderr
        assert connect_result(("127.0.0.1", p1)) == "refused"
        assert port_bindable(p1)
    finally:
        held.close()


def test_command_line_overrides_the_file(ops, echo):
    """-l replaces the file's listen list, --rule its rules, and
    --timeout-idle wins over `timeout idle`."""

    def render(ports):
        return [f"listen 127.0.0.1:{ports[0]}", "auth none", "timeout idle 1s",
                f"deny to 127.0.0.1 port {echo.port}", "allow"]

    srv, (p_file, p_cli), _ = ops.start_conf(
        render, nports=2,
        args=lambda ports: ["-l", f"127.0.0.1:{ports[1]}", "--timeout-idle", "30s",
                            "--rule", "allow"],
        listen=lambda ports: [f"127.0.0.1:{ports[1]}"])
    assert listening_ports(srv.pid) == {p_cli}
    assert connect_result(("127.0.0.1", p_file)) == "refused"
    with open_tunnel(srv, *echo.addr) as s:  # the file's deny rule is replaced
        assert_echo(s, b"through the command-line listener")
        time.sleep(2.2)  # longer than the file's 1 s idle timeout
        assert_echo(s, b"still open: --timeout-idle 30s won")


@pytest.mark.parametrize("line,seconds", [
    ("timeout idle 500ms", 0.5),
    ("timeout-idle 500ms", 0.5),
    ("timeout idle 1s", 1.0),
    ("timeout-idle 1", 1.0),
])
def test_idle_timeout_spellings_and_units(ops, echo, line, seconds):
    srv, _, _ = ops.start_conf(lambda ports: [f"listen 127.0.0.1:{ports[0]}", "auth none", line])
    with open_tunnel(srv, *echo.addr) as s:
        assert_echo(s, b"x")
        took = idle_close_after(s, seconds + scaled(3))
    assert seconds * 0.8 - 0.05 <= took, f"{line}: closed after {took:.2f}s"


def test_durations_and_sizes_with_units_are_accepted(ops, users_file):
    conf = ops.conf([
        "listen 127.0.0.1:1080",
        "auth userpass",
        f"users {users_file}",
        "timeout handshake 500ms",
        "timeout connect 10s",
        "timeout idle 5m",
        "timeout bind 1h",
        "timeout-udp 90",
        "shutdown-grace 10s",
        "auth-cache-ttl 0",
        "auth-fail-window 1m",
        "rate-limit user alice 64k",
        "rate-limit bob 10M",
    ])
    r = ops.run("-t", "-c", str(conf))
    assert r.returncode == 0, r.stderr
    assert "configuration OK" in r.stdout


def _timed_upload(srv, target, user, nbytes):
    """Sends nbytes up through a tunnel as `user`; returns the seconds the
    target took to receive them (first byte to last)."""
    c = open_tunnel(srv, *target.addr, auth=user, timeout=scaled(30))
    t = target.accept()
    sender = threading.Thread(target=lambda: c.sendall(b"r" * nbytes), daemon=True)
    try:
        sender.start()
        t.settimeout(scaled(30))
        got = len(t.recv(65536))
        t0 = time.monotonic()
        while got < nbytes:
            chunk = t.recv(65536)
            assert chunk, f"tunnel closed after {got} of {nbytes} bytes"
            got += len(chunk)
        took = time.monotonic() - t0
        sender.join(scaled(10))
        return took
    finally:
        c.close()
        t.close()


def test_rate_limit_sizes_64k_and_10M(ops, users_file, target):
    srv, _, _ = ops.start_conf(lambda ports: [
        f"listen 127.0.0.1:{ports[0]}", "auth userpass", f"users {users_file}",
        "rate-limit user alice 64k", "rate-limit bob 10M"])
    # 64 KiB/s: 192 KiB cannot arrive in much under 2 s, whatever the burst
    # allowance (at most a quarter of a second's worth here).
    took = _timed_upload(srv, target, ALICE, 192 * 1024)
    assert 1.8 <= took < scaled(10), f"192 KiB at 64k/s took {took:.2f}s"
    # 10 MiB/s (not 10 bytes/s, not 10 KiB/s): 4 MiB in well under 2 s.
    took = _timed_upload(srv, target, BOB, 4 << 20)
    assert took < scaled(2), f"4 MiB at 10M/s took {took:.2f}s"


# ====================================================================== shutdown


def test_sigterm_drains_refuses_new_connects_and_exits_0_when_tunnel_closes(socks5d, echo):
    srv = socks5d("--auth", "none", "--shutdown-grace", "30s")
    tunnel = open_tunnel(srv, *echo.addr)
    try:
        assert_echo(tunnel, b"before")
        srv.signal(signal.SIGTERM)
        wait_until(lambda: refused(srv.addr), scaled(5), what="new connections refused")
        for i in range(3):
            assert_echo(tunnel, f"draining {i}".encode())
        time.sleep(0.3)
        assert srv.alive(), "exited while a tunnel was open in the grace period"
        assert_echo(tunnel, b"still")
    finally:
        tunnel.close()
    assert srv.wait(scaled(5)) == 0


def test_second_sigterm_exits_at_once_with_a_tunnel_open(socks5d, echo):
    srv = socks5d("--auth", "none", "--shutdown-grace", "60s")
    tunnel = open_tunnel(srv, *echo.addr)
    try:
        assert_echo(tunnel, b"hello")
        srv.signal(signal.SIGTERM)
        wait_until(lambda: refused(srv.addr), scaled(5), what="draining (listener closed)")
        assert srv.alive()
        t0 = time.monotonic()
        srv.signal(signal.SIGTERM)
        assert srv.wait(scaled(3)) == 0
        assert time.monotonic() - t0 < scaled(3)
        assert read_until_closed(tunnel, scaled(3)) == b""
    finally:
        tunnel.close()


def test_healthz_turns_503_once_sigterm_arrives(ops, echo):
    srv, (port, mport), _ = ops.start_conf(
        lambda ports: [f"listen 127.0.0.1:{ports[0]}", f"metrics 127.0.0.1:{ports[1]}",
                       "auth none", "shutdown-grace 30s"],
        nports=2, listen=lambda ports: [f"127.0.0.1:{ports[0]}"], grace=None)
    assert curl(f"http://127.0.0.1:{mport}/healthz") == (200, b"ok\n")
    tunnel = open_tunnel(srv, *echo.addr)
    try:
        srv.signal(signal.SIGTERM)
        wait_until(lambda: curl(f"http://127.0.0.1:{mport}/healthz")[0] == 503, scaled(5),
                   what="/healthz 503")
        assert srv.alive()
        assert_echo(tunnel, b"draining, still relaying")
        samples = parse_metrics(scrape(mport))
        assert metric(samples, "socks5d_draining") == 1
    finally:
        tunnel.close()
    assert srv.wait(scaled(5)) == 0


# ====================================================================== sd_notify


def test_sd_notify_ready_reloading_stopping_and_status(ops, echo):
    ns = NotifySocket()
    ops.cleanups.append(ns.close)
    env = dict(os.environ, NOTIFY_SOCKET=ns.path)
    # max-sessions set: the default limit across a reload is test_reload.py's business.
    srv, (port,), conf = ops.start_conf(
        lambda ports: [f"listen 127.0.0.1:{ports[0]}", "auth none", "max-sessions 10000"],
        env=env)
    i_ready = ns.wait_for("READY=1")
    # READY=1 comes once the listeners are up.
    assert connect_result(srv.addr) == "ok"
    assert any(a.startswith("STATUS=") for a in ns.assignments()), ns.assignments()

    srv.signal(signal.SIGHUP)
    i_rel = ns.wait_for("RELOADING=1", after=i_ready + 1)
    i_ready2 = ns.wait_for("READY=1", after=i_rel + 1)
    assert any(a.startswith("STATUS=") and "reload" in a
               for a in ns.assignments()[i_rel:i_ready2 + 2]), ns.assignments()[i_rel:]

    # A failed reload still ends in READY=1 (systemd must not stay "reloading").
    conf.write_text(conf.read_text() + "no-such-directive 1\n")
    srv.signal(signal.SIGHUP)
    i_rel2 = ns.wait_for("RELOADING=1", after=i_ready2 + 1)
    ns.wait_for("READY=1", after=i_rel2 + 1)
    with open_tunnel(srv, *echo.addr) as s:
        assert_echo(s, b"after a failed reload")

    n = len(ns.assignments())
    srv.signal(signal.SIGTERM)
    ns.wait_for("STOPPING=1", after=n)
    assert srv.wait(scaled(5)) == 0
    statuses = [a for a in ns.assignments() if a.startswith("STATUS=")]
    assert len(statuses) >= 2 and all(len(s) > len("STATUS=") for s in statuses), statuses


# ====================================================================== socket activation


def _thread_states(pid):
    out = []
    for t in sorted(os.listdir(f"/proc/{pid}/task")):
        try:
            out.append(Path(f"/proc/{pid}/task/{t}/wchan").read_text())
        except OSError:
            pass
    return out


def _activation_check(srv, port, echo):
    try:
        s = open_tunnel(srv, *echo.addr, timeout=scaled(5))
    except (OSError, EOFError) as e:
        raise AssertionError(
            f"no SOCKS5 reply through the inherited listening socket ({e!r}); server threads "
            f"wait in {_thread_states(srv.pid)}; fd 3 flags: "
            f"{Path(f'/proc/{srv.pid}/fdinfo/3').read_text().split()[3]} (octal, no 04000 = "
            f"blocking)\n{srv.log()}")
    with s:
        assert_echo(s, b"through an inherited socket")
    with open_tunnel(srv, *echo.addr, timeout=scaled(5)) as s:
        assert_echo(s, b"and again")
    srv.wait_log("systemd")
    # Only the inherited socket listens: the configured address is ignored.
    assert listening_ports(srv.pid) == {port}
    # A reload keeps the inherited listener.
    srv.signal(signal.SIGHUP)
    srv.wait_log("configuration reloaded")
    with open_tunnel(srv, *echo.addr, timeout=scaled(5)) as s:
        assert_echo(s, b"after a reload")


def test_socket_activation_with_systemd_socket_activate(ops, echo):
    tool = shutil.which("systemd-socket-activate")
    if tool:
        for _ in range(6):
            port, other = free_port(), free_port()
            srv = ops.daemon(["--auth", "none", "-l", f"127.0.0.1:{other}"],
                             [f"127.0.0.1:{port}"], prefix=[tool, "-l", f"127.0.0.1:{port}"],
                             ready="Listening on")
            try:
                srv.start()
                break
            except (PortInUse, AssertionError):
                if "Address already in use" not in srv.log():
                    raise
                srv.returncode = "expected"
        else:
            raise AssertionError("no free port for systemd-socket-activate")
        # systemd-socket-activate execs socks5d (same pid) on the first connection.
        _activation_check(srv, port, echo)
        assert srv.stop() == 0
    else:  # no systemd tools: the same through the python path
        _python_activation(ops, echo)


def _activated(ops, host, args, **kw):
    """socks5d started with a socket listening on host (a free port) as fd 3,
    as systemd passes it (LISTEN_FDS); returns (server, port)."""
    lsock = bind_socket(host)
    lsock.listen(128)
    port = lsock.getsockname()[1]
    fd = lsock.fileno()
    ops.cleanups.append(lsock.close)

    def child():  # runs in the child between fork and exec
        os.dup2(fd, 3)  # fd 3, inheritable
        os.environ["LISTEN_FDS"] = "1"
        os.environ["LISTEN_PID"] = str(os.getpid())
        os.environ.pop("LISTEN_FDNAMES", None)

    srv = ops.start(args, [f"127.0.0.1:{port}"], preexec_fn=child, close_fds=False, **kw)
    return srv, port


def _python_activation(ops, echo):
    other = free_port()
    srv, port = _activated(ops, "127.0.0.1", ["--auth", "none", "-l", f"127.0.0.1:{other}"],
                           ready="connect")
    _activation_check(srv, port, echo)
    assert srv.stop() == 0


def test_socket_activation_fd3_from_python(ops, echo):
    _python_activation(ops, echo)


def test_reload_leaving_an_activated_listener_open_is_refused_in_the_error_log(ops, echo):
    """Protected mode checks an inherited listener beyond loopback at each
    reload too; the refusal is told where failed reloads are, in the error
    log, with its priority (before, this one reason went to stderr)."""
    err = ops.path("error.log")
    base = ["auth none", f"listen 127.0.0.1:{free_port()}", f"error-log {err}"]
    conf = ops.conf(base + ["allow from 127.0.0.0/8", "deny"])
    srv, port = _activated(ops, "0.0.0.0", ["-c", str(conf), *beyond_loopback_args()],
                           ready_log=err)
    ops.conf(base)
    srv.signal(signal.SIGHUP)
    srv.wait_log("reload failed", path=err)
    assert f"error: reload: socks5d: refusing to run an open proxy on 0.0.0.0:{port}" in \
        err.read_text(), err.read_text()
    assert "open proxy" not in srv.log(), srv.log()
    with open_tunnel(srv, *echo.addr) as s:
        assert_echo(s, b"old rules")


def test_listen_fds_for_another_pid_are_ignored(ops, echo):
    env = dict(os.environ, LISTEN_FDS="1", LISTEN_PID="1")
    srv, (port,), _ = ops.start_conf(lambda ports: [f"listen 127.0.0.1:{ports[0]}", "auth none"],
                                     env=env)
    assert "systemd" not in srv.log()
    with open_tunnel(srv, *echo.addr) as s:
        assert_echo(s, b"own listener")


# ====================================================================== logs


def test_error_and_access_log_files_reopen_on_sigusr1(ops, echo):
    err, acc = ops.path("error.log"), ops.path("access.log")
    srv, _, _ = ops.start_conf(
        lambda ports: [f"listen 127.0.0.1:{ports[0]}", "auth none", f"error-log {err}",
                       f"access-log {acc}"], ready_log=err)

    def session(msg):
        with open_tunnel(srv, *echo.addr) as s:
            assert_echo(s, msg)
            s.shutdown(socket.SHUT_WR)
            assert read_until_closed(s, scaled(5)) == b""

    def access(path):
        return srv.access_lines(path)

    session(b"one")
    wait_until(lambda: len(access(acc)) == 1, scaled(5), what="1 line in access.log")
    assert access(acc)[0]["up"] == "3"
    assert " listening on " in err.read_text()
    # logrotate: rename, then SIGUSR1. Until the signal the old files get the lines.
    err.rename(str(err) + ".1")
    acc.rename(str(acc) + ".1")
    old_err, old_acc = Path(str(err) + ".1"), Path(str(acc) + ".1")
    session(b"two!")
    wait_until(lambda: len(access(old_acc)) == 2, scaled(5), what="2nd line in access.log.1")
    srv.signal(signal.SIGUSR1)
    wait_until(lambda: acc.exists() and err.exists(), scaled(5),
               what="log files reopened at their original paths")
    session(b"three")
    wait_until(lambda: len(access(acc)) == 1, scaled(5), what="a line in the new access.log")
    assert access(acc)[0]["up"] == "5"
    assert len(access(old_acc)) == 2
    assert srv.stop() == 0
    assert "stopped" in err.read_text(), err.read_text()
    assert "stopped" not in old_err.read_text()
    # Nothing went to stderr but, at most, what came before the files were opened.
    assert " listening on " not in srv.log() and "time=" not in srv.log(), srv.log()


HOSTILE_NAME = b'a"b\\c\x01\x7f\xff.example'


def test_access_log_format_json(ops, users_file, target):
    srv, _, _ = ops.start_conf(lambda ports: [
        f"listen 127.0.0.1:{ports[0]}", "auth userpass", f"users {users_file}",
        "access-log-format json", "deny port 9", "allow"])
    c = open_tunnel(srv, *target.addr, auth=ALICE)
    c_port = c.getsockname()[1]
    t = target.accept()
    c.sendall(b"u" * 1000)
    assert recv_exact(t, 1000) == b"u" * 1000
    t.sendall(b"d" * 3000)
    assert recv_exact(c, 3000) == b"d" * 3000
    c.close()
    assert read_until_closed(t, scaled(5)) == b""
    t.close()
    # A destination name full of characters JSON would have to escape: it is
    # not a host name, so it is refused (REP 4) and never reaches the log.
    s = srv.connect()
    s.sendall(greeting((0x02,)) + userpass(*ALICE) + b"\x05\x01\x00\x03" +
              bytes([len(HOSTILE_NAME)]) + HOSTILE_NAME + b"\x00\x09")
    assert recv_exact(s, 4) == b"\x05\x02\x01\x00"
    assert recv_exact(s, 2) == b"\x05\x04"
    s.close()
    with srv.connect() as s:  # a failed login
        s.sendall(greeting((0x02,)) + userpass("alice", "wrong"))
        assert read_until_closed(s, scaled(5)) == b"\x05\x02\x01\x01"
    assert srv.stop() == 0

    # The error log is JSON too (error-log-format auto): the access records
    # are the lines with a client.
    raw = [l for l in srv.log_path.read_bytes().split(b"\n") if l.startswith(b"{")]
    assert all(l.startswith(b'{"time":') for l in raw), srv.log()
    raw = [l for l in raw if b'"client":' in l]
    assert len(raw) == 3, srv.log()
    entries = []
    for l in raw:
        try:
            entries.append(json.loads(l.decode("utf-8")))  # JSON text is UTF-8
        except ValueError as e:
            raise AssertionError(f"access line is not valid JSON ({e}): {l!r}")
    for e in entries:
        assert {"client", "user", "cmd", "dst", "rep", "up", "down", "ms"} <= set(e), e
        assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$", e["time"]), e
        assert str(e["ms"]).isdigit(), e
    (ok,) = [e for e in entries if e["client"] == f"127.0.0.1:{c_port}"]
    assert ok["user"] == "alice" and ok["cmd"] == "connect"
    assert ok["dst"] == f"127.0.0.1:{target.port}"
    assert str(ok["rep"]) == "0"
    assert (int(ok["up"]), int(ok["down"])) == (1000, 3000)
    (weird,) = [e for e in entries if str(e["rep"]) == "4"]
    assert weird["dst"] in ("-", None), weird
    (failed,) = [e for e in entries if e not in (ok, weird)]
    assert failed["user"] in ("-", "alice", None) and (int(failed["up"]), int(failed["down"])) \
        == (0, 0)


def _one_finished_session(srv, echo):
    with open_tunnel(srv, *echo.addr) as s:
        assert_echo(s, b"logged?")
        s.shutdown(socket.SHUT_WR)
        assert read_until_closed(s, scaled(5)) == b""


def test_access_log_off_writes_no_access_lines(ops, echo):
    srv, _, _ = ops.start_conf(lambda ports: [f"listen 127.0.0.1:{ports[0]}", "auth none",
                                              "access-log off"])
    _one_finished_session(srv, echo)
    with srv.connect() as s:  # a handshake failure is an access-log event too
        s.sendall(b"\x04\x01")
        read_until_closed(s, scaled(5))
    assert srv.stop() == 0  # every line is out once it has exited
    log = srv.log()
    assert " listening on " in log  # the error log still works
    assert not [l for l in log.splitlines() if "time=" in l or l.startswith("{")], log


def test_quiet_flag_with_a_config_file(ops, echo):
    srv, _, _ = ops.start_conf(lambda ports: [f"listen 127.0.0.1:{ports[0]}", "auth none",
                                              "access-log stderr", "log-level info"],
                               args=["-q"], ready="connect")
    _one_finished_session(srv, echo)
    assert srv.stop() == 0
    log = srv.log()
    assert "time=" not in log and " info: " not in log, log


# ====================================================================== metrics


def test_metrics_follow_a_known_workload(ops, users_file, target):
    udp_echo = UdpEcho()
    ops.cleanups.append(udp_echo.close)
    closed = bind_socket("127.0.0.1")  # bound, never listening: connects are refused
    ops.cleanups.append(closed.close)
    denied_port = free_port()

    srv, (port, mport), _ = ops.start_conf(lambda ports: [
        f"listen 127.0.0.1:{ports[0]}", f"metrics 127.0.0.1:{ports[1]}", "auth userpass",
        f"users {users_file}", f"deny to 127.0.0.1 port {denied_port}", "allow"],
        nports=2, listen=lambda ports: [f"127.0.0.1:{ports[0]}"])
    before = parse_metrics(scrape(mport))

    n, ups, downs = 4, [1000, 2345, 1, 65536], [3000, 7, 100000, 1]
    for up, down in zip(ups, downs):
        c = open_tunnel(srv, *target.addr, auth=ALICE)
        t = target.accept()
        c.sendall(b"u" * up)
        assert recv_exact(t, up) == b"u" * up
        t.sendall(b"d" * down)
        assert recv_exact(c, down) == b"d" * down
        c.close()
        assert read_until_closed(t, scaled(5)) == b""
        t.close()
    assert connect_rep(srv, "127.0.0.1", denied_port, auth=ALICE) == 2
    with srv.connect() as s:
        s.sendall(greeting((0x02,)) + userpass("alice", "not the password"))
        assert read_until_closed(s, scaled(5)) == b"\x05\x02\x01\x01"
    payloads = [bytes([65 + i]) * (10 * (i + 1)) for i in range(7)]
    ctl, relay = udp_associate(srv, auth=ALICE)
    udp_roundtrips(relay, udp_echo.addr, payloads)
    ctl.close()
    assert connect_rep(srv, *closed.getsockname(), auth=ALICE) == 5
    wait_until(lambda: len(srv.access_lines()) >= n + 4, scaled(5), what="8 access lines")

    def delta(name, **labels):
        return metric(after, name, **labels) - metric(before, name, **labels)

    def settled():
        # A session is counted just after its access-log line is written.
        nonlocal after, text
        text = scrape(mport)
        after = parse_metrics(text)  # the whole exposition parses
        ended = sum(v for (name, _), v in after.items() if name == "socks5d_sessions_total") - \
            sum(v for (name, _), v in before.items() if name == "socks5d_sessions_total")
        return ended >= n + 3 and metric(after, "socks5d_sessions_active") == 0

    after, text = {}, ""
    wait_until(settled, scaled(5), what="the metrics to count every session")

    udp_bytes = sum(len(p) for p in payloads)
    assert delta("socks5d_sessions_total", command="connect", rep="0") == n
    assert delta("socks5d_sessions_total", command="connect", rep="2") == 1
    assert delta("socks5d_sessions_total", command="connect", rep="5") == 1
    assert delta("socks5d_sessions_total", command="udp", rep="0") == 1
    assert delta("socks5d_bytes_total", direction="up") == sum(ups) + udp_bytes
    assert delta("socks5d_bytes_total", direction="down") == sum(downs) + udp_bytes
    assert delta("socks5d_auth_total", result="success") == n + 3
    assert delta("socks5d_auth_total", result="failure") == 1
    assert delta("socks5d_refused_total", reason="rule") == 1
    assert delta("socks5d_refused_total", reason="limit") == 0
    assert delta("socks5d_udp_datagrams_total", direction="up") == len(payloads)
    assert delta("socks5d_udp_datagrams_total", direction="down") == len(payloads)
    assert delta("socks5d_handshake_failures_total", reason="auth") == 1
    assert metric(after, "socks5d_sessions_active") == 0
    assert metric(after, "socks5d_draining") == 0
    assert metric(after, "socks5d_workers") >= 1
    assert metric(after, "socks5d_connect_duration_seconds_count") - \
        metric(before, "socks5d_connect_duration_seconds_count") >= n
    assert "# TYPE socks5d_sessions_total counter" in text


def test_metrics_http_endpoint_answers(ops):
    srv, (port, mport), _ = ops.start_conf(
        lambda ports: [f"listen 127.0.0.1:{ports[0]}", "auth none",
                       f"metrics 127.0.0.1:{ports[1]}"],
        nports=2, listen=lambda ports: [f"127.0.0.1:{ports[0]}"])
    base = f"http://127.0.0.1:{mport}"
    assert curl(base + "/healthz") == (200, b"ok\n")
    code, body = curl(base + "/metrics")
    assert code == 200 and b"socks5d_build_info" in body
    parse_metrics(body.decode())
    assert curl(base + "/metrics", "-X", "POST", "-d", "x=1")[0] == 405
    assert curl(base + "/nope")[0] == 404
    # A request head over 4 KiB is refused: an error status or a closed connection.
    big = b"GET /metrics HTTP/1.0\r\nX-Pad: " + b"a" * 5000 + b"\r\n\r\n"
    answer = http_raw(mport, big)
    assert answer == b"" or re.match(rb"HTTP/1\.[01] 4\d\d ", answer), answer[:200]
    assert b"socks5d_" not in answer
    # ...and the endpoint still serves afterwards.
    assert curl(base + "/healthz") == (200, b"ok\n")
    assert listening_ports(srv.pid) == {port, mport}


def test_metrics_off_by_default(socks5d):
    srv = socks5d("--auth", "none")
    assert listening_ports(srv.pid) == {srv.port}
    assert "metrics" not in srv.log()


# ====================================================================== packaging and docs


@pytest.mark.parametrize("page", ["docs/socks5d.8", "docs/socks5d.conf.5"])
def test_man_page_renders_without_warnings(page):
    path = REPO / page
    assert path.is_file(), f"{page} is missing"
    r = subprocess.run(["groff", "-ww", "-z", "-man", str(path)], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 0 and r.stdout == "" and r.stderr == "", (r.returncode, r.stderr)


def test_example_config_passes_check(ops):
    path = REPO / "docs" / "socks5d.conf.example"
    assert path.is_file(), "docs/socks5d.conf.example is missing"
    r = ops.run("-t", "-c", str(path), cwd=str(REPO))
    assert r.returncode == 0, r.stderr
    assert "configuration OK" in r.stdout


def test_systemd_unit_verifies(ops, socks5d_bin):
    unit = REPO / "packaging" / "socks5d.service"
    assert unit.is_file(), "packaging/socks5d.service is missing"
    text = unit.read_text()
    assert re.search(r"^ExecStart=", text, re.M), text
    # Point every Exec*= at the binary under test (wherever the unit installs it).
    real = os.path.abspath(socks5d_bin)
    copy = re.sub(r"^(Exec\w*=[-@+!:]*)\S*/socks5d(?=\s|$)", lambda m: m.group(1) + real, text,
                  flags=re.M)
    assert real in copy, f"no ExecStart= pointing at socks5d in the unit:\n{text}"
    d = ops.path("unit")
    d.mkdir()
    (d / "socks5d.service").write_text(copy)
    # Man pages named in Documentation= are the ones in docs/ (not installed
    # on this machine, so systemd-analyze is told not to look them up).
    for name, sect in re.findall(r"man:([\w.-]+)\((\d)\)", text):
        assert (REPO / "docs" / f"{name}.{sect}").is_file(), f"Documentation= man:{name}({sect})"
    r = subprocess.run(["systemd-analyze", "verify", "--man=no", str(d / "socks5d.service")],
                       capture_output=True, text=True, timeout=60, cwd=str(d))
    assert r.returncode == 0, f"systemd-analyze verify:\n{r.stdout}{r.stderr}\n---\n{copy}"


def test_make_install_and_uninstall(tmp_path, socks5d_bin):
    dest = tmp_path / "root"
    binary = os.path.abspath(socks5d_bin)
    # -o: never rebuild the binary under test (install it as it is).
    make = ["make", "-s", "-C", str(REPO), "-o", binary, f"BIN={binary}", f"DESTDIR={dest}",
            "PREFIX=/usr"]
    r = subprocess.run(make + ["install"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    expected = ["usr/sbin/socks5d", "usr/share/man/man8/socks5d.8",
                "usr/share/man/man5/socks5d.conf.5", "usr/lib/systemd/system/socks5d.service"]
    expected += ["etc/socks5d/socks5d.conf.example", "etc/socks5d/socks5d.conf"]
    for rel in expected:
        assert (dest / rel).is_file(), f"make install did not install {rel}"
    sbin = dest / "usr/sbin/socks5d"
    assert stat.S_IMODE(sbin.stat().st_mode) == 0o755
    assert sbin.read_bytes() == Path(binary).read_bytes()
    assert (dest / "usr/share/man/man8/socks5d.8").read_bytes() == \
        (REPO / "docs/socks5d.8").read_bytes()
    r = subprocess.run(make + ["uninstall"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    left = [str(p.relative_to(dest)) for p in dest.rglob("*") if not p.is_dir()]
    assert left == [], f"make uninstall left {left}"
