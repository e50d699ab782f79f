"""docs/benchmarks.md and docs/benchmarks.json from the summaries."""
import json
import os

from . import budget, targets
from .summary import METRICS, SUBJECT

README_BEGIN = ("<!-- bench:headline:begin (written by bench/run.py from "
                "docs/benchmarks.json: do not edit by hand) -->")
README_END = "<!-- bench:headline:end -->"

SECTIONS = [
    ("Throughput", "tput", "Bulk streams through the proxy for a fixed time; "
     "MB = 10^6 bytes. CPU-s per GB is the proxy's user+system CPU over the whole "
     "run divided by all bytes it forwarded. With several streams, each stream's "
     "bytes in the measured window (received by the client for downloads, sent for "
     "uploads) against the fair share (all bytes / streams) show how evenly the proxy "
     "shares; `direct` shows how evenly the load generator itself does."),
    ("Connection rate", "crr", "64 concurrent clients, each looping connect → greeting → "
     "CONNECT → 64 bytes to an echo target and back → close. Latency is one whole "
     "session. CPU-s per 1,000 sessions covers the whole run. crr-auth adds RFC 1929 "
     "user/password with socks5d's password cache on (each repeat login is a cache hit); "
     "crr-auth-nocache turns it off (`--auth-cache-ttl 0`), so every login runs the "
     "password hash: its sessions per CPU-second are the logins one core verifies per "
     "second. microsocks compares passwords in plaintext, so its two auth runs cost the "
     "same."),
    ("Slow tunnels", "trickle", "2,000 tunnels to an echo target, each writing 16 bytes "
     "every 500 ms (the writes staggered evenly, 4,000 a second in all) and waiting for "
     "them to come back; a tunnel whose last message is not back by its next turn skips "
     "it. A message is one such round trip (two relayed writes). Latency is send → whole "
     "echo back. CPU-µs per message is the proxy's CPU while the tunnels trickle "
     "(opening and closing them left out) divided by the messages that came back."),
    ("Latency", "lat", "rr: 64-byte ping-pong on one tunnel. fair: the same ping-pong "
     "while two bulk uploads share the proxy."),
    ("UDP", "udp", "Round trips through a UDP ASSOCIATE relay to an echo target, "
     "16 datagrams in flight; after 20 ms with nothing back the client stops waiting "
     "and sends anew (a stall). Lost = sent − received after 200 ms of draining."),
]


def fmt(v):
    if v is None:
        return "–"
    if float(v).is_integer():
        return f"{int(v):,}"
    if abs(v) >= 100:
        return f"{v:,.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}" if abs(v) >= 0.1 else f"{v:.2g}"


def cell(summ, key):
    """'median (min–max)', or the reason there is no number."""
    if summ is None:
        return "skipped"
    if summ["status"] in ("n/a", "skipped"):
        return summ["status"]
    if summ["status"] == "failed":
        return "**failed**"
    s = summ.get(key)
    if s is None:
        return "–"
    text = fmt(s["median"]) if s["n"] == 1 else (
        f"{fmt(s['median'])} ({fmt(s['min'])}–{fmt(s['max'])})")
    if summ["failed_runs"]:
        text += f" ({summ['failed_runs']}/{summ['runs']} runs failed)"
    return text


def metric_table(table, names, servers, key):
    peers = [s for s in servers if s != SUBJECT] if SUBJECT in servers else []
    head = ["scenario"] + servers + [f"{SUBJECT}/{p}" for p in peers]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name in names:
        entry = table[name]
        primary = METRICS[entry["kind"]][0][0]
        # Secondary metrics some scenarios lack (bulk MB/s for rr) are left out;
        # the primary row always shows, so failures and n/a stay visible.
        if key != primary and not any(key in s for s in entry["servers"].values()):
            continue
        cells = [name] + [cell(entry["servers"].get(s), key) for s in servers]
        cells += [fmt(entry["ratios"].get(p, {}).get(key)) for p in peers]
        rows.append("| " + " | ".join(cells) + " |")
    return rows if len(rows) > 2 else []


def section(title, kind, text, table, servers):
    names = [n for n, e in table.items() if e["kind"] == kind]
    if not names:
        return []
    lines = [f"## {title}", "", text, ""]
    for key, label, higher in METRICS[kind]:
        rows = metric_table(table, names, servers, key)
        if rows:
            better = "higher" if higher else "lower"
            lines += [f"**{label}** ({better} is better)", ""] + rows + [""]
    return lines


