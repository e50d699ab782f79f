#!/usr/bin/python3
"""Benchmark socks5d against microsocks, Dante and no proxy at all.

Starts each server on a free loopback port, runs every scenario of
bench/loadgen against it (alternating servers, several repetitions), stops
every process it started, and writes docs/benchmarks.{md,json,png}.
"""
import argparse
import datetime
import os
import platform
import resource
import subprocess
import sys
import time

from harness import plot, report, summary
from harness.scenarios import ROUTE6_PREFIX, SCENARIOS, run_idle, run_timed, run_trickle
from harness.servers import SPECS, TARGET_PORTS, Running, ServerError, free_port

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LOADGEN = os.path.join(ROOT, "bench/loadgen")
OUT = os.path.join(ROOT, "bench/out")
README = os.path.join(ROOT, "README.md")

FULL = {"tput_s": 3, "other_s": 2, "warmup_s": 0.5}
QUICK = {"tput_s": 1, "other_s": 1, "warmup_s": 0.3}
BUDGET_S = 14 * 60  # runs not started by then are reported as skipped


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true",
                   help="one repetition, short durations (development only)")
    p.add_argument("--reps", type=int, default=3, help="repetitions (default 3)")
    p.add_argument("--servers", default=",".join(SPECS),
                   help=f"comma-separated subset of {','.join(SPECS)}")
    p.add_argument("--scenarios", default="",
                   help="comma-separated subset of " + ",".join(s.name for s in SCENARIOS))
    p.add_argument("--output", default=os.path.join(ROOT, "docs"),
                   help="directory for benchmarks.md/.json/.png (default docs/)")
    p.add_argument("--budget", type=float, default=BUDGET_S,
                   help=f"seconds after which remaining runs are skipped (default {BUDGET_S})")
    p.add_argument("--render", metavar="JSON",
                   help="run nothing: write benchmarks.md (in --output) and, for a full run, "
                   "README.md's figures from this benchmarks.json")
    args = p.parse_args()
    args.servers = pick(args.servers, list(SPECS), "server")
    names = [s.name for s in SCENARIOS]
    args.scenarios = [s for s in SCENARIOS
                      if s.name in pick(args.scenarios or ",".join(names), names, "scenario")]
    if args.quick:
        args.reps = 1
    return args


def pick(csv, known, what):
    chosen = [x for x in csv.split(",") if x]
    unknown = [x for x in chosen if x not in known]
    if unknown:
        sys.exit(f"run.py: unknown {what}: {', '.join(unknown)} (known: {', '.join(known)})")
    return chosen


