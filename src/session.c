/* The SOCKS5 session state machine (see session.h). */
#include "session.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "auth_cache.h"
#include "auth_pool.h"
#include "auth_secret.h"
#include "bind.h"
#include "config.h"
#include "dial.h"
#include "fdbudget.h"
#include "gss.h"
#include "gss_relay.h"
#include "hops.h"
#include "log.h"
#include "policy.h"
#include "proto.h"
#include "proto4.h"
#include "proxyproto.h"
#include "ratelimit.h"
#include "resolve.h"
#include "route.h"
#include "rules.h"
#include "stats.h"
#include "udp.h"
#include "udpchain.h"
#include "userstats.h"
#include "users.h"

static void on_target(struct loop_io *io, unsigned events);
static void handshake_continue(struct session *s);
static void on_handshake_io(struct loop_io *io, unsigned events);
static void on_handshake_timeout(struct session *s);
static int parse_greeting(struct session *s);
static int parse_auth(struct session *s);
static int parse_request(struct session *s);
static int parse_gss_auth(struct session *s);
static int parse_gss_prot(struct session *s);
static void gss_refuse(struct session *s, enum hs_fail reason, const char *why);
static int parse_request4(struct session *s);
static void start_bind(struct session *s);
static void resolve_destination(struct session *s);

/* What a handshake parser did: needs more bytes; installed the next phase's
 * parser (parse on); waits on a pending operation. After HS_GONE the session
 * must not be touched: it was closed, or handed on to a callback that owns
 * it now. */
enum { HS_GONE = -1, HS_MORE = 0, HS_NEXT = 1, HS_WAIT = 2 };

/* The session's rarely used state, allocated at its first use. Returns it,
 * or NULL when out of memory. */
static struct session_ext *ext_of(struct session *s)
{
    if (!s->ext && (s->ext = calloc(1, sizeof *s->ext)))
        s->ext->s = s;
    return s->ext;
}

static struct udp_assoc *udp_of(const struct session *s)
{
    return s->ext ? s->ext->udp : NULL;
}

static struct gss_relay *gss_relay_of(const struct session *s)
{
    return s->ext ? s->ext->gss_relay : NULL;
}

static const struct route *route_of(const struct session *s)
{
    return s->ext ? s->ext->route : NULL;
}

/* Notes the route the request takes (NULL: direct) and starts at its
 * first alternative. Returns 0, or -1 when out of memory. */
static int set_route(struct session *s, const struct route *r)
{
    if (!r && !s->ext)
        return 0;
    if (!ext_of(s))
        return -1;
    s->ext->route = r;
    s->ext->alt = 0;
    return 0;
}

/* Handshake bytes held: none before the first byte and after the end. */
static uint32_t hs_len(const struct session *s)
{
    return s->hs ? s->hs->hlen : 0;
}

/* Per-user bandwidth limit: the user's shared buckets (ratelimit.h) and
 * the timer that resumes a throttled tunnel. Allocated only for limited
 * users. */
struct session_rate {
    struct loop_timer timer;
    struct session *s;
    unsigned seed; /* for the retry jitter */
};

/* A throttled tunnel retries after a tick plus a random part of one: the
 * tunnels of a user then find fresh tokens in a different order each
 * round instead of the first timer taking them all every time. */
#define THROTTLE_TICK_MS 10

/* The one place an errno becomes a reply code. */
static uint8_t rep_from_errno(int err)
{
    switch (err) {
    case ENETUNREACH:
    case ENETDOWN:
        return SOCKS5_REP_NET_UNREACHABLE;
    case EHOSTUNREACH:
    case EHOSTDOWN:
        return SOCKS5_REP_HOST_UNREACHABLE;
    case ECONNREFUSED:
        return SOCKS5_REP_CONN_REFUSED;
    case ETIMEDOUT:
        return SOCKS5_REP_TTL_EXPIRED;
    default:
        return SOCKS5_REP_GENERAL_FAILURE;
    }
}

static const char *cmd_name(uint8_t cmd)
{
    switch (cmd) {
    case SOCKS5_CMD_CONNECT:
        return "connect";
    case SOCKS5_CMD_BIND:
        return "bind";
    case SOCKS5_CMD_UDP:
        return "udp";
    default:
        return "-";
    }
}

/* "host:port" as the client asked for it. */
static const char *dst_str(const struct session *s, char *buf, size_t len)
{
    if (s->dst_name) {
        snprintf(buf, len, "%s:%u", s->dst_name, addr_port(&s->dst.sa));
        return buf;
    }
    return addr_str(&s->dst.sa, buf, len);
}

/* Bytes relayed one way (down: target to client), plaintext under GSS-API. */
static uint64_t relayed(const struct session *s, int down)
{
    const struct udp_assoc *udp = udp_of(s);
    const struct gss_relay *gr = gss_relay_of(s);
    if (udp)
        return down ? udp_counts(udp)->bytes_down : udp_counts(udp)->bytes_up;
    if (gr)
        return down ? gss_relay_bytes_down(gr) : gss_relay_bytes_up(gr);
    return down ? s->relay.down.bytes : s->relay.up.bytes;
}

/* "gssapi/<level>" for the access log, the level as far as negotiated. */
static const char *gss_level_name(const struct session *s)
{
    static const char *const names[] = {"gssapi/none", "gssapi/integrity",
                                        "gssapi/confidentiality"};
    if (!s->ext || (s->hs && (s->hs->parse == parse_gss_auth || s->hs->parse == parse_gss_prot)))
        return "gssapi"; /* no level yet */
    return s->ext->gss_level < 3 ? names[s->ext->gss_level] : "gssapi";
}

/* A connection closed without a byte is a probe (a load balancer's health
 * check), not a session: counted, not logged. */
static int is_probe(const struct session *s)
{
    return !s->greeted && hs_len(s) == 0 && !s->why;
}

/* Room for the values of a session's fields (access log, session list). */
struct fields {
    char id[24], client[ADDR_STRLEN], dst[300], peer[ADDR_STRLEN], rep[4], up[24], down[24], ms[24];
    char dg_up[24], dg_down[24], dropped[24], rule[300], via[ROUTE_VIA_STRLEN];
    const char *kv[2 * 17];
};

/* Fills f with what is known of s: the access-log record (with its id
 * first when with_id). Returns the number of pairs. */
static size_t fields(const struct session *s, struct fields *f, int with_id)
{
    size_t n = 0;
    snprintf(f->rep, sizeof f->rep, "-");
    if (s->rep != 0xff)
        snprintf(f->rep, sizeof f->rep, "%u", s->rep);
    snprintf(f->up, sizeof f->up, "%llu", (unsigned long long)relayed(s, 0));
    snprintf(f->down, sizeof f->down, "%llu", (unsigned long long)relayed(s, 1));
    snprintf(f->ms, sizeof f->ms, "%llu",
             (unsigned long long)(loop_now(s->env->loop) - s->started_ms));
#define KV(k, v) (f->kv[n++] = (k), f->kv[n++] = (v))
    if (with_id) {
        snprintf(f->id, sizeof f->id, "%llu", (unsigned long long)s->id);
        KV("id", f->id);
    }
    KV("client", addr_str(&s->pol.client.sa, f->client, sizeof f->client));
    KV("user", s->user ? s->user : "-");
    if (s->v4) {
        KV("proto", "socks4");
        KV("userid", s->ext && s->ext->userid ? s->ext->userid : "");
    }
    KV("cmd", cmd_name(s->cmd));
    KV("dst", s->requested ? dst_str(s, f->dst, sizeof f->dst) : "-");
    KV("addr", addr_str(&s->peer.sa, f->peer, sizeof f->peer));
    KV("rep", f->rep);
    KV("up", f->up);
    KV("down", f->down);
    if (udp_of(s)) {
        const struct udp_counts *u = udp_counts(udp_of(s));
        snprintf(f->dg_up, sizeof f->dg_up, "%llu", (unsigned long long)u->dgrams_up);
        snprintf(f->dg_down, sizeof f->dg_down, "%llu", (unsigned long long)u->dgrams_down);
        snprintf(f->dropped, sizeof f->dropped, "%llu", (unsigned long long)u->dropped);
        KV("dgrams_up", f->dg_up);
        KV("dgrams_down", f->dg_down);
        KV("dropped", f->dropped);
    }
    KV("ms", f->ms);
    if (s->method == SOCKS5_METHOD_GSSAPI)
        KV("auth", gss_level_name(s));
    if (route_of(s))
        KV("via", route_via_str(s->ext->route, s->ext->alt, f->via, sizeof f->via));
    if (s->pol.rule_file) {
        snprintf(f->rule, sizeof f->rule, "%s:%d", s->pol.rule_file, s->pol.rule_line);
        KV("rule", f->rule);
    }
    if (s->why)
        KV("error", s->why);
#undef KV
    return n / 2;
}

static void access_log(const struct session *s)
{
    struct fields f;
    if (!log_access_enabled() || is_probe(s))
        return;
    log_access(f.kv, fields(s, &f, 0));
}

void session_describe(const struct session *s, FILE *out)
{
    struct fields f;
    log_json_object(out, f.kv, fields(s, &f, 1));
}

/* ---------------- phases ---------------- */

static void cancel_auth(void *op)
{
    auth_cancel(op);
}

static void cancel_gss(void *op)
{
    gss_accept_cancel(op);
}

static void cancel_resolve(void *op)
{
    resolve_cancel(op);
}

static void cancel_dial(void *op)
{
    dial_cancel(op);
}

static void cancel_bind(void *op)
{
    bind_cancel(op);
}

static void cancel_hops(void *op)
{
    hops_cancel(op);
}

