#include "bufpool.h"

#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

void bufpool_init(struct bufpool *p, size_t max_free)
{
    p->free_list = NULL;
    p->nfree = 0;
    p->max_free = max_free;
    p->in_use = 0;
    p->free_pipes = NULL;
    p->npipes = 0;
}

static void pipe_close(struct relay_pipe *pp)
{
    close(pp->r);
    close(pp->w);
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

struct relay_pipe *bufpool_get_pipe(struct bufpool *p)
{
    struct relay_pipe *pp = p->free_pipes;
    int fds[2];
    if (pp) {
        p->free_pipes = pp->next;
        p->npipes--;
        return pp;
    }
    if (!(pp = malloc(sizeof *pp)))
        return NULL;
    if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) < 0) {
        free(pp);
        return NULL;
    }
    /* A larger pipe moves more per splice call; the kernel may refuse
     * (pipe-max-size, per-user limits), and the default size still works. */
    fcntl(fds[1], F_SETPIPE_SZ, BUFPOOL_PIPE_SIZE);
    pp->r = fds[0];
    pp->w = fds[1];
    return pp;
}

void bufpool_put_pipe(struct bufpool *p, struct relay_pipe *pp, int dirty)
{
    if (!pp)
        return;
    if (dirty || p->npipes >= p->max_free) {
        pipe_close(pp);
        return;
    }
    pp->next = p->free_pipes;
    p->free_pipes = pp;
    p->npipes++;
}
