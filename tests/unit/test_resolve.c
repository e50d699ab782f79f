/* Unit tests for src/resolve.c: literal answers and c-ares on the loop.
 *
 * The asynchronous tests stay off the network where they can: a name from
 * /etc/hosts (c-ares reads the file first), and a name under the reserved
 * .invalid TLD (RFC 6761), which must fail whatever the DNS does. */
#include "unit_support.h"

#include <stdio.h>
#include <strings.h>

#include "addr.h"
#include "loop.h"
#include "resolve.h"

/* Slow DNS (or none: c-ares retries, then gives up) must still answer. */
#define DNS_WAIT_MS (3 * WAIT_MS)

static void assert_v4(const union addr_any *a, const char *ip, uint16_t port)
{
    struct in_addr want;
    assert_int_equal(inet_pton(AF_INET, ip, &want), 1);
    assert_int_equal(a->sa.sa_family, AF_INET);
    assert_int_equal(a->in4.sin_addr.s_addr, want.s_addr);
    assert_int_equal(ntohs(a->in4.sin_port), port);
}

static void assert_v6(const union addr_any *a, const char *ip, uint16_t port)
{
    struct in6_addr want;
    assert_int_equal(inet_pton(AF_INET6, ip, &want), 1);
    assert_int_equal(a->sa.sa_family, AF_INET6);
    assert_memory_equal(&a->in6.sin6_addr, &want, 16);
    assert_int_equal(ntohs(a->in6.sin6_port), port);
    assert_int_equal(a->in6.sin6_scope_id, 0);
    assert_int_equal(a->in6.sin6_flowinfo, 0);
}

/* ---------------------------------------------------------------------------
 * resolve_literal */

static size_t literal(const char *name, uint16_t port, union addr_any *out)
{
    size_t n = 999;
    memset(out, 0xA5, RESOLVE_MAX_ADDRS * sizeof *out);
    if (resolve_literal(name, port, out, &n) != 1)
        fail_msg("resolve_literal(\"%s\") did not answer", name);
    return n;
}

TEST(literal_ipv4)
{
    union addr_any a[RESOLVE_MAX_ADDRS];
    assert_int_equal(literal("192.0.2.33", 8080, a), 1);
    assert_v4(&a[0], "192.0.2.33", 8080);
    assert_int_equal(literal("0.0.0.0", 1, a), 1);
    assert_v4(&a[0], "0.0.0.0", 1);
}

TEST(literal_ipv6)
{
    union addr_any a[RESOLVE_MAX_ADDRS];
    assert_int_equal(literal("2001:db8::7", 443, a), 1);
    assert_v6(&a[0], "2001:db8::7", 443);
    assert_int_equal(literal("::ffff:10.0.0.1", 22, a), 1); /* stays IPv6 here */
    assert_v6(&a[0], "::ffff:10.0.0.1", 22);
    assert_int_equal(literal("::", 65535, a), 1);
    assert_v6(&a[0], "::", 65535);
}

static void assert_localhost(const char *name)
{
    union addr_any a[RESOLVE_MAX_ADDRS];
    assert_int_equal(literal(name, 1080, a), 2);
    assert_v6(&a[0], "::1", 1080); /* IPv6 first */
    assert_v4(&a[1], "127.0.0.1", 1080);
}

TEST(localhost_is_loopback_in_both_families_ipv6_first)
{
    assert_localhost("localhost");
    assert_localhost("localhost.");
}

TEST(localhost_is_case_insensitive_and_covers_subdomains)
{
    assert_localhost("LOCALHOST.");
    assert_localhost("LocalHost");
    assert_localhost("a.localhost");
    assert_localhost("a.localhost.");
    assert_localhost("Deep.Sub.LOCALHOST");
}

TEST(non_literals_return_0)
{
    const char *names[] = {
        "example.com",   "localhost.example.com",
        "xlocalhost",    "localhostx",
        "localhost..",   "mylocalhost",
        "[::1]",         "1.2.3",
        "1.2.3.4.5",     "256.0.0.1",
        "2001:db8::g",   "",
        "a.localhost.x", "localhost.localdomain",
        " localhost",
    };
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        union addr_any a[RESOLVE_MAX_ADDRS];
        size_t n = 0;
        if (resolve_literal(names[i], 80, a, &n) != 0)
            fail_msg("resolve_literal(\"%s\") answered (n=%zu)", names[i], n);
    }
}

