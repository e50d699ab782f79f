/* Relay under GSS-API protection (see gss_relay.h). */
#include "gss_relay.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "gss.h"
#include "proto.h"

/* One direction: bytes read and not yet transformed in `in`, the transformed
 * bytes [off, len) of `out` waiting to be written. Buffers are held only
 * while they hold something. */
struct gss_dir {
    struct relay_bucket *bucket; /* NULL: unlimited */
    uint8_t *in, *out;
    uint32_t in_len, off, len;
    uint8_t shut;
    uint64_t bytes; /* plaintext */
};

struct gss_relay {
    struct gss_conn *conn;
    int conf;
    size_t chunk; /* plaintext per message to the client */
    struct gss_dir up, down;
    char why[300];
};

struct gss_relay *gss_relay_new(struct gss_conn *conn, int conf)
{
    struct gss_relay *g = calloc(1, sizeof *g);
    if (!g)
        return NULL;
    g->conn = conn;
    g->conf = conf;
    g->chunk = gss_conn_wrap_limit(conn, conf, GSS_MSG_MAX - 4);
    if (g->chunk == 0 || g->chunk > GSS_MSG_MAX - 4)
        g->chunk = 16384; /* the mechanism did not say: a size every token fits */
    return g;
}

static void dir_idle(struct gss_dir *d)
{
    if (d->off == d->len) {
        free(d->out);
        d->out = NULL;
        d->off = d->len = 0;
    }
    if (d->in_len == 0) {
        free(d->in);
        d->in = NULL;
    }
}

void gss_relay_free(struct gss_relay *g)
{
    if (!g)
        return;
    free(g->up.in);
    free(g->up.out);
    free(g->down.in);
    free(g->down.out);
    free(g);
}

/* Buffers are GSS_MSG_MAX bytes: a whole message or its plaintext. */
static int take(uint8_t **buf)
{
    return *buf || (*buf = malloc(GSS_MSG_MAX)) ? 0 : -1;
}

int gss_relay_preload(struct gss_relay *g, const uint8_t *plain, size_t plain_len,
                      const uint8_t *raw, size_t raw_len)
{
    if ((plain_len && take(&g->up.out) < 0) || (raw_len && take(&g->up.in) < 0))
        return -1;
    if (plain_len)
        memcpy(g->up.out, plain, plain_len);
    if (raw_len)
        memcpy(g->up.in, raw, raw_len);
    g->up.len = (uint32_t)plain_len;
    g->up.in_len = (uint32_t)raw_len;
    return 0;
}

size_t gss_relay_encap(struct gss_conn *conn, int conf, const uint8_t *in, size_t len, uint8_t *out,
                       size_t cap)
{
    size_t n;
    if (cap < PROTO_GSS_HEADER)
        return 0;
    n = gss_conn_wrap(conn, conf, in, len, out + PROTO_GSS_HEADER, cap - PROTO_GSS_HEADER);
    if (n == 0 || n > 65535)
        return 0;
    proto_encode_gss_header(out, cap, SOCKS5_GSS_ENCAP, (uint16_t)n);
    return PROTO_GSS_HEADER + n;
}

static int bad(struct gss_relay *g, const char *why)
{
    snprintf(g->why, sizeof g->why, "%s", why);
    return GSS_RELAY_BAD;
}

/* Writes what waits in d->out. Returns 1 when all went, 0 when dst is
 * full, -1 on error. */
static int flush(struct gss_dir *d, struct relay_side *dst, int count, int *err)
{
    while (d->off < d->len) {
        long n = relay_side_write(dst, d->out + d->off, d->len - d->off, err);
        if (n <= 0)
            return (int)n;
        d->off += (uint32_t)n;
        if (count)
            d->bytes += (uint64_t)n;
    }
    d->off = d->len = 0;
    return 1;
}

/* EOF from src: passed on, unless the other direction ended too (both
 * sockets are closed next). */
static void end_dir(struct gss_dir *d, const struct gss_dir *other, struct relay_side *dst)
{
    if (d->shut)
        return;
    d->shut = 1;
    if (!other->shut)
        shutdown(dst->io.fd, SHUT_WR);
}

/* Unwraps the first whole message of up.in into up.out. Returns 1 when
 * one was decoded, 0 when more bytes are needed, or GSS_RELAY_BAD. */
static int decode(struct gss_relay *g)
{
    struct gss_dir *d = &g->up;
    struct proto_gss_msg m;
    enum proto_err perr;
    size_t used;
    int conf;
    enum result rc = proto_parse_gss(d->in, d->in_len, SOCKS5_GSS_ENCAP, 65535, &m, &used, &perr);
    if (rc == RES_AGAIN)
        return 0;
    if (rc == RES_ERROR)
        return bad(g, proto_err_str(perr));
    if (m.mtyp == SOCKS5_GSS_ABORT)
        return bad(g, "GSS-API abort from the client");
    if (take(&d->out) < 0)
        return bad(g, "out of memory");
    long n = gss_conn_unwrap(g->conn, m.token, m.len, d->out, GSS_MSG_MAX, &conf);
    if (n < 0)
        return bad(g, gss_conn_error(g->conn));
    if (g->conf && !conf)
        return bad(g, "unencrypted message at the confidentiality level");
    memmove(d->in, d->in + used, d->in_len - used);
    d->in_len -= (uint32_t)used;
    d->off = 0;
    d->len = (uint32_t)n;
    return 1;
}

