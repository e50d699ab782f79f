/* RFC 1928 / RFC 1929 / RFC 1961 parsers and encoders. See proto.h for the contract. */
#include "proto.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

#include "hostname.h"

/* Bounds-checked cursor over untrusted bytes: every getter fails instead of
 * reading past the end, so a parser never sees a byte it was not given. */
struct cursor {
    const uint8_t *p;
    size_t len, off;
};

static int get_u8(struct cursor *c, uint8_t *v)
{
    if (c->off >= c->len)
        return 0;
    *v = c->p[c->off++];
    return 1;
}

static int get_bytes(struct cursor *c, void *dst, size_t n)
{
    if (c->len - c->off < n)
        return 0;
    memcpy(dst, c->p + c->off, n);
    c->off += n;
    return 1;
}

static int get_u16(struct cursor *c, uint16_t *v)
{
    uint8_t b[2];
    if (!get_bytes(c, b, 2))
        return 0;
    *v = (uint16_t)(b[0] << 8 | b[1]);
    return 1;
}

static enum result fail(enum proto_err *err, enum proto_err why)
{
    *err = why;
    return RES_ERROR;
}

enum result proto_parse_greeting(const uint8_t *buf, size_t len, struct proto_greeting *out,
                                 size_t *consumed, enum proto_err *err)
{
    struct cursor c = {buf, len, 0};
    uint8_t ver;

    if (!get_u8(&c, &ver))
        return RES_AGAIN;
    if (ver != SOCKS5_VERSION)
        return fail(err, PROTO_E_VERSION);
    if (!get_u8(&c, &out->nmethods))
        return RES_AGAIN;
    if (out->nmethods == 0)
        return fail(err, PROTO_E_NMETHODS);
    if (!get_bytes(&c, out->methods, out->nmethods))
        return RES_AGAIN;
    *consumed = c.off;
    return RES_DONE;
}

/* Reads a length-prefixed string into dst (256 bytes), NUL-terminated. */
static int get_lstring(struct cursor *c, uint8_t *n, char *dst)
{
    size_t start = c->off;
    if (!get_u8(c, n) || !get_bytes(c, dst, *n)) {
        c->off = start;
        return 0;
    }
    dst[*n] = '\0';
    return 1;
}

enum result proto_parse_userpass(const uint8_t *buf, size_t len, struct proto_userpass *out,
                                 size_t *consumed, enum proto_err *err)
{
    struct cursor c = {buf, len, 0};
    uint8_t ver;

    if (!get_u8(&c, &ver))
        return RES_AGAIN;
    if (ver != SOCKS5_USERPASS_VERSION)
        return fail(err, PROTO_E_AUTH_VERSION);
    if (c.off < len && buf[c.off] == 0)
        return fail(err, PROTO_E_AUTH_EMPTY);
    if (!get_lstring(&c, &out->ulen, out->user))
        return RES_AGAIN;
    if (c.off < len && buf[c.off] == 0)
        return fail(err, PROTO_E_AUTH_EMPTY);
    if (!get_lstring(&c, &out->plen, out->pass))
        return RES_AGAIN;
    *consumed = c.off;
    return RES_DONE;
}

/* The rules must judge the name the resolver looks up. A resolver reads more
 * than host names (backslash escapes, a search list for relative names), so
 * only the host name syntax passes, plus IPv6 literals, which rules and
 * resolver both take as addresses. One trailing dot is dropped and letters
 * are folded to lower case, so the name has one spelling from here on. */
int proto_normalize_name(struct proto_addr *a)
{
    char *name = a->u.name;
    size_t n = a->name_len;
    struct in6_addr ip6;
    if (n > 1 && name[n - 1] == '.')
        n--;
    name[n] = '\0';
    if (strlen(name) != n ||
        (hostname_problem(name, n) != NULL && inet_pton(AF_INET6, name, &ip6) != 1))
        return 0;
    for (size_t i = 0; i < n; i++)
        if (name[i] >= 'A' && name[i] <= 'Z')
            name[i] = (char)(name[i] - 'A' + 'a');
    a->name_len = (uint8_t)n;
    return 1;
}