/* Records the operation now in flight (op NULL: it could not start). */
static void pending_set(struct session *s, void (*cancel)(void *), void *op)
{
    s->hs->pending.cancel = op ? cancel : NULL;
    s->hs->pending.op = op;
    s->hs->pending.started_ms = loop_now(s->env->loop);
}

/* The operation answered: it is no longer ours to cancel. Returns how long
 * it took (ms). */
static uint64_t pending_done(struct session *s)
{
    s->hs->pending.cancel = NULL;
    s->hs->pending.op = NULL;
    return loop_now(s->env->loop) - s->hs->pending.started_ms;
}

static void pending_cancel(struct session *s)
{
    if (!s->hs)
        return;
    if (s->hs->pending.cancel)
        s->hs->pending.cancel(s->hs->pending.op);
    pending_done(s);
}

/* Enters a phase: its handler gets the client's events from now on. */
static void phase_io(struct session *s, loop_io_fn on_client_io)
{
    loop_io_handler(&s->relay.client.io, on_client_io);
}

/* Enters a handshake phase: client bytes go to `parse`. */
static void phase_parse(struct session *s, int (*parse)(struct session *))
{
    s->hs->parse = parse;
    phase_io(s, on_handshake_io);
}

/* The handshake buffer is a small one, or a relay buffer for GSS-API
 * tokens (Active Directory tickets carry group lists of tens of KiB). */
static size_t hbuf_cap(const struct session *s)
{
    return s->hs->hbig ? BUFPOOL_SIZE : BUFPOOL_SMALL;
}

static void hbuf_put(struct session *s)
{
    if (s->hs->hbig)
        bufpool_put(&s->env->pool, s->hs->hbuf);
    else
        bufpool_put_small(&s->env->pool, s->hs->hbuf);
    s->hs->hbuf = NULL;
    s->hs->hbig = 0;
}

/* Moves the handshake bytes to a relay-sized buffer. Returns 0 or -1. */
static int hbuf_grow(struct session *s)
{
    uint8_t *big = bufpool_get(&s->env->pool);
    if (!big)
        return -1;
    memcpy(big, s->hs->hbuf, s->hs->hlen);
    hbuf_put(s);
    s->hs->hbuf = big;
    s->hs->hbig = 1;
    return 0;
}

/* The handshake is over (or the session): its state goes back. */
static void hs_close(struct session *s)
{
    if (!s->hs)
        return;
    hbuf_put(s);
    free(s->hs->bind_peers);
    free(s->hs);
    s->hs = NULL;
}

/* Gives back what the session's rarely used state holds. */
static void ext_close(struct session *s)
{
    struct session_ext *x = s->ext;
    if (!x)
        return;
    if (x->rate) {
        loop_timer_cancel(s->env->loop, &x->rate->timer);
        free(x->rate);
    }
    if (x->udp)
        udp_close(x->udp);
    loop_defer_cancel(s->env->loop, &x->more);
    gss_relay_free(x->gss_relay);
    gss_conn_free(x->gss);
    free(x->userid);
    free(x);
    s->ext = NULL;
}

/* Each side's fd was charged to the budget when it was opened (the client's
 * by accept, the target's by the dial or the BIND listener). */
static void close_side(struct session *s, struct relay_side *side)
{
    if (side->io.fd < 0)
        return;
    loop_io_close(s->env->loop, &side->io);
    fdbudget_give(1);
}

static void count_end(const struct session *s)
{
    struct stats *st = &s->env->stats;
    if (is_probe(s))
        stat_inc(&st->probes);
    else if (s->fail >= 0)
        stat_inc(&st->handshake_fail[s->fail]);
    else
        stat_inc(&st->sessions[s->cmd <= 3 ? s->cmd : 0][s->rep <= 8 ? s->rep : 9]);
    if (s->fail >= 0)
        stat_inc(&st->listener_hs_fail[s->lslot]);
    stat_add(&st->active, (uint64_t)-1);
    stat_add(&st->listener_active[s->lslot], (uint64_t)-1);
}

/* The worker's list of its sessions (env->sessions). */
static void link_session(struct session *s)
{
    struct session_set *set = &s->env->sessions;
    s->prev = NULL;
    s->next = set->head;
    if (set->head)
        set->head->prev = s;
    set->head = s;
    set->n++;
}

static void unlink_session(struct session *s)
{
    struct session_set *set = &s->env->sessions;
    if (s->prev)
        s->prev->next = s->next;
    else
        set->head = s->next;
    if (s->next)
        s->next->prev = s->prev;
    set->n--;
}

void session_close(struct session *s)
{
    struct wenv *env = s->env;
    struct config *cfg = s->cfg;
    pending_cancel(s);
    access_log(s);
    count_end(s);
    userstats_end(s->ext ? s->ext->ustats : NULL, relayed(s, 0), relayed(s, 1));
    policy_release(&s->pol);
    ext_close(s);
    loop_timer_cancel(env->loop, &s->timer);
    close_side(s, &s->relay.client);
    close_side(s, &s->relay.target);
    relay_release(&s->relay, &env->pool);
    hs_close(s);
    unlink_session(s);
    free(s->user);
    free(s->dst_name);
    free(s);
    env->ended(env, cfg);
}

/* Sends a short handshake message. The socket is fresh and the messages are
 * tiny, so a send that does not take all of it means a broken client. */
static int send_small(struct session *s, const uint8_t *msg, size_t len)
{
    ssize_t n = send(s->relay.client.io.fd, msg, len, MSG_NOSIGNAL);
    return n == (ssize_t)len ? 0 : -1;
}

void session_fail(struct session *s, const char *why)
{
    s->why = why;
    session_close(s);
}

/* How the login of s changed from its snapshot to `now` (USERS_SAME when
 * now keeps such sessions). */
static enum users_change login_change(const struct session *s, const struct config *now)
{
    if (!s->user || s->method != SOCKS5_METHOD_USERPASS || now->keep_user_sessions || now == s->cfg)
        return USERS_SAME;
    return users_compare(s->cfg->users, now->users, s->user);
}

int session_recheck_user(struct session *s, const struct config *now)
{
    char client[ADDR_STRLEN];
    enum users_change ch = login_change(s, now);
    if (ch == USERS_SAME)
        return 0;
    const char *why = ch == USERS_REMOVED ? "user removed by reload" : "password changed by reload";
    log_info("ending the session of user %s from %s: %s", s->user,
             addr_str(&s->pol.client.sa, client, sizeof client), why);
    session_fail(s, why);
    return 1;
}

/* Ends a session whose handshake failed, counted by reason. */
static void hs_fail(struct session *s, enum hs_fail reason, const char *why)
{
    s->fail = (int8_t)reason;
    session_fail(s, why);
}

/* Sends a reply, wrapped under GSS-API protection. */
static int send_reply(struct session *s, const uint8_t *msg, size_t n)
{
    uint8_t wrapped[PROTO_REPLY_MAX + 256];
    if (!gss_relay_of(s))
        return send_small(s, msg, n);
    n = gss_relay_encap(s->ext->gss, s->ext->gss_level == SOCKS5_GSS_CONF, msg, n, wrapped,
                        sizeof wrapped);
    return n ? send_small(s, wrapped, n) : -1;
}

/* Sends reply `rep` (with BND = bnd or zeros) and, unless it is success,
 * closes. Returns 0 when the session goes on. */
int session_reply(struct session *s, uint8_t rep, const struct sockaddr *bnd, const char *why)
{
    uint8_t msg[PROTO_REPLY_MAX];
    size_t n = s->v4 ? proto4_encode_reply(msg, sizeof msg, rep, bnd)
                     : proto_encode_reply(msg, sizeof msg, rep, bnd);
    s->rep = rep;
    if (send_reply(s, msg, n) < 0) {
        session_fail(s, "client gone before reply");
        return -1;
    }
    if (rep != SOCKS5_REP_SUCCEEDED) {
        session_fail(s, why);
        return -1;
    }
    return 0;
}

/* ---------------- timers ---------------- */

/* The deadline means what the current phase says (s->expire). */
static void on_timer(struct loop_timer *t)
{
    struct session *s = container_of(t, struct session, timer);
    s->expire(s);
}

static void arm_timer(struct session *s, uint64_t ms)
{
    if (loop_timer_arm(s->env->loop, &s->timer, ms, on_timer) < 0)
        log_error("session: cannot arm timer: out of memory");
}

/* Arms the session's one timer with the meaning `expire`. */
static void session_arm(struct session *s, uint32_t ms, void (*expire)(struct session *))
{
    s->expire = expire;
    arm_timer(s, ms);
}

static void on_handshake_timeout(struct session *s)
{
    hs_fail(s, HSF_TIMEOUT, "handshake timeout");
}

static void chain_broke(struct session *s, size_t hop, uint8_t rep, const char *why, int udp_only);
static int resolving_hop(const struct session *s);
static void first_hop_failed(struct session *s, uint8_t rep, const char *what, const char *detail);

static void on_resolve_timeout(struct session *s)
{
    pending_cancel(s);
    if (resolving_hop(s)) {
        first_hop_failed(s, SOCKS5_REP_HOST_UNREACHABLE, "resolve", "timeout");
        return;
    }
    session_reply(s, SOCKS5_REP_HOST_UNREACHABLE, NULL, "resolve timeout");
}

static void cancel_udpchain(void *op);

/* A hop that never answers (its connect, its handshake or, for UDP, an
 * earlier hop's association) fails over like one that refuses the
 * connection. */
