/* A route's chain of handshakes on the loop. See hops.h. */
#include "hops.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "auth_secret.h"
#include "fdbudget.h"

struct hops {
    struct loop_io io;
    struct loop *loop;
    struct loop_defer later;
    const struct route_chain *chain;
    uint8_t cmd;
    struct proto_addr dst;
    size_t at; /* index of the hop being talked to */
    hops_fn fn;
    void *owner;
    struct upstream up;
    size_t sent; /* bytes of up.out already written */
    size_t have; /* bytes in in[] */
    uint8_t in[UPSTREAM_HTTP_MAX];
    char why[512];    /* a broken chain's reason, naming the hop */
    int bound;        /* BIND's first reply went to the client: no failover now */
    const char *over; /* the connection ended (what came before it is in in[]) */
};

void hops_target(const struct upstream_hop *hop, struct proto_addr *out)
{
    memset(out, 0, sizeof *out);
    out->port = hop->port;
    if (inet_pton(AF_INET, hop->host, out->u.ip4) == 1) {
        out->atyp = SOCKS5_ATYP_IPV4;
    } else if (inet_pton(AF_INET6, hop->host, out->u.ip6) == 1) {
        out->atyp = SOCKS5_ATYP_IPV6;
    } else {
        out->atyp = SOCKS5_ATYP_DOMAIN;
        out->name_len = (uint8_t)strlen(hop->host);
        memcpy(out->u.name, hop->host, out->name_len);
    }
}

static void hops_free(struct hops *h)
{
    if (h->io.fd >= 0) {
        loop_io_close(h->loop, &h->io);
        fdbudget_give(1);
    }
    loop_defer_cancel(h->loop, &h->later);
    upstream_wipe(&h->up);
    free(h);
}

static void end(struct hops *h, enum hops_stage stage, uint8_t rep, const char *why)
{
    h->fn(h->owner, stage, &h->io, rep, &h->up.bnd, h->in, h->have, why);
    hops_free(h);
}

/* The chain broke at hop `at`: the log line names it. */
static void broke(struct hops *h, size_t at, uint8_t rep, const char *why)
{
    char hop[300];
    h->at = at;
    snprintf(h->why, sizeof h->why, "%s: %s", route_hop_str(&h->chain->hops[at], hop, sizeof hop),
             why);
    end(h, h->bound ? HOPS_FAILED : HOPS_BROKEN, rep, h->why);
}

/* A hop said no. The last hop's answer is about the destination and goes to
 * the client; an earlier hop's is about the next hop, which it could not
 * reach (a network REP: the next hop is the one held down) or was refused
 * (the hop itself is). */
static void refused(struct hops *h)
{
    uint8_t rep = h->up.rep;
    if (h->up.answered && h->at + 1 == h->chain->nhops) {
        end(h, HOPS_FAILED, rep, h->up.why);
        return;
    }
    int unreachable = h->up.answered && rep >= SOCKS5_REP_NET_UNREACHABLE &&
                      rep <= SOCKS5_REP_TTL_EXPIRED && h->at + 1 < h->chain->nhops;
    broke(h, h->at + (size_t)unreachable, rep, h->up.why);
}

