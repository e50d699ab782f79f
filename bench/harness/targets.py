"""The targets of the throughput issue (14) and the earlier ones, checked
against a run's summary: each row says what was reached and whether that
meets the target. Nothing here is copied by hand from a run."""
from .summary import SUBJECT


def median(table, scn, key, server=SUBJECT):
    """Median of key for server in scenario scn, or None."""
    s = table.get(scn, {}).get("servers", {}).get(server, {}).get(key)
    return s["median"] if s else None


def num(v):
    if v is None:
        return "–"
    if abs(v) >= 100:
        return f"{v:,.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}" if abs(v) >= 0.1 else f"{v:.3f}"


def verdict(checks):
    """'yes', 'no', 'k of n' or 'not measured' from a list of True/False/None."""
    known = [c for c in checks if c is not None]
    if not known:
        return "not measured"
    if len(checks) == 1:
        return "yes" if known[0] else "no"
    return f"{sum(known)} of {len(checks)}" if len(known) == len(checks) else \
        f"{sum(known)} of {len(checks)} ({len(checks) - len(known)} not measured)"


def vs_peer(scns, key, peer, factor, higher=True):
    """socks5d / peer on the same scenario against factor, for each scenario."""
    def check(table):
        texts, oks = [], []
        for scn in scns:
            a, b = median(table, scn, key), median(table, scn, key, peer)
            r = a / b if a is not None and b else None
            texts.append(f"{num(r)} ({scn})" if len(scns) > 1 else
                         f"{num(a)} vs {num(b)} = {num(r)} ×")
            oks.append(None if r is None else (r >= factor if higher else r <= factor))
        return ", ".join(texts), verdict(oks)
    return check


def vs_scenario(scn, base, key, factor, higher=True):
    """socks5d in scn against socks5d in base (e.g. fair p99 against rr p99)."""
    def check(table):
        a, b = median(table, scn, key), median(table, base, key)
        r = a / b if a is not None and b else None
        ok = None if r is None else (r >= factor if higher else r <= factor)
        return f"{num(a)} vs {num(b)} = {num(r)} ×", verdict([ok])
    return check


def limit(scns, key, bound, higher=False):
    """socks5d's median of key in each scenario against a fixed bound."""
    def check(table):
        vals = [median(table, scn, key) for scn in scns]
        oks = [None if v is None else (v >= bound if higher else v <= bound) for v in vals]
        text = ", ".join(f"{num(v)} ({scn})" for v, scn in zip(vals, scns)) if len(scns) > 1 \
            else num(vals[0])
        return text, verdict(oks)
    return check


TPUT = ["tput-up-1", "tput-up-8", "tput-down-1", "tput-down-8", "tput-down-64"]

TARGETS = [
    ("upload ×8 ≥ 0.95 × direct", vs_peer(["tput-up-8"], "mb_per_s", "direct", 0.95)),
    ("upload ×1 ≥ 0.80 × direct", vs_peer(["tput-up-1"], "mb_per_s", "direct", 0.80)),
    ("download ×1 ≥ 0.55 × direct", vs_peer(["tput-down-1"], "mb_per_s", "direct", 0.55)),
    ("CPU-s per GB ≤ 0.24 in every throughput scenario", limit(TPUT, "cpu_s_per_gb", 0.24)),
    ("crr ≥ 0.55 × direct sessions/s", vs_peer(["crr"], "sessions_per_s", "direct", 0.55)),
    ("crr CPU-s per 1,000 sessions ≤ 0.035", limit(["crr"], "cpu_s_per_1k", 0.035)),
    ("throughput ≥ 2.1 × Dante", vs_peer(TPUT[:4], "mb_per_s", "dante", 2.1)),
    ("crr ≥ 1.5 × microsocks", vs_peer(["crr"], "sessions_per_s", "microsocks", 1.5)),
    ("crr CPU per 1,000 sessions ≤ 0.7 × microsocks",
     vs_peer(["crr"], "cpu_s_per_1k", "microsocks", 0.7, higher=False)),
    ("crr with cached password auth within 10 % of without",
     vs_scenario("crr-auth", "crr", "sessions_per_s", 0.9)),
    ("rr p50 ≤ microsocks", vs_peer(["rr"], "p50_us", "microsocks", 1.0, higher=False)),
    ("fair: ping-pong p99 beside two bulk streams ≤ 3 × rr p99",
     vs_scenario("fair", "rr", "p99_us", 3.0, higher=False)),
    ("idle tunnels ≤ 1 kB RSS each at 9,000", limit(["idle-9000"], "kb_per_tunnel", 1.0)),
    ("UDP ≥ 2 × Dante round trips/s",
     vs_peer(["udp-64", "udp-1400"], "datagrams_per_s", "dante", 2.0)),
]


def table_rows(table):
    """Markdown rows: target | this run (medians) | met."""
    rows = ["| target | this run (socks5d medians) | met |", "|---|---|---|"]
    for label, check in TARGETS:
        text, met = check(table)
        rows.append(f"| {label} | {text} | {met} |")
    return rows
