"""Support for test_ops.py and test_reload.py: socks5d started from a config
file (with no -l on the command line, so the file's listeners count and a
reload can change them), config-file writing, an sd_notify receiver, a UDP
echo server, metrics scraping, and a few socket probes.

Builds on harness.py (not edited here). Every process started is stopped by
its PID at teardown; every wait has a deadline scaled by harness.scaled().
"""
import itertools
import os
import select
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

from harness import (BIN, SANITIZER_MARKERS, bind_socket, free_port, greeting, parse_access,
                     proxy_env, read_reply, recv_exact, request, scaled, userpass, wait_until,
                     UdpEcho)

GRACE = "2s"  # shutdown grace added to every server, so a teardown never waits long


class PortInUse(Exception):
    pass


# --------------------------------------------------------------------------
# the server process, started from a config file


class Daemon:
    """One socks5d process whose listeners come from its config file (or
    from socket activation). `addrs` are the "host:port" strings it is
    expected to listen on; the first is where clients connect.

    ready: "log"     -- wait for one " listening on " line per address in
                        stderr (or in `ready_log`, a file path);
           "connect" -- wait until a TCP connect to the first address works;
           a string  -- wait until that text shows in stderr;
           None      -- do not wait."""

    _ids = itertools.count()

    def __init__(self, workdir, args, addrs, binary=BIN, env=None, prefix=(), preexec_fn=None,
                 pass_fds=(), close_fds=True, ready="log", ready_log=None, grace=GRACE):
        self.workdir = Path(workdir)
        self.args = list(args)
        if grace and "--shutdown-grace" not in self.args:
            self.args += ["--shutdown-grace", grace]
        self.addrs = list(addrs)
        self.binary = binary
        self.env = env
        self.prefix = list(prefix)
        self.preexec_fn = preexec_fn
        self.pass_fds = tuple(pass_fds)
        self.close_fds = close_fds
        self.ready = ready
        self.ready_log = Path(ready_log) if ready_log else None
        self.proc = None
        self.pid = None
        self.returncode = None
        n = next(self._ids)
        self.log_path = self.workdir / f"ops-socks5d-{n}.stderr"
        self.out_path = self.workdir / f"ops-socks5d-{n}.stdout"

    @property
    def argv(self):
        return self.prefix + [self.binary] + self.args

    @property
    def addr(self):
        host, port = self.addrs[0].rsplit(":", 1)
        return (host.strip("[]"), int(port))

    @property
    def port(self):
        return self.addr[1]

    def start(self, timeout=None):
        timeout = timeout or scaled(10)
        with open(self.log_path, "wb") as err, open(self.out_path, "wb") as out:
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=err, env=self.env, preexec_fn=self.preexec_fn,
                                         pass_fds=self.pass_fds, close_fds=self.close_fds)
        self.pid = self.proc.pid
        if self.ready is None:
            return self
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.returncode = self.proc.returncode
                log = self.log()
                if "Address already in use" in log:
                    raise PortInUse(log)
                raise AssertionError(f"socks5d exited with {self.proc.returncode} at start-up:\n"
                                     f"{log}")
            if self._is_ready():
                return self
            time.sleep(0.01)
        raise AssertionError(f"socks5d not ready after {timeout:.1f}s:\n{self.log()}")

    def _is_ready(self):
        if self.ready == "log":
            text = self.log() if self.ready_log is None else _read(self.ready_log)
            return text.count(" listening on ") >= len(self.addrs)
        if self.ready == "connect":
            try:
                with socket.create_connection(self.addr, timeout=0.5):
                    return True
            except OSError:
                return False
        return self.ready in self.log()

    # ---- life cycle

    def signal(self, sig=signal.SIGTERM):
        self.proc.send_signal(sig)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def wait(self, timeout):
        try:
            self.returncode = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"socks5d (pid {self.pid}) still running after {timeout:.1f}s")
        return self.returncode

    def stop(self, timeout=None):
        if self.alive():
            self.signal(signal.SIGTERM)
        return self.wait(timeout or scaled(5))

    def kill(self):
        if self.alive():
            self.proc.kill()
            self.proc.wait(10)

    # ---- inspection

    def log(self):
        return _read(self.log_path)

    def count(self, text, path=None):
        return (self.log() if path is None else _read(path)).count(text)

    def wait_log(self, text, count=1, timeout=None, path=None):
        """Waits until `text` shows `count` times in stderr (or in `path`)."""
        timeout = timeout or scaled(5)
        try:
            wait_until(lambda: self.count(text, path) >= count, timeout,
                       what=f"{count}x {text!r} in the log")
        except AssertionError:
            raise AssertionError(f"expected {count}x {text!r} in "
                                 f"{path or 'stderr'}; stderr:\n{self.log()[-5000:]}\n"
                                 f"{path}:\n{_read(path)[-5000:] if path else ''}")

    def access_lines(self, path=None):
        text = self.log() if path is None else _read(path)
        return [parse_access(l) for l in text.splitlines() if l.startswith("time=")]

    def sanitizer_reports(self):
        return [m for m in SANITIZER_MARKERS if m in self.log()]

    # ---- clients (open_tunnel() takes a Daemon)

    def socket(self, family=None):
        family = family or (socket.AF_INET6 if ":" in self.addr[0] else socket.AF_INET)
        return socket.socket(family, socket.SOCK_STREAM)

    def connect(self, timeout=None, addr=None):
        s = self.socket()
        s.settimeout(timeout or scaled(5))
        try:
            s.connect(addr or self.addr)
        except OSError:
            s.close()
            raise
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return s