/* ATYP, address and port. Returns RES_DONE, RES_AGAIN or RES_ERROR. */
static enum result get_addr(struct cursor *c, struct proto_addr *a, enum proto_err *err)
{
    if (!get_u8(c, &a->atyp))
        return RES_AGAIN;
    switch (a->atyp) {
    case SOCKS5_ATYP_IPV4:
        if (!get_bytes(c, a->u.ip4, 4))
            return RES_AGAIN;
        break;
    case SOCKS5_ATYP_IPV6:
        if (!get_bytes(c, a->u.ip6, 16))
            return RES_AGAIN;
        break;
    case SOCKS5_ATYP_DOMAIN:
        if (c->off < c->len && c->p[c->off] == 0)
            return fail(err, PROTO_E_DOMAIN_EMPTY);
        if (!get_lstring(c, &a->name_len, a->u.name))
            return RES_AGAIN;
        if (!proto_normalize_name(a))
            return fail(err, PROTO_E_HOSTNAME);
        break;
    default:
        return fail(err, PROTO_E_ATYP);
    }
    if (!get_u16(c, &a->port))
        return RES_AGAIN;
    return RES_DONE;
}

enum result proto_parse_request(const uint8_t *buf, size_t len, struct proto_request *out,
                                size_t *consumed, enum proto_err *err)
{
    struct cursor c = {buf, len, 0};
    uint8_t ver, rsv;
    enum result rc;

    if (!get_u8(&c, &ver))
        return RES_AGAIN;
    if (ver != SOCKS5_VERSION)
        return fail(err, PROTO_E_VERSION);
    if (!get_u8(&c, &out->cmd))
        return RES_AGAIN;
    if (out->cmd < SOCKS5_CMD_CONNECT || out->cmd > SOCKS5_CMD_UDP)
        return fail(err, PROTO_E_CMD);
    /* RSV is ignored, as most servers do: being strict here only breaks clients. */
    if (!get_u8(&c, &rsv))
        return RES_AGAIN;
    rc = get_addr(&c, &out->dst, err);
    if (rc != RES_DONE)
        return rc;
    *consumed = c.off;
    return RES_DONE;
}

enum result proto_parse_udp_header(const uint8_t *buf, size_t len, struct proto_addr *out,
                                   size_t *hdr_len, enum proto_err *err)
{
    struct cursor c = {buf, len, 0};
    uint16_t rsv;
    uint8_t frag;
    enum result rc;

    if (!get_u16(&c, &rsv) || !get_u8(&c, &frag))
        return fail(err, PROTO_E_TRUNCATED);
    if (frag != 0)
        return fail(err, PROTO_E_FRAG);
    rc = get_addr(&c, out, err);
    if (rc == RES_AGAIN)
        return fail(err, PROTO_E_TRUNCATED);
    if (rc != RES_DONE)
        return rc;
    *hdr_len = c.off;
    return RES_DONE;
}

enum result proto_parse_gss(const uint8_t *buf, size_t len, uint8_t mtyp, size_t max_token,
                            struct proto_gss_msg *out, size_t *consumed, enum proto_err *err)
{
    struct cursor c = {buf, len, 0};
    uint8_t ver;

    if (!get_u8(&c, &ver))
        return RES_AGAIN;
    if (ver != SOCKS5_GSS_VERSION)
        return fail(err, PROTO_E_GSS_VERSION);
    if (!get_u8(&c, &out->mtyp))
        return RES_AGAIN;
    out->len = 0;
    out->token = NULL;
    if (out->mtyp == SOCKS5_GSS_ABORT) {
        *consumed = c.off;
        return RES_DONE;
    }
    if (out->mtyp != mtyp)
        return fail(err, PROTO_E_GSS_MTYP);
    if (!get_u16(&c, &out->len))
        return RES_AGAIN;
    if (out->len == 0)
        return fail(err, PROTO_E_GSS_EMPTY);
    if (out->len > max_token)
        return fail(err, PROTO_E_GSS_TOO_LONG);
    if (c.len - c.off < out->len)
        return RES_AGAIN;
    out->token = buf + c.off;
    *consumed = c.off + out->len;
    return RES_DONE;
}