static void on_dial_timeout(struct session *s)
{
    int dialing = s->hs->pending.cancel == cancel_dial,
        talking = s->hs->pending.cancel == cancel_hops,
        chaining = s->hs->pending.cancel == cancel_udpchain;
    size_t hop = talking ? hops_at(s->hs->pending.op) : 0;
    if (chaining)
        hop = udpchain_at(s->hs->pending.op);
    pending_cancel(s);
    if (route_of(s) && (dialing || talking || chaining) && s->ext->alt < s->ext->route->nalts &&
        s->ext->route->alts[s->ext->alt].nhops > 0) {
        chain_broke(s, hop, SOCKS5_REP_TTL_EXPIRED,
                    chaining  ? "upstream UDP association timeout"
                    : talking ? "upstream handshake timeout"
                              : "connect timeout",
                    0);
        return;
    }
    session_reply(s, SOCKS5_REP_TTL_EXPIRED, NULL, "connect timeout");
}

static void on_bind_timeout(struct session *s)
{
    session_reply(s, SOCKS5_REP_TTL_EXPIRED, NULL, "no connection to the BIND port in time");
}

/* Idle time is checked lazily: activity only stamps the time it happened. */
static void idle_check(struct session *s, uint64_t active_ms, uint32_t idle)
{
    uint64_t quiet = loop_now(s->env->loop) - active_ms;
    if (quiet < idle) {
        arm_timer(s, idle - quiet);
        return;
    }
    session_fail(s, "idle timeout");
}

static void on_relay_idle(struct session *s)
{
    idle_check(s, s->active_ms, s->cfg->timeout_idle_ms);
}

static void on_udp_idle(struct session *s)
{
    idle_check(s, udp_counts(s->ext->udp)->active_ms, s->cfg->timeout_udp_ms);
}

/* ---------------- waiting phases ---------------- */

/* Auth job, resolve or dial in flight: bytes the client sends meanwhile
 * wait in the socket until the relay starts; a reset ends the session. */
static void on_client_waiting(struct loop_io *io, unsigned events)
{
    struct session *s = container_of(io, struct session, relay.client.io);
    relay_note(&s->relay.client, events);
    if (events & LOOP_HUP)
        session_fail(s, "client gone");
}

/* BIND waiting for its peer: bytes sent before the peer arrives stay queued
 * for the relay; only the client's end matters now. */
static void on_client_bind_wait(struct loop_io *io, unsigned events)
{
    struct session *s = container_of(io, struct session, relay.client.io);
    relay_note(&s->relay.client, events);
    if (events & LOOP_HUP)
        session_fail(s, "client gone");
    else if (events & LOOP_RDHUP)
        session_fail(s, NULL);
}

/* The control connection of a UDP association carries nothing more; its
 * end (FIN or reset) ends the session. */
static void on_udp_control(struct loop_io *io, unsigned events)
{
    struct session *s = container_of(io, struct session, relay.client.io);
    uint8_t sink[512];
    relay_note(&s->relay.client, events);
    if (events & LOOP_HUP) {
        session_fail(s, "client gone");
        return;
    }
    for (;;) {
        ssize_t n = read(s->relay.client.io.fd, sink, sizeof sink);
        if (n > 0)
            continue;
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return;
        session_fail(s, n == 0 ? NULL : strerror(errno));
        return;
    }
}

/* ---------------- relay ---------------- */

static void pump(struct session *s);

static void on_more(struct loop_defer *d)
{
    pump(container_of(d, struct session_ext, more)->s);
}

static void on_throttle_end(struct loop_timer *t)
{
    pump(container_of(t, struct session_rate, timer)->s);
}

/* A protected message failed its check (or was malformed): an attack or a
 * broken client, so it is counted and logged besides the access log. */
static void gss_bad_message(struct session *s, const char *why)
{
    char client[ADDR_STRLEN];
    stat_inc(&s->env->stats.gss_bad);
    log_warn("client=%s user=%s gssapi: %s", addr_str(&s->pol.client.sa, client, sizeof client),
             s->user ? s->user : "-", why);
    session_fail(s, why);
}

static void pump(struct session *s)
{
    unsigned flags = 0;
    int err = 0;
    uint64_t up = relayed(s, 0), down = relayed(s, 1);
    struct gss_relay *gr = gss_relay_of(s);
    int rc = gr ? gss_relay_pump(gr, &s->relay.client, &s->relay.target, loop_now(s->env->loop),
                                 &flags, &err)
                : (int)relay_pump(&s->relay, &s->env->pool, loop_now(s->env->loop), &flags, &err);
    stat_add(&s->env->stats.bytes_up, relayed(s, 0) - up);
    stat_add(&s->env->stats.bytes_down, relayed(s, 1) - down);
    if (rc == GSS_RELAY_BAD) {
        gss_bad_message(s, gss_relay_error(gr));
        return;
    }
    if (rc == RES_ERROR) {
        /* A reset is how many peers end a connection: not worth an error. */
        session_fail(s, err == ECONNRESET || err == EPIPE ? NULL : strerror(err));
        return;
    }
    if (rc == RES_DONE) {
        session_fail(s, NULL);
        return;
    }
    if (!gr && (loop_io_set(s->env->loop, &s->relay.client.io,
                            relay_interest(&s->relay, &s->relay.client)) < 0 ||
                loop_io_set(s->env->loop, &s->relay.target.io,
                            relay_interest(&s->relay, &s->relay.target)) < 0)) {
        session_fail(s, "epoll_ctl failed");
        return;
    }
    if (flags & RELAY_MOVED)
        s->active_ms = loop_now(s->env->loop);
    if (flags & RELAY_MORE) {
        /* A tunnel's first busy round: where to hold the deferred call. */
        if (!ext_of(s)) {
            session_fail(s, "out of memory");
            return;
        }
        loop_defer(s->env->loop, &s->ext->more, on_more);
    }
    if ((flags & RELAY_THROTTLED) && !loop_timer_armed(&s->ext->rate->timer))
        loop_timer_arm(s->env->loop, &s->ext->rate->timer,
                       THROTTLE_TICK_MS + (unsigned)rand_r(&s->ext->rate->seed) % THROTTLE_TICK_MS,
                       on_throttle_end);
}

/* A user with a rate limit relays through the user's shared buckets, one
 * per direction. Returns 0 or -1. */
static int setup_rate(struct session *s)
{
    uint64_t rate = config_rate_limit(s->cfg, s->user);
    uint64_t now = loop_now(s->env->loop);
    struct ratelimit_user *u;
    if (!rate)
        return 0;
    if (!(u = ratelimit_get(s->user, rate, now)) || !ext_of(s) ||
        !(s->ext->rate = calloc(1, sizeof *s->ext->rate)))
        return -1;
    s->ext->rate->s = s;
    s->ext->rate->seed = (unsigned)(uintptr_t)s ^ (unsigned)now;
    s->relay.up.bucket = ratelimit_up(u);
    s->relay.down.bucket = ratelimit_down(u);
    if (gss_relay_of(s))
        gss_relay_limit(s->ext->gss_relay, s->relay.up.bucket, s->relay.down.bucket);
    return 0;
}

static void on_target(struct loop_io *io, unsigned events)
{
    struct session *s = container_of(io, struct session, relay.target.io);
    relay_note(&s->relay.target, events);
    pump(s);
}

/* Registers fd (owned from now on, charged to the budget) as the target
 * side. Returns 0, or -1 with fd closed and its charge given back. */
static int attach_target(struct session *s, int fd)
{
    if (loop_io_add(s->env->loop, &s->relay.target.io, fd, LOOP_READ | LOOP_WRITE, on_target) < 0) {
        close(fd);
        fdbudget_give(1);
        return -1;
    }
    return 0;
}

static void on_client_relay(struct loop_io *io, unsigned events)
{
    struct session *s = container_of(io, struct session, relay.client.io);
    relay_note(&s->relay.client, events);
    pump(s);
}

/* Starts relaying between client and target. */
static void start_relay(struct session *s)
{
    phase_io(s, on_client_relay);
    if (setup_rate(s) < 0) {
        session_fail(s, "out of memory");
        return;
    }
    /* TCP_NODELAY is already on: inherited from the listening sockets,
     * set before connect on outbound ones. */
    /* Bytes the client sent after its request are the first to relay; they
     * move to a relay buffer (the handshake one is too small to read into). */
    if (hs_len(s)) {
        if (!(s->relay.up.buf = bufpool_get(&s->env->pool))) {
            session_fail(s, "out of memory");
            return;
        }
        s->relay.up.len = s->hs->hlen;
        memcpy(s->relay.up.buf, s->hs->hbuf, s->hs->hlen);
    }
    hs_close(s);
    s->active_ms = loop_now(s->env->loop);
    session_arm(s, s->cfg->timeout_idle_ms, on_relay_idle);
    pump(s);
}

/* ---------------- CONNECT ---------------- */

/* The alternative of the session's route being tried; NULL without a route. */
static const struct route_chain *chain_of(const struct session *s)
{
    const struct route *r = route_of(s);
    return r && s->ext->alt < r->nalts ? &r->alts[s->ext->alt] : NULL;
}

static int via_hops(const struct session *s)
{
    const struct route_chain *c = chain_of(s);
    return c && c->nhops > 0;
}

/* The tunnel is up: the target side takes the connection, the client gets
 * its reply (BND = bnd, else our end) and any bytes that came early. */