def _read(path):
    try:
        return Path(path).read_bytes().decode("utf-8", "replace")
    except FileNotFoundError:
        return ""


class Ops:
    """What the `ops` fixture hands a test: config files in its temporary
    directory, and servers that are checked and stopped at teardown."""

    def __init__(self, tmp_path, binary):
        self.dir = Path(tmp_path)
        self.binary = binary
        self.daemons = []
        self.cleanups = []

    def path(self, name):
        return self.dir / name

    def write(self, name, text):
        p = self.dir / name
        p.write_text(text)
        return p

    def conf(self, lines, name="socks5d.conf"):
        """Writes a config file from a list of lines (or one string)."""
        text = lines if isinstance(lines, str) else "\n".join(lines) + "\n"
        return self.write(name, text)

    def daemon(self, args, addrs, **kw):
        d = Daemon(self.dir, args, addrs, binary=self.binary, **kw)
        self.daemons.append(d)
        return d

    def start(self, args, addrs, **kw):
        return self.daemon(args, addrs, **kw).start()

    def start_conf(self, render, nports=1, args=(), listen=None, name="socks5d.conf", **kw):
        """render(ports) -> config text (or lines) for `nports` fresh ports;
        starts socks5d -c FILE [args] and retries with new ports if one was
        taken meanwhile. `args` and `listen` (the "host:port" list the server
        is expected to listen on; default: every port on 127.0.0.1) may be
        functions of the ports. Returns (daemon, ports, config path)."""
        for _ in range(6):
            ports = distinct_ports(nports)
            path = self.conf(render(ports), name)
            extra = args(ports) if callable(args) else list(args)
            addrs = (listen(ports) if callable(listen) else listen) or \
                [f"127.0.0.1:{p}" for p in ports]
            d = self.daemon(["-c", str(path), *extra], addrs, **kw)
            try:
                return d.start(), ports, path
            except PortInUse:
                d.returncode = "expected"
                continue
        raise AssertionError("no free ports for socks5d after 6 attempts")

    def run(self, *args, timeout=None, **kw):
        """Runs socks5d to completion (bounded); no sanitizer report allowed."""
        r = subprocess.run([self.binary, *args], capture_output=True, text=True,
                           timeout=timeout or scaled(10), **kw)
        reports = [m for m in SANITIZER_MARKERS if m in r.stderr]
        assert not reports, f"sanitizer report from socks5d {' '.join(args)}:\n{r.stderr}"
        return r

    def finish(self):
        errors = []
        for fn in reversed(self.cleanups):
            try:
                fn()
            except Exception as e:  # a cleanup failing must not hide the rest
                errors.append(f"cleanup: {e!r}")
        for d in self.daemons:
            if d.proc is None:
                continue
            mine = len(errors)
            if d.returncode is None:
                if d.alive():
                    try:
                        d.stop(scaled(5) + 3)
                    except AssertionError as e:
                        errors.append(f"{' '.join(d.argv)}: {e}")
                        d.kill()
                        d.returncode = "killed"
                else:
                    d.returncode = d.proc.returncode
            else:
                d.kill()  # a test that decided the outcome; never leave it running
            if d.returncode not in (0, "expected"):
                errors.append(f"{' '.join(d.argv)}: exit code {d.returncode} (expected 0)")
            reports = d.sanitizer_reports()
            if reports:
                errors.append(f"{' '.join(d.argv)}: sanitizer reported {reports}")
            if len(errors) > mine:
                errors.append(f"--- stderr of pid {d.pid} ---\n{d.log()[-20000:]}")
        if errors:
            pytest.fail("\n".join(errors), pytrace=False)