uint8_t proto_select_method(const struct proto_greeting *g, const uint8_t *prefs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (memchr(g->methods, prefs[i], g->nmethods))
            return prefs[i];
    return SOCKS5_METHOD_UNACCEPTABLE;
}

int proto_err_rep(enum proto_err err)
{
    switch (err) {
    case PROTO_E_CMD:
        return SOCKS5_REP_CMD_UNSUPPORTED;
    case PROTO_E_ATYP:
        return SOCKS5_REP_ATYP_UNSUPPORTED;
    case PROTO_E_VERSION:
    case PROTO_E_DOMAIN_EMPTY:
        return SOCKS5_REP_GENERAL_FAILURE;
    case PROTO_E_HOSTNAME:
        /* No host has such a name: answered as a name that does not resolve. */
        return SOCKS5_REP_HOST_UNREACHABLE;
    default:
        return -1;
    }
}

const char *proto_err_str(enum proto_err err)
{
    switch (err) {
    case PROTO_E_NONE:
        return "no error";
    case PROTO_E_VERSION:
        return "bad protocol version";
    case PROTO_E_NMETHODS:
        return "no methods offered";
    case PROTO_E_AUTH_VERSION:
        return "bad username/password version";
    case PROTO_E_AUTH_EMPTY:
        return "empty username or password";
    case PROTO_E_CMD:
        return "unknown command";
    case PROTO_E_ATYP:
        return "unknown address type";
    case PROTO_E_DOMAIN_EMPTY:
        return "empty domain name";
    case PROTO_E_HOSTNAME:
        return "not a host name";
    case PROTO_E_TRUNCATED:
        return "truncated datagram header";
    case PROTO_E_FRAG:
        return "fragmented datagram";
    case PROTO_E_GSS_VERSION:
        return "bad GSS-API message version";
    case PROTO_E_GSS_MTYP:
        return "unexpected GSS-API message type";
    case PROTO_E_GSS_EMPTY:
        return "empty GSS-API token";
    case PROTO_E_GSS_TOO_LONG:
        return "GSS-API token too long";
    }
    return "unknown error";
}

const char *proto_rep_str(uint8_t rep)
{
    static const char *const names[] = {
        "succeeded",           "general failure",       "not allowed by ruleset",
        "network unreachable", "host unreachable",      "connection refused",
        "TTL expired",         "command not supported", "address type not supported",
    };
    return rep < sizeof names / sizeof names[0] ? names[rep] : "unassigned";
}

size_t proto_encode_method(uint8_t *out, size_t cap, uint8_t method)
{
    if (cap < 2)
        return 0;
    out[0] = SOCKS5_VERSION;
    out[1] = method;
    return 2;
}

size_t proto_encode_userpass_reply(uint8_t *out, size_t cap, uint8_t status)
{
    if (cap < 2)
        return 0;
    out[0] = SOCKS5_USERPASS_VERSION;
    out[1] = status;
    return 2;
}

size_t proto_encode_gss_header(uint8_t *out, size_t cap, uint8_t mtyp, uint16_t len)
{
    if (cap < PROTO_GSS_HEADER)
        return 0;
    out[0] = SOCKS5_GSS_VERSION;
    out[1] = mtyp;
    out[2] = (uint8_t)(len >> 8);
    out[3] = (uint8_t)len;
    return PROTO_GSS_HEADER;
}

size_t proto_encode_gss_abort(uint8_t *out, size_t cap)
{
    if (cap < 2)
        return 0;
    out[0] = SOCKS5_GSS_VERSION;
    out[1] = SOCKS5_GSS_ABORT;
    return 2;
}

