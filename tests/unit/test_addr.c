/* Unit tests for src/addr.c: "host:port" parsing, formatting, classifying.
 *
 * Parsed addresses are compared field by field against what inet_pton gives
 * for the same literal, so a wrong byte order or a stale field shows up. */
#include "unit_support.h"

#include "addr.h"

/* addr_parse must clear *out even when it fails; start from garbage. */
static int parse(const char *text, union addr_any *out)
{
    memset(out, 0xA5, sizeof *out);
    return addr_parse(text, out);
}

static union addr_any v4(const char *ip, uint16_t port)
{
    union addr_any a;
    memset(&a, 0, sizeof a);
    a.in4.sin_family = AF_INET;
    a.in4.sin_port = htons(port);
    assert_int_equal(inet_pton(AF_INET, ip, &a.in4.sin_addr), 1);
    return a;
}

static union addr_any v6(const char *ip, uint16_t port)
{
    union addr_any a;
    memset(&a, 0, sizeof a);
    a.in6.sin6_family = AF_INET6;
    a.in6.sin6_port = htons(port);
    assert_int_equal(inet_pton(AF_INET6, ip, &a.in6.sin6_addr), 1);
    return a;
}

static void assert_parses_v4(const char *text, const char *ip, uint16_t port)
{
    union addr_any got, want = v4(ip, port);
    if (parse(text, &got) != 0)
        fail_msg("addr_parse(\"%s\") rejected a valid IPv4 address", text);
    assert_int_equal(got.sa.sa_family, AF_INET);
    assert_int_equal(got.in4.sin_port, want.in4.sin_port);
    assert_int_equal(got.in4.sin_addr.s_addr, want.in4.sin_addr.s_addr);
    assert_int_equal(addr_port(&got.sa), port);
    assert_int_equal(addr_len(&got.sa), sizeof(struct sockaddr_in));
}

static void assert_parses_v6(const char *text, const char *ip, uint16_t port)
{
    union addr_any got, want = v6(ip, port);
    if (parse(text, &got) != 0)
        fail_msg("addr_parse(\"%s\") rejected a valid IPv6 address", text);
    assert_int_equal(got.sa.sa_family, AF_INET6);
    assert_int_equal(got.in6.sin6_port, want.in6.sin6_port);
    assert_memory_equal(&got.in6.sin6_addr, &want.in6.sin6_addr, 16);
    assert_int_equal(got.in6.sin6_flowinfo, 0);
    assert_int_equal(got.in6.sin6_scope_id, 0);
    assert_int_equal(addr_port(&got.sa), port);
    assert_int_equal(addr_len(&got.sa), sizeof(struct sockaddr_in6));
}

static void assert_rejects(const char *text)
{
    union addr_any got;
    if (parse(text, &got) != -1)
        fail_msg("addr_parse(\"%s\") accepted an invalid address", text);
}

/* ---------------------------------------------------------------------------
 * addr_parse */

TEST(parse_ipv4_with_port)
{
    assert_parses_v4("127.0.0.1:1080", "127.0.0.1", 1080);
    assert_parses_v4("0.0.0.0:1", "0.0.0.0", 1);
    assert_parses_v4("255.255.255.255:65535", "255.255.255.255", 65535);
    assert_parses_v4("192.0.2.7:080", "192.0.2.7", 80); /* leading zero in the port is decimal */
}

TEST(parse_bracketed_ipv6_with_port)
{
    assert_parses_v6("[::1]:1080", "::1", 1080);
    assert_parses_v6("[::]:443", "::", 443);
    assert_parses_v6("[2001:db8::42]:65535", "2001:db8::42", 65535);
    assert_parses_v6("[::ffff:192.0.2.1]:8080", "::ffff:192.0.2.1", 8080);
    assert_parses_v6("[fe80:0000:0000:0000:0202:b3ff:fe1e:8329]:22", "fe80::202:b3ff:fe1e:8329",
                     22);
}

