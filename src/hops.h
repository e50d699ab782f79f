/* Runs a route's chain of upstream handshakes over one connection: the
 * first hop is asked for the second, the second (through the first) for the
 * third, ... and the last for the client's destination. The socket is
 * already connected to the first hop (see dial.h); the handshakes are
 * upstream.c machines, driven here on the loop. */
#ifndef SOCKS5D_HOPS_H
#define SOCKS5D_HOPS_H

#include <stddef.h>
#include <stdint.h>

#include "loop.h"
#include "route.h"
#include "upstream.h"

struct hops;

enum hops_stage {
    HOPS_FAILED, /* the last hop refused the request (or it cannot be carried):
                    rep != 0 says what the client should be told, why for the log */
    HOPS_BROKEN, /* the chain broke: hop hops_at() (or the link to it) failed,
                    dropped the connection, broke the protocol, or an earlier
                    hop could not reach it; rep and why as for HOPS_FAILED */
    HOPS_BOUND,  /* BIND: the last hop's first reply (bnd); the handshake goes on
                    (fn may cancel the hops from here) */
    HOPS_DONE,   /* the tunnel is up: bnd is the last hop's BND.ADDR */
};

/* stage HOPS_DONE: io holds the connection, still registered (take it over
 * with loop_io_move); early[0..early_len) arrived after the last reply and
 * belongs to the client. The hops is freed after fn returns from
 * HOPS_DONE, HOPS_FAILED or HOPS_BROKEN, closing the connection if io still
 * holds it.
 * Runs on the loop, never inside hops_start. */
typedef void (*hops_fn)(void *owner, enum hops_stage stage, struct loop_io *io, uint8_t rep,
                        const struct proto_addr *bnd, const uint8_t *early, size_t early_len,
                        const char *why);

/* Takes over the connection registered in `from` (loop_io_move; whatever
 * happens, the hops owns it from now on) and starts the handshake with
 * c->hops[0] for `cmd` to `dst`. c must outlive the hops. Returns NULL when
 * out of memory (the connection is closed then). */
struct hops *hops_start(struct loop *l, struct loop_io *from, const struct route_chain *c,
                        uint8_t cmd, const struct proto_addr *dst, hops_fn fn, void *owner);
/* Stops, closes the connection and frees h; fn is not called. */
void hops_cancel(struct hops *h);
/* The hop being talked to, or in HOPS_BROKEN the one that failed: 0-based. */
size_t hops_at(const struct hops *h);
/* A hop's host and port as the address to ask the previous hop for. */
void hops_target(const struct upstream_hop *hop, struct proto_addr *out);

#endif
