#include "logring.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define HDR 4 /* length (2 bytes, little end first), tag, unused */

struct logring {
    _Atomic size_t head;      /* bytes ever written; the producer's */
    _Atomic size_t tail;      /* bytes ever read; the consumer's */
    _Atomic uint64_t dropped; /* one writer: the producer */
    size_t mask;
    char buf[];
};

struct logring *logring_new(size_t cap)
{
    if (cap < 2 * HDR || (cap & (cap - 1)) != 0)
        return NULL;
    struct logring *r = malloc(sizeof *r + cap);
    if (!r)
        return NULL;
    atomic_init(&r->head, 0);
    atomic_init(&r->tail, 0);
    atomic_init(&r->dropped, 0);
    r->mask = cap - 1;
    return r;
}

void logring_free(struct logring *r)
{
    free(r);
}

/* Copies n bytes into the ring at position pos, wrapping at its end. */
static void copy_in(struct logring *r, size_t pos, const void *src, size_t n)
{
    size_t at = pos & r->mask, first = r->mask + 1 - at;
    if (first > n)
        first = n;
    memcpy(r->buf + at, src, first);
    memcpy(r->buf, (const char *)src + first, n - first);
}

static void copy_out(const struct logring *r, size_t pos, void *dst, size_t n)
{
    size_t at = pos & r->mask, first = r->mask + 1 - at;
    if (first > n)
        first = n;
    memcpy(dst, r->buf + at, first);
    memcpy((char *)dst + first, r->buf, n - first);
}

int logring_push(struct logring *r, uint8_t tag, const char *line, size_t len)
{
    size_t h = atomic_load_explicit(&r->head, memory_order_relaxed);
    size_t t = atomic_load_explicit(&r->tail, memory_order_acquire);
    if (len > 0xffff || r->mask + 1 - (h - t) < HDR + len) {
        atomic_store_explicit(&r->dropped,
                              atomic_load_explicit(&r->dropped, memory_order_relaxed) + 1,
                              memory_order_relaxed);
        return -1;
    }
    unsigned char hdr[HDR] = {(unsigned char)(len & 0xff), (unsigned char)(len >> 8), tag, 0};
    copy_in(r, h, hdr, HDR);
    copy_in(r, h + HDR, line, len);
    /* Release: the consumer that sees the new head sees the bytes. */
    atomic_store_explicit(&r->head, h + HDR + len, memory_order_release);
    return 0;
}

ssize_t logring_pop(struct logring *r, uint8_t *tag, char *buf, size_t cap)
{
    size_t t = atomic_load_explicit(&r->tail, memory_order_relaxed);
    size_t h = atomic_load_explicit(&r->head, memory_order_acquire);
    unsigned char hdr[HDR];
    if (h == t)
        return -1;
    copy_out(r, t, hdr, HDR);
    size_t len = (size_t)hdr[0] | (size_t)hdr[1] << 8;
    copy_out(r, t + HDR, buf, len < cap ? len : cap);
    *tag = hdr[2];
    /* Release: the producer reuses the space only after the copy. */
    atomic_store_explicit(&r->tail, t + HDR + len, memory_order_release);
    return (ssize_t)(len < cap ? len : cap);
}

uint64_t logring_dropped(const struct logring *r)
{
    return atomic_load_explicit((_Atomic uint64_t *)&r->dropped, memory_order_relaxed);
}
