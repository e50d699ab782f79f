"""Real SOCKS5 clients against a real socks5d: curl, PySocks, proxychains4."""
import hashlib
import os
import socket
import subprocess
import threading

import pytest
import socks  # Debian python3-socks (PySocks)

from harness import HTTP_BODY, USERS, proxy_env, scaled

ALICE = ("alice", USERS["alice"])
BOB = ("bob", USERS["bob"])


def run_curl(args, timeout=None):
    timeout = timeout or scaled(15)
    return subprocess.run(["curl", "-sS", "--noproxy", "", "--max-time", str(int(timeout)),
                           *args], capture_output=True, env=proxy_env(), timeout=timeout + 5)


@pytest.fixture
def proxy(socks5d, users_file, request):
    """A server without auth, or with --auth userpass when the test is
    parametrized with auth=True."""
    auth = request.node.callspec.params.get("auth", False)
    if auth:
        return socks5d("--auth", "userpass", "--users", users_file)
    return socks5d("--auth", "none")


# ---------------------------------------------------------------- curl


@pytest.mark.parametrize("auth", [False, True], ids=["noauth", "userpass"])
@pytest.mark.parametrize("mode", ["--socks5", "--socks5-hostname"])
@pytest.mark.parametrize("host", ["127.0.0.1", "[::1]", "localhost"])
def test_curl_fetches_http_body_through_proxy(proxy, http_servers, host, mode, auth):
    url = f"http://{host}:{http_servers.port}/curl"
    args = [mode, f"{proxy.addr[0]}:{proxy.port}", url]
    if auth:
        args = ["-U", f"{ALICE[0]}:{ALICE[1]}"] + args
    hits6 = len(http_servers.v6.hits)
    r = run_curl(args)
    assert r.returncode == 0, r.stderr.decode()
    assert r.stdout == HTTP_BODY
    # It really went through the proxy, as the right user, to the right place.
    (line,) = proxy.wait_access(1)
    assert line["rep"] == "0" and line["cmd"] == "connect"
    assert line["user"] == (ALICE[0] if auth else "-")
    assert line["up"] != "0" and int(line["down"]) > len(HTTP_BODY)
    if host == "[::1]":
        assert line["addr"] == f"[::1]:{http_servers.port}"
        assert len(http_servers.v6.hits) == hits6 + 1
    elif host == "127.0.0.1":
        assert line["addr"] == f"127.0.0.1:{http_servers.port}"
    if mode == "--socks5-hostname" and host == "localhost":
        # The name travelled to the proxy, which resolved it.
        assert line["dst"] == f"localhost:{http_servers.port}"


def test_curl_with_wrong_password_is_refused(socks5d, users_file, http_servers):
    srv = socks5d("--auth", "userpass", "--users", users_file)
    r = run_curl(["-U", "alice:wrong", "--socks5", f"127.0.0.1:{srv.port}",
                  f"http://127.0.0.1:{http_servers.port}/"])
    assert r.returncode != 0
    assert r.stdout == b""


# ---------------------------------------------------------------- PySocks


def pysocks_echo(proxy_addr, dest, auth=None, rdns=False, size=1 << 20):
    """Echoes `size` random bytes through the proxy with PySocks; returns
    (sent, received)."""
    payload = os.urandom(size)
    s = socks.socksocket(socket.AF_INET, socket.SOCK_STREAM)
    s.set_proxy(socks.SOCKS5, proxy_addr[0], proxy_addr[1], rdns=rdns,
                username=auth[0] if auth else None, password=auth[1] if auth else None)
    s.settimeout(scaled(20))
    s.connect(dest)
    try:
        errors = []

        def send():
            try:
                s.sendall(payload)
                s.shutdown(socket.SHUT_WR)
            except Exception as e:  # reported by the main thread
                errors.append(e)

        t = threading.Thread(target=send)
        t.start()
        got = bytearray()
        while True:
            chunk = s.recv(262144)
            if not chunk:
                break
            got += chunk
        t.join(scaled(20))
        assert not errors, errors
        return payload, bytes(got)
    finally:
        s.close()


@pytest.mark.parametrize("auth,dest,rdns", [
    (False, "v4", False),
    (True, "v4", False),
    (False, "v6", False),
    (True, "v6", False),
    (False, "localhost", True),
    (True, "localhost", True),
], ids=["noauth-ipv4", "userpass-ipv4", "noauth-ipv6", "userpass-ipv6",
        "noauth-remote-dns", "userpass-remote-dns"])
def test_pysocks_echoes_1mib_intact(proxy, echo, echo6, auth, dest, rdns):
    target = {"v4": echo.addr, "v6": echo6.addr, "localhost": ("localhost", echo.port)}[dest]
    creds = BOB if auth else None  # bob's password has spaces, ':' and '#'
    sent, got = pysocks_echo(proxy.addr, target, creds, rdns)
    assert len(got) == len(sent)
    assert hashlib.sha256(got).digest() == hashlib.sha256(sent).digest()
    (line,) = proxy.wait_access(1)
    assert line["user"] == (BOB[0] if auth else "-")
    assert line["up"] == str(len(sent)) and line["down"] == str(len(sent))
    if dest == "localhost":
        assert line["dst"] == f"localhost:{echo.port}"


def test_pysocks_wrong_password_raises_auth_error(socks5d, users_file, echo):
    srv = socks5d("--auth", "userpass", "--users", users_file)
    with pytest.raises(socks.ProxyError) as err:
        pysocks_echo(srv.addr, echo.addr, ("alice", "not-her-password"), size=10)
    # PySocks wraps the RFC 1929 failure (server answered 01 01).
    assert isinstance(err.value.socket_err, socks.SOCKS5AuthError), repr(err.value)


# ---------------------------------------------------------------- proxychains4


@pytest.mark.parametrize("auth", [False, True], ids=["noauth", "userpass"])
@pytest.mark.parametrize("host", ["127.0.0.1", "proxied.localhost."])
def test_proxychains_runs_curl_through_proxy(proxy, http_servers, tmp_path, host, auth):
    conf = tmp_path / "proxychains.conf"
    cred = f" {ALICE[0]} {ALICE[1]}" if auth else ""
    conf.write_text("strict_chain\nproxy_dns\ntcp_read_time_out 15000\n"
                    "tcp_connect_time_out 8000\n"
                    f"[ProxyList]\nsocks5 127.0.0.1 {proxy.port}{cred}\n")
    timeout = scaled(15)
    r = subprocess.run(["proxychains4", "-q", "-f", str(conf), "curl", "-sS", "--max-time",
                        str(int(timeout)), f"http://{host}:{http_servers.port}/pc"],
                       capture_output=True, env=proxy_env(), timeout=timeout + 5)
    assert r.returncode == 0, r.stderr.decode()
    assert r.stdout == HTTP_BODY
    (line,) = proxy.wait_access(1)
    assert line["rep"] == "0"
    assert line["user"] == (ALICE[0] if auth else "-")
    assert int(line["down"]) > len(HTTP_BODY)
    # For the name, proxy_dns must hand it to the proxy unresolved. (The
    # trailing dot keeps curl from resolving *.localhost by itself; socks5d
    # answers *.localhost with loopback without DNS.) The log shows the name
    # as rules and resolver saw it: without the trailing dot.
    assert line["dst"] == f"{host.rstrip('.')}:{http_servers.port}"
