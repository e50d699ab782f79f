#include "bufpool.h"

#include <stdlib.h>

void bufpool_init(struct bufpool *p, size_t max_free)
{
    p->free_list = NULL;
    p->nfree = 0;
    p->max_free = max_free;
    p->in_use = 0;
}

void bufpool_destroy(struct bufpool *p)
{
    while (p->free_list) {
        void *next = *(void **)p->free_list;
        free(p->free_list);
        p->free_list = next;
    }
    p->nfree = 0;
}

uint8_t *bufpool_get(struct bufpool *p)
{
    void *b = p->free_list;
    if (b) {
        p->free_list = *(void **)b;
        p->nfree--;
    } else {
        b = malloc(BUFPOOL_SIZE);
        if (!b)
            return NULL;
    }
    p->in_use++;
    return b;
}

void bufpool_put(struct bufpool *p, uint8_t *buf)
{
    if (!buf)
        return;
    p->in_use--;
    /* Beyond max_free, give memory back so a burst does not pin it forever. */
    if (p->nfree >= p->max_free) {
        free(buf);
        return;
    }
    *(void **)buf = p->free_list;
    p->free_list = buf;
    p->nfree++;
}
