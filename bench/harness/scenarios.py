"""Scenario table and one measured run of bench/loadgen against a server."""
import json
import os
import resource
import select
import subprocess
import time

from . import procstat

SETTLE_S = 0.2  # let the proxy finish closing tunnels before reading its CPU
IDLE_SETTLE_S = 1.0  # let the proxy finish allocating before reading its RSS
IDLE_HOLD_S = 120  # the longest an idle run may wait for the driver


class Scenario:
    """kind decides what is measured: tput, crr, lat (rr, fair), udp, idle,
    trickle.
    needs: a server feature without which the scenario is n/a. auth: False,
    "cached" (socks5d's password cache on, as deployed) or "uncached" (every
    login runs the password hash)."""

    def __init__(self, name, kind, args, needs=None, auth=False, count=0):
        self.name, self.kind, self.args = name, kind, args
        self.needs, self.auth, self.count = needs, auth, count


SCENARIOS = [
    Scenario("tput-up-1", "tput", ["tput-up", "-n", "1"]),
    Scenario("tput-up-8", "tput", ["tput-up", "-n", "8"]),
    Scenario("tput-down-1", "tput", ["tput-down", "-n", "1"]),
    Scenario("tput-down-8", "tput", ["tput-down", "-n", "8"]),
    Scenario("tput-down-64", "tput", ["tput-down", "-n", "64"]),
    Scenario("crr", "crr", ["crr", "-c", "64", "-s", "64"]),
    Scenario("crr-auth", "crr", ["crr", "-c", "64", "-s", "64"], needs="auth", auth="cached"),
    Scenario("crr-auth-nocache", "crr", ["crr", "-c", "64", "-s", "64"], needs="auth",
             auth="uncached"),
    Scenario("crr-domain", "crr", ["crr", "-c", "64", "-s", "64", "-D", "localhost"],
             needs="domain"),
    Scenario("rr", "lat", ["rr", "-s", "64"]),
    Scenario("fair", "lat", ["fair", "-n", "2", "-s", "64"]),
    Scenario("udp-64", "udp", ["udp", "-s", "64", "-W", "16"], needs="udp"),
    Scenario("udp-1400", "udp", ["udp", "-s", "1400", "-W", "16"], needs="udp"),
    # Every 500 ms, not 100: at 100 ms (20,000 messages/s) the load generator
    # alone saturates two cores (direct p99 94 ms), which would measure the
    # machine, not the proxy.
    Scenario("trickle-2000", "trickle", ["trickle", "-s", "16", "-i", "500"],
             count=2000),
    Scenario("idle-2000", "idle", [], needs="idle", count=2000),
    Scenario("idle-9000", "idle", [], needs="idle", count=9000),
]


def loadgen_argv(loadgen, scn, server, timing, target_port=None):
    """Command line for a timed scenario; server is None for direct mode.
    target_port: the run's port for loadgen's TCP targets (-T), which a
    forwarder's configuration names."""
    argv = [loadgen] + scn.args
    argv += ["-d", str(timing["tput_s" if scn.kind == "tput" else "other_s"])]
    argv += ["-w", str(timing["warmup_s"])]
    if target_port is not None:
        argv += ["-T", str(target_port)]
    if server is not None:
        argv += ["-F" if server.forward else "-x", f"127.0.0.1:{server.port}"]
        if scn.auth:
            argv += ["-a", "bench:benchpw"]
    return argv


def parse_result(stdout, stderr, returncode):
    """The JSON object loadgen printed, or a failure record."""
    lines = [ln for ln in stdout.splitlines() if ln.startswith("{")]
    if not lines:
        msg = stderr.strip().splitlines()[-1:] or [f"exit status {returncode}"]
        return {"ok": False, "error": f"loadgen printed no result: {msg[0]}"}
    try:
        return json.loads(lines[-1])
    except json.JSONDecodeError as e:
        return {"ok": False, "error": f"loadgen output is not JSON: {e}"}


