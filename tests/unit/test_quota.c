/* Unit tests for src/quota.c: lock-free per-IP / per-user session limits
 * (count-min sketches), handshake slots and failed-login throttling.
 *
 * The sketches are process-wide, so every test uses addresses and user
 * names of its own and gives back what it takes. Throttling is driven by a
 * fake clock (the now_ms argument); nothing here depends on real time.
 * IPv6 clients are keyed by their /64 (P64), the default of --ipv6-prefix. */
#include "unit_support.h"

#include <arpa/inet.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>

#include "addr.h"
#include "quota.h"

#define P64 64

/* An IPv4 or IPv6 literal (with a port, which must not matter) as a sockaddr. */
static union addr_any ip(const char *text, uint16_t port)
{
    union addr_any a;
    memset(&a, 0, sizeof a);
    if (inet_pton(AF_INET, text, &a.in4.sin_addr) == 1) {
        a.in4.sin_family = AF_INET;
        a.in4.sin_port = htons(port);
    } else {
        assert_int_equal(inet_pton(AF_INET6, text, &a.in6.sin6_addr), 1);
        a.in6.sin6_family = AF_INET6;
        a.in6.sin6_port = htons(port);
    }
    return a;
}

/* Takes up to `tries` slots under `limit`; returns how many were granted. */
static int take_ip_n(const union addr_any *a, uint32_t limit, int tries)
{
    int got = 0;
    for (int i = 0; i < tries; i++)
        got += quota_ip_take(&a->sa, P64, limit);
    return got;
}

static void release_ip_n(const union addr_any *a, int n)
{
    for (int i = 0; i < n; i++)
        quota_ip_release(&a->sa, P64);
}

static int take_user_n(const char *user, uint32_t limit, int tries)
{
    int got = 0;
    for (int i = 0; i < tries; i++)
        got += quota_user_take(user, limit);
    return got;
}

static void release_user_n(const char *user, int n)
{
    for (int i = 0; i < n; i++)
        quota_user_release(user);
}

static int group_setup(void **state)
{
    (void)state;
    return quota_init() == 0 ? 0 : -1;
}

/* ---------------------------------------------------------------------------
 * Per-IP limits */

TEST(ip_limit_3_grants_three_refuses_fourth_and_one_after_release)
{
    union addr_any a = ip("192.0.2.1", 1000);
    assert_int_equal(quota_ip_take(&a.sa, P64, 3), 1);
    assert_int_equal(quota_ip_take(&a.sa, P64, 3), 1);
    assert_int_equal(quota_ip_take(&a.sa, P64, 3), 1);
    assert_int_equal(quota_ip_take(&a.sa, P64, 3), 0);
    assert_int_equal(quota_ip_take(&a.sa, P64, 3), 0); /* a refusal takes nothing */
    quota_ip_release(&a.sa, P64);
    assert_int_equal(quota_ip_take(&a.sa, P64, 3), 1);
    assert_int_equal(quota_ip_take(&a.sa, P64, 3), 0);
    release_ip_n(&a, 3);
    /* All given back: the full quota again. */
    assert_int_equal(take_ip_n(&a, 3, 5), 3);
    release_ip_n(&a, 3);
}

TEST(ip_port_does_not_matter)
{
    union addr_any a = ip("192.0.2.2", 1), b = ip("192.0.2.2", 65535);
    assert_int_equal(quota_ip_take(&a.sa, P64, 2), 1);
    assert_int_equal(quota_ip_take(&b.sa, P64, 2), 1);
    assert_int_equal(quota_ip_take(&a.sa, P64, 2), 0);
    quota_ip_release(&b.sa, P64);
    assert_int_equal(quota_ip_take(&a.sa, P64, 2), 1);
    release_ip_n(&a, 2);
}

TEST(ip_limit_0_always_succeeds)
{
    union addr_any a = ip("192.0.2.3", 80);
    assert_int_equal(take_ip_n(&a, 0, 1000), 1000);
    /* (Giving these back is covered by the next test.) */
}

