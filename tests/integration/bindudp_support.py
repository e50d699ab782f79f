"""Helpers for test_bind_udp.py: the socks5d process, SOCKS5 wire helpers,
UDP echo/sink servers and bounded polling.

Self-contained on purpose (conftest.py belongs to the core tests): nothing
here is a pytest fixture, so names cannot clash with theirs.
"""

import ipaddress
import json
import os
import random
import select
import signal
import socket
import struct
import subprocess
import threading
import time

from harness import BIN, SANITIZER_MARKERS, machine_config_guard, scaled

HERE = os.path.dirname(os.path.abspath(__file__))


# Every wait in the suite is bounded by one of these.
START_TIMEOUT = scaled(10.0)  # server start
STOP_TIMEOUT = 20.0           # SIGTERM to exit (shutdown grace is 3 s)
IO_TIMEOUT = scaled(5.0)      # one socket operation
NODE_TIMEOUT = scaled(30.0)   # one node script run

REP_SUCCEEDED = 0x00
REP_NOT_ALLOWED = 0x02
REP_TTL_EXPIRED = 0x06

CMD_CONNECT, CMD_BIND, CMD_UDP = 1, 2, 3


# ---------------------------------------------------------------- polling


def wait_until(pred, timeout, what, interval=0.01):
    """Polls pred() until it returns a true value (returned) or fails the test
    after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError("timed out after %.1fs waiting for %s" % (timeout, what))
        time.sleep(interval)


def fd_count(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def stable_fd_count(pid, timeout=IO_TIMEOUT, settle=0.1):
    """The process's fd count once it has not changed for `settle` seconds."""
    deadline = time.monotonic() + timeout
    last, since = fd_count(pid), time.monotonic()
    while True:
        time.sleep(0.01)
        now = fd_count(pid)
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= settle:
            return now
        if time.monotonic() >= deadline:
            raise AssertionError("fd count of %d never settled (last %d)" % (pid, now))


def wait_fd_count(pid, expected, timeout=2 * IO_TIMEOUT):
    counts = []

    def back():
        counts.append(fd_count(pid))
        return counts[-1] == expected

    try:
        wait_until(back, timeout, "fd count %d" % expected)
    except AssertionError:
        raise AssertionError(
            "proxy fd count stayed at %d, expected %d (fds: %s)"
            % (counts[-1], expected, describe_fds(pid))
        ) from None


def describe_fds(pid):
    out = []
    base = "/proc/%d/fd" % pid
    for name in sorted(os.listdir(base), key=int):
        try:
            out.append("%s->%s" % (name, os.readlink(os.path.join(base, name))))
        except OSError:
            pass
    return ", ".join(out)


# ---------------------------------------------------------------- ports


def _ephemeral_range():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            lo, hi = map(int, f.read().split())
            return lo, hi
    except (OSError, ValueError):
        return 32768, 60999