def children_cpu():
    """CPU seconds of the children waited for so far (loadgen runs)."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def run_timed(loadgen, scn, server, timing, target_port=None):
    """Run one timed scenario; the proxy's CPU is read around the run."""
    argv = loadgen_argv(loadgen, scn, server, timing, target_port)
    limit = timing["tput_s"] + timing["other_s"] + timing["warmup_s"] + 30
    cpu0 = procstat.cpu_seconds(server.pid) if server else 0.0
    gen0, kw0 = children_cpu(), procstat.kworker_seconds()
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=limit)
    except subprocess.TimeoutExpired:
        return {"ok": False, "error": f"loadgen did not finish in {limit} s"}
    time.sleep(SETTLE_S)
    res = parse_result(r.stdout, r.stderr, r.returncode)
    # The proxy's CPU alone misses what a kernel-side relay does in the
    # load generator's softirqs and in kernel workers: both are kept too.
    res["loadgen_cpu_s"] = children_cpu() - gen0
    res["kworker_cpu_s"] = procstat.kworker_seconds() - kw0
    if server:
        res["cpu_s"] = procstat.cpu_seconds(server.pid) - cpu0
    derive(scn, res)
    return res


def derive(scn, res):
    """CPU cost per unit of work, from loadgen's totals over the whole run:
    the load generator's (its targets and kernel workers included, for
    every server and direct), and the proxy's."""
    if not res.get("ok"):
        return
    gen = res.get("loadgen_cpu_s", 0) + res.get("kworker_cpu_s", 0)
    if scn.kind == "tput" and res.get("bytes_total"):
        res["gen_cpu_s_per_gb"] = gen / (res["bytes_total"] / 1e9)
    if scn.kind == "crr" and res.get("sessions_total"):
        res["gen_cpu_s_per_1k"] = gen / (res["sessions_total"] / 1000)
    cpu = res.get("cpu_s")
    if cpu is None:
        return
    if scn.kind == "tput" and res.get("bytes_total"):
        res["cpu_s_per_gb"] = cpu / (res["bytes_total"] / 1e9)
        everyone = cpu + res.get("loadgen_cpu_s", 0) + res.get("kworker_cpu_s", 0)
        res["all_cpu_s_per_gb"] = everyone / (res["bytes_total"] / 1e9)
    if scn.kind == "trickle" and res.get("messages_total"):
        res["cpu_us_per_msg"] = cpu / res["messages_total"] * 1e6
    if scn.kind == "crr" and res.get("sessions_total"):
        res["cpu_s_per_1k"] = cpu / (res["sessions_total"] / 1000)
        # Sessions per CPU-second: with auth and no cache, logins per second
        # one core can verify.
        if cpu > 0:
            res["sessions_per_cpu_s"] = res["sessions_total"] / cpu


