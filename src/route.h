/* route.h - where a request's traffic leaves: upstream proxy chains with
 * failover, and the source of direct connections. Pure: no I/O.
 *
 * Grammar (the text after the `route` keyword; see docs/routes.md):
 *   [CLAUSES] via ALTERNATIVE [| ALTERNATIVE ...] [out ITEM ...]
 *   CLAUSES      from, user, cmd, to, port exactly as in access rules
 *                (parsed and matched by rules.c)
 *   ALTERNATIVE  direct | HOP [HOP ...]     (a chain: hops in order)
 *   HOP          socks5://[USER[:PASS]@]HOST:PORT | socks4a://HOST:PORT
 *                | http://[USER[:PASS]@]HOST:PORT   (HTTP CONNECT)
 *                USER and PASS may use %XX escapes; IPv6 HOST in brackets;
 *                USER alone: the password is in the upstream credentials
 *                file (upcreds.h)
 *   ITEM         IP | random CIDR | sticky CIDR | dev IFNAME | mark N
 * First match wins; no match means direct. A failed hop is held down for
 * ROUTE_HOLDDOWN_MS: an alternative with a held-down hop is skipped while
 * another one is up. */
#ifndef SOCKS5D_ROUTE_H
#define SOCKS5D_ROUTE_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "net.h"
#include "rules.h"
#include "upstream.h"

#define ROUTE_HOLDDOWN_MS 30000
#define ROUTE_MAX_HOPS 8
#define ROUTE_MAX_ALTS 8

/* A hop's failover state: one per hop (kind, host, port) in the process,
 * shared by every route, worker and configuration snapshot naming the hop,
 * so a reload keeps it; it goes with the last snapshot naming the hop. */
struct route_hold;

struct route_chain {
    size_t nhops; /* 0: direct */
    struct upstream_hop *hops;
    struct route_hold **holds; /* [nhops] */
};

enum route_src_mode { ROUTE_SRC_NONE, ROUTE_SRC_FIXED, ROUTE_SRC_RANDOM, ROUTE_SRC_STICKY };

struct route_src {
    int mode; /* enum route_src_mode */
    uint8_t addr[16];
    unsigned plen; /* prefix length for RANDOM and STICKY */
};

struct route_out {
    struct route_src src[2]; /* [0] IPv4, [1] IPv6 */
    char dev[16];
    int has_mark;
    uint32_t mark;
};

struct route {
    size_t nalts;
    struct route_chain *alts;
    int has_out;
    struct route_out out;
    char *text; /* the route as written, passwords replaced by "***" */
    char *file;
    int line;
};

struct routes;

/* routes_add flags */
#define ROUTES_SECRETS_OK 1u /* credentials allowed (the config file, not argv) */

struct routes *routes_new(void);
void routes_free(struct routes *rs);
/* Parses one route and appends it. Returns 0, or -1 with a message naming
 * the 1-based column in err ("column 9: unknown hop scheme 'ftp'"); the set
 * is then unchanged. Credentials without ROUTES_SECRETS_OK are refused. */
int routes_add(struct routes *rs, const char *text, const char *file, int line, unsigned flags,
               char *err, size_t errlen);
size_t routes_count(const struct routes *rs);
const struct route *routes_get(const struct routes *rs, size_t i);

/* Parses one hop (socks5://[USER[:PASS]@]HOST:PORT, ...) into h. Returns 0,
 * or -1 with a message in err ("column 1: ..."). */
int route_hop_parse(const char *text, size_t len, struct upstream_hop *h, char *err, size_t errlen);

/* Gives every hop named with a user and no password (socks5://alice@host:1080)
 * the password pass_for returns for it. Returns 0, or -1 with "file:line:
 * route hop ... has no password" in err when pass_for returns NULL. */
typedef const char *(*route_pass_fn)(void *arg, const struct upstream_hop *h);
int routes_set_passwords(struct routes *rs, route_pass_fn pass_for, void *arg, char *err,
                         size_t errlen);

/* The first route whose clauses match, or NULL for direct. When a route
 * with a CIDR `to` clause is reached with only a name known, returns NULL
 * with *need_addr 1: resolve and ask again with rq->dst set. */
const struct route *routes_match(const struct routes *rs, const struct rules_request *rq,
                                 int *need_addr);

/* Whether chain c can carry a request for cmd (SOCKS5_CMD_*): UDP goes
 * through SOCKS5 hops only, each relaying the next one's datagrams; BIND
 * needs a last hop that can listen, which an HTTP proxy cannot. */
int route_chain_carries(const struct route_chain *c, uint8_t cmd);
/* Among the alternatives at or after `from` that carry cmd: the first none
 * of whose hops is held down, or when all of those have one, the first;
 * r->nalts when none carries cmd. */
size_t route_pick(const struct route *r, size_t from, int64_t now_ms, uint8_t cmd);
/* Holds hop `hop` of c down for ROUTE_HOLDDOWN_MS from now_ms: for every
 * command, or with udp_only for UDP ASSOCIATE only (the hop answered, and
 * refused only its association: it still carries streams). */
void route_hop_failed(const struct route_chain *c, size_t hop, int64_t now_ms, int udp_only);
/* Holds every hop of c up again after the chain worked (a hold for UDP
 * only runs its course: a stream through the hop says nothing of UDP). */
void route_chain_worked(const struct route_chain *c);

/* The net_out for one connection of route r: fixed sources as given, a
 * random one from `rnd`, a sticky one from a keyed hash of `id` (the user
 * name, or the client address for a client without one). */
void route_out_for(const struct route *r, const uint64_t key[2], const void *id, size_t idlen,
                   const uint64_t rnd[2], struct net_out *out);

/* 128 unpredictable bits for a random source: SipHash of a per-thread
 * counter under a per-thread random key, so a connection costs no system
 * call (getrandom once per thread). */
void route_random(uint64_t rnd[2]);

/* The process's random key for sticky sources (made on first use), so a
 * user keeps an address across reloads but nobody can compute it. */
const uint64_t *route_sticky_key(void);

/* "direct" or alternative alt's hops, "socks5://a:1080 http://b:3128", for
 * the access log (no credentials; truncated to len). */
#define ROUTE_VIA_STRLEN 512
const char *route_via_str(const struct route *r, size_t alt, char *buf, size_t len);

/* "socks5://host:port" (no credentials) for logs. */
const char *route_hop_str(const struct upstream_hop *h, char *buf, size_t len);

#endif