static void connected(struct session *s, struct loop_io *io, const struct sockaddr *bnd,
                      const uint8_t *early, size_t early_len)
{
    union addr_any local;
    socklen_t len = sizeof local;
    /* Moved or not, the target side owns fd now: closing the session closes it. */
    if (loop_io_move(s->env->loop, io, &s->relay.target.io, LOOP_READ | LOOP_WRITE, on_target) <
        0) {
        session_reply(s, SOCKS5_REP_GENERAL_FAILURE, NULL, "epoll_ctl failed");
        return;
    }
    s->relay.target.writable = 1;
    if (!bnd && getsockname(s->relay.target.io.fd, &local.sa, &len) < 0)
        memset(&local, 0, sizeof local);
    if (session_reply(s, SOCKS5_REP_SUCCEEDED, bnd ? bnd : &local.sa, NULL) < 0)
        return;
    if (early_len > 0 && send_small(s, early, early_len) < 0) {
        session_fail(s, "client gone after the reply");
        return;
    }
    start_relay(s);
}

/* The destination as the last hop is asked for it: the name the client
 * sent, or the address the rules judged. */
static void upstream_dst(const struct session *s, struct proto_addr *out)
{
    memset(out, 0, sizeof *out);
    out->port = addr_port(&s->dst.sa);
    if (s->dst_name && !s->hs->route_by_addr) {
        out->atyp = SOCKS5_ATYP_DOMAIN;
        out->name_len = (uint8_t)strlen(s->dst_name);
        memcpy(out->u.name, s->dst_name, out->name_len);
    } else if (s->dst.sa.sa_family == AF_INET6) {
        out->atyp = SOCKS5_ATYP_IPV6;
        memcpy(out->u.ip6, &s->dst.in6.sin6_addr, 16);
    } else {
        out->atyp = SOCKS5_ATYP_IPV4;
        memcpy(out->u.ip4, &s->dst.in4.sin_addr, 4);
    }
}

static void start_udp(struct session *s, const struct proto_addr *hint, struct udpchain *through);
static void out_of(const struct session *s, struct net_out *out);

/* The upstream's control connection of a chained association: nothing is
 * expected on it; its end ends the association. */
static void on_upstream_control(struct loop_io *io, unsigned events)
{
    (void)events;
    if (net_discard(io->fd))
        session_fail(container_of(io, struct session, relay.target.io),
                     "upstream ended the UDP association");
}

static void cancel_udpchain(void *op)
{
    udpchain_free(op);
}

static void on_udpchain(void *owner, struct udpchain *c, uint8_t rep, size_t hop, const char *why)
{
    struct session *s = owner;
    struct proto_addr hint;
    pending_done(s);
    if (rep != SOCKS5_REP_SUCCEEDED) {
        if (hop == UDPCHAIN_NO_HOP)
            session_reply(s, rep, NULL, why); /* why lives in c */
        else
            chain_broke(s, hop, rep, why, udpchain_refused(c));
        udpchain_free(c);
        return;
    }
    upstream_dst(s, &hint);
    start_udp(s, &hint, c);
}

static void on_udpchain_ended(void *owner)
{
    session_fail(owner, "upstream ended a UDP association of the chain");
}

/* The last hop's association is up (its relay at bnd): the earlier hops'
 * associations come next (udpchain.h), then ours, chained to them. */
static void udp_chained(struct session *s, struct loop_io *io, const struct proto_addr *bnd)
{
    struct net_out out;
    if (loop_io_move(s->env->loop, io, &s->relay.target.io, LOOP_READ, on_upstream_control) < 0) {
        session_reply(s, SOCKS5_REP_GENERAL_FAILURE, NULL, "epoll_ctl failed");
        return;
    }
    out_of(s, &out);
    pending_set(s, cancel_udpchain,
                udpchain_start(s->env->loop, chain_of(s), &s->peer, &out,
                               s->cfg->timeout_connect_ms, bnd, on_udpchain, on_udpchain_ended, s));
    if (!s->hs->pending.op)
        session_reply(s, SOCKS5_REP_GENERAL_FAILURE, NULL, "cannot start the upstream UDP chain");
}

static void on_hops(void *owner, enum hops_stage stage, struct loop_io *io, uint8_t rep,
                    const struct proto_addr *bnd, const uint8_t *early, size_t early_len,
                    const char *why)
{
    struct session *s = owner;
    struct sockaddr_storage ss;
    if (stage == HOPS_BOUND) {
        /* BIND: the last hop listens; its address is the first reply, and
         * its peer's comes with the second. */
        phase_io(s, on_client_bind_wait);
        if (session_reply(s, SOCKS5_REP_SUCCEEDED,
                          proto_addr_to_sockaddr(bnd, &ss) ? (struct sockaddr *)&ss : NULL,
                          NULL) == 0)
            session_arm(s, s->cfg->timeout_bind_ms, on_bind_timeout);
        return;
    }
    size_t at = hops_at(s->hs->pending.op);
    pending_done(s);
    if (stage == HOPS_FAILED) {
        session_reply(s, rep, NULL, why);
        return;
    }
    if (stage == HOPS_BROKEN) {
        chain_broke(s, at, rep, why, 0);
        return;
    }
    route_chain_worked(chain_of(s));
    if (s->cmd == SOCKS5_CMD_UDP) {
        udp_chained(s, io, bnd);
        return;
    }
    connected(s, io, proto_addr_to_sockaddr(bnd, &ss) ? (struct sockaddr *)&ss : NULL, early,
              early_len);
}

static void try_route(struct session *s);

/* The alternative to try from `from` on for the session's command. */
static size_t next_alt(const struct session *s, size_t from)
{
    return route_pick(s->ext->route, from, (int64_t)loop_now(s->env->loop), s->cmd);
}

/* Hop `hop` of the alternative being tried failed (down, dropped, silent,
 * or an earlier hop could not reach it; udp_only: it refused a UDP
 * association): hold it down and try the next alternative with a deadline
 * of its own, or tell the client. */
static void chain_broke(struct session *s, size_t hop, uint8_t rep, const char *why, int udp_only)
{
    route_hop_failed(chain_of(s), hop, (int64_t)loop_now(s->env->loop), udp_only);
    close_side(s, &s->relay.target); /* UDP: the last hop's association */
    if (next_alt(s, s->ext->alt + 1) >= s->ext->route->nalts) {
        session_reply(s, rep, NULL, why);
        return;
    }
    char client[ADDR_STRLEN], via[ROUTE_VIA_STRLEN];
    log_warn("client=%s via=%s failing over: %s",
             addr_str(&s->pol.client.sa, client, sizeof client),
             route_via_str(s->ext->route, s->ext->alt, via, sizeof via), why);
    s->ext->alt++;
    session_arm(s, s->cfg->timeout_connect_ms, on_dial_timeout);
    try_route(s);
}

/* The first hop could not be looked up or reached: `what` failed
 * (detail says why). */
static void first_hop_failed(struct session *s, uint8_t rep, const char *what, const char *detail)
{
    char why[400], hop[300];
    snprintf(why, sizeof why, "%s %s: %s", what,
             route_hop_str(&chain_of(s)->hops[0], hop, sizeof hop), detail);
    chain_broke(s, 0, rep, why, 0);
}

/* A connect that failed with err: through a hop, a failover, unless we are
 * short of memory or descriptors (not the hop's fault). */
static void dial_failed(struct session *s, int err)
{
    if (via_hops(s) && err != ENOMEM && err != EMFILE)
        first_hop_failed(s, rep_from_errno(err), "connect", strerror(err));
    else
        session_reply(s, rep_from_errno(err), NULL, strerror(err));
}

static void on_dialed(void *owner, int fd, struct loop_io *io, int err, const union addr_any *peer)
{
    struct session *s = owner;
    struct proto_addr dst;
    uint64_t took = pending_done(s);
    if (fd < 0) {
        dial_failed(s, err);
        return;
    }
    stats_observe(&s->env->stats.connect, took);
    s->peer = *peer;
    if (!via_hops(s)) {
        connected(s, io, NULL, NULL, 0);
        return;
    }
    if (s->cmd == SOCKS5_CMD_UDP) {
        memset(&dst, 0, sizeof dst); /* where we send from: not known yet */
        dst.atyp = SOCKS5_ATYP_IPV4;
    } else {
        upstream_dst(s, &dst);
    }
    pending_set(s, cancel_hops,
                hops_start(s->env->loop, io, chain_of(s), s->cmd, &dst, on_hops, s));
    if (!s->hs->pending.op)
        session_reply(s, SOCKS5_REP_GENERAL_FAILURE, NULL, "out of memory");
}

/* How connections of this session leave the host (the route's `out`). */
static void out_of(const struct session *s, struct net_out *out)
{
    uint64_t rnd[2];
    const void *id = s->user;
    size_t idlen = s->user ? strlen(s->user) : 0;
    if (!route_of(s) || !s->ext->route->has_out) {
        memset(out, 0, sizeof *out);
        return;
    }
    if (!s->user) {
        id = &s->pol.client.in6.sin6_addr; /* sticky per client address */
        idlen = s->pol.client.sa.sa_family == AF_INET6 ? 16 : 0;
        if (s->pol.client.sa.sa_family == AF_INET) {
            id = &s->pol.client.in4.sin_addr;
            idlen = 4;
        }
    }
    route_random(rnd);
    route_out_for(s->ext->route, route_sticky_key(), id, idlen, rnd, out);
}

/* Starts connecting to addrs[0..n) (the destination or the first hop). */
static void dial(struct session *s, const union addr_any *addrs, size_t n)
{
    struct net_out out;
    int err;
    out_of(s, &out);
    s->expire = on_dial_timeout; /* the deadline the resolve started goes on */
    phase_io(s, on_client_waiting);
    pending_set(
        s, cancel_dial,
        dial_start(s->env->loop, addrs, n, &out, s->cfg->timeout_connect_ms, on_dialed, s, &err));
    if (!s->hs->pending.op)
        dial_failed(s, err);
}

