/* PROXY protocol v1/v2 header parser. See proxyproto.h for the contract;
 * the format is HAProxy's doc/proxy-protocol.txt. */
#include "proxyproto.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

#define V1_PREFIX "PROXY "
#define V1_PREFIX_LEN (sizeof V1_PREFIX - 1)
#define V1_UNKNOWN "UNKNOWN"
#define V1_UNKNOWN_LEN (sizeof V1_UNKNOWN - 1)
#define V1_FIELDS 5 /* protocol, source, destination, source port, destination port */

#define V2_SIG_LEN 12
#define V2_CMD_LOCAL 0x0
#define V2_CMD_PROXY 0x1
#define V2_AF_INET 0x1
#define V2_AF_INET6 0x2
#define V2_AF_UNIX 0x3
#define V2_TLV_HDR 3 /* type, 16-bit length */

static enum result fail(const char **reason, const char *why)
{
    *reason = why;
    return RES_ERROR;
}

static size_t min_size(size_t a, size_t b)
{
    return a < b ? a : b;
}

/* Fills `ss` with an IPv4 (4-byte `addr`) or IPv6 (16-byte) endpoint. The
 * whole storage is zeroed first so results compare equal byte for byte. */
static void set_endpoint(struct sockaddr_storage *ss, int family, const uint8_t *addr,
                         uint16_t port)
{
    memset(ss, 0, sizeof *ss);
    if (family == AF_INET) {
        struct sockaddr_in *sin = (struct sockaddr_in *)ss;
        sin->sin_family = AF_INET;
        sin->sin_port = htons(port);
        memcpy(&sin->sin_addr, addr, 4);
    } else {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons(port);
        memcpy(&sin6->sin6_addr, addr, 16);
    }
}

/* ---- version 1: one line of text ---- */

/* A space-separated field of the v1 line (not NUL-terminated). */
struct field {
    const uint8_t *p;
    size_t n;
};

static int field_is(const struct field *f, const char *s)
{
    return f->n == strlen(s) && memcmp(f->p, s, f->n) == 0;
}

/* Finds the CRLF ending the line within the first PROXYPROTO_V1_MAX bytes.
 * Everything before it must be printable: the spec says US-ASCII text, and
 * rejecting control bytes (a lone CR or LF above all) as they arrive spots a
 * binary client early. On DONE, *line_len is the length without CRLF. */
static enum result v1_find_crlf(const uint8_t *buf, size_t len, size_t *line_len,
                                const char **reason)
{
    size_t scan = min_size(len, PROXYPROTO_V1_MAX);

    for (size_t i = 0; i < scan; i++) {
        if (buf[i] == '\r') {
            if (i + 1 >= PROXYPROTO_V1_MAX)
                return fail(reason, "v1: no CRLF within the first 107 bytes");
            if (i + 1 >= len)
                return RES_AGAIN;
            if (buf[i + 1] != '\n')
                return fail(reason, "v1: CR not followed by LF");
            *line_len = i;
            return RES_DONE;
        }
        if (buf[i] < 0x20 || buf[i] > 0x7e)
            return fail(reason, "v1: non-printable byte in the header line");
    }
    if (len >= PROXYPROTO_V1_MAX)
        return fail(reason, "v1: no CRLF within the first 107 bytes");
    return RES_AGAIN;
}

/* Splits s[0..n) at single spaces into exactly `want` fields, none empty
 * (so a double, leading or trailing space fails). Returns 1 on success. */
static int split_fields(const uint8_t *s, size_t n, struct field *f, size_t want)
{
    size_t k = 0, start = 0;

    for (size_t i = 0; i <= n; i++) {
        if (i < n && s[i] != ' ')
            continue;
        if (i == start || k == want)
            return 0;
        f[k].p = s + start;
        f[k].n = i - start;
        k++;
        start = i + 1;
    }
    return k == want;
}

/* Decimal 0..65535 without sign or leading zeros. Returns 1 on success. */
static int parse_port(const struct field *f, uint16_t *port)
{
    unsigned long v = 0;

    if (f->n == 0 || f->n > 5 || (f->n > 1 && f->p[0] == '0'))
        return 0;
    for (size_t i = 0; i < f->n; i++) {
        if (f->p[i] < '0' || f->p[i] > '9')
            return 0;
        v = v * 10 + (unsigned long)(f->p[i] - '0');
    }
    if (v > 65535)
        return 0;
    *port = (uint16_t)v;
    return 1;
}

