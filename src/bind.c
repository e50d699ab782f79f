/* BIND: one listening socket per request, two replies, then the relay. */
#include "bind.h"

#include <errno.h>
#include <string.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "config.h"
#include "log.h"
#include "net.h"
#include "policy.h"
#include "proto.h"
#include "session.h"
#include "worker.h"

/* The peer the request named: at the requested address (any address when it
 * is unspecified, one of the name's addresses for a name) and from the
 * requested port unless that is 0. Rules match the same port both times:
 * DST.PORT at the request, the peer's own port here. */
static int peer_expected(const struct session *s, const struct sockaddr *peer)
{
    uint16_t port = addr_port(&s->dst.sa);
    if (port != 0 && addr_port(peer) != port)
        return 0;
    if (!s->dst_name)
        return addr_is_unspecified(&s->dst.sa) || addr_same_ip(peer, &s->dst.sa);
    for (size_t i = 0; i < s->nbind_peers; i++)
        if (addr_same_ip(peer, &s->bind_peers[i].sa))
            return 1;
    return 0;
}

/* The listener lives in the session's target slot until the peer comes. */
static void on_bind_accept(struct loop_io *io, unsigned events)
{
    struct session *s = container_of(io, struct session, relay.target.io);
    (void)events;
    for (;;) {
        union addr_any peer;
        char name[ADDR_STRLEN], want[ADDR_STRLEN];
        int fd = net_accept(io->fd, &peer);
        if (fd < 0) {
            if (errno == ECONNABORTED)
                continue;
            if (errno != EAGAIN)
                session_reply(s, SOCKS5_REP_GENERAL_FAILURE, NULL, strerror(errno));
            return;
        }
        /* Any other peer is turned away and the wait goes on. */
        if (!peer_expected(s, &peer.sa) ||
            !policy_address(s, SOCKS5_CMD_BIND, &peer.sa, s->dst_name)) {
            log_debug("bind: refused %s, waiting for %s", addr_str(&peer.sa, name, sizeof name),
                      s->dst_name ? s->dst_name : addr_str(&s->dst.sa, want, sizeof want));
            close(fd);
            continue;
        }
        /* The listener's budget charge passes on to the peer that replaces it. */
        loop_io_close(s->w->loop, io);
        addr_normalize(&peer.sa, &s->peer);
        if (session_attach_target(s, fd) < 0) {
            session_reply(s, SOCKS5_REP_GENERAL_FAILURE, NULL, "epoll_ctl failed");
            return;
        }
        if (session_reply(s, SOCKS5_REP_SUCCEEDED, &s->peer.sa, NULL) == 0)
            session_relay(s);
        return;
    }
}

/* Where the listener goes: the address the client reached us on, in the
 * family the request asked for (wildcard when the families differ). */
static void listen_addr(const struct session *s, union addr_any *a)
{
    union addr_any local;
    socklen_t len = sizeof local;
    int family = s->dst_name ? 0 : s->dst.sa.sa_family;
    memset(&local, 0, sizeof local);
    memset(a, 0, sizeof *a);
    if (getsockname(s->relay.client.io.fd, &local.sa, &len) == 0 &&
        (family == 0 || family == local.sa.sa_family)) {
        *a = local;
    } else {
        a->sa.sa_family = (sa_family_t)family;
    }
    addr_set_port(a, 0);
}

void bind_start(struct session *s)
{
    union addr_any a, bnd;
    socklen_t len = sizeof bnd;
    listen_addr(s, &a);
    /* Charged to the budget; the accepted peer inherits TCP_NODELAY, as on
     * the main listeners. */
    int fd = net_listen_tcp(&a, 8, NET_NODELAY | NET_BUDGET, NULL, 0);
    if (fd < 0) {
        session_reply(s, SOCKS5_REP_GENERAL_FAILURE, NULL, strerror(errno));
        return;
    }
    if (getsockname(fd, &bnd.sa, &len) < 0 ||
        loop_io_add(s->w->loop, &s->relay.target.io, fd, LOOP_READ, on_bind_accept) < 0) {
        net_close(fd, NET_BUDGET);
        session_reply(s, SOCKS5_REP_GENERAL_FAILURE, NULL, strerror(errno));
        return;
    }
    union addr_any local;
    len = sizeof local;
    if (getsockname(s->relay.client.io.fd, &local.sa, &len) == 0)
        config_advertise_into(s->cfg, &local.sa, &bnd);
    s->state = S_BIND_WAIT;
    if (session_reply(s, SOCKS5_REP_SUCCEEDED, &bnd.sa, NULL) == 0)
        session_arm(s, s->cfg->timeout_bind_ms);
}
