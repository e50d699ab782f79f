/* UDP associations through a chain of SOCKS5 hops. See udpchain.h. */
#include "udpchain.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dial.h"
#include "fdbudget.h"
#include "hops.h"

/* The association of one earlier hop. */
struct leg {
    struct udpchain *c;
    struct route_chain view; /* hops 0..i of the route's chain */
    struct dial *dial;
    struct hops *hops;
    struct loop_io io; /* its control connection, once up */
    struct proto_addr bnd;
};

/* A header naming a relay by name: RSV RSV FRAG ATYP LEN NAME PORT. */
#define HEADER_MAX (5 + 255 + 2)

struct udpchain {
    struct loop *loop;
    const struct route_chain *chain;
    union addr_any hop0, relay;
    struct proto_addr last;
    udpchain_fn done;
    udpchain_end_fn ended;
    void *owner;
    struct loop_defer later; /* a one-hop chain is ready at once */
    size_t nlegs, waiting;
    int over;    /* done was called */
    int refused; /* the hop that broke it answered with a refusal */
    struct leg legs[ROUTE_MAX_HOPS - 1];
    size_t prefix_len;
    uint8_t prefix[(ROUTE_MAX_HOPS - 1) * HEADER_MAX];
    char why[512];
};

int udpchain_refused(const struct udpchain *c)
{
    return c->refused;
}

void udpchain_free(struct udpchain *c)
{
    if (c == NULL)
        return;
    loop_defer_cancel(c->loop, &c->later);
    for (size_t i = 0; i < c->nlegs; i++) {
        struct leg *g = &c->legs[i];
        if (g->dial)
            dial_cancel(g->dial);
        if (g->hops)
            hops_cancel(g->hops);
        if (g->io.fd >= 0) {
            loop_io_close(c->loop, &g->io);
            fdbudget_give(1);
        }
    }
    free(c);
}

const union addr_any *udpchain_relay(const struct udpchain *c)
{
    return &c->relay;
}

const uint8_t *udpchain_prefix(const struct udpchain *c, size_t *len)
{
    *len = c->prefix_len;
    return c->prefix;
}

size_t udpchain_at(const struct udpchain *c)
{
    size_t at = c->chain->nhops;
    for (size_t i = 0; i < c->nlegs; i++) {
        const struct leg *g = &c->legs[i];
        size_t here = g->hops ? hops_at(g->hops) : 0;
        if (g->io.fd < 0 && here < at)
            at = here;
    }
    return at < c->chain->nhops ? at : 0;
}

/* Whether header `got` of an answer names the relay `sent` named. */
static int same_relay(const struct proto_addr *sent, const struct proto_addr *got)
{
    struct sockaddr_storage a, b;
    if (got->port != sent->port || !proto_addr_to_sockaddr(got, &b))
        return 0;
    /* A relay named by its hop's name has the address the hop before it
     * resolved: only its port is known here. */
    return !proto_addr_to_sockaddr(sent, &a) ||
           addr_same_ip((struct sockaddr *)&a, (struct sockaddr *)&b);
}

long udpchain_strip(const uint8_t *prefix, size_t prefix_len, const uint8_t *data, size_t len)
{
    struct proto_addr sent, got;
    size_t at = 0, off = 0, plen, hlen;
    enum proto_err err;
    while (at < prefix_len) {
        if (proto_parse_udp_header(prefix + at, prefix_len - at, &sent, &plen, &err) != RES_DONE ||
            proto_parse_udp_header(data + off, len - off, &got, &hlen, &err) != RES_DONE ||
            !same_relay(&sent, &got))
            return -1;
        at += plen;
        off += hlen;
    }
    return (long)off;
}

static void fail(struct udpchain *c, size_t hop, uint8_t rep, const char *why)
{
    if (c->over)
        return;
    c->over = 1;
    snprintf(c->why, sizeof c->why, "%s", why);
    c->done(c->owner, c, rep, hop, c->why);
}

/* A UDP header naming relay `bnd` of hop i, or the hop itself when the
 * relay's address is unspecified (it is then the hop's own). */
static int add_header(struct udpchain *c, size_t i, const struct proto_addr *bnd)
{
    struct sockaddr_storage ss;
    struct proto_addr to = *bnd;
    if (!proto_addr_to_sockaddr(bnd, &ss) || addr_is_unspecified((struct sockaddr *)&ss)) {
        hops_target(&c->chain->hops[i], &to);
        to.port = bnd->port;
    }
    uint8_t *at = c->prefix + c->prefix_len;
    size_t n = proto_encode_request(at, sizeof c->prefix - c->prefix_len, 0, &to);
    if (n == 0)
        return -1;
    /* A UDP header (RSV RSV FRAG ATYP ADDR PORT) is a request whose first
     * three bytes are zero. */
    memset(at, 0, 3);
    c->prefix_len += n;
    return 0;
}

/* Every association is up: hop 0's relay is where datagrams go, the others
 * are named in the headers in front. */
