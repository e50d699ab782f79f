"""Helpers for the socks5d integration tests: the server process, target
servers (echo, HTTP, a bare listener), raw SOCKS5 wire helpers, network
namespaces and access-log parsing.

Every wait here has a deadline; nothing sleeps blindly. Times are scaled by
SLOW, which is larger when the binary under test is a sanitizer build.
"""
import ctypes
import errno
import http.server
import itertools
import os
import random
import re
import selectors
import signal
import socket
import struct
import subprocess
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BIN = os.environ.get("SOCKS5D_BIN") or str(REPO / "bin" / "socks5d")
# Sanitizer builds (ASan+UBSan, TSan) run several times slower: stretch every deadline.
SLOW = 4.0 if "asan" in BIN or "tsan" in BIN else 1.0
MACHINE_CONFIG = "/etc/socks5d/socks5d.conf"  # read by default when it exists
SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                     "WARNING: ThreadSanitizer")

# A known HTTP body: 100 KiB of fixed pseudo-random bytes.
HTTP_BODY = random.Random(1928).randbytes(100 * 1024)

USERS = {"alice": "secret", "bob": "p@ss w0rd:with#odd chars"}


def beyond_loopback_args():
    """Extra options a listener beyond loopback needs when the suite runs as
    root: the server refuses that unless told to drop privileges or to allow
    root (--allow-root)."""
    return ["--allow-root"] if os.geteuid() == 0 else []


def machine_config_guard(args, workdir):
    """The options that keep this machine's own /etc/socks5d/socks5d.conf out
    of a test run whose args name no config file."""
    if not os.path.exists(MACHINE_CONFIG) or {"-c", "--config"} & set(args):
        return []
    empty = Path(workdir) / "empty.conf"
    empty.write_text("")
    return ["-c", str(empty)]


def scaled(seconds):
    return seconds * SLOW


def wait_until(pred, timeout, interval=0.01, what="condition"):
    """Polls pred() until it returns a truthy value; returns it, or raises
    AssertionError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.1f}s waiting for {what}")
        time.sleep(interval)


# Listening ports are drawn below the kernel's ephemeral range, so that a
# machine whose ephemeral ports are exhausted by other load (a benchmark
# holding tens of thousands of connections) can still run the suite.
_PORT_RNG = random.Random()


def _port_candidates():
    try:
        lo = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        lo = 32768
    lo = max(lo, 10000)
    for _ in range(100):
        yield _PORT_RNG.randrange(10000, lo) if lo > 10000 else 0
    yield 0  # let the kernel choose


def bind_socket(host="127.0.0.1", port=None, v6only=True):
    """A TCP socket bound to host on a free port (or on `port`)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    last = None
    for p in ([port] if port is not None else _port_candidates()):
        s = socket.socket(family, socket.SOCK_STREAM)
        if family == socket.AF_INET6 and v6only:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        try:
            s.bind((host, p))
            return s
        except OSError as e:
            s.close()
            last = e
    raise last


def free_port(host="127.0.0.1"):
    with bind_socket(host) as s:
        return s.getsockname()[1]


def proxy_env():
    """The environment without proxy variables, so curl & co. cannot bypass
    or redirect the proxy under test."""
    return {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}


# --------------------------------------------------------------------------
# network namespaces


