/* Unit tests for src/proto.c, the sans-I/O RFC 1928 / RFC 1929 wire format.
 *
 * Each test is named after the property of the RFC or of proto.h it proves.
 * Parsers are always run on exact-size heap copies of their input, so under
 * ASan a read past `len` is reported instead of silently reading whatever
 * follows, and they are also run in place, where the bytes after `len` are
 * usually the rest of a valid message, so an overread changes the answer
 * even without ASan. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "proto.h"

/* cmocka passes per-test state; these tests keep none. */
#define TEST(name) static void name(void **state __attribute__((unused)))

/* Largest message any test builds: a request with a 255-byte domain is 262,
 * a user/pass message with 255/255 is 513; room for trailing bytes too. */
#define BUF_MAX 1024

static const uint8_t IP4[4] = {192, 0, 2, 1};
static const uint8_t IP6[16] = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
static const char DOMAIN[] = "example.com";
#define DOMAIN_LEN (sizeof DOMAIN - 1)

/* ---------------------------------------------------------------------------
 * Parser plumbing: one signature for all four parsers, so the helpers below
 * (prefix walks, rejection checks) exist once instead of once per message. */

typedef int (*parser_fn)(const uint8_t *buf, size_t len, void *out, size_t *consumed,
                         enum proto_err *err);

/* The adapters poison the output first, so a field the parser forgets to set
 * or a missing NUL shows up as 0xA5 garbage instead of passing on zeroes. */
static int parse_greeting(const uint8_t *buf, size_t len, void *out, size_t *consumed,
                          enum proto_err *err)
{
    memset(out, 0xA5, sizeof(struct proto_greeting));
    return proto_parse_greeting(buf, len, out, consumed, err);
}

static int parse_userpass(const uint8_t *buf, size_t len, void *out, size_t *consumed,
                          enum proto_err *err)
{
    memset(out, 0xA5, sizeof(struct proto_userpass));
    return proto_parse_userpass(buf, len, out, consumed, err);
}

static int parse_request(const uint8_t *buf, size_t len, void *out, size_t *consumed,
                         enum proto_err *err)
{
    memset(out, 0xA5, sizeof(struct proto_request));
    return proto_parse_request(buf, len, out, consumed, err);
}

static int parse_udp(const uint8_t *buf, size_t len, void *out, size_t *hdr_len,
                     enum proto_err *err)
{
    memset(out, 0xA5, sizeof(struct proto_addr));
    return proto_parse_udp_header(buf, len, out, hdr_len, err);
}

/* Context establishment, with tokens up to GSS_MAX bytes taken. */
#define GSS_MAX 4096
static int parse_gss_auth(const uint8_t *buf, size_t len, void *out, size_t *consumed,
                          enum proto_err *err)
{
    memset(out, 0xA5, sizeof(struct proto_gss_msg));
    return proto_parse_gss(buf, len, SOCKS5_GSS_AUTH, GSS_MAX, out, consumed, err);
}

/* Room for any parser's output. */
union parsed {
    struct proto_gss_msg m;
    struct proto_greeting g;
    struct proto_userpass u;
    struct proto_request r;
    struct proto_addr a;
};

/* Parses msg[0..len) twice: from an exact-size heap copy (ASan catches an
 * overread) and in place (an overread sees the caller's following bytes and
 * changes the answer). Both must agree; `out` holds the heap-copy result. */
static int parse_exact(parser_fn parse, const uint8_t *msg, size_t len, void *out, size_t *consumed,
                       enum proto_err *err)
{
    union parsed in_place;
    size_t consumed2 = (size_t)-1;
    enum proto_err err2 = PROTO_E_NONE;
    uint8_t *copy = malloc(len);
    int rc, rc2;

    assert_true(copy != NULL || len == 0);
    if (len)
        memcpy(copy, msg, len);
    *consumed = (size_t)-1;
    *err = PROTO_E_NONE;
    rc = parse(copy, len, out, consumed, err);
    free(copy);

    rc2 = parse(msg, len, &in_place, &consumed2, &err2);
    if (rc2 != rc)
        fail_msg("%zu bytes: status %d from an exact copy but %d in place", len, rc, rc2);
    if (rc == RES_DONE)
        assert_int_equal(consumed2, *consumed);
    if (rc == RES_ERROR)
        assert_int_equal(err2, *err);
    return rc;
}

/* Asserts buf[0..len) starts with one valid message of exactly `want` bytes. */
static void assert_done(parser_fn parse, const uint8_t *buf, size_t len, void *out, size_t want)
{
    size_t consumed;
    enum proto_err err;

    assert_int_equal(parse_exact(parse, buf, len, out, &consumed, &err), RES_DONE);
    assert_int_equal(consumed, want);
}

/* Asserts msg[0..len) is exactly one complete message, fed one byte at a time
 * as a slow client sends it: every proper prefix is NEED_MORE, the whole is
 * DONE consuming all of it. `out` holds the decoded message afterwards. */
static void assert_complete_only_at_end(parser_fn parse, const uint8_t *msg, size_t len, void *out)
{
    size_t consumed;
    enum proto_err err;

    for (size_t n = 0; n < len; n++) {
        int rc = parse_exact(parse, msg, n, out, &consumed, &err);
        if (rc != RES_AGAIN)
            fail_msg("prefix %zu of %zu bytes: status %d, want NEED_MORE", n, len, rc);
    }
    assert_done(parse, msg, len, out, len);
}

/* Asserts the first `at` bytes of msg are where it goes wrong: shorter
 * prefixes are still valid prefixes (NEED_MORE), and from `at` bytes on it is
 * rejected with `want`, whose reply code is `rep` (-1: close, no reply). */
static void assert_rejected_at(parser_fn parse, const uint8_t *msg, size_t len, size_t at,
                               enum proto_err want, int rep)
{
    union parsed out;
    size_t consumed;
    enum proto_err err;

    for (size_t n = 0; n <= len; n++) {
        int rc = parse_exact(parse, msg, n, &out, &consumed, &err);
        if (rc != (n < at ? RES_AGAIN : RES_ERROR))
            fail_msg("prefix %zu of %zu bytes (bad at %zu): status %d", n, len, at, rc);
        if (rc == RES_ERROR)
            assert_int_equal(err, want);
    }
    assert_int_equal(proto_err_rep(want), rep);
}

/* Asserts a datagram of `len` bytes is rejected with `want`. */
static void assert_udp_rejected(const uint8_t *dgram, size_t len, enum proto_err want)
{
    struct proto_addr a;
    size_t hdr_len;
    enum proto_err err;

    int rc = parse_exact(parse_udp, dgram, len, &a, &hdr_len, &err);
    if (rc != RES_ERROR || err != want)
        fail_msg("%zu-byte datagram: status %d err %d, want error %d", len, rc, err, want);
}

