"""The benchmark's published figures (docs/benchmarks.md, the README's
table) are written from the run's JSON by bench/harness, never by hand: fed
a fixed JSON, the generator writes the tables it should, judges the targets
from the medians, and touches the README only between its markers. No speed
is measured here."""
import json
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BENCH = os.path.join(ROOT, "bench")


def load_bench():
    """bench/harness and bench/run.py. This directory has a harness.py of its
    own: it is set aside while bench's package loads, then put back."""
    def ours():
        return [k for k in sys.modules if k == "harness" or k.startswith("harness.")]
    saved = {k: sys.modules.pop(k) for k in ours()}
    sys.path.insert(0, BENCH)
    try:
        import harness.report
        import harness.scenarios
        import harness.summary
        import run as bench_run
        return harness.report, harness.summary, harness.scenarios.SCENARIOS, bench_run
    finally:
        sys.path.remove(BENCH)
        for k in ours():
            del sys.modules[k]
        sys.modules.update(saved)


report, summary, SCENARIOS, run = load_bench()

SERVERS = ["direct", "socks5d", "microsocks", "dante"]


def runs(**values):
    """Three successful runs whose medians are values (min 0.5 ×, max 1.5 ×)."""
    return [{"ok": True, **{k: v * f for k, v in values.items()}} for f in (0.5, 1.0, 1.5)]


def fixed_results():
    """{scenario: {server: [runs]}} for a handful of scenarios."""
    return {
        "tput-up-1": {"direct": runs(mb_per_s=3000), "socks5d": runs(mb_per_s=2500,
                                                                     cpu_s_per_gb=0.2),
                      "microsocks": runs(mb_per_s=200, cpu_s_per_gb=6.0),
                      "dante": runs(mb_per_s=1000, cpu_s_per_gb=0.7)},
        "tput-up-8": {"direct": runs(mb_per_s=4000), "socks5d": runs(mb_per_s=3840,
                                                                     cpu_s_per_gb=0.3,
                                                                     gen_cpu_s_per_gb=0.6),
                      "microsocks": runs(mb_per_s=300, cpu_s_per_gb=5.0),
                      "dante": runs(mb_per_s=1200, cpu_s_per_gb=0.8)},
        "tput-down-64": {"direct": runs(mb_per_s=4500, min_share=0.8, max_share=1.2, jain=0.99),
                         "socks5d": runs(mb_per_s=3400, cpu_s_per_gb=0.2, min_share=0.6,
                                         max_share=1.3, jain=0.97),
                         "microsocks": [{"ok": False, "error": "stream: proxy closed it"}],
                         "dante": [{"na": "not run"}]},
        "crr": {"direct": runs(sessions_per_s=10000, p50_us=100, p99_us=900),
                "socks5d": runs(sessions_per_s=5000, p50_us=200, p99_us=1500, cpu_s_per_1k=0.05,
                                gen_cpu_s_per_1k=0.2),
                "microsocks": runs(sessions_per_s=3000, p50_us=300, p99_us=3000,
                                   cpu_s_per_1k=0.2),
                "dante": runs(sessions_per_s=2000, p50_us=500, p99_us=5000, cpu_s_per_1k=0.3)},
        "trickle-2000": {"direct": runs(messages_per_s=4000, p50_us=70, p99_us=400,
                                        p999_us=1000, late=0),
                         "socks5d": runs(messages_per_s=4000, p50_us=160, p99_us=600,
                                         p999_us=1500, late=0, cpu_us_per_msg=30),
                         "microsocks": runs(messages_per_s=3900, p50_us=400, p99_us=5000,
                                            p999_us=9000, late=20, cpu_us_per_msg=90),
                         "dante": runs(messages_per_s=3000, p50_us=900, p99_us=9000,
                                       p999_us=20000, late=900, cpu_us_per_msg=200)},
    }


