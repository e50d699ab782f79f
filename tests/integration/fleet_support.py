"""Support for test_fleet.py: a fleet of socks5d nodes behind a real HAProxy
(Debian's haproxy, run in the foreground as a child process), clients bound
to chosen loopback source addresses, a UDP echo server, Prometheus scraping
and "which process owns this socket" lookups in /proc.

Linux routes all of 127.0.0.0/8 to lo, so each node listens on an address of
its own (127.0.0.11, 127.0.0.12, ...) and clients connect from others
(127.0.0.50, 127.0.0.51): the real client, HAProxy (127.0.0.1) and each node
are told apart by address alone. Every wait has a deadline.
"""
import csv
import io
import os
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from harness import (HTTP_BODY, free_port, greeting, proxy_env, read_reply, recv_exact, request,
                     scaled, wait_until,
                     UdpEcho)

HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"

CLIENT_IP = "127.0.0.50"       # "the real client"
OTHER_CLIENT_IP = "127.0.0.51"  # a second client, for the rule test
HAPROXY_IP = "127.0.0.1"       # where HAProxy listens and connects from

# HAProxy health checks: every CHECK_INTER_MS, down after CHECK_FALL failures.
CHECK_INTER_MS = 200
CHECK_FALL = 2
CHECK_RISE = 1


def log(msg):
    """A measurement, printed for the report (shown with pytest -s, or
    with the failure output)."""
    print(f"[fleet] {msg}", flush=True)


# --------------------------------------------------------------------------
# HAProxy


_HAPROXY_CFG = """\
global
    nbthread 1
    maxconn 512
    stats socket {stats_sock} mode 600 level admin
    stats timeout 10s

defaults
    mode tcp
    timeout connect {t_connect}ms
    timeout client {t_client}ms
    timeout server {t_client}ms
    timeout check {t_check}ms
    retries 2
    option redispatch

frontend socks_in
    bind {host}:{port}
    default_backend socks_nodes

backend socks_nodes
    balance roundrobin
    default-server {send_proxy} check inter {inter}ms fall {fall} rise {rise}
{servers}
"""


