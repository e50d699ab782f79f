/* UDP ASSOCIATE relay. See udp.h. */
#include "udp.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "config.h"
#include "fdbudget.h"
#include "log.h"
#include "net.h"
#include "policy.h"
#include "loop.h"
#include "resolve.h"
#include "udpchain.h"
#include "wenv.h"

#define UDP_PEERS 32    /* targets remembered for the answer filter */
#define UDP_DNS_SLOTS 8 /* names remembered per association */
#define UDP_DNS_TTL_MS 60000
#define UDP_BUDGET 64   /* datagrams per socket per event */
#define UDP_HEADROOM 32 /* room to prepend a header in front of a payload */
#define UDP_MAX_DGRAM 65535
/* Descriptors an association may hold: the client side and a target
 * socket per family, charged to the budget as a whole when it opens. */
#define UDP_FDS 3

struct udp_dns {
    char name[256];
    union addr_any addr;
    uint64_t expires;
};

struct udp_assoc {
    struct cmd_ctx ctx;
    struct loop_io cio;        /* client side */
    struct loop_io tio4, tio6; /* target side, opened on first use */
    struct loop_defer more;    /* a socket still had datagrams after its budget */
    int family;                /* of the client side */
    union addr_any client;     /* where the client sends from */
    int client_port_known;
    union addr_any peers[UDP_PEERS];
    unsigned npeers, peer_next;
    struct udp_dns dns[UDP_DNS_SLOTS];
    unsigned dns_next;
    struct resolve_query *q; /* one lookup at a time */
    uint8_t *held;           /* the datagram waiting for it */
    size_t held_len;
    char held_name[256];
    struct udp_seal seal;
    uint8_t *sealed; /* protected: each datagram's other form */
    struct udp_counts counts;
    /* Through upstream SOCKS5 associations (udp_chain), or NULL: the first
     * hop's relay, where every datagram goes, and the headers in front. */
    struct udpchain *chained;
    union addr_any relay;
    const uint8_t *prefix;
    size_t prefix_len;
};

/* One buffer per worker thread for every datagram it relays. */
static _Thread_local uint8_t scratch[UDP_HEADROOM + UDP_MAX_DGRAM];

const struct udp_counts *udp_counts(const struct udp_assoc *u)
{
    return &u->counts;
}

static void touch(struct udp_assoc *u)
{
    u->counts.active_ms = loop_now(u->ctx.env->loop);
}

/* ---------------- sockets ---------------- */

static void on_client_dgram(struct loop_io *io, unsigned events);
static void on_target4_dgram(struct loop_io *io, unsigned events);
static void on_target6_dgram(struct loop_io *io, unsigned events);
static void on_more(struct loop_defer *d);
static void close_io(struct udp_assoc *u, struct loop_io *io);

/* Not charged here: the association charged UDP_FDS when it opened. */
static int open_sock(struct udp_assoc *u, struct loop_io *io, union addr_any *local, uint16_t lo,
                     uint16_t hi, unsigned flags, loop_io_fn fn)
{
    int fd = net_bind_udp(local, lo, hi, NET_V6ONLY | flags, NULL, 0);
    if (fd < 0)
        return -1;
    if (loop_io_add(u->ctx.env->loop, io, fd, LOOP_READ, fn) < 0) {
        net_close(fd, 0);
        return -1;
    }
    return 0;
}

/* The socket that talks to targets of this family, opened on first use on
 * an ephemeral port of the wildcard address, as an outbound connect would,
 * or of the route's source address for the family, leaving through its
 * device and with its mark (net_out). */
