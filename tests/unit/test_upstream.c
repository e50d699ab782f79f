/* Unit tests for src/upstream.c: the client side of SOCKS5, SOCKS4a and HTTP
 * CONNECT handshakes with an upstream proxy, fed bytes as a hop sends them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "upstream.h"

#define TEST(name) static void name(void **state __attribute__((unused)))

static struct upstream_hop hop_of(enum upstream_kind k, const char *user, const char *pass)
{
    struct upstream_hop h;
    memset(&h, 0, sizeof h);
    h.kind = k;
    strcpy(h.host, "127.0.0.1");
    h.port = 1080;
    strcpy(h.user, user);
    strcpy(h.pass, pass);
    return h;
}

static struct proto_addr domain(const char *name, uint16_t port)
{
    struct proto_addr a;
    memset(&a, 0, sizeof a);
    a.atyp = SOCKS5_ATYP_DOMAIN;
    a.name_len = (uint8_t)strlen(name);
    strcpy(a.u.name, name);
    a.port = port;
    return a;
}

static struct proto_addr ip4(uint8_t a, uint8_t b, uint8_t c, uint8_t d, uint16_t port)
{
    struct proto_addr x;
    memset(&x, 0, sizeof x);
    x.atyp = SOCKS5_ATYP_IPV4;
    x.u.ip4[0] = a, x.u.ip4[1] = b, x.u.ip4[2] = c, x.u.ip4[3] = d;
    x.port = port;
    return x;
}

/* Feeds msg one byte more at a time, as a slow hop would send it: every
 * strict prefix answers AGAIN and consumes nothing; returns the answer to
 * the whole. */
static int feed_slowly(struct upstream *u, const void *msg, size_t len, size_t *consumed)
{
    for (size_t i = 0; i < len; i++) {
        struct upstream copy = *u;
        uint8_t *p = malloc(i ? i : 1);
        assert_non_null(p);
        memcpy(p, msg, i);
        assert_int_equal(upstream_feed(&copy, p, i, consumed), UPSTREAM_AGAIN);
        assert_int_equal(*consumed, 0);
        assert_int_equal(copy.out_len, 0);
        free(p);
    }
    return upstream_feed(u, msg, len, consumed);
}

static const uint8_t REPLY_OK[] = {5, 0, 0, 1, 192, 0, 2, 1, 0x04, 0x38};

TEST(socks5_without_credentials_offers_no_auth_then_sends_the_domain)
{
    struct upstream_hop h = hop_of(UPSTREAM_SOCKS5, "", "");
    struct proto_addr d = domain("example.com", 443);
    struct upstream u;
    size_t used;
    assert_int_equal(upstream_begin(&u, &h, SOCKS5_CMD_CONNECT, &d), UPSTREAM_AGAIN);
    const uint8_t greet[] = {5, 1, 0};
    assert_int_equal(u.out_len, sizeof greet);
    assert_memory_equal(u.out, greet, sizeof greet);
    const uint8_t method[] = {5, 0};
    assert_int_equal(feed_slowly(&u, method, 2, &used), UPSTREAM_AGAIN);
    assert_int_equal(used, 2);
    const uint8_t req[] = {5,   1,   0,   3,   11,  'e', 'x', 'a', 'm',
                           'p', 'l', 'e', '.', 'c', 'o', 'm', 1,   0xbb};
    assert_int_equal(u.out_len, sizeof req);
    assert_memory_equal(u.out, req, sizeof req);
    assert_int_equal(feed_slowly(&u, REPLY_OK, sizeof REPLY_OK, &used), UPSTREAM_DONE);
    assert_int_equal(used, sizeof REPLY_OK);
    assert_int_equal(u.rep, 0);
    assert_int_equal(u.bnd.port, 1080);
}