def raise_nofile():
    """Servers inherit our limit; 9,000 tunnels need 18,000 descriptors."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


class Bench:
    """One whole benchmark: raw results, the servers running now, the clock."""

    def __init__(self, args):
        self.args = args
        self.timing = QUICK if args.quick else FULL
        self.raw = []
        self.results = {}
        self.start = time.monotonic()
        self.loadavg_start = loadavg()
        self.pool = {}
        # Every loadgen of the run puts its TCP targets here (-T), the port
        # haproxy's configuration names; the others ignore where they are.
        self.target_port = free_port(2, *TARGET_PORTS)

    def record(self, rep, scn, server, res):
        self.raw.append({"rep": rep, "scenario": scn.name, "server": server, "result": res})
        self.results.setdefault(scn.name, {}).setdefault(server, []).append(res)
        log(f"rep {rep + 1} {scn.name:12} {server:10} {brief(scn, res)}")

    def server(self, name, auth, extra=()):
        """The running instance for (name, auth, extra), restarted if it died."""
        key = (name, auth, tuple(extra))
        inst = self.pool.get(key)
        if inst and not inst.alive():
            inst.stop()
            inst = None
        if inst is None:
            inst = Running(name, auth, ROOT, OUT, extra, self.target_port)
            self.pool[key] = inst
        return inst

    def stop_all(self):
        for inst in self.pool.values():
            inst.stop()
        self.pool.clear()

    def over_budget(self):
        return time.monotonic() - self.start > self.args.budget


def not_applicable(scn, spec):
    """Why scn cannot run on spec, or ''."""
    if spec.forward:
        return forward_na(scn)
    if spec.direct and scn.kind == "idle":
        return "no proxy memory to measure"
    if spec.direct and scn.needs in ("auth", "domain", "route6"):
        return "same as crr without a proxy"
    if scn.needs and not spec.direct and scn.needs not in spec.features:
        return f"{spec.name} has no {scn.needs} support here"
    if scn.needs == "route6" and not route6_ready():
        return f"no local route for {ROUTE6_PREFIX} (run in a network namespace: bench/README.md)"
    return ""


def forward_na(scn):
    """Why a plain TCP forwarder (haproxy) does not run scn, or ''."""
    if scn.kind == "udp":
        return "a plain TCP forwarder: no UDP ASSOCIATE"
    if scn.kind in ("idle", "trickle"):
        return "a plain TCP forwarder is the floor for throughput and connection rate only"
    if scn.needs:
        what = {"auth": "authentication", "domain": "CONNECT by name", "route6": "routes"}
        return f"a plain TCP forwarder: no SOCKS handshake, so no {what[scn.needs]}"
    return ""


def route6_ready():
    """Whether this network namespace routes ROUTE6_PREFIX to itself."""
    r = subprocess.run(["ip", "-6", "route", "show", "table", "local", ROUTE6_PREFIX],
                       capture_output=True, text=True)
    return r.returncode == 0 and r.stdout.strip() != ""


def run_one(bench, scn, spec):
    """One measured run of scn on spec; never raises for a server failure."""
    run = run_trickle if scn.kind == "trickle" else run_timed
    if not_applicable(scn, spec):
        return {"na": not_applicable(scn, spec)}
    if bench.over_budget():
        return {"skipped": "time budget exhausted"}
    if spec.direct:
        return run(LOADGEN, scn, None, bench.timing, bench.target_port)
    try:
        inst = bench.server(spec.name, scn.auth, getattr(scn, "server_args", ()))
    except ServerError as e:
        return {"ok": False, "error": f"{spec.name} did not start: {e}"}
    res = run(LOADGEN, scn, inst, bench.timing, bench.target_port)
    return check_after(res, inst)


def check_after(res, inst):
    """A server that died during the run fails it; 'command not supported'
    (REP 7) marks a feature the server lacks."""
    if not inst.alive():
        res.update(ok=False, error=f"server exited with status {inst.proc.returncode}: "
                   f"{inst.log_tail()}")
    elif not res.get("ok") and "failure code 7" in res.get("error", ""):
        return {"na": "server replied 'command not supported'", "detail": res}
    return res


def run_idle_fresh(bench, scn, spec):
    """Idle runs get a freshly started proxy, so memory freed by earlier
    scenarios does not hide the cost of the tunnels."""
    if not_applicable(scn, spec):
        return {"na": not_applicable(scn, spec)}
    if bench.over_budget():
        return {"skipped": "time budget exhausted"}
    try:
        inst = Running(spec.name, False, ROOT, OUT)
    except ServerError as e:
        return {"ok": False, "error": f"{spec.name} did not start: {e}"}
    try:
        return check_after(run_idle(LOADGEN, scn, inst), inst)
    except RuntimeError as e:
        return {"ok": False, "error": str(e)}
    finally:
        inst.stop()


def run_rep(bench, rep):
    """Every scenario once on every server; the server order rotates per
    repetition so no server always runs first."""
    names = bench.args.servers
    order = [SPECS[n] for n in names[rep % len(names):] + names[:rep % len(names)]]
    try:
        for scn in bench.args.scenarios:
            for spec in order:
                if scn.kind == "idle":
                    bench.record(rep, scn, spec.name, run_idle_fresh(bench, scn, spec))
                else:
                    bench.record(rep, scn, spec.name, run_one(bench, scn, spec))
    finally:
        bench.stop_all()


def brief(scn, res):
    if "na" in res:
        return f"n/a ({res['na']})"
    if "skipped" in res:
        return "skipped"
    if not res.get("ok"):
        return f"FAILED: {res.get('error')}"
    key = summary.METRICS[scn.kind][0][0] if scn.kind != "idle" else "kb_per_tunnel"
    extra = f" p99 {res['p99_us']} µs" if "p99_us" in res else ""
    return f"{key}={res.get(key)}{extra}"


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def loadavg():
    """1, 5 and 15 minute load averages: other work on the machine shows here."""
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def clean_out():
    """Drop the server logs, Dante and HAProxy configurations and plot data
    of earlier runs from bench/out; nothing else there is ours to remove."""
    ours = (tuple(f"{s}-" for s in SPECS), ("danted-",), ("haproxy-",), ("plot-",))
    ends = (".log", ".conf", ".cfg", ".dat")
    for name in os.listdir(OUT):
        if any(name.startswith(pre) and name.endswith(end) for pre, end in zip(ours, ends)):
            os.remove(os.path.join(OUT, name))


def cpu_model():
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def versions():
    out = {"direct": "-"}
    for name, pkg in (("microsocks", "microsocks"), ("dante", "dante-server"),
                      ("haproxy", "haproxy")):
        r = subprocess.run(["dpkg-query", "-W", "-f=${Version}", pkg], capture_output=True,
                           text=True)
        out[name] = r.stdout.strip() if r.returncode == 0 else "not installed"
    try:
        r = subprocess.run([os.path.join(ROOT, "bin/socks5d"), "--version"], capture_output=True,
                           text=True, timeout=5)
        out["socks5d"] = (r.stdout or r.stderr).strip().splitlines()[0] if r.returncode == 0 \
            else "unknown version"
    except (OSError, subprocess.TimeoutExpired, IndexError):
        out["socks5d"] = "binary missing"
    return out


def meta(bench):
    return {"quick": bench.args.quick, "reps": bench.args.reps, "timing": bench.timing,
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "nproc": os.cpu_count(), "cpu_model": cpu_model(), "kernel": platform.release(),
            "elapsed_s": time.monotonic() - bench.start,
            "loadavg_start": bench.loadavg_start, "loadavg_end": loadavg(),
            "servers": {n: SPECS[n].note for n in bench.args.servers}, "versions": versions()}


def extrapolate(table):
    """Per server, from the largest idle run with a per-tunnel cost."""
    ext = {}
    for name, entry in reversed(list(table.items())):
        if entry["kind"] != "idle":
            continue
        for server, summ in entry["servers"].items():
            if server not in ext and summ.get("kb_per_tunnel") and summ.get("rss_before_kb"):
                ext[server] = dict(line(summ, "kb_per_tunnel", "rss_before_kb", ""),
                                   **line(summ, "pss_kb_per_tunnel", "pss_before_kb", "pss_"),
                                   **{"from": name})
    return ext


def line(summ, per_key, base_key, prefix):
    """Memory at 100,000 and 1,000,000 tunnels on a straight line."""
    per, base = summ.get(per_key), summ.get(base_key)
    if not per or not base:
        return {}
    kb, base_kb = per["median"], base["median"]
    return {prefix + "kb_per_tunnel": kb, prefix + "mb_100k": (base_kb + kb * 1e5) / 1e3,
            prefix + "gb_1m": (base_kb + kb * 1e6) / 1e6}


def write_outputs(bench):
    os.makedirs(bench.args.output, exist_ok=True)
    table = summary.build(bench.args.scenarios, bench.results)
    paths = {k: os.path.join(bench.args.output, f"benchmarks.{k}") for k in ("md", "json", "png")}
    err = plot.plot(paths["png"], table, bench.args.servers, OUT, bench.args.quick)
    if err:
        log(f"run.py: no plot: {err}")
    doc = report.write(paths, meta(bench), table, bench.raw, extrapolate(table))
    log(f"run.py: wrote {paths['md']}, {paths['json']}" + ("" if err else f", {paths['png']}"))
    publish(doc, bench.args.output)


def publish(doc, output):
    """README.md's figures come from a full run written to docs/ only: a
    quick run or one written elsewhere never reaches them."""
    if doc["meta"]["quick"] or os.path.realpath(output) != os.path.realpath(os.path.join(ROOT, "docs")):
        return
    report.update_readme(README, doc)
    log(f"run.py: updated the figures in {README}")


def render_only(args):
    md = os.path.join(args.output, "benchmarks.md")
    doc = report.render(args.render, md)
    log(f"run.py: wrote {md} from {args.render}")
    publish(doc, args.output)


def main():
    args = parse_args()
    if args.render:
        render_only(args)
        return
    if not os.access(LOADGEN, os.X_OK):
        sys.exit(f"run.py: {LOADGEN} missing: run `make -C bench` first")
    os.makedirs(OUT, exist_ok=True)
    clean_out()
    raise_nofile()
    bench = Bench(args)
    for rep in range(args.reps):
        run_rep(bench, rep)
    write_outputs(bench)


if __name__ == "__main__":
    main()