/* Keeps the addresses the rules allow for the command; a name that resolves
 * only to refused addresses is refused as a whole. Returns how many. */
static size_t allowed_addrs(struct session *s, const union addr_any *all, size_t count,
                            union addr_any *out)
{
    size_t n = 0;
    for (size_t i = 0; i < count && n < RESOLVE_MAX_ADDRS; i++)
        if (policy_address(&s->pol, s->cmd, &all[i].sa, s->dst_name))
            out[n++] = all[i];
    if (n == 0) {
        stat_inc(&s->env->stats.refused_rule);
        session_reply(s, SOCKS5_REP_NOT_ALLOWED, NULL, "denied by rule");
    }
    return n;
}

static void resolve_name(struct session *s, const char *name, uint16_t port,
                         void (*then)(struct session *, const union addr_any *, size_t));

/* Whether the name being looked up is the first hop's (try_route): a
 * failed lookup then fails over like a failed connect. */
static int resolving_hop(const struct session *s)
{
    return via_hops(s) && s->hs->resolved == dial;
}

/* Dials the addresses the rules allow, or, when a route needed the address
 * to decide, routes by the first of them. */
static void dial_addrs(struct session *s, const union addr_any *all, size_t count)
{
    union addr_any addrs[RESOLVE_MAX_ADDRS];
    size_t n = allowed_addrs(s, all, count, addrs);
    int need = 0;
    if (n == 0)
        return;
    policy_forget_rule(&s->pol);
    if (s->hs->route_by_addr) {
        if (set_route(s, policy_route(&s->pol, s->cmd, &addrs[0].sa, s->dst_name,
                                      addr_port(&s->dst.sa), &need)) < 0) {
            session_reply(s, SOCKS5_REP_GENERAL_FAILURE, NULL, "out of memory");
            return;
        }
        if (route_of(s))
            s->ext->alt = next_alt(s, 0);
    }
    if (via_hops(s)) {
        s->dst = addrs[0]; /* the address the rules judged goes to the hops */
        try_route(s);
        return;
    }
    dial(s, addrs, n);
}

/* Starts the request through the alternative of the session's route picked
 * from its alt on, or directly without a route. */
static void try_route(struct session *s)
{
    if (route_of(s)) {
        s->ext->alt = next_alt(s, s->ext->alt);
        if (s->ext->alt >= s->ext->route->nalts) {
            session_reply(s, SOCKS5_REP_CMD_UNSUPPORTED, NULL,
                          s->cmd == SOCKS5_CMD_UDP ? "no alternative of the route carries UDP "
                                                     "(SOCKS5 hops only)"
                                                   : "no alternative of the route carries BIND "
                                                     "(its last hop is an HTTP proxy)");
            return;
        }
    }
    const struct route_chain *c = chain_of(s);
    if (c && c->nhops > 0) {
        /* The hop is the operator's choice: no access rule applies to it. */
        resolve_name(s, c->hops[0].host, c->hops[0].port, dial);
        return;
    }
    if (s->cmd == SOCKS5_CMD_UDP) {
        struct proto_addr hint;
        upstream_dst(s, &hint);
        start_udp(s, &hint, NULL);
    } else if (s->cmd == SOCKS5_CMD_BIND && s->dst_name)
        resolve_destination(s);
    else if (s->cmd == SOCKS5_CMD_BIND)
        start_bind(s);
    else if (s->dst_name && !s->hs->route_by_addr)
        resolve_name(s, s->dst_name, addr_port(&s->dst.sa), dial_addrs);
    else
        dial(s, &s->dst, 1);
}

/* A BIND that names its peer by a name admits only a peer at one of the
 * addresses the name has and the rules allow. */
static void bind_named(struct session *s, const union addr_any *all, size_t count)
{
    union addr_any addrs[RESOLVE_MAX_ADDRS];
    size_t n = allowed_addrs(s, all, count, addrs);
    if (n == 0)
        return;
    s->hs->bind_peers = malloc(n * sizeof *s->hs->bind_peers);
    if (!s->hs->bind_peers) {
        session_reply(s, SOCKS5_REP_GENERAL_FAILURE, NULL, "out of memory");
        return;
    }
    memcpy(s->hs->bind_peers, addrs, n * sizeof *addrs);
    s->hs->nbind_peers = n;
    start_bind(s);
}

static void on_resolved(void *owner, int status, const union addr_any *addrs, size_t n)
{
    struct session *s = owner;
    stats_observe(&s->env->stats.dns, pending_done(s));
    if (status != RESOLVE_OK) {
        const char *why = status == RESOLVE_NOTFOUND ? "name not found" : "resolver failed";
        stat_inc(&s->env->stats.dns_failures);
        if (resolving_hop(s))
            first_hop_failed(s, SOCKS5_REP_HOST_UNREACHABLE, "resolve", why);
        else
            session_reply(s, SOCKS5_REP_HOST_UNREACHABLE, NULL, why);
        return;
    }
    s->hs->resolved(s, addrs, n);
}

/* Looks name up (bounded by the connect deadline already armed) and goes
 * on with `then`. */
static void resolve_name(struct session *s, const char *name, uint16_t port,
                         void (*then)(struct session *, const union addr_any *, size_t))
{
    union addr_any addrs[RESOLVE_MAX_ADDRS];
    size_t n = 0;
    if (resolve_literal(name, port, addrs, &n)) {
        then(s, addrs, n);
        return;
    }
    s->hs->resolved = then;
    s->expire = on_resolve_timeout;
    phase_io(s, on_client_waiting);
    pending_set(s, cancel_resolve, resolve_start(s->env->resolver, name, port, on_resolved, s));
    if (!s->hs->pending.op)
        session_reply(s, SOCKS5_REP_GENERAL_FAILURE, NULL, "out of memory");
}

/* BIND naming its peer: the name becomes addresses first, bounded by the
 * connect timeout. */
static void resolve_destination(struct session *s)
{
    session_arm(s, s->cfg->timeout_connect_ms, on_resolve_timeout);
    resolve_name(s, s->dst_name, addr_port(&s->dst.sa), bind_named);
}

/* CONNECT: the first matching route decides how (route.h). A name goes to
 * an upstream unresolved unless the rules or the route need its address. */
static void do_connect(struct session *s, enum verdict v)
{
    int need = 0;
    session_arm(s, s->cfg->timeout_connect_ms, on_dial_timeout);
    if (set_route(s, policy_route(&s->pol, s->cmd, s->dst_name ? NULL : &s->dst.sa, s->dst_name,
                                  addr_port(&s->dst.sa), &need)) < 0) {
        session_reply(s, SOCKS5_REP_GENERAL_FAILURE, NULL, "out of memory");
        return;
    }
    if (s->dst_name && (need || v == VERDICT_MAYBE)) {
        s->hs->route_by_addr = 1;
        resolve_name(s, s->dst_name, addr_port(&s->dst.sa), dial_addrs);
        return;
    }
    if (!s->dst_name) {
        union addr_any one[1] = {s->dst};
        union addr_any ok[RESOLVE_MAX_ADDRS];
        if (allowed_addrs(s, one, 1, ok) == 0)
            return;
        policy_forget_rule(&s->pol);
    }
    try_route(s);
}

/* What the UDP and BIND sub-machines get of the session. */
static const struct cmd_ctx *cmd_ctx_of(struct session *s, struct cmd_ctx *ctx)
{
    ctx->env = s->env;
    ctx->cfg = s->cfg;
    ctx->pol = &s->pol;
    ctx->control_fd = s->relay.client.io.fd;
    ctx->client = s->pol.client;
    out_of(s, &ctx->out);
    return ctx;
}

/* ---------------- BIND ---------------- */

static void on_bind_peer(void *owner, int fd, const union addr_any *peer, int err)
{
    struct session *s = owner;
    pending_done(s);
    if (fd < 0) {
        session_reply(s, SOCKS5_REP_GENERAL_FAILURE, NULL, strerror(err));
        return;
    }
    s->peer = *peer;
    if (attach_target(s, fd) < 0) {
        session_reply(s, SOCKS5_REP_GENERAL_FAILURE, NULL, "epoll_ctl failed");
        return;
    }
    if (session_reply(s, SOCKS5_REP_SUCCEEDED, &s->peer.sa, NULL) == 0)
        start_relay(s);
}

/* Opens the listener and sends the first reply; the second comes with the
 * peer (on_bind_peer) or the bind timeout. */
static void start_bind(struct session *s)
{
    union addr_any bnd;
    struct cmd_ctx ctx;
    struct bind_want want = {.dst = s->dst,
                             .name = s->dst_name,
                             .addrs = s->hs->bind_peers,
                             .naddrs = s->hs->nbind_peers};
    struct bind_listener *b = bind_start(cmd_ctx_of(s, &ctx), &want, &bnd, on_bind_peer, s);
    if (!b) {
        session_reply(s, SOCKS5_REP_GENERAL_FAILURE, NULL, strerror(errno));
        return;
    }
    pending_set(s, cancel_bind, b);
    phase_io(s, on_client_bind_wait);
    if (session_reply(s, SOCKS5_REP_SUCCEEDED, &bnd.sa, NULL) == 0)
        session_arm(s, s->cfg->timeout_bind_ms, on_bind_timeout);
}

/* ---------------- handshake ---------------- */

/* Drops the first n bytes of the handshake buffer. */
static void consume(struct session *s, size_t n)
{
    memmove(s->hs->hbuf, s->hs->hbuf + n, s->hs->hlen - n);
    s->hs->hlen -= (uint32_t)n;
}