TEST(ip_unlimited_take_and_release_leave_the_count_unchanged)
{
    /* A session taken while the limit is 0 (the default) is released like
     * any other (policy_release does so unconditionally). That must not
     * disturb the count a limit set later (by a reload) relies on. */
    union addr_any a = ip("192.0.2.4", 80);
    for (int i = 0; i < 10; i++)
        assert_int_equal(quota_ip_take(&a.sa, P64, 0), 1);
    release_ip_n(&a, 10);
    assert_int_equal(take_ip_n(&a, 3, 5), 3);
    release_ip_n(&a, 3);
}

TEST(ipv4_and_its_v4_mapped_ipv6_form_share_one_count)
{
    union addr_any v4 = ip("198.51.100.7", 1), mapped = ip("::ffff:198.51.100.7", 2);
    assert_int_equal(quota_ip_take(&v4.sa, P64, 3), 1);
    assert_int_equal(quota_ip_take(&mapped.sa, P64, 3), 1);
    assert_int_equal(quota_ip_take(&v4.sa, P64, 3), 1);
    assert_int_equal(quota_ip_take(&mapped.sa, P64, 3), 0);
    assert_int_equal(quota_ip_take(&v4.sa, P64, 3), 0);
    quota_ip_release(&mapped.sa, P64); /* released under the other spelling */
    assert_int_equal(quota_ip_take(&v4.sa, P64, 3), 1);
    release_ip_n(&v4, 2);
    release_ip_n(&mapped, 1);
    assert_int_equal(take_ip_n(&mapped, 3, 4), 3);
    release_ip_n(&mapped, 3);
}

TEST(ipv6_addresses_of_one_64_share_a_count_other_64s_do_not)
{
    union addr_any a = ip("2001:db8:1:2::1", 1), b = ip("2001:db8:1:2:ffff:ffff:ffff:fffe", 1);
    union addr_any other = ip("2001:db8:1:3::1", 1);
    assert_int_equal(take_ip_n(&a, 2, 1), 1);
    assert_int_equal(take_ip_n(&b, 2, 2), 1); /* a's slot counts for b */
    assert_int_equal(take_ip_n(&other, 2, 3), 2);
    release_ip_n(&a, 1);
    release_ip_n(&b, 1);
    release_ip_n(&other, 2);
}

TEST(ipv6_prefix_128_counts_each_address_and_48_a_whole_site)
{
    union addr_any a = ip("2001:db8:5::1", 1), b = ip("2001:db8:5::2", 1);
    union addr_any far = ip("2001:db8:5:ffff::9", 1);
    assert_int_equal(quota_ip_take(&a.sa, 128, 1), 1);
    assert_int_equal(quota_ip_take(&b.sa, 128, 1), 1);
    assert_int_equal(quota_ip_take(&a.sa, 128, 1), 0);
    quota_ip_release(&a.sa, 128);
    quota_ip_release(&b.sa, 128);
    assert_int_equal(quota_ip_take(&a.sa, 48, 1), 1);
    assert_int_equal(quota_ip_take(&far.sa, 48, 1), 0);
    quota_ip_release(&a.sa, 48);
    /* IPv4 is keyed by the whole address whatever the prefix. */
    union addr_any v4a = ip("192.0.2.77", 1), v4b = ip("192.0.2.78", 1);
    assert_int_equal(quota_ip_take(&v4a.sa, 48, 1), 1);
    assert_int_equal(quota_ip_take(&v4b.sa, 48, 1), 1);
    quota_ip_release(&v4a.sa, 48);
    quota_ip_release(&v4b.sa, 48);
}

#define CROWD 300