def free_port(host, kind=socket.SOCK_STREAM):
    """A port free on host, picked below the ephemeral range: a machine whose
    ephemeral ports are all taken (a load test next door) cannot starve the
    listeners, and outgoing connections never land on our ports."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    lo, _ = _ephemeral_range()
    top = max(lo - 1, 20000)
    for _ in range(200):
        port = random.randint(max(10000, top - 12000), top)
        with socket.socket(family, kind) as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
            return port
    raise AssertionError("no free port found on %s" % host)


def listen_spec(host, port):
    return "[%s]:%d" % (host, port) if ":" in host else "%s:%d" % (host, port)


# ---------------------------------------------------------------- the server


class Socks5d:
    """One socks5d process. stderr (logs and sanitizer reports) goes to a file."""

    def __init__(self, workdir, args=(), hosts=("127.0.0.1",), name="socks5d"):
        self.workdir = str(workdir)
        self.args = list(args)
        self.hosts = list(hosts)
        self.log_path = os.path.join(self.workdir, name + ".stderr")
        self.proc = None
        self.ports = {}
        self.exit_code = None

    # -- lifecycle

    def start(self):
        assert os.access(BIN, os.X_OK), "SOCKS5D_BIN %s is not an executable" % BIN
        last = ""
        for _ in range(5):  # a picked port can be taken before we bind it
            self.ports = {h: free_port(h) for h in self.hosts}
            cmd = [BIN, "--shutdown-grace", "3s"] + machine_config_guard(self.args, self.workdir)
            for h in self.hosts:
                cmd += ["-l", listen_spec(h, self.ports[h])]
            cmd += self.args
            with open(self.log_path, "ab") as err:
                self.proc = subprocess.Popen(
                    cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err
                )
            ready = self._wait_ready()
            if ready:
                return self
            last = self.log()
            if "in use" not in last:
                break
        raise AssertionError("socks5d did not start: %s\n%s" % (self.args, last))

    def _wait_ready(self):
        want = len(self.hosts)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.log().count(" listening on ") >= want:
                return True
            if self.proc.poll() is not None:
                self.exit_code = self.proc.returncode
                return False
            time.sleep(0.01)
        self.proc.kill()
        self.proc.wait(STOP_TIMEOUT)
        raise AssertionError("socks5d not listening after %.0fs:\n%s" % (START_TIMEOUT, self.log()))

    def stop(self):
        """SIGTERM by PID, bounded wait. Returns a list of problems (empty: clean)."""
        problems = []
        if self.proc is None:
            return problems
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(STOP_TIMEOUT)
                problems.append("socks5d did not exit within %.0fs of SIGTERM" % STOP_TIMEOUT)
        self.exit_code = self.proc.returncode
        if self.exit_code != 0:
            problems.append("socks5d exited with %s after SIGTERM" % self.exit_code)
        log = self.log()
        for marker in SANITIZER_MARKERS:
            if marker in log:
                problems.append("sanitizer report (%r) in %s" % (marker, self.log_path))
        if problems:
            problems.append("--- server stderr (tail) ---\n" + log[-6000:])
        self.proc = None
        return problems

    # -- introspection

    @property
    def pid(self):
        return self.proc.pid

    def addr(self, host=None):
        host = host or self.hosts[0]
        return (host, self.ports[host])

    def log(self):
        try:
            with open(self.log_path, "r", errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def access_lines(self):
        return [line for line in self.log().splitlines() if line.startswith("time=")]

    def wait_access_line(self, needle, timeout=IO_TIMEOUT):
        """The access-log line containing every string in needle, as a dict."""
        needles = [needle] if isinstance(needle, str) else list(needle)

        def find():
            for line in self.access_lines():
                if all(n in line for n in needles):
                    return line
            return None

        return parse_access_line(wait_until(find, timeout, "access log line with %s" % needles))


def parse_access_line(line):
    fields = {}
    for tok in line.split(" "):
        if "=" in tok:
            k, v = tok.split("=", 1)
            fields.setdefault(k, v)
    return fields


def make_users_file(workdir, users):
    """users: {name: password} -> path of a users file made by `socks5d passwd`."""
    lines = []
    for name, password in users.items():
        out = subprocess.run(
            [BIN, "passwd", name], input=(password + "\n").encode(), capture_output=True,
            timeout=30, check=True,
        )
        line = out.stdout.decode().strip()
        assert line.startswith(name + ":"), "unexpected passwd output: %r" % line
        lines.append(line)
    path = os.path.join(str(workdir), "users")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


# ---------------------------------------------------------------- SOCKS5 wire


def family_of(host):
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def encode_addr(host, port):
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        name = host.encode()
        return bytes([3, len(name)]) + name + struct.pack("!H", port)
    if ip.version == 4:
        return b"\x01" + ip.packed + struct.pack("!H", port)
    return b"\x04" + ip.packed + struct.pack("!H", port)


def recv_exact(sock, n, timeout=IO_TIMEOUT):
    sock.settimeout(timeout)
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("connection closed after %d of %d bytes" % (len(buf), n))
        buf += chunk
    return buf


def read_addr(sock):
    atyp = recv_exact(sock, 1)[0]
    if atyp == 1:
        host = str(ipaddress.ip_address(recv_exact(sock, 4)))
    elif atyp == 4:
        host = str(ipaddress.ip_address(recv_exact(sock, 16)))
    elif atyp == 3:
        host = recv_exact(sock, recv_exact(sock, 1)[0]).decode()
    else:
        raise AssertionError("bad ATYP %d in reply" % atyp)
    (port,) = struct.unpack("!H", recv_exact(sock, 2))
    return host, port


def read_reply(sock):
    """(REP, (host, port)) of a SOCKS5 reply."""
    ver, rep, _rsv = recv_exact(sock, 3)
    assert ver == 5, "reply version %d" % ver
    return rep, read_addr(sock)


def socks_open(proxy, user=None, password=None, source=None):
    """TCP connection to the proxy with the method negotiation (and
    username/password sub-negotiation) done."""
    s = socket.socket(family_of(proxy[0]), socket.SOCK_STREAM)
    try:
        s.settimeout(IO_TIMEOUT)
        if source:
            s.bind((source, 0))
        s.connect(proxy)
        if user is None:
            s.sendall(b"\x05\x01\x00")
            assert recv_exact(s, 2) == b"\x05\x00"
        else:
            s.sendall(b"\x05\x01\x02")
            assert recv_exact(s, 2) == b"\x05\x02"
            u, p = user.encode(), password.encode()
            s.sendall(bytes([1, len(u)]) + u + bytes([len(p)]) + p)
            assert recv_exact(s, 2) == b"\x01\x00", "authentication refused"
        return s
    except BaseException:
        s.close()
        raise


def socks_request(sock, cmd, host, port):
    sock.sendall(bytes([5, cmd, 0]) + encode_addr(host, port))
    return read_reply(sock)


def udp_associate(proxy, dst=None, user=None, password=None):
    """(control socket, relay address) of a new association."""
    if dst is None:
        dst = ("::", 0) if ":" in proxy[0] else ("0.0.0.0", 0)
    ctrl = socks_open(proxy, user, password)
    rep, relay = socks_request(ctrl, CMD_UDP, dst[0], dst[1])
    if rep != REP_SUCCEEDED:
        ctrl.close()
        raise AssertionError("UDP ASSOCIATE refused with REP %d" % rep)
    return ctrl, relay


def udp_header(host, port, frag=0):
    return b"\x00\x00" + bytes([frag]) + encode_addr(host, port)


def udp_wrap(host, port, data, frag=0):
    return udp_header(host, port, frag) + data


def udp_unwrap(dgram):
    """(host, port, data) of a datagram from the relay."""
    assert len(dgram) >= 10 and dgram[:3] == b"\x00\x00\x00", "bad relay header %r" % dgram[:8]
    atyp = dgram[3]
    if atyp == 1:
        host, off = str(ipaddress.ip_address(dgram[4:8])), 8
    elif atyp == 4:
        host, off = str(ipaddress.ip_address(dgram[4:20])), 20
    else:
        raise AssertionError("relay used ATYP %d" % atyp)
    (port,) = struct.unpack("!H", dgram[off:off + 2])
    return host, port, dgram[off + 2:]


def rst_close(sock):
    """Closes with a reset (SO_LINGER 0) instead of a FIN."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def udp_socket(host, port=0, rcvbuf=None):
    s = socket.socket(family_of(host), socket.SOCK_DGRAM)
    if rcvbuf:
        try:
            s.setsockopt(socket.SOL_SOCKET, 33, rcvbuf)  # SO_RCVBUFFORCE (root)
        except OSError:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.bind((host, port))
    s.settimeout(IO_TIMEOUT)
    return s