/* Asserts every proper prefix of a valid UDP header is TRUNCATED: datagrams
 * arrive whole, so a short one is never NEED_MORE. */
static void assert_every_prefix_truncated(const uint8_t *hdr, size_t hdr_len)
{
    for (size_t n = 0; n < hdr_len; n++)
        assert_udp_rejected(hdr, n, PROTO_E_TRUNCATED);
}

/* ---------------------------------------------------------------------------
 * Message builders: the wire layout written out once, from the RFC. */

/* VER NMETHODS METHODS... */
static size_t build_greeting(uint8_t *buf, const uint8_t *methods, size_t n)
{
    buf[0] = SOCKS5_VERSION;
    buf[1] = (uint8_t)n;
    memcpy(buf + 2, methods, n);
    return 2 + n;
}

/* RFC 1929: VER ULEN UNAME PLEN PASSWD */
static size_t build_userpass(uint8_t *buf, const char *user, size_t ulen, const char *pass,
                             size_t plen)
{
    size_t n = 0;
    buf[n++] = SOCKS5_USERPASS_VERSION;
    buf[n++] = (uint8_t)ulen;
    memcpy(buf + n, user, ulen);
    n += ulen;
    buf[n++] = (uint8_t)plen;
    memcpy(buf + n, pass, plen);
    return n + plen;
}

/* ATYP ADDR PORT; for a domain ADDR is a length byte and the name. */
static size_t build_addr(uint8_t *buf, uint8_t atyp, const void *addr, size_t addr_len,
                         uint16_t port)
{
    size_t n = 0;
    buf[n++] = atyp;
    if (atyp == SOCKS5_ATYP_DOMAIN)
        buf[n++] = (uint8_t)addr_len;
    memcpy(buf + n, addr, addr_len);
    n += addr_len;
    buf[n++] = (uint8_t)(port >> 8);
    buf[n++] = (uint8_t)port;
    return n;
}

/* VER CMD RSV DST.ADDR DST.PORT */
static size_t build_request(uint8_t *buf, uint8_t cmd, uint8_t atyp, const void *addr,
                            size_t addr_len, uint16_t port)
{
    buf[0] = SOCKS5_VERSION;
    buf[1] = cmd;
    buf[2] = 0;
    return 3 + build_addr(buf + 3, atyp, addr, addr_len, port);
}

/* RSV(2) FRAG DST.ADDR DST.PORT */
static size_t build_udp(uint8_t *buf, uint8_t frag, uint8_t atyp, const void *addr, size_t addr_len,
                        uint16_t port)
{
    buf[0] = buf[1] = 0;
    buf[2] = frag;
    return 3 + build_addr(buf + 3, atyp, addr, addr_len, port);
}

/* Fills `s` with `len` distinct-ish printable bytes, so a misplaced copy shows. */
static void fill_pattern(char *s, size_t len, char base)
{
    for (size_t i = 0; i < len; i++)
        s[i] = (char)(base + i % 26);
}

/* Asserts a decoded address is the one build_addr was given. */
static void assert_addr(const struct proto_addr *a, uint8_t atyp, const void *addr, size_t addr_len,
                        uint16_t port)
{
    assert_int_equal(a->atyp, atyp);
    assert_int_equal(a->port, port);
    if (atyp == SOCKS5_ATYP_DOMAIN) {
        assert_int_equal(a->name_len, addr_len);
        assert_memory_equal(a->u.name, addr, addr_len);
        assert_int_equal(a->u.name[addr_len], '\0');
    } else {
        assert_memory_equal(a->u.ip6, addr, addr_len); /* ip4 and ip6 share the start */
    }
}

static struct sockaddr_in sockaddr4(const uint8_t ip[4], uint16_t port)
{
    struct sockaddr_in s = {.sin_family = AF_INET, .sin_port = htons(port)};
    memcpy(&s.sin_addr, ip, 4);
    return s;
}

static struct sockaddr_in6 sockaddr6(const uint8_t ip[16], uint16_t port)
{
    struct sockaddr_in6 s = {.sin6_family = AF_INET6, .sin6_port = htons(port)};
    memcpy(&s.sin6_addr, ip, 16);
    return s;
}

/* ---------------------------------------------------------------------------
 * Greeting: VER NMETHODS METHODS (RFC 1928 section 3). */

TEST(greeting_with_1_to_255_methods_is_accepted)
{
    uint8_t methods[255], buf[BUF_MAX];
    struct proto_greeting g;

    for (size_t i = 0; i < sizeof methods; i++)
        methods[i] = (uint8_t)(255 - i); /* distinct values, 0xFF first */
    for (size_t n = 1; n <= 255; n++) {
        size_t len = build_greeting(buf, methods, n);
        assert_done(parse_greeting, buf, len, &g, len);
        assert_int_equal(g.nmethods, n);
        assert_memory_equal(g.methods, methods, n);
    }
}

TEST(greeting_version_4_is_rejected)
{
    /* A SOCKS4 CONNECT starts with 0x04: refuse it at the first byte. */
    const uint8_t msg[] = {0x04, 0x01, 0x00, 0x50, 192, 0, 2, 1, 0};
    assert_rejected_at(parse_greeting, msg, sizeof msg, 1, PROTO_E_VERSION,
                       SOCKS5_REP_GENERAL_FAILURE);
}

TEST(greeting_with_0_methods_is_rejected)
{
    const uint8_t msg[] = {0x05, 0x00, 0x00};
    assert_rejected_at(parse_greeting, msg, sizeof msg, 2, PROTO_E_NMETHODS, -1);
}

TEST(greeting_byte_by_byte_needs_more_until_complete)
{
    const uint8_t methods[] = {0x00, 0x01, 0x02};
    uint8_t buf[BUF_MAX];
    struct proto_greeting g;
    size_t len = build_greeting(buf, methods, sizeof methods);

    assert_complete_only_at_end(parse_greeting, buf, len, &g);
    assert_int_equal(g.nmethods, 3);
    assert_memory_equal(g.methods, methods, 3);
}