class HAProxy:
    """One haproxy process (`haproxy -db -f CFG`) in TCP mode: a frontend on
    127.0.0.1:FREE and a round-robin backend of `servers` ({name: (host,
    port)}) with `send-proxy-v2` (version "v2") or `send-proxy` ("v1") and
    health checks. Its state is read from the stats socket."""

    def __init__(self, workdir, servers, version="v2"):
        assert version in ("v1", "v2")
        self.workdir = Path(workdir)
        self.servers = dict(servers)
        self.version = version
        self.proc = None
        # A unix socket path must stay short: not under pytest's tmp_path.
        self._sockdir = tempfile.mkdtemp(prefix="s5dhap-")
        self.stats_sock = os.path.join(self._sockdir, "stats.sock")
        self.log_path = self.workdir / f"haproxy-{version}.log"
        self.cfg_path = self.workdir / f"haproxy-{version}.cfg"

    def _config(self, port):
        servers = "\n".join(f"    server {name} {host}:{p}"
                            for name, (host, p) in self.servers.items())
        return _HAPROXY_CFG.format(
            stats_sock=self.stats_sock, host=HAPROXY_IP, port=port,
            send_proxy="send-proxy-v2" if self.version == "v2" else "send-proxy",
            t_connect=int(scaled(2) * 1000), t_client=int(scaled(30) * 1000),
            t_check=int(scaled(1) * 1000), inter=CHECK_INTER_MS, fall=CHECK_FALL,
            rise=CHECK_RISE, servers=servers)

    def start(self):
        assert os.access(HAPROXY, os.X_OK), (
            f"{HAPROXY} not found: install Debian's haproxy (scripts/install-deps.sh test)")
        last = ""
        for _ in range(5):
            self.port = free_port(HAPROXY_IP)
            self.cfg_path.write_text(self._config(self.port))
            if os.path.exists(self.stats_sock):
                os.unlink(self.stats_sock)
            with open(self.log_path, "ab") as out:
                self.proc = subprocess.Popen([HAPROXY, "-db", "-f", str(self.cfg_path)],
                                             stdin=subprocess.DEVNULL, stdout=out, stderr=out)
            self.pid = self.proc.pid
            try:
                self._wait_ready(scaled(10))
                return self
            except _Retry as e:
                last = str(e)
                continue
            except BaseException:
                self.stop()
                raise
        raise AssertionError(f"haproxy could not start:\n{last}")

    def _wait_ready(self, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                text = self.log()
                if "cannot bind socket" in text or "Address already in use" in text:
                    raise _Retry(text)
                raise AssertionError(f"haproxy exited with {self.proc.returncode} at start-up:\n"
                                     f"{text}\n--- config ---\n{self.cfg_path.read_text()}")
            try:
                st = self.stats()
            except OSError:
                time.sleep(0.02)
                continue
            # Ready when every server has passed a health check.
            if all(st.get(n, {}).get("status") == "UP" and
                   st.get(n, {}).get("check_status") == "L4OK" for n in self.servers):
                return
            time.sleep(0.02)
        raise AssertionError(f"haproxy not ready (servers UP and checked) after {timeout:.1f}s:"
                             f"\n{self.log()}")

    @property
    def addr(self):
        return (HAPROXY_IP, self.port)

    def log(self):
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def command(self, cmd, timeout=None):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout or scaled(3))
        try:
            s.connect(self.stats_sock)
            s.sendall(cmd.encode() + b"\n")
            data = bytearray()
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        finally:
            s.close()
        return data.decode(errors="replace")

    def stats(self):
        """{server name: row of `show stat`} for the backend's servers."""
        text = self.command("show stat")
        lines = text.splitlines()
        if not lines or not lines[0].startswith("# "):
            raise OSError(f"unexpected `show stat` answer: {text[:200]!r}")
        lines[0] = lines[0][2:]
        rows = csv.DictReader(io.StringIO("\n".join(lines)))
        return {r["svname"]: r for r in rows if r["pxname"] == "socks_nodes"}

    def status(self, name):
        return self.stats()[name]["status"]

    def stop(self):
        """Stops haproxy by its PID (SIGTERM: immediate stop), bounded."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(scaled(5))
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        shutil.rmtree(self._sockdir, ignore_errors=True)
        return self.proc.returncode


class _Retry(Exception):
    pass


# --------------------------------------------------------------------------
# the fleet


class Node:
    def __init__(self, name, ip, srv, metrics_port):
        self.name, self.ip, self.srv, self.metrics_port = name, ip, srv, metrics_port

    def __repr__(self):
        return f"<node {self.name} {self.ip}:{self.srv.port} pid {self.srv.pid}>"

    @property
    def addr(self):
        return (self.ip, self.srv.port)

    def metrics(self):
        return scrape(self.ip, self.metrics_port)

    def healthz(self):
        return http_status(f"http://{self.ip}:{self.metrics_port}/healthz")

    def access(self, pred=None):
        return [l for l in self.srv.access_lines() if pred is None or pred(l)]


def start_node(socks5d, name, ip, args=(), trusted="127.0.0.1/32", grace="2s"):
    """A socks5d on ip:FREE with the PROXY protocol on its listener, trusting
    `trusted`, advertising its own listen address, with --metrics on
    ip:FREE. Returns a Node once the metrics endpoint answers."""
    port = free_port(ip)
    metrics_port = free_port(ip)
    srv = socks5d("--auth", "none", "--proxy-protocol", "--proxy-protocol-from", trusted,
                  "--advertise", ip, "--metrics", f"{ip}:{metrics_port}", *args,
                  listen=[f"{ip}:{port}"], grace=grace)
    node = Node(name, ip, srv, metrics_port)
    wait_until(lambda: _answers(node), scaled(5), what=f"metrics of {node}")
    return node


def _answers(node):
    try:
        return node.metrics() is not None
    except OSError:
        return False


class Fleet:
    """Nodes a (127.0.0.11) and b (127.0.0.12) behind one HAProxy."""

    NODE_IPS = {"a": "127.0.0.11", "b": "127.0.0.12"}

    def __init__(self, socks5d, workdir, version="v2", node_args=(), grace="2s"):
        self.version = version
        self.nodes = {name: start_node(socks5d, name, ip, node_args, grace=grace)
                      for name, ip in self.NODE_IPS.items()}
        self.haproxy = HAProxy(workdir, {n: node.addr for n, node in self.nodes.items()},
                               version).start()

    @property
    def addr(self):
        return self.haproxy.addr

    def node_at(self, ip):
        (node,) = [n for n in self.nodes.values() if n.ip == ip]
        return node

    def close(self):
        return self.haproxy.stop()


# --------------------------------------------------------------------------
# clients


def client_socket(src_ip, timeout=None):
    """A TCP socket bound to src_ip (any port)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout or scaled(5))
    s.bind((src_ip, 0))
    return s


def connect_from(src_ip, addr, timeout=None):
    s = client_socket(src_ip, timeout)
    try:
        s.connect(addr)
    except OSError:
        s.close()
        raise
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def tunnel_from(src_ip, addr, host, port):
    """A CONNECT tunnel through addr from src_ip; returns (sock, bnd_host,
    bnd_port)."""
    s = connect_from(src_ip, addr)
    try:
        s.sendall(greeting((0x00,)))
        assert recv_exact(s, 2) == b"\x05\x00"
        s.sendall(request(host, port))
        rep, bnd_host, bnd_port, _ = read_reply(s)
        assert rep == 0, f"CONNECT {host}:{port} answered REP {rep}"
    except BaseException:
        s.close()
        raise
    return s, bnd_host, bnd_port


def echo_ok(sock, payload):
    sock.sendall(payload)
    return recv_exact(sock, len(payload)) == payload


