"""docs/benchmarks.png: throughput and sessions/s per server, with gnuplot."""
import os
import subprocess

PANELS = [("tput", "mb_per_s", "Throughput (MB/s)"),
          ("crr", "sessions_per_s", "Connection rate (sessions/s)")]


def data_file(path, table, kind, key, servers):
    """One row per scenario; per server three columns, median min max, NaN
    where there is no number."""
    with open(path, "w") as f:
        f.write("# scenario " + " ".join(f"{s}:median,min,max" for s in servers) + "\n")
        for name, entry in table.items():
            if entry["kind"] != kind:
                continue
            vals = []
            for s in servers:
                stat = entry["servers"].get(s, {}).get(key)
                vals += ([f"{stat[k]:.6g}" for k in ("median", "min", "max")] if stat
                         else ["NaN"] * 3)
            f.write(name + " " + " ".join(vals) + "\n")


def script(png, files, servers, quick):
    cols = ", ".join(f"'{{f}}' using {3 * i + 2}:{3 * i + 3}:{3 * i + 4}:xtic(1) title '{s}'"
                     for i, s in enumerate(servers))
    lines = ["set terminal pngcairo size 1200,500 font 'sans,10'",
             f"set output '{png}'",
             "set style data histograms", "set style histogram errorbars gap 1 lw 1",
             "set style fill solid 0.8 border -1", "set key top right",
             "set yrange [0:*]", "set grid ytics", "set datafile missing 'NaN'",
             "set multiplot layout 1,2 title 'socks5d benchmarks: median, bars from min to max"
             + (" (QUICK RUN)" if quick else "") + "'"]
    for (_, _, title), path in zip(PANELS, files):
        lines += [f"set title '{title}'", "plot " + cols.replace("{f}", path)]
    return "\n".join(lines + ["unset multiplot"]) + "\n"


def plot(png, table, servers, out_dir, quick):
    """Write the PNG; returns an error text, or '' on success."""
    files = []
    for kind, key, _ in PANELS:
        path = os.path.join(out_dir, f"plot-{kind}.dat")
        data_file(path, table, kind, key, servers)
        files.append(path)
    try:
        r = subprocess.run(["gnuplot"], input=script(png, files, servers, quick),
                           capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"gnuplot: {e}"
    return f"gnuplot: {r.stderr.strip()}" if r.returncode else ""
