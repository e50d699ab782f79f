"""Medians, ranges and socks5d/peer ratios from the raw runs."""
import statistics

SUBJECT = "socks5d"

# Per scenario kind: (result key, label, True if higher is better).
METRICS = {
    "tput": [("mb_per_s", "MB/s", True), ("cpu_s_per_gb", "CPU-s per GB", False),
             ("gen_cpu_s_per_gb", "load generator's CPU-s per GB (its targets and kernel "
              "workers included)", False),
             ("min_share", "slowest stream's share (1 = its fair share)", True),
             ("max_share", "fastest stream's share", False),
             ("jain", "Jain's fairness index (1 = all streams equal)", True)],
    "crr": [("sessions_per_s", "sessions/s", True), ("p50_us", "p50 µs", False),
            ("p99_us", "p99 µs", False), ("cpu_s_per_1k", "CPU-s per 1,000 sessions", False),
            ("gen_cpu_s_per_1k", "load generator's CPU-s per 1,000 sessions (its targets "
             "and kernel workers included)", False),
            ("sessions_per_cpu_s", "sessions per CPU-second (crr-auth-nocache: logins "
             "verified per second per core)", True)],
    "lat": [("p50_us", "p50 µs", False), ("p99_us", "p99 µs", False),
            ("bulk_mb_per_s", "bulk MB/s beside it", True)],
    "udp": [("datagrams_per_s", "round trips/s", True), ("lost", "datagrams lost", False),
            ("stalls", "stalls (nothing back for 20 ms)", False)],
    "trickle": [("messages_per_s", "messages/s", True), ("p50_us", "p50 µs", False),
                ("p99_us", "p99 µs", False), ("p999_us", "p99.9 µs", False),
                ("cpu_us_per_msg", "proxy CPU-µs per message", False),
                ("late", "turns skipped (last message not back yet)", False)],
    "idle": [("established", "tunnels open", True),
             ("kb_per_tunnel", "kB RSS per tunnel", False),
             ("pss_kb_per_tunnel", "kB PSS per tunnel", False),
             ("rss_before_kb", "RSS before, kB", False),
             ("pss_before_kb", "PSS before, kB", False),
             ("rss_after_kb", "RSS with the tunnels, kB", False),
             ("processes_after", "processes with the tunnels", False)],
}


def status(runs):
    """'n/a', 'skipped', 'failed' or 'ok' for one scenario on one server."""
    if not runs:
        return "skipped"
    if all("na" in r for r in runs):
        return "n/a"
    if all("skipped" in r for r in runs):
        return "skipped"
    if not any(r.get("ok") for r in runs):
        return "failed"
    return "ok"


def stats(runs, key):
    """median/min/max of key over the successful runs, or None."""
    vals = [r[key] for r in runs if r.get("ok") and r.get(key) is not None]
    if not vals:
        return None
    return {"median": statistics.median(vals), "min": min(vals), "max": max(vals), "n": len(vals)}


def first_error(runs):
    for r in runs:
        if not r.get("ok") and "na" not in r and "skipped" not in r:
            return r.get("error", "unknown error")
    return ""


def summarize(kind, runs):
    """Summary of one scenario on one server."""
    out = {"status": status(runs), "runs": len(runs),
           "failed_runs": sum(1 for r in runs if not r.get("ok") and "na" not in r
                              and "skipped" not in r)}
    if out["status"] == "n/a":
        out["reason"] = runs[0]["na"]
    if out["failed_runs"]:
        out["error"] = first_error(runs)
    for key, _, _ in METRICS[kind]:
        s = stats(runs, key)
        if s:
            out[key] = s
    return out


def ratios(kind, per_server):
    """socks5d median / peer median for every metric and peer that has both."""
    mine = per_server.get(SUBJECT, {})
    out = {}
    for peer, summ in per_server.items():
        if peer == SUBJECT:
            continue
        for key, _, _ in METRICS[kind]:
            a, b = mine.get(key), summ.get(key)
            if a and b and b["median"]:
                out.setdefault(peer, {})[key] = a["median"] / b["median"]
    return out


def build(scenarios, results):
    """{scenario: {"kind", "servers": {name: summary}, "ratios": {...}}}."""
    table = {}
    for scn in scenarios:
        per_server = {name: summarize(scn.kind, runs)
                      for name, runs in results.get(scn.name, {}).items()}
        table[scn.name] = {"kind": scn.kind, "servers": per_server,
                           "ratios": ratios(scn.kind, per_server)}
    return table
