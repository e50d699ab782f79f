/* trickle: many slow tunnels to an echo target, each writing a few bytes
 * every interval (staggered so the writes spread evenly over time) and
 * waiting for them to come back. The driver reads the proxy's CPU between
 * the "ready" and "done" lines on stderr, so CPU per message leaves out
 * opening and closing the tunnels. */
#include "fleet.h"
#include "hist.h"
#include "report.h"
#include "scenarios.h"
#include "targets.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#define OPEN_TIMEOUT_S 30.0

/* One tunnel's message in flight. */
struct msg {
    uint64_t sent_ns;
    int got; /* bytes of the echo received so far */
    bool waiting;
};

struct trickle {
    struct fleet f;
    struct msg *m;
    struct hist hist;
    struct window win;
    long long sent, delivered, late, errors;
    char out[256], in[256];
};

static struct trickle *of(struct fleet_tun *it)
{
    return (struct trickle *)((char *)it->f - offsetof(struct trickle, f));
}

static void tun_error(struct fleet_tun *it, const char *what, int err)
{
    of(it)->errors++;
    fleet_fail(it, what, err);
}

static void on_echo(struct handler *h, uint32_t events)
{
    struct fleet_tun *it = (struct fleet_tun *)h;
    struct trickle *r = of(it);
    struct msg *m = &r->m[it - r->f.tun];
    int size = r->f.o->size;
    ssize_t n = recv(h->fd, r->in, (size_t)(m->waiting ? size - m->got : size), 0);
    uint64_t t1;
    (void)events;
    if (n < 0 && errno == EAGAIN)
        return;
    if (n <= 0) {
        tun_error(it, n == 0 ? "proxy closed the tunnel" : "recv", n == 0 ? 0 : errno);
        return;
    }
    if (!m->waiting) {
        tun_error(it, "bytes nobody asked for", 0);
        return;
    }
    m->got += (int)n;
    if (m->got < size)
        return;
    m->waiting = false;
    r->delivered++;
    t1 = now_ns();
    if ((double)m->sent_ns / 1e9 >= r->win.start && (double)t1 / 1e9 < r->win.end)
        hist_add_ns(&r->hist, t1 - m->sent_ns);
}

static int on_up(struct fleet_tun *it)
{
    it->h.on_event = on_echo;
    if (loop_watch(it->f->epfd, &it->h, EPOLLIN) < 0) {
        fleet_fail(it, "epoll_ctl", errno);
        return -1;
    }
    return 0;
}

/* Tunnel i's turn: a message, unless its last one is still on its way. */
static void send_one(struct trickle *r, int i)
{
    struct fleet_tun *it = &r->f.tun[i];
    struct msg *m = &r->m[i];
    if (!it->up)
        return;
    if (m->waiting) {
        r->late++;
        return;
    }
    /* A few bytes always fit the socket buffer of a quiet tunnel. */
    if (send(it->h.fd, r->out, (size_t)r->f.o->size, MSG_NOSIGNAL) != r->f.o->size) {
        tun_error(it, "send", errno);
        return;
    }
    m->sent_ns = now_ns();
    m->got = 0;
    m->waiting = true;
    r->sent++;
}

/* Tunnel s % count writes at base + s * step: every tunnel once per
 * interval, the whole fleet spread evenly over it. */
static void run(struct trickle *r)
{
    const struct opts *o = r->f.o;
    double step = o->interval_ms / 1e3 / r->f.count, base = now_s();
    long long s = 0;
    r->win.start = base + o->warmup;
    r->win.end = r->win.start + o->duration;
    while (now_s() < r->win.end) {
        double t = now_s(), wait;
        for (; base + (double)s * step <= t; s++)
            send_one(r, (int)(s % r->f.count));
        wait = ceil((base + (double)s * step - now_s()) * 1e3);
        if (loop_poll(r->f.epfd, wait < 0 ? 0 : wait > 50 ? 50 : (int)wait) < 0) {
            snprintf(r->f.err, sizeof(r->f.err), "epoll_wait: %s", strerror(errno));
            r->errors++;
            return;
        }
    }
}

static int report_trickle(struct trickle *r)
{
    const struct opts *o = r->f.o;
    /* A tunnel or message lost out of a hundred is reported, not fatal. */
    bool ok =
        r->hist.count > 0 && r->f.failed * 100 <= r->f.count && r->errors * 100 <= r->delivered;
    report_begin(o->scenario, o->proxy.direct);
    report_bool("ok", ok);
    if (r->f.err[0])
        report_str("error", r->f.err);
    else if (!ok)
        report_str("error", "no message came back");
    report_num("seconds", o->duration);
    report_int("tunnels", r->f.count);
    report_int("established", r->f.established);
    report_int("interval_ms", o->interval_ms);
    report_int("size", o->size);
    report_int("sent", r->sent);
    report_int("messages_total", r->delivered);
    report_int("late", r->late);
    report_int("errors", r->errors);
    report_num("messages_per_s", (double)r->hist.count / o->duration);
    report_num("p50_us", hist_pct(&r->hist, 50));
    report_num("p99_us", hist_pct(&r->hist, 99));
    report_num("p999_us", hist_pct(&r->hist, 99.9));
    report_end();
    return ok ? 0 : 1;
}

static int trickle_run(struct trickle *r, const struct opts *o, const struct sockaddr_in *echo)
{
    struct dest d = {.addr = *echo, .domain = o->domain};
    int rc;
    if (fleet_init(&r->f, o, &d, o->count, on_up) < 0)
        return scen_fail(o, r->f.err);
    r->m = calloc((size_t)o->count, sizeof(*r->m));
    if (!r->m || hist_init(&r->hist) < 0) {
        free(r->m);
        fleet_free(&r->f);
        return scen_fail(o, "trickle setup: out of memory");
    }
    memset(r->out, 't', sizeof(r->out));
    fleet_open(&r->f, OPEN_TIMEOUT_S);
    fprintf(stderr, "ready %d\n", r->f.established);
    fflush(stderr);
    wait_for_driver(o->hold);
    run(r);
    fprintf(stderr, "done %lld\n", r->delivered);
    fflush(stderr);
    wait_for_driver(o->hold);
    rc = report_trickle(r);
    hist_free(&r->hist);
    free(r->m);
    fleet_free(&r->f);
    return rc;
}

int scen_trickle(const struct opts *o)
{
    struct target echo;
    struct trickle *r;
    int rc;
    if (o->size > (int)sizeof(r->out))
        return scen_fail(o, "trickle: size must be 1..256");
    r = calloc(1, sizeof(*r));
    if (!r)
        return scen_fail(o, "trickle: out of memory");
    if (target_start(&echo, TARGET_ECHO) < 0) {
        rc = scen_fail(o, echo.err);
    } else {
        rc = trickle_run(r, o, &echo.addr);
        target_stop(&echo);
    }
    free(r);
    return rc;
}
