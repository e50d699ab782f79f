"""The proxies under test: how to start each on a loopback port, and stop it."""
import os
import random
import signal
import socket
import subprocess
import time
import warnings

from . import procstat

USER, PASSWORD = "bench", "benchpw"
START_TIMEOUT_S = 5.0
STOP_TIMEOUT_S = 12.0  # socks5d drains for up to --shutdown-grace (10 s)


class ServerError(Exception):
    """A server could not be started."""


class Spec:
    """A server under test. features: what it supports beyond CONNECT.
    forward: a plain TCP forwarder (no SOCKS) to the scenario's target."""

    def __init__(self, name, features, note, forward=False):
        self.name = name
        self.features = features
        self.note = note
        self.forward = forward

    @property
    def direct(self):
        return self.name == "direct"


SPECS = {
    "direct": Spec("direct", {"udp"}, "no proxy: the loopback limit of the load generator"),
    "socks5d": Spec("socks5d", {"auth", "domain", "udp", "idle", "route6"}, "bin/socks5d -w 2 -q"),
    "microsocks": Spec("microsocks", {"auth", "domain", "idle"},
                       "Debian microsocks, one thread per connection; no UDP; compares "
                       "passwords in plaintext (no hash, so crr-auth-nocache costs it "
                       "nothing extra); it logs "
                       "every connection to stderr and has no option to stop (the log goes "
                       "to a file in bench/out)"),
    "dante": Spec("dante", {"domain", "udp", "idle"},
                  "Debian dante-server, danted -N 2 (two main processes that fork "
                  "negotiate/request/io children as needed); auth needs system users: n/a"),
    "haproxy": Spec("haproxy", set(),
                    "HAProxy 2.6, mode tcp, nbthread 2, a plain forwarder to the scenario's "
                    "target: no SOCKS handshake; the floor for relaying on this machine, not a "
                    "SOCKS server", forward=True),
}


# SOCKS5D_BEFORE=PATH adds "before": an earlier socks5d binary run exactly as
# socks5d is, so one run compares a change with what it changes.
BEFORE = os.environ.get("SOCKS5D_BEFORE")
if BEFORE:
    SPECS["before"] = Spec("before", {"auth", "domain", "udp", "idle"},
                           f"{BEFORE} -w 2 -q (SOCKS5D_BEFORE)")


def ephemeral_low():
    with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
        return int(f.read().split()[0])


# loadgen's targets (loadgen -T) take their ports from below the servers'
# range, so that a server started later never takes a target's port.
TARGET_PORTS = (4000, 10000)


def free_port(count=1, lo=10000, hi=None):
    """The first of count consecutive loopback ports that are free right
    now, picked at random in [lo, hi) (hi: the ephemeral range's start):
    after crr runs, TIME_WAIT sockets of the proxies' outgoing connections
    hold most ephemeral ports of 127.0.0.1."""
    hi = hi or ephemeral_low()
    for _ in range(200):
        port = bind_all(random.randrange(lo, hi - count) if hi > lo + 1000 else 0, count)
        if port:
            return port
    raise ServerError(f"no {count} consecutive free loopback ports")


def bind_all(port, count):
    """port (0: any) and the count - 1 after it if all are free now: the
    first one's number, else None."""
    socks = []
    try:
        for i in range(count):
            s = socket.socket()
            socks.append(s)
            s.bind(("127.0.0.1", port + i))
            port = port or s.getsockname()[1]
        return port
    except OSError:
        return None
    finally:
        for s in socks:
            s.close()


def users_file(root, out):
    """Write the socks5d users file: from `socks5d passwd` when it works,
    else a SHA-512 crypt hash, which the same crypt(3) accepts."""
    path = os.path.join(out, "users")
    line = ""
    try:
        r = subprocess.run([os.path.join(root, "bin/socks5d"), "passwd", USER],
                           input=PASSWORD + "\n", capture_output=True, text=True, timeout=10)
        if r.returncode == 0 and r.stdout.startswith(USER + ":"):
            line = r.stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        pass
    if not line:
        # Imported only here: crypt is deprecated (gone in Python 3.13) and
        # needed only while `socks5d passwd` is missing.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            import crypt
            line = f"{USER}:{crypt.crypt(PASSWORD, crypt.mksalt(crypt.METHOD_SHA512))}"
    with open(path, "w") as f:
        f.write(line + "\n")
    return path


