/* The SOCKS5 session state machine (see session.h). */
#include "session.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "auth.h"
#include "bind.h"
#include "config.h"
#include "dial.h"
#include "log.h"
#include "policy.h"
#include "proto.h"
#include "proxyproto.h"
#include "ratelimit.h"
#include "resolve.h"
#include "rules.h"
#include "stats.h"
#include "udp.h"
#include "worker.h"

static void on_client(struct loop_io *io, unsigned events);
static void on_target(struct loop_io *io, unsigned events);
static void handshake_continue(struct session *s);
static void control_read(struct session *s);

/* What a handshake step did. After HS_GONE the session must not be touched:
 * it was closed, or handed on to a callback that owns it now. */
enum { HS_GONE = -1, HS_MORE = 0, HS_NEXT = 1, HS_WAIT = 2 };

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

/* A connection closed without a byte is a probe (a load balancer's health
 * check), not a session: counted, not logged. */
static int is_probe(const struct session *s)
{
    return s->state <= S_GREETING && s->hlen == 0 && !s->why;
}

static void access_log(const struct session *s)
{
    char client[ADDR_STRLEN], dst[300], peer[ADDR_STRLEN], rep[4] = "-", up[24], down[24], ms[24];
    char dg_up[24], dg_down[24], dropped[24], rule[300];
    const char *kv[2 * 14];
    size_t n = 0;
    if (!log_access_enabled() || is_probe(s))
        return;
    if (s->rep != 0xff)
        snprintf(rep, sizeof rep, "%u", s->rep);
    snprintf(up, sizeof up, "%llu", (unsigned long long)s->relay.up.bytes);
    snprintf(down, sizeof down, "%llu", (unsigned long long)s->relay.down.bytes);
    snprintf(ms, sizeof ms, "%llu", (unsigned long long)(loop_now(s->w->loop) - s->started_ms));
#define KV(k, v) (kv[n++] = (k), kv[n++] = (v))
    KV("client", addr_str(&s->client.sa, client, sizeof client));
    KV("user", s->user ? s->user : "-");
    KV("cmd", cmd_name(s->cmd));
    KV("dst", s->state >= S_RESOLVE ? dst_str(s, dst, sizeof dst) : "-");
    KV("addr", addr_str(&s->peer.sa, peer, sizeof peer));
    KV("rep", rep);
    KV("up", up);
    KV("down", down);
    if (s->udp) {
        const struct udp_counts *u = udp_counts(s->udp);
        snprintf(dg_up, sizeof dg_up, "%llu", (unsigned long long)u->dgrams_up);
        snprintf(dg_down, sizeof dg_down, "%llu", (unsigned long long)u->dgrams_down);
        snprintf(dropped, sizeof dropped, "%llu", (unsigned long long)u->dropped);
        KV("dgrams_up", dg_up);
        KV("dgrams_down", dg_down);
        KV("dropped", dropped);
    }
    KV("ms", ms);
    if (s->rule_file) {
        snprintf(rule, sizeof rule, "%s:%d", s->rule_file, s->rule_line);
        KV("rule", rule);
    }
    if (s->why)
        KV("error", s->why);
#undef KV
    log_access(kv, n / 2);
}

static void cancel_pending(struct session *s)
{
    if (!s->pending)
        return;
    if (s->state == S_AUTH_WAIT)
        auth_cancel(s->pending);
    else if (s->state == S_RESOLVE)
        resolve_cancel(s->pending);
    else if (s->state == S_DIAL)
        dial_cancel(s->pending);
    s->pending = NULL;
}

static void close_side(struct session *s, struct relay_side *side)
{
    if (side->io.fd >= 0)
        loop_io_close(s->w->loop, &side->io);
}

static void count_end(const struct session *s)
{
    struct stats *st = &s->w->stats;
    if (is_probe(s))
        stat_inc(&st->probes);
    else if (s->fail >= 0)
        stat_inc(&st->handshake_fail[s->fail]);
    else
        stat_inc(&st->sessions[s->cmd <= 3 ? s->cmd : 0][s->rep <= 8 ? s->rep : 9]);
    stat_add(&st->active, (uint64_t)-1);
}