static int target_fd(struct udp_assoc *u, int family)
{
    struct loop_io *io = family == AF_INET6 ? &u->tio6 : &u->tio4;
    struct net_out rest = u->ctx.out;
    union addr_any local;
    unsigned flags = 0;
    if (io->fd >= 0)
        return io->fd;
    memset(&local, 0, sizeof local);
    local.sa.sa_family = (sa_family_t)family;
    for (size_t i = 0; i < rest.nsrc; i++)
        if (rest.src[i].sa.sa_family == family) {
            local = rest.src[i];
            flags = NET_FREEBIND;
        }
    rest.nsrc = 0; /* bound above */
    if (open_sock(u, io, &local, 0, 0, flags,
                  family == AF_INET6 ? on_target6_dgram : on_target4_dgram) < 0) {
        io->fd = -1;
        return -1;
    }
    if (net_apply_out(io->fd, family, &rest, NULL, 0) < 0) {
        close_io(u, io);
        return -1;
    }
    return io->fd;
}

static void close_io(struct udp_assoc *u, struct loop_io *io)
{
    if (io->fd >= 0)
        loop_io_close(u->ctx.env->loop, io);
}

/* ---------------- client -> target ---------------- */

static void remember_peer(struct udp_assoc *u, const union addr_any *to)
{
    for (unsigned i = 0; i < u->npeers; i++)
        if (addr_same_ip(&u->peers[i].sa, &to->sa))
            return;
    u->peers[u->peer_next] = *to;
    u->peer_next = (u->peer_next + 1) % UDP_PEERS;
    if (u->npeers < UDP_PEERS)
        u->npeers++;
}

static void dropped(struct udp_assoc *u)
{
    u->counts.dropped++;
    stat_inc(&u->ctx.env->stats.dgrams_dropped);
}

/* Sends data to `to` directly, or, chained, to the upstream's relay with a
 * SOCKS5 header naming `to`. Returns what sendto/sendmsg does. */
static ssize_t send_out(struct udp_assoc *u, int fd, const union addr_any *to, const uint8_t *data,
                        size_t len)
{
    uint8_t hdr[PROTO_UDP_HEADER_MAX];
    if (!u->chained)
        return sendto(fd, data, len, 0, &to->sa, addr_len(&to->sa));
    struct iovec iov[3] = {{(void *)u->prefix, u->prefix_len},
                           {hdr, proto_encode_udp_header(hdr, sizeof hdr, &to->sa)},
                           {(void *)data, len}};
    struct msghdr m = {.msg_name = &u->relay.sa,
                       .msg_namelen = addr_len(&u->relay.sa),
                       .msg_iov = iov,
                       .msg_iovlen = 3};
    return sendmsg(fd, &m, 0);
}

/* `name` is the name the client asked for, if any, for the rules. */
static void send_to_target(struct udp_assoc *u, const union addr_any *to, const char *name,
                           const uint8_t *data, size_t len)
{
    int fd;
    int family = u->chained ? u->relay.sa.sa_family : to->sa.sa_family;
    if (!policy_address(u->ctx.pol, SOCKS5_CMD_UDP, &to->sa, name) ||
        (fd = target_fd(u, family)) < 0 || send_out(u, fd, to, data, len) < 0) {
        dropped(u);
        return;
    }
    remember_peer(u, to);
    u->counts.dgrams_up++;
    u->counts.bytes_up += len;
    stat_inc(&u->ctx.env->stats.dgrams_up);
    stat_add(&u->ctx.env->stats.bytes_up, len);
}

static struct udp_dns *dns_find(struct udp_assoc *u, const char *name)
{
    uint64_t now = loop_now(u->ctx.env->loop);
    for (unsigned i = 0; i < UDP_DNS_SLOTS; i++)
        if (u->dns[i].expires > now && strcasecmp(u->dns[i].name, name) == 0)
            return &u->dns[i];
    return NULL;
}

static void dns_put(struct udp_assoc *u, const char *name, const union addr_any *a)
{
    struct udp_dns *d = &u->dns[u->dns_next++ % UDP_DNS_SLOTS];
    snprintf(d->name, sizeof d->name, "%s", name);
    d->addr = *a;
    d->expires = loop_now(u->ctx.env->loop) + UDP_DNS_TTL_MS;
}

