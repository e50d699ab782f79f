#include "policy.h"

#include <string.h>

#include "config.h"
#include "quota.h"
#include "proto.h"
#include "rules.h"
#include "session.h"
#include "stats.h"
#include "worker.h"

/* Limit slots a session holds. */
enum { HELD_IP = 1, HELD_USER = 2, HELD_HANDSHAKE = 4, HELD_LOGIN = 8 };

static void note_rule(struct session *s, const struct rules_verdict *v)
{
    s->pol.rule_file = v->file;
    s->pol.rule_line = v->line;
}

void policy_forget_rule(struct session *s)
{
    s->pol.rule_file = NULL;
    s->pol.rule_line = 0;
}

int policy_accept(struct session *s)
{
    const struct config *c = s->cfg;
    struct rules_verdict v;
    if (c->rules && !rules_check_client(c->rules, &s->client.sa, &v)) {
        note_rule(s, &v);
        s->pol.why = "client denied by rule";
        stat_inc(&s->w->stats.refused_rule);
        return 0;
    }
    if (!quota_ip_take(&s->client.sa, c->ipv6_prefix, c->max_per_ip)) {
        s->pol.why = "too many sessions from this address";
        stat_inc(&s->w->stats.refused_limit);
        return 0;
    }
    s->pol.held |= HELD_IP;
    return policy_handshake_begin(s);
}

int policy_handshake_begin(struct session *s)
{
    if (s->pol.held & HELD_HANDSHAKE)
        return 1; /* taken at accept, before the PROXY header */
    if (!quota_handshake_take(s->cfg->max_handshakes)) {
        s->pol.why = "too many handshakes in progress";
        stat_inc(&s->w->stats.refused_limit);
        return 0;
    }
    s->pol.held |= HELD_HANDSHAKE;
    return 1;
}

static void request_of(const struct session *s, int cmd, const struct sockaddr *dst,
                       const char *name, struct rules_request *r)
{
    memset(r, 0, sizeof *r);
    r->client = &s->client.sa;
    r->user = s->user;
    r->cmd = cmd;
    r->dst = dst;
    r->dst_name = name;
    r->dst_name_len = name ? strlen(name) : 0;
    r->dst_port = dst ? addr_port(dst) : addr_port(&s->dst.sa);
    r->self = s->w->self;
}

enum verdict policy_request(struct session *s)
{
    const struct config *c = s->cfg;
    struct rules_request r;
    struct rules_verdict v = {.allow = 1};
    if ((s->cmd == SOCKS5_CMD_BIND && c->no_bind) || (s->cmd == SOCKS5_CMD_UDP && c->no_udp)) {
        s->pol.why = "command disabled";
        stat_inc(&s->w->stats.refused_rule);
        return VERDICT_NO;
    }
    if (c->rules) {
        /* UDP ASSOCIATE names the client's own address, not a destination:
         * its destinations are checked datagram by datagram. */
        int udp = s->cmd == SOCKS5_CMD_UDP;
        request_of(s, s->cmd, udp || s->dst_name ? NULL : &s->dst.sa, udp ? NULL : s->dst_name, &r);
        if (udp)
            rules_match_any_destination(c->rules, &r, &v);
        else
            rules_match(c->rules, &r, &v);
        note_rule(s, &v);
        if (!v.allow && !v.need_addr) {
            s->pol.why = "denied by rule";
            stat_inc(&s->w->stats.refused_rule);
            return VERDICT_NO;
        }
    }
    if (s->user) {
        if (!quota_user_take(s->user, c->max_per_user)) {
            s->pol.why = "too many sessions for this user";
            stat_inc(&s->w->stats.refused_limit);
            return VERDICT_NO;
        }
        s->pol.held |= HELD_USER;
    }
    return v.need_addr ? VERDICT_MAYBE : VERDICT_YES;
}

int policy_address(struct session *s, int cmd, const struct sockaddr *dst, const char *name)
{
    struct rules_request r;
    struct rules_verdict v;
    if (!s->cfg->rules)
        return 1;
    request_of(s, cmd, dst, name, &r);
    rules_match(s->cfg->rules, &r, &v);
    if (!v.allow)
        note_rule(s, &v);
    return v.allow;
}

int policy_name_denied(struct session *s, int cmd, const char *name, uint16_t port)
{
    struct rules_request r;
    struct rules_verdict v;
    if (!s->cfg->rules)
        return 0;
    request_of(s, cmd, NULL, name, &r);
    r.dst_port = port;
    rules_match(s->cfg->rules, &r, &v);
    if (v.allow || v.need_addr)
        return 0;
    note_rule(s, &v);
    return 1;
}

void policy_handshake_done(struct session *s)
{
    if (s->pol.held & HELD_HANDSHAKE)
        quota_handshake_release();
    s->pol.held &= (uint8_t)~HELD_HANDSHAKE;
}

int policy_auth_attempt(struct session *s)
{
    const struct config *c = s->cfg;
    if (!quota_auth_attempt(&s->client.sa, c->ipv6_prefix, c->auth_fail_limit,
                            c->auth_fail_cooldown_ms, loop_now(s->w->loop)))
        return 0;
    s->pol.held |= HELD_LOGIN;
    return 1;
}

void policy_auth_settle(struct session *s, int failed)
{
    if (s->pol.held & HELD_LOGIN)
        quota_auth_settle(&s->client.sa, s->cfg->ipv6_prefix, failed, s->cfg->auth_fail_window_ms,
                          loop_now(s->w->loop));
    s->pol.held &= (uint8_t)~HELD_LOGIN;
}

void policy_release(struct session *s)
{
    policy_handshake_done(s);
    policy_auth_settle(s, 1);
    if (s->pol.held & HELD_IP)
        quota_ip_release(&s->client.sa, s->cfg->ipv6_prefix);
    if (s->pol.held & HELD_USER)
        quota_user_release(s->user);
    s->pol.held = 0;
}