TEST(hundreds_of_ips_at_their_limit_neither_exceed_it_nor_block_fresh_ips)
{
    /* A count-min sketch never underestimates: each crowded IP is refused
     * once at its limit. It rarely overestimates: a fresh IP shares a
     * counter with the crowd only if both its rows collide (about 1e-6
     * here with 2^18 counters per row), so it gets its whole quota. */
    union addr_any crowd[CROWD];
    char text[64];
    for (int i = 0; i < CROWD; i++) {
        snprintf(text, sizeof text, "10.77.%d.%d", i / 250, 1 + i % 250);
        crowd[i] = ip(text, (uint16_t)(1000 + i));
        assert_int_equal(take_ip_n(&crowd[i], 3, 3), 3);
    }
    for (int i = 0; i < CROWD; i++)
        assert_int_equal(quota_ip_take(&crowd[i].sa, P64, 3), 0);
    for (int f = 0; f < 10; f++) {
        snprintf(text, sizeof text, "203.0.113.%d", 100 + f);
        union addr_any fresh = ip(text, 4242);
        assert_int_equal(take_ip_n(&fresh, 3, 4), 3);
        release_ip_n(&fresh, 3);
    }
    for (int i = 0; i < CROWD; i++)
        release_ip_n(&crowd[i], 3);
    /* Everything given back: the crowd has its full quota again. */
    for (int i = 0; i < CROWD; i += 37) {
        assert_int_equal(take_ip_n(&crowd[i], 3, 4), 3);
        release_ip_n(&crowd[i], 3);
    }
}

/* ---------------------------------------------------------------------------
 * Per-user limits */

TEST(user_limit_2_grants_two_refuses_third_and_one_after_release)
{
    assert_int_equal(quota_user_take("alice-q", 2), 1);
    assert_int_equal(quota_user_take("alice-q", 2), 1);
    assert_int_equal(quota_user_take("alice-q", 2), 0);
    quota_user_release("alice-q");
    assert_int_equal(quota_user_take("alice-q", 2), 1);
    assert_int_equal(quota_user_take("alice-q", 2), 0);
    release_user_n("alice-q", 2);
    assert_int_equal(take_user_n("alice-q", 2, 3), 2);
    release_user_n("alice-q", 2);
}

TEST(users_are_counted_independently_and_names_are_exact)
{
    assert_int_equal(take_user_n("bob-q", 1, 2), 1);
    assert_int_equal(take_user_n("carol-q", 1, 2), 1);
    /* A prefix or a different case is a different user. */
    assert_int_equal(take_user_n("bob-", 1, 2), 1);
    assert_int_equal(take_user_n("BOB-Q", 1, 2), 1);
    release_user_n("bob-q", 1);
    release_user_n("carol-q", 1);
    release_user_n("bob-", 1);
    release_user_n("BOB-Q", 1);
}

TEST(user_limit_0_always_succeeds)
{
    assert_int_equal(take_user_n("dave-q", 0, 1000), 1000);
}

TEST(user_unlimited_take_and_release_leave_the_count_unchanged)
{
    for (int i = 0; i < 10; i++)
        assert_int_equal(quota_user_take("erin-q", 0), 1);
    release_user_n("erin-q", 10);
    assert_int_equal(take_user_n("erin-q", 2, 3), 2);
    release_user_n("erin-q", 2);
}

/* ---------------------------------------------------------------------------
 * Handshake slots (one global count) */

TEST(handshake_slots_up_to_limit_then_refused_until_released)
{
    assert_int_equal(quota_handshake_take(2), 1);
    assert_int_equal(quota_handshake_take(2), 1);
    assert_int_equal(quota_handshake_take(2), 0);
    quota_handshake_release(2);
    assert_int_equal(quota_handshake_take(2), 1);
    assert_int_equal(quota_handshake_take(2), 0);
    quota_handshake_release(2);
    quota_handshake_release(2);
    /* Nothing left held: a limit of 1 grants exactly one. */
    assert_int_equal(quota_handshake_take(1), 1);
    assert_int_equal(quota_handshake_take(1), 0);
    quota_handshake_release(1);
}

TEST(handshake_limit_0_always_succeeds_and_release_balances)
{
    for (int i = 0; i < 100; i++)
        assert_int_equal(quota_handshake_take(0), 1);
    for (int i = 0; i < 100; i++)
        quota_handshake_release(0);
    /* A limit brought in later (a reload) is exact: what the thread kept
     * leased without a limit goes back first. */
    assert_int_equal(quota_handshake_take(1), 1);
    assert_int_equal(quota_handshake_take(1), 0);
    quota_handshake_release(1);
}

/* ---------------------------------------------------------------------------
 * Concurrency */

#define THREADS 4
#define PAIRS 10000
#define HIGH_LIMIT 64