class NetNS:
    """A private network namespace holding only an up loopback interface.
    Nothing sent inside it can leave the machine. It is held open by a
    sleeping child made with `unshare --net` (no mount needed, so it works in
    a chroot too); processes join it with nsenter and sockets for it are made
    by a thread that joined it (a socket keeps the namespace it was created
    in, whichever thread uses it later).

    `env` ({NAME: value}) is the environment of the processes started
    through exec_prefix (e.g. LOCALDOMAIN for the resolver's search list).
    No mount namespace: that cannot be made private inside a chroot."""

    def __init__(self, env=None):
        self.env = dict(env or {})
        self.holder = subprocess.Popen(["unshare", "--net", "sleep", "infinity"])
        self.path = f"/proc/{self.holder.pid}/ns/net"
        try:
            wait_until(self._entered, scaled(5), what="the namespace holder to start")
            subprocess.run(self.exec_prefix + ["ip", "link", "set", "lo", "up"], check=True,
                           capture_output=True)
        except Exception:
            self.close()
            raise

    def _entered(self):
        try:
            return os.readlink(self.path) != os.readlink("/proc/self/ns/net")
        except OSError:
            return False

    @property
    def exec_prefix(self):
        env = ["env"] + [f"{k}={v}" for k, v in self.env.items()] if self.env else []
        return ["nsenter", f"--net={self.path}", *env]

    def socket(self, family=socket.AF_INET, kind=socket.SOCK_STREAM):
        out = {}

        def run():
            libc = ctypes.CDLL(None, use_errno=True)
            fd = os.open(self.path, os.O_RDONLY)
            try:
                if libc.setns(fd, 0x40000000) != 0:  # CLONE_NEWNET
                    out["err"] = OSError(ctypes.get_errno(), "setns")
                    return
            finally:
                os.close(fd)
            out["sock"] = socket.socket(family, kind)

        t = threading.Thread(target=run)
        t.start()
        t.join()
        if "err" in out:
            raise out["err"]
        return out["sock"]

    def close(self):
        self.holder.kill()
        self.holder.wait()


# --------------------------------------------------------------------------
# the server process


class Socks5d:
    """One socks5d process. stderr (the error and access logs) goes to a file
    that is checked for sanitizer reports when the fixture tears it down.

    `netns` is a launch hook, not only for NetNS: any object with
    `exec_prefix` (a command list prepended to argv, which must exec the
    server so that the PID stays the server's) and `socket(family)` (makes
    the client sockets that reach the server) will do."""

    _ids = itertools.count()

    def __init__(self, args, workdir, listen=None, netns=None, binary=BIN):
        self.args = list(args)
        self.workdir = Path(workdir)
        self.netns = netns
        self.binary = binary
        self.proc = None
        self.returncode = None
        self.listen = listen  # list of "host:port" strings, or None: pick a v4 port
        self.log_path = None
        self.start_failed = False

    # ---- life cycle

    def start(self, timeout=None):
        timeout = timeout or scaled(10)
        for attempt in range(5):
            listen = self.listen
            if listen is None:
                self.port = free_port()
                listen = [f"127.0.0.1:{self.port}"]
            else:
                self.port = int(listen[0].rsplit(":", 1)[1])
            self.listen_addrs = listen
            argv = [self.binary] + machine_config_guard(self.args, self.workdir)
            for a in listen:
                argv += ["-l", a]
            argv += self.args
            self.argv = argv
            n = next(self._ids)
            self.log_path = self.workdir / f"socks5d-{n}.stderr"
            self.out_path = self.workdir / f"socks5d-{n}.stdout"
            with open(self.log_path, "wb") as err, open(self.out_path, "wb") as out:
                prefix = self.netns.exec_prefix if self.netns else []
                self.proc = subprocess.Popen(prefix + argv, stdin=subprocess.DEVNULL, stdout=out,
                                             stderr=err)
            self.pid = self.proc.pid
            try:
                self._wait_ready(timeout)
                return self
            except AssertionError:
                self.start_failed = True
                raise
            except _PortInUse:
                self.proc.wait(5)
                if self.listen is not None:
                    raise AssertionError(f"socks5d could not bind {listen}:\n{self.log()}")
                continue
        raise AssertionError("could not find a free port for socks5d")

    def _wait_ready(self, timeout):
        quiet = "-q" in self.args or "--quiet" in self.args
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                log = self.log()
                if "Address already in use" in log:
                    raise _PortInUse()
                raise AssertionError(
                    f"socks5d exited with {self.proc.returncode} at start-up:\n{log}")
            if quiet:
                # No info log: a connection that sends nothing is a probe the
                # server neither serves nor logs.
                try:
                    s = self.socket()
                    s.settimeout(0.5)
                    s.connect(self.addr)
                    s.close()
                    return
                except OSError:
                    pass
            elif self.log().count(" listening on ") >= len(self.listen_addrs):
                return
            time.sleep(0.01)
        raise AssertionError(f"socks5d not ready after {timeout:.1f}s:\n{self.log()}")

    def signal(self, sig=signal.SIGTERM):
        self.proc.send_signal(sig)

    def wait(self, timeout):
        """Waits for exit; returns the exit code or raises AssertionError."""
        try:
            self.returncode = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"socks5d (pid {self.pid}) still running after {timeout:.1f}s")
        return self.returncode

    def stop(self, timeout=None):
        """SIGTERM, then the exit code (must come within `timeout`)."""
        if self.proc.poll() is None:
            self.signal(signal.SIGTERM)
        return self.wait(timeout or scaled(5))

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def alive(self):
        return self.proc.poll() is None

    # ---- inspection

    @property
    def addr(self):
        host = self.listen_addrs[0].rsplit(":", 1)[0].strip("[]")
        if host in ("0.0.0.0",):
            host = "127.0.0.1"
        elif host == "::":
            host = "::1"
        return (host, self.port)

    def log(self):
        try:
            return self.log_path.read_bytes().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def sanitizer_reports(self):
        log = self.log()
        return [m for m in SANITIZER_MARKERS if m in log]

    def access_lines(self):
        return [parse_access(l) for l in self.log().splitlines() if l.startswith("time=")]

    def wait_access(self, n, timeout=None, pred=None):
        """Waits for at least n access-log lines (matching pred) and returns
        all matching ones."""
        timeout = timeout or scaled(5)

        def got():
            lines = [l for l in self.access_lines() if pred is None or pred(l)]
            return lines if len(lines) >= n else None

        try:
            return wait_until(got, timeout, what=f"{n} access-log line(s)")
        except AssertionError:
            raise AssertionError(f"expected {n} access-log line(s); log:\n{self.log()}")

    def fd_count(self):
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    # ---- clients

    def socket(self, family=None):
        family = family or (socket.AF_INET6 if ":" in self.addr[0] else socket.AF_INET)
        if self.netns:
            return self.netns.socket(family)
        return socket.socket(family, socket.SOCK_STREAM)

    def connect(self, timeout=None):
        s = self.socket()
        s.settimeout(timeout or scaled(5))
        s.connect(self.addr)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return s


