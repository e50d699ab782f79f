/* A bounded queue of log lines between one producer thread and one consumer
 * thread (single-producer, single-consumer, lock-free). The producer never
 * waits: a line that does not fit is dropped and counted. Lines come out in
 * the order they went in. */
#ifndef SOCKS5D_LOGRING_H
#define SOCKS5D_LOGRING_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct logring;

/* A ring of cap bytes (a power of two; each line costs its length plus a
 * 4-byte header). Returns NULL when out of memory or cap is not a power of
 * two. */
struct logring *logring_new(size_t cap);
void logring_free(struct logring *r);

/* Producer only. Appends a line of len bytes (at most 65535) with a tag the
 * consumer gets back. Returns 0, or -1 when the line does not fit: it is
 * then dropped and counted. */
int logring_push(struct logring *r, uint8_t tag, const char *line, size_t len);

/* Consumer only. Moves the oldest line into buf (cap bytes; a longer line is
 * cut to cap) and its tag into *tag. Returns the length copied, or -1 when
 * the ring is empty. */
ssize_t logring_pop(struct logring *r, uint8_t *tag, char *buf, size_t cap);

/* Any thread: lines dropped so far. */
uint64_t logring_dropped(const struct logring *r);

#endif