struct racer {
    union addr_any addr;
    uint32_t limit;
    pthread_barrier_t *start;
    atomic_int *holders, *max_holders;
    int refused;
};

static void *pairs_main(void *arg)
{
    struct racer *r = arg;
    pthread_barrier_wait(r->start);
    for (int i = 0; i < PAIRS; i++) {
        if (!quota_ip_take(&r->addr.sa, P64, r->limit)) {
            r->refused++;
            continue;
        }
        quota_ip_release(&r->addr.sa, P64);
    }
    return NULL;
}

TEST(four_threads_of_take_release_pairs_on_one_ip_end_at_zero)
{
    pthread_t th[THREADS];
    struct racer r[THREADS];
    pthread_barrier_t start;
    union addr_any a = ip("198.51.100.200", 5555);
    assert_int_equal(pthread_barrier_init(&start, NULL, THREADS), 0);
    for (int t = 0; t < THREADS; t++) {
        r[t] = (struct racer){.addr = a, .limit = HIGH_LIMIT, .start = &start};
        assert_int_equal(pthread_create(&th[t], NULL, pairs_main, &r[t]), 0);
    }
    for (int t = 0; t < THREADS; t++)
        assert_int_equal(pthread_join(th[t], NULL), 0);
    pthread_barrier_destroy(&start);
    /* At most THREADS held at once (plus as many in-flight increments), far
     * below the limit: nothing was refused. */
    for (int t = 0; t < THREADS; t++)
        assert_int_equal(r[t].refused, 0);
    /* The count is back to zero: exactly `limit` more takes succeed. */
    assert_int_equal(take_ip_n(&a, HIGH_LIMIT, HIGH_LIMIT + 10), HIGH_LIMIT);
    release_ip_n(&a, HIGH_LIMIT);
}

static void *holders_main(void *arg)
{
    struct racer *r = arg;
    pthread_barrier_wait(r->start);
    for (int i = 0; i < PAIRS; i++) {
        if (!quota_ip_take(&r->addr.sa, P64, r->limit))
            continue;
        int now = atomic_fetch_add(r->holders, 1) + 1;
        int max = atomic_load(r->max_holders);
        while (now > max && !atomic_compare_exchange_weak(r->max_holders, &max, now))
            ;
        atomic_fetch_sub(r->holders, 1);
        quota_ip_release(&r->addr.sa, P64);
    }
    return NULL;
}

TEST(contending_threads_never_hold_more_than_the_limit)
{
    pthread_t th[THREADS];
    struct racer r[THREADS];
    pthread_barrier_t start;
    atomic_int holders = 0, max_holders = 0;
    union addr_any a = ip("2001:db8:77::9", 1);
    assert_int_equal(pthread_barrier_init(&start, NULL, THREADS), 0);
    for (int t = 0; t < THREADS; t++) {
        r[t] = (struct racer){.addr = a,
                              .limit = 2,
                              .start = &start,
                              .holders = &holders,
                              .max_holders = &max_holders};
        assert_int_equal(pthread_create(&th[t], NULL, holders_main, &r[t]), 0);
    }
    for (int t = 0; t < THREADS; t++)
        assert_int_equal(pthread_join(th[t], NULL), 0);
    pthread_barrier_destroy(&start);
    assert_true(atomic_load(&max_holders) >= 1);
    assert_true(atomic_load(&max_holders) <= 2);
    assert_int_equal(take_ip_n(&a, 2, 3), 2);
    release_ip_n(&a, 2);
}

/* ---------------------------------------------------------------------------
 * Failed-login throttling (fake clock) */

#define LIMIT 3
#define WINDOW_MS 60000u
#define COOLDOWN_MS 300000u
#define T0 5000000000ull /* an arbitrary monotonic time, whole seconds */

/* Settings with a per-pair limit and no per-address ceiling. */
static struct quota_login settings(uint32_t limit)
{
    return (struct quota_login){
        .limit = limit, .window_ms = WINDOW_MS, .cooldown_ms = COOLDOWN_MS, .v6_prefix = P64};
}

/* Whether an attempt by user at `now` under q is refused; one let in is
 * settled as not failed, so asking changes nothing. */