/* ---------------------------------------------------------------------------
 * asynchronous lookups */

struct answer {
    int calls;
    int status;
    size_t n;
    union addr_any addrs[RESOLVE_MAX_ADDRS];
};

static int in_start; /* set around resolve_start */

static void on_answer(void *owner, int status, const union addr_any *addrs, size_t n)
{
    struct answer *a = owner;
    if (in_start)
        fail_msg("callback ran inside resolve_start");
    a->calls++;
    a->status = status;
    a->n = n;
    assert_true(n <= RESOLVE_MAX_ADDRS);
    if (n)
        memcpy(a->addrs, addrs, n * sizeof *addrs);
}

static struct resolve_query *start(struct resolver *r, const char *name, uint16_t port,
                                   struct answer *a)
{
    in_start = 1;
    struct resolve_query *q = resolve_start(r, name, port, on_answer, a);
    in_start = 0;
    assert_non_null(q);
    assert_int_equal(a->calls, 0);
    return q;
}

static void wait_answer(struct loop *l, struct answer *a, unsigned ms)
{
    uint64_t deadline = now_ms() + ms;
    while (!a->calls && now_ms() < deadline)
        assert_true(loop_run_once(l, 100) >= 0);
    if (!a->calls)
        fail_msg("no answer within %u ms", ms);
}

static void run_for(struct loop *l, unsigned ms)
{
    uint64_t end = now_ms() + ms;
    while (now_ms() < end)
        loop_run_once(l, 10);
}

struct fixture {
    struct loop *l;
    struct resolver *r;
};

static int fixture_setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    char err[256];
    if (!f || !(f->l = loop_new()))
        return -1;
    f->r = resolver_new(f->l, err, sizeof err);
    if (!f->r) {
        fprintf(stderr, "resolver_new: %s\n", err);
        return -1;
    }
    *state = f;
    return 0;
}

static int fixture_teardown(void **state)
{
    struct fixture *f = *state;
    resolver_free(f->r);
    loop_free(f->l);
    free(f);
    return 0;
}

/* A name /etc/hosts gives an address for, with every address it lists;
 * the machine's own hostname when it is there. Returns 0 when none. */
struct hosts_name {
    char name[256];
    char ips[RESOLVE_MAX_ADDRS][64];
    size_t nips;
};

/* A hosts file of the test's own, named to c-ares by CARES_HOSTS before
 * any resolver exists: answers come from it without a network and do not
 * depend on what the machine's /etc/hosts holds. */
#define TEST_HOSTS_NAME "socks5d-unit.test"

static char hosts_path[64];

static void use_test_hosts(void)
{
    char *path = hosts_path;
    if (path[0])
        return;
    snprintf(path, sizeof hosts_path, "/tmp/socks5d-unit-hosts.%d", (int)getpid());
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f, "192.0.2.10 %s\n2001:db8::10 %s\n192.0.2.11 %s\n", TEST_HOSTS_NAME, TEST_HOSTS_NAME,
            TEST_HOSTS_NAME);
    assert_int_equal(fclose(f), 0);
    assert_int_equal(setenv("CARES_HOSTS", path, 1), 0);
}

static int find_hosts_name(struct hosts_name *h)
{
    static const char *const ips[] = {"192.0.2.10", "2001:db8::10", "192.0.2.11"};
    use_test_hosts();
    snprintf(h->name, sizeof h->name, "%s", TEST_HOSTS_NAME);
    h->nips = 3;
    for (size_t i = 0; i < h->nips; i++)
        snprintf(h->ips[i], sizeof h->ips[0], "%s", ips[i]);
    return 1;
}

static int addr_is(const union addr_any *a, const char *ip)
{
    unsigned char buf[16];
    if (a->sa.sa_family == AF_INET && inet_pton(AF_INET, ip, buf) == 1)
        return memcmp(&a->in4.sin_addr, buf, 4) == 0;
    if (a->sa.sa_family == AF_INET6 && inet_pton(AF_INET6, ip, buf) == 1)
        return memcmp(&a->in6.sin6_addr, buf, 16) == 0;
    return 0;
}

/* RFC 8305 section 4 order: IPv6 first, families alternating while both
 * last. */