TEST(socks5_reply_followed_by_tunnel_data_consumes_only_the_reply)
{
    struct upstream_hop h = hop_of(UPSTREAM_SOCKS5, "", "");
    struct proto_addr d = ip4(192, 0, 2, 9, 80);
    struct upstream u;
    size_t used;
    upstream_begin(&u, &h, SOCKS5_CMD_CONNECT, &d);
    upstream_feed(&u, (const uint8_t *)"\5\0", 2, &used);
    const uint8_t req[] = {5, 1, 0, 1, 192, 0, 2, 9, 0, 80};
    assert_memory_equal(u.out, req, sizeof req);
    uint8_t in[sizeof REPLY_OK + 4];
    memcpy(in, REPLY_OK, sizeof REPLY_OK);
    memcpy(in + sizeof REPLY_OK, "HTTP", 4);
    assert_int_equal(upstream_feed(&u, in, sizeof in, &used), UPSTREAM_DONE);
    assert_int_equal(used, sizeof REPLY_OK);
}

TEST(socks5_with_credentials_sends_rfc1929_and_wipes_it_after)
{
    struct upstream_hop h = hop_of(UPSTREAM_SOCKS5, "alice", "s3cret");
    struct proto_addr d = domain("a.example", 80);
    struct upstream u;
    size_t used;
    upstream_begin(&u, &h, SOCKS5_CMD_CONNECT, &d);
    const uint8_t greet[] = {5, 2, 0, 2};
    assert_memory_equal(u.out, greet, sizeof greet);
    assert_int_equal(upstream_feed(&u, (const uint8_t *)"\5\2", 2, &used), UPSTREAM_AGAIN);
    const uint8_t auth[] = {1, 5, 'a', 'l', 'i', 'c', 'e', 6, 's', '3', 'c', 'r', 'e', 't'};
    assert_int_equal(u.out_len, sizeof auth);
    assert_memory_equal(u.out, auth, sizeof auth);
    assert_int_equal(feed_slowly(&u, "\1\0", 2, &used), UPSTREAM_AGAIN);
    assert_null(memmem(u.out, sizeof u.out, "s3cret", 6));
    assert_int_equal(u.out[0], 5); /* the request */
}

TEST(socks5_refused_credentials_give_not_allowed)
{
    struct upstream_hop h = hop_of(UPSTREAM_SOCKS5, "alice", "wrong");
    struct proto_addr d = domain("a.example", 80);
    struct upstream u;
    size_t used;
    upstream_begin(&u, &h, SOCKS5_CMD_CONNECT, &d);
    upstream_feed(&u, (const uint8_t *)"\5\2", 2, &used);
    assert_int_equal(upstream_feed(&u, (const uint8_t *)"\1\1", 2, &used), UPSTREAM_FAIL);
    assert_int_equal(u.rep, SOCKS5_REP_NOT_ALLOWED);
    assert_non_null(u.why);
}

TEST(socks5_no_acceptable_method_gives_not_allowed)
{
    struct upstream_hop h = hop_of(UPSTREAM_SOCKS5, "", "");
    struct proto_addr d = domain("a.example", 80);
    struct upstream u;
    size_t used;
    upstream_begin(&u, &h, SOCKS5_CMD_CONNECT, &d);
    assert_int_equal(upstream_feed(&u, (const uint8_t *)"\5\xff", 2, &used), UPSTREAM_FAIL);
    assert_int_equal(u.rep, SOCKS5_REP_NOT_ALLOWED);
}

TEST(socks5_method_not_offered_or_wrong_version_is_general_failure)
{
    struct upstream_hop h = hop_of(UPSTREAM_SOCKS5, "", "");
    struct proto_addr d = domain("a.example", 80);
    struct upstream u;
    size_t used;
    upstream_begin(&u, &h, SOCKS5_CMD_CONNECT, &d);
    assert_int_equal(upstream_feed(&u, (const uint8_t *)"\5\2", 2, &used), UPSTREAM_FAIL);
    assert_int_equal(u.rep, SOCKS5_REP_GENERAL_FAILURE);
    upstream_begin(&u, &h, SOCKS5_CMD_CONNECT, &d);
    assert_int_equal(upstream_feed(&u, (const uint8_t *)"HT", 2, &used), UPSTREAM_FAIL);
    assert_int_equal(u.rep, SOCKS5_REP_GENERAL_FAILURE);
}