TEST(parse_without_port_is_rejected)
{
    assert_rejects("127.0.0.1");
    assert_rejects("127.0.0.1:");
    assert_rejects("[::1]");
    assert_rejects("[::1]:");
    assert_rejects("[::1]1080");
    assert_rejects(":1080"); /* and no host */
    assert_rejects("[]:1080");
    assert_rejects("");
}

TEST(parse_port_outside_1_to_65535_is_rejected)
{
    assert_rejects("127.0.0.1:0");
    assert_rejects("127.0.0.1:65536");
    assert_rejects("127.0.0.1:99999999999999999999999");
    assert_rejects("[::1]:0");
    assert_rejects("[::1]:65536");
    assert_rejects("127.0.0.1:-1");
    assert_rejects("127.0.0.1:+80");
    assert_rejects("127.0.0.1: 80");
    assert_rejects("127.0.0.1:80 ");
    assert_rejects("127.0.0.1:80x");
    assert_rejects("127.0.0.1:0x50");
}

TEST(parse_garbage_and_names_are_rejected)
{
    assert_rejects("localhost:80"); /* names are not literals */
    assert_rejects("example.com:443");
    assert_rejects("1.2.3:80");
    assert_rejects("1.2.3.4.5:80");
    assert_rejects("256.1.1.1:80");
    assert_rejects(" 1.2.3.4:80");
    assert_rejects("[::1:80");
    assert_rejects("[::g]:80");
    assert_rejects("[[::1]]:80");
    assert_rejects("::::");
    /* Longer than any address: must not overflow the host buffer. */
    char long_host[300];
    memset(long_host, '1', sizeof long_host);
    memcpy(long_host + sizeof long_host - 4, ":80", 4);
    assert_rejects(long_host);
    char long_v6[300];
    long_v6[0] = '[';
    memset(long_v6 + 1, 'a', sizeof long_v6 - 1);
    memcpy(long_v6 + sizeof long_v6 - 5, "]:80", 5);
    assert_rejects(long_v6);
}

/* "::1:80" is ambiguous (host ::1 port 80, or the address ::1:80 with no
 * port); addr.h says IPv6 needs brackets, so it must be refused, as must any
 * bracket-less text with more than one colon. */
TEST(parse_bare_ipv6_without_brackets_is_rejected)
{
    assert_rejects("::1:80");
    assert_rejects("2001:db8::1:443");
    assert_rejects("fe80::1:22");
    assert_rejects("::ffff:127.0.0.1:80");
}

/* Brackets are for IPv6: "[192.0.2.1]:80" is not a form addr.h accepts. */
TEST(parse_bracketed_ipv4_is_rejected)
{
    assert_rejects("[192.0.2.1]:80");
}

/* ---------------------------------------------------------------------------
 * addr_str */

TEST(str_formats_ipv4_and_bracketed_ipv6)
{
    char buf[ADDR_STRLEN];
    union addr_any a = v4("192.0.2.1", 1080);
    assert_string_equal(addr_str(&a.sa, buf, sizeof buf), "192.0.2.1:1080");
    assert_ptr_equal(addr_str(&a.sa, buf, sizeof buf), buf);
    a = v6("::1", 80);
    assert_string_equal(addr_str(&a.sa, buf, sizeof buf), "[::1]:80");
    a = v6("2001:db8:0:0:0:0:0:1", 0);
    assert_string_equal(addr_str(&a.sa, buf, sizeof buf), "[2001:db8::1]:0");
    a = v6("::ffff:10.1.2.3", 65535);
    assert_string_equal(addr_str(&a.sa, buf, sizeof buf), "[::ffff:10.1.2.3]:65535");
}

