#include "fleet.h"

#include "net.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

/* Handshakes in progress at once: enough to open 9,000 tunnels quickly,
 * few enough not to overflow a proxy's listen backlog. */
#define MAX_PENDING 128

void fleet_fail(struct fleet_tun *it, const char *what, int err)
{
    struct fleet *f = it->f;
    if (f->err[0] == '\0')
        snprintf(f->err, sizeof(f->err), "tunnel %d: %s%s%s", (int)(it - f->tun), what,
                 err ? ": " : "", err ? strerror(err) : "");
    close(it->h.fd);
    it->h.fd = -1;
    f->failed++;
    if (!it->up)
        f->pending--;
    it->up = false;
}

static void on_handshake(struct handler *h, uint32_t events)
{
    struct fleet_tun *it = (struct fleet_tun *)h;
    struct fleet *f = it->f;
    enum tun_status st = tunnel_step(&it->t);
    (void)events;
    if (st == TUN_ERROR) {
        fleet_fail(it, it->t.err, 0);
    } else if (st != TUN_DONE) {
        if (loop_watch(f->epfd, h, st == TUN_WANT_READ ? EPOLLIN : EPOLLOUT) < 0)
            fleet_fail(it, "epoll_ctl", errno);
    } else if (f->on_up(it) == 0) {
        it->up = true;
        f->established++;
        f->pending--;
    }
}

static void start_next(struct fleet *f)
{
    struct fleet_tun *it = &f->tun[f->next];
    struct in_addr src = net_spread_src((unsigned)f->next);
    f->next++;
    it->f = f;
    it->h.on_event = on_handshake;
    it->h.fd = -1;
    if (tunnel_open(&it->t, &f->o->proxy, &f->dest, SOCKS_CMD_CONNECT, &src) < 0) {
        f->failed++;
        if (f->err[0] == '\0')
            snprintf(f->err, sizeof(f->err), "tunnel %d: %s", f->next - 1, it->t.err);
        return;
    }
    it->h.fd = it->t.fd;
    f->pending++;
    if (loop_watch(f->epfd, &it->h, EPOLLOUT) < 0)
        fleet_fail(it, "epoll_ctl", errno);
}

void fleet_open(struct fleet *f, double timeout_s)
{
    double deadline = now_s() + timeout_s;
    while (f->established + f->failed < f->count && now_s() < deadline) {
        while (f->pending < MAX_PENDING && f->next < f->count)
            start_next(f);
        if (loop_poll(f->epfd, 50) < 0) {
            snprintf(f->err, sizeof(f->err), "epoll_wait: %s", strerror(errno));
            break;
        }
    }
    /* Whatever is neither up nor failed by now has timed out. */
    for (int i = 0; i < f->next; i++) {
        if (!f->tun[i].up && f->tun[i].h.fd >= 0)
            fleet_fail(&f->tun[i], "handshake timed out", 0);
    }
    f->failed += f->count - f->next;
}

int fleet_init(struct fleet *f, const struct opts *o, const struct dest *d, int count,
               int (*on_up)(struct fleet_tun *it))
{
    memset(f, 0, sizeof(*f));
    f->o = o;
    f->dest = *d;
    f->count = count;
    f->on_up = on_up;
    f->tun = calloc((size_t)count, sizeof(*f->tun));
    f->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (!f->tun || f->epfd < 0) {
        snprintf(f->err, sizeof(f->err), "setup: out of memory or descriptors");
        free(f->tun);
        f->tun = NULL;
        if (f->epfd >= 0)
            close(f->epfd);
        return -1;
    }
    return 0;
}

void fleet_free(struct fleet *f)
{
    for (int i = 0; i < f->next; i++) {
        if (f->tun[i].up)
            close(f->tun[i].h.fd);
    }
    close(f->epfd);
    free(f->tun);
}