/* Writes what the machine has to say. Returns 0, or -1 after failing h. */
static int flush(struct hops *h)
{
    while (h->sent < h->up.out_len) {
        ssize_t n = send(h->io.fd, h->up.out + h->sent, h->up.out_len - h->sent, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return 0; /* the next writable event comes back here */
        if (n <= 0) {
            broke(h, h->at, SOCKS5_REP_GENERAL_FAILURE, "send to upstream failed");
            return -1;
        }
        h->sent += (size_t)n;
    }
    return 0;
}

/* Starts the handshake with hop h->at; 0, or -1 after failing h. */
static int begin_hop(struct hops *h)
{
    struct proto_addr next;
    const struct proto_addr *to = &h->dst;
    uint8_t cmd = h->cmd;
    if (h->at + 1 < h->chain->nhops) {
        hops_target(&h->chain->hops[h->at + 1], &next);
        to = &next;
        cmd = SOCKS5_CMD_CONNECT; /* inner hops only carry the stream to the next */
    }
    h->sent = 0;
    if (upstream_begin(&h->up, &h->chain->hops[h->at], cmd, to) == UPSTREAM_FAIL) {
        end(h, HOPS_FAILED, h->up.rep, h->up.why);
        return -1;
    }
    return flush(h);
}

static void on_more_input(struct loop_defer *d);

/* Feeds what arrived; 0 to keep going, -1 when h is gone or stopped. */
static int advance(struct hops *h)
{
    for (;;) {
        size_t used = 0;
        int rc = upstream_feed(&h->up, h->in, h->have, &used);
        memmove(h->in, h->in + used, h->have - used);
        h->have -= used;
        if (rc == UPSTREAM_FAIL) {
            refused(h);
            return -1;
        }
        if (rc == UPSTREAM_BOUND) {
            /* fn may end the owner and cancel h: what is left in h->in
             * (the second reply may be there already) is read from the
             * loop, a cancel undoing that. */
            loop_defer(h->loop, &h->later, on_more_input);
            h->bound = 1;
            h->fn(h->owner, HOPS_BOUND, &h->io, 0, &h->up.bnd, NULL, 0, NULL);
            return -1;
        }
        if (rc == UPSTREAM_DONE && h->at + 1 == h->chain->nhops) {
            end(h, HOPS_DONE, 0, NULL);
            return -1;
        }
        if (rc == UPSTREAM_DONE) {
            h->at++;
            if (begin_hop(h) < 0)
                return -1;
            continue;
        }
        h->sent = 0;
        if (flush(h) < 0)
            return -1;
        return 0; /* AGAIN: wait for more */
    }
}

/* Reads what the hop sent. Returns NULL, or why the connection is over
 * (what came before it is still in h->in: a refusal often comes with a
 * close). */
static const char *fill(struct hops *h)
{
    for (;;) {
        if (h->have == sizeof h->in)
            return NULL;
        ssize_t n = recv(h->io.fd, h->in + h->have, sizeof h->in - h->have, 0);
        if (n > 0) {
            h->have += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return NULL;
        return n == 0 ? "upstream closed the connection during the handshake"
                      : "upstream connection failed during the handshake";
    }
}

static void on_io(struct loop_io *io, unsigned events)
{
    struct hops *h = (struct hops *)io;
    if ((events & LOOP_WRITE) && flush(h) < 0)
        return;
    if (!(events & (LOOP_READ | LOOP_RDHUP | LOOP_HUP)))
        return;
    if (h->over == NULL)
        h->over = fill(h);
    if (advance(h) == 0 && h->over)
        broke(h, h->at, SOCKS5_REP_GENERAL_FAILURE, h->over);
}

/* The first message goes out from the loop, so fn never runs inside
 * hops_start. */
static void on_start(struct loop_defer *d)
{
    struct hops *h = container_of(d, struct hops, later);
    if (begin_hop(h) == 0 && h->have > 0)
        (void)advance(h);
}

/* BIND's second reply, or the end, may have come with the first. */
static void on_more_input(struct loop_defer *d)
{
    struct hops *h = container_of(d, struct hops, later);
    if (advance(h) == 0 && h->over)
        broke(h, h->at, SOCKS5_REP_GENERAL_FAILURE, h->over);
}

struct hops *hops_start(struct loop *l, struct loop_io *from, const struct route_chain *c,
                        uint8_t cmd, const struct proto_addr *dst, hops_fn fn, void *owner)
{
    struct hops *h = calloc(1, sizeof *h);
    if (h == NULL) {
        loop_io_close(l, from);
        fdbudget_give(1);
        return NULL;
    }
    h->io.fd = -1;
    h->loop = l;
    h->chain = c;
    h->cmd = cmd;
    h->dst = *dst;
    h->fn = fn;
    h->owner = owner;
    if (loop_io_move(l, from, &h->io, LOOP_READ | LOOP_WRITE, on_io) < 0) {
        hops_free(h);
        return NULL;
    }
    loop_defer(l, &h->later, on_start);
    return h;
}

void hops_cancel(struct hops *h)
{
    hops_free(h);
}

size_t hops_at(const struct hops *h)
{
    return h->at;
}