def idle_section(table, servers, extrapolate):
    names = [n for n, e in table.items() if e["kind"] == "idle"]
    if not names:
        return []
    lines = ["## Idle tunnels", "",
             "K tunnels held open to a sink (in a separate process), client addresses "
             "spread over 127.0.0.2–251, 64 bytes written through each once. RSS is VmRSS "
             "summed over the proxy's processes (Dante: the main processes and every child; "
             "pages shared after fork are counted in each). kB per tunnel = (RSS with K "
             "tunnels − RSS before) / tunnels established. Each idle run uses a freshly "
             "started proxy. Kernel socket memory is not in RSS.", ""]
    for key, label, higher in METRICS["idle"]:
        rows = metric_table(table, names, servers, key)
        if rows:
            lines += [f"**{label}** ({'higher' if higher else 'lower'} is better)", ""]
            lines += rows + [""]
    return lines + extrapolation(extrapolate)


def extrapolation(ext):
    if not ext:
        return []
    lines = ["**Extrapolated proxy memory** (memory before + kB per tunnel × N, medians "
             "from the largest idle run; a straight line that ignores descriptor limits, "
             "kernel socket memory and process limits)", "",
             "| server | from | RSS kB/tunnel | RSS at 100,000 | RSS at 1,000,000 "
             "| PSS kB/tunnel | PSS at 100,000 | PSS at 1,000,000 |",
             "|---|---|---|---|---|---|---|---|"]
    for name, e in ext.items():
        cells = [name, e["from"]]
        for p in ("", "pss_"):
            if p + "kb_per_tunnel" in e:
                cells += [fmt(e[p + "kb_per_tunnel"]), f"{fmt(e[p + 'mb_100k'])} MB",
                          f"{fmt(e[p + 'gb_1m'])} GB"]
            else:
                cells += ["–"] * 3
        lines.append("| " + " | ".join(cells) + " |")
    return lines + [""]


def failures(raw):
    """Every failed run, and every run that passed with errors on the way
    (crr sessions that failed, idle tunnels that did not open)."""
    lines = []
    for r in raw:
        res = r["result"]
        if "na" in res or "skipped" in res or (res.get("ok") and not res.get("error")):
            continue
        what = "failed" if not res.get("ok") else "passed with errors"
        lines.append(f"- rep {r['rep'] + 1}, {r['scenario']}, {r['server']}, {what}: "
                     f"{res.get('error', 'unknown error')}")
    return ["## Failed runs and errors", ""] + (lines or ["None."]) + [""]


def header(meta):
    lines = ["# socks5d benchmarks", ""]
    if meta["quick"]:
        lines += ["> **QUICK RUN** (`bench/run.py --quick`): one repetition with short "
                  "durations, for development only. Do not quote these numbers; run "
                  "`make bench` for the real table.", ""]
    lines += [f"- Date: {meta['date']}",
              f"- Machine: {meta['nproc']} CPUs, {meta['cpu_model']}, kernel {meta['kernel']}",
              f"- Repetitions: {meta['reps']} per scenario and server, servers alternating; "
              f"each cell is median (min–max)",
              f"- Durations: {meta['timing']['tput_s']} s per throughput run, "
              f"{meta['timing']['other_s']} s per other run, after "
              f"{meta['timing']['warmup_s']} s unmeasured warm-up",
              f"- Whole run: {meta['elapsed_s']:.0f} s; load average (1/5/15 min) "
              f"{meta['loadavg_start']} at the start, {meta['loadavg_end']} at the end "
              "(anything else running on the machine widens the min–max ranges)",
              "- Everything runs on loopback on this one machine: the load generator "
              "(bench/loadgen) and its targets compete with the proxy for the same CPUs, "
              "so `direct` is the ceiling, not a network.",
              "- Ratios are socks5d / peer on the medians of this run; for latency, CPU and "
              "memory a ratio below 1 favours socks5d.", ""]
    lines += ["## Servers", ""]
    for name, note in meta["servers"].items():
        lines.append(f"- **{name}** ({meta['versions'].get(name, '')}): {note}")
    lines += ["", "Reproduce: `make bench` (full) or "
              "`/usr/bin/python3 bench/run.py --quick --servers socks5d,microsocks`.", ""]
    return lines


def targets_section(table):
    return ["## The targets, in this run", "",
            "Computed from this run's medians (`bench/harness/targets.py`); where a "
            "scenario or server was not run, the target reads \"not measured\". Why the "
            "missed ones are missed is in the reading below.", ""] + \
        targets.table_rows(table) + [""]


def markdown(doc):
    """docs/benchmarks.md from the run's JSON document: the figures, then
    the hand-written reading (bench/analysis.md)."""
    return "\n".join(figures(doc) + analysis())


