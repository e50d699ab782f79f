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

/* The handshake's state, from accept until the relay or the UDP
 * association begins: an established tunnel does not carry it. */
struct session_hs {
    /* The phase's parser of the handshake bytes (client events go to the
     * phase's own handler, loop_io_handler). */
    int (*parse)(struct session *s);
    uint8_t *hbuf; /* handshake bytes, taken at the first one */
    uint32_t hlen;
    uint8_t hbig;          /* hbuf is a relay buffer (BUFPOOL_SIZE), for GSS-API */
    uint8_t route_by_addr; /* a resolved name reaches the hops by the address the rules judged */
    struct pending pending;
    /* What the session does once a name it looks up has addresses. */
    void (*resolved)(struct session *s, const union addr_any *addrs, size_t n);
    /* BIND naming its peer by a name: the addresses that peer may come from */
    union addr_any *bind_peers;
    size_t nbind_peers;
};

/* What only some sessions use (GSS-API, routes, SOCKS4, UDP, per-user
 * limits and metrics, a relay that ran out of budget): allocated at the
 * first use, kept to the end. */
struct session_ext {
    struct session *s;      /* for the deferred call */
    struct loop_defer more; /* relay budget ran out: continue next round */
    struct gss_conn *gss;   /* GSS-API method: the security context */
    /* Under GSS-API protection (level 1 or 2): the relay that wraps */
    struct gss_relay *gss_relay;
    /* Where the request leaves (route.h): the matching route or NULL for
     * direct, and the alternative being tried. */
    const struct route *route;
    size_t alt;
    char *userid;              /* a SOCKS4 client's USERID, for the access log */
    struct udp_assoc *udp;     /* in the UDP phase */
    struct session_rate *rate; /* per-user bandwidth limit, or NULL */
    struct userstats *ustats;  /* per-user counters (metrics-users), or NULL */
    uint8_t gss_level;         /* RFC 1961 protection level negotiated */
};

/* Every session's own state, kept small: an idle tunnel costs this. */
struct session {
    struct session *prev, *next; /* env->sessions */
    struct wenv *env;            /* the worker running it */
    struct config *cfg;          /* the snapshot it was accepted under (the worker keeps it) */
    struct relay relay;          /* client and target sockets, buffers */
    struct loop_timer timer;     /* handshake, connect or idle deadline */
    void (*expire)(struct session *s); /* what the deadline means in this phase */
    struct session_hs *hs;             /* until the handshake is over, or NULL */
    struct session_ext *ext;           /* from its first use, or NULL */
    const char *why;                   /* for the access log when something failed */
    char *user;                        /* authenticated user name, or NULL */
    char *dst_name;                    /* requested domain, or NULL */
    struct policy_state pol;           /* the client, slots held and the deciding rule */
    union addr_any dst;                /* requested address (port valid for names too) */
    union addr_any peer;               /* the target actually connected */
    uint8_t method, cmd, rep;
    uint8_t greeted;                /* past the greeting: a close is no probe */
    uint8_t requested;              /* the destination is known (for the log) */
    uint8_t v4;                     /* a SOCKS4/4a client: replies in SOCKS4 */
    int8_t fail;                    /* enum hs_fail when the handshake failed, else -1 */
    uint8_t lslot;                  /* the listener's slot (lslots.h), for its counters */
    uint64_t started_ms, active_ms; /* accepted; last relayed a byte */
    uint64_t id;                    /* unique in the process, for the session list */
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
