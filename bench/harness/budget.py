"""What the targets against `direct` leave the proxy, from the run itself.

Everything runs on the same cores: the load generator and its targets, the
proxy, and the kernel's work for both. A scenario that keeps the cores busy
reaches a rate of at most cores / (CPU per unit of everyone involved). So a
target rate (a fraction of direct's rate) fixes a CPU budget per unit; what
the load generator needs through the proxy comes off it first, and the rest
is what the proxy may spend. A proxy that costs nothing still leaves the
load generator's own bound (cores / its CPU per unit)."""
from .targets import median, num

# (scenario, target fraction of direct's rate, rate key, CPU key suffix, unit, per unit scale)
ROWS = [
    ("tput-up-8", 0.95, "mb_per_s", "per_gb", "CPU-s per GB", 1e3),
    ("tput-up-1", 0.80, "mb_per_s", "per_gb", "CPU-s per GB", 1e3),
    ("tput-down-1", 0.55, "mb_per_s", "per_gb", "CPU-s per GB", 1e3),
    ("crr", 0.55, "sessions_per_s", "per_1k", "CPU-s per 1,000 sessions", 1e3),
]


def row(table, cores, scn, target, rate_key, suffix, scale, floor):
    """One Markdown row, or None when the scenario was not measured."""
    direct = median(table, scn, rate_key, "direct")
    gen = median(table, scn, f"gen_cpu_s_{suffix}")
    mine = median(table, scn, f"cpu_s_{suffix}")
    if not direct or gen is None or mine is None:
        return None
    units_per_s = direct * target / scale  # GB/s or 1,000 sessions/s at the target
    budget = cores / units_per_s
    left = budget - gen
    free = cores / gen * scale / direct  # a proxy that costs nothing, as a fraction of direct
    rate = median(table, scn, rate_key)
    busy = rate / scale * (gen + mine) if rate else None
    cells = [scn, f"{target:.2f} ×", num(budget), num(gen),
             num(left) if left > 0 else "none", num(mine),
             num(median(table, scn, f"cpu_s_{suffix}", floor)) if floor else "–",
             f"{num(free)} ×", num(busy)]
    return "| " + " | ".join(cells) + " |"


def section(table, cores, servers):
    """Markdown lines of the budget table; [] when nothing was measured."""
    floor = "haproxy" if "haproxy" in servers else None
    rows = [r for r in (row(table, cores, *spec[:3], spec[3], spec[5], floor) for spec in ROWS)
            if r]
    if not rows:
        return []
    return ["## What the targets against direct leave the proxy", "",
            f"All {cores} cores are shared by the load generator, its targets, the proxy and "
            "the kernel's work for each. At a target rate the cores give a CPU budget per unit "
            "(GB, or 1,000 sessions); the load generator's own CPU through socks5d (its targets "
            "and kernel workers included, medians of this run) comes off first, and the rest is "
            "what the proxy may spend. *A free proxy* is the rate, as a fraction of direct's, "
            "that the load generator's CPU alone allows. *Cores busy* is socks5d's run: rate × "
            "(load generator + socks5d) CPU per unit. Units: CPU-s per GB for throughput, "
            "CPU-s per 1,000 sessions for crr.", "",
            "| scenario | target × direct | CPU budget at the target | load generator through "
            "socks5d | left for the proxy | socks5d | haproxy (plain forwarder) | a free proxy "
            "| cores busy |",
            "|---|---|---|---|---|---|---|---|---|"] + rows + [""]