TEST(coalesced_handshake_parses_each_message_in_turn_leaving_early_data)
{
    /* A client that pipelines greeting, credentials, request and its first
     * payload bytes in one segment: each parser takes exactly its message. */
    static const char early[] = "GET / HTTP/1.1\r\n";
    const uint8_t methods[] = {SOCKS5_METHOD_USERPASS};
    uint8_t buf[BUF_MAX];
    union parsed out;
    size_t len = 0, pos = 0, g_len, u_len, r_len;

    len += g_len = build_greeting(buf + len, methods, sizeof methods);
    len += u_len = build_userpass(buf + len, "alice", 5, "s3cret", 6);
    len += r_len =
        build_request(buf + len, SOCKS5_CMD_CONNECT, SOCKS5_ATYP_DOMAIN, DOMAIN, DOMAIN_LEN, 443);
    memcpy(buf + len, early, sizeof early - 1);
    len += sizeof early - 1;

    assert_done(parse_greeting, buf + pos, len - pos, &out, g_len);
    assert_int_equal(out.g.methods[0], SOCKS5_METHOD_USERPASS);
    pos += g_len;
    assert_done(parse_userpass, buf + pos, len - pos, &out, u_len);
    assert_string_equal(out.u.user, "alice");
    assert_string_equal(out.u.pass, "s3cret");
    pos += u_len;
    assert_done(parse_request, buf + pos, len - pos, &out, r_len);
    assert_addr(&out.r.dst, SOCKS5_ATYP_DOMAIN, DOMAIN, DOMAIN_LEN, 443);
    pos += r_len;

    assert_int_equal(len - pos, sizeof early - 1);
    assert_memory_equal(buf + pos, early, sizeof early - 1);
}

/* Returns the method the server picks from a client's offer. */
static uint8_t select_from(const uint8_t *offer, size_t n_offer, const uint8_t *prefs,
                           size_t n_prefs)
{
    struct proto_greeting g = {.nmethods = (uint8_t)n_offer};
    memcpy(g.methods, offer, n_offer);
    return proto_select_method(&g, prefs, n_prefs);
}

TEST(method_selection_follows_server_preference_not_client_order)
{
    const uint8_t prefs[] = {SOCKS5_METHOD_USERPASS, SOCKS5_METHOD_NONE};
    const uint8_t offer[] = {SOCKS5_METHOD_NONE, SOCKS5_METHOD_USERPASS};
    assert_int_equal(select_from(offer, 2, prefs, 2), SOCKS5_METHOD_USERPASS);
}

TEST(method_selection_falls_back_to_next_server_preference)
{
    const uint8_t prefs[] = {SOCKS5_METHOD_USERPASS, SOCKS5_METHOD_NONE};
    const uint8_t offer[] = {SOCKS5_METHOD_GSSAPI, SOCKS5_METHOD_NONE};
    assert_int_equal(select_from(offer, 2, prefs, 2), SOCKS5_METHOD_NONE);
}

TEST(method_selection_without_common_method_is_unacceptable)
{
    /* Server requires user/pass, client offers only "no authentication". */
    const uint8_t prefs[] = {SOCKS5_METHOD_USERPASS};
    const uint8_t offer[] = {SOCKS5_METHOD_NONE};
    assert_int_equal(select_from(offer, 1, prefs, 1), SOCKS5_METHOD_UNACCEPTABLE);
}

/* ---------------------------------------------------------------------------
 * Username/password sub-negotiation (RFC 1929 section 2). */

TEST(userpass_valid_decodes_nul_terminated_strings)
{
    uint8_t buf[BUF_MAX];
    struct proto_userpass u;
    size_t len = build_userpass(buf, "alice", 5, "s3cret", 6);

    assert_done(parse_userpass, buf, len, &u, len);
    assert_int_equal(u.ulen, 5);
    assert_int_equal(u.plen, 6);
    /* The output was poisoned with 0xA5, so these also prove the NULs. */
    assert_string_equal(u.user, "alice");
    assert_string_equal(u.pass, "s3cret");
}

TEST(userpass_version_other_than_1_is_rejected)
{
    const uint8_t versions[] = {0x00, 0x02, 0x05, 0xFF};
    for (size_t i = 0; i < sizeof versions; i++) {
        uint8_t msg[] = {versions[i], 1, 'a', 1, 'b'};
        assert_rejected_at(parse_userpass, msg, sizeof msg, 1, PROTO_E_AUTH_VERSION, -1);
    }
}

TEST(userpass_empty_username_is_rejected)
{
    const uint8_t msg[] = {0x01, 0x00, 0x01, 'b'};
    assert_rejected_at(parse_userpass, msg, sizeof msg, 2, PROTO_E_AUTH_EMPTY, -1);
}

TEST(userpass_empty_password_is_rejected)
{
    const uint8_t msg[] = {0x01, 0x05, 'a', 'l', 'i', 'c', 'e', 0x00};
    assert_rejected_at(parse_userpass, msg, sizeof msg, 8, PROTO_E_AUTH_EMPTY, -1);
}

TEST(userpass_with_255_byte_username_and_password_is_accepted)
{
    char user[255], pass[255];
    uint8_t buf[BUF_MAX];
    struct proto_userpass u;
    size_t len;

    fill_pattern(user, sizeof user, 'a');
    fill_pattern(pass, sizeof pass, 'A');
    len = build_userpass(buf, user, 255, pass, 255);
    assert_int_equal(len, 1 + 1 + 255 + 1 + 255);

    assert_done(parse_userpass, buf, len, &u, len);
    assert_int_equal(u.ulen, 255);
    assert_int_equal(u.plen, 255);
    assert_memory_equal(u.user, user, 255);
    assert_memory_equal(u.pass, pass, 255);
    assert_int_equal(u.user[255], '\0');
    assert_int_equal(u.pass[255], '\0');
}

TEST(userpass_byte_by_byte_needs_more_until_complete)
{
    uint8_t buf[BUF_MAX];
    struct proto_userpass u;
    size_t len = build_userpass(buf, "bob", 3, "hunter2", 7);

    assert_complete_only_at_end(parse_userpass, buf, len, &u);
    assert_string_equal(u.user, "bob");
    assert_string_equal(u.pass, "hunter2");
}

/* ---------------------------------------------------------------------------
 * Request: VER CMD RSV ATYP DST.ADDR DST.PORT (RFC 1928 section 4). */

/* Every command with this address decodes, also when it arrives byte by byte. */
static void assert_request_decodes_for_every_cmd(uint8_t atyp, const void *addr, size_t addr_len)
{
    const uint8_t cmds[] = {SOCKS5_CMD_CONNECT, SOCKS5_CMD_BIND, SOCKS5_CMD_UDP};
    uint8_t buf[BUF_MAX];
    struct proto_request r;

    for (size_t i = 0; i < sizeof cmds; i++) {
        size_t len = build_request(buf, cmds[i], atyp, addr, addr_len, 1080);
        assert_complete_only_at_end(parse_request, buf, len, &r);
        assert_int_equal(r.cmd, cmds[i]);
        assert_addr(&r.dst, atyp, addr, addr_len, 1080);
    }
}

