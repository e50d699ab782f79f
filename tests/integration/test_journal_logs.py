"""Logs the way journald and syslog expect. Under systemd (JOURNAL_STREAM
naming the stderr socks5d has), every line carries its syslog priority as a
"<N>" prefix, so `journalctl -p err` finds a failed reload; a stderr that is
not that stream gets plain, timestamped lines. A syslog sink with nothing
listening on /dev/log is reported (checked in a minimal chroot holding only
the binary and its libraries, with and without a /dev/log socket)."""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time

import pytest

from harness import BIN, bind_socket, echo_roundtrip, free_port, open_tunnel, scaled, wait_until

BAD_RELOAD = "reload failed"


class Daemon:
    """socks5d -c CONF with stderr in a file and the environment given."""

    def __init__(self, tmp_path, conf_lines, env_for=None, prefix=(), binary=BIN, conf_arg=None):
        """conf_arg: the configuration's path as the server sees it (inside
        a chroot prefix); the file is tmp_path/socks5d.conf."""
        self.port = free_port()
        self.conf = tmp_path / "socks5d.conf"
        self.conf.write_text("\n".join([f"listen 127.0.0.1:{self.port}", "auth none",
                                        "workers 1", *conf_lines]) + "\n")
        self.log_path = tmp_path / "stderr"
        self.log_path.write_bytes(b"")
        st = os.stat(self.log_path)
        env = dict(os.environ)
        env.pop("JOURNAL_STREAM", None)
        if env_for:
            env.update(env_for(st))
        with open(self.log_path, "ab") as err:
            self.proc = subprocess.Popen([*prefix, binary, "-c", conf_arg or str(self.conf),
                                          "--shutdown-grace", "1s"],
                                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                         stderr=err, env=env)
        self.pid = self.proc.pid
        self.addr = ("127.0.0.1", self.port)

    def log(self):
        return self.log_path.read_text(errors="replace")

    def wait_log(self, text, count=1):
        wait_until(lambda: self.proc.poll() is not None or self.log().count(text) >= count,
                   scaled(10), what=f"{text!r} in the log")
        assert self.log().count(text) >= count, self.log()

    def connect(self, timeout=None):
        s = socket.create_connection(self.addr, timeout=timeout or scaled(5))
        return s

    def stop(self, ok=lambda code, log: code == 0):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(scaled(10))
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            raise AssertionError(f"socks5d {self.pid} did not stop:\n{self.log()}")
        assert ok(code, self.log()), self.log()


@pytest.fixture
def daemons():
    started = []
    yield started
    for d in started:
        if d.proc.poll() is None:
            d.proc.kill()
            d.proc.wait(10)