static int refused_as(const union addr_any *a, const char *user, const struct quota_login *q,
                      uint64_t now)
{
    if (quota_auth_attempt(&a->sa, user, q, now) != 1)
        return 1;
    quota_auth_settle(&a->sa, user, q, 0, now);
    return 0;
}

static int blocked_with(const union addr_any *a, uint32_t limit, uint64_t now)
{
    struct quota_login q = settings(limit);
    return refused_as(a, "alice", &q, now);
}

static int blocked(const union addr_any *a, uint64_t now)
{
    return blocked_with(a, LIMIT, now);
}

/* A failed login at `now`, as if let in before the address was blocked. */
static void fail_as(const union addr_any *a, const char *user, uint64_t now)
{
    struct quota_login q = settings(0);
    assert_int_equal(quota_auth_attempt(&a->sa, user, &q, now), 1);
    quota_auth_settle(&a->sa, user, &q, 1, now);
}

static void fail_at(const union addr_any *a, uint64_t now)
{
    fail_as(a, "alice", now);
}

TEST(auth_never_failed_is_not_blocked)
{
    union addr_any a = ip("192.0.2.50", 1);
    assert_int_equal(blocked(&a, T0), 0);
    assert_int_equal(blocked(&a, 0), 0);
}

TEST(auth_two_failures_not_blocked_third_blocks)
{
    union addr_any a = ip("192.0.2.51", 1);
    fail_at(&a, T0);
    assert_int_equal(blocked(&a, T0), 0);
    fail_at(&a, T0 + 1000);
    assert_int_equal(blocked(&a, T0 + 1000), 0);
    fail_at(&a, T0 + 2000);
    assert_int_equal(blocked(&a, T0 + 2000), 1);
}

TEST(auth_blocked_until_cooldown_after_last_failure)
{
    union addr_any a = ip("192.0.2.52", 1);
    uint64_t last = T0 + 20000;
    fail_at(&a, T0);
    fail_at(&a, T0 + 10000);
    fail_at(&a, last);
    assert_int_equal(blocked(&a, last), 1);
    /* Still blocked after the window has passed: the cooldown counts. */
    assert_int_equal(blocked(&a, last + WINDOW_MS + 1000), 1);
    assert_int_equal(blocked(&a, last + COOLDOWN_MS - 1000), 1);
    assert_int_equal(blocked(&a, last + COOLDOWN_MS), 0);
    assert_int_equal(blocked(&a, last + COOLDOWN_MS + 3600000), 0);
}

TEST(auth_failure_during_cooldown_extends_it)
{
    union addr_any a = ip("192.0.2.53", 1);
    fail_at(&a, T0);
    fail_at(&a, T0 + 1000);
    fail_at(&a, T0 + 2000);
    fail_at(&a, T0 + 30000); /* within the window: a fourth failure */
    assert_int_equal(blocked(&a, T0 + 2000 + COOLDOWN_MS), 1);
    assert_int_equal(blocked(&a, T0 + 30000 + COOLDOWN_MS - 1000), 1);
    assert_int_equal(blocked(&a, T0 + 30000 + COOLDOWN_MS), 0);
}

TEST(auth_window_expiry_resets_the_count)
{
    union addr_any a = ip("192.0.2.54", 1);
    fail_at(&a, T0);
    fail_at(&a, T0 + 10000);
    /* The window opened at T0 is over: this failure starts a new one. */
    fail_at(&a, T0 + WINDOW_MS + 1000);
    assert_int_equal(blocked(&a, T0 + WINDOW_MS + 1000), 0);
    fail_at(&a, T0 + WINDOW_MS + 2000);
    assert_int_equal(blocked(&a, T0 + WINDOW_MS + 2000), 0);
    fail_at(&a, T0 + WINDOW_MS + 3000);
    assert_int_equal(blocked(&a, T0 + WINDOW_MS + 3000), 1);
}

