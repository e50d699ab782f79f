/* One client connection: handshake, request, then the relay.
 *
 *   [PROXY] -> GREETING -> [AUTH -> AUTH_WAIT | GSS (-> GSS_WAIT)* -> GSS_PROT]
 *        -> REQUEST
 *        -> [RESOLVE] -> DIAL -> RELAY  |  BIND_WAIT -> RELAY  |  UDP
 *
 * A phase is the handler on the client's events and the meaning of the
 * timer: a phase ends by installing the next one. What is in flight (auth
 * job, resolve, dial, BIND listener) is the session's one pending operation.
 *
 * Every failure sends the reply the RFC gives for it (if any) and closes;
 * the access log gets one line per session when it ends. */
#ifndef SOCKS5D_SESSION_H
#define SOCKS5D_SESSION_H

#include <stdint.h>
#include <stdio.h>

#include "addr.h"
#include "loop.h"
#include "policy.h"
#include "relay.h"
#include "wenv.h"

struct config;
struct session_rate;
struct gss_conn;
struct gss_relay;
struct userstats;
struct route;

/* An operation in flight for the session (auth job, resolve query, dial,
 * BIND listener): closing the session cancels it. */
struct pending {
    void (*cancel)(void *op);
    void *op;
    uint64_t started_ms; /* for the latency histograms */
};

struct session {
    struct session *prev, *next; /* env->sessions */
    struct wenv *env;            /* the worker running it */
    struct config *cfg;          /* the snapshot it was accepted under (the worker keeps it) */
    struct relay relay;          /* client and target sockets, buffers */
    struct loop_timer timer;     /* handshake, connect or idle deadline */
    struct loop_defer more;      /* relay budget ran out: continue next round */
    uint8_t *hbuf;               /* handshake bytes; becomes relay.up's buffer */
    uint32_t hlen;
    /* The phase: the parser of the handshake bytes (client events go to the
     * phase's own handler, loop_io_handler) and what its deadline means. */
    int (*parse)(struct session *s);
    void (*expire)(struct session *s);
    uint8_t method, cmd, rep;
    uint8_t greeted;   /* past the greeting: a close is no probe */
    uint8_t hbig;      /* hbuf is a relay buffer (BUFPOOL_SIZE), for GSS-API */
    uint8_t requested; /* the destination is known (for the log) */
    const char *why;   /* for the access log when something failed */
    struct pending pending;
    struct udp_assoc *udp; /* in the UDP phase */
    char *user;            /* authenticated user name, or NULL */
    struct gss_conn *gss;  /* GSS-API method: the security context */
    /* Under GSS-API protection (level 1 or 2): the relay that wraps */
    struct gss_relay *gss_relay;
    uint8_t gss_level; /* RFC 1961 protection level negotiated */
    char *dst_name;    /* requested domain, or NULL */
    /* BIND naming its peer by a name: the addresses that peer may come from */
    union addr_any *bind_peers;
    size_t nbind_peers;
    int8_t fail;               /* enum hs_fail when the handshake failed, else -1 */
    uint8_t lslot;             /* the listener's slot (lslots.h), for its counters */
    struct policy_state pol;   /* slots held and the deciding rule */
    struct session_rate *rate; /* per-user bandwidth limit, or NULL */
    /* Where the request leaves (route.h): the matching route or NULL for
     * direct, the alternative being tried, and how a resolved name reaches
     * the hops (by the address the rules judged, not by name). */
    const struct route *route;
    size_t alt;
    uint8_t route_by_addr;
    uint8_t v4;   /* a SOCKS4/4a client: replies in SOCKS4 */
    char *userid; /* its USERID, for the access log */
    /* What the session does once a name it looks up has addresses. */
    void (*resolved)(struct session *s, const union addr_any *addrs, size_t n);
    union addr_any client;
    union addr_any dst;             /* requested address (port valid for names too) */
    union addr_any peer;            /* the target actually connected */
    uint64_t started_ms, active_ms; /* accepted; last relayed a byte */
    uint64_t id;                    /* unique in the process, for the session list */
    struct userstats *ustats;       /* per-user counters (metrics-users), or NULL */
};

struct listen_spec;
/* Takes ownership of an accepted, non-blocking client socket that arrived
 * on listener `ln` (slot `lslot`), with its descriptor charged to the budget
 * (fdbudget.h).
 * The session runs under env->cfg and joins env->sessions; env->ended is
 * called once when it is gone (at once if it cannot start). */
void session_start(struct wenv *env, int fd, const union addr_any *client,
                   const struct listen_spec *ln, unsigned lslot);
/* Ends a session at once (shutdown after the grace period). */
void session_close(struct session *s);

/* Sends a reply; any code but success then closes the session. Returns 0
 * when the session goes on, -1 when it is gone. */
int session_reply(struct session *s, uint8_t rep, const struct sockaddr *bnd, const char *why);
/* Closes with `why` (NULL: a normal end) for the access log. */
void session_fail(struct session *s, const char *why);
/* Writes s as one JSON object: its id and its access-log fields so far. */
void session_describe(const struct session *s, FILE *out);
/* After a reload to `now`: ends the session, logged with the reason, when
 * the user it logged in as (RFC 1929) was removed or given another password
 * since its own snapshot, unless `now` keeps such sessions. Returns 1 when
 * the session is gone. */
int session_recheck_user(struct session *s, const struct config *now);

#endif