@pytest.fixture
def doc(tmp_path):
    """A fixed benchmarks.json written to tmp_path, and its document."""
    return write_doc(tmp_path, fixed_results(), {s: f"{s} note" for s in SERVERS})


def write_doc(tmp_path, results, notes):
    """results and the servers' notes as a benchmarks.json in tmp_path."""
    scns = [s for s in SCENARIOS if s.name in results]
    meta = {"quick": False, "reps": 3, "timing": {"tput_s": 3, "other_s": 2, "warmup_s": 0.5},
            "date": "2026-12-07 11:00 UTC", "nproc": 2, "cpu_model": "test CPU",
            "kernel": "6.1", "elapsed_s": 600, "loadavg_start": "1.00 1.00 1.00",
            "loadavg_end": "2.00 2.00 2.00", "servers": notes,
            "versions": {s: "1" for s in notes}}
    raw = [{"rep": 0, "scenario": n, "server": s, "result": r[0]}
           for n, per in results.items() for s, r in per.items()]
    path = tmp_path / "benchmarks.json"
    path.write_text(json.dumps({"meta": meta, "summary": summary.build(scns, results),
                                "extrapolation": {}, "runs": raw}))
    return path


def render(doc_path, tmp_path):
    """The document, and the figures' part of the Markdown written from it
    (the rest is bench/analysis.md)."""
    md = tmp_path / "benchmarks.md"
    parsed = report.render(str(doc_path), str(md))
    figures = "\n".join(report.figures(parsed))
    assert md.read_text().startswith(figures)
    return parsed, figures


def test_the_markdown_tables_come_from_the_json(doc, tmp_path):
    _, md = render(doc, tmp_path)
    assert "| tput-up-1 | 3,000 (1,500–4,500) | 2,500 (1,250–3,750) | 200 (100–300) | " \
        "1,000 (500–1,500) | 0.83 | 12.5 | 2.50 |" in md
    # The 64-stream fairness rows, with a failed and an n/a server shown as such.
    assert "| tput-down-64 | 0.80 (0.40–1.20) | 0.60 (0.30–0.90) | **failed** | n/a | 0.75 |" in md
    assert "| tput-down-64 | 0.99 (0.49–1.48) | 0.97 (0.48–1.46) | **failed** | n/a | 0.98 |" in md
    # Single-stream scenarios have no share rows.
    assert md.count("| tput-up-1 |") == 2
    assert "## Slow tunnels" in md
    assert "| trickle-2000 | – | 30 (15–45) | 90 (45–135) | 200 (100–300) | – | 0.33 | 0.15 |" in md
    assert "- rep 1, tput-down-64, microsocks, failed: stream: proxy closed it" in md


