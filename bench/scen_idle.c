/* idle: hold many quiet tunnels open so the driver can measure the proxy's
 * memory; sink: the target for idle, run as a separate process so that
 * neither process needs more than one descriptor per tunnel. */
#include "loop.h"
#include "net.h"
#include "report.h"
#include "scenarios.h"
#include "targets.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

/* Handshakes in progress at once: enough to open 9,000 tunnels quickly,
 * few enough not to overflow a proxy's listen backlog. */
#define MAX_PENDING 128
/* Longest time allowed for opening all the tunnels. */
#define OPEN_TIMEOUT_S 60.0
/* Bytes written through each tunnel once it is up, so that a proxy which
 * allocates buffers on first data is measured with them. */
#define TOUCH_BYTES 64

struct idle_tun {
    struct handler h;
    struct tunnel t;
    struct idle *run;
    bool up;
};

struct idle {
    const struct opts *o;
    struct dest dest;
    int epfd;
    struct idle_tun *tun;
    int next, pending, established, failed;
    char err[200];
};

static void tun_failed(struct idle_tun *it, const char *what, int err)
{
    struct idle *r = it->run;
    if (r->err[0] == '\0')
        snprintf(r->err, sizeof(r->err), "tunnel %d: %s%s%s", (int)(it - r->tun), what,
                 err ? ": " : "", err ? strerror(err) : "");
    close(it->h.fd);
    it->h.fd = -1;
    r->failed++;
    r->pending--;
}

static void tun_up(struct idle_tun *it)
{
    static const char touch[TOUCH_BYTES];
    struct idle *r = it->run;
    if (send(it->h.fd, touch, sizeof(touch), MSG_NOSIGNAL) != (ssize_t)sizeof(touch)) {
        tun_failed(it, "first write", errno);
        return;
    }
    if (loop_unwatch(r->epfd, &it->h) < 0) {
        tun_failed(it, "epoll_ctl", errno);
        return;
    }
    it->up = true;
    r->established++;
    r->pending--;
}

static void on_tun(struct handler *h, uint32_t events)
{
    struct idle_tun *it = (struct idle_tun *)h;
    enum tun_status st = tunnel_step(&it->t);
    (void)events;
    if (st == TUN_ERROR)
        tun_failed(it, it->t.err, 0);
    else if (st == TUN_DONE)
        tun_up(it);
    else if (loop_watch(it->run->epfd, h, st == TUN_WANT_READ ? EPOLLIN : EPOLLOUT) < 0)
        tun_failed(it, "epoll_ctl", errno);
}

static void start_next(struct idle *r)
{
    struct idle_tun *it = &r->tun[r->next];
    struct in_addr src = net_spread_src((unsigned)r->next);
    r->next++;
    it->run = r;
    it->h.on_event = on_tun;
    it->h.fd = -1;
    if (tunnel_open(&it->t, &r->o->proxy, &r->dest, SOCKS_CMD_CONNECT, &src) < 0) {
        r->failed++;
        if (r->err[0] == '\0')
            snprintf(r->err, sizeof(r->err), "tunnel %d: %s", r->next - 1, it->t.err);
        return;
    }
    it->h.fd = it->t.fd;
    r->pending++;
    if (loop_watch(r->epfd, &it->h, EPOLLOUT) < 0)
        tun_failed(it, "epoll_ctl", errno);
}

static void open_all(struct idle *r)
{
    double deadline = now_s() + OPEN_TIMEOUT_S;
    while (r->established + r->failed < r->o->count && now_s() < deadline) {
        while (r->pending < MAX_PENDING && r->next < r->o->count)
            start_next(r);
        if (loop_poll(r->epfd, 50) < 0) {
            snprintf(r->err, sizeof(r->err), "epoll_wait: %s", strerror(errno));
            break;
        }
    }
    /* Whatever is neither up nor failed by now has timed out. */
    for (int i = 0; i < r->next; i++) {
        if (!r->tun[i].up && r->tun[i].h.fd >= 0)
            tun_failed(&r->tun[i], "handshake timed out", 0);
    }
    r->failed += r->o->count - r->next;
}

/* Wait until the driver writes a line or closes our stdin, at most hold. */
static void wait_for_driver(double hold)
{
    struct pollfd pfd = {.fd = STDIN_FILENO, .events = POLLIN};
    char line[64];
    if (poll(&pfd, 1, (int)(hold * 1000)) > 0 && read(STDIN_FILENO, line, sizeof(line)) < 0)
        perror("loadgen idle: reading stdin");
}

/* Tunnels still open: the sink never sends, so readability means the proxy
 * closed or reset the tunnel while it sat idle. */
static int count_alive(struct idle *r)
{
    int alive = 0;
    for (int i = 0; i < r->next; i++) {
        struct pollfd pfd = {.fd = r->tun[i].h.fd, .events = POLLIN | POLLRDHUP};
        if (r->tun[i].up && poll(&pfd, 1, 0) == 0)
            alive++;
    }
    return alive;
}

static int idle_report(struct idle *r, double open_s, int alive)
{
    bool ok = r->established > 0;
    report_begin(r->o->scenario, r->o->proxy.direct);
    report_bool("ok", ok);
    if (r->err[0])
        report_str("error", r->err);
    report_int("requested", r->o->count);
    report_int("established", r->established);
    report_int("failed", r->failed);
    report_int("alive_at_end", alive);
    report_num("open_seconds", open_s);
    report_end();
    return ok ? 0 : 1;
}

static int idle_run(struct idle *r)
{
    double t0 = now_s(), open_s;
    int alive;
    open_all(r);
    open_s = now_s() - t0;
    fprintf(stderr, "ready %d\n", r->established);
    fflush(stderr);
    wait_for_driver(r->o->hold);
    alive = count_alive(r);
    for (int i = 0; i < r->next; i++) {
        if (r->tun[i].up)
            close(r->tun[i].h.fd);
    }
    return idle_report(r, open_s, alive);
}

int scen_idle(const struct opts *o)
{
    struct idle r;
    int rc;
    if (!o->have_target || o->count < 1)
        return scen_fail(o, "idle needs --target HOST:PORT (from `loadgen sink`) and --count");
    memset(&r, 0, sizeof(r));
    r.o = o;
    r.dest.addr = o->target;
    r.tun = calloc((size_t)o->count, sizeof(*r.tun));
    r.epfd = epoll_create1(EPOLL_CLOEXEC);
    if (!r.tun || r.epfd < 0) {
        free(r.tun);
        if (r.epfd >= 0)
            close(r.epfd);
        return scen_fail(o, "idle setup: out of memory or descriptors");
    }
    rc = idle_run(&r);
    close(r.epfd);
    free(r.tun);
    return rc;
}

int scen_sink(const struct opts *o)
{
    struct target sink;
    if (target_start(&sink, TARGET_SINK) < 0)
        return scen_fail(o, sink.err);
    report_begin(o->scenario, true);
    report_bool("ok", true);
    report_int("port", ntohs(sink.addr.sin_port));
    report_end();
    wait_for_driver(o->hold);
    target_stop(&sink);
    return 0;
}
