"""Logs as an attacker uses them: a log sink that stops reading must not
stall tunnels (lines queue per worker, then are dropped and counted), and
log files must not be a way for the run user to have root write elsewhere
(a link at the path, a directory the run user can write). Reopening after
the privilege drop keeps working.

The privilege tests need root (CI runs as root).

Run: /usr/bin/python3 -m pytest -q tests/integration/test_attack_logs.py
"""
import fcntl
import os
import pwd
import select
import shutil
import signal
import tempfile
import threading
import time

import pytest

from harness import free_port, open_tunnel, scaled, wait_until
from ops_support import metric, parse_metrics, scrape
from security_support import echo_ok, run_expect_exit

F_SETPIPE_SZ = 1031
NOBODY = pwd.getpwnam("nobody")
DROPPED = "socks5d_log_lines_dropped_total"


def need_root():
    if os.geteuid() != 0:
        pytest.fail("the log privilege tests must run as root (as CI does)")


class StuckFifo:
    """A FIFO with a reader that reads nothing until told to, and a pipe
    buffer of one page: a log sink that fills almost at once."""

    def __init__(self, path):
        self.path = path
        os.mkfifo(path, 0o600)
        self.fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        fcntl.fcntl(self.fd, F_SETPIPE_SZ, 4096)
        self.data = bytearray()
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.thread = None

    def start_reading(self):
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        while not self.done.is_set():
            r, _, _ = select.select([self.fd], [], [], 0.05)
            if not r:
                continue
            try:
                chunk = os.read(self.fd, 65536)
            except BlockingIOError:
                continue
            with self.lock:
                self.data += chunk

    def text(self):
        with self.lock:
            return self.data.decode("utf-8", "replace")

    def close(self):
        self.done.set()
        if self.thread:
            self.thread.join(5)
        os.close(self.fd)


@pytest.fixture
def fifo(tmp_path):
    f = StuckFifo(tmp_path / "log.fifo")
    yield f
    f.close()


def dropped(mport):
    return metric(parse_metrics(scrape(mport)), DROPPED)


def flood_until_dropped(mport, one_session, limit=4000):
    """Runs sessions one after another until the server counts a dropped
    log line (bounded in count and time). Each session has its own socket
    deadlines, so a worker stuck on the log fails here, not by hanging."""
    deadline = time.monotonic() + scaled(60)
    for i in range(limit):
        one_session()
        if i % 100 == 99 and dropped(mport) > 0:
            return i + 1
        assert time.monotonic() < deadline, f"no dropped line after {i + 1} sessions"
    raise AssertionError(f"no dropped log line counted after {limit} sessions")


def test_access_log_sink_nobody_reads_stalls_no_tunnel_and_drops_are_counted(
        fifo, socks5d, echo):
    mport = free_port()
    srv = socks5d("--auth", "none", "--workers", "1", "--access-log", str(fifo.path),
                  "--metrics", f"127.0.0.1:{mport}")

    def session():
        with open_tunnel(srv, *echo.addr) as s:
            echo_ok(s, b"x" * 64)

    flood_until_dropped(mport, session)
    # The pipe is full and nobody reads it: a new tunnel on the same (only)
    # worker still answers, well before any timeout (socket deadlines 5 s).
    before = dropped(mport)
    t0 = time.monotonic()
    with open_tunnel(srv, *echo.addr) as s:
        echo_ok(s, b"still served while the log is stuck")
    assert time.monotonic() - t0 < scaled(5)
    # That session's line found the buffer full too: counted, not waited for.
    wait_until(lambda: dropped(mport) > before, scaled(5), what="the dropped line to be counted")
    # Once the FIFO is read, lines flow again: a new session's line arrives.
    fifo.start_reading()
    wait_until(lambda: fifo.text().count("\n") > 100, scaled(10), what="queued lines")
    with open_tunnel(srv, *echo.addr) as s:
        echo_ok(s, b"after the reader came back")
        port = s.getsockname()[1]
    wait_until(lambda: f"client=127.0.0.1:{port} " in fifo.text(), scaled(10),
               what="the access line of a session made after reading resumed")


def test_error_log_sink_nobody_reads_stalls_no_tunnel_and_drops_are_counted(
        fifo, socks5d, echo):
    """A flood of connections beyond max-sessions writes one debug line
    each; the tunnel already open must keep relaying all the while."""
    mport = free_port()
    srv = socks5d("-q", "--log-level", "debug", "--auth", "none", "--workers", "1",
                  "--max-sessions", "1", "--error-log", str(fifo.path),
                  "--metrics", f"127.0.0.1:{mport}")
    held = wait_until(lambda: _tunnel_or_none(srv, echo), scaled(5), what="the one tunnel")

    def refused_connection():
        s = srv.connect()
        try:
            assert s.recv(16) == b"", "a connection over max-sessions was served"
        except ConnectionResetError:
            pass
        finally:
            s.close()

    try:
        flood_until_dropped(mport, refused_connection)
        t0 = time.monotonic()
        echo_ok(held, b"the open tunnel still relays")
        refused_connection()  # and the worker still accepts and answers
        assert time.monotonic() - t0 < scaled(5)
        fifo.start_reading()
        wait_until(lambda: "limit 1 reached" in fifo.text(), scaled(10), what="queued lines")
        srv.signal(signal.SIGHUP)
        wait_until(lambda: "configuration reloaded" in fifo.text(), scaled(10),
                   what="a line logged after reading resumed")
    finally:
        held.close()


def _tunnel_or_none(srv, echo):
    """The readiness probe of -q may still hold the only session slot."""
    try:
        return open_tunnel(srv, *echo.addr)
    except (OSError, EOFError):
        return None


