"""Process life cycle: SIGTERM drain, the open-proxy guard, command-line
errors, --version / --help, `socks5d passwd`."""
import signal
import socket
import subprocess
import time

import pytest

from harness import (SANITIZER_MARKERS, beyond_loopback_args, free_port, full_backlog_listener,
                     greeting, open_tunnel, read_reply, read_until_closed, recv_exact, request,
                     scaled, syn_sent_to, wait_until)


def connect_refused(srv):
    """True when a fresh connection to the server is refused. A connection
    that still gets through (the listener closes asynchronously) is closed
    again without a byte."""
    s = srv.socket()
    s.settimeout(scaled(2))
    try:
        s.connect(srv.addr)
    except ConnectionRefusedError:
        return True
    except ConnectionResetError:
        return False  # the SYN met a listener that was closing: try again
    finally:
        s.close()
    return False


def assert_echo(sock, msg):
    sock.sendall(msg)
    assert recv_exact(sock, len(msg)) == msg


def test_sigterm_drains_open_tunnel_refuses_new_connects_and_exits_0_when_it_closes(socks5d,
                                                                                    echo):
    srv = socks5d("--auth", "none", "--shutdown-grace", "30s")
    tunnel = open_tunnel(srv, *echo.addr)
    try:
        assert_echo(tunnel, b"before")
        srv.signal(signal.SIGTERM)
        # New connections are refused (by every worker's listener: several
        # refusals in a row)...
        wait_until(lambda: all(connect_refused(srv) for _ in range(8)), scaled(5),
                   what="new connections to be refused")
        # ...while the open tunnel keeps working during the grace period.
        for i in range(5):
            assert_echo(tunnel, f"during grace {i}".encode())
        assert srv.alive(), "server exited while a tunnel was still open"
    finally:
        t_close = time.monotonic()
        tunnel.close()
    # The last session ends: the server exits 0 long before the 30 s grace.
    assert srv.wait(scaled(5)) == 0
    assert time.monotonic() - t_close < scaled(5)
    (line,) = srv.wait_access(1, timeout=1)
    assert line["up"] == str(6 + 5 * len(b"during grace 0"))


def test_sigterm_with_short_grace_closes_tunnel_at_deadline_and_exits_0(socks5d, target):
    srv = socks5d("--auth", "none", "--shutdown-grace", "1s")
    c = open_tunnel(srv, *target.addr)
    t = target.accept()
    try:
        srv.signal(signal.SIGTERM)
        t0 = time.monotonic()
        c.sendall(b"still on")
        assert recv_exact(t, 8) == b"still on"
        t.sendall(b"yes")
        assert recv_exact(c, 3) == b"yes"
        # The grace period ends: the server closes the tunnel, both ends.
        assert read_until_closed(c, 1 + scaled(3)) == b""
        cut = time.monotonic() - t0
        assert read_until_closed(t, scaled(2)) == b""
        assert 0.8 <= cut < 1 + scaled(2), f"tunnel closed {cut:.2f}s after SIGTERM, grace 1s"
        assert srv.wait(scaled(5)) == 0
    finally:
        c.close()


def test_sigterm_idle_server_exits_0_promptly(socks5d):
    srv = socks5d("--auth", "none")
    t0 = time.monotonic()
    assert srv.stop(scaled(3)) == 0
    assert time.monotonic() - t0 < scaled(3)


def test_sigint_also_drains_and_exits_0(socks5d, echo):
    srv = socks5d("--auth", "none")
    with open_tunnel(srv, *echo.addr) as s:
        srv.signal(signal.SIGINT)
        wait_until(lambda: connect_refused(srv), scaled(5), what="listener to close")
        assert_echo(s, b"sigint")
    assert srv.wait(scaled(5)) == 0


# ---------------------------------------------------------------- start-up


def run_socks5d(socks5d_bin, *args, timeout=None, input=None):
    r = subprocess.run([socks5d_bin, *args], capture_output=True, text=True, input=input,
                       timeout=timeout or scaled(10))
    reports = [m for m in SANITIZER_MARKERS if m in r.stderr]
    assert not reports, f"sanitizer report from socks5d {' '.join(args)}:\n{r.stderr}"
    return r


