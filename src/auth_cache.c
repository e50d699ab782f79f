/* The per-worker verification cache and table of verifications in flight. */
#include "auth_cache.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "auth_secret.h"
#include "hash.h"

/* The cache keys on a keyed digest (SipHash under a per-process random key),
 * so it never holds anything a password could be tested against offline. */

#define CACHE_SLOTS 1024      /* per worker; a power of two */
#define INFLIGHT_BUCKETS 1024 /* per worker; a power of two */

struct cache_slot {
    uint64_t digest[2];
    uint64_t expires; /* ms; 0 = empty */
};

struct auth_cache {
    uint64_t key[2][2];
    uint32_t ttl_ms;
    struct loop *loop;
    struct mailbox *mbox;
    /* Verifications this worker waits for, by keyed digest. */
    struct auth_cache_link *inflight[INFLIGHT_BUCKETS];
    struct cache_slot slot[CACHE_SLOTS];
};

static uint64_t coarse_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

struct loop *auth_cache_loop(const struct auth_cache *c)
{
    return c->loop;
}

struct mailbox *auth_cache_mailbox(const struct auth_cache *c)
{
    return c->mbox;
}

struct auth_cache_link *auth_cache_inflight_find(struct auth_cache *c, const uint64_t digest[2])
{
    struct auth_cache_link *l = c->inflight[digest[1] & (INFLIGHT_BUCKETS - 1)];
    while (l && (l->digest[0] != digest[0] || l->digest[1] != digest[1]))
        l = l->next;
    return l;
}

void auth_cache_inflight_add(struct auth_cache *c, struct auth_cache_link *l,
                             const uint64_t digest[2])
{
    struct auth_cache_link **head = &c->inflight[digest[1] & (INFLIGHT_BUCKETS - 1)];
    l->digest[0] = digest[0];
    l->digest[1] = digest[1];
    l->next = *head;
    if (*head)
        (*head)->prev = &l->next;
    l->prev = head;
    *head = l;
}

void auth_cache_inflight_del(struct auth_cache_link *l)
{
    if (!l->prev)
        return;
    *l->prev = l->next;
    if (l->next)
        l->next->prev = l->prev;
    l->prev = NULL;
    l->next = NULL;
}

struct auth_cache *auth_cache_new(uint32_t ttl_ms, struct loop *loop, struct mailbox *mbox)
{
    struct auth_cache *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    if (hash_random_key(c->key[0]) < 0 || hash_random_key(c->key[1]) < 0) {
        free(c);
        return NULL;
    }
    c->ttl_ms = ttl_ms;
    c->loop = loop;
    c->mbox = mbox;
    return c;
}

void auth_cache_free(struct auth_cache *c)
{
    if (c)
        auth_wipe(c, sizeof *c);
    free(c);
}

/* Digest of (user, hash, pass) under both keys: each part is hashed on its
 * own, whatever its length, then the three results together. */
void auth_cache_digest(const struct auth_cache *c, const char *user, const char *hash,
                       const char *pass, uint64_t out[2])
{
    const char *parts[3] = {user, hash, pass};
    for (int k = 0; k < 2; k++) {
        uint64_t h[3];
        for (int i = 0; i < 3; i++)
            h[i] = hash_sip(c->key[k], parts[i], strlen(parts[i]));
        out[k] = hash_sip(c->key[k], h, sizeof h);
        auth_wipe(h, sizeof h);
    }
}

int auth_cache_hit(struct auth_cache *c, const char *user, const char *hash, const char *pass)
{
    uint64_t d[2];
    if (!c || c->ttl_ms == 0)
        return 0;
    auth_cache_digest(c, user, hash, pass, d);
    const struct cache_slot *s = &c->slot[d[0] & (CACHE_SLOTS - 1)];
    return s->expires > coarse_ms() && s->digest[0] == d[0] && s->digest[1] == d[1];
}

void auth_cache_put(struct auth_cache *c, const char *user, const char *hash, const char *pass)
{
    uint64_t d[2];
    if (!c || c->ttl_ms == 0)
        return;
    auth_cache_digest(c, user, hash, pass, d);
    struct cache_slot *s = &c->slot[d[0] & (CACHE_SLOTS - 1)];
    s->digest[0] = d[0];
    s->digest[1] = d[1];
    s->expires = coarse_ms() + c->ttl_ms;
}