@pytest.fixture
def ops(socks5d_bin, tmp_path):
    o = Ops(tmp_path, socks5d_bin)
    yield o
    o.finish()


def distinct_ports(n, host="127.0.0.1"):
    ports = []
    while len(ports) < n:
        p = free_port(host)
        if p not in ports:
            ports.append(p)
    return ports


# --------------------------------------------------------------------------
# socket probes


def connect_result(addr, timeout=None):
    """'ok' when a TCP connect to addr completes, 'refused' when refused,
    else the error's name."""
    s = socket.socket(socket.AF_INET6 if ":" in addr[0] else socket.AF_INET)
    s.settimeout(timeout or scaled(2))
    try:
        s.connect(addr)
        return "ok"
    except ConnectionRefusedError:
        return "refused"
    except OSError as e:
        return type(e).__name__
    finally:
        s.close()


def refused(addr, times=8):
    """True when `times` connects in a row are refused (every worker's
    listening socket is gone)."""
    return all(connect_result(addr) == "refused" for _ in range(times))


def port_bindable(port, host="127.0.0.1"):
    """True when nothing holds host:port (a plain bind succeeds)."""
    try:
        bind_socket(host, port).close()
        return True
    except OSError:
        return False


def listening_ports(pid):
    """The TCP ports process `pid` has listening sockets on (IPv4 and IPv6)."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except FileNotFoundError:
            continue
        for row in rows:
            f = row.split()
            if f[3] == "0A" and f[9] in inodes:  # TCP_LISTEN
                ports.add(int(f[1].rsplit(":", 1)[1], 16))
    return ports


def socks_connect(server, host, port, auth=None, timeout=None):
    """Greeting (+ login), CONNECT; returns (socket, REP). The socket is left
    open for the caller (closed by it)."""
    s = server.connect(timeout)
    s.sendall(greeting((0x02,) if auth else (0x00,)))
    m = recv_exact(s, 2)
    assert m == (b"\x05\x02" if auth else b"\x05\x00"), f"method reply {m!r}"
    if auth:
        s.sendall(userpass(*auth))
        r = recv_exact(s, 2)
        assert r == b"\x01\x00", f"auth reply {r!r}"
    s.sendall(request(host, port))
    try:
        rep = read_reply(s)[0]
    except (EOFError, ConnectionResetError):
        s.close()
        raise
    return s, rep


def connect_rep(server, host, port, auth=None):
    """REP of a CONNECT to host:port (the connection is closed after)."""
    s, rep = socks_connect(server, host, port, auth)
    s.close()
    return rep


def idle_close_after(sock, timeout):
    """Seconds until the server closes an idle tunnel (EOF or reset);
    raises AssertionError if it stays open for `timeout` seconds."""
    t0 = time.monotonic()
    sock.settimeout(timeout)
    try:
        data = sock.recv(1)
    except socket.timeout:
        raise AssertionError(f"idle tunnel still open after {timeout:.1f}s")
    except ConnectionResetError:
        data = b""
    assert data == b"", f"unexpected data from an idle tunnel: {data!r}"
    return time.monotonic() - t0


# --------------------------------------------------------------------------
# sd_notify


class NotifySocket:
    """An AF_UNIX datagram socket standing in for systemd's NOTIFY_SOCKET. A
    thread keeps reading it (a full queue would block the sender). Each
    message is kept as its list of "KEY=VALUE" assignments, in order."""

    def __init__(self):
        # sun_path holds 108 bytes: keep the path short, out of tmp_path.
        self.dir = tempfile.mkdtemp(prefix="s5n", dir="/tmp")
        self.path = os.path.join(self.dir, "notify")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.messages = []  # (monotonic time, [assignments])
        self._lock = threading.Lock()
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop:
            r, _, _ = select.select([self.sock], [], [], 0.05)
            if not r:
                continue
            try:
                data = self.sock.recv(65536)
            except OSError:
                return
            with self._lock:
                self.messages.append((time.monotonic(), data.decode("utf-8", "replace")
                                      .split("\n")))

    def assignments(self):
        """Every assignment received so far, flattened, in order."""
        with self._lock:
            return [a for _, msg in self.messages for a in msg if a]

    def wait_for(self, assignment, after=0, timeout=None):
        """Waits until `assignment` (e.g. "READY=1") arrives at flattened
        index >= after; returns its index."""

        def find():
            al = self.assignments()
            for i in range(after, len(al)):
                if al[i] == assignment:
                    return i + 1  # truthy even for index 0
            return None

        try:
            return wait_until(find, timeout or scaled(5), what=assignment) - 1
        except AssertionError:
            raise AssertionError(f"no {assignment!r} after index {after}; got "
                                 f"{self.assignments()[-40:]}")

    def close(self):
        self._stop = True
        self._thread.join(5)
        self.sock.close()
        shutil.rmtree(self.dir, ignore_errors=True)


# --------------------------------------------------------------------------
# UDP


def udp_header(host, port):
    return b"\x00\x00\x00\x01" + socket.inet_aton(host) + struct.pack(">H", port)


def udp_associate(server, auth=None):
    """Opens a UDP association; returns (control socket, relay (host, port))."""
    ctl = server.connect()
    ctl.sendall(greeting((0x02,) if auth else (0x00,)))
    assert recv_exact(ctl, 2) == (b"\x05\x02" if auth else b"\x05\x00")
    if auth:
        ctl.sendall(userpass(*auth))
        assert recv_exact(ctl, 2) == b"\x01\x00"
    ctl.sendall(request("0.0.0.0", 0, cmd=3))
    rep, host, port, _ = read_reply(ctl)
    assert rep == 0, f"UDP ASSOCIATE answered REP {rep}"
    if host in ("0.0.0.0", "::"):
        host = server.addr[0]
    return ctl, (host, port)


def udp_roundtrips(relay, dst, payloads, timeout=None):
    """Sends each payload to dst through the relay and waits for its echo
    (one at a time, resending a lost datagram is not needed on loopback)."""
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.settimeout(timeout or scaled(3))
    try:
        for p in payloads:
            u.sendto(udp_header(*dst) + p, relay)
            data, _ = u.recvfrom(65536)
            assert data[:10] == udp_header(*dst), f"UDP reply header {data[:10]!r}"
            assert data[10:] == p
    finally:
        u.close()


# --------------------------------------------------------------------------
# metrics


def curl(url, *args, timeout=None):
    """curl URL -> (HTTP status, body bytes). Never goes through a proxy."""
    r = subprocess.run(["curl", "-sS", "--noproxy", "*", "--max-time", str(timeout or scaled(5)),
                        "-o", "-", "-w", "\n%{http_code}", *args, url], capture_output=True,
                       env=proxy_env(), timeout=(timeout or scaled(5)) + 5)
    body, _, code = r.stdout.rpartition(b"\n")
    assert r.returncode == 0, f"curl {url} failed ({r.returncode}): {r.stderr!r}"
    return int(code), body


def scrape(port):
    code, body = curl(f"http://127.0.0.1:{port}/metrics")
    assert code == 200, (code, body[:200])
    return body.decode()


def parse_metrics(text):
    """Every sample of a Prometheus exposition, parsed by prometheus_client:
    {(sample name, frozenset of labels): value}."""
    from prometheus_client.parser import text_string_to_metric_families
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def metric(samples, name, **labels):
    return samples.get((name, frozenset(labels.items())), 0.0)


def http_raw(port, data, timeout=None):
    """Sends raw bytes to 127.0.0.1:port and returns what comes back before
    the server closes (b"" when it resets the connection)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout or scaled(5))
    out = bytearray()
    try:
        try:
            s.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            return bytes(out)
        while True:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                return bytes(out)
            if not chunk:
                return bytes(out)
            out += chunk
    finally:
        s.close()