/* An address in the text form inet_pton accepts for `family` (which, for
 * IPv4, already refuses leading zeros). `addr` receives 4 or 16 bytes. */
static int parse_addr(const struct field *f, int family, uint8_t addr[16])
{
    char text[INET6_ADDRSTRLEN];

    if (f->n >= sizeof text)
        return 0;
    memcpy(text, f->p, f->n);
    text[f->n] = '\0';
    return inet_pton(family, text, addr) == 1;
}

static enum result v1_endpoint(const struct field *addr_f, const struct field *port_f, int family,
                               struct sockaddr_storage *ss, const char **reason)
{
    uint8_t addr[16];
    uint16_t port;

    if (!parse_addr(addr_f, family, addr))
        return fail(reason, "v1: bad address for the protocol family");
    if (!parse_port(port_f, &port))
        return fail(reason, "v1: bad port (want 0..65535, no sign or leading zero)");
    set_endpoint(ss, family, addr, port);
    return RES_DONE;
}

/* Decodes the line after "PROXY " (s[0..n), CRLF excluded) into *r. */
static enum result v1_parse_line(const uint8_t *s, size_t n, struct proxyproto_result *r,
                                 const char **reason)
{
    struct field f[V1_FIELDS];
    int family;
    enum result rc;

    /* UNKNOWN carries nothing we may trust; the spec says ignore the rest. */
    if (n >= V1_UNKNOWN_LEN && memcmp(s, V1_UNKNOWN, V1_UNKNOWN_LEN) == 0 &&
        (n == V1_UNKNOWN_LEN || s[V1_UNKNOWN_LEN] == ' ')) {
        r->local = 1;
        return RES_DONE;
    }
    if (!split_fields(s, n, f, V1_FIELDS))
        return fail(reason, "v1: want exactly 5 fields separated by single spaces");
    if (field_is(&f[0], "TCP4"))
        family = AF_INET;
    else if (field_is(&f[0], "TCP6"))
        family = AF_INET6;
    else
        return fail(reason, "v1: protocol is not TCP4, TCP6 or UNKNOWN");
    rc = v1_endpoint(&f[1], &f[3], family, &r->src, reason);
    if (rc != RES_DONE)
        return rc;
    return v1_endpoint(&f[2], &f[4], family, &r->dst, reason);
}

static enum result parse_v1(const uint8_t *buf, size_t len, struct proxyproto_result *out,
                            size_t *consumed, const char **reason)
{
    struct proxyproto_result r;
    size_t line_len;
    enum result rc;

    if (memcmp(buf, V1_PREFIX, min_size(len, V1_PREFIX_LEN)) != 0)
        return fail(reason, "v1: line does not start with \"PROXY \"");
    rc = v1_find_crlf(buf, len, &line_len, reason);
    if (rc != RES_DONE)
        return rc;
    /* The prefix matched and holds no CR, so line_len >= V1_PREFIX_LEN. */
    memset(&r, 0, sizeof r);
    r.version = 1;
    rc = v1_parse_line(buf + V1_PREFIX_LEN, line_len - V1_PREFIX_LEN, &r, reason);
    if (rc != RES_DONE)
        return rc;
    *out = r;
    *consumed = line_len + 2;
    return RES_DONE;
}

/* ---- version 2: binary ---- */

/* Is the family/transport byte one the spec defines (family 0..3, transport
 * 0..2)? The spec says receivers must reject the others. */
static int v2_fam_defined(uint8_t fam)
{
    return (fam >> 4) <= V2_AF_UNIX && (fam & 0x0f) <= 2;
}

/* Size of the address block that opens the body, or 0 when the spec says the
 * address information is to be ignored (AF_UNSPEC or UNSPEC transport). */
static size_t v2_addr_len(uint8_t fam)
{
    if ((fam & 0x0f) == 0)
        return 0;
    switch (fam >> 4) {
    case V2_AF_INET:
        return 2 * 4 + 2 * 2;
    case V2_AF_INET6:
        return 2 * 16 + 2 * 2;
    case V2_AF_UNIX:
        return 2 * 108;
    default:
        return 0;
    }
}

/* TLVs must tile p[0..n) exactly: one that runs past the header means the
 * sender and we disagree on where the header ends. Contents are ignored. */