TEST(request_ipv4_decodes_byte_by_byte_for_connect_bind_udp)
{
    assert_request_decodes_for_every_cmd(SOCKS5_ATYP_IPV4, IP4, 4);
}

TEST(request_ipv6_decodes_byte_by_byte_for_connect_bind_udp)
{
    assert_request_decodes_for_every_cmd(SOCKS5_ATYP_IPV6, IP6, 16);
}

TEST(request_domain_decodes_byte_by_byte_for_connect_bind_udp)
{
    assert_request_decodes_for_every_cmd(SOCKS5_ATYP_DOMAIN, DOMAIN, DOMAIN_LEN);
}

/* 253 characters in labels of 63, 63, 63 and 61: the longest host name. */
static void longest_name(char name[253])
{
    memset(name, 'a', 253);
    name[63] = name[127] = name[191] = '.';
}

TEST(request_with_253_byte_host_name_is_accepted)
{
    char name[253];
    longest_name(name);
    assert_request_decodes_for_every_cmd(SOCKS5_ATYP_DOMAIN, name, sizeof name);
}

/* Asserts a request (CONNECT, BIND, UDP) and a datagram naming `sent`
 * decode to `want`, the one spelling rules and resolver both see. */
static void assert_name_becomes(const char *sent, const char *want)
{
    const uint8_t cmds[] = {SOCKS5_CMD_CONNECT, SOCKS5_CMD_BIND, SOCKS5_CMD_UDP};
    uint8_t buf[BUF_MAX];
    struct proto_request r;
    struct proto_addr a;
    size_t len;

    for (size_t i = 0; i < sizeof cmds; i++) {
        len = build_request(buf, cmds[i], SOCKS5_ATYP_DOMAIN, sent, strlen(sent), 443);
        assert_done(parse_request, buf, len, &r, len);
        assert_addr(&r.dst, SOCKS5_ATYP_DOMAIN, want, strlen(want), 443);
    }
    len = build_udp(buf, 0, SOCKS5_ATYP_DOMAIN, sent, strlen(sent), 53);
    assert_done(parse_udp, buf, len, &a, len);
    assert_addr(&a, SOCKS5_ATYP_DOMAIN, want, strlen(want), 53);
}

TEST(request_name_is_folded_to_lower_case_without_its_trailing_dot)
{
    char name[254];
    longest_name(name);
    name[253] = '.';
    assert_name_becomes("SECRET.Corp.Example.", "secret.corp.example");
    assert_name_becomes("secret.corp.example.", "secret.corp.example");
    assert_name_becomes("Under_Score-1.example", "under_score-1.example");
    assert_name_becomes("secret", "secret");
    /* IPv6 literals are addresses to the rules and to the resolver alike. */
    assert_name_becomes("::FFFF:127.0.0.1", "::ffff:127.0.0.1");
    assert_name_becomes("10.0.0.1.", "10.0.0.1");

    uint8_t buf[BUF_MAX];
    struct proto_request r;
    size_t len = build_request(buf, SOCKS5_CMD_CONNECT, SOCKS5_ATYP_DOMAIN, name, sizeof name, 1);
    assert_done(parse_request, buf, len, &r, len);
    assert_int_equal(r.dst.name_len, 253);
}

/* Asserts a request naming `bad` (len bytes) is refused with REP 4 as soon as
 * the name is complete, and a datagram naming it is rejected. */
static void assert_name_refused(const char *bad, size_t bad_len)
{
    uint8_t buf[BUF_MAX];
    size_t len = build_request(buf, SOCKS5_CMD_CONNECT, SOCKS5_ATYP_DOMAIN, bad, bad_len, 443);
    assert_rejected_at(parse_request, buf, len, 5 + bad_len, PROTO_E_HOSTNAME,
                       SOCKS5_REP_HOST_UNREACHABLE);
    len = build_udp(buf, 0, SOCKS5_ATYP_DOMAIN, bad, bad_len, 53);
    assert_udp_rejected(buf, len, PROTO_E_HOSTNAME);
}

TEST(request_name_outside_host_name_syntax_is_refused_with_host_unreachable)
{
    static const char *const bad[] = {
        "secret.corp.exampl\\e", /* a resolver reads the escape as 'e' */
        "secret.corp.example\\.",
        "secret\\046corp.example",
        "secret.corp.example..",
        "a..example",
        ".example",
        ".",
        "..",
        "exa mple.com",
        "example.com/x",
        "ex%61mple.com",
        "*.example.com",
        "fe80::1%eth0",
        "[::1]",
        "host:80",
        "caf\xc3\xa9.example",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_name_refused(bad[i], strlen(bad[i]));
    /* The name a C string would make of it is not the name that was sent. */
    assert_name_refused("evil.com\0.example.com", 21);
}

TEST(request_name_with_long_label_or_over_253_bytes_is_refused)
{
    char name[255];
    longest_name(name);
    memset(name + 253, 'a', 2);
    assert_name_refused(name, 254); /* fifth label: 254 bytes */
    name[253] = '.';
    name[254] = '.';
    assert_name_refused(name, 255);
    memset(name, 'b', 64);
    assert_name_refused(name, 64); /* one label of 64 */
    assert_name_refused(name, 255);
}

TEST(request_port_is_big_endian)
{
    /* Literal wire bytes, not build_request, so the byte order is not
     * checked against itself. */
    const struct {
        uint8_t hi, lo;
        uint16_t port;
    } cases[] = {{0x00, 0x50, 80}, {0x01, 0x00, 256}, {0x12, 0x34, 0x1234}, {0xFF, 0xFF, 65535}};

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const uint8_t msg[] = {5, 1, 0, 1, 192, 0, 2, 1, cases[i].hi, cases[i].lo};
        struct proto_request r;
        assert_done(parse_request, msg, sizeof msg, &r, sizeof msg);
        assert_int_equal(r.dst.port, cases[i].port);
    }
}

TEST(request_nonzero_rsv_is_ignored)
{
    const uint8_t rsvs[] = {0x01, 0x80, 0xFF};
    uint8_t buf[BUF_MAX];
    struct proto_request r;

    for (size_t i = 0; i < sizeof rsvs; i++) {
        size_t len = build_request(buf, SOCKS5_CMD_CONNECT, SOCKS5_ATYP_IPV4, IP4, 4, 80);
        buf[2] = rsvs[i];
        assert_done(parse_request, buf, len, &r, len);
        assert_addr(&r.dst, SOCKS5_ATYP_IPV4, IP4, 4, 80);
    }
}

