/* Scenarios on long-lived tunnels: bulk throughput, ping-pong latency, and
 * ping-pong latency beside bulk streams (fairness). */
#include "bulk.h"
#include "loop.h"
#include "pingpong.h"
#include "report.h"
#include "scenarios.h"
#include "targets.h"

#include <stdio.h>
#include <stdlib.h>

int scen_fail(const struct opts *o, const char *what)
{
    report_begin(o->scenario, o->proxy.direct);
    report_bool("ok", false);
    report_str("error", what);
    report_end();
    return 1;
}

static struct window window_from_now(const struct opts *o)
{
    struct window w;
    w.start = now_s() + o->warmup;
    w.end = w.start + o->duration;
    return w;
}

static unsigned long long tput_counter(const struct target *t, const struct bulk *b)
{
    return b->upload ? atomic_load(&t->bytes) : atomic_load(&b->rx_bytes);
}

/* How evenly the streams shared the window: each stream's bytes against
 * the fair share (total / n), and Jain's index (1 = all equal, 1/n = one
 * stream took everything). */
static void report_shares(int n, const unsigned long long *c0, const unsigned long long *c1)
{
    double sum = 0, sq = 0, lo = 0, hi = 0;
    for (int i = 0; i < n; i++) {
        double x = (double)(c1[i] - c0[i]);
        sum += x;
        sq += x * x;
        lo = i == 0 || x < lo ? x : lo;
        hi = i == 0 || x > hi ? x : hi;
    }
    if (sum <= 0)
        return;
    report_num("min_share", lo / (sum / n));
    report_num("max_share", hi / (sum / n));
    report_num("jain", sum * sum / (n * sq));
}

static int report_tput(const struct opts *o, const struct bulk *b, unsigned long long window_bytes,
                       unsigned long long total, const unsigned long long *c0,
                       const unsigned long long *c1)
{
    bool ok = b->failed == 0 && b->established == b->n && window_bytes > 0;
    report_begin(o->scenario, o->proxy.direct);
    report_bool("ok", ok);
    if (!ok)
        report_str("error", b->err[0] ? b->err : "no bytes went through");
    report_int("streams", b->n);
    report_int("established", b->established);
    report_num("seconds", o->duration);
    report_int("bytes", (long long)window_bytes);
    report_int("bytes_total", (long long)total);
    report_num("mb_per_s", (double)window_bytes / o->duration / 1e6);
    if (b->n > 1)
        report_shares(b->n, c0, c1);
    report_end();
    return ok ? 0 : 1;
}

int scen_tput(const struct opts *o, bool upload)
{
    struct target t;
    struct bulk b;
    struct window w;
    unsigned long long c0, c1;
    unsigned long long *s0 = calloc((size_t)o->streams, sizeof(*s0));
    unsigned long long *s1 = calloc((size_t)o->streams, sizeof(*s1));
    int rc;
    if (!s0 || !s1) {
        rc = scen_fail(o, "tput setup: out of memory");
        goto out;
    }
    if (target_start(&t, upload ? TARGET_SINK : TARGET_SOURCE) < 0) {
        rc = scen_fail(o, t.err);
        goto out;
    }
    w = window_from_now(o);
    if (bulk_start(&b, o, &t.addr, upload, o->streams, w.end) < 0) {
        target_stop(&t);
        rc = scen_fail(o, b.err);
        goto out;
    }
    sleep_until(w.start);
    c0 = tput_counter(&t, &b);
    bulk_stream_bytes(&b, s0);
    sleep_until(w.end);
    c1 = tput_counter(&t, &b);
    bulk_stream_bytes(&b, s1);
    bulk_join(&b);
    target_stop(&t);
    rc = report_tput(o, &b, c1 - c0, tput_counter(&t, &b), s0, s1);
out:
    free(s0);
    free(s1);
    return rc;
}

static void report_latency(const struct pingpong *p)
{
    report_int("rounds", p->rounds);
    report_int("samples", (long long)p->hist.count);
    report_num("p50_us", hist_pct(&p->hist, 50));
    report_num("p99_us", hist_pct(&p->hist, 99));
}

int scen_rr(const struct opts *o)
{
    struct target echo;
    struct pingpong p;
    bool ok;
    if (target_start(&echo, TARGET_ECHO) < 0)
        return scen_fail(o, echo.err);
    if (pingpong_start(&p, o, &echo.addr, window_from_now(o)) < 0) {
        target_stop(&echo);
        return scen_fail(o, p.err);
    }
    pingpong_join(&p);
    target_stop(&echo);
    ok = p.err[0] == '\0' && p.hist.count > 0;
    report_begin(o->scenario, o->proxy.direct);
    report_bool("ok", ok);
    if (!ok)
        report_str("error", p.err[0] ? p.err : "no round trip completed");
    report_num("seconds", o->duration);
    report_latency(&p);
    report_num("rounds_per_s", (double)p.hist.count / o->duration);
    report_end();
    pingpong_free(&p);
    return ok ? 0 : 1;
}

static int report_fair(const struct opts *o, const struct pingpong *p, const struct bulk *b,
                       unsigned long long window_bytes)
{
    bool ok = p->err[0] == '\0' && p->hist.count > 0 && b->failed == 0 && b->established == b->n;
    report_begin(o->scenario, o->proxy.direct);
    report_bool("ok", ok);
    if (!ok)
        report_str("error", p->err[0] ? p->err : b->err[0] ? b->err : "no round trip completed");
    report_num("seconds", o->duration);
    report_latency(p);
    report_int("bulk_streams", b->n);
    report_num("bulk_mb_per_s", (double)window_bytes / o->duration / 1e6);
    report_end();
    return ok ? 0 : 1;
}

/* Ping-pong latency while bulk uploads share the proxy. */
int scen_fair(const struct opts *o)
{
    struct target sink, echo;
    struct bulk b;
    struct pingpong p;
    struct window w;
    unsigned long long c0, c1;
    int rc;
    if (target_start(&sink, TARGET_SINK) < 0)
        return scen_fail(o, sink.err);
    if (target_start(&echo, TARGET_ECHO) < 0) {
        target_stop(&sink);
        return scen_fail(o, echo.err);
    }
    w = window_from_now(o);
    if (bulk_start(&b, o, &sink.addr, true, o->streams, w.end) < 0) {
        rc = scen_fail(o, b.err);
        goto out_targets;
    }
    if (pingpong_start(&p, o, &echo.addr, w) < 0) {
        bulk_join(&b);
        rc = scen_fail(o, p.err);
        goto out_targets;
    }
    sleep_until(w.start);
    c0 = atomic_load(&sink.bytes);
    sleep_until(w.end);
    c1 = atomic_load(&sink.bytes);
    pingpong_join(&p);
    bulk_join(&b);
    rc = report_fair(o, &p, &b, c1 - c0);
    pingpong_free(&p);
out_targets:
    target_stop(&echo);
    target_stop(&sink);
    return rc;
}