static int v2_tlvs_fit(const uint8_t *p, size_t n)
{
    size_t off = 0;

    while (off < n) {
        size_t vlen;

        if (n - off < V2_TLV_HDR)
            return 0;
        vlen = (size_t)p[off + 1] << 8 | p[off + 2];
        if (n - off - V2_TLV_HDR < vlen)
            return 0;
        off += V2_TLV_HDR + vlen;
    }
    return 1;
}

static uint16_t be16(const uint8_t *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}

/* Decodes the body p[0..n) of a PROXY command; n >= v2_addr_len(fam) was
 * checked by the caller. Leaves *r local for families without addresses. */
static enum result v2_decode_body(uint8_t fam, const uint8_t *p, size_t n,
                                  struct proxyproto_result *r, const char **reason)
{
    size_t alen = v2_addr_len(fam);

    if (alen == 0)
        return RES_DONE;
    if (!v2_tlvs_fit(p + alen, n - alen))
        return fail(reason, "v2: TLV runs past the end of the header");
    if (fam >> 4 == V2_AF_INET) {
        set_endpoint(&r->src, AF_INET, p, be16(p + 8));
        set_endpoint(&r->dst, AF_INET, p + 4, be16(p + 10));
        r->local = 0;
    } else if (fam >> 4 == V2_AF_INET6) {
        set_endpoint(&r->src, AF_INET6, p, be16(p + 32));
        set_endpoint(&r->dst, AF_INET6, p + 16, be16(p + 34));
        r->local = 0;
    }
    return RES_DONE;
}

/* Checks the 16-byte fixed part as far as it has arrived. On DONE, *body_len
 * is the validated length field. */
static enum result v2_check_fixed(const uint8_t *buf, size_t len, size_t *body_len,
                                  const char **reason)
{
    static const uint8_t sig[V2_SIG_LEN] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                            0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};
    unsigned cmd;

    if (memcmp(buf, sig, min_size(len, V2_SIG_LEN)) != 0)
        return fail(reason, "v2: bad signature");
    if (len <= V2_SIG_LEN)
        return RES_AGAIN;
    if (buf[12] >> 4 != 2)
        return fail(reason, "v2: version is not 2");
    cmd = buf[12] & 0x0f;
    if (cmd != V2_CMD_LOCAL && cmd != V2_CMD_PROXY)
        return fail(reason, "v2: command is neither LOCAL nor PROXY");
    if (len < 14)
        return RES_AGAIN;
    /* LOCAL: the spec says the family is ignored, so only PROXY is checked. */
    if (cmd == V2_CMD_PROXY && !v2_fam_defined(buf[13]))
        return fail(reason, "v2: undefined address family or transport");
    if (len < PROXYPROTO_V2_FIXED)
        return RES_AGAIN;
    *body_len = be16(buf + 14);
    if (*body_len > PROXYPROTO_V2_MAX_BODY)
        return fail(reason, "v2: length field exceeds our 1024-byte limit");
    if (cmd == V2_CMD_PROXY && *body_len < v2_addr_len(buf[13]))
        return fail(reason, "v2: length too short for the address family");
    return RES_DONE;
}

static enum result parse_v2(const uint8_t *buf, size_t len, struct proxyproto_result *out,
                            size_t *consumed, const char **reason)
{
    struct proxyproto_result r;
    size_t body_len;
    enum result rc;

    rc = v2_check_fixed(buf, len, &body_len, reason);
    if (rc != RES_DONE)
        return rc;
    if (len - PROXYPROTO_V2_FIXED < body_len)
        return RES_AGAIN;
    memset(&r, 0, sizeof r);
    r.version = 2;
    r.local = 1;
    if ((buf[12] & 0x0f) == V2_CMD_PROXY) {
        rc = v2_decode_body(buf[13], buf + PROXYPROTO_V2_FIXED, body_len, &r, reason);
        if (rc != RES_DONE)
            return rc;
    }
    *out = r;
    *consumed = PROXYPROTO_V2_FIXED + body_len;
    return RES_DONE;
}

enum result proxyproto_parse(const uint8_t *buf, size_t len, struct proxyproto_result *out,
                             size_t *consumed, const char **reason)
{
    if (len == 0)
        return RES_AGAIN;
    /* The two versions differ from the first byte on: 'P' of "PROXY" or the
     * CR opening the v2 signature. */
    if (buf[0] == 'P')
        return parse_v1(buf, len, out, consumed, reason);
    if (buf[0] == '\r')
        return parse_v2(buf, len, out, consumed, reason);
    return fail(reason, "not a PROXY protocol header (first byte is neither 'P' nor CR)");
}