TEST(request_version_other_than_5_is_rejected_with_general_failure)
{
    const uint8_t versions[] = {0x00, 0x04, 0x06, 0xFF};
    uint8_t buf[BUF_MAX];

    for (size_t i = 0; i < sizeof versions; i++) {
        size_t len = build_request(buf, SOCKS5_CMD_CONNECT, SOCKS5_ATYP_IPV4, IP4, 4, 80);
        buf[0] = versions[i];
        assert_rejected_at(parse_request, buf, len, 1, PROTO_E_VERSION, SOCKS5_REP_GENERAL_FAILURE);
    }
}

TEST(request_unknown_cmd_is_rejected_with_command_not_supported)
{
    const uint8_t cmds[] = {0x00, 0x04, 0xFF};
    uint8_t buf[BUF_MAX];

    for (size_t i = 0; i < sizeof cmds; i++) {
        size_t len = build_request(buf, cmds[i], SOCKS5_ATYP_IPV4, IP4, 4, 80);
        assert_rejected_at(parse_request, buf, len, 2, PROTO_E_CMD, SOCKS5_REP_CMD_UNSUPPORTED);
    }
}

TEST(request_unknown_atyp_is_rejected_with_address_type_not_supported)
{
    const uint8_t atyps[] = {0x00, 0x02, 0x05};
    for (size_t i = 0; i < sizeof atyps; i++) {
        const uint8_t msg[] = {5, SOCKS5_CMD_CONNECT, 0, atyps[i], 192, 0, 2, 1, 0, 80};
        assert_rejected_at(parse_request, msg, sizeof msg, 4, PROTO_E_ATYP,
                           SOCKS5_REP_ATYP_UNSUPPORTED);
    }
}

TEST(request_empty_domain_is_rejected_with_general_failure)
{
    const uint8_t msg[] = {5, SOCKS5_CMD_CONNECT, 0, SOCKS5_ATYP_DOMAIN, 0, 0, 80};
    assert_rejected_at(parse_request, msg, sizeof msg, 5, PROTO_E_DOMAIN_EMPTY,
                       SOCKS5_REP_GENERAL_FAILURE);
}

/* ---------------------------------------------------------------------------
 * UDP request header: RSV FRAG ATYP DST.ADDR DST.PORT DATA (section 7). */

/* A datagram with this address and a payload parses, with hdr_len at DATA. */
static void assert_udp_parses(uint8_t atyp, const void *addr, size_t addr_len, size_t want)
{
    static const char payload[] = "payload";
    uint8_t buf[BUF_MAX];
    struct proto_addr a;
    size_t len = build_udp(buf, 0, atyp, addr, addr_len, 53);

    assert_int_equal(len, want);
    memcpy(buf + len, payload, sizeof payload - 1);
    assert_done(parse_udp, buf, len + sizeof payload - 1, &a, want);
    assert_addr(&a, atyp, addr, addr_len, 53);
    /* A datagram without payload is still whole. */
    assert_done(parse_udp, buf, len, &a, want);
}

TEST(udp_ipv4_header_is_10_bytes)
{
    assert_udp_parses(SOCKS5_ATYP_IPV4, IP4, 4, 10);
}

TEST(udp_ipv6_header_is_22_bytes)
{
    assert_udp_parses(SOCKS5_ATYP_IPV6, IP6, 16, 22);
}

TEST(udp_domain_header_is_7_bytes_plus_name)
{
    assert_udp_parses(SOCKS5_ATYP_DOMAIN, DOMAIN, DOMAIN_LEN, 7 + DOMAIN_LEN);
}

TEST(udp_nonzero_frag_is_rejected)
{
    const uint8_t frags[] = {0x01, 0x7F, 0x80, 0xFF};
    uint8_t buf[BUF_MAX];

    for (size_t i = 0; i < sizeof frags; i++) {
        size_t len = build_udp(buf, frags[i], SOCKS5_ATYP_IPV4, IP4, 4, 53);
        assert_udp_rejected(buf, len, PROTO_E_FRAG);
    }
}

TEST(udp_ipv4_header_shorter_than_10_bytes_is_truncated)
{
    uint8_t buf[BUF_MAX];
    assert_every_prefix_truncated(buf, build_udp(buf, 0, SOCKS5_ATYP_IPV4, IP4, 4, 53));
}

TEST(udp_ipv6_header_shorter_than_22_bytes_is_truncated)
{
    uint8_t buf[BUF_MAX];
    assert_every_prefix_truncated(buf, build_udp(buf, 0, SOCKS5_ATYP_IPV6, IP6, 16, 53));
}

TEST(udp_domain_header_shorter_than_its_name_is_truncated)
{
    uint8_t buf[BUF_MAX];
    size_t len = build_udp(buf, 0, SOCKS5_ATYP_DOMAIN, DOMAIN, DOMAIN_LEN, 53);

    assert_every_prefix_truncated(buf, len);
    /* A name length that points past the end of the whole datagram. */
    buf[4] = 200;
    assert_udp_rejected(buf, len, PROTO_E_TRUNCATED);
}

TEST(udp_unknown_atyp_and_empty_domain_are_rejected)
{
    const uint8_t bad_atyp[] = {0, 0, 0, 0x02, 192, 0, 2, 1, 0, 53};
    const uint8_t empty_name[] = {0, 0, 0, SOCKS5_ATYP_DOMAIN, 0, 0, 53};
    assert_udp_rejected(bad_atyp, sizeof bad_atyp, PROTO_E_ATYP);
    assert_udp_rejected(empty_name, sizeof empty_name, PROTO_E_DOMAIN_EMPTY);
}

/* ---------------------------------------------------------------------------
 * Encoders. */

/* One signature for all encoders, for the capacity checks. */
typedef size_t (*encoder_fn)(uint8_t *out, size_t cap, const struct sockaddr *sa);

static size_t enc_method(uint8_t *out, size_t cap, const struct sockaddr *sa)
{
    (void)sa;
    return proto_encode_method(out, cap, SOCKS5_METHOD_USERPASS);
}

static size_t enc_userpass(uint8_t *out, size_t cap, const struct sockaddr *sa)
{
    (void)sa;
    return proto_encode_userpass_reply(out, cap, 0x00);
}

static size_t enc_reply(uint8_t *out, size_t cap, const struct sockaddr *sa)
{
    return proto_encode_reply(out, cap, SOCKS5_REP_SUCCEEDED, sa);
}