def command(name, port, auth, root, out, extra=(), target_port=None):
    """argv for server name on port, with or without user/password auth.
    microsocks compares the password in plaintext and caches nothing, so its
    "uncached" run is its only auth run. haproxy forwards port and port + 1
    to target_port and target_port + 1."""
    if name in ("socks5d", "before"):
        binary = BEFORE if name == "before" else os.path.join(root, "bin/socks5d")
        argv = [binary, "-l", f"127.0.0.1:{port}", "-w", "2", "-q"]
        if auth:
            argv += ["--auth", "userpass", "--users", users_file(root, out)]
        if auth == "uncached":
            argv += ["--auth-cache-ttl", "0"]
        return argv + list(extra)
    if name == "microsocks":
        argv = ["microsocks", "-i", "127.0.0.1", "-p", str(port)]
        return argv + (["-u", USER, "-P", PASSWORD] if auth else [])
    if name == "dante":
        return ["/usr/sbin/danted", "-f", dante_config(port, root, out), "-N", "2"]
    if name == "haproxy":
        # -db: stay in the foreground, so that stop() ends it by its PID.
        return ["/usr/sbin/haproxy", "-db", "-f", haproxy_config(port, target_port, root, out)]
    raise ValueError(f"unknown server {name}")


def dante_config(port, root, out):
    """bench/danted.conf.in with the port filled in, written to out/."""
    with open(os.path.join(root, "bench/danted.conf.in")) as f:
        text = f.read().replace("@PORT@", str(port))
    path = os.path.join(out, f"danted-{port}.conf")
    with open(path, "w") as f:
        f.write(text)
    return path


def haproxy_config(port, target_port, root, out):
    """bench/haproxy.cfg.in with the ports filled in, written to out/."""
    if target_port is None:
        raise ServerError("haproxy needs the run's target port")
    shift = target_port - port
    with open(os.path.join(root, "bench/haproxy.cfg.in")) as f:
        text = f.read().replace("@PORT@", str(port)).replace("@PORT2@", str(port + 1))
    path = os.path.join(out, f"haproxy-{port}.cfg")
    with open(path, "w") as f:
        f.write(text.replace("@SHIFT@", f"{shift:+d}"))
    return path


def wait_listening(proc, port):
    """Until the port accepts connections, at most START_TIMEOUT_S."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServerError(f"exited with status {proc.returncode} at start")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise ServerError(f"not listening on port {port} after {START_TIMEOUT_S} s")


def route6_env(out):
    """socks5d's environment for the route scenarios: a hosts file (c-ares
    reads $CARES_HOSTS) giving the IPv6 target's name its address."""
    from .scenarios import ROUTE6_NAME, ROUTE6_TARGET
    path = os.path.join(out, "hosts6")
    with open(path, "w") as f:
        f.write(f"{ROUTE6_TARGET} {ROUTE6_NAME}\n")
    return dict(os.environ, CARES_HOSTS=path)


class Running:
    """A started server process; stop() ends it and every process it forked.
    extra: arguments added to socks5d's command line (route scenarios).
    target_port: where loadgen's targets listen (loadgen -T), for haproxy."""

    def __init__(self, name, auth, root, out, extra=(), target_port=None):
        self.name, self.auth = name, auth
        # syscounts.py runs "before" without its SPECS entry.
        self.forward = name in SPECS and SPECS[name].forward
        # A forwarder has a port per target: fair has two.
        self.port = free_port(2 if self.forward else 1)
        argv = command(name, self.port, auth, root, out, extra, target_port)
        tag = f"-auth-{auth}" if auth else ""
        self.log_path = os.path.join(out, f"{name}{tag}-{self.port}.log")
        with open(self.log_path, "w") as log:
            try:
                self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                             stderr=subprocess.STDOUT,
                                             env=route6_env(out) if extra else None)
            except OSError as e:
                raise ServerError(f"cannot run {argv[0]}: {e.strerror}") from e
        try:
            wait_listening(self.proc, self.port)
        except ServerError:
            self.stop()
            raise
        self.pid = self.proc.pid

    def alive(self):
        return self.proc.poll() is None

    def stop(self):
        """SIGTERM, then SIGKILL after STOP_TIMEOUT_S; descendants left
        behind (Dante's children) are killed by their PIDs."""
        family = procstat.tree(self.proc.pid) if self.alive() else []
        if self.alive():
            self.proc.terminate()
            try:
                self.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(STOP_TIMEOUT_S)
        for pid in family[1:]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def log_tail(self, lines=5):
        try:
            with open(self.log_path) as f:
                return " | ".join(f.read().strip().splitlines()[-lines:])
        except OSError:
            return ""