def udp_associate_from(src_ip, addr, client_udp_port):
    """UDP ASSOCIATE through addr from src_ip, naming src_ip:client_udp_port.
    Returns (control sock, bnd_host, bnd_port)."""
    s = connect_from(src_ip, addr)
    try:
        s.sendall(greeting((0x00,)))
        assert recv_exact(s, 2) == b"\x05\x00"
        s.sendall(request(src_ip, client_udp_port, cmd=3))
        rep, bnd_host, bnd_port, _ = read_reply(s)
        assert rep == 0, f"UDP ASSOCIATE answered REP {rep}"
    except BaseException:
        s.close()
        raise
    return s, bnd_host, bnd_port


def udp_wrap(host, port, data):
    return b"\x00\x00\x00\x01" + socket.inet_aton(host) + struct.pack(">H", port) + data


def udp_unwrap(dgram):
    """(host, port, payload) of an IPv4 SOCKS5 UDP datagram."""
    assert dgram[:3] == b"\x00\x00\x00" and dgram[3] == 1, f"bad UDP header {dgram[:10]!r}"
    return socket.inet_ntoa(dgram[4:8]), struct.unpack(">H", dgram[8:10])[0], dgram[10:]


def udp_roundtrip(usock, relay, target, payload, timeout=None):
    """Sends payload to target through the relay until the answer comes
    (UDP may lose a datagram; loopback practically never does). Returns
    (from_host, from_port, data) of the answer, as unwrapped."""
    timeout = timeout or scaled(5)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        usock.sendto(udp_wrap(target[0], target[1], payload), relay)
        usock.settimeout(min(1.0, max(0.05, deadline - time.monotonic())))
        try:
            data, src = usock.recvfrom(65535)
        except socket.timeout:
            continue
        assert src == relay, f"answer from {src}, not from the relay {relay}"
        return udp_unwrap(data)
    raise AssertionError(f"no UDP answer through {relay} within {timeout:.1f}s")


def run_curl(args, timeout=None):
    timeout = timeout or scaled(15)
    return subprocess.run(["curl", "-sS", "--noproxy", "", "--max-time", str(int(timeout)),
                           *args], capture_output=True, env=proxy_env(), timeout=timeout + 5)


def curl_via(addr, src_ip, url):
    return run_curl(["--interface", src_ip, "--socks5-hostname", f"{addr[0]}:{addr[1]}", url])


def pysocks_get(addr, src_ip, host, port, path):
    """GET http://host:port/path with PySocks through addr (remote DNS), the
    client socket bound to src_ip. Returns the body."""
    import socks  # Debian python3-socks (PySocks)
    s = socks.socksocket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(scaled(10))
    try:
        s.set_proxy(socks.SOCKS5, addr[0], addr[1], rdns=True)
        s.bind((src_ip, 0))  # a TCP socksocket binds like a plain socket
        s.connect((host, port))
        s.sendall(f"GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
        data = bytearray()
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    finally:
        s.close()
    head, _, body = bytes(data).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 200") or head.startswith(b"HTTP/1.1 200"), head[:100]
    return body


# --------------------------------------------------------------------------
# metrics


OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # no proxy from env


def http_status(url, timeout=None):
    try:
        with OPENER.open(url, timeout=timeout or scaled(3)) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def scrape(host, port, timeout=None):
    """{'name{labels}': value} from a Prometheus text exposition."""
    with OPENER.open(f"http://{host}:{port}/metrics", timeout=timeout or scaled(3)) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        key, _, value = line.rpartition(" ")
        out[key] = float(value)
    return out


def handshake_failures(m):
    return {k: v for k, v in m.items() if k.startswith("socks5d_handshake_failures_total")}


def metric_delta(before, after, prefix):
    keys = {k for k in list(before) + list(after) if k.startswith(prefix)}
    return sum(after.get(k, 0) - before.get(k, 0) for k in keys)


# --------------------------------------------------------------------------
# /proc: which process holds a socket


def _socket_inodes(pid):
    inodes = set()
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return inodes
    for fd in fds:
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:["):
            inodes.add(int(link[8:-1]))
    return inodes


def _hex_addr(h):
    ip, port = h.split(":")
    return socket.inet_ntoa(struct.pack("<I", int(ip, 16))), int(port, 16)


def proc_sockets(kind):
    """(local (ip, port), remote (ip, port), inode) of the IPv4 `kind`
    ('tcp' or 'udp') sockets of this network namespace."""
    with open(f"/proc/net/{kind}") as f:
        next(f)
        for line in f:
            fields = line.split()
            yield _hex_addr(fields[1]), _hex_addr(fields[2]), int(fields[9])


def owner(nodes, kind, local=None, remote=None):
    """The node whose process holds the `kind` socket matching local and/or
    remote ((ip or None, port or None)); None if no node does."""
    def match(want, have):
        return want is None or all(w is None or w == h for w, h in zip(want, have))

    inodes = {s[2] for s in proc_sockets(kind) if match(local, s[0]) and match(remote, s[1])}
    inodes.discard(0)
    found = [n for n in nodes if _socket_inodes(n.srv.pid) & inodes]
    assert len(found) <= 1, f"several nodes hold the socket: {found}"
    return found[0] if found else None


def check_body(body):
    assert body == HTTP_BODY, f"body of {len(body)} bytes, not the {len(HTTP_BODY)}-byte fixture"