TEST(socks5_every_refusal_rep_is_passed_on)
{
    struct upstream_hop h = hop_of(UPSTREAM_SOCKS5, "", "");
    struct proto_addr d = domain("a.example", 80);
    for (uint8_t rep = 1; rep <= 8; rep++) {
        struct upstream u;
        size_t used;
        upstream_begin(&u, &h, SOCKS5_CMD_CONNECT, &d);
        upstream_feed(&u, (const uint8_t *)"\5\0", 2, &used);
        uint8_t r[sizeof REPLY_OK];
        memcpy(r, REPLY_OK, sizeof r);
        r[1] = rep;
        assert_int_equal(upstream_feed(&u, r, sizeof r, &used), UPSTREAM_FAIL);
        assert_int_equal(u.rep, rep);
    }
}

TEST(socks5_malformed_reply_is_general_failure)
{
    struct upstream_hop h = hop_of(UPSTREAM_SOCKS5, "", "");
    struct proto_addr d = domain("a.example", 80);
    struct upstream u;
    size_t used;
    upstream_begin(&u, &h, SOCKS5_CMD_CONNECT, &d);
    upstream_feed(&u, (const uint8_t *)"\5\0", 2, &used);
    const uint8_t bad[] = {5, 0, 0, 9, 1, 2, 3, 4, 0, 80};
    assert_int_equal(upstream_feed(&u, bad, sizeof bad, &used), UPSTREAM_FAIL);
    assert_int_equal(u.rep, SOCKS5_REP_GENERAL_FAILURE);
}

TEST(socks5_bind_answers_bound_then_done)
{
    struct upstream_hop h = hop_of(UPSTREAM_SOCKS5, "", "");
    struct proto_addr d = ip4(192, 0, 2, 9, 0);
    struct upstream u;
    size_t used;
    upstream_begin(&u, &h, SOCKS5_CMD_BIND, &d);
    upstream_feed(&u, (const uint8_t *)"\5\0", 2, &used);
    assert_int_equal(u.out[1], SOCKS5_CMD_BIND);
    assert_int_equal(upstream_feed(&u, REPLY_OK, sizeof REPLY_OK, &used), UPSTREAM_BOUND);
    assert_int_equal(u.bnd.port, 1080);
    const uint8_t second[] = {5, 0, 0, 1, 192, 0, 2, 9, 0x30, 0x39};
    assert_int_equal(upstream_feed(&u, second, sizeof second, &used), UPSTREAM_DONE);
    assert_int_equal(u.bnd.port, 12345);
}

TEST(socks4a_sends_the_name_with_the_marker)
{
    struct upstream_hop h = hop_of(UPSTREAM_SOCKS4A, "", "");
    struct proto_addr d = domain("example.com", 80);
    struct upstream u;
    size_t used;
    assert_int_equal(upstream_begin(&u, &h, SOCKS5_CMD_CONNECT, &d), UPSTREAM_AGAIN);
    const uint8_t req[] = {4,   1,   0,   80,  0,   0,   0,   1,   0,   'e', 'x',
                           'a', 'm', 'p', 'l', 'e', '.', 'c', 'o', 'm', 0};
    assert_int_equal(u.out_len, sizeof req);
    assert_memory_equal(u.out, req, sizeof req);
    const uint8_t ok[] = {0, 0x5A, 0, 0, 0, 0, 0, 0};
    assert_int_equal(feed_slowly(&u, ok, sizeof ok, &used), UPSTREAM_DONE);
    assert_int_equal(used, 8);
}

TEST(socks4a_ip_destination_is_plain_socks4)
{
    struct upstream_hop h = hop_of(UPSTREAM_SOCKS4A, "", "");
    struct proto_addr d = ip4(192, 0, 2, 9, 80);
    struct upstream u;
    upstream_begin(&u, &h, SOCKS5_CMD_CONNECT, &d);
    const uint8_t req[] = {4, 1, 0, 80, 192, 0, 2, 9, 0};
    assert_int_equal(u.out_len, sizeof req);
    assert_memory_equal(u.out, req, sizeof req);
}

