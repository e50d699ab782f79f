#include "bufpool.h"

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fdbudget.h"

static void *fl_get(struct freelist *f)
{
    void *b = f->head;
    if (!b)
        return malloc(f->size);
    f->head = *(void **)b;
    f->n--;
    return b;
}

/* Beyond max, memory goes back so a burst does not pin it forever. */
static void fl_put(struct freelist *f, void *b)
{
    if (f->n >= f->max) {
        free(b);
        return;
    }
    *(void **)b = f->head;
    f->head = b;
    f->n++;
}

static void fl_destroy(struct freelist *f)
{
    while (f->head) {
        void *next = *(void **)f->head;
        free(f->head);
        f->head = next;
    }
    f->n = 0;
}

void bufpool_init(struct bufpool *p, size_t max_free)
{
    p->big = (struct freelist){.max = max_free, .size = BUFPOOL_SIZE};
    p->small = (struct freelist){.max = max_free * 4, .size = BUFPOOL_SMALL};
    p->max_free = max_free;
    p->in_use = 0;
    p->free_pipes = NULL;
    p->npipes = 0;
    p->pipe_off = 0;
}

static void pipe_close(struct relay_pipe *pp)
{
    close(pp->r);
    close(pp->w);
    fdbudget_give(2);
    free(pp);
}

void bufpool_destroy(struct bufpool *p)
{
    while (p->free_pipes) {
        struct relay_pipe *next = p->free_pipes->next;
        pipe_close(p->free_pipes);
        p->free_pipes = next;
    }
    p->npipes = 0;
    fl_destroy(&p->big);
    fl_destroy(&p->small);
}

uint8_t *bufpool_get(struct bufpool *p)
{
    uint8_t *b = fl_get(&p->big);
    if (b)
        p->in_use++;
    return b;
}

void bufpool_put(struct bufpool *p, uint8_t *buf)
{
    if (!buf)
        return;
    p->in_use--;
    fl_put(&p->big, buf);
}

uint8_t *bufpool_get_small(struct bufpool *p)
{
    uint8_t *b = fl_get(&p->small);
    if (b)
        memset(b, 0, sizeof(void *)); /* the free-list link */
    return b;
}

/* A handshake buffer may hold credentials, whole or cut short: none of it
 * outlives the session, in the pool or back in the allocator. */
void bufpool_put_small(struct bufpool *p, uint8_t *buf)
{
    if (!buf)
        return;
    explicit_bzero(buf, BUFPOOL_SMALL);
    fl_put(&p->small, buf);
}

struct relay_pipe *bufpool_get_pipe(struct bufpool *p)
{
    struct relay_pipe *pp = p->free_pipes;
    int fds[2];
    if (pp) {
        p->free_pipes = pp->next;
        p->npipes--;
        return pp;
    }
    if (p->pipe_off) {
        p->pipe_off--;
        return NULL;
    }
    if (!fdbudget_take(2, FDB_EXTRA))
        return NULL;
    if (!(pp = malloc(sizeof *pp)) || pipe2(fds, O_NONBLOCK | O_CLOEXEC) < 0) {
        fdbudget_give(2);
        free(pp);
        return NULL;
    }
    /* A larger pipe moves more per splice call; the kernel may refuse
     * (pipe-max-size, per-user limits), and a smaller size still works. */
    pp->r = fds[0];
    pp->w = fds[1];
    int size = fcntl(pp->w, F_SETPIPE_SZ, BUFPOOL_PIPE_SIZE);
    if (size < 0)
        size = fcntl(pp->w, F_SETPIPE_SZ, BUFPOOL_PIPE_FALLBACK);
    if (size < 0)
        size = fcntl(pp->w, F_GETPIPE_SZ);
    /* An unprivileged user whose pipes hold fs.pipe-user-pages-soft
     * (16,384 pages: 128 pipes of 512 KiB) gets 2-page pipes, which move
     * less per splice than read/write with a buffer does: 10 times the
     * syscalls per MB (docs/benchmarks.md). Buffers until pipes fit again. */
    if (size < BUFPOOL_SIZE) {
        pipe_close(pp);
        p->pipe_off = BUFPOOL_PIPE_RETRY;
        return NULL;
    }
    pp->size = (uint32_t)size;
    return pp;
}

void bufpool_put_pipe(struct bufpool *p, struct relay_pipe *pp, int dirty)
{
    if (!pp)
        return;
    /* Short of descriptors, an idle pipe is worth more to a new session. */
    if (dirty || p->npipes >= p->max_free || fdbudget_tight()) {
        pipe_close(pp);
        return;
    }
    pp->next = p->free_pipes;
    p->free_pipes = pp;
    p->npipes++;
}
