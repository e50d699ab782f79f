#!/usr/bin/python3
"""Syscalls and context switches per session and per MB of socks5d binaries.

Counts, unlike wall-clock rates, do not change much with other load on the
machine: each binary is started like run.py starts socks5d, `perf stat`
counts its syscalls (raw_syscalls:sys_enter) and context switches while
bench/loadgen drives a scenario, and the totals are divided by the sessions
or bytes loadgen reports. With --strace, `strace -c -f` gives the breakdown
by syscall instead (it slows the server; the counts stay comparable).

    bench/syscounts.py --scenarios crr,tput-up-1 bin/socks5d /work/baseline/socks5d
"""
import argparse
import os
import signal
import subprocess
import sys
import time

from harness import servers
from harness.scenarios import SCENARIOS, parse_result

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LOADGEN = os.path.join(ROOT, "bench/loadgen")
OUT = os.path.join(ROOT, "bench/out")
COUNTER_TIMEOUT_S = 10


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("binaries", nargs="+", help="socks5d binaries to compare")
    p.add_argument("--scenarios", default="crr,tput-up-1,tput-down-1",
                   help="comma-separated timed scenarios of run.py")
    p.add_argument("--duration", type=float, default=2.0, help="measured seconds per run")
    p.add_argument("--strace", action="store_true", help="per-syscall breakdown (strace -c)")
    return p.parse_args()


def counter_argv(pid, use_strace):
    if use_strace:
        return ["strace", "-c", "-f", "-p", str(pid)]
    return ["perf", "stat", "-x,", "-e", "raw_syscalls:sys_enter", "-e", "context-switches",
            "-p", str(pid)]


def stop_counter(proc):
    """SIGINT makes perf and strace print their totals; returns stderr."""
    proc.send_signal(signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=COUNTER_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    return err


def perf_totals(text):
    out = {}
    for line in text.splitlines():
        f = line.split(",")
        if len(f) > 2 and f[0].isdigit():
            out[f[2]] = int(f[0])
    return out


def strace_totals(text):
    """{syscall: calls} from strace -c's table."""
    out = {}
    for line in text.splitlines():
        f = line.split()
        if len(f) >= 5 and f[0][0].isdigit() and f[-1] != "total":
            out[f[-1]] = int(f[3])
    return out


def measure(binary, scn, args):
    servers.BEFORE = binary  # "before" runs the binary BEFORE names, like socks5d
    inst = servers.Running("before", scn.auth, ROOT, OUT, getattr(scn, "server_args", ()))
    try:
        check_binary(inst, binary)
        counter = subprocess.Popen(counter_argv(inst.pid, args.strace), stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True)
        time.sleep(0.5)  # let the counter attach before the work starts
        argv = [LOADGEN] + scn.args + ["-d", str(args.duration), "-w", "0",
                                       "-x", f"127.0.0.1:{inst.port}"]
        r = subprocess.run(argv, capture_output=True, text=True, timeout=args.duration + 60)
        time.sleep(0.2)  # the server finishes closing the last tunnels
        err = stop_counter(counter)
    finally:
        inst.stop()
    res = parse_result(r.stdout, r.stderr, r.returncode)
    totals = strace_totals(err) if args.strace else perf_totals(err)
    return res, totals


def check_binary(inst, binary):
    """Guards against measuring another binary than the one named."""
    exe = os.path.realpath(f"/proc/{inst.pid}/exe")
    if exe != os.path.realpath(binary):
        sys.exit(f"syscounts.py: started {exe}, wanted {binary}")


def unit(res):
    """(divisor, label): sessions for crr, MB for throughput."""
    if res.get("sessions_total"):
        return res["sessions_total"], "session"
    return res.get("bytes_total", 0) / 1e6, "MB"


def report(binary, scn, res, totals, use_strace):
    n, label = unit(res)
    if not res.get("ok") or not n:
        print(f"{scn.name:12} {binary}: loadgen failed: {res.get('error')}")
        return
    if use_strace:
        total = sum(totals.values())
        top = sorted(totals.items(), key=lambda kv: -kv[1])[:12]
        print(f"{scn.name:12} {binary}: {total / n:.2f} syscalls per {label} ({n:.0f} {label}s)")
        for name, calls in top:
            print(f"    {name:16} {calls / n:8.3f} per {label}")
        return
    sc, cs = totals.get("raw_syscalls:sys_enter", 0), totals.get("context-switches", 0)
    print(f"{scn.name:12} {binary}: {sc / n:.2f} syscalls, {cs / n:.3f} context switches "
          f"per {label} ({n:.0f} {label}s)")


def main():
    args = parse_args()
    os.makedirs(OUT, exist_ok=True)
    by_name = {s.name: s for s in SCENARIOS}
    for name in args.scenarios.split(","):
        scn = by_name.get(name)
        if scn is None or scn.kind not in ("crr", "tput"):
            sys.exit(f"syscounts.py: {name}: not a crr or tput scenario")
        for binary in args.binaries:
            res, totals = measure(binary, scn, args)
            report(binary, scn, res, totals, args.strace)


if __name__ == "__main__":
    main()
