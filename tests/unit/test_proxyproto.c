/* Unit tests for the PROXY protocol header parser (src/proxyproto.c). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "proxyproto.h"

/* One call's outputs; the sentinels show what the parser did not write. */
struct outcome {
    int rc;
    size_t consumed;
    const char *reason;
    struct proxyproto_result r;
};

/* Parses a heap copy of exactly `len` bytes, so that under ASan a read past
 * `len` is caught rather than landing in the caller's larger buffer. */
static struct outcome parse(const void *buf, size_t len)
{
    struct outcome o;
    uint8_t *copy = malloc(len ? len : 1);

    assert_non_null(copy);
    if (len)
        memcpy(copy, buf, len);
    memset(&o, 0xA5, sizeof o);
    o.consumed = (size_t)-1;
    o.reason = NULL;
    o.rc = proxyproto_parse(copy, len, &o.r, &o.consumed, &o.reason);
    free(copy);
    return o;
}

static struct outcome parse_str(const char *s)
{
    return parse(s, strlen(s));
}

static void assert_error(struct outcome o)
{
    assert_int_equal(o.rc, RES_ERROR);
    assert_non_null(o.reason);
    assert_true(strlen(o.reason) > 0);
}

static void assert_str_errors(const char *s)
{
    struct outcome o = parse_str(s);

    if (o.rc != RES_ERROR)
        fail_msg("accepted (rc %d): \"%s\"", o.rc, s);
    assert_error(o);
}

static void assert_done(struct outcome o, size_t consumed)
{
    assert_int_equal(o.rc, RES_DONE);
    assert_int_equal(o.consumed, consumed);
}

static void assert_endpoint(const struct sockaddr_storage *ss, int family, const char *addr,
                            uint16_t port)
{
    uint8_t want[16];

    assert_int_equal(ss->ss_family, family);
    assert_int_equal(inet_pton(family, addr, want), 1);
    if (family == AF_INET) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)ss;
        assert_memory_equal(&sin->sin_addr, want, 4);
        assert_int_equal(ntohs(sin->sin_port), port);
    } else {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)ss;
        assert_memory_equal(&sin6->sin6_addr, want, 16);
        assert_int_equal(ntohs(sin6->sin6_port), port);
    }
}

static void assert_no_endpoints(const struct proxyproto_result *r)
{
    assert_int_equal(r->local, 1);
    assert_int_equal(r->src.ss_family, AF_UNSPEC);
    assert_int_equal(r->dst.ss_family, AF_UNSPEC);
}

/* Every strict prefix must ask for more; the whole must parse as `consumed`. */
static void assert_needs_more_until_done(const uint8_t *buf, size_t len, size_t consumed)
{
    for (size_t i = 0; i < len; i++) {
        struct outcome o = parse(buf, i);
        if (o.rc != RES_AGAIN)
            fail_msg("prefix of %zu bytes gave %d", i, o.rc);
    }
    assert_done(parse(buf, len), consumed);
}

