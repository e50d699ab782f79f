/* Upstream handshakes (client side). See upstream.h for the contract. */
#include "upstream.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

#include "auth_secret.h"
#include "proto4.h"

enum step {
    S5_METHOD, /* greeting sent, waiting for the method */
    S5_AUTH,   /* user/pass sent, waiting for its status */
    S5_REPLY,  /* request sent, waiting for the (first) reply */
    S5_SECOND, /* BIND: waiting for the second reply */
    S4_REPLY,
    S4_SECOND,
    HTTP_REPLY,
    END,
};

static int fail(struct upstream *u, uint8_t rep, const char *why)
{
    u->rep = rep;
    u->why = why;
    u->step = END;
    return UPSTREAM_FAIL;
}

/* A well-formed refusal: the hop works and said no. */
static int refuse(struct upstream *u, uint8_t rep, const char *why)
{
    u->answered = 1;
    return fail(u, rep, why);
}

static int has_creds(const struct upstream_hop *h)
{
    return h->user[0] != '\0';
}

static size_t put(struct upstream *u, const void *p, size_t n)
{
    if (UPSTREAM_OUT_MAX - u->out_len < n)
        return 0;
    memcpy(u->out + u->out_len, p, n);
    u->out_len += n;
    return n;
}

static void begin_socks5(struct upstream *u)
{
    const uint8_t none[] = {SOCKS5_VERSION, 1, SOCKS5_METHOD_NONE};
    const uint8_t both[] = {SOCKS5_VERSION, 2, SOCKS5_METHOD_NONE, SOCKS5_METHOD_USERPASS};
    if (has_creds(u->hop))
        put(u, both, sizeof both);
    else
        put(u, none, sizeof none);
    u->step = S5_METHOD;
}

static int begin_socks4a(struct upstream *u)
{
    static const uint8_t marker[4] = {0, 0, 0, 1};
    const struct proto_addr *d = &u->dst;
    if (u->cmd == SOCKS5_CMD_UDP)
        return fail(u, SOCKS5_REP_CMD_UNSUPPORTED, "SOCKS4a hop cannot relay UDP");
    if (d->atyp == SOCKS5_ATYP_IPV6)
        return fail(u, SOCKS5_REP_ATYP_UNSUPPORTED, "SOCKS4a hop cannot reach IPv6");
    uint8_t head[8] = {SOCKS4_VERSION, u->cmd, (uint8_t)(d->port >> 8), (uint8_t)d->port};
    memcpy(head + 4, d->atyp == SOCKS5_ATYP_IPV4 ? d->u.ip4 : marker, 4);
    put(u, head, sizeof head);
    put(u, u->hop->user, strlen(u->hop->user) + 1);
    if (d->atyp == SOCKS5_ATYP_DOMAIN)
        put(u, d->u.name, (size_t)d->name_len + 1);
    u->step = S4_REPLY;
    return UPSTREAM_AGAIN;
}

static size_t base64(char *out, const uint8_t *in, size_t n)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16;
        if (i + 1 < n)
            v |= (uint32_t)in[i + 1] << 8;
        if (i + 2 < n)
            v |= in[i + 2];
        out[o++] = tab[v >> 18 & 63];
        out[o++] = tab[v >> 12 & 63];
        out[o++] = i + 1 < n ? tab[v >> 6 & 63] : '=';
        out[o++] = i + 2 < n ? tab[v & 63] : '=';
    }
    out[o] = '\0';
    return o;
}

/* "host:port", with brackets around an IPv6 address. */
static void authority(const struct proto_addr *d, char *buf, size_t len)
{
    char ip[64];
    if (d->atyp == SOCKS5_ATYP_DOMAIN) {
        snprintf(buf, len, "%s:%u", d->u.name, d->port);
        return;
    }
    struct sockaddr_storage ss;
    proto_addr_to_sockaddr(d, &ss);
    const void *a = d->atyp == SOCKS5_ATYP_IPV4
                        ? (const void *)&((struct sockaddr_in *)&ss)->sin_addr
                        : (const void *)&((struct sockaddr_in6 *)&ss)->sin6_addr;
    inet_ntop(ss.ss_family, a, ip, sizeof ip);
    snprintf(buf, len, d->atyp == SOCKS5_ATYP_IPV6 ? "[%s]:%u" : "%s:%u", ip, d->port);
}

