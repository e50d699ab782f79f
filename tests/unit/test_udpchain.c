/* Unit tests for udpchain_strip (src/udpchain.c): an answer from the first
 * hop's relay carries one header per later relay, each naming where the
 * relay before it got the datagram; every one must name the relay we put
 * in that place, or the datagram is dropped. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <string.h>

#include "udpchain.h"

#define TEST(name) static void name(void **state __attribute__((unused)))

/* Appends a UDP header naming ip:port (IPv4, IPv6) to buf at *len. */
static void put_ip(uint8_t *buf, size_t *len, const char *ip, uint16_t port)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    if (strchr(ip, ':')) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        a->sin6_family = AF_INET6;
        a->sin6_port = htons(port);
        assert_int_equal(inet_pton(AF_INET6, ip, &a->sin6_addr), 1);
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        a->sin_family = AF_INET;
        a->sin_port = htons(port);
        assert_int_equal(inet_pton(AF_INET, ip, &a->sin_addr), 1);
    }
    size_t n = proto_encode_udp_header(buf + *len, 64, (struct sockaddr *)&ss);
    assert_true(n > 0);
    *len += n;
}

/* Appends a UDP header naming name:port. */
static void put_name(uint8_t *buf, size_t *len, const char *name, uint16_t port)
{
    size_t n = strlen(name);
    uint8_t *p = buf + *len;
    p[0] = p[1] = p[2] = 0;
    p[3] = SOCKS5_ATYP_DOMAIN;
    p[4] = (uint8_t)n;
    memcpy(p + 5, name, n);
    p[5 + n] = (uint8_t)(port >> 8);
    p[6 + n] = (uint8_t)port;
    *len += 7 + n;
}

struct chain {
    uint8_t prefix[256];
    size_t plen;
};

/* What we send in front: relays of hops 1 and 2 (a chain of three). */
static struct chain two_relays(void)
{
    struct chain c = {.plen = 0};
    put_ip(c.prefix, &c.plen, "192.0.2.1", 4001);
    put_ip(c.prefix, &c.plen, "2001:db8::2", 4002);
    return c;
}

TEST(headers_naming_the_relays_in_order_are_stripped)
{
    struct chain c = two_relays();
    uint8_t ans[256];
    size_t len = 0, relays;
    put_ip(ans, &len, "192.0.2.1", 4001);
    put_ip(ans, &len, "2001:db8::2", 4002);
    relays = len;
    put_ip(ans, &len, "198.51.100.7", 53);
    memcpy(ans + len, "payload", 7);
    len += 7;
    assert_int_equal(udpchain_strip(c.prefix, c.plen, ans, len), (long)relays);
}

TEST(an_ipv4_mapped_spelling_names_the_same_relay)
{
    struct chain c = two_relays();
    uint8_t ans[256];
    size_t len, relays;
    /* ::ffff:192.0.2.1 as the relay before saw it through an IPv6 socket. */
    static const uint8_t mapped[] = {
        0, 0,    0,   SOCKS5_ATYP_IPV6, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 192, 0, 2,
        1, 0x0f, 0xa1};
    memcpy(ans, mapped, sizeof mapped);
    len = sizeof mapped;
    put_ip(ans, &len, "2001:db8::2", 4002);
    relays = len;
    put_ip(ans, &len, "198.51.100.7", 53);
    assert_int_equal(udpchain_strip(c.prefix, c.plen, ans, len), (long)relays);
}

TEST(an_inner_header_from_another_address_is_refused)
{
    struct chain c = two_relays();
    uint8_t ans[256];
    size_t len = 0;
    /* The first relay passed on a datagram from somebody else (full cone,
     * or a spoofer), who wrote a header naming our target behind it. */
    put_ip(ans, &len, "203.0.113.66", 4001);
    put_ip(ans, &len, "2001:db8::2", 4002);
    put_ip(ans, &len, "198.51.100.7", 53);
    assert_int_equal(udpchain_strip(c.prefix, c.plen, ans, len), -1);
    len = 0;
    put_ip(ans, &len, "192.0.2.1", 4001);
    put_ip(ans, &len, "2001:db8::66", 4002);
    put_ip(ans, &len, "198.51.100.7", 53);
    assert_int_equal(udpchain_strip(c.prefix, c.plen, ans, len), -1);
}

TEST(an_inner_header_from_another_port_is_refused)
{
    struct chain c = two_relays();
    uint8_t ans[256];
    size_t len = 0;
    put_ip(ans, &len, "192.0.2.1", 4001);
    put_ip(ans, &len, "2001:db8::2", 9999);
    put_ip(ans, &len, "198.51.100.7", 53);
    assert_int_equal(udpchain_strip(c.prefix, c.plen, ans, len), -1);
}

TEST(a_relay_named_by_its_hops_name_is_held_to_its_port)
{
    struct chain c = {.plen = 0};
    uint8_t ans[256];
    size_t len = 0, relays;
    put_name(c.prefix, &c.plen, "hop-b.example", 4001);
    put_ip(ans, &len, "192.0.2.1", 4001);
    relays = len;
    put_ip(ans, &len, "198.51.100.7", 53);
    assert_int_equal(udpchain_strip(c.prefix, c.plen, ans, len), (long)relays);
    len = 0;
    put_ip(ans, &len, "192.0.2.1", 4002);
    put_ip(ans, &len, "198.51.100.7", 53);
    assert_int_equal(udpchain_strip(c.prefix, c.plen, ans, len), -1);
    /* A relay answers with the address it got the datagram from, never a
     * name. */
    len = 0;
    put_name(ans, &len, "hop-b.example", 4001);
    put_ip(ans, &len, "198.51.100.7", 53);
    assert_int_equal(udpchain_strip(c.prefix, c.plen, ans, len), -1);
}

TEST(missing_or_truncated_headers_are_refused)
{
    struct chain c = two_relays();
    uint8_t ans[256];
    size_t len = 0;
    put_ip(ans, &len, "192.0.2.1", 4001);
    assert_int_equal(udpchain_strip(c.prefix, c.plen, ans, len), -1);
    put_ip(ans, &len, "2001:db8::2", 4002);
    assert_int_equal(udpchain_strip(c.prefix, c.plen, ans, len - 1), -1);
    ans[2] = 1; /* a fragment */
    assert_int_equal(udpchain_strip(c.prefix, c.plen, ans, len), -1);
}

TEST(one_hop_has_nothing_to_strip)
{
    uint8_t ans[16] = {0};
    assert_int_equal(udpchain_strip(NULL, 0, ans, sizeof ans), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(headers_naming_the_relays_in_order_are_stripped),
        cmocka_unit_test(an_ipv4_mapped_spelling_names_the_same_relay),
        cmocka_unit_test(an_inner_header_from_another_address_is_refused),
        cmocka_unit_test(an_inner_header_from_another_port_is_refused),
        cmocka_unit_test(a_relay_named_by_its_hops_name_is_held_to_its_port),
        cmocka_unit_test(missing_or_truncated_headers_are_refused),
        cmocka_unit_test(one_hop_has_nothing_to_strip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