def test_under_the_journal_every_line_carries_its_priority(tmp_path, daemons, echo):
    d = Daemon(tmp_path, [], env_for=lambda st: {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"})
    daemons.append(d)
    d.wait_log(" listening on ")
    with open_tunnel(d, *echo.addr) as s:
        assert echo_roundtrip(s, b"hi") == b"hi"
    d.wait_log("<6>time=")
    lines = d.conf.read_text().splitlines()
    d.conf.write_text("\n".join(lines + ["frobnicate 1"]) + "\n")
    d.proc.send_signal(signal.SIGHUP)
    d.wait_log(BAD_RELOAD)
    d.conf.write_text("\n".join(lines) + "\n")
    d.proc.send_signal(signal.SIGHUP)
    d.wait_log("configuration reloaded")
    d.stop()
    log = d.log().splitlines()
    # What `journalctl -p err` shows: the lines with priority 0..3.
    errors = [l for l in log if l[:3] in ("<0>", "<1>", "<2>", "<3>")]
    assert any(BAD_RELOAD in l for l in errors), log
    assert any("frobnicate" in l for l in errors), log
    assert not any("configuration reloaded" in l or "listening on" in l for l in errors)
    assert all(l[:3] in ("<3>", "<4>", "<6>", "<7>") for l in log), log
    # The journal stamps lines itself.
    assert not any(l[3:7].isdigit() for l in log), log[:3]


def test_a_stderr_that_is_not_the_journal_stream_gets_plain_stamped_lines(tmp_path, daemons):
    # JOURNAL_STREAM inherited from a unit whose child redirected stderr.
    d = Daemon(tmp_path, [], env_for=lambda st: {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino + 1}"})
    daemons.append(d)
    d.wait_log(" listening on ")
    d.stop()
    log = d.log().splitlines()
    assert log and all(l[:4].isdigit() and "<" not in l[:3] for l in log), log


# ---------------------------------------------------------------- start-up errors

# What makes the start fail, and the text of its error. Configuration and log
# file errors are found before the error log exists; a held address after.
START_UP_ERRORS = {
    "directive": (lambda held: ["frobnicate 1"], "unknown directive 'frobnicate'"),
    "value": (lambda held: ["timeout-idle soon"], "expected a duration"),
    "log-file": (lambda held: ["error-log /nonexistent-socks5d-dir/error.log"],
                 "directory /nonexistent-socks5d-dir"),
    "held-address": (lambda held: [f"listen 127.0.0.1:{held}"], "by another process"),
}


@pytest.mark.parametrize("journal", [True, False], ids=["journal", "not-journal"])
@pytest.mark.parametrize("case", sorted(START_UP_ERRORS))
def test_start_up_errors_carry_the_error_priority_under_the_journal(tmp_path, daemons, case,
                                                                    journal):
    """`journalctl -p err` shows why a start failed, whatever failed: every
    line carries its priority under the journal (before, the errors found
    before the error log existed had none, so the journal filed them as
    info), and none anywhere else."""
    lines, what = START_UP_ERRORS[case]
    with bind_socket() as held:
        held.listen(1)
        env_for = (lambda st: {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}) if journal else None
        d = Daemon(tmp_path, lines(held.getsockname()[1]), env_for=env_for)
        daemons.append(d)
        assert d.proc.wait(scaled(10)) == 2, d.log()
    log = d.log().splitlines()
    errors = [l for l in log if what in l]
    assert errors, log
    if journal:
        assert all(l.startswith("<3>") for l in errors), log
        assert all(re.match(r"<[0-7]>", l) for l in log), log
    else:
        assert not any(l.startswith("<") for l in log), log


def test_check_under_the_journal_gives_errors_and_warnings_their_priorities(tmp_path):
    """`socks5d -t` runs under the journal as ExecReload=: its errors are
    <3> and its warnings <4>, as the running server's are."""
    conf = tmp_path / "check.conf"
    conf.write_text(f"listen 127.0.0.1:{free_port()}\nauth none\nuser nosuch-socks5d-user\n"
                    "allow user bob\n")
    err = tmp_path / "stderr"
    err.write_bytes(b"")
    st = os.stat(err)
    env = dict(os.environ, JOURNAL_STREAM=f"{st.st_dev}:{st.st_ino}")
    with open(err, "ab") as f:
        r = subprocess.run([BIN, "-t", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=f,
                           env=env, timeout=scaled(10))
    log = err.read_text().splitlines()
    assert r.returncode == 2, log
    assert any(l.startswith("<3>") and "user nosuch-socks5d-user: no such user" in l
               for l in log), log
    assert any(l.startswith("<4>") and "warning: rule names user bob" in l for l in log), log
    assert all(re.match(r"<[34]>", l) for l in log), log


# ---------------------------------------------------------------- syslog without /dev/log


def libraries(binary):
    out = subprocess.run(["ldd", binary], capture_output=True, text=True, timeout=10,
                         check=True).stdout
    paths = []
    for line in out.splitlines():
        parts = line.split()
        if "=>" in parts and len(parts) >= 3 and parts[2].startswith("/"):
            paths.append(parts[2])
        elif parts and parts[0].startswith("/"):
            paths.append(parts[0])
    return paths


def exit_ok(code, stderr):
    """Exit 0, or, for a sanitizer build in a root without /proc (which it
    needs to read its options and to stop the world for the leak check),
    exit 1 with no complaint but that one. Any other sanitizer report fails."""
    if code == 0:
        return True
    no_proc = "LeakSanitizer has encountered a fatal error" in stderr and "Can't open /proc/" in stderr
    others = ("ERROR: AddressSanitizer", "runtime error:", "ERROR: LeakSanitizer: detected")
    return code == 1 and no_proc and not any(o in stderr for o in others)


@pytest.fixture
def mini_root(tmp_path):
    """A directory with only socks5d and the libraries it loads: no /dev/log."""
    root = tmp_path / "root"
    for p in [os.path.realpath(BIN)] + libraries(BIN):
        dst = root / p.lstrip("/")
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(p, dst)
    (root / "dev").mkdir()
    (root / "tmp").mkdir()
    yield root, "/" + os.path.realpath(BIN).lstrip("/")


def test_syslog_sink_with_no_dev_log_says_so(mini_root):
    root, binary = mini_root
    r = subprocess.run(["chroot", str(root), binary, "-t", "--error-log", "syslog",
                        "--access-log", "syslog"], capture_output=True, text=True,
                       timeout=scaled(10))
    assert exit_ok(r.returncode, r.stderr), r.stderr
    assert "error-log syslog: nothing listens on /dev/log" in r.stderr, r.stderr
    assert "access-log syslog: nothing listens on /dev/log" in r.stderr, r.stderr


def test_syslog_sink_gets_daemon_priorities_when_dev_log_listens(mini_root, tmp_path, daemons):
    root, binary = mini_root
    dev_log = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    dev_log.bind(str(root / "dev" / "log"))
    dev_log.settimeout(0.2)
    try:
        r = subprocess.run(["chroot", str(root), binary, "-t", "--error-log", "syslog"],
                           capture_output=True, text=True, timeout=scaled(10))
        assert exit_ok(r.returncode, r.stderr) and "nothing listens on /dev/log" not in r.stderr, r.stderr
        d = Daemon(root / "tmp", ["error-log syslog", "access-log off"],
                   prefix=["chroot", str(root)], binary=binary, conf_arg="/tmp/socks5d.conf")
        daemons.append(d)
        got = []

        def received(text):
            deadline = time.monotonic() + scaled(10)
            while time.monotonic() < deadline:
                try:
                    got.append(dev_log.recv(4096).decode(errors="replace"))
                except socket.timeout:
                    pass
                if any(text in g for g in got):
                    return next(g for g in got if text in g)
            raise AssertionError(f"no syslog datagram with {text!r}: {got}\n{d.log()}")

        # daemon facility (3 << 3) + info (6) = 30, + err (3) = 27.
        assert received("listening on").startswith("<30>")
        d.conf.write_text(d.conf.read_text() + "frobnicate 1\n")
        d.proc.send_signal(signal.SIGHUP)
        assert received(BAD_RELOAD).startswith("<27>")
        d.stop(exit_ok)
        assert "nothing listens on /dev/log" not in d.log(), d.log()
    finally:
        dev_log.close()


# ---------------------------------------------------------------- JSON error log


def test_json_access_log_makes_every_stderr_line_json(tmp_path, daemons, echo):
    d = Daemon(tmp_path, ["access-log-format json"],
               env_for=lambda st: {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"})
    daemons.append(d)
    d.wait_log(" listening on ")
    with open_tunnel(d, *echo.addr) as s:
        assert echo_roundtrip(s, b"hi") == b"hi"
    lines = d.conf.read_text().splitlines()
    d.conf.write_text("\n".join(lines + ["frobnicate 1"]) + "\n")
    d.proc.send_signal(signal.SIGHUP)
    d.wait_log(BAD_RELOAD)
    d.stop()
    records = []
    for line in d.log().splitlines():
        assert line[:1] == "<" and line[2:3] == ">", line
        records.append((int(line[1]), json.loads(line[3:])))
    levels = {(p, r.get("level")) for p, r in records}
    assert (3, "error") in levels and (6, "info") in levels, levels
    assert any(p == 6 and r.get("cmd") == "connect" for p, r in records)  # the access record
    errors = [r["msg"] for p, r in records if p == 3]
    assert any("unknown directive 'frobnicate'" in m for m in errors), errors
    assert any(m.startswith(BAD_RELOAD) for m in errors), errors


def test_error_log_format_that_would_mix_on_stderr_is_refused(tmp_path):
    conf = tmp_path / "mix.conf"
    conf.write_text("access-log-format json\nerror-log-format plain\n")
    r = subprocess.run([BIN, "-t", "-c", str(conf)], capture_output=True, text=True,
                       timeout=scaled(10))
    assert r.returncode == 2, r.stdout + r.stderr
    assert "error-log-format plain and access-log-format json both write to stderr" in r.stderr
    conf.write_text("access-log-format json\nerror-log-format plain\naccess-log off\n")
    r = subprocess.run([BIN, "-t", "-c", str(conf)], capture_output=True, text=True,
                       timeout=scaled(10))
    assert r.returncode == 0, r.stderr
    r = subprocess.run([BIN, "-T", "-c", str(conf)], capture_output=True, text=True,
                       timeout=scaled(10))
    assert "error-log-format plain\n" in r.stdout, r.stdout