static int begin_http(struct upstream *u)
{
    char auth[300], line[300];
    uint8_t creds[512];
    char b64[700];
    if (u->cmd != SOCKS5_CMD_CONNECT)
        return fail(u, SOCKS5_REP_CMD_UNSUPPORTED, "HTTP CONNECT hop carries only CONNECT");
    authority(&u->dst, auth, sizeof auth);
    int n = snprintf(line, sizeof line, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n", auth, auth);
    put(u, line, (size_t)n < sizeof line ? (size_t)n : 0);
    if (has_creds(u->hop)) {
        size_t ul = strlen(u->hop->user), pl = strlen(u->hop->pass);
        memcpy(creds, u->hop->user, ul);
        creds[ul] = ':';
        memcpy(creds + ul + 1, u->hop->pass, pl);
        size_t bl = base64(b64, creds, ul + 1 + pl);
        put(u, "Proxy-Authorization: Basic ", 27);
        put(u, b64, bl);
        put(u, "\r\n", 2);
        auth_wipe(creds, sizeof creds);
        auth_wipe(b64, sizeof b64);
    }
    put(u, "\r\n", 2);
    u->step = HTTP_REPLY;
    return UPSTREAM_AGAIN;
}

int upstream_begin(struct upstream *u, const struct upstream_hop *hop, uint8_t cmd,
                   const struct proto_addr *dst)
{
    memset(u, 0, sizeof *u);
    u->hop = hop;
    u->cmd = cmd;
    u->dst = *dst;
    switch (hop->kind) {
    case UPSTREAM_SOCKS5:
        begin_socks5(u);
        return UPSTREAM_AGAIN;
    case UPSTREAM_SOCKS4A:
        return begin_socks4a(u);
    case UPSTREAM_HTTP:
        return begin_http(u);
    }
    return fail(u, SOCKS5_REP_GENERAL_FAILURE, "unknown hop kind");
}

static int send_request(struct upstream *u)
{
    size_t n = proto_encode_request(u->out, sizeof u->out, u->cmd, &u->dst);
    if (n == 0)
        return fail(u, SOCKS5_REP_GENERAL_FAILURE, "cannot encode the request");
    u->out_len = n;
    u->step = S5_REPLY;
    return UPSTREAM_AGAIN;
}

static int send_userpass(struct upstream *u)
{
    size_t ul = strlen(u->hop->user), pl = strlen(u->hop->pass);
    uint8_t head[2] = {SOCKS5_USERPASS_VERSION, (uint8_t)ul};
    uint8_t plen = (uint8_t)pl;
    put(u, head, 2);
    put(u, u->hop->user, ul);
    put(u, &plen, 1);
    put(u, u->hop->pass, pl);
    u->step = S5_AUTH;
    return UPSTREAM_AGAIN;
}

static int feed_method(struct upstream *u, const uint8_t *in, size_t len, size_t *consumed)
{
    if (len < 2)
        return UPSTREAM_AGAIN;
    *consumed = 2;
    if (in[0] != SOCKS5_VERSION)
        return fail(u, SOCKS5_REP_GENERAL_FAILURE, "upstream is not a SOCKS5 server");
    if (in[1] == SOCKS5_METHOD_NONE)
        return send_request(u);
    if (in[1] == SOCKS5_METHOD_USERPASS && has_creds(u->hop))
        return send_userpass(u);
    if (in[1] == SOCKS5_METHOD_UNACCEPTABLE)
        return refuse(u, SOCKS5_REP_NOT_ALLOWED, "upstream accepts none of our methods");
    return fail(u, SOCKS5_REP_GENERAL_FAILURE, "upstream chose a method not offered");
}

static int feed_auth(struct upstream *u, const uint8_t *in, size_t len, size_t *consumed)
{
    if (len < 2)
        return UPSTREAM_AGAIN;
    *consumed = 2;
    if (in[0] != SOCKS5_USERPASS_VERSION)
        return fail(u, SOCKS5_REP_GENERAL_FAILURE, "bad user/pass reply from upstream");
    if (in[1] != 0)
        return refuse(u, SOCKS5_REP_NOT_ALLOWED, "upstream refused the credentials");
    return send_request(u);
}

static int feed_reply(struct upstream *u, const uint8_t *in, size_t len, size_t *consumed)
{
    enum proto_err err = PROTO_E_NONE;
    int rc = proto_parse_reply(in, len, &u->rep, &u->bnd, consumed, &err);
    if (rc == RES_AGAIN)
        return UPSTREAM_AGAIN;
    if (rc == RES_ERROR)
        return fail(u, SOCKS5_REP_GENERAL_FAILURE, "malformed reply from upstream");
    if (u->rep != SOCKS5_REP_SUCCEEDED)
        return refuse(u, u->rep, "upstream refused the request");
    if (u->cmd == SOCKS5_CMD_BIND && u->step == S5_REPLY) {
        u->step = S5_SECOND;
        return UPSTREAM_BOUND;
    }
    u->step = END;
    return UPSTREAM_DONE;
}

static int feed_socks4(struct upstream *u, const uint8_t *in, size_t len, size_t *consumed)
{
    if (len < SOCKS4_REPLY_LEN)
        return UPSTREAM_AGAIN;
    *consumed = SOCKS4_REPLY_LEN;
    if (in[0] != 0)
        return fail(u, SOCKS5_REP_GENERAL_FAILURE, "upstream is not a SOCKS4 server");
    u->rep = proto4_rep_from_cd(in[1]);
    if (u->rep != SOCKS5_REP_SUCCEEDED)
        return refuse(u, u->rep, "upstream refused the request");
    u->bnd.atyp = SOCKS5_ATYP_IPV4;
    u->bnd.port = (uint16_t)(in[2] << 8 | in[3]);
    memcpy(u->bnd.u.ip4, in + 4, 4);
    if (u->cmd == SOCKS5_CMD_BIND && u->step == S4_REPLY) {
        u->step = S4_SECOND;
        return UPSTREAM_BOUND;
    }
    u->step = END;
    return UPSTREAM_DONE;
}

/* The REP that tells a SOCKS5 client what an HTTP proxy's status means. */
static uint8_t rep_from_http(int status)
{
    switch (status) {
    case 403:
    case 407:
        return SOCKS5_REP_NOT_ALLOWED;
    case 404:
        return SOCKS5_REP_HOST_UNREACHABLE;
    case 502:
    case 503:
        return SOCKS5_REP_CONN_REFUSED;
    case 504:
        return SOCKS5_REP_TTL_EXPIRED;
    default:
        return SOCKS5_REP_GENERAL_FAILURE;
    }
}

static int feed_http(struct upstream *u, const uint8_t *in, size_t len, size_t *consumed)
{
    const uint8_t *end = memmem(in, len, "\r\n\r\n", 4);
    if (end == NULL) {
        if (len >= UPSTREAM_HTTP_MAX)
            return fail(u, SOCKS5_REP_GENERAL_FAILURE, "HTTP proxy answer header too long");
        return UPSTREAM_AGAIN;
    }
    *consumed = (size_t)(end - in) + 4;
    /* "HTTP/1.x NNN" */
    if (*consumed < 16 || memcmp(in, "HTTP/1.", 7) != 0 || in[8] != ' ' || in[9] < '1' ||
        in[9] > '5' || in[10] < '0' || in[10] > '9' || in[11] < '0' || in[11] > '9')
        return fail(u, SOCKS5_REP_GENERAL_FAILURE, "HTTP proxy sent no status line");
    int status = (in[9] - '0') * 100 + (in[10] - '0') * 10 + (in[11] - '0');
    if (status < 200 || status > 299)
        return refuse(u, rep_from_http(status), "HTTP proxy refused CONNECT");
    u->rep = SOCKS5_REP_SUCCEEDED;
    u->step = END;
    return UPSTREAM_DONE;
}

int upstream_feed(struct upstream *u, const uint8_t *in, size_t len, size_t *consumed)
{
    *consumed = 0;
    auth_wipe(u->out, u->out_len); /* sent by now; it may have held a password */
    u->out_len = 0;
    switch (u->step) {
    case S5_METHOD:
        return feed_method(u, in, len, consumed);
    case S5_AUTH:
        return feed_auth(u, in, len, consumed);
    case S5_REPLY:
    case S5_SECOND:
        return feed_reply(u, in, len, consumed);
    case S4_REPLY:
    case S4_SECOND:
        return feed_socks4(u, in, len, consumed);
    case HTTP_REPLY:
        return feed_http(u, in, len, consumed);
    default:
        return fail(u, SOCKS5_REP_GENERAL_FAILURE, "handshake already ended");
    }
}

void upstream_wipe(struct upstream *u)
{
    auth_wipe(u->out, sizeof u->out);
    u->out_len = 0;
}

const char *upstream_kind_str(enum upstream_kind k)
{
    switch (k) {
    case UPSTREAM_SOCKS5:
        return "socks5";
    case UPSTREAM_SOCKS4A:
        return "socks4a";
    case UPSTREAM_HTTP:
        return "http";
    }
    return "?";
}
