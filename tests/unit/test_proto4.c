/* Unit tests for src/proto4.c: SOCKS4 and SOCKS4a requests and replies.
 * Parsers run on exact-size heap copies, so ASan reports any read past len. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "proto4.h"

#define TEST(name) static void name(void **state __attribute__((unused)))

#define BUF_MAX 1024

/* Builds VN CD PORT IP USERID NUL [NAME NUL]; name NULL for plain SOCKS4. */
static size_t build(uint8_t *b, uint8_t vn, uint8_t cd, uint16_t port, const uint8_t ip[4],
                    const char *user, const char *name)
{
    size_t n = 0;
    b[n++] = vn;
    b[n++] = cd;
    b[n++] = (uint8_t)(port >> 8);
    b[n++] = (uint8_t)port;
    memcpy(b + n, ip, 4);
    n += 4;
    memcpy(b + n, user, strlen(user) + 1);
    n += strlen(user) + 1;
    if (name != NULL) {
        memcpy(b + n, name, strlen(name) + 1);
        n += strlen(name) + 1;
    }
    return n;
}

static int parse_copy(const uint8_t *buf, size_t len, struct proto4_request *out, size_t *consumed,
                      enum proto4_err *err)
{
    uint8_t *copy = malloc(len ? len : 1);
    assert_non_null(copy);
    memcpy(copy, buf, len);
    int rc = proto4_parse_request(copy, len, out, consumed, err);
    free(copy);
    return rc;
}

/* Every strict prefix needs more; the whole message is done. */
static void assert_whole(const uint8_t *buf, size_t len, struct proto4_request *out)
{
    size_t consumed = 0;
    enum proto4_err err = PROTO4_E_NONE;
    for (size_t i = 0; i < len; i++)
        assert_int_equal(parse_copy(buf, i, out, &consumed, &err), RES_AGAIN);
    assert_int_equal(parse_copy(buf, len, out, &consumed, &err), RES_DONE);
    assert_int_equal(consumed, len);
}

static void assert_rejected(const uint8_t *buf, size_t len, enum proto4_err want)
{
    struct proto4_request r;
    size_t consumed = 0;
    enum proto4_err err = PROTO4_E_NONE;
    assert_int_equal(parse_copy(buf, len, &r, &consumed, &err), RES_ERROR);
    assert_int_equal(err, want);
}

static const uint8_t IP[4] = {192, 0, 2, 7};
static const uint8_t MARK[4] = {0, 0, 0, 1};

TEST(socks4_connect_decodes_ip_port_and_userid)
{
    uint8_t b[BUF_MAX];
    struct proto4_request r;
    size_t n = build(b, 4, 1, 8080, IP, "alice", NULL);
    assert_whole(b, n, &r);
    assert_int_equal(r.cmd, SOCKS5_CMD_CONNECT);
    assert_int_equal(r.dst.atyp, SOCKS5_ATYP_IPV4);
    assert_memory_equal(r.dst.u.ip4, IP, 4);
    assert_int_equal(r.dst.port, 8080);
    assert_string_equal(r.userid, "alice");
    assert_int_equal(r.userid_len, 5);
}

TEST(socks4_bind_with_empty_userid)
{
    uint8_t b[BUF_MAX];
    struct proto4_request r;
    size_t n = build(b, 4, 2, 1, IP, "", NULL);
    assert_whole(b, n, &r);
    assert_int_equal(r.cmd, SOCKS5_CMD_BIND);
    assert_int_equal(r.userid_len, 0);
}

TEST(socks4a_name_is_normalized)
{
    uint8_t b[BUF_MAX];
    struct proto4_request r;
    size_t n = build(b, 4, 1, 443, MARK, "bob", "WWW.Example.COM.");
    assert_whole(b, n, &r);
    assert_int_equal(r.dst.atyp, SOCKS5_ATYP_DOMAIN);
    assert_string_equal(r.dst.u.name, "www.example.com");
    assert_int_equal(r.dst.name_len, 15);
    assert_int_equal(r.dst.port, 443);
}

TEST(socks4a_any_marker_from_1_to_255_works)
{
    uint8_t b[BUF_MAX];
    struct proto4_request r;
    const uint8_t mark[4] = {0, 0, 0, 255};
    size_t n = build(b, 4, 1, 80, mark, "", "example.org");
    assert_whole(b, n, &r);
    assert_string_equal(r.dst.u.name, "example.org");
}

