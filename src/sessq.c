#include "sessq.h"

#include <stdlib.h>
#include <string.h>

struct sessq *sessq_new(int n, int close, uint64_t id, const char *user)
{
    struct sessq *q = calloc(1, sizeof *q + (size_t)n * sizeof q->part[0]);
    if (!q)
        return NULL;
    if (user && !(q->user = strdup(user))) {
        free(q);
        return NULL;
    }
    /* The asker's reference, and one per worker until it answers. */
    atomic_init(&q->refs, n + 1);
    atomic_init(&q->pending, n);
    q->close = close;
    q->id = id;
    q->nparts = n;
    for (int k = 0; k < n; k++)
        q->part[k].q = q;
    return q;
}

int sessq_match(const struct sessq *q, uint64_t id, const char *user)
{
    if (q->id && q->id != id)
        return 0;
    return !q->user || (user && strcmp(q->user, user) == 0);
}

void sessq_done(struct sessq_part *p)
{
    struct sessq *q = p->q;
    atomic_fetch_sub(&q->pending, 1);
    sessq_unref(q);
}

int sessq_answered(const struct sessq *q)
{
    return atomic_load(&((struct sessq *)q)->pending) == 0;
}

void sessq_unref(struct sessq *q)
{
    if (!q || atomic_fetch_sub(&q->refs, 1) != 1)
        return;
    for (int k = 0; k < q->nparts; k++)
        free(q->part[k].json);
    free(q->user);
    free(q);
}