@pytest.mark.parametrize("listen", ["0.0.0.0", "[::]"])
@pytest.mark.parametrize("auth", [[], ["--auth", "none"], ["--auth", "userpass,none", "--users",
                                                          "USERS"]],
                         ids=["default-auth", "auth-none", "auth-userpass-or-none"])
def test_open_proxy_refused_on_non_loopback_without_auth(socks5d_bin, users_file, listen, auth):
    auth = [users_file if a == "USERS" else a for a in auth]
    r = run_socks5d(socks5d_bin, "-l", f"{listen}:{free_port()}", *auth,
                    *beyond_loopback_args())
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert "--open-proxy" in r.stderr


def test_open_proxy_flag_allows_non_loopback_listener(socks5d, echo):
    port = free_port()
    srv = socks5d("--open-proxy", *beyond_loopback_args(), listen=[f"0.0.0.0:{port}"])
    with open_tunnel(srv, *echo.addr) as s:
        assert_echo(s, b"open")
    assert srv.stop() == 0


def test_non_loopback_listener_with_userpass_only_starts(socks5d, users_file, echo):
    port = free_port()
    srv = socks5d("--auth", "userpass", "--users", users_file, *beyond_loopback_args(),
                  listen=[f"0.0.0.0:{port}"])
    with srv.connect() as s:
        s.sendall(greeting((0x00,)))
        assert read_until_closed(s, scaled(3)) == b"\x05\xff"


def test_any_127_address_counts_as_loopback_without_auth(socks5d, echo):
    srv = socks5d("--auth", "none", listen=[f"127.0.0.2:{free_port('127.0.0.2')}"])
    with open_tunnel(srv, *echo.addr) as s:
        assert_echo(s, b"127/8")


def test_listens_on_ipv4_and_ipv6_at_once(socks5d, echo):
    p4, p6 = free_port(), free_port("::1")
    srv = socks5d("--auth", "none", listen=[f"127.0.0.1:{p4}", f"[::1]:{p6}"])
    with open_tunnel(srv, *echo.addr) as s:
        assert_echo(s, b"v4 listener")
    s6 = socket.create_connection(("::1", p6), timeout=scaled(5))
    with s6:
        s6_port = s6.getsockname()[1]
        s6.sendall(greeting() + request(*echo.addr))
        assert recv_exact(s6, 2) == b"\x05\x00"
        assert read_reply(s6)[0] == 0
        assert_echo(s6, b"v6 listener")
    lines = srv.wait_access(2)
    assert {l["client"] for l in lines} >= {f"[::1]:{s6_port}"}


BAD_OPTIONS = {
    "unknown-option": ["--no-such-option"],
    "listen-no-port": ["-l", "127.0.0.1"],
    "listen-port-0": ["-l", "127.0.0.1:0"],
    "listen-port-too-big": ["-l", "127.0.0.1:65536"],
    "listen-not-an-address": ["-l", "localhost:1080"],
    "listen-twice": ["-l", "127.0.0.1:PORT", "-l", "127.0.0.1:PORT"],
    "workers-0": ["-w", "0"],
    "workers-word": ["-w", "many"],
    "auth-unknown": ["--auth", "kerberos5"],
    "auth-empty": ["--auth", ""],
    "auth-duplicate": ["--auth", "none,none"],
    "userpass-without-users": ["--auth", "userpass"],
    "users-file-missing": ["--users", "/nonexistent/users"],
    "timeout-zero": ["--timeout-idle", "0"],
    "timeout-bad-unit": ["--timeout-connect", "5x"],
    "timeout-negative": ["--timeout-handshake", "-1s"],
    "timeout-overflow": ["--timeout-idle", "99999999999h"],
    "max-sessions-0": ["--max-sessions", "0"],
    "max-sessions-word": ["--max-sessions", "lots"],
    "grace-bad": ["--shutdown-grace", "soon"],
    "stray-argument": ["extra"],
    "missing-value": ["--timeout-idle"],
}