TEST(socks4a_rejection_maps_to_rep)
{
    struct upstream_hop h = hop_of(UPSTREAM_SOCKS4A, "", "");
    struct proto_addr d = domain("example.com", 80);
    struct upstream u;
    size_t used;
    upstream_begin(&u, &h, SOCKS5_CMD_CONNECT, &d);
    const uint8_t no[] = {0, 0x5B, 0, 0, 0, 0, 0, 0};
    assert_int_equal(upstream_feed(&u, no, sizeof no, &used), UPSTREAM_FAIL);
    assert_int_equal(u.rep, SOCKS5_REP_GENERAL_FAILURE);
}

TEST(socks4a_cannot_carry_udp_or_ipv6)
{
    struct upstream_hop h = hop_of(UPSTREAM_SOCKS4A, "", "");
    struct proto_addr d = domain("example.com", 80);
    struct upstream u;
    assert_int_equal(upstream_begin(&u, &h, SOCKS5_CMD_UDP, &d), UPSTREAM_FAIL);
    assert_int_equal(u.rep, SOCKS5_REP_CMD_UNSUPPORTED);
    d.atyp = SOCKS5_ATYP_IPV6;
    assert_int_equal(upstream_begin(&u, &h, SOCKS5_CMD_CONNECT, &d), UPSTREAM_FAIL);
    assert_int_equal(u.rep, SOCKS5_REP_ATYP_UNSUPPORTED);
}

TEST(http_connect_with_basic_auth)
{
    struct upstream_hop h = hop_of(UPSTREAM_HTTP, "alice", "secret");
    struct proto_addr d = domain("example.com", 443);
    struct upstream u;
    size_t used;
    assert_int_equal(upstream_begin(&u, &h, SOCKS5_CMD_CONNECT, &d), UPSTREAM_AGAIN);
    const char want[] = "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n"
                        "Proxy-Authorization: Basic YWxpY2U6c2VjcmV0\r\n\r\n";
    assert_int_equal(u.out_len, sizeof want - 1);
    assert_memory_equal(u.out, want, sizeof want - 1);
    const char ok[] = "HTTP/1.0 200 Connection established\r\nProxy-agent: x\r\n\r\n";
    assert_int_equal(feed_slowly(&u, ok, sizeof ok - 1, &used), UPSTREAM_DONE);
    assert_int_equal(used, sizeof ok - 1);
}

TEST(http_connect_to_ipv6_uses_brackets)
{
    struct upstream_hop h = hop_of(UPSTREAM_HTTP, "", "");
    struct proto_addr d;
    memset(&d, 0, sizeof d);
    d.atyp = SOCKS5_ATYP_IPV6;
    d.u.ip6[0] = 0x20, d.u.ip6[1] = 0x01, d.u.ip6[2] = 0x0d, d.u.ip6[3] = 0xb8, d.u.ip6[15] = 1;
    d.port = 22;
    struct upstream u;
    upstream_begin(&u, &h, SOCKS5_CMD_CONNECT, &d);
    const char want[] = "CONNECT [2001:db8::1]:22 HTTP/1.1\r\nHost: [2001:db8::1]:22\r\n\r\n";
    assert_int_equal(u.out_len, sizeof want - 1);
    assert_memory_equal(u.out, want, sizeof want - 1);
}

TEST(http_status_maps_to_rep)
{
    static const struct {
        const char *line;
        uint8_t rep;
    } cases[] = {
        {"HTTP/1.1 403 Forbidden", SOCKS5_REP_NOT_ALLOWED},
        {"HTTP/1.1 407 Proxy Authentication Required", SOCKS5_REP_NOT_ALLOWED},
        {"HTTP/1.1 404 Not Found", SOCKS5_REP_HOST_UNREACHABLE},
        {"HTTP/1.0 502 Bad Gateway", SOCKS5_REP_CONN_REFUSED},
        {"HTTP/1.0 504 Gateway Timeout", SOCKS5_REP_TTL_EXPIRED},
        {"HTTP/1.0 500 Unable to connect", SOCKS5_REP_GENERAL_FAILURE},
        {"garbage that is no status line", SOCKS5_REP_GENERAL_FAILURE},
    };
    struct upstream_hop h = hop_of(UPSTREAM_HTTP, "", "");
    struct proto_addr d = domain("example.com", 443);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct upstream u;
        size_t used;
        char msg[128];
        int n = snprintf(msg, sizeof msg, "%s\r\n\r\n", cases[i].line);
        upstream_begin(&u, &h, SOCKS5_CMD_CONNECT, &d);
        assert_int_equal(upstream_feed(&u, (uint8_t *)msg, (size_t)n, &used), UPSTREAM_FAIL);
        assert_int_equal(u.rep, cases[i].rep);
    }
}

