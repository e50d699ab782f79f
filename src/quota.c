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
 * and the attempts still in flight. One lock for all cells: it is taken
 * twice per login, which costs a password hash (milliseconds) anyway, and it
 * makes check-and-take exact. */
struct fail_cell {
    uint32_t start, last; /* seconds modulo 2^24 */
    uint32_t count, pending;
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

static void cells_of(const struct sockaddr *ip, unsigned v6_prefix, struct fail_cell *c[ROWS])
{
    uint8_t b[16];
    size_t n = ip_bytes(ip, v6_prefix, b);
    for (int r = 0; r < ROWS; r++)
        c[r] = &fails.cell[r][hash_sip(fails.key[r], b, n) & (COLS / 4 - 1)];
}

int quota_auth_attempt(const struct sockaddr *ip, unsigned v6_prefix, uint32_t limit,
                       uint32_t cooldown_ms, uint64_t now_ms)
{
    struct fail_cell *c[ROWS];
    cells_of(ip, v6_prefix, c);
    pthread_mutex_lock(&fails.mu);
    /* Counted even without a limit: a reload may bring one in. */
    int ok = !blocked(c, limit, cooldown_ms, secs(now_ms));
    for (int r = 0; ok && r < ROWS; r++)
        c[r]->pending++;
    pthread_mutex_unlock(&fails.mu);
    return ok;
}

void quota_auth_settle(const struct sockaddr *ip, unsigned v6_prefix, int failed,
                       uint32_t window_ms, uint64_t now_ms)
{
    struct fail_cell *c[ROWS];
    uint32_t now = secs(now_ms);
    cells_of(ip, v6_prefix, c);
    pthread_mutex_lock(&fails.mu);
    for (int r = 0; r < ROWS; r++) {
        if (c[r]->pending)
            c[r]->pending--;
        if (!failed)
            continue;
        if (c[r]->count == 0 || ago(now, c[r]->start) * 1000ull >= window_ms) {
            c[r]->start = now;
            c[r]->count = 0;
        }
        c[r]->last = now;
        if (c[r]->count < UINT32_MAX)
            c[r]->count++;
    }
    pthread_mutex_unlock(&fails.mu);
}