class _PortInUse(Exception):
    pass


_ACCESS_RE = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|\S*)')


def parse_access(line):
    d = {}
    for k, v in _ACCESS_RE.findall(line):
        if v.startswith('"'):
            v = v[1:-1]
        d[k] = v
    d["_line"] = line
    return d


# --------------------------------------------------------------------------
# target servers


class UdpEcho:
    """A UDP echo peer in a thread; `received` lists (source, data) of what
    came in."""

    def __init__(self, host="127.0.0.1"):
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.sock.settimeout(0.1)
        self.addr = self.sock.getsockname()[:2]
        self.received = []
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self):
        while not self._stop.is_set():
            try:
                data, src = self.sock.recvfrom(65536)
            except socket.timeout:
                continue
            except OSError:
                return
            self.received.append((src, data))
            try:
                self.sock.sendto(data, src)
            except OSError:
                pass

    def close(self):
        self._stop.set()
        self._t.join(5)
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class EchoServer:
    """Selector-based TCP echo server in one thread. Echoes everything and,
    after the client's EOF, flushes what is left and shuts down its write
    side, then closes."""

    def __init__(self, host="127.0.0.1", port=0):
        self.lsock = bind_socket(host, port or None)
        self.lsock.listen(1024)
        self.lsock.setblocking(False)
        self.host = host
        self.port = self.lsock.getsockname()[1]
        self.accepted = 0
        self.open = 0
        self._sel = selectors.DefaultSelector()
        self._stop_r, self._stop_w = socket.socketpair()
        self._sel.register(self.lsock, selectors.EVENT_READ, None)
        self._sel.register(self._stop_r, selectors.EVENT_READ, "stop")
        self._conns = {}
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    @property
    def addr(self):
        return (self.host, self.port)

    def _run(self):
        while True:
            for key, events in self._sel.select():
                if key.data == "stop":
                    return
                if key.fileobj is self.lsock:
                    self._accept()
                else:
                    self._service(key.fileobj, events)

    def _accept(self):
        while True:
            try:
                c, _ = self.lsock.accept()
            except BlockingIOError:
                return
            c.setblocking(False)
            self.accepted += 1
            self.open += 1
            self._conns[c] = {"buf": bytearray(), "eof": False}
            self._sel.register(c, selectors.EVENT_READ, "conn")

    def _close(self, c):
        self._sel.unregister(c)
        del self._conns[c]
        c.close()
        self.open -= 1

    def _service(self, c, events):
        st = self._conns.get(c)
        if st is None:
            return
        try:
            if events & selectors.EVENT_READ and not st["eof"]:
                data = c.recv(262144)
                if data:
                    st["buf"] += data
                else:
                    st["eof"] = True
            if st["buf"]:
                n = c.send(st["buf"])
                del st["buf"][:n]
        except BlockingIOError:
            pass
        except OSError:
            self._close(c)
            return
        if st["eof"] and not st["buf"]:
            try:
                c.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            self._close(c)
            return
        want = (0 if st["eof"] or len(st["buf"]) > 4 << 20 else selectors.EVENT_READ) | (
            selectors.EVENT_WRITE if st["buf"] else 0)
        self._sel.modify(c, want, "conn")

    def close(self):
        self._stop_w.send(b"x")
        self._thread.join(10)
        for c in list(self._conns):
            c.close()
        self.lsock.close()
        self._stop_r.close()
        self._stop_w.close()
        self._sel.close()