TEST(trailing_bytes_are_not_consumed)
{
    uint8_t b[BUF_MAX];
    struct proto4_request r;
    size_t consumed = 0;
    enum proto4_err err;
    size_t n = build(b, 4, 1, 80, IP, "u", NULL);
    memcpy(b + n, "GET /", 5);
    assert_int_equal(parse_copy(b, n + 5, &r, &consumed, &err), RES_DONE);
    assert_int_equal(consumed, n);
}

TEST(version_5_or_other_is_rejected)
{
    uint8_t b[BUF_MAX];
    size_t n = build(b, 5, 1, 80, IP, "", NULL);
    assert_rejected(b, n, PROTO4_E_VERSION);
    assert_rejected(b, 1, PROTO4_E_VERSION);
}

TEST(command_udp_or_unknown_is_rejected)
{
    uint8_t b[BUF_MAX];
    for (unsigned cd = 0; cd < 256; cd++) {
        if (cd == 1 || cd == 2)
            continue;
        size_t n = build(b, 4, (uint8_t)cd, 80, IP, "", NULL);
        assert_rejected(b, n, PROTO4_E_CMD);
        assert_rejected(b, 2, PROTO4_E_CMD);
    }
}

TEST(destination_zero_is_neither_address_nor_marker)
{
    uint8_t b[BUF_MAX];
    const uint8_t zero[4] = {0, 0, 0, 0};
    size_t n = build(b, 4, 1, 80, zero, "", "example.com");
    assert_rejected(b, n, PROTO4_E_ADDR);
    assert_rejected(b, 8, PROTO4_E_ADDR);
}

TEST(userid_of_255_is_accepted_256_rejected)
{
    uint8_t b[BUF_MAX];
    struct proto4_request r;
    char user[300];
    memset(user, 'u', 255);
    user[255] = '\0';
    size_t n = build(b, 4, 1, 80, IP, user, NULL);
    assert_whole(b, n, &r);
    assert_int_equal(r.userid_len, 255);
    user[255] = 'u';
    user[256] = '\0';
    n = build(b, 4, 1, 80, IP, user, NULL);
    assert_rejected(b, n, PROTO4_E_USERID_LONG);
    /* Missing NUL: decided as soon as 256 bytes of USERID are in. */
    assert_rejected(b, 8 + 256, PROTO4_E_USERID_LONG);
}

TEST(missing_nul_needs_more_until_the_limit)
{
    uint8_t b[BUF_MAX];
    struct proto4_request r;
    size_t consumed;
    enum proto4_err err;
    size_t n = build(b, 4, 1, 80, IP, "abc", NULL);
    assert_int_equal(parse_copy(b, n - 1, &r, &consumed, &err), RES_AGAIN);
    n = build(b, 4, 1, 80, MARK, "abc", "example.com");
    assert_int_equal(parse_copy(b, n - 1, &r, &consumed, &err), RES_AGAIN);
}

TEST(socks4a_name_over_255_is_rejected)
{
    uint8_t b[BUF_MAX];
    char name[300];
    memset(name, 'a', 256);
    name[256] = '\0';
    size_t n = build(b, 4, 1, 80, MARK, "", name);
    assert_rejected(b, n, PROTO4_E_NAME_LONG);
    assert_rejected(b, 9 + 256, PROTO4_E_NAME_LONG);
}

TEST(socks4a_empty_name_is_rejected)
{
    uint8_t b[BUF_MAX];
    size_t n = build(b, 4, 1, 80, MARK, "x", "");
    assert_rejected(b, n, PROTO4_E_NAME_EMPTY);
}

TEST(socks4a_name_outside_host_syntax_is_rejected)
{
    uint8_t b[BUF_MAX];
    size_t n = build(b, 4, 1, 80, MARK, "", "bad name\\x");
    assert_rejected(b, n, PROTO4_E_HOSTNAME);
    n = build(b, 4, 1, 80, MARK, "", "a..b");
    assert_rejected(b, n, PROTO4_E_HOSTNAME);
}

