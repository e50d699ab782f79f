/* UDP ASSOCIATE through a route's chain of SOCKS5 hops (RFC 1928 section 7,
 * nested). The last hop's association is asked for over the route's tunnel
 * through the earlier hops (hops.c), as for a single hop; this module then
 * asks every earlier hop i for an association of its own, over a control
 * connection of its own through hops 0..i-1. A datagram goes to hop 0's
 * relay carrying one SOCKS5 UDP header per later hop's relay in front of
 * the destination's: each relay strips the first header and sends the rest
 * to the relay it names; answers come back with one header per relay in
 * front (udp.c strips them). The control connections live as long as the
 * association. */
#ifndef SOCKS5D_UDPCHAIN_H
#define SOCKS5D_UDPCHAIN_H

#include <stddef.h>
#include <stdint.h>

#include "addr.h"
#include "loop.h"
#include "net.h"
#include "proto.h"
#include "route.h"

struct udpchain;

/* A failure that is no hop's (out of memory, epoll): no hop to hold down. */
#define UDPCHAIN_NO_HOP ((size_t)-1)

/* rep 0: the path is ready (udpchain_relay, udpchain_prefix); else the
 * chain failed with the REP for the client and why: hop `hop` of the chain
 * broke (it could not be reached, dropped its connection, refused or never
 * answered the association; udpchain_refused tells a refusal), or
 * UDPCHAIN_NO_HOP. Either way the owner frees
 * c (udpchain_free) or hands it on (udp_chain). Runs on the loop, never
 * inside udpchain_start. */
typedef void (*udpchain_fn)(void *owner, struct udpchain *c, uint8_t rep, size_t hop,
                            const char *why);
/* A control connection of a ready chain ended: the association is over.
 * Called last from the event: the owner may free c. */
typedef void (*udpchain_end_fn)(void *owner);

/* Starts the associations of hops 0..nhops-2 of `chain` (c must outlive
 * the udpchain), each over a new connection to hop 0 at `hop0`, leaving as
 * `out` says, each dial bounded by timeout_ms. `last` is the last hop's
 * relay (its reply's BND). Returns NULL when out of memory or when no
 * connection could be started. */
struct udpchain *udpchain_start(struct loop *l, const struct route_chain *chain,
                                const union addr_any *hop0, const struct net_out *out,
                                uint32_t timeout_ms, const struct proto_addr *last,
                                udpchain_fn done, udpchain_end_fn ended, void *owner);
/* 1 when the hop that broke the chain answered its association with a
 * refusal: it is up and carries streams, only not this UDP. */
int udpchain_refused(const struct udpchain *c);
/* Closes the control connections, stops what is in flight, frees c (NULL:
 * nothing). No callback runs afterwards. */
void udpchain_free(struct udpchain *c);
/* Where datagrams go: hop 0's relay. */
const union addr_any *udpchain_relay(const struct udpchain *c);
/* The headers naming hops 1..n-1's relays, to put in front of each
 * datagram's own header. */
const uint8_t *udpchain_prefix(const struct udpchain *c, size_t *len);
/* While the chain is not ready: the earliest hop an association still
 * waits for (the one to blame when the wait times out). */
size_t udpchain_at(const struct udpchain *c);

/* Strips the relays' headers from an answer of hop 0's relay. Relay i puts
 * in front the address it got the datagram from, which must be the relay
 * header i of `prefix` (udpchain_prefix) names: the same IP and port; for a
 * relay named by its hop's host name (it answered an unspecified address),
 * the same port. Returns how many bytes the headers take, or -1 when one is
 * malformed or names another sender (the datagram is then dropped). Pure. */
long udpchain_strip(const uint8_t *prefix, size_t prefix_len, const uint8_t *data, size_t len);

#endif
