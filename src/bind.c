/* BIND: one listening socket per request, two replies, then the relay. */
#include "bind.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "config.h"
#include "fdbudget.h"
#include "log.h"
#include "net.h"
#include "policy.h"
#include "proto.h"
#include "wenv.h"

struct bind_listener {
    struct loop_io io;
    struct cmd_ctx ctx;
    struct bind_want want;
    bind_fn done;
    void *owner;
};

/* The peer the request named: at the requested address (any address when it
 * is unspecified, one of the name's addresses for a name) and from the
 * requested port unless that is 0. Rules match the same port both times:
 * DST.PORT at the request, the peer's own port here. */
static int peer_expected(const struct bind_want *w, const struct sockaddr *peer)
{
    uint16_t port = addr_port(&w->dst.sa);
    if (port != 0 && addr_port(peer) != port)
        return 0;
    if (!w->name)
        return addr_is_unspecified(&w->dst.sa) || addr_same_ip(peer, &w->dst.sa);
    for (size_t i = 0; i < w->naddrs; i++)
        if (addr_same_ip(peer, &w->addrs[i].sa))
            return 1;
    return 0;
}

/* Ends the wait: the listener goes (its budget charge passes to fd when
 * there is one) and the session hears how it ended. */
static void finish(struct bind_listener *b, int fd, const union addr_any *peer, int err)
{
    bind_fn done = b->done;
    void *owner = b->owner;
    loop_io_close(b->ctx.env->loop, &b->io);
    if (fd < 0)
        fdbudget_give(1);
    free(b);
    done(owner, fd, peer, err);
}

static void on_bind_accept(struct loop_io *io, unsigned events)
{
    struct bind_listener *b = container_of(io, struct bind_listener, io);
    const struct bind_want *w = &b->want;
    (void)events;
    for (;;) {
        union addr_any peer;
        char name[ADDR_STRLEN], want[ADDR_STRLEN];
        int fd = net_accept(io->fd, &peer);
        if (fd < 0) {
            if (errno == ECONNABORTED)
                continue;
            if (errno != EAGAIN)
                finish(b, -1, NULL, errno);
            return;
        }
        /* Any other peer is turned away and the wait goes on. */
        if (!peer_expected(w, &peer.sa) ||
            !policy_address(b->ctx.pol, SOCKS5_CMD_BIND, &peer.sa, w->name)) {
            log_debug("bind: refused %s, waiting for %s", addr_str(&peer.sa, name, sizeof name),
                      w->name ? w->name : addr_str(&w->dst.sa, want, sizeof want));
            close(fd);
            continue;
        }
        union addr_any normal;
        addr_normalize(&peer.sa, &normal);
        finish(b, fd, &normal, 0);
        return;
    }
}

/* Where the listener goes: the address the client reached us on, in the
 * family the request asked for (wildcard when the families differ). */
static void listen_addr(const struct bind_listener *b, union addr_any *a)
{
    union addr_any local;
    socklen_t len = sizeof local;
    int family = b->want.name ? 0 : b->want.dst.sa.sa_family;
    memset(&local, 0, sizeof local);
    memset(a, 0, sizeof *a);
    if (getsockname(b->ctx.control_fd, &local.sa, &len) == 0 &&
        (family == 0 || family == local.sa.sa_family)) {
        *a = local;
    } else {
        a->sa.sa_family = (sa_family_t)family;
    }
    addr_set_port(a, 0);
}

struct bind_listener *bind_start(const struct cmd_ctx *ctx, const struct bind_want *want,
                                 union addr_any *bnd, bind_fn done, void *owner)
{
    union addr_any a, local;
    socklen_t len = sizeof *bnd;
    struct bind_listener *b = calloc(1, sizeof *b);
    if (!b)
        return NULL;
    b->ctx = *ctx;
    b->want = *want;
    b->done = done;
    b->owner = owner;
    listen_addr(b, &a);
    /* Charged to the budget; the accepted peer inherits TCP_NODELAY, as on
     * the main listeners. */
    int fd = net_listen_tcp(&a, 8, NET_NODELAY | NET_BUDGET, NULL, 0);
    if (fd < 0) {
        free(b);
        return NULL;
    }
    if (getsockname(fd, &bnd->sa, &len) < 0 ||
        loop_io_add(ctx->env->loop, &b->io, fd, LOOP_READ, on_bind_accept) < 0) {
        net_close(fd, NET_BUDGET);
        free(b);
        return NULL;
    }
    len = sizeof local;
    if (getsockname(ctx->control_fd, &local.sa, &len) == 0)
        config_advertise_into(ctx->cfg, &local.sa, bnd);
    return b;
}

void bind_cancel(struct bind_listener *b)
{
    loop_io_close(b->ctx.env->loop, &b->io);
    fdbudget_give(1);
    free(b);
}
