/* crr: many clients, each looping connect -> SOCKS5 handshake -> one
 * request/response through the tunnel -> close. */
#include "hist.h"
#include "loop.h"
#include "net.h"
#include "report.h"
#include "scenarios.h"
#include "targets.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

struct crr;

struct client {
    struct handler h;
    struct tunnel t;
    struct crr *run;
    bool echoing; /* handshake done, waiting for the echo */
    uint64_t t0;
    size_t got;
};

struct crr {
    const struct opts *o;
    struct dest dest;
    struct window win;
    int epfd;
    unsigned next_src;
    struct hist hist;
    long long sessions, errors;
    char msg[65536];
    char reply[65536];
    char err[200];
};

static void session_start(struct client *c);

static void session_error(struct client *c, const char *what, int err)
{
    struct crr *r = c->run;
    r->errors++;
    if (r->err[0] == '\0')
        snprintf(r->err, sizeof(r->err), "session: %s%s%s", what, err ? ": " : "",
                 err ? strerror(err) : "");
    close(c->h.fd);
    loop_forget(&c->h);
    session_start(c);
}

static void session_done(struct client *c)
{
    struct crr *r = c->run;
    uint64_t t1;
    close(c->h.fd);
    loop_forget(&c->h);
    t1 = now_ns();
    r->sessions++;
    if ((double)c->t0 / 1e9 >= r->win.start && (double)t1 / 1e9 < r->win.end)
        hist_add_ns(&r->hist, t1 - c->t0);
    session_start(c);
}

static void on_echo(struct client *c)
{
    struct crr *r = c->run;
    size_t size = (size_t)r->o->size;
    ssize_t n = recv(c->h.fd, r->reply, size - c->got, 0);
    if (n < 0 && errno == EAGAIN)
        return;
    if (n <= 0) {
        session_error(c, n == 0 ? "echo: closed early" : "echo: recv", n == 0 ? 0 : errno);
        return;
    }
    /* Every byte must be the one sent: a tunnel that reached another target
     * (a source's bytes, a sink's silence) fails here instead of counting. */
    if (memcmp(r->reply, r->msg + c->got, (size_t)n) != 0) {
        session_error(c, "echo: bytes differ from those sent", 0);
        return;
    }
    c->got += (size_t)n;
    if (c->got == size)
        session_done(c);
}

static void on_handshake(struct client *c)
{
    struct crr *r = c->run;
    enum tun_status st = tunnel_step(&c->t);
    ssize_t n;
    if (st == TUN_ERROR) {
        session_error(c, c->t.err, 0);
        return;
    }
    if (st != TUN_DONE) {
        if (loop_watch(r->epfd, &c->h, st == TUN_WANT_READ ? EPOLLIN : EPOLLOUT) < 0)
            session_error(c, "epoll_ctl", errno);
        return;
    }
    /* The message is far below the socket buffer, so one send suffices. */
    n = send(c->h.fd, r->msg, (size_t)r->o->size, MSG_NOSIGNAL);
    if (n != r->o->size) {
        session_error(c, "request send", n < 0 ? errno : EMSGSIZE);
        return;
    }
    c->echoing = true;
    if (loop_watch(r->epfd, &c->h, EPOLLIN) < 0)
        session_error(c, "epoll_ctl", errno);
}

static void on_client(struct handler *h, uint32_t events)
{
    struct client *c = (struct client *)h;
    (void)events;
    if (c->echoing)
        on_echo(c);
    else
        on_handshake(c);
}

/* Start the next session. A failure here is counted and the client rests
 * until the run ends, which bounds a tight failure loop. */
static void session_start(struct client *c)
{
    struct crr *r = c->run;
    struct in_addr src = net_spread_src(r->next_src++);
    c->echoing = false;
    c->got = 0;
    c->t0 = now_ns();
    if (now_s() >= r->win.end)
        return;
    if (tunnel_open(&c->t, &r->o->proxy, &r->dest, SOCKS_CMD_CONNECT, &src) < 0) {
        r->errors++;
        if (r->err[0] == '\0')
            snprintf(r->err, sizeof(r->err), "session: %s", c->t.err);
        return;
    }
    c->h.fd = c->t.fd;
    if (loop_watch(r->epfd, &c->h, EPOLLOUT) < 0) {
        close(c->h.fd);
        loop_forget(&c->h);
        r->errors++;
    }
}

static void run_clients(struct crr *r, struct client *cl, int n)
{
    for (int i = 0; i < n; i++) {
        cl[i].run = r;
        cl[i].h.on_event = on_client;
        cl[i].h.fd = -1;
        session_start(&cl[i]);
    }
    while (now_s() < r->win.end) {
        if (loop_poll(r->epfd, 50) < 0) {
            snprintf(r->err, sizeof(r->err), "epoll_wait: %s", strerror(errno));
            r->errors++;
            break;
        }
    }
    /* Sessions still open at the end are cut short, not failed. */
    for (int i = 0; i < n; i++) {
        if (cl[i].h.events)
            close(cl[i].h.fd);
    }
}

static int report_crr(const struct crr *r)
{
    const struct opts *o = r->o;
    /* A few failures out of many sessions are reported, not fatal; a
     * proxy failing more than 1% of sessions has failed the scenario. */
    bool ok = r->hist.count > 0 && r->errors * 100 <= r->sessions;
    report_begin(o->scenario, o->proxy.direct);
    report_bool("ok", ok);
    if (r->err[0])
        report_str("error", r->err);
    else if (!ok)
        report_str("error", "no session completed");
    report_num("seconds", o->duration);
    report_int("clients", o->clients);
    report_int("sessions_total", r->sessions);
    report_int("errors", r->errors);
    report_int("samples", (long long)r->hist.count);
    report_num("sessions_per_s", (double)r->hist.count / o->duration);
    report_num("p50_us", hist_pct(&r->hist, 50));
    report_num("p99_us", hist_pct(&r->hist, 99));
    report_end();
    return ok ? 0 : 1;
}

static int crr_run(struct crr *r, const struct sockaddr_in *echo)
{
    struct client *cl = calloc((size_t)r->o->clients, sizeof(*cl));
    int rc;
    r->dest.addr = *echo;
    r->dest.domain = r->o->domain;
    for (size_t i = 0; i < sizeof(r->msg); i++)
        r->msg[i] = (char)('a' + i % 26);
    r->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (!cl || r->epfd < 0 || hist_init(&r->hist) < 0) {
        free(cl);
        if (r->epfd >= 0)
            close(r->epfd);
        return scen_fail(r->o, "crr setup: out of memory or descriptors");
    }
    r->win.start = now_s() + r->o->warmup;
    r->win.end = r->win.start + r->o->duration;
    run_clients(r, cl, r->o->clients);
    rc = report_crr(r);
    hist_free(&r->hist);
    close(r->epfd);
    free(cl);
    return rc;
}

int scen_crr(const struct opts *o)
{
    struct target echo;
    struct crr *r;
    int rc;
    if (o->size < 1 || o->size > 65536 || o->clients < 1)
        return scen_fail(o, "crr: size must be 1..65536 and clients at least 1");
    r = calloc(1, sizeof(*r));
    if (!r)
        return scen_fail(o, "crr: out of memory");
    r->o = o;
    if (target_start(&echo, TARGET_ECHO) < 0) {
        rc = scen_fail(o, echo.err);
    } else {
        rc = crr_run(r, &echo.addr);
        target_stop(&echo);
    }
    free(r);
    return rc;
}