# ---------------------------------------------------------------- log files


@pytest.fixture
def world_dir():
    """A directory every user can traverse (tmp_path sits under a 0700
    directory of root's), owned by root and writable by root only."""
    d = tempfile.mkdtemp(prefix="s5d-logs-")
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.mark.parametrize("which", ["--error-log", "--access-log"])
def test_symlink_at_the_log_path_is_refused_at_start_and_by_check(socks5d_bin, world_dir, which):
    victim = os.path.join(world_dir, "victim")
    with open(victim, "w") as f:
        f.write("precious\n")
    link = os.path.join(world_dir, "socks5d.log")
    os.symlink(victim, link)
    base = ["-l", f"127.0.0.1:{free_port()}", "--auth", "none", which, link]
    for args in (base + ["-t"], base):
        r = run_expect_exit(socks5d_bin, *args)
        assert r.returncode == 2, (args, r.returncode, r.stdout, r.stderr)
        assert link in r.stderr and "symbolic link" in r.stderr, r.stderr
    with open(victim) as f:
        assert f.read() == "precious\n"


@pytest.mark.parametrize("owner,mode", [("user", 0o755), ("group", 0o775), ("others", 0o777)],
                         ids=["owned-by-user", "group-writable", "world-writable"])
def test_log_directory_writable_by_the_run_user_is_refused_as_root(socks5d_bin, world_dir,
                                                                   owner, mode):
    """The run user could swap the file for a link to /etc/shadow before
    root opens it at the next start."""
    need_root()
    logs = os.path.join(world_dir, "logs")
    os.mkdir(logs)
    os.chown(logs, NOBODY.pw_uid if owner == "user" else 0,
             NOBODY.pw_gid if owner == "group" else 0)
    os.chmod(logs, mode)
    path = os.path.join(logs, "access.log")
    base = ["-l", f"127.0.0.1:{free_port()}", "--auth", "none", "--user", "nobody",
            "--access-log", path]
    for args in (base + ["-t"], base):
        r = run_expect_exit(socks5d_bin, *args)
        assert r.returncode == 2, (args, r.returncode, r.stdout, r.stderr)
        assert f"directory {logs} is writable by user nobody" in r.stderr, r.stderr
    assert not os.path.exists(path), "the file was opened all the same"


def test_log_directory_only_root_can_write_is_accepted(socks5d_bin, socks5d, world_dir, echo):
    need_root()
    path = os.path.join(world_dir, "access.log")
    r = run_expect_exit(socks5d_bin, "-l", f"127.0.0.1:{free_port()}", "--auth", "none",
                        "--user", "nobody", "--access-log", path, "-t")
    assert r.returncode == 0 and "configuration OK" in r.stdout, (r.returncode, r.stderr)
    srv = socks5d("--auth", "none", "--user", "nobody", "--access-log", path)
    with open_tunnel(srv, *echo.addr) as s:
        echo_ok(s, b"logged")
    wait_until(lambda: "client=" in open(path).read(), scaled(5), what="an access line")


def _session(srv, echo):
    """One tunnel; returns the text that marks its access line."""
    with open_tunnel(srv, *echo.addr) as s:
        echo_ok(s, b"x")
        return f"client=127.0.0.1:{s.getsockname()[1]} "


def _landed(key, *paths):
    """The file among paths that got the line marked key."""
    def find():
        for p in paths:
            if os.path.exists(p) and key in open(p).read():
                return p
        return None
    return wait_until(find, scaled(5), what=f"the line {key!r} in {paths}")


def test_sigusr1_reopens_log_files_after_the_drop_to_the_run_user(socks5d, world_dir, echo):
    """Root opens the file at start; after the drop SIGUSR1 reopens it as
    nobody: in place, and after a logrotate-style rotation that creates the
    new file with the old one's owner and mode."""
    need_root()
    path, old = os.path.join(world_dir, "access.log"), os.path.join(world_dir, "access.log.1")
    srv = socks5d("--auth", "none", "--user", "nobody", "--access-log", path)
    first = _session(srv, echo)
    assert _landed(first, path) == path
    # Reopen in place: the same file keeps growing.
    srv.signal(signal.SIGUSR1)
    second = _session(srv, echo)
    assert _landed(second, path) == path
    # Rotation as logrotate's `create` does it (owner, group, mode of the old).
    st = os.stat(path)
    os.rename(path, old)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, st.st_mode & 0o7777)
    os.fchown(fd, st.st_uid, st.st_gid)
    os.close(fd)
    srv.signal(signal.SIGUSR1)
    # The log thread reopens soon after the signal: sessions until then may
    # still land in the old file; one after it lands in the new one.
    wait_until(lambda: _landed(_session(srv, echo), path, old) == path, scaled(10),
               what="a session line in the new file")
    text = open(old).read()
    assert first in text and second in text
    assert f"reopen {path}: " not in srv.log(), srv.log()  # no failure to reopen
    assert f"reopened {path}" in srv.log(), srv.log()


def test_sigterm_writes_every_queued_line_before_exit(socks5d, tmp_path, echo):
    """Lines still queued for the log thread at shutdown are written, not
    lost: one access line per session, none missing, right after exit."""
    path = tmp_path / "access.log"
    srv = socks5d("--auth", "none", "--workers", "2", "--access-log", str(path))
    keys = [_session(srv, echo) for _ in range(300)]
    assert srv.stop() == 0
    text = path.read_text()
    assert text.count("\n") == 300
    missing = [k for k in keys if k not in text]
    assert not missing, missing[:5]