def nothing_pending(sock):
    """True when sock has no datagram/bytes queued right now."""
    r, _, _ = select.select([sock], [], [], 0)
    return not r


def peer_closed(sock, timeout=IO_TIMEOUT):
    """Waits for the other side to close sock (EOF or reset); False if it stays open."""
    sock.settimeout(timeout)
    try:
        while True:
            data = sock.recv(4096)
            if not data:
                return True
    except (ConnectionResetError, ConnectionAbortedError):
        return True
    except socket.timeout:
        return False


# ---------------------------------------------------------------- UDP targets


class UdpPeer:
    """A UDP target in a thread: records every datagram (data, source) and,
    if echo, sends it straight back."""

    def __init__(self, host, echo=True):
        self.sock = udp_socket(host, rcvbuf=8 << 20)
        self.addr = self.sock.getsockname()[:2]
        self.echo = echo
        self.received = []
        self.cond = threading.Condition()
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop = True
        self._thread.join(IO_TIMEOUT)
        self.sock.close()

    def _run(self):
        while not self._stop:
            r, _, _ = select.select([self.sock], [], [], 0.05)
            if not r:
                continue
            try:
                data, src = self.sock.recvfrom(70000)
            except OSError:
                continue
            with self.cond:  # recorded before the echo leaves: a test that got
                self.received.append((data, src[:2]))  # the echo sees it here
                self.cond.notify_all()
            if self.echo:
                try:
                    self.sock.sendto(data, src)
                except OSError:
                    pass

    def wait_for(self, data, timeout=IO_TIMEOUT):
        """Waits until `data` was received; returns everything received so far."""
        with self.cond:
            ok = self.cond.wait_for(lambda: any(d == data for d, _ in self.received), timeout)
            assert ok, "target never got %r (got %r)" % (data[:40], [d[:40] for d, _ in self.received])
            return list(self.received)

    def wait_count(self, n, timeout=IO_TIMEOUT):
        with self.cond:
            ok = self.cond.wait_for(lambda: len(self.received) >= n, timeout)
            assert ok, "target got %d datagrams, expected %d" % (len(self.received), n)
            return list(self.received)

    def datas(self):
        with self.cond:
            return [d for d, _ in self.received]


# ---------------------------------------------------------------- node


def run_node(script, params, timeout=NODE_TIMEOUT):
    """Runs js/<script> with a JSON argument; returns the JSON it prints."""
    if not os.path.isdir(os.path.join(HERE, "node_modules", "socks")):
        raise AssertionError("npm package 'socks' missing: run `npm ci` in tests/integration")
    proc = subprocess.run(
        ["node", os.path.join(HERE, "js", script), json.dumps(params)],
        cwd=HERE, capture_output=True, timeout=timeout,
    )
    out = proc.stdout.decode(errors="replace").strip().splitlines()
    assert proc.returncode == 0 and out, "node %s failed (rc %s)\nstdout: %s\nstderr: %s" % (
        script, proc.returncode, "\n".join(out), proc.stderr.decode(errors="replace"))
    return json.loads(out[-1])


def same_ip(a, b):
    return ipaddress.ip_address(a) == ipaddress.ip_address(b)
