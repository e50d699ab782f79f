#include "quota.h"

#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include "hash.h"
#include "lease.h"

#define ROWS 2
#define COLS (1u << 18) /* per row: 1 MiB of counters each, touched pages only */

struct sketch {
    uint64_t key[ROWS][2];
    _Atomic uint32_t cell[ROWS][COLS];
};

static struct sketch by_ip, by_user;
/* Sessions in the handshake: leased to each worker thread (lease.h), so a
 * handshake begins and ends without a shared read-modify-write except once
 * per batch. A session begins and ends its handshake on one thread. */
static struct lease_pool in_handshake;
static _Thread_local struct lease handshakes;

/* Login attempts: per cell, the failures in the current window, when the
 * window started / the last failure happened (seconds, coarse on purpose),
 * the attempts still in flight, and the address of the last failure (so a
 * reload can forget the cells of addresses it no longer throttles). A cell
 * counts either an (address, user) pair or an address alone. One lock for
 * all cells: it is taken twice per login, which costs a password hash
 * (milliseconds) anyway, and it makes check-and-take exact. */
struct fail_cell {
    uint32_t start, last; /* seconds modulo 2^24 */
    uint32_t count, pending;
    uint8_t ip[16], iplen, per_user;
};
static struct {
    pthread_mutex_t mu;
    uint64_t key[ROWS][2];
    struct fail_cell cell[ROWS][COLS / 4];
} fails = {.mu = PTHREAD_MUTEX_INITIALIZER};

int quota_init(void)
{
    for (int r = 0; r < ROWS; r++)
        if (hash_random_key(by_ip.key[r]) < 0 || hash_random_key(by_user.key[r]) < 0 ||
            hash_random_key(fails.key[r]) < 0)
            return -1;
    return 0;
}

/* The key of a client: its IP bytes (ports do not matter; v4-mapped is v4),
 * an IPv6 address cut to its first v6_prefix bits. */
static size_t ip_bytes(const struct sockaddr *sa, unsigned v6_prefix, uint8_t out[16])
{
    union addr_any a;
    addr_normalize(sa, &a);
    if (a.sa.sa_family == AF_INET) {
        memcpy(out, &a.in4.sin_addr, 4);
        return 4;
    }
    memcpy(out, &a.in6.sin6_addr, 16);
    for (unsigned bit = v6_prefix < 128 ? v6_prefix : 128; bit < 128; bit++)
        out[bit / 8] &= (uint8_t) ~(0x80u >> (bit % 8));
    return 16;
}

static int sketch_take(struct sketch *s, const void *k, size_t len, uint32_t limit)
{
    _Atomic uint32_t *c[ROWS];
    uint32_t min = UINT32_MAX;
    for (int r = 0; r < ROWS; r++) {
        c[r] = &s->cell[r][hash_sip(s->key[r], k, len) & (COLS - 1)];
        uint32_t v = atomic_fetch_add_explicit(c[r], 1, memory_order_relaxed) + 1;
        min = v < min ? v : min;
    }
    if (limit == 0 || min <= limit)
        return 1;
    for (int r = 0; r < ROWS; r++)
        atomic_fetch_sub_explicit(c[r], 1, memory_order_relaxed);
    return 0;
}

static void sketch_release(struct sketch *s, const void *k, size_t len)
{
    for (int r = 0; r < ROWS; r++)
        atomic_fetch_sub_explicit(&s->cell[r][hash_sip(s->key[r], k, len) & (COLS - 1)], 1,
                                  memory_order_relaxed);
}

int quota_ip_take(const struct sockaddr *ip, unsigned v6_prefix, uint32_t limit)
{
    uint8_t b[16];
    size_t n = ip_bytes(ip, v6_prefix, b);
    /* Counted even without a limit: a reload may bring one in, and the
     * release at the end must match. */
    return sketch_take(&by_ip, b, n, limit);
}

void quota_ip_release(const struct sockaddr *ip, unsigned v6_prefix)
{
    uint8_t b[16];
    size_t n = ip_bytes(ip, v6_prefix, b);
    sketch_release(&by_ip, b, n);
}

int quota_user_take(const char *user, uint32_t limit)
{
    return sketch_take(&by_user, user, strlen(user), limit);
}

void quota_user_release(const char *user)
{
    sketch_release(&by_user, user, strlen(user));
}

/* The threads the handshake batch is sized for (quota does not know the
 * worker count): up to this many keep under 1/128 of the limit unused;
 * more threads may keep proportionally more. */
#define HANDSHAKE_HOLDERS 16

int quota_handshake_take(uint32_t limit)
{
    uint64_t lim = limit ? limit : UINT64_MAX;
    return lease_take(&in_handshake, &handshakes, 1, lim, lease_batch(lim, HANDSHAKE_HOLDERS));
}

void quota_handshake_release(uint32_t limit)
{
    uint64_t lim = limit ? limit : UINT64_MAX;
    lease_give(&in_handshake, &handshakes, 1, lease_batch(lim, HANDSHAKE_HOLDERS));
}

/* Seconds modulo 2^24 (194 days): differences stay right across the wrap. */
static uint32_t secs(uint64_t now_ms)
{
    return (uint32_t)(now_ms / 1000) & 0xffffff;
}

