/* UDP ASSOCIATE (RFC 1928 section 7): one relay per association, alive as
 * long as its TCP control connection (or until its idle timeout).
 *
 * The client-facing socket is bound to the address the control connection
 * arrived on; datagrams are taken only from the control connection's client
 * IP (and port, once named or learned). Targets reach the client back only
 * if the association has sent to their address first, unless the operator
 * chose full cone. Datagrams are relayed through one per-thread buffer:
 * nothing is allocated per datagram. */
#ifndef SOCKS5D_UDP_H
#define SOCKS5D_UDP_H

#include <stddef.h>
#include <stdint.h>

#include "addr.h"
#include "proto.h"

struct cmd_ctx;
struct udp_assoc;
struct udpchain;

struct udp_counts {
    uint64_t dgrams_up, dgrams_down, dropped;
    uint64_t bytes_up, bytes_down; /* payload relayed each way */
    uint64_t active_ms;            /* when a datagram last came or went */
};

/* Opens the association for a session (ctx, copied). `hint` is the client
 * address from the request (zeros: learn it from the first datagram). On
 * success returns the association and fills bnd with the address for the
 * reply; on failure returns NULL with *rep and *why set. */
struct udp_assoc *udp_open(const struct cmd_ctx *ctx, const struct proto_addr *hint,
                           union addr_any *bnd, uint8_t *rep, const char **why);
void udp_close(struct udp_assoc *u);

/* Per-datagram protection (RFC 1961 section 5: each datagram, header
 * included, travels as one encapsulated message). `open` turns a datagram
 * from the client into its plaintext, returning its length or -1 (the
 * datagram is dropped); `seal` does the reverse for one to the client,
 * returning its length or 0. Both write at most `cap` bytes to out. */
struct udp_seal {
    long (*open)(void *arg, const uint8_t *in, size_t len, uint8_t *out, size_t cap);
    size_t (*seal)(void *arg, const uint8_t *in, size_t len, uint8_t *out, size_t cap);
    void *arg; /* outlives the association */
};
/* From now on every datagram of the association goes through `seal`
 * (copied). Returns 0, or -1 when out of memory. */
int udp_protect(struct udp_assoc *u, const struct udp_seal *seal);
/* Chains the association to upstream SOCKS5 ones (udpchain.h; takes
 * ownership of `through`): every datagram the client sends (judged by the
 * rules as usual, names resolved here) goes to the first hop's relay framed
 * with the later relays' headers and its destination, and what comes back,
 * stripped of the relays' headers and framed with its source, goes to the
 * client. */
void udp_chain(struct udp_assoc *u, struct udpchain *through);
const struct udp_counts *udp_counts(const struct udp_assoc *u);

#endif
