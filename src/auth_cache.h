/* A worker's verification state: the cache of successful verifications
 * keyed on the user, the stored hash and a keyed digest of the password
 * (bounded and expiring), the table of verifications in flight by the same
 * digest, and the worker's loop and mailbox the pool answers through. Used
 * only on its worker's thread. */
#ifndef SOCKS5D_AUTH_CACHE_H
#define SOCKS5D_AUTH_CACHE_H

#include <stdint.h>

#include "loop.h"
#include "mailbox.h"

struct auth_cache;

/* A link in the in-flight table, embedded in what is in flight. */
struct auth_cache_link {
    struct auth_cache_link *next, **prev;
    uint64_t digest[2];
};

/* loop and mbox may be NULL for a cache used only as a cache. */
struct auth_cache *auth_cache_new(uint32_t ttl_ms, struct loop *loop, struct mailbox *mbox);
/* The in-flight table must be empty (see auth_pool_forget). */
void auth_cache_free(struct auth_cache *c);
struct loop *auth_cache_loop(const struct auth_cache *c);
struct mailbox *auth_cache_mailbox(const struct auth_cache *c);

/* 1 when this user (with this stored hash) verified with this password
 * within the cache's ttl. A changed hash never hits. */
int auth_cache_hit(struct auth_cache *c, const char *user, const char *hash, const char *pass);
void auth_cache_put(struct auth_cache *c, const char *user, const char *hash, const char *pass);

/* The keyed digest of (user, hash, pass) that the cache and the in-flight
 * table key on: it holds nothing a password could be tested against offline. */
void auth_cache_digest(const struct auth_cache *c, const char *user, const char *hash,
                       const char *pass, uint64_t out[2]);
/* The link in flight with this digest, or NULL. */
struct auth_cache_link *auth_cache_inflight_find(struct auth_cache *c, const uint64_t digest[2]);
void auth_cache_inflight_add(struct auth_cache *c, struct auth_cache_link *l,
                             const uint64_t digest[2]);
/* Harmless on a link that is not in the table. */
void auth_cache_inflight_del(struct auth_cache_link *l);

#endif