TEST(str_longest_address_fits_addr_strlen)
{
    /* Eight full groups is the longest text inet_ntop makes for IPv6. */
    char buf[ADDR_STRLEN];
    const char *want = "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535";
    union addr_any a = v6("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535);
    assert_true(strlen(want) < ADDR_STRLEN);
    assert_string_equal(addr_str(&a.sa, buf, sizeof buf), want);
    a = v6("::ffff:255.255.255.255", 65535);
    assert_string_equal(addr_str(&a.sa, buf, sizeof buf), "[::ffff:255.255.255.255]:65535");
    a = v4("255.255.255.255", 65535);
    assert_string_equal(addr_str(&a.sa, buf, sizeof buf), "255.255.255.255:65535");
}

TEST(str_round_trips_through_parse)
{
    const char *texts[] = {"10.0.0.1:1", "[2001:db8::5]:443", "[::]:9", "0.0.0.0:65535"};
    for (size_t i = 0; i < sizeof texts / sizeof *texts; i++) {
        union addr_any a;
        char buf[ADDR_STRLEN];
        assert_int_equal(parse(texts[i], &a), 0);
        assert_string_equal(addr_str(&a.sa, buf, sizeof buf), texts[i]);
    }
}

TEST(str_of_other_family_is_a_dash_and_short_buffer_is_truncated)
{
    char buf[ADDR_STRLEN];
    union addr_any a;
    memset(&a, 0, sizeof a);
    a.sa.sa_family = AF_UNIX;
    assert_string_equal(addr_str(&a.sa, buf, sizeof buf), "-");
    assert_int_equal(addr_port(&a.sa), 0);
    char small[8];
    memset(small, 'z', sizeof small);
    a = v4("192.0.2.1", 1080);
    assert_string_equal(addr_str(&a.sa, small, sizeof small), "192.0.2");
}

/* ---------------------------------------------------------------------------
 * classification */

TEST(loopback_covers_127_slash_8_v6_loopback_and_mapped)
{
    union addr_any a;
    a = v4("127.0.0.1", 1);
    assert_true(addr_is_loopback(&a.sa));
    a = v4("127.255.255.254", 1);
    assert_true(addr_is_loopback(&a.sa));
    a = v4("127.1.2.3", 1);
    assert_true(addr_is_loopback(&a.sa));
    a = v6("::1", 1);
    assert_true(addr_is_loopback(&a.sa));
    a = v6("::ffff:127.0.0.1", 1);
    assert_true(addr_is_loopback(&a.sa));
    a = v6("::ffff:127.9.9.9", 1);
    assert_true(addr_is_loopback(&a.sa));

    a = v4("128.0.0.1", 1);
    assert_false(addr_is_loopback(&a.sa));
    a = v4("126.255.255.255", 1);
    assert_false(addr_is_loopback(&a.sa));
    a = v4("0.0.0.0", 1);
    assert_false(addr_is_loopback(&a.sa));
    a = v6("::", 1);
    assert_false(addr_is_loopback(&a.sa));
    a = v6("::2", 1);
    assert_false(addr_is_loopback(&a.sa));
    a = v6("::127.0.0.1", 1); /* v4-compatible, not v4-mapped */
    assert_false(addr_is_loopback(&a.sa));
    a = v6("::ffff:10.0.0.1", 1);
    assert_false(addr_is_loopback(&a.sa));
    memset(&a, 0, sizeof a);
    a.sa.sa_family = AF_UNIX;
    assert_false(addr_is_loopback(&a.sa));
}

TEST(unspecified_is_any_address_in_either_family)
{
    union addr_any a;
    a = v4("0.0.0.0", 0);
    assert_true(addr_is_unspecified(&a.sa));
    a = v6("::", 0);
    assert_true(addr_is_unspecified(&a.sa));
    a = v6("::ffff:0.0.0.0", 0);
    assert_true(addr_is_unspecified(&a.sa));
    a = v4("0.0.0.1", 0);
    assert_false(addr_is_unspecified(&a.sa));
    a = v4("127.0.0.1", 0);
    assert_false(addr_is_unspecified(&a.sa));
    a = v6("::1", 0);
    assert_false(addr_is_unspecified(&a.sa));
    memset(&a, 0, sizeof a);
    a.sa.sa_family = AF_UNIX;
    assert_false(addr_is_unspecified(&a.sa));
}

TEST(same_ip_ignores_ports_and_v4_mapping)
{
    union addr_any a = v4("192.0.2.1", 80), b = v4("192.0.2.1", 443);
    union addr_any m = v6("::ffff:192.0.2.1", 9), o = v4("192.0.2.2", 80);
    union addr_any x = v6("2001:db8::1", 1), y = v6("2001:db8::1", 2), z = v6("2001:db8::2", 1);
    assert_true(addr_same_ip(&a.sa, &b.sa));
    assert_true(addr_same_ip(&a.sa, &m.sa));
    assert_true(addr_same_ip(&m.sa, &a.sa));
    assert_true(addr_same_ip(&m.sa, &m.sa));
    assert_false(addr_same_ip(&a.sa, &o.sa));
    assert_false(addr_same_ip(&m.sa, &o.sa));
    assert_true(addr_same_ip(&x.sa, &y.sa));
    assert_false(addr_same_ip(&x.sa, &z.sa));
    assert_false(addr_same_ip(&a.sa, &x.sa));
    /* ::1 and 127.0.0.1 are both loopback but not the same IP. */
    union addr_any l4 = v4("127.0.0.1", 1), l6 = v6("::1", 1);
    assert_false(addr_same_ip(&l4.sa, &l6.sa));
}

TEST(normalize_unmaps_v4_mapped_and_copies_the_rest)
{
    union addr_any out, want;
    union addr_any m = v6("::ffff:198.51.100.7", 4242);
    memset(&out, 0xA5, sizeof out);
    addr_normalize(&m.sa, &out);
    want = v4("198.51.100.7", 4242);
    assert_memory_equal(&out.in4, &want.in4, sizeof want.in4);

    union addr_any p6 = v6("2001:db8::9", 53);
    memset(&out, 0xA5, sizeof out);
    addr_normalize(&p6.sa, &out);
    assert_memory_equal(&out.in6, &p6.in6, sizeof p6.in6);

    union addr_any p4 = v4("203.0.113.9", 53);
    memset(&out, 0xA5, sizeof out);
    addr_normalize(&p4.sa, &out);
    assert_memory_equal(&out.in4, &p4.in4, sizeof p4.in4);

    /* An unknown family comes out zeroed (family AF_UNSPEC), not half-copied. */
    union addr_any u, zero;
    memset(&u, 0x5A, sizeof u);
    u.sa.sa_family = AF_UNIX;
    memset(&zero, 0, sizeof zero);
    memset(&out, 0xA5, sizeof out);
    addr_normalize(&u.sa, &out);
    assert_memory_equal(&out, &zero, sizeof zero);
}

TEST(len_and_port_follow_the_family)
{
    union addr_any a = v4("192.0.2.1", 1234), b = v6("::1", 4321);
    assert_int_equal(addr_len(&a.sa), sizeof(struct sockaddr_in));
    assert_int_equal(addr_len(&b.sa), sizeof(struct sockaddr_in6));
    assert_int_equal(addr_port(&a.sa), 1234);
    assert_int_equal(addr_port(&b.sa), 4321);
}

static struct in6_addr in6(const char *ip)
{
    struct in6_addr a;
    assert_int_equal(inet_pton(AF_INET6, ip, &a), 1);
    return a;
}

TEST(list_keeps_v4_as_mapped_drops_duplicates_and_other_families)
{
    union addr_any a = v4("1.2.3.4", 80), b = v6("2001:db8::1", 0), c = v4("1.2.3.4", 0),
                   d = v6("::ffff:1.2.3.4", 9), unix_sa;
    memset(&unix_sa, 0, sizeof unix_sa);
    unix_sa.sa.sa_family = AF_UNIX;
    const struct sockaddr *sa[] = {&b.sa, &a.sa, NULL, &unix_sa.sa, &c.sa, &d.sa};
    struct addr_list *l = addr_list_new(sa, 6);
    assert_non_null(l);
    assert_int_equal(l->n, 2);
    struct in6_addr x = in6("::ffff:1.2.3.4"), y = in6("2001:db8::1"), z = in6("102:304::");
    assert_true(addr_list_has(l, &x));
    assert_true(addr_list_has(l, &y));
    assert_false(addr_list_has(l, &z));
    assert_false(addr_list_has(NULL, &x));
    addr_list_unref(l);
}

TEST(list_equal_compares_contents_in_any_input_order)
{
    union addr_any a = v4("10.0.0.1", 0), b = v6("fe80::1", 0), c = v4("10.0.0.2", 0);
    const struct sockaddr *ab[] = {&a.sa, &b.sa}, *ba[] = {&b.sa, &a.sa}, *ac[] = {&a.sa, &c.sa};
    struct addr_list *x = addr_list_new(ab, 2), *y = addr_list_new(ba, 2),
                     *z = addr_list_new(ac, 2), *empty = addr_list_new(NULL, 0);
    assert_non_null(x);
    assert_non_null(y);
    assert_non_null(z);
    assert_non_null(empty);
    assert_true(addr_list_equal(x, y));
    assert_false(addr_list_equal(x, z));
    assert_false(addr_list_equal(x, NULL));
    assert_true(addr_list_equal(empty, NULL));
    assert_true(addr_list_equal(NULL, NULL));
    addr_list_unref(x);
    addr_list_unref(y);
    addr_list_unref(z);
    addr_list_unref(empty);
}

TEST(list_lives_until_its_last_reference)
{
    union addr_any a = v4("192.0.2.1", 0);
    const struct sockaddr *sa[] = {&a.sa};
    struct addr_list *l = addr_list_new(sa, 1);
    assert_non_null(l);
    assert_ptr_equal(addr_list_ref(l), l);
    assert_int_equal(atomic_load(&l->refs), 2);
    addr_list_unref(l);
    struct in6_addr x = in6("::ffff:192.0.2.1");
    assert_true(addr_list_has(l, &x)); /* still alive: ASan would say otherwise */
    addr_list_unref(l);
    addr_list_unref(NULL);
    assert_null(addr_list_ref(NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(parse_ipv4_with_port),
        cmocka_unit_test(parse_bracketed_ipv6_with_port),
        cmocka_unit_test(parse_without_port_is_rejected),
        cmocka_unit_test(parse_port_outside_1_to_65535_is_rejected),
        cmocka_unit_test(parse_garbage_and_names_are_rejected),
        cmocka_unit_test(parse_bare_ipv6_without_brackets_is_rejected),
        cmocka_unit_test(parse_bracketed_ipv4_is_rejected),
        cmocka_unit_test(str_formats_ipv4_and_bracketed_ipv6),
        cmocka_unit_test(str_longest_address_fits_addr_strlen),
        cmocka_unit_test(str_round_trips_through_parse),
        cmocka_unit_test(str_of_other_family_is_a_dash_and_short_buffer_is_truncated),
        cmocka_unit_test(loopback_covers_127_slash_8_v6_loopback_and_mapped),
        cmocka_unit_test(unspecified_is_any_address_in_either_family),
        cmocka_unit_test(same_ip_ignores_ports_and_v4_mapping),
        cmocka_unit_test(normalize_unmaps_v4_mapped_and_copies_the_rest),
        cmocka_unit_test(len_and_port_follow_the_family),
        cmocka_unit_test(list_keeps_v4_as_mapped_drops_duplicates_and_other_families),
        cmocka_unit_test(list_equal_compares_contents_in_any_input_order),
        cmocka_unit_test(list_lives_until_its_last_reference),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