void session_close(struct session *s)
{
    struct worker *w = s->w;
    cancel_pending(s);
    access_log(s);
    count_end(s);
    policy_release(s);
    if (s->rate) {
        loop_timer_cancel(w->loop, &s->rate->timer);
        free(s->rate);
    }
    if (s->udp)
        udp_close(s->udp);
    loop_timer_cancel(w->loop, &s->timer);
    loop_defer_cancel(w->loop, &s->more);
    close_side(s, &s->relay.client);
    close_side(s, &s->relay.target);
    relay_release(&s->relay, &w->pool);
    bufpool_put_small(&w->pool, s->hbuf);
    worker_unlink(w, s);
    config_unref(s->cfg);
    free(s->user);
    free(s->dst_name);
    free(s);
    atomic_fetch_sub_explicit(&g_sessions, 1, memory_order_relaxed);
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

/* Ends a session whose handshake failed, counted by reason. */
static void hs_fail(struct session *s, enum hs_fail reason, const char *why)
{
    s->fail = (int8_t)reason;
    session_fail(s, why);
}

/* Sends reply `rep` (with BND = bnd or zeros) and, unless it is success,
 * closes. Returns 0 when the session goes on. */
int session_reply(struct session *s, uint8_t rep, const struct sockaddr *bnd, const char *why)
{
    uint8_t msg[PROTO_REPLY_MAX];
    size_t n = proto_encode_reply(msg, sizeof msg, rep, bnd);
    s->rep = rep;
    if (send_small(s, msg, n) < 0) {
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

static void on_timeout(struct loop_timer *t)
{
    struct session *s = container_of(t, struct session, timer);
    uint32_t idle = s->state == S_UDP ? s->cfg->timeout_udp_ms : s->cfg->timeout_idle_ms;
    if (s->state == S_RELAY || s->state == S_UDP) {
        /* Idle time is checked lazily: activity only stamps active_ms. */
        uint64_t quiet = loop_now(s->w->loop) - s->active_ms;
        if (quiet < idle) {
            loop_timer_arm(s->w->loop, t, idle - quiet, on_timeout);
            return;
        }
        session_fail(s, "idle timeout");
        return;
    }
    if (s->state == S_BIND_WAIT) {
        session_reply(s, SOCKS5_REP_TTL_EXPIRED, NULL, "no connection to the BIND port in time");
        return;
    }
    if (s->state == S_RESOLVE || s->state == S_DIAL) {
        cancel_pending(s);
        session_reply(s,
                      s->state == S_RESOLVE ? SOCKS5_REP_HOST_UNREACHABLE : SOCKS5_REP_TTL_EXPIRED,
                      NULL, s->state == S_RESOLVE ? "resolve timeout" : "connect timeout");
        return;
    }
    hs_fail(s, HSF_TIMEOUT, "handshake timeout");
}

void session_arm(struct session *s, uint32_t ms)
{
    if (loop_timer_arm(s->w->loop, &s->timer, ms, on_timeout) < 0)
        log_error("session: cannot arm timer: out of memory");
}

/* ---------------- relay ---------------- */

static void pump(struct session *s);

static void on_more(struct loop_defer *d)
{
    pump(container_of(d, struct session, more));
}

static void on_throttle_end(struct loop_timer *t)
{
    pump(container_of(t, struct session_rate, timer)->s);
}

static void pump(struct session *s)
{
    unsigned flags = 0;
    int err = 0;
    uint64_t up = s->relay.up.bytes, down = s->relay.down.bytes;
    int rc = relay_pump(&s->relay, &s->w->pool, loop_now(s->w->loop), &flags, &err);
    stat_add(&s->w->stats.bytes_up, s->relay.up.bytes - up);
    stat_add(&s->w->stats.bytes_down, s->relay.down.bytes - down);
    if (rc == RELAY_ERROR) {
        /* A reset is how many peers end a connection: not worth an error. */
        session_fail(s, err == ECONNRESET || err == EPIPE ? NULL : strerror(err));
        return;
    }
    if (rc == RELAY_DONE) {
        session_fail(s, NULL);
        return;
    }
    if (flags & RELAY_MOVED)
        s->active_ms = loop_now(s->w->loop);
    if (flags & RELAY_MORE)
        loop_defer(s->w->loop, &s->more, on_more);
    if ((flags & RELAY_THROTTLED) && !loop_timer_armed(&s->rate->timer))
        loop_timer_arm(s->w->loop, &s->rate->timer,
                       THROTTLE_TICK_MS + (unsigned)rand_r(&s->rate->seed) % THROTTLE_TICK_MS,
                       on_throttle_end);
}

/* A user with a rate limit relays through the user's shared buckets, one
 * per direction. Returns 0 or -1. */
static int setup_rate(struct session *s)
{
    uint64_t rate = config_rate_limit(s->cfg, s->user);
    uint64_t now = loop_now(s->w->loop);
    struct ratelimit_user *u;
    if (!rate)
        return 0;
    if (!(u = ratelimit_get(s->user, rate, now)) || !(s->rate = calloc(1, sizeof *s->rate)))
        return -1;
    s->rate->s = s;
    s->rate->seed = (unsigned)(uintptr_t)s ^ (unsigned)now;
    s->relay.up.bucket = ratelimit_up(u);
    s->relay.down.bucket = ratelimit_down(u);
    return 0;
}

static void on_target(struct loop_io *io, unsigned events)
{
    struct session *s = container_of(io, struct session, relay.target.io);
    relay_note(&s->relay.target, events);
    pump(s);
}

int session_attach_target(struct session *s, int fd)
{
    if (loop_io_add(s->w->loop, &s->relay.target.io, fd, LOOP_READ | LOOP_WRITE, on_target) < 0) {
        close(fd);
        return -1;
    }
    return 0;
}

void session_relay(struct session *s)
{
    s->state = S_RELAY;
    if (setup_rate(s) < 0) {
        session_fail(s, "out of memory");
        return;
    }
    /* TCP_NODELAY is already on: inherited from the listening sockets,
     * set before connect on outbound ones. */
    /* Bytes the client sent after its request are the first to relay; they
     * move to a relay buffer (the handshake one is too small to read into). */
    if (s->relay.up.off < s->hlen) {
        if (!(s->relay.up.buf = bufpool_get(&s->w->pool))) {
            session_fail(s, "out of memory");
            return;
        }
        s->relay.up.len = s->hlen - s->relay.up.off;
        memcpy(s->relay.up.buf, s->hbuf + s->relay.up.off, s->relay.up.len);
    }
    s->relay.up.off = 0;
    bufpool_put_small(&s->w->pool, s->hbuf);
    s->hbuf = NULL;
    s->hlen = 0;
    s->active_ms = loop_now(s->w->loop);
    session_arm(s, s->cfg->timeout_idle_ms);
    pump(s);
}

/* ---------------- CONNECT ---------------- */

static void on_dialed(void *owner, int fd, struct loop_io *io, int err, const union addr_any *peer)
{
    struct session *s = owner;
    union addr_any local;
    socklen_t len = sizeof local;
    s->pending = NULL;
    if (fd < 0) {
        session_reply(s, rep_from_errno(err), NULL, strerror(err));
        return;
    }
    stats_observe(&s->w->stats.connect, loop_now(s->w->loop) - s->active_ms);
    s->peer = *peer;
    if (loop_io_move(s->w->loop, io, &s->relay.target.io, LOOP_READ | LOOP_WRITE, on_target) < 0) {
        close(fd);
        session_reply(s, SOCKS5_REP_GENERAL_FAILURE, NULL, "epoll_ctl failed");
        return;
    }
    s->relay.target.writable = 1;
    if (getsockname(fd, &local.sa, &len) < 0)
        memset(&local, 0, sizeof local);
    if (session_reply(s, SOCKS5_REP_SUCCEEDED, &local.sa, NULL) == 0)
        session_relay(s);
}

/* Dials the addresses the rules allow; a name that resolves only to refused
 * addresses is refused as a whole. */
static void dial_addrs(struct session *s, const union addr_any *all, size_t count)
{
    union addr_any addrs[RESOLVE_MAX_ADDRS];
    size_t n = 0;
    int err;
    for (size_t i = 0; i < count && n < RESOLVE_MAX_ADDRS; i++)
        if (policy_address(s, SOCKS5_CMD_CONNECT, &all[i].sa, s->dst_name))
            addrs[n++] = all[i];
    if (n == 0) {
        stat_inc(&s->w->stats.refused_rule);
        session_reply(s, SOCKS5_REP_NOT_ALLOWED, NULL, "denied by rule");
        return;
    }
    s->rule_file = NULL;
    s->rule_line = 0;
    s->active_ms = loop_now(s->w->loop);
    s->state = S_DIAL;
    s->pending = dial_start(s->w->loop, addrs, n, s->cfg->timeout_connect_ms, on_dialed, s, &err);
    if (!s->pending)
        session_reply(s, rep_from_errno(err), NULL, strerror(err));
}

static void on_resolved(void *owner, int status, const union addr_any *addrs, size_t n)
{
    struct session *s = owner;
    s->pending = NULL;
    stats_observe(&s->w->stats.dns, loop_now(s->w->loop) - s->active_ms);
    if (status != RESOLVE_OK) {
        stat_inc(&s->w->stats.dns_failures);
        session_reply(s, SOCKS5_REP_HOST_UNREACHABLE, NULL,
                      status == RESOLVE_NOTFOUND ? "name not found" : "resolver failed");
        return;
    }
    dial_addrs(s, addrs, n);
}

static void do_connect(struct session *s)
{
    union addr_any addrs[RESOLVE_MAX_ADDRS];
    size_t n = 0;
    session_arm(s, s->cfg->timeout_connect_ms);
    if (!s->dst_name) {
        dial_addrs(s, &s->dst, 1);
        return;
    }
    if (resolve_literal(s->dst_name, addr_port(&s->dst.sa), addrs, &n)) {
        dial_addrs(s, addrs, n);
        return;
    }
    s->state = S_RESOLVE;
    s->active_ms = loop_now(s->w->loop);
    s->pending = resolve_start(s->w->resolver, s->dst_name, addr_port(&s->dst.sa), on_resolved, s);
    if (!s->pending)
        session_reply(s, SOCKS5_REP_GENERAL_FAILURE, NULL, "out of memory");
}

/* ---------------- handshake ---------------- */

/* Drops the first n bytes of the handshake buffer. */
static void consume(struct session *s, size_t n)
{
    memmove(s->hbuf, s->hbuf + n, s->hlen - n);
    s->hlen -= (uint32_t)n;
}

static int on_greeting(struct session *s)
{
    struct proto_greeting g;
    enum proto_err err;
    size_t used;
    uint8_t msg[2];
    int rc = proto_parse_greeting(s->hbuf, s->hlen, &g, &used, &err);
    if (rc == PROTO_NEED_MORE)
        return HS_MORE;
    if (rc == PROTO_ERROR) {
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
    s->state = s->method == SOCKS5_METHOD_USERPASS ? S_AUTH : S_REQUEST;
    return HS_NEXT;
}

static void auth_result(struct session *s, int ok)
{
    uint8_t msg[2];
    stat_inc(ok ? &s->w->stats.auth_ok : &s->w->stats.auth_fail);
    if (!ok)
        policy_auth_failed(s);
    if (send_small(s, msg, proto_encode_userpass_reply(msg, sizeof msg, ok ? 0 : 1)) < 0) {
        hs_fail(s, HSF_CLOSED, "client gone during authentication");
        return;
    }
    if (!ok) {
        hs_fail(s, HSF_AUTH, "authentication failed");
        return;
    }
    s->state = S_REQUEST;
    handshake_continue(s);
}

static void on_verified(void *owner, int ok)
{
    struct session *s = owner;
    s->pending = NULL;
    auth_result(s, ok);
}

static int on_auth(struct session *s)
{
    struct proto_userpass up;
    enum proto_err err;
    size_t used;
    int rc = proto_parse_userpass(s->hbuf, s->hlen, &up, &used, &err);
    if (rc == PROTO_NEED_MORE)
        return HS_MORE;
    if (rc == PROTO_ERROR) {
        uint8_t msg[2];
        send_small(s, msg, proto_encode_userpass_reply(msg, sizeof msg, 1));
        hs_fail(s, HSF_PROTOCOL, proto_err_str(err));
        return HS_GONE;
    }
    auth_wipe(s->hbuf, used);
    consume(s, used);
    if (policy_auth_blocked(s)) {
        uint8_t msg[2];
        auth_wipe(up.pass, sizeof up.pass);
        send_small(s, msg, proto_encode_userpass_reply(msg, sizeof msg, 1));
        hs_fail(s, HSF_THROTTLED, "too many failed logins from this address");
        return HS_GONE;
    }
    s->user = strdup(up.user);
    const char *hash = users_find(s->cfg->users, up.user);
    if (!s->user) {
        auth_wipe(up.pass, sizeof up.pass);
        session_fail(s, "out of memory");
        return HS_GONE;
    }
    if (hash && auth_cache_hit(s->w->auth_cache, up.user, hash, up.pass)) {
        auth_wipe(up.pass, sizeof up.pass);
        auth_result(s, 1);
        return HS_GONE; /* auth_result continued (or ended) the handshake itself */
    }
    s->state = S_AUTH_WAIT;
    s->pending =
        auth_verify(s->cfg->users, up.user, up.pass, s->w->auth_cache, &s->w->mbox, on_verified, s);
    auth_wipe(up.pass, sizeof up.pass);
    if (!s->pending) {
        session_fail(s, "out of memory");
        return HS_GONE;
    }
    return HS_WAIT;
}

static void start_udp(struct session *s, const struct proto_addr *hint)
{
    union addr_any bnd;
    uint8_t rep;
    const char *why;
    s->udp = udp_open(s, hint, &bnd, &rep, &why);
    if (!s->udp) {
        session_reply(s, rep, NULL, why);
        return;
    }
    s->state = S_UDP;
    if (session_reply(s, SOCKS5_REP_SUCCEEDED, &bnd.sa, NULL) == 0) {
        s->active_ms = loop_now(s->w->loop);
        session_arm(s, s->cfg->timeout_udp_ms);
    }
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

static int on_request(struct session *s)
{
    struct proto_request req;
    enum proto_err err;
    size_t used;
    int rc = proto_parse_request(s->hbuf, s->hlen, &req, &used, &err);
    if (rc == PROTO_NEED_MORE)
        return HS_MORE;
    if (rc == PROTO_ERROR) {
        int rep = proto_err_rep(err);
        s->fail = HSF_PROTOCOL;
        if (rep < 0)
            session_fail(s, proto_err_str(err));
        else
            session_reply(s, (uint8_t)rep, NULL, proto_err_str(err));
        return HS_GONE;
    }
    /* What stays in hbuf after the request is early data for the target. */
    s->relay.up.off = (uint32_t)used;
    s->cmd = req.cmd;
    if (take_destination(s, &req.dst) < 0) {
        session_reply(s, SOCKS5_REP_GENERAL_FAILURE, NULL, "out of memory");
        return HS_GONE;
    }
    s->state = S_RESOLVE; /* the destination is known from here on (for the log) */
    policy_handshake_done(s);
    if (policy_request(s) == POLICY_DENY) {
        session_reply(s, SOCKS5_REP_NOT_ALLOWED, NULL, s->why);
        return HS_GONE;
    }
    if (req.cmd == SOCKS5_CMD_CONNECT)
        do_connect(s);
    else if (req.cmd == SOCKS5_CMD_BIND)
        bind_start(s);
    else
        start_udp(s, &req.dst);
    return HS_GONE; /* the handshake is over either way */
}

/* The PROXY header from a trusted load balancer names the real client,
 * which then replaces the TCP peer for everything that follows. */
static int on_proxy(struct session *s)
{
    struct proxyproto_result r;
    const char *reason;
    size_t used;
    union addr_any real;
    int rc = proxyproto_parse(s->hbuf, s->hlen, &r, &used, &reason);
    if (rc == PROXYPROTO_NEED_MORE)
        return HS_MORE;
    if (rc == PROXYPROTO_ERROR) {
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
    s->client = real;
    if (!policy_accept(s)) {
        session_close(s);
        return HS_GONE;
    }
    s->state = S_GREETING;
    return HS_NEXT;
}

/* Parses whatever the handshake buffer holds, as far as it goes. */
static int handshake_step(struct session *s)
{
    int rc;
    do {
        switch (s->state) {
        case S_PROXY:
            rc = on_proxy(s);
            break;
        case S_GREETING:
            rc = on_greeting(s);
            break;
        case S_AUTH:
            rc = on_auth(s);
            break;
        case S_REQUEST:
            rc = on_request(s);
            break;
        default:
            return HS_WAIT;
        }
    } while (rc == HS_NEXT);
    return rc;
}

/* Reads handshake bytes. Returns 0, or -1 when the session was closed. */
static int handshake_read(struct session *s)
{
    /* Taken at the first byte: a connection that sends nothing costs none. */
    if (!s->hbuf && !(s->hbuf = bufpool_get_small(&s->w->pool))) {
        session_fail(s, "out of memory");
        return -1;
    }
    while (s->hlen < BUFPOOL_SMALL) {
        size_t want = BUFPOOL_SMALL - s->hlen;
        ssize_t n = read(s->relay.client.io.fd, s->hbuf + s->hlen, want);
        if (n > 0) {
            s->hlen += (uint32_t)n;
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
    s->relay.client.readable = s->hlen == BUFPOOL_SMALL;
    return 0;
}

static void on_client(struct loop_io *io, unsigned events)
{
    struct session *s = container_of(io, struct session, relay.client.io);
    relay_note(&s->relay.client, events);
    if (s->state == S_RELAY) {
        pump(s);
        return;
    }
    /* A reset in the handshake is read like an end of file: what came
     * before it (a balancer's health check sends a PROXY header and resets)
     * is still parsed. Later, it ends the session. */
    if ((events & LOOP_HUP) && (s->state > S_REQUEST || s->state == S_AUTH_WAIT)) {
        session_fail(s, "client gone");
        return;
    }
    if (s->state == S_UDP) {
        control_read(s);
        return;
    }
    if (s->state == S_BIND_WAIT) {
        /* Bytes sent before the peer arrives stay queued for the relay;
         * only the client's end matters now. */
        if (events & LOOP_RDHUP)
            session_fail(s, NULL);
        return;
    }
    if (s->state > S_REQUEST || s->state == S_AUTH_WAIT)
        return; /* the bytes wait in the socket until the relay starts */
    handshake_continue(s);
}

/* The control connection of a UDP association carries nothing more; its
 * end (FIN or reset) ends the session. */
static void control_read(struct session *s)
{
    uint8_t sink[512];
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

/* Reads what the client sent and parses it. */
static void handshake_continue(struct session *s)
{
    if (s->relay.client.readable && !s->relay.client.eof && handshake_read(s) < 0)
        return;
    int eof = s->relay.client.eof;
    /* A client that closed mid-handshake will never complete it. Checked
     * after parsing: a whole request followed by FIN is still served. */
    if (handshake_step(s) == HS_MORE && eof) {
        if (s->hlen || s->state > S_GREETING)
            hs_fail(s, HSF_CLOSED, "truncated handshake");
        else
            session_fail(s, NULL); /* a probe: connected and closed */
    }
}

/* Whether the connection may proceed before a byte is read. */
static int admit(struct session *s, const struct listen_spec *ln)
{
    if (!ln->proxy_protocol)
        return policy_accept(s);
    s->state = S_PROXY;
    if (s->cfg->pp_from && !rules_check_client(s->cfg->pp_from, &s->client.sa, NULL)) {
        s->fail = HSF_PROXY;
        s->why = "PROXY protocol from an untrusted address";
        return 0;
    }
    return 1;
}

void session_start(struct worker *w, int fd, const union addr_any *client,
                   const struct listen_spec *ln)
{
    struct session *s = calloc(1, sizeof *s);
    if (!s) {
        close(fd);
        atomic_fetch_sub_explicit(&g_sessions, 1, memory_order_relaxed);
        return;
    }
    s->w = w;
    s->cfg = config_ref(w->cfg);
    addr_normalize(&client->sa, &s->client);
    s->rep = 0xff;
    s->fail = -1;
    s->state = S_GREETING;
    s->relay.target.io.fd = -1;
    s->started_ms = loop_now(w->loop);
    worker_link(w, s);
    stat_inc(&w->stats.active);
    if (loop_io_add(w->loop, &s->relay.client.io, fd, LOOP_READ | LOOP_WRITE, on_client) < 0) {
        close(fd);
        s->relay.client.io.fd = -1;
        session_fail(s, "epoll_ctl failed");
        return;
    }
    if (!admit(s, ln)) {
        session_close(s);
        return;
    }
    /* No read here: registering reports data that is already waiting. */
    session_arm(s, s->cfg->timeout_handshake_ms);
}