static size_t enc_udp(uint8_t *out, size_t cap, const struct sockaddr *sa)
{
    return proto_encode_udp_header(out, cap, sa);
}

/* Encodes into an exact-size heap buffer of every capacity up to `want`:
 * anything smaller returns 0 and (under ASan) writes nothing past cap;
 * exactly `want` succeeds. Returns the encoding, in `out`. */
static void assert_needs_cap(encoder_fn enc, const struct sockaddr *sa, size_t want, uint8_t *out)
{
    for (size_t cap = 0; cap <= want; cap++) {
        uint8_t *buf = malloc(cap);
        size_t n;

        assert_true(buf != NULL || cap == 0);
        n = enc(buf, cap, sa);
        if (n != (cap < want ? 0 : want))
            fail_msg("cap %zu: wrote %zu, want %zu", cap, n, cap < want ? 0 : want);
        if (n)
            memcpy(out, buf, n);
        free(buf);
    }
}

TEST(method_reply_is_version_and_method)
{
    const uint8_t want[] = {0x05, 0x02};
    uint8_t out[2];
    assert_needs_cap(enc_method, NULL, 2, out);
    assert_memory_equal(out, want, 2);
}

TEST(userpass_reply_is_version_1_and_status)
{
    const uint8_t want[] = {0x01, 0x00};
    uint8_t out[2];
    assert_needs_cap(enc_userpass, NULL, 2, out);
    assert_memory_equal(out, want, 2);
    /* Any non-zero status means failure (RFC 1929); it is passed through. */
    assert_int_equal(proto_encode_userpass_reply(out, sizeof out, 0x01), 2);
    assert_int_equal(out[1], 0x01);
}

/* Asserts the reply and UDP header encodings of `sa` carry `addr` (the bytes
 * after VER REP RSV / RSV RSV FRAG), each needing exactly its length. */
static void assert_encodes_addr(const struct sockaddr *sa, const uint8_t *addr, size_t addr_len)
{
    const uint8_t reply_head[] = {0x05, SOCKS5_REP_SUCCEEDED, 0x00};
    const uint8_t udp_head[] = {0x00, 0x00, 0x00};
    uint8_t out[PROTO_REPLY_MAX];

    assert_true(3 + addr_len <= PROTO_REPLY_MAX);
    assert_needs_cap(enc_reply, sa, 3 + addr_len, out);
    assert_memory_equal(out, reply_head, 3);
    assert_memory_equal(out + 3, addr, addr_len);

    assert_needs_cap(enc_udp, sa, 3 + addr_len, out);
    assert_memory_equal(out, udp_head, 3);
    assert_memory_equal(out + 3, addr, addr_len);
}

TEST(reply_with_null_bnd_is_ipv4_any_port_0)
{
    const uint8_t want[] = {SOCKS5_ATYP_IPV4, 0, 0, 0, 0, 0, 0};
    assert_encodes_addr(NULL, want, sizeof want);
}

TEST(reply_with_ipv4_bnd_is_atyp_1)
{
    const uint8_t want[] = {SOCKS5_ATYP_IPV4, 192, 0, 2, 1, 0x04, 0x38};
    struct sockaddr_in s = sockaddr4(IP4, 1080);
    assert_encodes_addr((const struct sockaddr *)&s, want, sizeof want);
}

TEST(reply_with_ipv6_bnd_is_atyp_4)
{
    uint8_t want[1 + 16 + 2] = {SOCKS5_ATYP_IPV6};
    struct sockaddr_in6 s = sockaddr6(IP6, 443);

    memcpy(want + 1, IP6, 16);
    want[17] = 0x01;
    want[18] = 0xBB;
    assert_encodes_addr((const struct sockaddr *)&s, want, sizeof want);
}

TEST(reply_with_ipv4_mapped_ipv6_bnd_is_encoded_as_ipv4)
{
    /* A dual-stack socket reports IPv4 peers as ::ffff:a.b.c.d; clients
     * expect the plain IPv4 address. */
    const uint8_t mapped[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 192, 0, 2, 1};
    const uint8_t want[] = {SOCKS5_ATYP_IPV4, 192, 0, 2, 1, 0x04, 0x38};
    struct sockaddr_in6 s = sockaddr6(mapped, 1080);
    assert_encodes_addr((const struct sockaddr *)&s, want, sizeof want);
}

TEST(reply_carries_every_rep_code_in_byte_1)
{
    for (unsigned rep = SOCKS5_REP_SUCCEEDED; rep <= SOCKS5_REP_ATYP_UNSUPPORTED; rep++) {
        const uint8_t want[] = {0x05, (uint8_t)rep, 0x00, SOCKS5_ATYP_IPV4, 0, 0, 0, 0, 0, 0};
        uint8_t out[PROTO_REPLY_MAX];
        assert_int_equal(proto_encode_reply(out, sizeof out, (uint8_t)rep, NULL), sizeof want);
        assert_memory_equal(out, want, sizeof want);
    }
}

/* Encoding a source address as a UDP header and parsing it back gives the
 * same address, and the header ends where the payload would start. */
static void assert_udp_round_trip(const struct sockaddr *sa, socklen_t sa_len, size_t want_len)
{
    uint8_t buf[PROTO_UDP_HEADER_MAX];
    struct proto_addr a;
    struct sockaddr_storage back;
    size_t len = proto_encode_udp_header(buf, sizeof buf, sa);

    assert_int_equal(len, want_len);
    assert_done(parse_udp, buf, len, &a, len);
    assert_int_equal(proto_addr_to_sockaddr(&a, &back), sa_len);
    assert_memory_equal(&back, sa, sa_len);
}

TEST(udp_header_ipv4_encode_then_parse_round_trips)
{
    struct sockaddr_in s = sockaddr4(IP4, 5353);
    assert_udp_round_trip((const struct sockaddr *)&s, sizeof s, 10);
}

TEST(udp_header_ipv6_encode_then_parse_round_trips)
{
    struct sockaddr_in6 s = sockaddr6(IP6, 5353);
    assert_udp_round_trip((const struct sockaddr *)&s, sizeof s, 22);
}

/* ---------------------------------------------------------------------------
 * RFC 1961 framing. */

TEST(gss_token_message_decodes_byte_by_byte)
{
    const uint8_t msg[] = {0x01, 0x01, 0x00, 0x03, 0xAA, 0xBB, 0xCC};
    struct proto_gss_msg m;

    assert_complete_only_at_end(parse_gss_auth, msg, sizeof msg, &m);
    assert_int_equal(m.mtyp, SOCKS5_GSS_AUTH);
    assert_int_equal(m.len, 3);
}