static int parse_greeting(struct session *s)
{
    struct proto_greeting g;
    enum proto_err err;
    size_t used;
    uint8_t msg[2];
    if (s->hs->hlen > 0 && s->hs->hbuf[0] == SOCKS4_VERSION && s->cfg->socks4) {
        s->v4 = 1;
        s->greeted = 1;
        phase_parse(s, parse_request4);
        return HS_NEXT;
    }
    enum result rc = proto_parse_greeting(s->hs->hbuf, s->hs->hlen, &g, &used, &err);
    if (rc == RES_AGAIN)
        return HS_MORE;
    if (rc == RES_ERROR) {
        hs_fail(s, HSF_PROTOCOL, proto_err_str(err));
        return HS_GONE;
    }
    consume(s, used);
    s->method = proto_select_method(&g, s->cfg->methods, s->cfg->nmethods);
    if (send_small(s, msg, proto_encode_method(msg, sizeof msg, s->method)) < 0 ||
        s->method == SOCKS5_METHOD_UNACCEPTABLE) {
        hs_fail(s, HSF_NO_METHOD, "no acceptable authentication method");
        return HS_GONE;
    }
    s->greeted = 1;
    if (s->method == SOCKS5_METHOD_GSSAPI && (hbuf_grow(s) < 0 || !ext_of(s))) {
        session_fail(s, "out of memory");
        return HS_GONE;
    }
    phase_parse(s, s->method == SOCKS5_METHOD_USERPASS ? parse_auth
                   : s->method == SOCKS5_METHOD_GSSAPI ? parse_gss_auth
                                                       : parse_request);
    return HS_NEXT;
}

/* Answers the login. Returns HS_NEXT with the session in the request
 * phase, or HS_GONE. */
static int auth_result(struct session *s, int ok)
{
    uint8_t msg[2];
    /* Checked against the snapshot the session was accepted under: a reload
     * since then may have removed the user or changed the password. */
    ok = ok && login_change(s, s->env->cfg) == USERS_SAME;
    stat_inc(ok ? &s->env->stats.auth_ok : &s->env->stats.auth_fail);
    policy_auth_settle(&s->pol, !ok);
    if (send_small(s, msg, proto_encode_userpass_reply(msg, sizeof msg, ok ? 0 : 1)) < 0) {
        hs_fail(s, HSF_CLOSED, "client gone during authentication");
        return HS_GONE;
    }
    if (!ok) {
        hs_fail(s, HSF_AUTH, "authentication failed");
        return HS_GONE;
    }
    struct userstats *us = userstats_begin(s->user);
    if (us && !ext_of(s)) {
        userstats_end(us, 0, 0);
        session_fail(s, "out of memory");
        return HS_GONE;
    }
    if (us)
        s->ext->ustats = us;
    phase_parse(s, parse_request);
    return HS_NEXT;
}

/* RFC 1929 status 1 without verifying, and the end of the session. */
static void auth_refuse(struct session *s, enum hs_fail reason, const char *why)
{
    uint8_t msg[2];
    send_small(s, msg, proto_encode_userpass_reply(msg, sizeof msg, 1));
    hs_fail(s, reason, why);
}

/* The handshake deadline passed while a login step (a password, a GSS-API
 * context token) waited for the pool: the server was slow, not the client,
 * so the client hears the method's refusal (RFC 1929 status 1, the RFC 1961
 * abort) instead of a silent close, and the unjudged attempt is not held
 * against its address. */
static void on_login_timeout(struct session *s)
{
    pending_cancel(s);
    policy_auth_settle(&s->pol, 0);
    if (s->method == SOCKS5_METHOD_GSSAPI)
        gss_refuse(s, HSF_TIMEOUT, "handshake timeout during a GSS-API context step");
    else
        auth_refuse(s, HSF_TIMEOUT, "handshake timeout during password verification");
}

/* A login step was just handed to the pool (s->hs->pending): wait for it, or,
 * when nothing was queued, end the session. A full queue checked nothing,
 * so it is not a failed login; refuse answers in the method's own way. */
static int await_pool(struct session *s,
                      void (*refuse)(struct session *, enum hs_fail, const char *),
                      const char *busy)
{
    if (!s->hs->pending.op && errno == EAGAIN) {
        policy_auth_settle(&s->pol, 0);
        stat_inc(&s->env->stats.auth_busy);
        refuse(s, HSF_THROTTLED, busy);
        return HS_GONE;
    }
    if (!s->hs->pending.op) {
        session_fail(s, "out of memory");
        return HS_GONE;
    }
    s->expire = on_login_timeout;
    return HS_WAIT;
}

static void on_verified(void *owner, int ok)
{
    struct session *s = owner;
    pending_done(s);
    s->expire = on_handshake_timeout; /* the same deadline goes on */
    if (auth_result(s, ok) == HS_NEXT)
        handshake_continue(s);
}

static int parse_auth(struct session *s)
{
    struct proto_userpass up;
    enum proto_err err;
    size_t used;
    enum result rc = proto_parse_userpass(s->hs->hbuf, s->hs->hlen, &up, &used, &err);
    if (rc == RES_AGAIN)
        return HS_MORE;
    if (rc == RES_ERROR) {
        auth_refuse(s, HSF_PROTOCOL, proto_err_str(err));
        return HS_GONE;
    }
    auth_wipe(s->hs->hbuf, used);
    consume(s, used);
    /* The name first: the throttle counts per (address, user). */
    if (!(s->user = strdup(up.user))) {
        auth_wipe(up.pass, sizeof up.pass);
        session_fail(s, "out of memory");
        return HS_GONE;
    }
    if (!policy_auth_attempt(&s->pol, s->user)) {
        auth_wipe(up.pass, sizeof up.pass);
        auth_refuse(s, HSF_THROTTLED, s->pol.why);
        return HS_GONE;
    }
    /* Closed with nothing after the credentials: no request can follow, so
     * nothing is verified; the open attempt counts as a failure. */
    if (s->relay.client.eof && s->hs->hlen == 0) {
        auth_wipe(up.pass, sizeof up.pass);
        hs_fail(s, HSF_CLOSED, "client gone during authentication");
        return HS_GONE;
    }
    const char *hash = users_find(s->cfg->users, up.user);
    if (hash && auth_cache_hit(s->env->auth_cache, up.user, hash, up.pass)) {
        auth_wipe(up.pass, sizeof up.pass);
        return auth_result(s, 1);
    }
    phase_io(s, on_client_waiting);
    pending_set(s, cancel_auth,
                auth_verify(s->cfg->users, up.user, up.pass, s->env->auth_cache, on_verified, s));
    auth_wipe(up.pass, sizeof up.pass);
    return await_pool(s, auth_refuse, "password verification queue full");
}

/* through: the upstream associations to chain to (udp_chain, which takes
 * it), or NULL. */
static void start_udp(struct session *s, const struct proto_addr *hint, struct udpchain *through)
{
    union addr_any bnd;
    struct cmd_ctx ctx;
    uint8_t rep;
    const char *why;
    /* Under GSS-API protection each datagram is encapsulated too. */
    struct udp_seal seal = {gss_relay_open_dgram, gss_relay_seal_dgram, gss_relay_of(s)};
    if (!ext_of(s)) {
        udpchain_free(through);
        session_reply(s, SOCKS5_REP_GENERAL_FAILURE, NULL, "out of memory");
        return;
    }
    s->ext->udp = udp_open(cmd_ctx_of(s, &ctx), hint, &bnd, &rep, &why);
    if (!s->ext->udp || (s->ext->gss_relay && udp_protect(s->ext->udp, &seal) < 0)) {
        udpchain_free(through);
        session_reply(s, rep, NULL, s->ext->udp ? "out of memory" : why);
        return;
    }
    if (through)
        udp_chain(s->ext->udp, through);
    phase_io(s, on_udp_control);
    if (session_reply(s, SOCKS5_REP_SUCCEEDED, &bnd.sa, NULL) < 0)
        return;
    session_arm(s, s->cfg->timeout_udp_ms, on_udp_idle);
    hs_close(s); /* the control connection carries nothing more */
}

/* Fills dst/dst_name from the request. Returns 0 or -1 (out of memory). */
static int take_destination(struct session *s, const struct proto_addr *a)
{
    struct sockaddr_storage ss;
    memset(&s->dst, 0, sizeof s->dst);
    if (a->atyp == SOCKS5_ATYP_DOMAIN) {
        s->dst.in4.sin_family = AF_INET; /* carries the port only */
        s->dst.in4.sin_port = htons(a->port);
        s->dst_name = strndup(a->u.name, a->name_len);
        return s->dst_name ? 0 : -1;
    }
    proto_addr_to_sockaddr(a, &ss);
    memcpy(&s->dst, &ss, addr_len((struct sockaddr *)&ss));
    return 0;
}

/* A request that can never be valid: its reply, if it has one, and the end. */
static void request_refused(struct session *s, enum proto_err err)
{
    int rep = proto_err_rep(err);
    s->fail = HSF_PROTOCOL;
    if (rep < 0)
        session_fail(s, proto_err_str(err));
    else
        session_reply(s, (uint8_t)rep, NULL, proto_err_str(err));
}

/* The request is in (SOCKS5 or SOCKS4): judge it and start the command.
 * Returns HS_GONE: the handshake is over either way. */
