/* Asynchronous name resolution: c-ares driven by a worker's loop. */
#ifndef SOCKS5D_RESOLVE_H
#define SOCKS5D_RESOLVE_H

#include <stddef.h>
#include <stdint.h>

#include "addr.h"
#include "loop.h"

#define RESOLVE_MAX_ADDRS 16

struct resolver;
struct resolve_query;

/* status 0: addrs[0..n) in Happy Eyeballs order (IPv6 first, families
 * interleaved, RFC 8305 section 4); otherwise a resolve_err value. */
enum resolve_err { RESOLVE_OK = 0, RESOLVE_NOTFOUND, RESOLVE_FAILED };
typedef void (*resolve_fn)(void *owner, int status, const union addr_any *addrs, size_t n);

/* Returns NULL with a reason in err. */
struct resolver *resolver_new(struct loop *l, char *err, size_t errlen);
/* Pending queries are answered with RESOLVE_FAILED unless cancelled. */
void resolver_free(struct resolver *r);

/* Answers at once, without a query, for IP literals and for "localhost"
 * and "*.localhost" (loopback, RFC 6761). Returns 1 when it answered. */
int resolve_literal(const char *name, uint16_t port, union addr_any *addrs, size_t *n);

/* Starts an A+AAAA lookup of exactly `name`, with no search list: a name
 * outside the host name syntax (hostname.h) is answered RESOLVE_FAILED
 * without a lookup. fn(owner, ...) runs later on the loop, never from inside
 * this call. Returns NULL on allocation failure. */
struct resolve_query *resolve_start(struct resolver *r, const char *name, uint16_t port,
                                    resolve_fn fn, void *owner);
/* The owner is going away: fn will not be called. */
void resolve_cancel(struct resolve_query *q);

#endif