/* UDP has no way to race addresses: take the first of the family the
 * client side uses, else the first. */
static const union addr_any *pick_addr(const struct udp_assoc *u, const union addr_any *addrs,
                                       size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (addrs[i].sa.sa_family == u->family)
            return &addrs[i];
    return &addrs[0];
}

static void on_resolved(void *owner, int status, const union addr_any *addrs, size_t n)
{
    struct udp_assoc *u = owner;
    u->q = NULL;
    if (status == RESOLVE_OK && n > 0) {
        const union addr_any *to = pick_addr(u, addrs, n);
        dns_put(u, u->held_name, to);
        send_to_target(u, to, u->held_name, u->held, u->held_len);
    } else {
        dropped(u);
    }
    free(u->held);
    u->held = NULL;
}

/* A name not in the cache: resolve it, holding this one datagram. Others
 * arriving meanwhile for a new name are dropped (UDP may lose datagrams). */
static void resolve_and_send(struct udp_assoc *u, const struct proto_addr *a, const uint8_t *data,
                             size_t len)
{
    union addr_any lit[RESOLVE_MAX_ADDRS];
    size_t n;
    if (resolve_literal(a->u.name, a->port, lit, &n)) {
        send_to_target(u, pick_addr(u, lit, n), a->u.name, data, len);
        return;
    }
    struct udp_dns *d = dns_find(u, a->u.name);
    if (d) {
        union addr_any to = d->addr;
        addr_set_port(&to, a->port);
        send_to_target(u, &to, a->u.name, data, len);
        return;
    }
    /* A name the rules refuse by itself is not even looked up. */
    if (policy_name_denied(u->ctx.pol, SOCKS5_CMD_UDP, a->u.name, a->port) || u->q ||
        !(u->held = malloc(len ? len : 1))) {
        dropped(u);
        return;
    }
    memcpy(u->held, data, len);
    u->held_len = len;
    snprintf(u->held_name, sizeof u->held_name, "%s", a->u.name);
    u->q = resolve_start(u->ctx.env->resolver, a->u.name, a->port, on_resolved, u);
    if (!u->q) {
        free(u->held);
        u->held = NULL;
        dropped(u);
    }
}

/* Only the client that opened the association may use it. */
static int from_client(const struct udp_assoc *u, const union addr_any *from)
{
    if (!addr_same_ip(&from->sa, &u->client.sa))
        return 0;
    return !u->client_port_known || addr_port(&from->sa) == addr_port(&u->client.sa);
}

static void client_dgram(struct udp_assoc *u, uint8_t *buf, size_t len, const union addr_any *from)
{
    struct proto_addr a;
    struct sockaddr_storage ss;
    union addr_any to;
    size_t hlen;
    enum proto_err err;
    long n = 0;
    if (!from_client(u, from) ||
        (u->sealed && (n = u->seal.open(u->seal.arg, buf, len, u->sealed, UDP_MAX_DGRAM)) < 0)) {
        dropped(u);
        return;
    }
    if (u->sealed) {
        buf = u->sealed;
        len = (size_t)n;
    }
    if (proto_parse_udp_header(buf, len, &a, &hlen, &err) != RES_DONE) {
        dropped(u);
        return;
    }
    /* Only a datagram that passed every check names the client's port: a
     * forged or garbled one from its address cannot take the association. */
    if (!u->client_port_known) {
        addr_set_port(&u->client, addr_port(&from->sa));
        u->client_port_known = 1;
    }
    touch(u);
    if (a.atyp == SOCKS5_ATYP_DOMAIN) {
        resolve_and_send(u, &a, buf + hlen, len - hlen);
        return;
    }
    proto_addr_to_sockaddr(&a, &ss);
    addr_normalize((struct sockaddr *)&ss, &to);
    send_to_target(u, &to, NULL, buf + hlen, len - hlen);
}