/* Bytes d may read now, at most `room`; 0 when it is out of tokens. */
static size_t allowed(struct gss_dir *d, uint64_t now_ms, size_t room)
{
    size_t max = relay_bucket_allowance(d->bucket, now_ms);
    return max < room ? max : room;
}

/* Client to target. Returns RELAY_* bits, -1 or GSS_RELAY_BAD. The limit
 * counts the bytes read: wrapped messages up, plaintext down. */
static int pump_up(struct gss_relay *g, struct relay_side *client, struct relay_side *target,
                   uint64_t now_ms, int *err)
{
    struct gss_dir *d = &g->up;
    size_t budget = RELAY_BUDGET;
    int moved = 0;
    for (;;) {
        int rc = flush(d, target, 1, err);
        if (rc <= 0)
            return rc < 0 ? -1 : moved;
        rc = d->in_len ? decode(g) : 0;
        if (rc == GSS_RELAY_BAD)
            return rc;
        if (rc > 0)
            continue;
        if (budget == 0 && client->readable && !client->eof)
            return moved | RELAY_MORE;
        if (client->eof || !client->readable) {
            if (client->eof && d->in_len)
                return bad(g, "client closed inside a GSS-API message");
            if (client->eof)
                end_dir(d, &g->down, target);
            dir_idle(d);
            return moved;
        }
        size_t max = allowed(d, now_ms, GSS_MSG_MAX - d->in_len);
        if (max == 0) {
            dir_idle(d);
            return moved | RELAY_THROTTLED;
        }
        if (take(&d->in) < 0)
            return bad(g, "out of memory");
        long n = relay_side_read(client, d->in + d->in_len, max, err);
        if (n < 0)
            return -1;
        relay_bucket_charge(d->bucket, (size_t)n);
        d->in_len += (uint32_t)n;
        budget -= (size_t)n < budget ? (size_t)n : budget;
        if (n > 0)
            moved = RELAY_MOVED;
    }
}

/* Target to client. */
static int pump_down(struct gss_relay *g, struct relay_side *client, struct relay_side *target,
                     uint64_t now_ms, int *err)
{
    struct gss_dir *d = &g->down;
    size_t budget = RELAY_BUDGET;
    int moved = 0;
    for (;;) {
        int rc = flush(d, client, 0, err);
        if (rc <= 0)
            return rc < 0 ? -1 : moved;
        if (budget == 0 && target->readable && !target->eof)
            return moved | RELAY_MORE;
        if (target->eof || !target->readable) {
            if (target->eof)
                end_dir(d, &g->up, client);
            dir_idle(d);
            return moved;
        }
        size_t max = allowed(d, now_ms, g->chunk);
        if (max == 0) {
            dir_idle(d);
            return moved | RELAY_THROTTLED;
        }
        if (take(&d->in) < 0 || take(&d->out) < 0)
            return bad(g, "out of memory");
        long n = relay_side_read(target, d->in, max, err);
        if (n < 0)
            return -1;
        if (n == 0)
            continue;
        relay_bucket_charge(d->bucket, (size_t)n);
        moved = RELAY_MOVED;
        budget -= (size_t)n < budget ? (size_t)n : budget;
        d->bytes += (uint64_t)n;
        d->off = 0;
        d->len = (uint32_t)gss_relay_encap(g->conn, g->conf, d->in, (size_t)n, d->out, GSS_MSG_MAX);
        if (d->len == 0)
            return bad(g, gss_conn_error(g->conn));
    }
}

void gss_relay_limit(struct gss_relay *g, struct relay_bucket *up, struct relay_bucket *down)
{
    g->up.bucket = up;
    g->down.bucket = down;
}

int gss_relay_pump(struct gss_relay *g, struct relay_side *client, struct relay_side *target,
                   uint64_t now_ms, unsigned *flags, int *err)
{
    *flags = 0;
    int up = pump_up(g, client, target, now_ms, err);
    if (up < 0)
        return up == GSS_RELAY_BAD ? GSS_RELAY_BAD : RES_ERROR;
    int down = pump_down(g, client, target, now_ms, err);
    if (down < 0)
        return down == GSS_RELAY_BAD ? GSS_RELAY_BAD : RES_ERROR;
    *flags = (unsigned)(up | down);
    return g->up.shut && g->down.shut ? RES_DONE : RES_AGAIN;
}

const char *gss_relay_error(const struct gss_relay *g)
{
    return g->why;
}

uint64_t gss_relay_bytes_up(const struct gss_relay *g)
{
    return g->up.bytes;
}

uint64_t gss_relay_bytes_down(const struct gss_relay *g)
{
    return g->down.bytes;
}

long gss_relay_open_dgram(void *arg, const uint8_t *in, size_t len, uint8_t *out, size_t cap)
{
    struct gss_relay *g = arg;
    struct proto_gss_msg m;
    enum proto_err perr;
    size_t used;
    int conf;
    if (proto_parse_gss(in, len, SOCKS5_GSS_ENCAP, 65535, &m, &used, &perr) != RES_DONE ||
        used != len || m.mtyp != SOCKS5_GSS_ENCAP)
        return -1;
    long n = gss_conn_unwrap_dgram(g->conn, m.token, m.len, out, cap, &conf);
    return g->conf && !conf ? -1 : n;
}

size_t gss_relay_seal_dgram(void *arg, const uint8_t *in, size_t len, uint8_t *out, size_t cap)
{
    struct gss_relay *g = arg;
    return gss_relay_encap(g->conn, g->conf, in, len, out, cap);
}
