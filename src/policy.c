#include "policy.h"

#include <string.h>

#include "config.h"
#include "quota.h"
#include "proto.h"
#include "route.h"
#include "rules.h"
#include "stats.h"
#include "wenv.h"

/* Limit slots a session holds. */
enum { HELD_IP = 1, HELD_USER = 2, HELD_HANDSHAKE = 4, HELD_LOGIN = 8 };

void policy_init(struct policy_state *p, struct wenv *env, const struct config *cfg,
                 const union addr_any *client)
{
    memset(p, 0, sizeof *p);
    p->env = env;
    p->cfg = cfg;
    p->client = *client;
}

static void note_rule(struct policy_state *p, const struct rules_verdict *v)
{
    p->rule_file = v->file;
    p->rule_line = v->line;
}

void policy_forget_rule(struct policy_state *p)
{
    p->rule_file = NULL;
    p->rule_line = 0;
}

int policy_accept(struct policy_state *p, const union addr_any *client)
{
    const struct config *c = p->cfg;
    struct rules_verdict v;
    p->client = *client;
    if (c->rules && !rules_check_client(c->rules, &p->client.sa, &v)) {
        note_rule(p, &v);
        p->why = "client denied by rule";
        stat_inc(&p->env->stats.refused_rule);
        return 0;
    }
    if (!quota_ip_take(&p->client.sa, c->ipv6_prefix, c->max_per_ip)) {
        p->why = "too many sessions from this address";
        stat_inc(&p->env->stats.refused_limit);
        return 0;
    }
    p->held |= HELD_IP;
    return policy_handshake_begin(p);
}

int policy_handshake_begin(struct policy_state *p)
{
    if (p->held & HELD_HANDSHAKE)
        return 1; /* taken at accept, before the PROXY header */
    if (!quota_handshake_take(p->cfg->max_handshakes)) {
        p->why = "too many handshakes in progress";
        stat_inc(&p->env->stats.refused_limit);
        return 0;
    }
    p->held |= HELD_HANDSHAKE;
    return 1;
}

static void request_of(const struct policy_state *p, int cmd, const struct sockaddr *dst,
                       const char *name, uint16_t port, struct rules_request *r)
{
    memset(r, 0, sizeof *r);
    r->client = &p->client.sa;
    r->user = p->user;
    r->cmd = cmd;
    r->dst = dst;
    r->dst_name = name;
    r->dst_name_len = name ? strlen(name) : 0;
    r->dst_port = port;
    r->self = p->env->self;
}

enum verdict policy_request(struct policy_state *p, const char *user, int cmd,
                            const union addr_any *dst, const char *name)
{
    const struct config *c = p->cfg;
    struct rules_request r;
    struct rules_verdict v = {.allow = 1};
    p->user = user;
    if ((cmd == SOCKS5_CMD_BIND && c->no_bind) || (cmd == SOCKS5_CMD_UDP && c->no_udp)) {
        p->why = "command disabled";
        stat_inc(&p->env->stats.refused_rule);
        return VERDICT_NO;
    }
    if (c->rules) {
        /* UDP ASSOCIATE names the client's own address, not a destination:
         * its destinations are checked datagram by datagram. */
        int udp = cmd == SOCKS5_CMD_UDP;
        request_of(p, cmd, udp || name ? NULL : &dst->sa, udp ? NULL : name, addr_port(&dst->sa),
                   &r);
        if (udp)
            rules_match_any_destination(c->rules, &r, &v);
        else
            rules_match(c->rules, &r, &v);
        note_rule(p, &v);
        if (!v.allow && !v.need_addr) {
            p->why = "denied by rule";
            stat_inc(&p->env->stats.refused_rule);
            return VERDICT_NO;
        }
    }
    /* Counted only under a limit: the shared sketch is touched per session
     * only when asked for (a limit a reload brings in does not count the
     * sessions that began without one). */
    if (user && c->max_per_user) {
        if (!quota_user_take(user, c->max_per_user)) {
            p->why = "too many sessions for this user";
            stat_inc(&p->env->stats.refused_limit);
            return VERDICT_NO;
        }
        p->held |= HELD_USER;
    }
    return v.need_addr ? VERDICT_MAYBE : VERDICT_YES;
}