static int request_ready(struct session *s, uint8_t cmd, const struct proto_addr *dst)
{
    s->cmd = cmd;
    if (take_destination(s, dst) < 0) {
        session_reply(s, SOCKS5_REP_GENERAL_FAILURE, NULL, "out of memory");
        return HS_GONE;
    }
    s->requested = 1;
    policy_handshake_done(&s->pol);
    enum verdict v = policy_request(&s->pol, s->user, s->cmd, &s->dst, s->dst_name);
    if (v == VERDICT_NO) {
        session_reply(s, SOCKS5_REP_NOT_ALLOWED, NULL, s->pol.why);
        return HS_GONE;
    }
    if (cmd == SOCKS5_CMD_CONNECT) {
        do_connect(s, v);
        return HS_GONE;
    }
    int need = 0;
    /* UDP names no destination (its datagrams do): only routes without a
     * `to` or `port` clause can match it. */
    int udp = cmd == SOCKS5_CMD_UDP;
    if (set_route(s, policy_route(&s->pol, cmd, udp || s->dst_name ? NULL : &s->dst.sa,
                                  udp ? NULL : s->dst_name, udp ? 0 : addr_port(&s->dst.sa),
                                  &need)) < 0) {
        session_reply(s, SOCKS5_REP_GENERAL_FAILURE, NULL, "out of memory");
        return HS_GONE;
    }
    if (route_of(s)) /* reaching a hop takes a connect */
        session_arm(s, s->cfg->timeout_connect_ms, on_dial_timeout);
    try_route(s);
    return HS_GONE;
}

static int parse_request(struct session *s)
{
    struct proto_request req;
    enum proto_err err;
    size_t used;
    enum result rc = proto_parse_request(s->hs->hbuf, s->hs->hlen, &req, &used, &err);
    if (rc == RES_AGAIN)
        return HS_MORE;
    if (rc == RES_ERROR) {
        request_refused(s, err);
        return HS_GONE;
    }
    /* What stays in hbuf after the request is early data for the target. */
    consume(s, used);
    return request_ready(s, req.cmd, &req.dst);
}

/* SOCKS4/4a: no login, so the client counts as unauthenticated (no user
 * rule matches it); USERID is only logged. Every refusal is 0x5B. */
static int parse_request4(struct session *s)
{
    struct proto4_request req;
    enum proto4_err err;
    size_t used;
    enum result rc = proto4_parse_request(s->hs->hbuf, s->hs->hlen, &req, &used, &err);
    if (rc == RES_AGAIN)
        return HS_MORE;
    if (rc == RES_ERROR) {
        s->fail = HSF_PROTOCOL;
        session_reply(s, SOCKS5_REP_GENERAL_FAILURE, NULL, proto4_err_str(err));
        return HS_GONE;
    }
    consume(s, used);
    if (!ext_of(s) || !(s->ext->userid = strndup(req.userid, req.userid_len))) {
        session_reply(s, SOCKS5_REP_GENERAL_FAILURE, NULL, "out of memory");
        return HS_GONE;
    }
    return request_ready(s, req.cmd, &req.dst);
}

/* ---------------- GSS-API (RFC 1961) ---------------- */

/* Tokens of the handshake phases must fit the handshake buffer. */
#define GSS_HS_TOKEN_MAX (BUFPOOL_SIZE - PROTO_GSS_HEADER)

static int parse_gss_request(struct session *s);

/* Sends one RFC 1961 message. Returns 0 or -1. */
static int send_gss(struct session *s, uint8_t mtyp, const uint8_t *token, size_t len)
{
    uint8_t hdr[PROTO_GSS_HEADER];
    struct iovec iov[2] = {{hdr, sizeof hdr}, {(void *)token, len}};
    struct msghdr mh = {.msg_iov = iov, .msg_iovlen = 2};
    if (len > 65535)
        return -1;
    proto_encode_gss_header(hdr, sizeof hdr, mtyp, (uint16_t)len);
    return sendmsg(s->relay.client.io.fd, &mh, MSG_NOSIGNAL) == (ssize_t)(sizeof hdr + len) ? 0
                                                                                            : -1;
}

/* The RFC 1961 abort message, and the end of the session. */
static void gss_refuse(struct session *s, enum hs_fail reason, const char *why)
{
    uint8_t msg[2];
    send_small(s, msg, proto_encode_gss_abort(msg, sizeof msg));
    hs_fail(s, reason, why);
}

/* Reads one message of the handshake phase `mtyp`. Returns HS_NEXT with
 * *m filled and its bytes still in hbuf (*used), HS_MORE, or HS_GONE. */
static int read_gss(struct session *s, uint8_t mtyp, struct proto_gss_msg *m, size_t *used)
{
    enum proto_err err;
    enum result rc =
        proto_parse_gss(s->hs->hbuf, s->hs->hlen, mtyp, GSS_HS_TOKEN_MAX, m, used, &err);
    if (rc == RES_AGAIN)
        return HS_MORE;
    if (rc == RES_ERROR) {
        gss_refuse(s, HSF_PROTOCOL, proto_err_str(err));
        return HS_GONE;
    }
    if (m->mtyp == SOCKS5_GSS_ABORT) {
        hs_fail(s, mtyp == SOCKS5_GSS_AUTH ? HSF_AUTH : HSF_PROTOCOL,
                "GSS-API abort from the client");
        return HS_GONE;
    }
    return HS_NEXT;
}

/* A failed login, as for passwords: counted, and toward the throttling of
 * the client's address. */
static void gss_auth_failed(struct session *s, const char *why)
{
    stat_inc(&s->env->stats.gss_fail);
    policy_auth_settle(&s->pol, 1);
    gss_refuse(s, HSF_AUTH, why);
}

/* The client principal becomes the session's user, if its realm is
 * accepted. Returns 0, or -1 with the session gone. */
static int gss_take_user(struct session *s)
{
    char name[512];
    const char *p = gss_conn_principal(s->ext->gss);
    const char *user = gss_user(p, s->cfg->gss_realms, s->cfg->gss_strip_realm, name, sizeof name);
    if (!(s->user = strdup(user ? user : p))) {
        session_fail(s, "out of memory");
        return -1;
    }
    if (!user) {
        gss_auth_failed(s, "realm not accepted");
        return -1;
    }
    stat_inc(&s->env->stats.gss_ok);
    policy_auth_settle(&s->pol, 0);
    return 0;
}

/* A context step answered (on this worker). */
static void on_gss_step(void *owner, int status)
{
    struct session *s = owner;
    const uint8_t *token;
    size_t len;
    pending_done(s);
    s->expire = on_handshake_timeout; /* the same deadline goes on */
    if (status == GSS_ERROR) {
        gss_auth_failed(s, gss_conn_error(s->ext->gss));
        return;
    }
    token = gss_conn_token(s->ext->gss, &len);
    if (len && send_gss(s, SOCKS5_GSS_AUTH, token, len) < 0) {
        hs_fail(s, HSF_CLOSED, "client gone during authentication");
        return;
    }
    if (status == GSS_COMPLETE && gss_take_user(s) < 0)
        return;
    phase_parse(s, status == GSS_COMPLETE ? parse_gss_prot : parse_gss_auth);
    handshake_continue(s);
}

/* Context establishment: each client token is a step on the auth pool. */
static int parse_gss_auth(struct session *s)
{
    struct proto_gss_msg m;
    size_t used;
    int rc = read_gss(s, SOCKS5_GSS_AUTH, &m, &used);
    if (rc != HS_NEXT)
        return rc;
    /* The first token opens a login attempt; the context's end settles it.
     * The principal is not known yet: failures count for the address. */
    if (!s->ext->gss && !policy_auth_attempt(&s->pol, NULL)) {
        gss_refuse(s, HSF_THROTTLED, s->pol.why);
        return HS_GONE;
    }
    if (!s->ext->gss && !(s->ext->gss = gss_conn_new())) {
        session_fail(s, "out of memory");
        return HS_GONE;
    }
    phase_io(s, on_client_waiting);
    pending_set(s, cancel_gss,
                gss_accept_start(s->ext->gss, s->cfg->gss, m.token, m.len, s->env->auth_cache,
                                 on_gss_step, s));
    consume(s, used);
    return await_pool(s, gss_refuse, "GSS-API queue full");
}

/* The level to use for the client's request `want` among the levels
 * allowed (bits): the one asked for, else the next stronger, else the next
 * weaker but never none unless asked for. Level 3 (selective, per message)
 * is served as confidentiality. Returns -1 when none fits. */
static int gss_choose_level(uint8_t want, uint8_t allowed)
{
    int w = want > SOCKS5_GSS_CONF ? SOCKS5_GSS_CONF : want;
    for (int l = w; l <= SOCKS5_GSS_CONF; l++)
        if (allowed & (1u << l))
            return l;
    for (int l = w - 1; l >= SOCKS5_GSS_INTEGRITY; l--)
        if (allowed & (1u << l))
            return l;
    return -1;
}

/* Protection-level negotiation: the request is wrapped, or a single clear
 * byte from NEC-derived clients (a wrapped token is never one byte); the
 * answer goes back the same way. */