TEST(http_endless_header_fails)
{
    struct upstream_hop h = hop_of(UPSTREAM_HTTP, "", "");
    struct proto_addr d = domain("example.com", 443);
    struct upstream u;
    size_t used;
    uint8_t *big = malloc(UPSTREAM_HTTP_MAX);
    assert_non_null(big);
    memset(big, 'a', UPSTREAM_HTTP_MAX);
    upstream_begin(&u, &h, SOCKS5_CMD_CONNECT, &d);
    assert_int_equal(upstream_feed(&u, big, UPSTREAM_HTTP_MAX - 1, &used), UPSTREAM_AGAIN);
    assert_int_equal(upstream_feed(&u, big, UPSTREAM_HTTP_MAX, &used), UPSTREAM_FAIL);
    free(big);
}

TEST(http_carries_only_connect)
{
    struct upstream_hop h = hop_of(UPSTREAM_HTTP, "", "");
    struct proto_addr d = domain("example.com", 443);
    struct upstream u;
    assert_int_equal(upstream_begin(&u, &h, SOCKS5_CMD_BIND, &d), UPSTREAM_FAIL);
    assert_int_equal(u.rep, SOCKS5_REP_CMD_UNSUPPORTED);
    assert_int_equal(upstream_begin(&u, &h, SOCKS5_CMD_UDP, &d), UPSTREAM_FAIL);
}

TEST(feeding_after_the_end_fails)
{
    struct upstream_hop h = hop_of(UPSTREAM_SOCKS4A, "", "");
    struct proto_addr d = domain("example.com", 80);
    struct upstream u;
    size_t used;
    upstream_begin(&u, &h, SOCKS5_CMD_CONNECT, &d);
    const uint8_t ok[] = {0, 0x5A, 0, 0, 0, 0, 0, 0};
    assert_int_equal(upstream_feed(&u, ok, sizeof ok, &used), UPSTREAM_DONE);
    assert_int_equal(upstream_feed(&u, ok, sizeof ok, &used), UPSTREAM_FAIL);
}

TEST(kind_names)
{
    assert_string_equal(upstream_kind_str(UPSTREAM_SOCKS5), "socks5");
    assert_string_equal(upstream_kind_str(UPSTREAM_SOCKS4A), "socks4a");
    assert_string_equal(upstream_kind_str(UPSTREAM_HTTP), "http");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(socks5_without_credentials_offers_no_auth_then_sends_the_domain),
        cmocka_unit_test(socks5_reply_followed_by_tunnel_data_consumes_only_the_reply),
        cmocka_unit_test(socks5_with_credentials_sends_rfc1929_and_wipes_it_after),
        cmocka_unit_test(socks5_refused_credentials_give_not_allowed),
        cmocka_unit_test(socks5_no_acceptable_method_gives_not_allowed),
        cmocka_unit_test(socks5_method_not_offered_or_wrong_version_is_general_failure),
        cmocka_unit_test(socks5_every_refusal_rep_is_passed_on),
        cmocka_unit_test(socks5_malformed_reply_is_general_failure),
        cmocka_unit_test(socks5_bind_answers_bound_then_done),
        cmocka_unit_test(socks4a_sends_the_name_with_the_marker),
        cmocka_unit_test(socks4a_ip_destination_is_plain_socks4),
        cmocka_unit_test(socks4a_rejection_maps_to_rep),
        cmocka_unit_test(socks4a_cannot_carry_udp_or_ipv6),
        cmocka_unit_test(http_connect_with_basic_auth),
        cmocka_unit_test(http_connect_to_ipv6_uses_brackets),
        cmocka_unit_test(http_status_maps_to_rep),
        cmocka_unit_test(http_endless_header_fails),
        cmocka_unit_test(http_carries_only_connect),
        cmocka_unit_test(feeding_after_the_end_fails),
        cmocka_unit_test(kind_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
