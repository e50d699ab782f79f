#include "quota.h"

#include <stdatomic.h>
#include <string.h>

#include "hash.h"

#define ROWS 2
#define COLS (1u << 18) /* per row: 1 MiB of counters each, touched pages only */

struct sketch {
    uint64_t key[ROWS][2];
    _Atomic uint32_t cell[ROWS][COLS];
};

static struct sketch by_ip, by_user;
static _Atomic uint32_t in_handshake;

/* Failed logins: per cell, the failures in the current window and when the
 * window started / the last failure happened (seconds, coarse on purpose). */
struct fail_cell {
    _Atomic uint64_t word; /* window start s (24 bits) | last s (24 bits) | count (16 bits) */
};
static struct {
    uint64_t key[ROWS][2];
    struct fail_cell cell[ROWS][COLS / 4];
} fails;

int quota_init(void)
{
    for (int r = 0; r < ROWS; r++)
        if (hash_random_key(by_ip.key[r]) < 0 || hash_random_key(by_user.key[r]) < 0 ||
            hash_random_key(fails.key[r]) < 0)
            return -1;
    return 0;
}

/* The IP bytes only (ports do not matter; v4-mapped is v4). */
static size_t ip_bytes(const struct sockaddr *sa, uint8_t out[16])
{
    union addr_any a;
    addr_normalize(sa, &a);
    if (a.sa.sa_family == AF_INET) {
        memcpy(out, &a.in4.sin_addr, 4);
        return 4;
    }
    memcpy(out, &a.in6.sin6_addr, 16);
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

int quota_ip_take(const struct sockaddr *ip, uint32_t limit)
{
    uint8_t b[16];
    size_t n = ip_bytes(ip, b);
    /* Counted even without a limit: a reload may bring one in, and the
     * release at the end must match. */
    return sketch_take(&by_ip, b, n, limit);
}

void quota_ip_release(const struct sockaddr *ip)
{
    uint8_t b[16];
    size_t n = ip_bytes(ip, b);
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

int quota_handshake_take(uint32_t limit)
{
    uint32_t v = atomic_fetch_add_explicit(&in_handshake, 1, memory_order_relaxed) + 1;
    if (limit == 0 || v <= limit)
        return 1;
    atomic_fetch_sub_explicit(&in_handshake, 1, memory_order_relaxed);
    return 0;
}

void quota_handshake_release(void)
{
    atomic_fetch_sub_explicit(&in_handshake, 1, memory_order_relaxed);
}

#define F_COUNT(w) ((uint32_t)((w)&0xffff))
#define F_LAST(w) ((uint32_t)(((w) >> 16) & 0xffffff))
#define F_START(w) ((uint32_t)((w) >> 40))
#define F_WORD(start, last, count)                                                                 \
    (((uint64_t)((start)&0xffffff) << 40) | ((uint64_t)((last)&0xffffff) << 16) | (count))

static struct fail_cell *fail_cell(int r, const uint8_t *b, size_t n)
{
    return &fails.cell[r][hash_sip(fails.key[r], b, n) & (COLS / 4 - 1)];
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

int quota_auth_blocked(const struct sockaddr *ip, uint32_t limit, uint32_t window_ms,
                       uint32_t cooldown_ms, uint64_t now_ms)
{
    uint8_t b[16];
    size_t n = ip_bytes(ip, b);
    uint32_t now = secs(now_ms);
    (void)window_ms;
    if (limit == 0)
        return 0;
    /* Blocked only if every row says so: a row shared with an attacker alone
     * does not lock an innocent client out. */
    for (int r = 0; r < ROWS; r++) {
        uint64_t w = atomic_load_explicit(&fail_cell(r, b, n)->word, memory_order_relaxed);
        if (F_COUNT(w) < limit || ago(now, F_LAST(w)) * 1000ull >= cooldown_ms)
            return 0;
    }
    return 1;
}

void quota_auth_failed(const struct sockaddr *ip, uint32_t window_ms, uint64_t now_ms)
{
    uint8_t b[16];
    size_t n = ip_bytes(ip, b);
    uint32_t now = secs(now_ms);
    for (int r = 0; r < ROWS; r++) {
        _Atomic uint64_t *cell = &fail_cell(r, b, n)->word;
        uint64_t w = atomic_load_explicit(cell, memory_order_relaxed), next;
        do {
            if (ago(now, F_START(w)) * 1000ull >= window_ms || F_COUNT(w) == 0)
                next = F_WORD(now, now, 1);
            else
                next = F_WORD(F_START(w), now, F_COUNT(w) < 0xffff ? F_COUNT(w) + 1 : 0xffff);
        } while (!atomic_compare_exchange_weak_explicit(cell, &w, next, memory_order_relaxed,
                                                        memory_order_relaxed));
    }
}
