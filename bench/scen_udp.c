/* udp: datagram round trips through a UDP ASSOCIATE relay to an echo
 * target, with a bounded number of datagrams in flight. */
#include "loop.h"
#include "net.h"
#include "report.h"
#include "scenarios.h"
#include "targets.h"

#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* RFC 1928 section 7 header for an IPv4 destination. */
#define UDP_HDR 10
/* With nothing back for this long, stop waiting for the datagrams in flight
 * and send new ones (a stall); late replies still count as received. */
#define STALL_TIMEOUT_MS 20
/* After the run, how long to collect late replies before counting losses. */
#define DRAIN_MS 200

struct udp_run {
    const struct opts *o;
    int fd;
    struct sockaddr_in relay; /* where datagrams go: relay or echo target */
    size_t hdr;               /* UDP_HDR through a proxy, 0 direct */
    char pkt[UDP_HDR + 65536];
    char in[UDP_HDR + 65536];
    long long sent, received, in_window, stalls;
    int inflight;
};

static void build_packet(struct udp_run *u, const struct sockaddr_in *echo)
{
    if (u->hdr) {
        u->pkt[0] = 0;
        u->pkt[1] = 0;
        u->pkt[2] = 0; /* FRAG: no fragmentation */
        u->pkt[3] = 1; /* ATYP IPv4 */
        memcpy(u->pkt + 4, &echo->sin_addr, 4);
        memcpy(u->pkt + 8, &echo->sin_port, 2);
    }
    memset(u->pkt + u->hdr, 'u', (size_t)u->o->size);
}

static int fill_window(struct udp_run *u)
{
    size_t len = u->hdr + (size_t)u->o->size;
    while (u->inflight < u->o->window) {
        ssize_t n = sendto(u->fd, u->pkt, len, 0, (struct sockaddr *)&u->relay, sizeof(u->relay));
        if (n < 0 && (errno == EAGAIN || errno == ENOBUFS))
            return 0;
        if (n < 0)
            return -1;
        u->sent++;
        u->inflight++;
    }
    return 0;
}

static void drain(struct udp_run *u, const struct window *w)
{
    size_t want = u->hdr + (size_t)u->o->size;
    for (int i = 0; i < 64; i++) {
        double t;
        ssize_t n = recv(u->fd, u->in, sizeof(u->in), 0);
        if (n < 0)
            return;
        /* Through a proxy the reply carries the header naming the echo
         * target; anything of another size is not ours. */
        if ((size_t)n != want || (u->hdr && u->in[3] != 1))
            continue;
        u->received++;
        if (u->inflight > 0)
            u->inflight--;
        t = now_s();
        if (t >= w->start && t < w->end)
            u->in_window++;
    }
}

static int exchange(struct udp_run *u, const struct window *w)
{
    while (now_s() < w->end) {
        struct pollfd pfd = {.fd = u->fd, .events = POLLIN};
        int r;
        if (fill_window(u) < 0)
            return -1;
        r = poll(&pfd, 1, STALL_TIMEOUT_MS);
        if (r < 0 && errno != EINTR)
            return -1;
        if (r == 0) {
            u->stalls++;
            u->inflight = 0;
            continue;
        }
        drain(u, w);
    }
    return 0;
}

/* Collect replies still on their way, so that sent - received counts only
 * datagrams that were really lost. */
static void collect_late(struct udp_run *u, const struct window *w)
{
    double end = now_s() + DRAIN_MS / 1000.0;
    while (now_s() < end) {
        struct pollfd pfd = {.fd = u->fd, .events = POLLIN};
        if (poll(&pfd, 1, DRAIN_MS) <= 0)
            return;
        drain(u, w);
    }
}

static int report_udp(const struct udp_run *u, const char *err)
{
    const struct opts *o = u->o;
    bool ok = !err && u->in_window > 0;
    report_begin(o->scenario, o->proxy.direct);
    report_bool("ok", ok);
    if (!ok)
        report_str("error", err ? err : "no datagram came back");
    report_num("seconds", o->duration);
    report_int("payload", o->size);
    report_int("window", o->window);
    report_int("sent", u->sent);
    report_int("received", u->received);
    report_int("lost", u->sent > u->received ? u->sent - u->received : 0);
    report_int("stalls", u->stalls);
    report_num("datagrams_per_s", (double)u->in_window / o->duration);
    report_end();
    return ok ? 0 : 1;
}

/* Ask the proxy for a relay; the control connection must stay open for the
 * association to live. Returns the control socket or -1 with err filled. */
static int associate(struct udp_run *u, struct tunnel *ctl, char *err, size_t errlen)
{
    struct sockaddr_in mine;
    socklen_t len = sizeof(mine);
    struct dest d;
    if (getsockname(u->fd, (struct sockaddr *)&mine, &len) < 0) {
        snprintf(err, errlen, "getsockname: %s", strerror(errno));
        return -1;
    }
    memset(&d, 0, sizeof(d));
    d.addr = mine;
    if (tunnel_open_wait(ctl, &u->o->proxy, &d, SOCKS_CMD_UDP_ASSOCIATE, NULL, now_s() + 5) < 0) {
        snprintf(err, errlen, "udp associate: %s", ctl->err);
        return -1;
    }
    u->relay = ctl->bound;
    /* An unspecified BND.ADDR means "the address you reached me on". */
    if (u->relay.sin_addr.s_addr == htonl(INADDR_ANY))
        u->relay.sin_addr = u->o->proxy.addr.sin_addr;
    return ctl->fd;
}

static int udp_run(struct udp_run *u, const struct sockaddr_in *echo)
{
    struct sockaddr_in mine;
    struct window w;
    struct tunnel ctl;
    int ctl_fd = -1, rc = -1;
    char err[240] = "";
    u->fd = net_bind_udp(&mine);
    if (u->fd < 0)
        return scen_fail(u->o, "udp socket: bind failed");
    u->relay = *echo;
    u->hdr = u->o->proxy.direct ? 0 : UDP_HDR;
    if (!u->o->proxy.direct)
        ctl_fd = associate(u, &ctl, err, sizeof(err));
    if (u->o->proxy.direct || ctl_fd >= 0) {
        build_packet(u, echo);
        w.start = now_s() + u->o->warmup;
        w.end = w.start + u->o->duration;
        rc = exchange(u, &w);
        if (rc < 0)
            snprintf(err, sizeof(err), "udp exchange: %s", strerror(errno));
        else
            collect_late(u, &w);
    }
    if (ctl_fd >= 0)
        close(ctl_fd);
    close(u->fd);
    return report_udp(u, rc < 0 ? err : NULL);
}

int scen_udp(const struct opts *o)
{
    /* Static: two 64 KiB packet buffers are too big for the stack. */
    static struct udp_run u;
    struct target echo;
    int rc;
    if (o->size < 1 || o->size > 65000 || o->window < 1)
        return scen_fail(o, "udp: size must be 1..65000 and window at least 1");
    memset(&u, 0, sizeof(u));
    u.o = o;
    if (target_start(&echo, TARGET_UDP_ECHO) < 0)
        return scen_fail(o, echo.err);
    rc = udp_run(&u, &echo.addr);
    target_stop(&echo);
    return rc;
}