TEST(reply_maps_success_and_every_failure)
{
    uint8_t out[SOCKS4_REPLY_LEN];
    assert_int_equal(proto4_encode_reply(out, sizeof out, SOCKS5_REP_SUCCEEDED, NULL), 8);
    const uint8_t granted[8] = {0, 0x5A, 0, 0, 0, 0, 0, 0};
    assert_memory_equal(out, granted, 8);
    for (uint8_t rep = 1; rep <= 8; rep++) {
        assert_int_equal(proto4_encode_reply(out, sizeof out, rep, NULL), 8);
        assert_int_equal(out[0], 0);
        assert_int_equal(out[1], SOCKS4_REJECTED);
    }
}

TEST(reply_carries_ipv4_and_mapped_address)
{
    uint8_t out[SOCKS4_REPLY_LEN];
    struct sockaddr_in s4 = {.sin_family = AF_INET, .sin_port = htons(1080)};
    inet_pton(AF_INET, "192.0.2.7", &s4.sin_addr);
    const uint8_t want[8] = {0, 0x5A, 0x04, 0x38, 192, 0, 2, 7};
    assert_int_equal(proto4_encode_reply(out, sizeof out, 0, (struct sockaddr *)&s4), 8);
    assert_memory_equal(out, want, 8);
    struct sockaddr_in6 s6 = {.sin6_family = AF_INET6, .sin6_port = htons(1080)};
    inet_pton(AF_INET6, "::ffff:192.0.2.7", &s6.sin6_addr);
    assert_int_equal(proto4_encode_reply(out, sizeof out, 0, (struct sockaddr *)&s6), 8);
    assert_memory_equal(out, want, 8);
    inet_pton(AF_INET6, "2001:db8::1", &s6.sin6_addr);
    assert_int_equal(proto4_encode_reply(out, sizeof out, 0, (struct sockaddr *)&s6), 8);
    const uint8_t v6[8] = {0, 0x5A, 0x04, 0x38, 0, 0, 0, 0};
    assert_memory_equal(out, v6, 8);
}

TEST(reply_needs_eight_bytes)
{
    uint8_t out[SOCKS4_REPLY_LEN];
    assert_int_equal(proto4_encode_reply(out, 7, 0, NULL), 0);
}

TEST(cd_maps_back_to_rep)
{
    assert_int_equal(proto4_rep_from_cd(SOCKS4_GRANTED), SOCKS5_REP_SUCCEEDED);
    assert_int_equal(proto4_rep_from_cd(SOCKS4_REJECTED), SOCKS5_REP_GENERAL_FAILURE);
    assert_int_equal(proto4_rep_from_cd(SOCKS4_NO_IDENTD), SOCKS5_REP_NOT_ALLOWED);
    assert_int_equal(proto4_rep_from_cd(SOCKS4_IDENT_MISMATCH), SOCKS5_REP_NOT_ALLOWED);
    assert_int_equal(proto4_rep_from_cd(0x00), SOCKS5_REP_GENERAL_FAILURE);
}

TEST(err_str_names_every_error)
{
    for (int e = PROTO4_E_NONE; e <= PROTO4_E_HOSTNAME; e++)
        assert_string_not_equal(proto4_err_str((enum proto4_err)e), "unknown error");
    assert_string_equal(proto4_err_str((enum proto4_err)(PROTO4_E_HOSTNAME + 1)), "unknown error");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(socks4_connect_decodes_ip_port_and_userid),
        cmocka_unit_test(socks4_bind_with_empty_userid),
        cmocka_unit_test(socks4a_name_is_normalized),
        cmocka_unit_test(socks4a_any_marker_from_1_to_255_works),
        cmocka_unit_test(trailing_bytes_are_not_consumed),
        cmocka_unit_test(version_5_or_other_is_rejected),
        cmocka_unit_test(command_udp_or_unknown_is_rejected),
        cmocka_unit_test(destination_zero_is_neither_address_nor_marker),
        cmocka_unit_test(userid_of_255_is_accepted_256_rejected),
        cmocka_unit_test(missing_nul_needs_more_until_the_limit),
        cmocka_unit_test(socks4a_name_over_255_is_rejected),
        cmocka_unit_test(socks4a_empty_name_is_rejected),
        cmocka_unit_test(socks4a_name_outside_host_syntax_is_rejected),
        cmocka_unit_test(reply_maps_success_and_every_failure),
        cmocka_unit_test(reply_carries_ipv4_and_mapped_address),
        cmocka_unit_test(reply_needs_eight_bytes),
        cmocka_unit_test(cd_maps_back_to_rep),
        cmocka_unit_test(err_str_names_every_error),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
