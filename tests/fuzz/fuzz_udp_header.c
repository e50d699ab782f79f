/* libFuzzer target: the SOCKS5 UDP request header (RFC 1928 section 7).
 *
 * Input: one whole datagram, as recvfrom() hands it over (libFuzzer's buffer
 * is exactly `size` bytes, so ASan reports any read past it).
 *
 * Traps on: an answer that differs from a reference reading of the header
 * (status, error, hdr_len, decoded fields); hdr_len > size; and, for an IP
 * address, any failure to round-trip it through proto_addr_to_sockaddr,
 * proto_encode_udp_header and the parser again.
 *
 * The same input also goes through udpchain_strip (the relays' headers in
 * front of an answer from a chain of hops), split after its first byte's
 * worth into the prefix we send and the answer: it must return -1 or a
 * length within the answer, and 0 for an empty prefix. */
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto.h"
#include "spec_name.h"
#include "udpchain.h"

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            __builtin_trap();                                                                      \
    } while (0)

static const uint8_t V4_MAPPED[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF};

/* Reference reading: RSV(2) FRAG ATYP ADDR PORT. A datagram is whole, so
 * anything short of its header is TRUNCATED, never NEED_MORE. */
static int spec_udp(const uint8_t *b, size_t n, size_t *hdr_len, enum proto_err *err)
{
    char name[256];
    size_t need;

    if (n < 3)
        return *err = PROTO_E_TRUNCATED, RES_ERROR;
    if (b[2] != 0)
        return *err = PROTO_E_FRAG, RES_ERROR;
    if (n < 4)
        return *err = PROTO_E_TRUNCATED, RES_ERROR;
    switch (b[3]) {
    case SOCKS5_ATYP_IPV4:
        need = 4 + 4 + 2;
        break;
    case SOCKS5_ATYP_IPV6:
        need = 4 + 16 + 2;
        break;
    case SOCKS5_ATYP_DOMAIN:
        if (n < 5)
            return *err = PROTO_E_TRUNCATED, RES_ERROR;
        if (b[4] == 0)
            return *err = PROTO_E_DOMAIN_EMPTY, RES_ERROR;
        need = 4 + 1 + (size_t)b[4] + 2;
        if (n >= need - 2 && spec_name(b + 5, b[4], name) == 0)
            return *err = PROTO_E_HOSTNAME, RES_ERROR;
        break;
    default:
        return *err = PROTO_E_ATYP, RES_ERROR;
    }
    if (n < need)
        return *err = PROTO_E_TRUNCATED, RES_ERROR;
    *hdr_len = need;
    return RES_DONE;
}

/* The decoded address equals the header bytes (ATYP at p[0]). */
static void check_fields(const struct proto_addr *a, const uint8_t *p, size_t hdr_len)
{
    size_t port_at = hdr_len - 3 - 2;

    CHECK(a->atyp == p[0]);
    if (a->atyp == SOCKS5_ATYP_DOMAIN) {
        char want[256];
        CHECK(a->name_len == spec_name(p + 2, p[1], want));
        CHECK(memcmp(a->u.name, want, (size_t)a->name_len + 1) == 0);
    } else {
        CHECK(memcmp(a->u.ip6, p + 1, port_at - 1) == 0);
    }
    CHECK(a->port == (uint16_t)(p[port_at] << 8 | p[port_at + 1]));
}

/* Parses `n` bytes from an exact-size heap copy; must be DONE, all of it. */
static void reparse(const uint8_t *enc, size_t n, struct proto_addr *out)
{
    uint8_t *copy = malloc(n);
    size_t hdr_len = SIZE_MAX;
    enum proto_err err = PROTO_E_NONE;

    CHECK(copy != NULL);
    memcpy(copy, enc, n);
    CHECK(proto_parse_udp_header(copy, n, out, &hdr_len, &err) == RES_DONE);
    CHECK(hdr_len == n);
    free(copy);
}

/* An IP address goes to a sockaddr and back onto the wire unchanged, except
 * that an IPv4-mapped IPv6 address is sent as plain IPv4 (proto.h). */
static void check_round_trip(const struct proto_addr *a, const uint8_t *hdr, size_t hdr_len)
{
    struct sockaddr_storage ss;
    struct proto_addr back;
    uint8_t enc[PROTO_UDP_HEADER_MAX], reply[PROTO_REPLY_MAX];
    socklen_t sl = proto_addr_to_sockaddr(a, &ss);
    int mapped = a->atyp == SOCKS5_ATYP_IPV6 && memcmp(a->u.ip6, V4_MAPPED, 12) == 0;
    size_t n;

    if (a->atyp == SOCKS5_ATYP_DOMAIN) {
        CHECK(sl == 0); /* a name must be resolved, not converted */
        return;
    }
    CHECK(sl ==
          (a->atyp == SOCKS5_ATYP_IPV4 ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6)));
    n = proto_encode_udp_header(enc, sizeof enc, (const struct sockaddr *)&ss);
    CHECK(n == (mapped ? 10 : hdr_len));
    CHECK(proto_encode_udp_header(enc, n - 1, (const struct sockaddr *)&ss) == 0);
    CHECK(enc[0] == 0 && enc[1] == 0 && enc[2] == 0);
    if (!mapped) /* byte for byte, but RSV, which the parser ignores */
        CHECK(memcmp(enc + 2, hdr + 2, n - 2) == 0);

    reparse(enc, n, &back);
    CHECK(back.port == a->port);
    if (mapped)
        CHECK(back.atyp == SOCKS5_ATYP_IPV4 && memcmp(back.u.ip4, a->u.ip6 + 12, 4) == 0);
    else
        CHECK(back.atyp == a->atyp && memcmp(back.u.ip6, a->u.ip6, n - 3 - 1 - 2) == 0);

    /* A reply to a request for this address carries the same address. */
    CHECK(proto_encode_reply(reply, sizeof reply, SOCKS5_REP_SUCCEEDED,
                             (const struct sockaddr *)&ss) == n);
    CHECK(memcmp(reply + 3, enc + 3, n - 3) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_strip(const uint8_t *data, size_t size)
{
    size_t split = size ? 1 + data[0] % size : 0;
    const uint8_t *prefix = data + (size ? 1 : 0);
    size_t plen = split ? split - 1 : 0;
    long got = udpchain_strip(prefix, plen, data + split, size - split);

    CHECK(got == -1 || (got >= 0 && (size_t)got <= size - split));
    CHECK(plen > 0 || got == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct proto_addr a;
    size_t hdr_len = SIZE_MAX, want_len = 0;
    enum proto_err err = PROTO_E_NONE, want_err = PROTO_E_NONE;
    int want = spec_udp(data, size, &want_len, &want_err);

    check_strip(data, size);
    memset(&a, 0xA5, sizeof a); /* unset fields show up as garbage */
    CHECK(proto_parse_udp_header(data, size, &a, &hdr_len, &err) == want);
    if (want == RES_ERROR) {
        CHECK(err == want_err && proto_err_str(err) != NULL);
        return 0;
    }
    CHECK(hdr_len == want_len && hdr_len <= size);
    check_fields(&a, data + 3, hdr_len);
    check_round_trip(&a, data, hdr_len);
    return 0;
}