TEST(auth_blocked_ip_does_not_affect_another_ip)
{
    union addr_any a = ip("192.0.2.55", 1), b = ip("192.0.2.56", 1), c = ip("2001:db8::55", 1);
    for (int i = 0; i < 5; i++)
        fail_at(&a, T0 + (uint64_t)i * 1000);
    assert_int_equal(blocked(&a, T0 + 5000), 1);
    assert_int_equal(blocked(&b, T0 + 5000), 0);
    assert_int_equal(blocked(&c, T0 + 5000), 0);
    /* b's own failures count from zero. */
    fail_at(&b, T0 + 5000);
    fail_at(&b, T0 + 6000);
    assert_int_equal(blocked(&b, T0 + 6000), 0);
}

TEST(auth_v4_mapped_form_shares_the_throttle)
{
    union addr_any v4 = ip("198.51.100.60", 1), mapped = ip("::ffff:198.51.100.60", 2);
    fail_at(&v4, T0);
    fail_at(&mapped, T0 + 1000);
    fail_at(&v4, T0 + 2000);
    assert_int_equal(blocked(&mapped, T0 + 2000), 1);
    assert_int_equal(blocked(&v4, T0 + 2000), 1);
}

TEST(auth_limit_0_never_blocks)
{
    union addr_any a = ip("192.0.2.57", 1);
    for (int i = 0; i < 20; i++)
        fail_at(&a, T0 + (uint64_t)i * 100);
    assert_int_equal(blocked_with(&a, 0, T0 + 2000), 0);
    assert_int_equal(blocked(&a, T0 + 2000), 1);
}

TEST(auth_throttle_works_across_the_seconds_counter_wrap)
{
    /* Seconds are kept modulo 2^24: failures on both sides of the wrap
     * still count in one window and the cooldown still ends. */
    union addr_any a = ip("192.0.2.58", 1);
    uint64_t wrap = (1ull << 24) * 1000; /* the first ms after the wrap */
    fail_at(&a, wrap - 2000);
    fail_at(&a, wrap - 1000);
    fail_at(&a, wrap);
    assert_int_equal(blocked(&a, wrap), 1);
    assert_int_equal(blocked(&a, wrap + COOLDOWN_MS - 1000), 1);
    assert_int_equal(blocked(&a, wrap + COOLDOWN_MS), 0);
}

TEST(auth_attempts_in_flight_count_against_the_limit)
{
    union addr_any a = ip("192.0.2.59", 1);
    struct quota_login q = settings(LIMIT);
    for (int i = 0; i < LIMIT; i++)
        assert_int_equal(quota_auth_attempt(&a.sa, "alice", &q, T0), 1);
    assert_int_equal(quota_auth_attempt(&a.sa, "alice", &q, T0), 0);
    /* A success gives its slot back; a failure keeps it. */
    quota_auth_settle(&a.sa, "alice", &q, 0, T0);
    assert_int_equal(quota_auth_attempt(&a.sa, "alice", &q, T0), 1);
    quota_auth_settle(&a.sa, "alice", &q, 1, T0);
    assert_int_equal(quota_auth_attempt(&a.sa, "alice", &q, T0), 0);
    quota_auth_settle(&a.sa, "alice", &q, 1, T0);
    quota_auth_settle(&a.sa, "alice", &q, 1, T0);
    /* Three failures now: blocked for the cooldown, then let in again. */
    assert_int_equal(blocked(&a, T0 + 1000), 1);
    assert_int_equal(blocked(&a, T0 + COOLDOWN_MS), 0);
}

TEST(auth_one_64_shares_a_throttle)
{
    union addr_any a = ip("2001:db8:9:9::1", 1), b = ip("2001:db8:9:9::2", 1);
    union addr_any other = ip("2001:db8:9:a::1", 1);
    for (int i = 0; i < LIMIT; i++)
        fail_at(i % 2 ? &a : &b, T0 + (uint64_t)i * 1000);
    assert_int_equal(blocked(&a, T0 + 3000), 1);
    assert_int_equal(blocked(&b, T0 + 3000), 1);
    assert_int_equal(blocked(&other, T0 + 3000), 0);
}

#define RACERS 8
#define GUESSES 40

struct guesser {
    union addr_any addr;
    struct quota_login q;
    pthread_barrier_t *start;
    int id, spray; /* spray: a new name per guess */
    int let_in;
    unsigned char in[GUESSES / RACERS]; /* which guesses were let in */
};

