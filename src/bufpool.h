/* Per-worker pool of relay buffers: a session holds one only while bytes are
 * in flight, so an idle tunnel costs no buffer memory. Single-threaded. */
#ifndef SOCKS5D_BUFPOOL_H
#define SOCKS5D_BUFPOOL_H

#include <stddef.h>
#include <stdint.h>

#define BUFPOOL_SIZE (64 * 1024)

struct bufpool {
    void *free_list;
    size_t nfree, max_free;
    size_t in_use;
};

void bufpool_init(struct bufpool *p, size_t max_free);
void bufpool_destroy(struct bufpool *p);
/* Returns a BUFPOOL_SIZE buffer or NULL when memory is exhausted. */
uint8_t *bufpool_get(struct bufpool *p);
/* Accepts NULL. */
void bufpool_put(struct bufpool *p, uint8_t *buf);

#endif