static void assert_happy_eyeballs_order(const union addr_any *a, size_t n)
{
    size_t n6 = 0, n4 = 0;
    for (size_t i = 0; i < n; i++)
        a[i].sa.sa_family == AF_INET6 ? n6++ : n4++;
    size_t both = n6 < n4 ? n6 : n4;
    for (size_t i = 0; i < 2 * both; i++)
        assert_int_equal(a[i].sa.sa_family, i % 2 == 0 ? AF_INET6 : AF_INET);
}

TEST(hosts_file_name_is_answered_on_the_loop_not_inside_start)
{
    struct fixture *f = *state;
    struct hosts_name h;
    struct answer a = {0};
    find_hosts_name(&h);
    start(f->r, h.name, 4242, &a);
    wait_answer(f->l, &a, DNS_WAIT_MS);
    assert_int_equal(a.calls, 1);
    if (a.status != RESOLVE_OK)
        fail_msg("%s: status %d", h.name, a.status);
    assert_true(a.n >= 1);
    for (size_t i = 0; i < a.n; i++)
        assert_int_equal(addr_port(&a.addrs[i].sa), 4242);
    for (size_t j = 0; j < h.nips; j++) {
        int found = 0;
        for (size_t i = 0; i < a.n; i++)
            found |= addr_is(&a.addrs[i], h.ips[j]);
        if (!found)
            fail_msg("%s: /etc/hosts address %s missing from the answer", h.name, h.ips[j]);
    }
    assert_happy_eyeballs_order(a.addrs, a.n);
    run_for(f->l, 20);
    assert_int_equal(a.calls, 1);
}

TEST(invalid_tld_fails_with_notfound_or_failed)
{
    struct fixture *f = *state;
    struct answer a = {0};
    start(f->r, "socks5d-unit-test.invalid", 80, &a);
    wait_answer(f->l, &a, DNS_WAIT_MS);
    assert_int_equal(a.calls, 1);
    assert_true(a.status == RESOLVE_NOTFOUND || a.status == RESOLVE_FAILED);
    assert_int_equal(a.n, 0);
    run_for(f->l, 20);
    assert_int_equal(a.calls, 1);
}

/* c-ares would ask DNS for "socks5d-unit.test" when given
 * "socks5d-unit.tes\\t": what is not a host name is refused, on the loop,
 * without a lookup (the answer comes well before a DNS timeout). */
TEST(name_outside_host_name_syntax_fails_without_a_lookup)
{
    static const char *const names[] = {TEST_HOSTS_NAME "\\", "socks5d-unit.tes\\t",
                                        "socks5d-unit\\.test", "socks5d-unit..test", "a b"};
    struct fixture *f = *state;
    struct hosts_name h;
    find_hosts_name(&h);
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        struct answer a = {0};
        start(f->r, names[i], 80, &a);
        wait_answer(f->l, &a, 1000);
        if (a.status != RESOLVE_FAILED || a.n != 0)
            fail_msg("%s: status %d, %zu addresses", names[i], a.status, a.n);
    }
}

TEST(concurrent_queries_are_each_answered_once)
{
    struct fixture *f = *state;
    struct hosts_name h;
    struct answer a[6];
    find_hosts_name(&h);
    memset(a, 0, sizeof a);
    for (int i = 0; i < 6; i++) {
        char name[300];
        if (i % 2 == 0)
            snprintf(name, sizeof name, "%s", h.name);
        else
            snprintf(name, sizeof name, "q%d.socks5d-unit-test.invalid", i);
        start(f->r, name, (uint16_t)(1000 + i), &a[i]);
    }
    uint64_t deadline = now_ms() + DNS_WAIT_MS;
    for (;;) {
        int done = 0;
        for (int i = 0; i < 6; i++)
            done += a[i].calls > 0;
        if (done == 6 || now_ms() > deadline)
            break;
        loop_run_once(f->l, 100);
    }
    run_for(f->l, 20);
    for (int i = 0; i < 6; i++) {
        assert_int_equal(a[i].calls, 1);
        if (i % 2 == 0) {
            assert_int_equal(a[i].status, RESOLVE_OK);
            assert_int_equal(addr_port(&a[i].addrs[0].sa), 1000 + i);
        } else {
            assert_int_not_equal(a[i].status, RESOLVE_OK);
        }
    }
}