def test_the_forwarder_floor_is_a_column_beside_the_proxies(tmp_path, monkeypatch):
    """haproxy (a plain TCP forwarder, opt-in) gets its column and a
    socks5d/haproxy ratio where it runs, and n/a, from run.py's own
    verdict, where a forwarder cannot run the scenario (trickle)."""
    spec = run.SPECS["haproxy"]
    monkeypatch.setattr(sys, "argv", ["run.py"])
    assert "haproxy" in run.parse_args().servers  # make bench shows the floor
    results = fixed_results()
    haproxy = {"tput-up-1": runs(mb_per_s=2000, cpu_s_per_gb=0.25),
               "tput-up-8": runs(mb_per_s=3200, cpu_s_per_gb=0.2),
               "tput-down-64": runs(mb_per_s=3000, cpu_s_per_gb=0.25, min_share=0.5,
                                    max_share=1.4, jain=0.95),
               "crr": runs(sessions_per_s=6250, p50_us=150, p99_us=1200, cpu_s_per_1k=0.04)}
    for scn in SCENARIOS:
        if scn.name in results:
            na = run.not_applicable(scn, spec)
            assert bool(na) == (scn.name not in haproxy)
            results[scn.name]["haproxy"] = [{"na": na}] if na else haproxy[scn.name]
    notes = {s: f"{s} note" for s in SERVERS}
    notes["haproxy"] = spec.note
    parsed, md = render(write_doc(tmp_path, results, notes), tmp_path)
    assert "- **haproxy** (1): HAProxy 2.6, mode tcp, nbthread 2, a plain forwarder" in md
    # Beside what the targets leave socks5d, the forwarder's own cost.
    assert "| crr | 0.55 × | 0.36 | 0.20 | 0.16 | 0.050 | 0.040 | 1.00 × | 1.25 |" in md
    # The README's headline shows the floor too, n/a where it cannot run.
    headline = "\n".join(report.headline(parsed))
    assert "| | socks5d | microsocks | Dante | HAProxy (plain TCP forwarder, no SOCKS: the " \
        "floor) |" in headline
    assert "| sessions/s (64 clients, CONNECT + 64 B echo) | 5,000 | 3,000 | 2,000 | 6,250 |" \
        in headline
    assert "| proxy CPU-µs per message, 2,000 slow tunnels | 30 | 90 | 200 | n/a |" \
        in headline
    assert "| scenario | direct | socks5d | microsocks | dante | haproxy | socks5d/direct | " \
        "socks5d/microsocks | socks5d/dante | socks5d/haproxy |" in md
    # 2,500 / 2,000 = 1.25; 5,000 / 6,250 = 0.80.
    assert "| tput-up-1 | 3,000 (1,500–4,500) | 2,500 (1,250–3,750) | 200 (100–300) | " \
        "1,000 (500–1,500) | 2,000 (1,000–3,000) | 0.83 | 12.5 | 2.50 | 1.25 |" in md
    assert "| crr | 10,000 (5,000–15,000) | 5,000 (2,500–7,500) | 3,000 (1,500–4,500) | " \
        "2,000 (1,000–3,000) | 6,250 (3,125–9,375) | 0.50 | 1.67 | 2.50 | 0.80 |" in md
    assert "| trickle-2000 | 4,000 (2,000–6,000) | 4,000 (2,000–6,000) | " \
        "3,900 (1,950–5,850) | 3,000 (1,500–4,500) | n/a | 1 | 1.03 | 1.33 | – |" in md


def test_the_targets_are_judged_from_the_medians(doc, tmp_path):
    _, md = render(doc, tmp_path)
    # 3,840 / 4,000 = 0.96 ≥ 0.95; 2,500 / 3,000 = 0.83 ≥ 0.80.
    assert "| upload ×8 ≥ 0.95 × direct | 3,840 vs 4,000 = 0.96 × | yes |" in md
    assert "| upload ×1 ≥ 0.80 × direct | 2,500 vs 3,000 = 0.83 × | yes |" in md
    assert "| crr CPU-s per 1,000 sessions ≤ 0.035 | 0.050 | no |" in md
    assert "| crr ≥ 0.55 × direct sessions/s | 5,000 vs 10,000 = 0.50 × | no |" in md
    # tput-up-8 at 0.30 CPU-s/GB misses; tput-down-1/-8 were not run.
    assert "| CPU-s per GB ≤ 0.24 in every throughput scenario | 0.20 (tput-up-1), 0.30 " \
        "(tput-up-8), – (tput-down-1), – (tput-down-8), 0.20 (tput-down-64) | " \
        "2 of 5 (2 not measured) |" in md
    assert "| download ×1 ≥ 0.55 × direct | – vs – = – × | not measured |" in md