/* Receives up to UDP_BUDGET datagrams into scratch + UDP_HEADROOM and hands
 * each to fn; edge-triggered, so a socket left with datagrams is revisited
 * after this loop round. */
static void drain(struct udp_assoc *u, struct loop_io *io,
                  void (*fn)(struct udp_assoc *, uint8_t *, size_t, const union addr_any *))
{
    for (int i = 0; i < UDP_BUDGET; i++) {
        union addr_any from;
        socklen_t fl = sizeof from;
        ssize_t n = recvfrom(io->fd, scratch + UDP_HEADROOM, UDP_MAX_DGRAM, 0, &from.sa, &fl);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return; /* EAGAIN, or an ICMP error queued on the socket */
        }
        fn(u, scratch + UDP_HEADROOM, (size_t)n, &from);
    }
    loop_defer(u->ctx.env->loop, &u->more, on_more);
}

static void on_client_dgram(struct loop_io *io, unsigned events)
{
    (void)events;
    drain(container_of(io, struct udp_assoc, cio), io, client_dgram);
}

/* ---------------- target -> client ---------------- */

static int known_peer(const struct udp_assoc *u, const union addr_any *from)
{
    for (unsigned i = 0; i < u->npeers; i++)
        if (addr_same_ip(&u->peers[i].sa, &from->sa))
            return 1;
    return 0;
}

static void to_client(struct udp_assoc *u, const uint8_t *dgram, size_t len, size_t payload)
{
    if (u->sealed) {
        len = u->seal.seal(u->seal.arg, dgram, len, u->sealed, UDP_MAX_DGRAM);
        dgram = u->sealed;
    }
    if (len == 0 || sendto(u->cio.fd, dgram, len, 0, &u->client.sa, addr_len(&u->client.sa)) < 0) {
        dropped(u);
        return;
    }
    touch(u);
    u->counts.dgrams_down++;
    u->counts.bytes_down += payload;
    stat_inc(&u->ctx.env->stats.dgrams_down);
    stat_add(&u->ctx.env->stats.bytes_down, payload);
}

/* From the upstream's relay: already framed with the real source, which
 * must be one the association sent to (or any, in full cone), behind one
 * header per later relay, each naming the relay after it (udpchain_strip). */
static void relay_dgram(struct udp_assoc *u, const uint8_t *data, size_t len,
                        const union addr_any *from)
{
    struct proto_addr a;
    struct sockaddr_storage ss;
    union addr_any src;
    size_t hlen;
    enum proto_err err;
    long outer = udpchain_strip(u->prefix, u->prefix_len, data, len);
    if (outer >= 0) {
        data += outer;
        len -= (size_t)outer;
    }
    if (!addr_same_ip(&from->sa, &u->relay.sa) || addr_port(&from->sa) != addr_port(&u->relay.sa) ||
        !u->client_port_known || outer < 0 ||
        proto_parse_udp_header(data, len, &a, &hlen, &err) != RES_DONE) {
        dropped(u);
        return;
    }
    if (!u->ctx.cfg->udp_full_cone) {
        if (!proto_addr_to_sockaddr(&a, &ss)) {
            dropped(u); /* a name as the source: not one we sent to */
            return;
        }
        addr_normalize((struct sockaddr *)&ss, &src);
        if (!known_peer(u, &src)) {
            dropped(u);
            return;
        }
    }
    to_client(u, data, len, len - hlen);
}

/* data sits at scratch + UDP_HEADROOM: the header goes right in front. */
static void target_dgram(struct udp_assoc *u, uint8_t *data, size_t len, const union addr_any *from)
{
    uint8_t hdr[PROTO_UDP_HEADER_MAX];
    size_t hlen;
    if (u->chained) {
        relay_dgram(u, data, len, from);
        return;
    }
    if (!u->client_port_known || (!u->ctx.cfg->udp_full_cone && !known_peer(u, from))) {
        dropped(u);
        return;
    }
    hlen = proto_encode_udp_header(hdr, sizeof hdr, &from->sa);
    if (len + hlen > UDP_MAX_DGRAM) {
        dropped(u);
        return;
    }
    memcpy(data - hlen, hdr, hlen);
    to_client(u, data - hlen, len + hlen, len);
}