TEST(gss_token_points_into_the_buffer_and_leaves_what_follows)
{
    const uint8_t msg[] = {0x01, 0x01, 0x00, 0x02, 0x10, 0x20, 0x05, 0x00};
    struct proto_gss_msg m;
    size_t used;
    enum proto_err err;

    assert_int_equal(proto_parse_gss(msg, sizeof msg, SOCKS5_GSS_AUTH, GSS_MAX, &m, &used, &err),
                     RES_DONE);
    assert_int_equal(used, 6);
    assert_ptr_equal(m.token, msg + 4);
    assert_int_equal(m.token[1], 0x20);
}

TEST(gss_abort_is_two_bytes_in_any_phase)
{
    const uint8_t msg[] = {0x01, 0xFF, 0x01, 0x01};
    const uint8_t phases[] = {SOCKS5_GSS_AUTH, SOCKS5_GSS_PROT, SOCKS5_GSS_ENCAP};
    struct proto_gss_msg m;
    size_t used;
    enum proto_err err;

    for (size_t i = 0; i < sizeof phases; i++) {
        assert_int_equal(proto_parse_gss(msg, sizeof msg, phases[i], GSS_MAX, &m, &used, &err),
                         RES_DONE);
        assert_int_equal(m.mtyp, SOCKS5_GSS_ABORT);
        assert_int_equal(m.len, 0);
        assert_int_equal(used, 2);
    }
}

TEST(gss_version_other_than_1_is_rejected)
{
    const uint8_t msg[] = {0x05, 0x01, 0x00, 0x01, 0x00};
    assert_rejected_at(parse_gss_auth, msg, sizeof msg, 1, PROTO_E_GSS_VERSION, -1);
}

TEST(gss_message_type_of_another_phase_is_rejected)
{
    const uint8_t types[] = {0x00, SOCKS5_GSS_PROT, SOCKS5_GSS_ENCAP, 0x04, 0xFE};
    for (size_t i = 0; i < sizeof types; i++) {
        const uint8_t msg[] = {0x01, types[i], 0x00, 0x01, 0x00};
        assert_rejected_at(parse_gss_auth, msg, sizeof msg, 2, PROTO_E_GSS_MTYP, -1);
    }
}

TEST(gss_zero_length_token_is_rejected)
{
    const uint8_t msg[] = {0x01, 0x01, 0x00, 0x00};
    assert_rejected_at(parse_gss_auth, msg, sizeof msg, 4, PROTO_E_GSS_EMPTY, -1);
}

TEST(gss_token_over_the_limit_is_rejected_before_it_arrives)
{
    const uint8_t over[] = {0x01, 0x01, (GSS_MAX + 1) >> 8, (GSS_MAX + 1) & 0xFF};
    const uint8_t max[] = {0x01, 0x01, 0xFF, 0xFF};
    assert_rejected_at(parse_gss_auth, over, sizeof over, 4, PROTO_E_GSS_TOO_LONG, -1);
    assert_rejected_at(parse_gss_auth, max, sizeof max, 4, PROTO_E_GSS_TOO_LONG, -1);
}

TEST(gss_token_of_exactly_the_limit_is_accepted)
{
    uint8_t *msg = calloc(1, 4 + GSS_MAX);
    struct proto_gss_msg m;

    assert_non_null(msg);
    msg[0] = 0x01;
    msg[1] = 0x01;
    msg[2] = GSS_MAX >> 8;
    msg[3] = GSS_MAX & 0xFF;
    assert_done(parse_gss_auth, msg, 4 + GSS_MAX, &m, 4 + GSS_MAX);
    assert_int_equal(m.len, GSS_MAX);
    free(msg);
}

TEST(gss_header_and_abort_encode_as_rfc_1961_says)
{
    uint8_t out[4];
    const uint8_t header[] = {0x01, 0x03, 0x12, 0x34};
    const uint8_t abort_msg[] = {0x01, 0xFF};

    assert_int_equal(proto_encode_gss_header(out, sizeof out, SOCKS5_GSS_ENCAP, 0x1234), 4);
    assert_memory_equal(out, header, 4);
    assert_int_equal(proto_encode_gss_header(out, 3, SOCKS5_GSS_ENCAP, 1), 0);
    assert_int_equal(proto_encode_gss_abort(out, sizeof out), 2);
    assert_memory_equal(out, abort_msg, 2);
    assert_int_equal(proto_encode_gss_abort(out, 1), 0);
}

/* ---------------------------------------------------------------------------
 * Names, reply codes and sockaddr conversion. */

TEST(rep_str_names_every_code)
{
    for (unsigned rep = 0; rep <= 0xFF; rep++) {
        const char *s = proto_rep_str((uint8_t)rep);
        assert_non_null(s);
        assert_true(s[0] != '\0');
    }
}

TEST(err_str_names_every_error)
{
    for (int e = PROTO_E_NONE; e <= PROTO_E_GSS_TOO_LONG + 1; e++) {
        const char *s = proto_err_str((enum proto_err)e);
        assert_non_null(s);
        assert_true(s[0] != '\0');
    }
}

TEST(err_rep_replies_only_to_request_errors)
{
    /* Greeting and auth errors have no reply in the request format: the
     * connection is closed (-1). */
    assert_int_equal(proto_err_rep(PROTO_E_NONE), -1);
    assert_int_equal(proto_err_rep(PROTO_E_NMETHODS), -1);
    assert_int_equal(proto_err_rep(PROTO_E_AUTH_VERSION), -1);
    assert_int_equal(proto_err_rep(PROTO_E_AUTH_EMPTY), -1);
    assert_int_equal(proto_err_rep(PROTO_E_TRUNCATED), -1);
    assert_int_equal(proto_err_rep(PROTO_E_FRAG), -1);
    assert_int_equal(proto_err_rep(PROTO_E_GSS_VERSION), -1);
    assert_int_equal(proto_err_rep(PROTO_E_GSS_MTYP), -1);
    assert_int_equal(proto_err_rep(PROTO_E_GSS_EMPTY), -1);
    assert_int_equal(proto_err_rep(PROTO_E_GSS_TOO_LONG), -1);
    assert_int_equal(proto_err_rep(PROTO_E_VERSION), SOCKS5_REP_GENERAL_FAILURE);
    assert_int_equal(proto_err_rep(PROTO_E_DOMAIN_EMPTY), SOCKS5_REP_GENERAL_FAILURE);
    assert_int_equal(proto_err_rep(PROTO_E_HOSTNAME), SOCKS5_REP_HOST_UNREACHABLE);
    assert_int_equal(proto_err_rep(PROTO_E_CMD), SOCKS5_REP_CMD_UNSUPPORTED);
    assert_int_equal(proto_err_rep(PROTO_E_ATYP), SOCKS5_REP_ATYP_UNSUPPORTED);
}