/* ATYP, address and port of `sa` (or 0.0.0.0:0 when NULL). */
static size_t put_addr(uint8_t *out, size_t cap, const struct sockaddr *sa)
{
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    const uint8_t *ip = NULL, *port = NULL;
    uint8_t atyp = SOCKS5_ATYP_IPV4, zero[4] = {0};
    size_t iplen = 4;

    if (sa && sa->sa_family == AF_INET) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
        ip = (const uint8_t *)&s4->sin_addr;
        port = (const uint8_t *)&s4->sin_port;
    } else if (sa && sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
        ip = s6->sin6_addr.s6_addr;
        port = (const uint8_t *)&s6->sin6_port;
        if (memcmp(ip, mapped, 12) == 0) {
            ip += 12;
        } else {
            atyp = SOCKS5_ATYP_IPV6;
            iplen = 16;
        }
    }
    if (cap < 1 + iplen + 2)
        return 0;
    out[0] = atyp;
    memcpy(out + 1, ip ? ip : zero, iplen);
    memcpy(out + 1 + iplen, port ? port : zero, 2);
    return 1 + iplen + 2;
}

size_t proto_encode_reply(uint8_t *out, size_t cap, uint8_t rep, const struct sockaddr *bnd)
{
    size_t n;
    if (cap < 3)
        return 0;
    out[0] = SOCKS5_VERSION;
    out[1] = rep;
    out[2] = 0;
    n = put_addr(out + 3, cap - 3, bnd);
    return n ? 3 + n : 0;
}

size_t proto_encode_udp_header(uint8_t *out, size_t cap, const struct sockaddr *src)
{
    size_t n;
    if (cap < 3)
        return 0;
    out[0] = out[1] = out[2] = 0;
    n = put_addr(out + 3, cap - 3, src);
    return n ? 3 + n : 0;
}

socklen_t proto_addr_to_sockaddr(const struct proto_addr *a, struct sockaddr_storage *sa)
{
    memset(sa, 0, sizeof *sa);
    if (a->atyp == SOCKS5_ATYP_IPV4) {
        struct sockaddr_in *s4 = (struct sockaddr_in *)sa;
        s4->sin_family = AF_INET;
        memcpy(&s4->sin_addr, a->u.ip4, 4);
        s4->sin_port = htons(a->port);
        return sizeof *s4;
    }
    if (a->atyp == SOCKS5_ATYP_IPV6) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)sa;
        s6->sin6_family = AF_INET6;
        memcpy(&s6->sin6_addr, a->u.ip6, 16);
        s6->sin6_port = htons(a->port);
        return sizeof *s6;
    }
    return 0;
}

size_t proto_encode_request(uint8_t *out, size_t cap, uint8_t cmd, const struct proto_addr *dst)
{
    size_t alen = dst->atyp == SOCKS5_ATYP_IPV4   ? 4
                  : dst->atyp == SOCKS5_ATYP_IPV6 ? 16
                                                  : 1 + (size_t)dst->name_len;
    if (dst->atyp != SOCKS5_ATYP_IPV4 && dst->atyp != SOCKS5_ATYP_IPV6 &&
        (dst->atyp != SOCKS5_ATYP_DOMAIN || dst->name_len == 0))
        return 0;
    if (cap < 4 + alen + 2)
        return 0;
    out[0] = SOCKS5_VERSION;
    out[1] = cmd;
    out[2] = 0;
    out[3] = dst->atyp;
    if (dst->atyp == SOCKS5_ATYP_DOMAIN) {
        out[4] = dst->name_len;
        memcpy(out + 5, dst->u.name, dst->name_len);
    } else {
        memcpy(out + 4, dst->u.ip6, alen); /* ip4 and ip6 share the union's start */
    }
    out[4 + alen] = (uint8_t)(dst->port >> 8);
    out[5 + alen] = (uint8_t)dst->port;
    return 4 + alen + 2;
}

enum result proto_parse_reply(const uint8_t *buf, size_t len, uint8_t *rep, struct proto_addr *bnd,
                              size_t *consumed, enum proto_err *err)
{
    struct cursor c = {buf, len, 0};
    uint8_t ver, rsv;
    int rc;

    if (!get_u8(&c, &ver))
        return RES_AGAIN;
    if (ver != SOCKS5_VERSION)
        return fail(err, PROTO_E_VERSION);
    if (!get_u8(&c, rep) || !get_u8(&c, &rsv))
        return RES_AGAIN;
    rc = get_addr(&c, bnd, err);
    if (rc != RES_DONE)
        return rc;
    *consumed = c.off;
    return RES_DONE;
}
