/* idle: hold many quiet tunnels open so the driver can measure the proxy's
 * memory; sink: the target for idle, run as a separate process so that
 * neither process needs more than one descriptor per tunnel. */
#include "fleet.h"
#include "report.h"
#include "scenarios.h"
#include "targets.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* Longest time allowed for opening all the tunnels. */
#define OPEN_TIMEOUT_S 60.0
/* Bytes written through each tunnel once it is up, so that a proxy which
 * allocates buffers on first data is measured with them. */
#define TOUCH_BYTES 64

static int touch(struct fleet_tun *it)
{
    static const char bytes[TOUCH_BYTES];
    if (send(it->h.fd, bytes, sizeof(bytes), MSG_NOSIGNAL) != (ssize_t)sizeof(bytes)) {
        fleet_fail(it, "first write", errno);
        return -1;
    }
    if (loop_unwatch(it->f->epfd, &it->h) < 0) {
        fleet_fail(it, "epoll_ctl", errno);
        return -1;
    }
    return 0;
}

void wait_for_driver(double hold)
{
    struct pollfd pfd = {.fd = STDIN_FILENO, .events = POLLIN};
    char line[64];
    if (poll(&pfd, 1, (int)(hold * 1000)) > 0 && read(STDIN_FILENO, line, sizeof(line)) < 0)
        perror("loadgen: reading stdin");
}

/* Tunnels still open: the sink never sends, so readability means the proxy
 * closed or reset the tunnel while it sat idle. */
static int count_alive(struct fleet *f)
{
    int alive = 0;
    for (int i = 0; i < f->next; i++) {
        struct pollfd pfd = {.fd = f->tun[i].h.fd, .events = POLLIN | POLLRDHUP};
        if (f->tun[i].up && poll(&pfd, 1, 0) == 0)
            alive++;
    }
    return alive;
}

static int idle_report(struct fleet *f, double open_s, int alive)
{
    bool ok = f->established > 0;
    report_begin(f->o->scenario, f->o->proxy.direct);
    report_bool("ok", ok);
    if (f->err[0])
        report_str("error", f->err);
    report_int("requested", f->o->count);
    report_int("established", f->established);
    report_int("failed", f->failed);
    report_int("alive_at_end", alive);
    report_num("open_seconds", open_s);
    report_end();
    return ok ? 0 : 1;
}

int scen_idle(const struct opts *o)
{
    struct fleet f;
    struct dest d = {.addr = o->target};
    double t0 = now_s(), open_s;
    int alive, rc;
    if (!o->have_target || o->count < 1)
        return scen_fail(o, "idle needs --target HOST:PORT (from `loadgen sink`) and --count");
    if (fleet_init(&f, o, &d, o->count, touch) < 0)
        return scen_fail(o, f.err);
    fleet_open(&f, OPEN_TIMEOUT_S);
    open_s = now_s() - t0;
    fprintf(stderr, "ready %d\n", f.established);
    fflush(stderr);
    wait_for_driver(o->hold);
    alive = count_alive(&f);
    rc = idle_report(&f, open_s, alive);
    fleet_free(&f);
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