static int parse_gss_prot(struct session *s)
{
    struct proto_gss_msg m;
    uint8_t want, tok[256], level;
    size_t used, n = 1;
    int conf, rc = read_gss(s, SOCKS5_GSS_PROT, &m, &used);
    if (rc != HS_NEXT)
        return rc;
    int nec = m.len == 1;
    if (nec)
        want = m.token[0];
    else if (gss_conn_unwrap(s->ext->gss, m.token, m.len, tok, sizeof tok, &conf) != 1) {
        gss_refuse(s, HSF_PROTOCOL,
                   *gss_conn_error(s->ext->gss) ? gss_conn_error(s->ext->gss)
                                                : "bad protection level");
        return HS_GONE;
    } else
        want = tok[0];
    consume(s, used);
    rc = gss_choose_level(want, s->cfg->gss_levels);
    if (rc < 0) {
        gss_refuse(s, HSF_AUTH, "no protection level in common");
        return HS_GONE;
    }
    level = (uint8_t)rc;
    if (nec)
        tok[0] = level;
    else
        n = gss_conn_wrap(s->ext->gss, 0, &level, 1, tok, sizeof tok);
    if (n == 0 || send_gss(s, SOCKS5_GSS_PROT, tok, n) < 0) {
        hs_fail(s, HSF_CLOSED,
                n ? "client gone during authentication" : gss_conn_error(s->ext->gss));
        return HS_GONE;
    }
    s->ext->gss_level = level;
    phase_parse(s, level == SOCKS5_GSS_CLEAR ? parse_request : parse_gss_request);
    return HS_NEXT;
}

/* Unwraps the request message into plain (GSS_MSG_MAX bytes) and parses
 * the request at its start. Returns HS_NEXT with *n plaintext bytes of
 * which *used are the request, or HS_GONE. */
static int gss_request(struct session *s, const struct proto_gss_msg *m, uint8_t *plain,
                       struct proto_request *req, size_t *n, size_t *used)
{
    enum proto_err err;
    int conf;
    long len = gss_conn_unwrap(s->ext->gss, m->token, m->len, plain, GSS_MSG_MAX, &conf);
    if (len < 0 || (s->ext->gss_level == SOCKS5_GSS_CONF && !conf)) {
        s->fail = HSF_PROTOCOL;
        gss_bad_message(s, len < 0 ? gss_conn_error(s->ext->gss)
                                   : "unencrypted message at the confidentiality level");
        return HS_GONE;
    }
    if (!(s->ext->gss_relay = gss_relay_new(s->ext->gss, s->ext->gss_level == SOCKS5_GSS_CONF))) {
        session_fail(s, "out of memory");
        return HS_GONE;
    }
    *n = (size_t)len;
    int rc = proto_parse_request(plain, *n, req, used, &err);
    if (rc == RES_AGAIN)
        hs_fail(s, HSF_PROTOCOL, "request split across GSS-API messages");
    else if (rc == RES_ERROR)
        request_refused(s, err);
    return rc == RES_DONE ? HS_NEXT : HS_GONE;
}

/* The request in one wrapped message. What follows it (the rest of that
 * message, data for the target, and any raw bytes after it) belongs to the
 * relay. */
static int parse_gss_request(struct session *s)
{
    struct proto_gss_msg m;
    struct proto_request req;
    uint8_t *plain;
    size_t used, n, req_len;
    int rc = read_gss(s, SOCKS5_GSS_ENCAP, &m, &used);
    if (rc != HS_NEXT)
        return rc;
    if (!(plain = malloc(GSS_MSG_MAX))) {
        session_fail(s, "out of memory");
        return HS_GONE;
    }
    rc = gss_request(s, &m, plain, &req, &n, &req_len);
    if (rc == HS_NEXT) {
        consume(s, used);
        if (gss_relay_preload(s->ext->gss_relay, plain + req_len, n - req_len, s->hs->hbuf,
                              s->hs->hlen) < 0) {
            session_fail(s, "out of memory");
            rc = HS_GONE;
        }
    }
    free(plain);
    if (rc != HS_NEXT)
        return HS_GONE;
    s->hs->hlen = 0;
    return request_ready(s, req.cmd, &req.dst);
}

/* The PROXY header from a trusted load balancer names the real client,
 * which then replaces the TCP peer for everything that follows. */
static int parse_proxy(struct session *s)
{
    struct proxyproto_result r;
    const char *reason;
    size_t used;
    union addr_any real;
    enum result rc = proxyproto_parse(s->hs->hbuf, s->hs->hlen, &r, &used, &reason);
    if (rc == RES_AGAIN)
        return HS_MORE;
    if (rc == RES_ERROR) {
        hs_fail(s, HSF_PROXY, reason);
        return HS_GONE;
    }
    consume(s, used);
    if (r.local) {
        /* The balancer's own health check: a clean close, not an error. */
        session_fail(s, NULL);
        return HS_GONE;
    }
    addr_normalize((struct sockaddr *)&r.src, &real);
    if (!policy_accept(&s->pol, &real)) {
        session_fail(s, s->pol.why);
        return HS_GONE;
    }
    phase_parse(s, parse_greeting);
    return HS_NEXT;
}

/* Parses whatever the handshake buffer holds, as far as it goes. */
static int handshake_step(struct session *s)
{
    int rc;
    do
        rc = s->hs->parse(s);
    while (rc == HS_NEXT);
    return rc;
}

/* Reads handshake bytes. Returns 0, or -1 when the session was closed. */
static int handshake_read(struct session *s)
{
    /* Taken at the first byte: a connection that sends nothing costs none. */
    if (!s->hs->hbuf && !(s->hs->hbuf = bufpool_get_small(&s->env->pool))) {
        session_fail(s, "out of memory");
        return -1;
    }
    while (s->hs->hlen < hbuf_cap(s)) {
        size_t want = hbuf_cap(s) - s->hs->hlen;
        ssize_t n = read(s->relay.client.io.fd, s->hs->hbuf + s->hs->hlen, want);
        if (n > 0) {
            s->hs->hlen += (uint32_t)n;
            /* Drained (see relay.c): a new edge comes with the next bytes. */
            if ((size_t)n < want && !s->relay.client.rdhup)
                break;
            continue;
        }
        if (n == 0) {
            s->relay.client.eof = 1;
            break;
        }
        if (errno == EINTR)
            continue;
        if (errno == ECONNRESET) {
            s->relay.client.eof = 1;
            break;
        }
        if (errno != EAGAIN) {
            session_fail(s, strerror(errno));
            return -1;
        }
        break;
    }
    s->relay.client.readable = s->hs->hlen == hbuf_cap(s);
    return 0;
}

/* A handshake phase's events: read what came and parse it. A reset is read
 * like an end of file: what came before it (a balancer's health check sends
 * a PROXY header and resets) is still parsed. */
static void on_handshake_io(struct loop_io *io, unsigned events)
{
    struct session *s = container_of(io, struct session, relay.client.io);
    relay_note(&s->relay.client, events);
    handshake_continue(s);
}

/* Reads what the client sent and parses it. */
static void handshake_continue(struct session *s)
{
    int eof, rc;
    do {
        if (s->relay.client.readable && !s->relay.client.eof && handshake_read(s) < 0)
            return;
        eof = s->relay.client.eof;
        rc = handshake_step(s);
        /* A full buffer left bytes in the socket, with no edge to come: read
         * on if the phase made room (a GSS-API token grows the buffer). */
    } while (rc == HS_MORE && s->relay.client.readable && !eof && s->hs->hlen < hbuf_cap(s));
    /* A client that closed mid-handshake will never complete it. Checked
     * after parsing: a whole request followed by FIN is still served. */
    if (rc == HS_MORE && eof) {
        if (s->hs->hlen || s->greeted)
            hs_fail(s, HSF_CLOSED, "truncated handshake");
        else
            session_fail(s, NULL); /* a probe: connected and closed */
    }
}

/* Why the connection may not proceed before a byte is read, or NULL. */
static const char *refusal(struct session *s, const struct listen_spec *ln,
                           const union addr_any *peer)
{
    if (!ln->proxy_protocol)
        return policy_accept(&s->pol, peer) ? NULL : s->pol.why;
    phase_parse(s, parse_proxy);
    /* No trust list (a socket-activated listener kept across a reload that
     * dropped it) trusts nobody: rules_check_client fails closed on NULL. */
    if (!rules_check_client(s->cfg->pp_from, &peer->sa, NULL)) {
        s->fail = HSF_PROXY;
        return "PROXY protocol from an untrusted address";
    }
    return policy_handshake_begin(&s->pol) ? NULL : s->pol.why;
}

/* Unique without a shared counter: the worker's number above a count of
 * the sessions its thread has started. */
static uint64_t next_id(int worker)
{
    static _Thread_local uint64_t started;
    return ((uint64_t)(worker + 1) << 40) | ++started;
}

void session_start(struct wenv *env, int fd, const union addr_any *client,
                   const struct listen_spec *ln, unsigned lslot)
{
    union addr_any peer;
    struct session *s = calloc(1, sizeof *s);
    if (!s || !(s->hs = calloc(1, sizeof *s->hs))) {
        free(s);
        close(fd);
        fdbudget_give(1);
        env->ended(env, env->cfg);
        return;
    }
    s->env = env;
    s->cfg = env->cfg;
    addr_normalize(&client->sa, &peer);
    policy_init(&s->pol, env, s->cfg, &peer);
    s->rep = 0xff;
    s->fail = -1;
    s->hs->parse = parse_greeting;
    s->expire = on_handshake_timeout;
    s->relay.target.io.fd = -1;
    s->started_ms = loop_now(env->loop);
    s->id = next_id(env->id);
    s->lslot = (uint8_t)lslot;
    link_session(s);
    stat_inc(&env->stats.active);
    stat_inc(&env->stats.listener_active[lslot]);
    if (loop_io_add(env->loop, &s->relay.client.io, fd, LOOP_READ | LOOP_WRITE, on_handshake_io) <
        0) {
        close(fd);
        fdbudget_give(1);
        session_fail(s, "epoll_ctl failed");
        return;
    }
    const char *why = refusal(s, ln, &peer);
    if (why) {
        session_fail(s, why);
        return;
    }
    /* No read here: registering reports data that is already waiting. */
    session_arm(s, s->cfg->timeout_handshake_ms, on_handshake_timeout);
}