int policy_address(struct policy_state *p, int cmd, const struct sockaddr *dst, const char *name)
{
    struct rules_request r;
    struct rules_verdict v;
    if (!p->cfg->rules)
        return 1;
    request_of(p, cmd, dst, name, addr_port(dst), &r);
    rules_match(p->cfg->rules, &r, &v);
    if (!v.allow)
        note_rule(p, &v);
    return v.allow;
}

const struct route *policy_route(struct policy_state *p, int cmd, const struct sockaddr *dst,
                                 const char *name, uint16_t port, int *need_addr)
{
    struct rules_request r;
    *need_addr = 0;
    if (!p->cfg->routes)
        return NULL;
    request_of(p, cmd, dst, name, port, &r);
    return routes_match(p->cfg->routes, &r, need_addr);
}

int policy_name_denied(struct policy_state *p, int cmd, const char *name, uint16_t port)
{
    struct rules_request r;
    struct rules_verdict v;
    if (!p->cfg->rules)
        return 0;
    request_of(p, cmd, NULL, name, port, &r);
    rules_match(p->cfg->rules, &r, &v);
    if (v.allow || v.need_addr)
        return 0;
    note_rule(p, &v);
    return 1;
}

void policy_handshake_done(struct policy_state *p)
{
    if (p->held & HELD_HANDSHAKE)
        quota_handshake_release(p->cfg->max_handshakes);
    p->held &= (uint8_t)~HELD_HANDSHAKE;
}

static void login_settings(const struct config *c, struct quota_login *q)
{
    q->limit = c->auth_fail_limit;
    q->address_limit = c->auth_fail_address_limit;
    q->window_ms = c->auth_fail_window_ms;
    q->cooldown_ms = c->auth_fail_cooldown_ms;
    q->v6_prefix = c->ipv6_prefix;
}

static int login_exempt(const struct config *c, const struct sockaddr *ip)
{
    return c->auth_fail_exempt && rules_check_client(c->auth_fail_exempt, ip, NULL);
}

int policy_auth_attempt(struct policy_state *p, const char *user)
{
    struct quota_login q;
    p->user = user;
    if (login_exempt(p->cfg, &p->client.sa))
        return 1;
    login_settings(p->cfg, &q);
    int rc = quota_auth_attempt(&p->client.sa, user, &q, loop_now(p->env->loop));
    if (rc <= 0) {
        p->why = rc == 0 && user ? "too many failed logins for this user from this address"
                                 : "too many failed logins from this address";
        return 0;
    }
    p->held |= HELD_LOGIN;
    return 1;
}

void policy_auth_settle(struct policy_state *p, int failed)
{
    struct quota_login q;
    if (p->held & HELD_LOGIN) {
        login_settings(p->cfg, &q);
        quota_auth_settle(&p->client.sa, p->user, &q, failed, loop_now(p->env->loop));
    }
    p->held &= (uint8_t)~HELD_LOGIN;
}

int policy_login_throttled(const struct sockaddr *ip, int per_user, void *ctx)
{
    const struct config *c = ctx;
    return (per_user ? c->auth_fail_limit : c->auth_fail_address_limit) != 0 &&
           !login_exempt(c, ip);
}

void policy_release(struct policy_state *p)
{
    policy_handshake_done(p);
    policy_auth_settle(p, 1);
    if (p->held & HELD_IP)
        quota_ip_release(&p->client.sa, p->cfg->ipv6_prefix);
    if (p->held & HELD_USER)
        quota_user_release(p->user);
    p->held = 0;
}