static uint32_t ago(uint32_t now, uint32_t then)
{
    return (now - then) & 0xffffff;
}

/* Blocked only if every row says so: a row shared with an attacker alone
 * does not lock an innocent client out. Called with fails.mu held. */
static int blocked(struct fail_cell *c[ROWS], uint32_t limit, uint32_t cooldown_ms, uint32_t now)
{
    if (limit == 0)
        return 0;
    for (int r = 0; r < ROWS; r++)
        if ((uint64_t)c[r]->count + c[r]->pending < limit ||
            (c[r]->pending == 0 && ago(now, c[r]->last) * 1000ull >= cooldown_ms))
            return 0;
    return 1;
}

/* The cells of a login: [0] its (address, user) pair, [1] its address. A
 * pair's key is the address bytes, a 0 byte and the name, so it never
 * equals an address's. */
struct login_cells {
    struct fail_cell *c[2][ROWS];
    uint8_t ip[16];
    size_t iplen;
};

static void cells_of(const struct sockaddr *ip, const char *user, unsigned v6_prefix,
                     struct login_cells *lc)
{
    uint8_t key[16 + 1 + 256];
    size_t ulen = user ? strnlen(user, 255) : 0;
    lc->iplen = ip_bytes(ip, v6_prefix, lc->ip);
    memcpy(key, lc->ip, lc->iplen);
    key[lc->iplen] = 0;
    memcpy(key + lc->iplen + 1, user ? user : "", ulen);
    for (int r = 0; r < ROWS; r++) {
        size_t n = lc->iplen + 1 + ulen;
        lc->c[0][r] = &fails.cell[r][hash_sip(fails.key[r], key, n) & (COLS / 4 - 1)];
        lc->c[1][r] = &fails.cell[r][hash_sip(fails.key[r], key, lc->iplen) & (COLS / 4 - 1)];
    }
}

int quota_auth_attempt(const struct sockaddr *ip, const char *user, const struct quota_login *q,
                       uint64_t now_ms)
{
    struct login_cells lc;
    uint32_t now = secs(now_ms);
    cells_of(ip, user, q->v6_prefix, &lc);
    pthread_mutex_lock(&fails.mu);
    /* Counted even without a limit: a reload may bring one in. */
    int rc = blocked(lc.c[0], q->limit, q->cooldown_ms, now)           ? 0
             : blocked(lc.c[1], q->address_limit, q->cooldown_ms, now) ? -1
                                                                       : 1;
    for (int k = 0; rc == 1 && k < 2; k++)
        for (int r = 0; r < ROWS; r++)
            lc.c[k][r]->pending++;
    pthread_mutex_unlock(&fails.mu);
    return rc;
}

static void settle_cell(struct fail_cell *c, const struct login_cells *lc, int per_user, int failed,
                        uint32_t window_ms, uint32_t now)
{
    if (c->pending)
        c->pending--;
    if (!failed)
        return;
    if (c->count == 0 || ago(now, c->start) * 1000ull >= window_ms) {
        c->start = now;
        c->count = 0;
    }
    c->last = now;
    if (c->count < UINT32_MAX)
        c->count++;
    memcpy(c->ip, lc->ip, lc->iplen);
    c->iplen = (uint8_t)lc->iplen;
    c->per_user = (uint8_t)per_user;
}

void quota_auth_settle(const struct sockaddr *ip, const char *user, const struct quota_login *q,
                       int failed, uint64_t now_ms)
{
    struct login_cells lc;
    uint32_t now = secs(now_ms);
    cells_of(ip, user, q->v6_prefix, &lc);
    pthread_mutex_lock(&fails.mu);
    for (int k = 0; k < 2; k++)
        for (int r = 0; r < ROWS; r++)
            settle_cell(lc.c[k][r], &lc, k == 0, failed, q->window_ms, now);
    pthread_mutex_unlock(&fails.mu);
}

/* The address a cell last failed from, as a sockaddr. */
static void cell_addr(const struct fail_cell *c, union addr_any *a)
{
    memset(a, 0, sizeof *a);
    if (c->iplen == 4) {
        a->in4.sin_family = AF_INET;
        memcpy(&a->in4.sin_addr, c->ip, 4);
    } else {
        a->in6.sin6_family = AF_INET6;
        memcpy(&a->in6.sin6_addr, c->ip, 16);
    }
}

size_t quota_auth_forget(int (*throttled)(const struct sockaddr *ip, int per_user, void *ctx),
                         void *ctx)
{
    size_t n = 0;
    union addr_any a;
    pthread_mutex_lock(&fails.mu);
    for (int r = 0; r < ROWS; r++)
        for (size_t i = 0; i < COLS / 4; i++) {
            struct fail_cell *c = &fails.cell[r][i];
            if (c->count == 0 || c->iplen == 0)
                continue;
            cell_addr(c, &a);
            if (throttled(&a.sa, c->per_user, ctx))
                continue;
            /* Attempts in flight still settle here. */
            c->count = 0;
            n++;
        }
    pthread_mutex_unlock(&fails.mu);
    return n;
}