static void guess_name(const struct guesser *g, int i, char *name, size_t len)
{
    snprintf(name, len, g->spray ? "user-%d-%d" : "alice", g->id, i);
}

static void *guesser_main(void *arg)
{
    struct guesser *g = arg;
    char name[32];
    pthread_barrier_wait(g->start);
    for (int i = 0; i < GUESSES / RACERS; i++) {
        guess_name(g, i, name, sizeof name);
        g->in[i] = quota_auth_attempt(&g->addr.sa, name, &g->q, T0) == 1;
        g->let_in += g->in[i];
    }
    return NULL;
}

/* RACERS threads make GUESSES attempts at once from a; returns how many
 * were let in, and settles every one let in as a failure. */
static int race(const union addr_any *a, const struct quota_login *q, int spray)
{
    pthread_t th[RACERS];
    struct guesser g[RACERS];
    pthread_barrier_t start;
    char name[32];
    int total = 0;
    assert_int_equal(pthread_barrier_init(&start, NULL, RACERS), 0);
    for (int t = 0; t < RACERS; t++) {
        g[t] = (struct guesser){.addr = *a, .q = *q, .start = &start, .id = t, .spray = spray};
        assert_int_equal(pthread_create(&th[t], NULL, guesser_main, &g[t]), 0);
    }
    for (int t = 0; t < RACERS; t++) {
        assert_int_equal(pthread_join(th[t], NULL), 0);
        total += g[t].let_in;
    }
    pthread_barrier_destroy(&start);
    for (int t = 0; t < RACERS; t++)
        for (int i = 0; i < GUESSES / RACERS; i++) {
            guess_name(&g[t], i, name, sizeof name);
            if (g[t].in[i])
                quota_auth_settle(&a->sa, name, q, 1, T0);
        }
    return total;
}

TEST(auth_parallel_attempts_from_one_address_let_exactly_limit_in)
{
    union addr_any a = ip("198.51.100.61", 1);
    struct quota_login q = settings(LIMIT);
    assert_int_equal(race(&a, &q, 0), LIMIT);
    assert_int_equal(blocked(&a, T0), 1);
}

/* ---- per (address, user), with a per-address ceiling */

TEST(auth_one_users_failures_leave_another_user_at_the_address_alone)
{
    union addr_any a = ip("192.0.2.70", 1);
    struct quota_login q = settings(LIMIT);
    q.address_limit = 10 * LIMIT;
    for (int i = 0; i < LIMIT; i++)
        fail_as(&a, "alice", T0);
    assert_int_equal(quota_auth_attempt(&a.sa, "alice", &q, T0), 0);
    assert_int_equal(refused_as(&a, "bob", &q, T0), 0);
    assert_int_equal(refused_as(&a, "alicex", &q, T0), 0); /* names are exact */
}

TEST(auth_many_names_from_one_address_hit_the_address_ceiling)
{
    union addr_any a = ip("192.0.2.71", 1), other = ip("192.0.2.72", 1);
    struct quota_login q = settings(LIMIT);
    char name[32];
    q.address_limit = 20;
    for (int i = 0; i < 20; i++) {
        snprintf(name, sizeof name, "spray%d", i);
        assert_int_equal(refused_as(&a, name, &q, T0), 0);
        fail_as(&a, name, T0);
    }
    /* A fresh name, or the right user, from that address: the ceiling. */
    assert_int_equal(quota_auth_attempt(&a.sa, "fresh", &q, T0), -1);
    assert_int_equal(quota_auth_attempt(&a.sa, "alice", &q, T0), -1);
    assert_int_equal(refused_as(&other, "fresh", &q, T0), 0);
    /* Its cooldown ends it too. */
    assert_int_equal(refused_as(&a, "fresh", &q, T0 + COOLDOWN_MS), 0);
    /* 0: no ceiling. */
    q.address_limit = 0;
    assert_int_equal(refused_as(&a, "fresh", &q, T0), 0);
}

