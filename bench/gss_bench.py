"""GSS-API benchmark: session rate and throughput per protection level.

    /usr/bin/python3 bench/gss_bench.py [--binary bin/socks5d] [--seconds 5]

Sets up a throwaway MIT KDC (tests/integration/gss_support.py), starts
socks5d with --auth gssapi and measures, with the python3-gssapi RFC 1961
client of the tests:

- session rate: client threads each doing connect, context establishment,
  level negotiation (integrity), CONNECT to a loopback echo, a 64-byte echo
  and close, for --seconds; sessions/s and socks5d CPU (user+sys from
  /proc) per 1,000 sessions;
- throughput: one tunnel per level (none, integrity, confidentiality)
  echoing --mbytes MiB; MiB/s each way and socks5d CPU seconds per GiB.

The client is Python: it, not socks5d, is the bottleneck of the rates;
socks5d's CPU per session or per GiB is the number that compares."""
import argparse
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "integration"))

import gss_support  # noqa: E402
from harness import EchoServer, free_port  # noqa: E402


def cpu_seconds(pid):
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def one_session(port, cc, echo_addr):
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        c = gss_support.GssClient(s, cc)
        c.handshake(1)
        rep, _ = c.request(*echo_addr)
        assert rep == 0
        c.send(b"x" * 64)
        assert c.recv_exact(64) == b"x" * 64


def session_rate(pid, port, cc, echo_addr, seconds, threads):
    done = [0] * threads
    stop = time.monotonic() + seconds

    def worker(i):
        while time.monotonic() < stop:
            one_session(port, cc, echo_addr)
            done[i] += 1
    cpu0, t0 = cpu_seconds(pid), time.monotonic()
    ts = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    n, dt, cpu = sum(done), time.monotonic() - t0, cpu_seconds(pid) - cpu0
    return n / dt, cpu * 1000 / n * 1000  # sessions/s, CPU ms per 1,000


def throughput(pid, port, cc, echo_addr, level, mbytes):
    data = os.urandom(1 << 20)
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        c = gss_support.GssClient(s, cc)
        c.handshake(level)
        assert c.request(*echo_addr)[0] == 0
        cpu0, t0 = cpu_seconds(pid), time.monotonic()

        def send():
            for _ in range(mbytes):
                c.send(data)
        t = threading.Thread(target=send)
        t.start()
        c.recv_exact(mbytes << 20, timeout=300)
        t.join()
        dt, cpu = time.monotonic() - t0, cpu_seconds(pid) - cpu0
    return mbytes / dt, cpu * 1024 / mbytes


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default=str(ROOT / "bin" / "socks5d"))
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--mbytes", type=int, default=256)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="socks5d-gss-bench-") as tmp:
        realm = gss_support.Realm(Path(tmp) / "krb5").create()
        os.environ.update({k: realm.env[k] for k in ("KRB5_CONFIG", "KRB5RCACHEDIR")})
        cc = realm.kinit("alice")
        echo = EchoServer()
        port = free_port()
        srv = subprocess.Popen([a.binary, "-q", "-l", f"127.0.0.1:{port}", "--auth", "gssapi",
                                "--gssapi-keytab", realm.keytab, "--access-log", "off"],
                               stderr=open(Path(tmp) / "socks5d.stderr", "wb"))
        try:
            deadline = time.monotonic() + 10
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    assert time.monotonic() < deadline, "socks5d did not start"
                    time.sleep(0.05)
            rate, cpu_ms = session_rate(srv.pid, port, cc, echo.addr, a.seconds, a.threads)
            print(f"session rate (integrity, {a.threads} client threads): {rate:.0f} sessions/s, "
                  f"socks5d CPU {cpu_ms:.0f} ms per 1,000 sessions")
            for level, name in ((0, "none"), (1, "integrity"), (2, "confidentiality")):
                mbs, cpu_gb = throughput(srv.pid, port, cc, echo.addr, level, a.mbytes)
                print(f"throughput {name:>15}: {mbs:7.1f} MiB/s each way, "
                      f"socks5d CPU {cpu_gb:5.2f} s per GiB each way")
        finally:
            srv.terminate()
            srv.wait(10)
            echo.close()
            realm.close()


if __name__ == "__main__":
    main()