static void ready(struct udpchain *c)
{
    struct sockaddr_storage ss;
    const struct proto_addr *first = c->nlegs ? &c->legs[0].bnd : &c->last;
    c->relay = c->hop0;
    if (proto_addr_to_sockaddr(first, &ss) && !addr_is_unspecified((struct sockaddr *)&ss))
        addr_normalize((struct sockaddr *)&ss, &c->relay);
    addr_set_port(&c->relay, first->port);
    for (size_t i = 1; i <= c->nlegs; i++)
        if (add_header(c, i, i < c->nlegs ? &c->legs[i].bnd : &c->last) < 0) {
            fail(c, i, SOCKS5_REP_GENERAL_FAILURE, "cannot encode an upstream relay's address");
            return;
        }
    c->over = 1;
    c->done(c->owner, c, SOCKS5_REP_SUCCEEDED, 0, NULL);
}

static void on_ready(struct loop_defer *d)
{
    ready(container_of(d, struct udpchain, later));
}

/* Nothing is expected on a control connection; its end ends the chain. */
static void on_control(struct loop_io *io, unsigned events)
{
    struct leg *g = container_of(io, struct leg, io);
    struct udpchain *c = g->c;
    (void)events;
    if (!net_discard(io->fd))
        return;
    if (!c->over) /* before the chain was ready: its hop broke */
        fail(c, g->view.nhops - 1, SOCKS5_REP_GENERAL_FAILURE,
             "upstream ended a UDP association of the chain");
    else
        c->ended(c->owner); /* last: c may be gone */
}

static void on_leg_hops(void *owner, enum hops_stage stage, struct loop_io *io, uint8_t rep,
                        const struct proto_addr *bnd, const uint8_t *early, size_t early_len,
                        const char *why)
{
    struct leg *g = owner;
    struct udpchain *c = g->c;
    /* Every hop of a leg is an earlier hop of the route: its refusal of the
     * association breaks the chain at it, as a drop or a silence does. */
    size_t at = stage == HOPS_BROKEN ? hops_at(g->hops) : g->view.nhops - 1;
    char named[sizeof c->why], hop[300];
    (void)early;
    (void)early_len;
    g->hops = NULL; /* it frees itself when this returns */
    /* A broken chain's why names its hop already; a refusal's does not. */
    if (stage == HOPS_FAILED) {
        snprintf(named, sizeof named, "%s: %s", route_hop_str(&c->chain->hops[at], hop, sizeof hop),
                 why);
        why = named;
        c->refused = 1;
    }
    if (stage != HOPS_DONE) {
        fail(c, at, rep, why);
        return;
    }
    g->bnd = *bnd;
    if (loop_io_move(c->loop, io, &g->io, LOOP_READ, on_control) < 0) {
        fail(c, UDPCHAIN_NO_HOP, SOCKS5_REP_GENERAL_FAILURE, "epoll_ctl failed");
        return;
    }
    if (--c->waiting == 0)
        ready(c);
}

static void on_leg_dialed(void *owner, int fd, struct loop_io *io, int err,
                          const union addr_any *peer)
{
    struct leg *g = owner;
    struct udpchain *c = g->c;
    struct proto_addr any = {.atyp = SOCKS5_ATYP_IPV4}; /* where we send from: not known yet */
    char why[400], hop[300];
    (void)peer;
    g->dial = NULL;
    if (fd < 0) {
        snprintf(why, sizeof why, "connect %s: %s",
                 route_hop_str(&c->chain->hops[0], hop, sizeof hop), strerror(err));
        fail(c, 0, SOCKS5_REP_GENERAL_FAILURE, why);
        return;
    }
    g->hops = hops_start(c->loop, io, &g->view, SOCKS5_CMD_UDP, &any, on_leg_hops, g);
    if (g->hops == NULL)
        fail(c, UDPCHAIN_NO_HOP, SOCKS5_REP_GENERAL_FAILURE, "out of memory");
}

struct udpchain *udpchain_start(struct loop *l, const struct route_chain *chain,
                                const union addr_any *hop0, const struct net_out *out,
                                uint32_t timeout_ms, const struct proto_addr *last,
                                udpchain_fn done, udpchain_end_fn ended, void *owner)
{
    struct udpchain *c = calloc(1, sizeof *c);
    int err;
    if (c == NULL)
        return NULL;
    *c = (struct udpchain){.loop = l,
                           .chain = chain,
                           .hop0 = *hop0,
                           .last = *last,
                           .done = done,
                           .ended = ended,
                           .owner = owner};
    c->nlegs = c->waiting = chain->nhops - 1;
    for (size_t i = 0; i < c->nlegs; i++) {
        struct leg *g = &c->legs[i];
        *g = (struct leg){.c = c, .view = {i + 1, chain->hops, chain->holds}};
        g->io.fd = -1;
    }
    for (size_t i = 0; i < c->nlegs; i++) {
        c->legs[i].dial = dial_start(l, hop0, 1, out, timeout_ms, on_leg_dialed, &c->legs[i], &err);
        if (c->legs[i].dial == NULL) {
            udpchain_free(c);
            return NULL;
        }
    }
    if (c->nlegs == 0)
        loop_defer(l, &c->later, on_ready);
    return c;
}