TEST(auth_parallel_spraying_lets_exactly_the_ceiling_in)
{
    union addr_any a = ip("198.51.100.62", 1);
    struct quota_login q = settings(LIMIT);
    q.address_limit = 7;
    assert_int_equal(race(&a, &q, 1), 7);
    assert_int_equal(quota_auth_attempt(&a.sa, "new-name", &q, T0), -1);
}

static int throttles_none_of(const struct sockaddr *ip, int per_user, void *ctx)
{
    union addr_any x;
    addr_normalize(ip, &x);
    (void)per_user;
    return !addr_same_ip(&x.sa, &((const union addr_any *)ctx)->sa);
}

TEST(auth_forget_clears_only_the_addresses_no_longer_throttled)
{
    union addr_any a = ip("192.0.2.73", 1), b = ip("192.0.2.74", 1);
    for (int i = 0; i < LIMIT; i++) {
        fail_at(&a, T0);
        fail_at(&b, T0);
    }
    assert_int_equal(blocked(&a, T0), 1);
    /* a's pair cell and its address cell, in each row. */
    assert_true(quota_auth_forget(throttles_none_of, &a) >= 2);
    assert_int_equal(blocked(&a, T0), 0);
    assert_int_equal(blocked(&b, T0), 1);
    assert_int_equal(quota_auth_forget(throttles_none_of, &a), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(ip_limit_3_grants_three_refuses_fourth_and_one_after_release),
        cmocka_unit_test(ip_port_does_not_matter),
        cmocka_unit_test(ip_limit_0_always_succeeds),
        cmocka_unit_test(ip_unlimited_take_and_release_leave_the_count_unchanged),
        cmocka_unit_test(ipv4_and_its_v4_mapped_ipv6_form_share_one_count),
        cmocka_unit_test(ipv6_addresses_of_one_64_share_a_count_other_64s_do_not),
        cmocka_unit_test(ipv6_prefix_128_counts_each_address_and_48_a_whole_site),
        cmocka_unit_test(hundreds_of_ips_at_their_limit_neither_exceed_it_nor_block_fresh_ips),
        cmocka_unit_test(user_limit_2_grants_two_refuses_third_and_one_after_release),
        cmocka_unit_test(users_are_counted_independently_and_names_are_exact),
        cmocka_unit_test(user_limit_0_always_succeeds),
        cmocka_unit_test(user_unlimited_take_and_release_leave_the_count_unchanged),
        cmocka_unit_test(handshake_slots_up_to_limit_then_refused_until_released),
        cmocka_unit_test(handshake_limit_0_always_succeeds_and_release_balances),
        cmocka_unit_test(four_threads_of_take_release_pairs_on_one_ip_end_at_zero),
        cmocka_unit_test(contending_threads_never_hold_more_than_the_limit),
        cmocka_unit_test(auth_never_failed_is_not_blocked),
        cmocka_unit_test(auth_two_failures_not_blocked_third_blocks),
        cmocka_unit_test(auth_blocked_until_cooldown_after_last_failure),
        cmocka_unit_test(auth_failure_during_cooldown_extends_it),
        cmocka_unit_test(auth_window_expiry_resets_the_count),
        cmocka_unit_test(auth_blocked_ip_does_not_affect_another_ip),
        cmocka_unit_test(auth_v4_mapped_form_shares_the_throttle),
        cmocka_unit_test(auth_limit_0_never_blocks),
        cmocka_unit_test(auth_throttle_works_across_the_seconds_counter_wrap),
        cmocka_unit_test(auth_attempts_in_flight_count_against_the_limit),
        cmocka_unit_test(auth_one_64_shares_a_throttle),
        cmocka_unit_test(auth_parallel_attempts_from_one_address_let_exactly_limit_in),
        cmocka_unit_test(auth_one_users_failures_leave_another_user_at_the_address_alone),
        cmocka_unit_test(auth_many_names_from_one_address_hit_the_address_ceiling),
        cmocka_unit_test(auth_parallel_spraying_lets_exactly_the_ceiling_in),
        cmocka_unit_test(auth_forget_clears_only_the_addresses_no_longer_throttled),
    };
    return cmocka_run_group_tests(tests, group_setup, NULL);
}