class _HTTPHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.server.hits.append((self.client_address[0], self.path))
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(HTTP_BODY)))
        self.end_headers()
        self.wfile.write(HTTP_BODY)

    def log_message(self, *args):
        pass


class _HTTPServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256

    def __init__(self, addr, family):
        self.address_family = family
        self.hits = []
        super().__init__(addr, _HTTPHandler, bind_and_activate=False)
        if family == socket.AF_INET6:
            self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        self.server_bind()
        self.server_activate()


class HTTPServers:
    """The same HTTP service on 127.0.0.1 and [::1], on one port number, so
    that `localhost` reaches it whichever family is tried first."""

    def __init__(self):
        for _ in range(50):
            try:
                v4 = _HTTPServer(("127.0.0.1", free_port()), socket.AF_INET)
            except OSError:
                continue
            port = v4.server_address[1]
            try:
                v6 = _HTTPServer(("::1", port), socket.AF_INET6)
                break
            except OSError:
                v4.server_close()
        else:
            raise RuntimeError("no port free on both 127.0.0.1 and ::1")
        self.port = port
        self.v4, self.v6 = v4, v6
        self.threads = [threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.05},
                                         daemon=True) for s in (v4, v6)]
        for t in self.threads:
            t.start()

    def close(self):
        for s in (self.v4, self.v6):
            s.shutdown()
            s.server_close()


class Target:
    """A bare listening socket whose accepted connections the test drives
    itself (half-close, idle, BND checks)."""

    def __init__(self, host="127.0.0.1"):
        self.lsock = bind_socket(host)
        self.lsock.listen(64)
        self.host = host
        self.port = self.lsock.getsockname()[1]
        self.conns = []

    @property
    def addr(self):
        return (self.host, self.port)

    def accept(self, timeout=None):
        self.lsock.settimeout(timeout or scaled(5))
        c, _ = self.lsock.accept()
        c.settimeout(scaled(5))
        self.conns.append(c)
        return c

    def close(self):
        for c in self.conns:
            c.close()
        self.lsock.close()


def full_backlog_listener():
    """A loopback listener that never completes a handshake: with backlog 0
    its accept queue holds one connection; once one connection fills it (and
    is never accepted) the kernel drops every further SYN, so a connect to it
    hangs until the connector gives up. This is a deterministic stand-in for
    an unreachable host that never needs traffic off the machine."""
    lsock = bind_socket("127.0.0.1")
    lsock.listen(0)
    filler = socket.create_connection(lsock.getsockname(), timeout=scaled(5))
    # Prove the trick works on this kernel: a further connect must hang.
    probe = socket.socket()
    probe.setblocking(False)
    assert probe.connect_ex(lsock.getsockname()) == errno.EINPROGRESS
    time.sleep(0.3)  # the property under test is "still not connected after a while"
    assert probe.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0
    try:
        probe.getpeername()
        raise AssertionError("full-backlog trick failed: a further connect completed")
    except OSError:
        pass  # still in SYN_SENT
    finally:
        probe.close()
    return lsock, filler


