/* The client side of an upstream proxy handshake, sans I/O: SOCKS5 (with
 * optional RFC 1929 user/pass), SOCKS4a and HTTP CONNECT (optional Basic
 * auth). The caller connects to the hop, sends what the machine puts in
 * `out`, feeds it what the hop answers, and learns the outcome; the REP of
 * a refusal is the one the client should get (an upstream SOCKS5 REP as is).
 *
 *   upstream_begin(&u, hop, cmd, &dst)      -> u.out holds the first message
 *   loop: send u.out[0..out_len); read; upstream_feed(&u, buf, len, &used)
 *     UPSTREAM_AGAIN  drop `used` bytes; send u.out if out_len > 0; read more
 *     UPSTREAM_BOUND  BIND only: the first reply (u.bnd); wait for the second
 *     UPSTREAM_DONE   success, u.bnd is the hop's BND; bytes after `used` are
 *                     already tunnel data
 *     UPSTREAM_FAIL   u.rep is the REP to give the client, u.why says why;
 *                     u.answered when the hop answered a well-formed
 *                     refusal (of our login or of the request), 0 when it
 *                     broke the protocol */
#ifndef SOCKS5D_UPSTREAM_H
#define SOCKS5D_UPSTREAM_H

#include <stddef.h>
#include <stdint.h>

#include "proto.h"
#include "result.h"

enum upstream_kind { UPSTREAM_SOCKS5, UPSTREAM_SOCKS4A, UPSTREAM_HTTP };

/* One hop of a route. user[0] == '\0' means no credentials. */
struct upstream_hop {
    enum upstream_kind kind;
    char host[256]; /* a host name or an IP literal (IPv6 without brackets) */
    uint16_t port;
    char user[256];
    char pass[256];
};

/* enum result, plus BOUND for the first of BIND's two replies. */
enum upstream_status {
    UPSTREAM_FAIL = RES_ERROR,
    UPSTREAM_AGAIN = RES_AGAIN,
    UPSTREAM_DONE = RES_DONE,
    UPSTREAM_BOUND = 2,
};

/* Longest answer header an HTTP proxy may send before it counts as broken. */
#define UPSTREAM_HTTP_MAX 4096
/* Largest message the machine sends: an HTTP CONNECT with a 255-byte host
 * twice and Basic credentials of 255+255 bytes. */
#define UPSTREAM_OUT_MAX 1536

struct upstream {
    const struct upstream_hop *hop;
    uint8_t cmd;
    struct proto_addr dst;
    int step; /* private */
    uint8_t out[UPSTREAM_OUT_MAX];
    size_t out_len;
    uint8_t rep;
    int answered;
    struct proto_addr bnd;
    const char *why;
};

/* Prepares the first message for `dst` (a domain is passed on unresolved).
 * Returns UPSTREAM_AGAIN, or UPSTREAM_FAIL when the hop cannot carry the
 * request (UDP or BIND through HTTP, UDP or IPv6 through SOCKS4a). */
int upstream_begin(struct upstream *u, const struct upstream_hop *hop, uint8_t cmd,
                   const struct proto_addr *dst);
/* Feeds the bytes received so far and not yet consumed; see above. The
 * previous `out` (sent by now) is wiped and out_len reset on every call. */
int upstream_feed(struct upstream *u, const uint8_t *in, size_t len, size_t *consumed);
/* Wipes u->out, which may hold credentials: for a handshake abandoned
 * before its next feed. */
void upstream_wipe(struct upstream *u);
const char *upstream_kind_str(enum upstream_kind k);

#endif