TEST(cancel_prevents_the_callback_for_an_answer_ready_at_start)
{
    struct fixture *f = *state;
    struct hosts_name h;
    struct answer a = {0}, b = {0};
    find_hosts_name(&h);
    struct resolve_query *q = start(f->r, h.name, 80, &a);
    resolve_cancel(q);
    /* A second query for the same name, not cancelled: once it has been
     * answered, the first one's answer has been through the loop as well. */
    start(f->r, h.name, 80, &b);
    wait_answer(f->l, &b, DNS_WAIT_MS);
    run_for(f->l, 50);
    assert_int_equal(a.calls, 0);
    assert_int_equal(b.calls, 1);
}

TEST(cancel_prevents_the_callback_for_a_query_in_flight)
{
    struct fixture *f = *state;
    struct answer a = {0}, b = {0};
    struct resolve_query *q = start(f->r, "cancelled.socks5d-unit-test.invalid", 80, &a);
    resolve_cancel(q);
    start(f->r, "witness.socks5d-unit-test.invalid", 80, &b);
    wait_answer(f->l, &b, DNS_WAIT_MS);
    run_for(f->l, 50);
    assert_int_equal(a.calls, 0);
    /* If it is somehow still pending, teardown's resolver_free answers it:
     * still no callback (and ASan/valgrind see it freed). */
}

/* These build their own resolver: they free it mid-test. */

TEST(resolver_free_answers_pending_queries_with_failed_unless_cancelled)
{
    struct loop *l = loop_new();
    char err[256];
    struct answer a = {0}, c = {0};
    assert_non_null(l);
    struct resolver *r = resolver_new(l, err, sizeof err);
    assert_non_null(r);
    start(r, "pending.socks5d-unit-test.invalid", 80, &a);
    struct resolve_query *q = start(r, "cancelled.socks5d-unit-test.invalid", 80, &c);
    resolve_cancel(q);
    resolver_free(r); /* before the loop ever ran: both still in flight */
    assert_int_equal(a.calls, 1);
    assert_int_equal(a.status, RESOLVE_FAILED);
    assert_int_equal(a.n, 0);
    assert_int_equal(c.calls, 0);
    run_for(l, 20);
    assert_int_equal(a.calls, 1);
    assert_int_equal(c.calls, 0);
    loop_free(l);
}

/* A query c-ares answered inside resolve_start (from /etc/hosts) waits on a
 * 0 ms loop timer to be delivered. resolver_free must still answer it (the
 * header: pending queries are answered unless cancelled): otherwise its
 * callback runs after resolver_free returned, when the owner may be gone,
 * or never (the loop is freed next and the query leaks). */
TEST(resolver_free_answers_a_query_whose_answer_was_still_queued)
{
    struct loop *l = loop_new();
    char err[256];
    struct hosts_name h;
    struct answer a = {0};
    assert_non_null(l);
    find_hosts_name(&h);
    struct resolver *r = resolver_new(l, err, sizeof err);
    assert_non_null(r);
    start(r, h.name, 80, &a);
    resolver_free(r);
    int answered_by_free = a.calls;
    run_for(l, 20); /* deliver it anyway, so a failure here does not leak */
    loop_free(l);
    assert_int_equal(answered_by_free, 1);
    assert_int_equal(a.calls, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(literal_ipv4),
        cmocka_unit_test(literal_ipv6),
        cmocka_unit_test(localhost_is_loopback_in_both_families_ipv6_first),
        cmocka_unit_test(localhost_is_case_insensitive_and_covers_subdomains),
        cmocka_unit_test(non_literals_return_0),
        cmocka_unit_test_setup_teardown(hosts_file_name_is_answered_on_the_loop_not_inside_start,
                                        fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(invalid_tld_fails_with_notfound_or_failed, fixture_setup,
                                        fixture_teardown),
        cmocka_unit_test_setup_teardown(name_outside_host_name_syntax_fails_without_a_lookup,
                                        fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(concurrent_queries_are_each_answered_once, fixture_setup,
                                        fixture_teardown),
        cmocka_unit_test_setup_teardown(cancel_prevents_the_callback_for_an_answer_ready_at_start,
                                        fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(cancel_prevents_the_callback_for_a_query_in_flight,
                                        fixture_setup, fixture_teardown),
        cmocka_unit_test(resolver_free_answers_pending_queries_with_failed_unless_cancelled),
        cmocka_unit_test(resolver_free_answers_a_query_whose_answer_was_still_queued),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    if (hosts_path[0])
        unlink(hosts_path);
    return failed;
}