def read_line(pipe, deadline):
    """One line from pipe, or '' at EOF or deadline."""
    buf = b""
    while time.monotonic() < deadline:
        ready, _, _ = select.select([pipe], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            break
        ch = os.read(pipe.fileno(), 1)
        if not ch or ch == b"\n":
            return buf.decode(errors="replace")
        buf += ch
    return buf.decode(errors="replace")


def start_sink(loadgen):
    """`loadgen sink` in its own process, so that neither it nor the idle
    client needs more than one descriptor per tunnel. Returns (proc, port)."""
    proc = subprocess.Popen([loadgen, "sink", "-H", str(IDLE_HOLD_S + 60)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL)
    line = read_line(proc.stdout, time.monotonic() + 5)
    try:
        return proc, json.loads(line)["port"]
    except (json.JSONDecodeError, KeyError) as e:
        stop_helper(proc)
        raise RuntimeError(f"loadgen sink did not report its port: {line!r}") from e


def stop_helper(proc):
    """Close its stdin (the signal to finish) and wait; kill if it lingers."""
    try:
        proc.stdin.close()
        proc.wait(10)
    except (BrokenPipeError, subprocess.TimeoutExpired):
        proc.kill()
        proc.wait(10)


def wait_line(proc, word, deadline):
    """Read loadgen's stderr until a line starting with word ('ready N',
    'done N')."""
    while time.monotonic() < deadline:
        line = read_line(proc.stderr, deadline)
        if line.startswith(word):
            return True
        if not line and proc.poll() is not None:
            return False
    return False


def run_idle(loadgen, scn, server):
    """Open scn.count tunnels, read the proxy's RSS with them held, close."""
    sink, port = start_sink(loadgen)
    try:
        time.sleep(IDLE_SETTLE_S)
        return hold_tunnels(loadgen, scn, server, port, memory(server.pid))
    finally:
        stop_helper(sink)


def memory(pid):
    """RSS, PSS (kB) and process count of the proxy now."""
    return {"rss": procstat.rss_kb(pid), "pss": procstat.pss_kb(pid),
            "processes": procstat.count(pid)}


def hold_tunnels(loadgen, scn, server, sink_port, before):
    argv = [loadgen, "idle", "-x", f"127.0.0.1:{server.port}", "-t", f"127.0.0.1:{sink_port}",
            "-k", str(scn.count), "-H", str(IDLE_HOLD_S)]
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    after = None
    try:
        if wait_line(proc, "ready", time.monotonic() + 90):
            time.sleep(IDLE_SETTLE_S)
            after = memory(server.pid)
        # communicate() closes stdin: the signal to close the tunnels.
        out, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    res = parse_result(out.decode(errors="replace"), err.decode(errors="replace"),
                       proc.returncode)
    return idle_memory(res, before, after)


def run_trickle(loadgen, scn, server, timing, target_port=None):
    """Open the slow tunnels, then read the proxy's CPU around the trickling
    only: loadgen waits for a line on stdin after 'ready' and after 'done'."""
    argv = loadgen_argv(loadgen, scn, server, timing, target_port) + \
        ["-k", str(scn.count), "-H", "60"]
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    cpu = []
    try:
        if wait_line(proc, "ready", time.monotonic() + 60):
            cpu.append(procstat.cpu_seconds(server.pid) if server else 0.0)
            proc.stdin.write(b"go\n")
            proc.stdin.flush()
            if wait_line(proc, "done", time.monotonic() + timing["warmup_s"] +
                         timing["other_s"] + 30):
                cpu.append(procstat.cpu_seconds(server.pid) if server else 0.0)
        # communicate() closes stdin: the signal to close the tunnels.
        out, err = proc.communicate(timeout=60)
    except (subprocess.TimeoutExpired, BrokenPipeError):
        proc.kill()
        out, err = proc.communicate()
    res = parse_result(out.decode(errors="replace"), err.decode(errors="replace"),
                       proc.returncode)
    if server and len(cpu) == 2:
        res["cpu_s"] = cpu[1] - cpu[0]
    derive(scn, res)
    return res


def idle_memory(res, before, after):
    res.update(rss_before_kb=before["rss"], pss_before_kb=before["pss"],
               processes_before=before["processes"])
    if after is None:
        res.update(ok=False, error=res.get("error") or "idle client never became ready")
        return res
    res.update(rss_after_kb=after["rss"], pss_after_kb=after["pss"],
               processes_after=after["processes"])
    # Tunnels that did not open are reported (established < requested), not
    # failed: how many a proxy can hold is part of the result.
    if res.get("ok") and res.get("established"):
        res["kb_per_tunnel"] = (after["rss"] - before["rss"]) / res["established"]
        res["pss_kb_per_tunnel"] = (after["pss"] - before["pss"]) / res["established"]
    return res


# Outbound addresses (issue 13): crr to the target by an IPv6 name, once
# through `route via direct` and once through `route via direct out random
# PREFIX` (a random source per connection), both socks5d in the same run.
# Needs the network namespace of bench/README.md (a local route for PREFIX);
# other servers have no routes: n/a.
ROUTE6_PREFIX = "2001:db8:1::/64"
ROUTE6_NAME, ROUTE6_TARGET = "crr6.bench", "2001:db8:1::1"  # socks5d's hosts file


class RouteScenario(Scenario):
    """A crr whose socks5d runs with server_args added to its command line."""

    def __init__(self, name, route):
        super().__init__(name, "crr", ["crr", "-c", "64", "-s", "64", "-D", ROUTE6_NAME, "-6"],
                         needs="route6")
        self.server_args = ["--route", route]


SCENARIOS += [
    RouteScenario("crr-v6-direct", "via direct"),
    RouteScenario("crr-v6-out-random", f"via direct out random {ROUTE6_PREFIX}"),
]