TEST(addr_to_sockaddr_fills_ipv4)
{
    struct proto_addr a = {.atyp = SOCKS5_ATYP_IPV4, .port = 1080};
    struct sockaddr_storage ss;
    struct sockaddr_in want = sockaddr4(IP4, 1080);

    memcpy(a.u.ip4, IP4, 4);
    assert_int_equal(proto_addr_to_sockaddr(&a, &ss), sizeof want);
    assert_memory_equal(&ss, &want, sizeof want);
}

TEST(addr_to_sockaddr_fills_ipv6)
{
    struct proto_addr a = {.atyp = SOCKS5_ATYP_IPV6, .port = 443};
    struct sockaddr_storage ss;
    struct sockaddr_in6 want = sockaddr6(IP6, 443);

    memcpy(a.u.ip6, IP6, 16);
    assert_int_equal(proto_addr_to_sockaddr(&a, &ss), sizeof want);
    assert_memory_equal(&ss, &want, sizeof want);
}

TEST(addr_to_sockaddr_refuses_domain)
{
    /* A domain needs resolving first; the conversion must not guess. */
    struct proto_addr a = {.atyp = SOCKS5_ATYP_DOMAIN, .name_len = DOMAIN_LEN, .port = 80};
    struct sockaddr_storage ss;

    memcpy(a.u.name, DOMAIN, sizeof DOMAIN);
    assert_int_equal(proto_addr_to_sockaddr(&a, &ss), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(greeting_with_1_to_255_methods_is_accepted),
        cmocka_unit_test(greeting_version_4_is_rejected),
        cmocka_unit_test(greeting_with_0_methods_is_rejected),
        cmocka_unit_test(greeting_byte_by_byte_needs_more_until_complete),
        cmocka_unit_test(coalesced_handshake_parses_each_message_in_turn_leaving_early_data),
        cmocka_unit_test(method_selection_follows_server_preference_not_client_order),
        cmocka_unit_test(method_selection_falls_back_to_next_server_preference),
        cmocka_unit_test(method_selection_without_common_method_is_unacceptable),

        cmocka_unit_test(userpass_valid_decodes_nul_terminated_strings),
        cmocka_unit_test(userpass_version_other_than_1_is_rejected),
        cmocka_unit_test(userpass_empty_username_is_rejected),
        cmocka_unit_test(userpass_empty_password_is_rejected),
        cmocka_unit_test(userpass_with_255_byte_username_and_password_is_accepted),
        cmocka_unit_test(userpass_byte_by_byte_needs_more_until_complete),

        cmocka_unit_test(request_ipv4_decodes_byte_by_byte_for_connect_bind_udp),
        cmocka_unit_test(request_ipv6_decodes_byte_by_byte_for_connect_bind_udp),
        cmocka_unit_test(request_domain_decodes_byte_by_byte_for_connect_bind_udp),
        cmocka_unit_test(request_with_253_byte_host_name_is_accepted),
        cmocka_unit_test(request_name_is_folded_to_lower_case_without_its_trailing_dot),
        cmocka_unit_test(request_name_outside_host_name_syntax_is_refused_with_host_unreachable),
        cmocka_unit_test(request_name_with_long_label_or_over_253_bytes_is_refused),
        cmocka_unit_test(request_port_is_big_endian),
        cmocka_unit_test(request_nonzero_rsv_is_ignored),
        cmocka_unit_test(request_version_other_than_5_is_rejected_with_general_failure),
        cmocka_unit_test(request_unknown_cmd_is_rejected_with_command_not_supported),
        cmocka_unit_test(request_unknown_atyp_is_rejected_with_address_type_not_supported),
        cmocka_unit_test(request_empty_domain_is_rejected_with_general_failure),

        cmocka_unit_test(udp_ipv4_header_is_10_bytes),
        cmocka_unit_test(udp_ipv6_header_is_22_bytes),
        cmocka_unit_test(udp_domain_header_is_7_bytes_plus_name),
        cmocka_unit_test(udp_nonzero_frag_is_rejected),
        cmocka_unit_test(udp_ipv4_header_shorter_than_10_bytes_is_truncated),
        cmocka_unit_test(udp_ipv6_header_shorter_than_22_bytes_is_truncated),
        cmocka_unit_test(udp_domain_header_shorter_than_its_name_is_truncated),
        cmocka_unit_test(udp_unknown_atyp_and_empty_domain_are_rejected),

        cmocka_unit_test(method_reply_is_version_and_method),
        cmocka_unit_test(userpass_reply_is_version_1_and_status),
        cmocka_unit_test(reply_with_null_bnd_is_ipv4_any_port_0),
        cmocka_unit_test(reply_with_ipv4_bnd_is_atyp_1),
        cmocka_unit_test(reply_with_ipv6_bnd_is_atyp_4),
        cmocka_unit_test(reply_with_ipv4_mapped_ipv6_bnd_is_encoded_as_ipv4),
        cmocka_unit_test(reply_carries_every_rep_code_in_byte_1),
        cmocka_unit_test(udp_header_ipv4_encode_then_parse_round_trips),
        cmocka_unit_test(udp_header_ipv6_encode_then_parse_round_trips),

        cmocka_unit_test(gss_token_message_decodes_byte_by_byte),
        cmocka_unit_test(gss_token_points_into_the_buffer_and_leaves_what_follows),
        cmocka_unit_test(gss_abort_is_two_bytes_in_any_phase),
        cmocka_unit_test(gss_version_other_than_1_is_rejected),
        cmocka_unit_test(gss_message_type_of_another_phase_is_rejected),
        cmocka_unit_test(gss_zero_length_token_is_rejected),
        cmocka_unit_test(gss_token_over_the_limit_is_rejected_before_it_arrives),
        cmocka_unit_test(gss_token_of_exactly_the_limit_is_accepted),
        cmocka_unit_test(gss_header_and_abort_encode_as_rfc_1961_says),
        cmocka_unit_test(rep_str_names_every_code),
        cmocka_unit_test(err_str_names_every_error),
        cmocka_unit_test(err_rep_replies_only_to_request_errors),
        cmocka_unit_test(addr_to_sockaddr_fills_ipv4),
        cmocka_unit_test(addr_to_sockaddr_fills_ipv6),
        cmocka_unit_test(addr_to_sockaddr_refuses_domain),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
