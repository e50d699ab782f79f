/* The policy points a session passes: access rules, session limits and
 * failed-login throttling, in one place so no command can skip them.
 *
 *   accept   client address only: rules that refuse it outright, per-IP
 *            limit, handshake slots (before a byte is read; on a PROXY
 *            listener the slot is taken before the header, the rest after)
 *   request  client, user, command, destination (by name before it is
 *            resolved), disabled commands, per-user limit
 *   address  every resolved address, every UDP destination, every BIND peer */
#ifndef SOCKS5D_POLICY_H
#define SOCKS5D_POLICY_H

#include <stdint.h>
#include <sys/socket.h>

#include "addr.h"
#include "result.h"

struct config;
struct route;
struct wenv;

/* Who asks and what the policy points took and decided for one session,
 * embedded in it: written only here, read by the session (the access log,
 * its replies). */
struct policy_state {
    struct wenv *env;         /* counters, clock, the host's addresses */
    const struct config *cfg; /* the session's snapshot */
    const char *user;         /* set by policy_request; owned by the session */
    const char *why;          /* why the last refusal refused */
    const char *rule_file;    /* the rule that decided, or NULL */
    /* The TCP peer from policy_init, the real client from policy_accept
     * (after a PROXY header they differ); the session's client. */
    union addr_any client;
    int rule_line;
    uint8_t held; /* limit slots to give back */
};

/* A session's policy state, empty but for its client (the TCP peer),
 * judged under snapshot cfg (which must outlive it) with env's counters
 * and addresses. */
void policy_init(struct policy_state *p, struct wenv *env, const struct config *cfg,
                 const union addr_any *client);
/* At accept, for the client (after a PROXY header: the real one). Returns 1
 * to go on, 0 when the session must be closed (p->why says why). Takes
 * slots that policy_release gives back. */
int policy_accept(struct policy_state *p, const union addr_any *client);
/* At the request: user (or NULL; kept until policy_release), command,
 * destination (its port is the requested one; the address counts only
 * without a name) and the name asked for, or NULL. For VERDICT_NO p->why
 * says why. */
enum verdict policy_request(struct policy_state *p, const char *user, int cmd,
                            const union addr_any *dst, const char *name);
/* One concrete destination (resolved address, UDP target, BIND peer) for
 * command cmd; name is the name the client asked for, or NULL. Returns 1 if
 * allowed; on 0 p names the deciding rule. */
int policy_address(struct policy_state *p, int cmd, const struct sockaddr *dst, const char *name);
/* The route (route.h) of a request to dst or name, port (host order), or
 * NULL for direct. A route that lists
 * addresses in `to` needs the address of a name: then NULL with *need_addr
 * 1; ask again with dst set once it is resolved. */
const struct route *policy_route(struct policy_state *p, int cmd, const struct sockaddr *dst,
                                 const char *name, uint16_t port, int *need_addr);
/* Takes a handshake slot (max-handshakes) unless the session holds one
 * already: on a PROXY listener at accept, since waiting for the header is
 * part of the handshake; otherwise in policy_accept. Returns 1, or 0 with
 * p->why set. */
int policy_handshake_begin(struct policy_state *p);
/* A destination known only by name (port in host order): 1 when the rules
 * refuse it before it is resolved, so it is not looked up at all. */
int policy_name_denied(struct policy_state *p, int cmd, const char *name, uint16_t port);
/* The rule noted so far decides nothing any more (the addresses it did not
 * refuse are being dialed). */
void policy_forget_rule(struct policy_state *p);
/* Handshake over: its slot goes back (idempotent). */
void policy_handshake_done(struct policy_state *p);
/* Failed-login throttling for user at the client's address: a login
 * attempt counts from the moment it is made (0: throttled, nothing taken,
 * p->why says which limit). user is kept, as by policy_request. It is
 * settled as a failure, or not (it succeeded, or was refused unjudged); one
 * that is still open when the session ends (abandoned) is a failure.
 * Addresses in auth-fail-exempt are neither throttled nor counted. */
int policy_auth_attempt(struct policy_state *p, const char *user);
void policy_auth_settle(struct policy_state *p, int failed);
/* Whether configuration ctx (a struct config) counts failed logins from ip
 * (for a pair when per_user, else for the address alone): the test
 * quota_auth_forget asks after a reload. */
int policy_login_throttled(const struct sockaddr *ip, int per_user, void *ctx);
/* Gives back everything the session holds. */
void policy_release(struct policy_state *p);

#endif