def figures(doc):
    """Every line of docs/benchmarks.md that comes from the run's JSON."""
    meta, table = doc["meta"], doc["summary"]
    servers = list(meta["servers"])
    lines = header(meta)
    for title, kind, text in SECTIONS:
        lines += section(title, kind, text, table, servers)
    lines += idle_section(table, servers, doc["extrapolation"])
    lines += failures(doc["runs"])
    lines += ["![throughput and sessions per second](benchmarks.png)", ""]
    return lines + targets_section(table) + budget.section(table, meta["nproc"], servers)


# README rows: label, scenario, key, unit after the number.
HEADLINE = [
    ("one stream up, MB/s", "tput-up-1", "mb_per_s", ""),
    ("64 streams down: slowest stream's share of a fair share", "tput-down-64", "min_share",
     ""),
    ("sessions/s (64 clients, CONNECT + 64 B echo)", "crr", "sessions_per_s", ""),
    ("proxy CPU-µs per message, 2,000 slow tunnels", "trickle-2000", "cpu_us_per_msg", ""),
    ("RSS per idle tunnel at 9,000 tunnels", "idle-9000", "kb_per_tunnel", " kB"),
    ("UDP round trips/s, 64 B", "udp-64", "datagrams_per_s", ""),
]
HEADLINE_SERVERS = [SUBJECT, "microsocks", "dante", "haproxy"]


def headline_cell(table, scn, key, server, unit):
    summ = table.get(scn, {}).get("servers", {}).get(server)
    if summ is None:
        return "–"
    if summ["status"] != "ok":
        return summ["status"]
    return fmt(summ[key]["median"]) + unit if key in summ else "–"


def cpu_range(table, server):
    """min–max of the throughput scenarios' median CPU-s per GB."""
    vals = [targets.median(table, scn, "cpu_s_per_gb", server) for scn in targets.TPUT]
    vals = [v for v in vals if v is not None]
    if not vals:
        return "–"
    lo, hi = fmt(min(vals)), fmt(max(vals))
    return lo if lo == hi else f"{lo}–{hi}"


def headline(doc):
    """The README's benchmark summary, between its markers."""
    meta, table = doc["meta"], doc["summary"]
    servers = [s for s in HEADLINE_SERVERS if s in meta["servers"]]
    names = {"socks5d": "socks5d", "microsocks": "microsocks", "dante": "Dante",
             "haproxy": "HAProxy (plain TCP forwarder, no SOCKS: the floor)"}
    lines = [f"From the published run ({meta['date']}, {meta['nproc']} cores, everything on "
             f"loopback, medians of {meta['reps']}, load average {meta['loadavg_start']} at "
             "the start; compare ratios within the run, not absolute figures):", "",
             "| | " + " | ".join(names.get(s, s) for s in servers) + " |",
             "|---|" + "---|" * len(servers)]
    for label, scn, key, unit in HEADLINE[:1]:
        lines.append(f"| {label} | " + " | ".join(headline_cell(table, scn, key, s, unit)
                                                 for s in servers) + " |")
    lines.append("| proxy CPU-s per GB (throughput scenarios) | " +
                 " | ".join(cpu_range(table, s) for s in servers) + " |")
    for label, scn, key, unit in HEADLINE[1:]:
        lines.append(f"| {label} | " + " | ".join(headline_cell(table, scn, key, s, unit)
                                                 for s in servers) + " |")
    return lines


def update_readme(path, doc):
    """Replace what lies between the README's markers with headline(doc).
    Raises ValueError if the markers are missing or out of order."""
    with open(path) as f:
        text = f.read()
    begin, end = text.find(README_BEGIN), text.find(README_END)
    if begin < 0 or end < begin:
        raise ValueError(f"{path}: benchmark markers missing or out of order")
    body = "\n".join([README_BEGIN] + headline(doc)) + "\n"
    new = text[:begin] + body + text[end:]
    if new != text:
        with open(path, "w") as f:
            f.write(new)


def analysis():
    """The hand-written reading of the figures (bench/analysis.md): what the
    targets are, which are met, and what limits the others."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "analysis.md")
    try:
        with open(path) as f:
            return [f.read()]
    except FileNotFoundError:
        return []


def write(paths, meta, table, raw, extrapolate):
    """The JSON first; the Markdown is then rendered from what was written."""
    with open(paths["json"], "w") as f:
        json.dump({"meta": meta, "summary": table, "extrapolation": extrapolate, "runs": raw},
                  f, indent=1)
        f.write("\n")
    return render(paths["json"], paths["md"])


def render(json_path, md_path):
    """docs/benchmarks.md from docs/benchmarks.json; returns the document."""
    with open(json_path) as f:
        doc = json.load(f)
    with open(md_path, "w") as f:
        f.write(markdown(doc))
    return doc