static void on_target4_dgram(struct loop_io *io, unsigned events)
{
    (void)events;
    drain(container_of(io, struct udp_assoc, tio4), io, target_dgram);
}

static void on_target6_dgram(struct loop_io *io, unsigned events)
{
    (void)events;
    drain(container_of(io, struct udp_assoc, tio6), io, target_dgram);
}

static void on_more(struct loop_defer *d)
{
    struct udp_assoc *u = container_of(d, struct udp_assoc, more);
    on_client_dgram(&u->cio, LOOP_READ);
    if (u->tio4.fd >= 0)
        on_target4_dgram(&u->tio4, LOOP_READ);
    if (u->tio6.fd >= 0)
        on_target6_dgram(&u->tio6, LOOP_READ);
}

/* ---------------- lifetime ---------------- */

struct udp_assoc *udp_open(const struct cmd_ctx *ctx, const struct proto_addr *hint,
                           union addr_any *bnd, uint8_t *rep, const char **why)
{
    struct udp_assoc *u = calloc(1, sizeof *u);
    union addr_any local;
    socklen_t len = sizeof local;
    memset(&local, 0, sizeof local);
    *rep = SOCKS5_REP_GENERAL_FAILURE;
    if (!u) {
        *why = "out of memory";
        return NULL;
    }
    if (!fdbudget_take(UDP_FDS, FDB_EXTRA)) {
        *why = "out of descriptors";
        free(u);
        return NULL;
    }
    u->ctx = *ctx;
    u->cio.fd = u->tio4.fd = u->tio6.fd = -1;
    /* The relay listens where the control connection arrived, never on a
     * wildcard address. */
    if (getsockname(ctx->control_fd, &local.sa, &len) < 0 ||
        open_sock(u, &u->cio, &local, ctx->cfg->udp_port_lo, ctx->cfg->udp_port_hi, 0,
                  on_client_dgram) < 0) {
        *why = strerror(errno);
        fdbudget_give(UDP_FDS);
        free(u);
        return NULL;
    }
    len = sizeof *bnd;
    getsockname(u->cio.fd, &bnd->sa, &len);
    config_advertise_into(ctx->cfg, &local.sa, bnd);
    u->family = local.sa.sa_family;
    touch(u);
    addr_normalize(&ctx->client.sa, &u->client);
    /* Datagrams must come from the control connection's IP whatever the
     * request says (a client behind NAT may name its private address); a
     * port it names is held to, port 0 is learned from the first datagram. */
    if (hint->port != 0) {
        addr_set_port(&u->client, hint->port);
        u->client_port_known = 1;
    }
    return u;
}

int udp_protect(struct udp_assoc *u, const struct udp_seal *seal)
{
    if (!u->sealed && !(u->sealed = malloc(UDP_MAX_DGRAM)))
        return -1;
    u->seal = *seal;
    return 0;
}

void udp_close(struct udp_assoc *u)
{
    if (u->q)
        resolve_cancel(u->q);
    free(u->held);
    free(u->sealed);
    loop_defer_cancel(u->ctx.env->loop, &u->more);
    close_io(u, &u->cio);
    close_io(u, &u->tio4);
    close_io(u, &u->tio6);
    fdbudget_give(UDP_FDS);
    udpchain_free(u->chained);
    free(u);
}

void udp_chain(struct udp_assoc *u, struct udpchain *through)
{
    u->chained = through;
    addr_normalize(&udpchain_relay(through)->sa, &u->relay);
    u->prefix = udpchain_prefix(through, &u->prefix_len);
}