@pytest.mark.parametrize("args", BAD_OPTIONS.values(), ids=BAD_OPTIONS.keys())
def test_bad_options_exit_2_with_message(socks5d_bin, args):
    port = str(free_port())
    r = run_socks5d(socks5d_bin, *[a.replace("PORT", port) for a in args])
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert r.stderr.strip(), "no message on stderr"


def test_bad_users_file_exits_2(socks5d_bin, tmp_path):
    bad = tmp_path / "users"
    bad.write_text("alice:plaintext-password\n")
    r = run_socks5d(socks5d_bin, "--users", str(bad))
    assert r.returncode == 2
    assert "users" in r.stderr


def test_version_exits_0_and_prints_version(socks5d_bin):
    r = run_socks5d(socks5d_bin, "--version")
    assert r.returncode == 0
    assert r.stdout.startswith("socks5d ") and r.stdout.split()[1][0].isdigit(), r.stdout


def test_help_exits_0_and_prints_usage(socks5d_bin):
    r = run_socks5d(socks5d_bin, "--help")
    assert r.returncode == 0
    assert "usage:" in r.stdout and "--open-proxy" in r.stdout


def test_passwd_prints_a_users_file_line_that_verifies(socks5d_bin, socks5d, tmp_path, echo):
    r = run_socks5d(socks5d_bin, "passwd", "carol", input="c4r0l\n")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("carol:$y$")
    users = tmp_path / "carol.users"
    users.write_text(r.stdout)
    srv = socks5d("--users", str(users))  # --users alone means userpass
    with open_tunnel(srv, *echo.addr, auth=("carol", "c4r0l")) as s:
        assert_echo(s, b"carol")


@pytest.mark.parametrize("args,stdin", [(["passwd"], "x\n"), (["passwd", "a:b"], "x\n"),
                                        (["passwd", "dave"], "")],
                         ids=["no-name", "colon-in-name", "empty-password"])
def test_passwd_misuse_exits_2(socks5d_bin, args, stdin):
    r = run_socks5d(socks5d_bin, *args, input=stdin)
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert r.stdout == ""


def test_grace_deadline_closes_sessions_in_every_state_and_exits_0(socks5d, users_file, target):
    # Sessions caught at the deadline mid-greeting, mid-auth, before the
    # request, while dialing, and relaying: all are closed and the process
    # exits 0 (and, under ASan, cleanly: the fixture checks the log).
    srv = socks5d("--auth", "none,userpass", "--users", users_file, "--shutdown-grace", "1s",
                  "--timeout-connect", "30s")
    lsock, filler = full_backlog_listener()
    clients = {}
    try:
        c = srv.connect()
        c.sendall(b"\x05")
        clients["greeting"] = c
        c = srv.connect()
        c.sendall(greeting((0x02,)))
        assert recv_exact(c, 2) == b"\x05\x02"
        c.sendall(b"\x01\x05ali")
        clients["auth"] = c
        c = srv.connect()
        c.sendall(greeting())
        assert recv_exact(c, 2) == b"\x05\x00"
        clients["request"] = c
        c = srv.connect()
        c.sendall(greeting() + request(*lsock.getsockname()))
        assert recv_exact(c, 2) == b"\x05\x00"
        clients["dial"] = c
        clients["relay"] = open_tunnel(srv, *target.addr)
        t = target.accept()
        # Let the dial reach the kernel before the signal.
        wait_until(lambda: syn_sent_to(lsock.getsockname()[1]), scaled(3),
                   what="the proxy's SYN to the unanswering target")
        srv.signal(signal.SIGTERM)
        t0 = time.monotonic()
        for name, c in clients.items():
            left = max(0.1, t0 + 1 + scaled(3) - time.monotonic())
            data = read_until_closed(c, left)
            # The dialing client never got a reply: its connect never finished.
            assert data == b"", f"{name}: unexpected bytes {data!r}"
        assert time.monotonic() - t0 >= 0.8, "sessions closed before the grace period ended"
        assert read_until_closed(t, scaled(2)) == b""
        assert srv.wait(scaled(5)) == 0
    finally:
        for c in clients.values():
            c.close()
        filler.close()
        lsock.close()