def test_the_budget_the_targets_leave_the_proxy_is_computed_from_the_medians(doc, tmp_path):
    _, md = render(doc, tmp_path)
    # crr at 0.55 × 10,000/s on 2 cores: 2 / 5.5 = 0.36 CPU-s per 1,000
    # sessions; the load generator takes 0.20, 0.16 is left; the load
    # generator alone allows 2 / 0.2 × 1,000 / 10,000 = 1.00 × direct; the
    # run kept 5 × (0.2 + 0.05) = 1.25 cores busy.
    assert "| crr | 0.55 × | 0.36 | 0.20 | 0.16 | 0.050 | – | 1.00 × | 1.25 |" in md
    # tput-up-8 at 0.95 × 4,000 MB/s: 2 / 3.8 = 0.53 CPU-s per GB, less than
    # the load generator's 0.60: nothing is left for any proxy.
    assert "| tput-up-8 | 0.95 × | 0.53 | 0.60 | none | 0.30 | – | 0.83 × |" in md
    # Scenarios without the load generator's CPU have no row.
    assert "| tput-up-1 | 0.80 × |" not in md


def readme_with_stale_figures(tmp_path):
    path = tmp_path / "README.md"
    path.write_text("# socks5d\n\nbefore\n\n" + report.README_BEGIN +
                    "\n| hand-copied | 5,310 |\n" + report.README_END + "\n\nafter\n")
    return path


def test_the_readme_figures_are_replaced_between_the_markers_only(doc, tmp_path):
    parsed, _ = render(doc, tmp_path)
    readme = readme_with_stale_figures(tmp_path)
    report.update_readme(str(readme), parsed)
    text = readme.read_text()
    assert "5,310" not in text
    assert text.startswith("# socks5d\n\nbefore\n\n" + report.README_BEGIN + "\n")
    assert text.endswith(report.README_END + "\n\nafter\n")
    assert "From the published run (2026-12-07 11:00 UTC, 2 cores" in text
    assert "| | socks5d | microsocks | Dante |" in text
    assert "| one stream up, MB/s | 2,500 | 200 | 1,000 |" in text
    assert "| proxy CPU-s per GB (throughput scenarios) | 0.20–0.30 | 5–6 | 0.70–0.80 |" \
        in text
    assert "| 64 streams down: slowest stream's share of a fair share | 0.60 | failed | n/a |" \
        in text
    assert "| proxy CPU-µs per message, 2,000 slow tunnels | 30 | 90 | 200 |" in text
    # Scenarios the run did not have read "–", not an old figure.
    assert "| UDP round trips/s, 64 B | – | – | – |" in text
    report.update_readme(str(readme), parsed)
    assert readme.read_text() == text


def test_a_readme_without_its_markers_is_refused(doc, tmp_path):
    parsed, _ = render(doc, tmp_path)
    readme = tmp_path / "README.md"
    readme.write_text(report.README_END + "\n" + report.README_BEGIN + "\n")
    with pytest.raises(ValueError, match="markers"):
        report.update_readme(str(readme), parsed)


def test_only_a_full_run_written_to_docs_reaches_the_readme(doc, tmp_path, monkeypatch):
    parsed, _ = render(doc, tmp_path)
    readme = readme_with_stale_figures(tmp_path)
    monkeypatch.setattr(run, "README", str(readme))
    docs = os.path.join(run.ROOT, "docs")
    run.publish(dict(parsed, meta=dict(parsed["meta"], quick=True)), docs)
    run.publish(parsed, str(tmp_path))
    assert "5,310" in readme.read_text()
    run.publish(parsed, docs)
    assert "5,310" not in readme.read_text()


def test_the_published_figures_are_those_of_the_published_json():
    """README.md and docs/benchmarks.md as committed are what the generator
    writes from docs/benchmarks.json (docs/benchmarks.md ends with
    bench/analysis.md, which is checked only for being appended)."""
    with open(os.path.join(ROOT, "docs/benchmarks.json")) as f:
        published = json.load(f)
    with open(os.path.join(ROOT, "README.md")) as f:
        readme = f.read()
    with open(os.path.join(ROOT, "docs/benchmarks.md")) as f:
        md = f.read()
    begin = readme.index(report.README_BEGIN)
    end = readme.index(report.README_END)
    assert readme[begin:end] == "\n".join([report.README_BEGIN] + report.headline(published)) \
        + "\n"
    assert md.startswith("\n".join(report.figures(published)))