def syn_sent_to(port, host="127.0.0.1"):
    """How many local sockets are in SYN-SENT towards host:port."""
    r = subprocess.run(["ss", "-tanH", "state", "syn-sent", "dst", f"{host}:{port}"],
                       capture_output=True, text=True, timeout=10)
    return len(r.stdout.splitlines())


# --------------------------------------------------------------------------
# SOCKS5 on the wire


def greeting(methods=(0x00,)):
    return bytes([5, len(methods), *methods])


def userpass(user, password):
    u, p = user.encode(), password.encode()
    return bytes([1, len(u)]) + u + bytes([len(p)]) + p


def request(host, port, cmd=1, ver=5):
    """A request for (host, port): IPv4 and IPv6 literals become ATYP 1 and
    4, anything else a domain (ATYP 3)."""
    for fam, atyp in ((socket.AF_INET, 1), (socket.AF_INET6, 4)):
        try:
            a = socket.inet_pton(fam, host)
            return bytes([ver, cmd, 0, atyp]) + a + struct.pack(">H", port)
        except (OSError, TypeError):
            pass
    name = host.encode() if isinstance(host, str) else host
    return bytes([ver, cmd, 0, 3, len(name)]) + name + struct.pack(">H", port)


def recv_exact(sock, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise EOFError(f"connection closed after {len(buf)} of {n} bytes: {bytes(buf)!r}")
        buf += chunk
    return bytes(buf)


def read_reply(sock):
    """Reads one CONNECT reply; returns (rep, bnd_host, bnd_port, raw)."""
    head = recv_exact(sock, 4)
    assert head[0] == 5, f"reply VER is {head[0]}, not 5: {head!r}"
    assert head[2] == 0, f"reply RSV is {head[2]}, not 0: {head!r}"
    atyp = head[3]
    if atyp == 1:
        raw = recv_exact(sock, 6)
        host = socket.inet_ntop(socket.AF_INET, raw[:4])
    elif atyp == 4:
        raw = recv_exact(sock, 18)
        host = socket.inet_ntop(socket.AF_INET6, raw[:16])
    elif atyp == 3:
        ln = recv_exact(sock, 1)
        raw = ln + recv_exact(sock, ln[0] + 2)
        host = raw[1:-2].decode()
    else:
        raise AssertionError(f"reply has unknown ATYP {atyp}: {head!r}")
    port = struct.unpack(">H", raw[-2:])[0]
    return head[1], host, port, head + raw


def read_until_closed(sock, timeout):
    """Reads until EOF (or a reset); returns everything read. Raises
    AssertionError when the peer does not close within `timeout`."""
    sock.settimeout(timeout)
    data = bytearray()
    deadline = time.monotonic() + timeout
    while True:
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            raise AssertionError(f"connection still open after {timeout:.1f}s "
                                 f"(received {bytes(data[:64])!r})")
        except ConnectionResetError:
            return bytes(data)
        if not chunk:
            return bytes(data)
        data += chunk
        sock.settimeout(max(0.01, deadline - time.monotonic()))


def assert_closed_without_data(sock, timeout=None):
    data = read_until_closed(sock, timeout or scaled(3))
    assert data == b"", f"expected the server to close without a reply, got {data!r}"


def handshake(sock, host, port, auth=None):
    """Greeting (+ RFC 1929 when auth=(user, pass)) and CONNECT, one message
    at a time; returns the reply tuple of read_reply."""
    sock.sendall(greeting((0x02,) if auth else (0x00,)))
    m = recv_exact(sock, 2)
    assert m == (b"\x05\x02" if auth else b"\x05\x00"), f"method reply {m!r}"
    if auth:
        sock.sendall(userpass(*auth))
        r = recv_exact(sock, 2)
        assert r == b"\x01\x00", f"auth reply {r!r}"
    sock.sendall(request(host, port))
    return read_reply(sock)


def open_tunnel(server, host, port, auth=None, timeout=None):
    s = server.connect(timeout)
    rep = handshake(s, host, port, auth)
    assert rep[0] == 0, f"CONNECT to {host}:{port} answered REP {rep[0]}"
    return s


def echo_roundtrip(sock, payload):
    sock.sendall(payload)
    return recv_exact(sock, len(payload))