/* v2 header: signature, version/command, family, big-endian length, body. */
static size_t build_v2(uint8_t *out, uint8_t ver_cmd, uint8_t fam, const uint8_t *body,
                       size_t body_len)
{
    static const uint8_t sig[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                    0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

    memcpy(out, sig, sizeof sig);
    out[12] = ver_cmd;
    out[13] = fam;
    out[14] = (uint8_t)(body_len >> 8);
    out[15] = (uint8_t)body_len;
    if (body_len)
        memcpy(out + 16, body, body_len);
    return 16 + body_len;
}

/* 192.0.2.1:56324 -> 198.51.100.7:1080 */
static const uint8_t V4_BODY[12] = {192, 0, 2, 1, 198, 51, 100, 7, 0xDC, 0x04, 0x04, 0x38};

/* [2001:db8::1]:443 -> [2001:db8::2]:1080 */
static const uint8_t V6_BODY[36] = {
    0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, /* source */
    0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, /* destination */
    0x01, 0xBB, 0x04, 0x38,                                     /* ports */
};

/* ---- either version ---- */

static void empty_input_needs_more(void **state)
{
    (void)state;
    assert_int_equal(parse("", 0).rc, RES_AGAIN);
}

static void garbage_first_byte_errors_immediately(void **state)
{
    (void)state;
    assert_error(parse("\x05", 1)); /* a SOCKS5 greeting: the proxy header was skipped */
    assert_error(parse("G", 1));
    assert_error(parse("\n", 1));
}

static void need_more_and_error_write_nothing(void **state)
{
    struct outcome more = parse_str("PROXY TCP4 1.2.3.4");
    struct outcome bad = parse_str("PROXY TCP4 1.2.3.4 5.6.7.8 1 65536\r\n");

    (void)state;
    assert_int_equal(more.rc, RES_AGAIN);
    assert_null(more.reason);
    assert_int_equal(more.consumed, (size_t)-1);
    assert_error(bad);
    assert_int_equal(bad.consumed, (size_t)-1);
}

/* ---- v1 ---- */

static void v1_tcp4_gives_client_and_destination(void **state)
{
    const char *s = "PROXY TCP4 192.0.2.1 198.51.100.7 56324 1080\r\n";
    struct outcome o = parse_str(s);

    (void)state;
    assert_done(o, strlen(s));
    assert_int_equal(o.r.version, 1);
    assert_int_equal(o.r.local, 0);
    assert_endpoint(&o.r.src, AF_INET, "192.0.2.1", 56324);
    assert_endpoint(&o.r.dst, AF_INET, "198.51.100.7", 1080);
}

static void v1_tcp6_gives_client_and_destination(void **state)
{
    const char *s = "PROXY TCP6 2001:db8::1 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 0 65535\r\n";
    struct outcome o = parse_str(s);

    (void)state;
    assert_done(o, strlen(s));
    assert_int_equal(o.r.version, 1);
    assert_int_equal(o.r.local, 0);
    assert_endpoint(&o.r.src, AF_INET6, "2001:db8::1", 0);
    assert_endpoint(&o.r.dst, AF_INET6, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535);
}

static void v1_unknown_short_form_is_local(void **state)
{
    struct outcome o = parse_str("PROXY UNKNOWN\r\n");

    (void)state;
    assert_done(o, 15);
    assert_int_equal(o.r.version, 1);
    assert_no_endpoints(&o.r);
}

static void v1_unknown_ignores_rest_of_line(void **state)
{
    const char *s = "PROXY UNKNOWN whatever  the sender put here 1.2.3.4 99999\r\n";
    struct outcome o = parse_str(s);

    (void)state;
    assert_done(o, strlen(s));
    assert_no_endpoints(&o.r);
}

static void v1_one_byte_at_a_time_needs_more_until_crlf(void **state)
{
    const char *s = "PROXY TCP4 10.0.0.1 10.0.0.2 1234 1080\r\n";

    (void)state;
    assert_needs_more_until_done((const uint8_t *)s, strlen(s), strlen(s));
}

static void v1_trailing_socks_bytes_are_left_to_caller(void **state)
{
    const char hdr[] = "PROXY TCP4 10.0.0.1 10.0.0.2 1234 1080\r\n";
    uint8_t buf[sizeof hdr - 1 + 3];
    struct outcome o;

    (void)state;
    memcpy(buf, hdr, sizeof hdr - 1);
    memcpy(buf + sizeof hdr - 1, "\x05\x01\x00", 3); /* SOCKS5 greeting, same segment */
    o = parse(buf, sizeof buf);
    assert_done(o, sizeof hdr - 1);
    assert_endpoint(&o.r.src, AF_INET, "10.0.0.1", 1234);
}

static void v1_longest_line_of_107_bytes_is_accepted(void **state)
{
    const char *s = "PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
                    "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";

    (void)state;
    assert_int_equal(strlen(s), PROXYPROTO_V1_MAX);
    assert_done(parse_str(s), PROXYPROTO_V1_MAX);
}

static void v1_without_crlf_in_107_bytes_errors(void **state)
{
    char s[PROXYPROTO_V1_MAX + 2];

    (void)state;
    memset(s, 'x', sizeof s);
    memcpy(s, "PROXY UNKNOWN ", 14);
    assert_int_equal(parse(s, PROXYPROTO_V1_MAX - 1).rc, RES_AGAIN);
    assert_error(parse(s, PROXYPROTO_V1_MAX));
    /* CRLF one byte too late: the CR is the 107th byte. */
    memcpy(s + PROXYPROTO_V1_MAX - 1, "\r\n", 2);
    assert_error(parse(s, PROXYPROTO_V1_MAX));
    assert_error(parse(s, PROXYPROTO_V1_MAX + 1));
}

static void v1_missing_crlf_needs_more_and_lone_cr_or_lf_errors(void **state)
{
    (void)state;
    assert_int_equal(parse_str("PROXY TCP4 1.2.3.4 5.6.7.8 1 2").rc, RES_AGAIN);
    assert_int_equal(parse_str("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r").rc, RES_AGAIN);
    assert_str_errors("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n");
    assert_str_errors("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\r\n");
    assert_str_errors("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX");
    assert_str_errors("PROXY TCP4\r1.2.3.4"); /* CR without LF, before the line is complete */
}

static void v1_non_printable_byte_errors_as_it_arrives(void **state)
{
    (void)state;
    assert_error(parse("PROXY TCP4 1.2.3.4\0", 19));
    assert_str_errors("PROXY \t");
    assert_str_errors("PROXY UNKNOWN \x80\r\n");
}

static void v1_bad_signature_errors_early(void **state)
{
    (void)state;
    assert_int_equal(parse_str("PROX").rc, RES_AGAIN);
    assert_str_errors("PROXZ");
    assert_str_errors("PROXY\r\n");
    assert_str_errors("PROXYTCP4 1.2.3.4 5.6.7.8 1 2\r\n");
    assert_str_errors("proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n");
}

static void v1_unknown_protocol_errors(void **state)
{
    (void)state;
    assert_str_errors("PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n");
    assert_str_errors("PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n");
    assert_str_errors("PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n");
    assert_str_errors("PROXY UNKNOWNX\r\n");
    assert_str_errors("PROXY \r\n");
}

static void v1_wrong_field_count_or_spacing_errors(void **state)
{
    (void)state;
    assert_str_errors("PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n");
    assert_str_errors("PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n");
    assert_str_errors("PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n");
    assert_str_errors("PROXY  TCP4 1.2.3.4 5.6.7.8 1 2\r\n");
    assert_str_errors("PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n");
}

static void v1_bad_address_errors(void **state)
{
    (void)state;
    assert_str_errors("PROXY TCP4 256.2.3.4 5.6.7.8 1 2\r\n");
    assert_str_errors("PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n");
    assert_str_errors("PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n"); /* leading zero: octal? */
    assert_str_errors("PROXY TCP4 1.2.3.4 5.6.7.x 1 2\r\n");
    assert_str_errors("PROXY TCP4 ::1 5.6.7.8 1 2\r\n"); /* IPv6 under TCP4 */
    assert_str_errors("PROXY TCP6 ::1 5.6.7.8 1 2\r\n"); /* IPv4 under TCP6 */
    assert_str_errors("PROXY TCP6 1::2::3 ::1 1 2\r\n");
    assert_str_errors("PROXY TCP6 ::1 0000:0000:0000:0000:0000:0000:0000:0000:0 1 2\r\n");
    /* Longer than any address text: refused before inet_pton sees it. */
    assert_str_errors("PROXY TCP6 ::1 0000:0000:0000:0000:0000:0000:0000:0000:0000:0000 1 2\r\n");
}

static void v1_port_65536_errors(void **state)
{
    (void)state;
    assert_str_errors("PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n");
    assert_str_errors("PROXY TCP4 1.2.3.4 5.6.7.8 1 99999\r\n");
    assert_str_errors("PROXY TCP4 1.2.3.4 5.6.7.8 1 123456\r\n");
}

static void v1_empty_port_errors(void **state)
{
    (void)state;
    assert_str_errors("PROXY TCP4 1.2.3.4 5.6.7.8  2\r\n");
    assert_str_errors("PROXY TCP4 1.2.3.4 5.6.7.8 1 \r\n");
}

static void v1_port_with_leading_zero_errors_but_zero_is_accepted(void **state)
{
    struct outcome o = parse_str("PROXY TCP4 1.2.3.4 5.6.7.8 0 0\r\n");

    (void)state;
    assert_int_equal(o.rc, RES_DONE);
    assert_endpoint(&o.r.src, AF_INET, "1.2.3.4", 0);
    assert_str_errors("PROXY TCP4 1.2.3.4 5.6.7.8 01080 2\r\n");
    assert_str_errors("PROXY TCP4 1.2.3.4 5.6.7.8 1 00\r\n");
}

static void v1_port_with_sign_or_non_digit_errors(void **state)
{
    (void)state;
    assert_str_errors("PROXY TCP4 1.2.3.4 5.6.7.8 +80 2\r\n");
    assert_str_errors("PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n");
    assert_str_errors("PROXY TCP4 1.2.3.4 5.6.7.8 0x50 2\r\n");
    assert_str_errors("PROXY TCP4 1.2.3.4 5.6.7.8 80a 2\r\n");
}

/* ---- v2 ---- */

static void v2_proxy_ipv4_gives_client_and_destination(void **state)
{
    uint8_t buf[64];
    size_t n = build_v2(buf, 0x21, 0x11, V4_BODY, sizeof V4_BODY);
    struct outcome o = parse(buf, n);

    (void)state;
    assert_done(o, 28);
    assert_int_equal(o.r.version, 2);
    assert_int_equal(o.r.local, 0);
    assert_endpoint(&o.r.src, AF_INET, "192.0.2.1", 56324);
    assert_endpoint(&o.r.dst, AF_INET, "198.51.100.7", 1080);
}

static void v2_proxy_ipv6_gives_client_and_destination(void **state)
{
    uint8_t buf[64];
    size_t n = build_v2(buf, 0x21, 0x21, V6_BODY, sizeof V6_BODY);
    struct outcome o = parse(buf, n);

    (void)state;
    assert_done(o, 52);
    assert_int_equal(o.r.local, 0);
    assert_endpoint(&o.r.src, AF_INET6, "2001:db8::1", 443);
    assert_endpoint(&o.r.dst, AF_INET6, "2001:db8::2", 1080);
}

static void v2_udp_over_ipv4_is_accepted(void **state)
{
    uint8_t buf[64];
    size_t n = build_v2(buf, 0x21, 0x12, V4_BODY, sizeof V4_BODY);
    struct outcome o = parse(buf, n);

    (void)state;
    assert_done(o, n);
    assert_endpoint(&o.r.src, AF_INET, "192.0.2.1", 56324);
}

static void v2_local_is_local_and_skips_its_body(void **state)
{
    uint8_t buf[64];
    size_t n = build_v2(buf, 0x20, 0x11, V4_BODY, sizeof V4_BODY);
    struct outcome o = parse(buf, n);

    (void)state;
    assert_done(o, n);
    assert_int_equal(o.r.version, 2);
    assert_no_endpoints(&o.r);
    n = build_v2(buf, 0x20, 0x00, NULL, 0);
    o = parse(buf, n);
    assert_done(o, 16);
    assert_no_endpoints(&o.r);
}

static void v2_local_ignores_family_byte(void **state)
{
    uint8_t buf[16];
    size_t n = build_v2(buf, 0x20, 0xFF, NULL, 0); /* spec: family ignored for LOCAL */

    (void)state;
    assert_done(parse(buf, n), 16);
}

static void v2_unspec_family_or_transport_is_local(void **state)
{
    uint8_t buf[64];
    size_t n = build_v2(buf, 0x21, 0x00, V4_BODY, sizeof V4_BODY);
    struct outcome o = parse(buf, n);

    (void)state;
    assert_done(o, n);
    assert_no_endpoints(&o.r);
    n = build_v2(buf, 0x21, 0x10, NULL, 0); /* AF_INET, UNSPEC transport */
    o = parse(buf, n);
    assert_done(o, 16);
    assert_no_endpoints(&o.r);
}

static void v2_unix_family_is_local(void **state)
{
    uint8_t body[216 + 4] = {0};
    uint8_t buf[16 + sizeof body];
    struct outcome o;
    size_t n;

    (void)state;
    body[216] = 0x04; /* after the two paths, a NOOP TLV with 1 byte of value */
    body[218] = 1;
    n = build_v2(buf, 0x21, 0x31, body, sizeof body);
    o = parse(buf, n);
    assert_done(o, n);
    assert_no_endpoints(&o.r);
}

static void v2_tlvs_after_addresses_are_skipped(void **state)
{
    uint8_t body[sizeof V4_BODY + 3 + 5 + 3 + 0 + 3 + 2];
    uint8_t buf[16 + sizeof body];
    uint8_t *t = body + sizeof V4_BODY;
    struct outcome o;
    size_t n;

    (void)state;
    memcpy(body, V4_BODY, sizeof V4_BODY);
    memcpy(t, "\x02\x00\x05hello", 8);   /* AUTHORITY */
    memcpy(t + 8, "\x04\x00\x00", 3);    /* NOOP, empty */
    memcpy(t + 11, "\xE7\x00\x02zz", 5); /* custom type: unknown, not an error */
    n = build_v2(buf, 0x21, 0x11, body, sizeof body);
    o = parse(buf, n);
    assert_done(o, n);
    assert_endpoint(&o.r.dst, AF_INET, "198.51.100.7", 1080);
}

static void v2_tlv_running_past_header_errors(void **state)
{
    uint8_t body[sizeof V4_BODY + 5];
    uint8_t buf[16 + sizeof body];
    size_t n;

    (void)state;
    memcpy(body, V4_BODY, sizeof V4_BODY);
    memcpy(body + sizeof V4_BODY, "\x02\x00\x03zz", 5); /* says 3, has 2 */
    n = build_v2(buf, 0x21, 0x11, body, sizeof body);
    assert_error(parse(buf, n));
    n = build_v2(buf, 0x21, 0x11, body, sizeof V4_BODY + 2); /* TLV header cut short */
    assert_error(parse(buf, n));
}

static void v2_one_byte_at_a_time_needs_more_until_complete(void **state)
{
    uint8_t body[sizeof V6_BODY + 7];
    uint8_t buf[16 + sizeof body];
    size_t n;

    (void)state;
    memcpy(body, V6_BODY, sizeof V6_BODY);
    memcpy(body + sizeof V6_BODY, "\x01\x00\x04h2h2", 7); /* ALPN */
    n = build_v2(buf, 0x21, 0x21, body, sizeof body);
    assert_needs_more_until_done(buf, n, n);
}

static void v2_trailing_socks_bytes_are_left_to_caller(void **state)
{
    uint8_t buf[64];
    size_t n = build_v2(buf, 0x21, 0x11, V4_BODY, sizeof V4_BODY);

    (void)state;
    memcpy(buf + n, "\x05\x01\x00", 3);
    assert_done(parse(buf, n + 3), n);
}

static void v2_length_too_short_for_family_errors(void **state)
{
    uint8_t buf[300] = {0};

    (void)state;
    /* Known as soon as the fixed part arrives, without waiting for the body. */
    build_v2(buf, 0x21, 0x11, V4_BODY, 11);
    assert_error(parse(buf, 16));
    build_v2(buf, 0x21, 0x21, V6_BODY, 35);
    assert_error(parse(buf, 16));
    build_v2(buf, 0x21, 0x22, V6_BODY, 12);
    assert_error(parse(buf, 16));
    build_v2(buf, 0x21, 0x31, buf + 16, 215);
    assert_error(parse(buf, 16));
}

static void v2_bad_signature_errors_at_first_wrong_byte(void **state)
{
    uint8_t buf[64];
    size_t n = build_v2(buf, 0x21, 0x11, V4_BODY, sizeof V4_BODY);

    (void)state;
    buf[4] = 0x20; /* the NUL in the signature */
    assert_int_equal(parse(buf, 4).rc, RES_AGAIN);
    assert_error(parse(buf, 5));
    assert_error(parse(buf, n));
    assert_error(parse("\r\n\r\nGET", 7));
}

static void v2_bad_version_errors(void **state)
{
    uint8_t buf[64];

    (void)state;
    build_v2(buf, 0x11, 0x11, V4_BODY, sizeof V4_BODY);
    assert_error(parse(buf, 13));
    build_v2(buf, 0x31, 0x11, V4_BODY, sizeof V4_BODY);
    assert_error(parse(buf, 13));
}

static void v2_bad_command_errors(void **state)
{
    uint8_t buf[64];

    (void)state;
    build_v2(buf, 0x22, 0x11, V4_BODY, sizeof V4_BODY);
    assert_error(parse(buf, 13));
    build_v2(buf, 0x2F, 0x11, V4_BODY, sizeof V4_BODY);
    assert_error(parse(buf, 13));
}

static void v2_undefined_family_or_transport_errors(void **state)
{
    uint8_t buf[64];

    (void)state;
    build_v2(buf, 0x21, 0x41, V4_BODY, sizeof V4_BODY);
    assert_error(parse(buf, 14));
    build_v2(buf, 0x21, 0x13, V4_BODY, sizeof V4_BODY);
    assert_error(parse(buf, 14));
}

static void v2_oversize_length_errors_before_body_arrives(void **state)
{
    uint8_t buf[16];

    (void)state;
    build_v2(buf, 0x21, 0x11, NULL, 0);
    buf[14] = (PROXYPROTO_V2_MAX_BODY + 1) >> 8;
    buf[15] = (PROXYPROTO_V2_MAX_BODY + 1) & 0xFF;
    assert_error(parse(buf, 16));
    buf[14] = buf[15] = 0xFF;
    assert_error(parse(buf, 16));
    buf[12] = 0x20; /* LOCAL is capped too */
    assert_error(parse(buf, 16));
}

static void v2_largest_allowed_header_is_accepted(void **state)
{
    static uint8_t body[PROXYPROTO_V2_MAX_BODY];
    static uint8_t buf[PROXYPROTO_MAX_HEADER];
    size_t pad = sizeof body - sizeof V4_BODY - 3;
    size_t n;

    (void)state;
    memcpy(body, V4_BODY, sizeof V4_BODY);
    body[sizeof V4_BODY] = 0x04; /* one NOOP TLV fills the rest */
    body[sizeof V4_BODY + 1] = (uint8_t)(pad >> 8);
    body[sizeof V4_BODY + 2] = (uint8_t)pad;
    n = build_v2(buf, 0x21, 0x11, body, sizeof body);
    assert_int_equal(n, PROXYPROTO_MAX_HEADER);
    assert_int_equal(parse(buf, n - 1).rc, RES_AGAIN);
    assert_done(parse(buf, n), PROXYPROTO_MAX_HEADER);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(empty_input_needs_more),
        cmocka_unit_test(garbage_first_byte_errors_immediately),
        cmocka_unit_test(need_more_and_error_write_nothing),
        cmocka_unit_test(v1_tcp4_gives_client_and_destination),
        cmocka_unit_test(v1_tcp6_gives_client_and_destination),
        cmocka_unit_test(v1_unknown_short_form_is_local),
        cmocka_unit_test(v1_unknown_ignores_rest_of_line),
        cmocka_unit_test(v1_one_byte_at_a_time_needs_more_until_crlf),
        cmocka_unit_test(v1_trailing_socks_bytes_are_left_to_caller),
        cmocka_unit_test(v1_longest_line_of_107_bytes_is_accepted),
        cmocka_unit_test(v1_without_crlf_in_107_bytes_errors),
        cmocka_unit_test(v1_missing_crlf_needs_more_and_lone_cr_or_lf_errors),
        cmocka_unit_test(v1_non_printable_byte_errors_as_it_arrives),
        cmocka_unit_test(v1_bad_signature_errors_early),
        cmocka_unit_test(v1_unknown_protocol_errors),
        cmocka_unit_test(v1_wrong_field_count_or_spacing_errors),
        cmocka_unit_test(v1_bad_address_errors),
        cmocka_unit_test(v1_port_65536_errors),
        cmocka_unit_test(v1_empty_port_errors),
        cmocka_unit_test(v1_port_with_leading_zero_errors_but_zero_is_accepted),
        cmocka_unit_test(v1_port_with_sign_or_non_digit_errors),
        cmocka_unit_test(v2_proxy_ipv4_gives_client_and_destination),
        cmocka_unit_test(v2_proxy_ipv6_gives_client_and_destination),
        cmocka_unit_test(v2_udp_over_ipv4_is_accepted),
        cmocka_unit_test(v2_local_is_local_and_skips_its_body),
        cmocka_unit_test(v2_local_ignores_family_byte),
        cmocka_unit_test(v2_unspec_family_or_transport_is_local),
        cmocka_unit_test(v2_unix_family_is_local),
        cmocka_unit_test(v2_tlvs_after_addresses_are_skipped),
        cmocka_unit_test(v2_tlv_running_past_header_errors),
        cmocka_unit_test(v2_one_byte_at_a_time_needs_more_until_complete),
        cmocka_unit_test(v2_trailing_socks_bytes_are_left_to_caller),
        cmocka_unit_test(v2_length_too_short_for_family_errors),
        cmocka_unit_test(v2_bad_signature_errors_at_first_wrong_byte),
        cmocka_unit_test(v2_bad_version_errors),
        cmocka_unit_test(v2_bad_command_errors),
        cmocka_unit_test(v2_undefined_family_or_transport_errors),
        cmocka_unit_test(v2_oversize_length_errors_before_body_arrives),
        cmocka_unit_test(v2_largest_allowed_header_is_accepted),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
