/* RFC 1929 credentials: the users file, password verification off the event
 * loop, and a per-worker cache of successful verifications. */
#ifndef SOCKS5D_AUTH_H
#define SOCKS5D_AUTH_H

#include <stddef.h>
#include <stdint.h>

#include "mailbox.h"

struct users;

/* Loads "name:hash" lines ('#' comments, blank lines ignored). Returns NULL
 * with "path:line: reason" in err on any error. */
struct users *users_load(const char *path, char *err, size_t errlen);
/* Parses a users file already in memory; `path` is only used in messages. */
struct users *users_parse(const char *text, size_t len, const char *path, char *err, size_t errlen);
void users_free(struct users *u);
size_t users_count(const struct users *u);
/* The stored hash for name, or NULL. */
const char *users_find(const struct users *u, const char *name);
/* Distinct hash settings (algorithm and cost) in the file. With more than
 * one, every login is answered as late as the slowest (`socks5d -t` warns). */
size_t users_settings(const struct users *u);
/* What one hash of the slowest setting took when the file was loaded. */
uint32_t users_cost_us(const struct users *u);

/* Starts/stops the verification threads (process-wide). Returns 0 or -1. */
int auth_pool_start(int nthreads);
void auth_pool_stop(void);

struct auth_job;
struct auth_cache;
/* Runs on the worker that submitted the job. `owner` is what was given to
 * auth_verify; ok is 1 when the password matched. */
typedef void (*auth_done_fn)(void *owner, int ok);

/* Verifies user/pass against `users` on a pool thread and calls done(owner)
 * on the loop of `cache`'s worker. A request for the same user and password
 * as one still in flight on this cache waits for that one instead of hashing
 * again. Unknown users are verified against a hash of the file's slowest
 * setting, and every answer, right or wrong, known user or not, comes no
 * sooner than that setting takes from the start of its hash. A success is
 * remembered in `cache` when someone still waits for it. Returns the pending
 * job (for auth_cancel), or NULL with errno ENOMEM, or EAGAIN when the
 * verification queue is full (see AUTH_QUEUE_BUDGET_MS in auth.c). */
struct auth_job *auth_verify(const struct users *users, const char *user, const char *pass,
                             struct auth_cache *cache, auth_done_fn done, void *owner);
/* The owner is going away: its callback never runs. A verification nobody
 * waits for any more leaves the queue at once, O(1), unhashed; one already
 * hashing is dropped when it ends. */
void auth_cancel(struct auth_job *job);

/* Per-worker verification state: the cache of successful verifications keyed
 * on the user, the stored hash and a keyed digest of the password (bounded
 * and expiring), the verifications in flight, and the worker's loop and
 * mailbox the answers come through (NULL for a cache used only as a cache). */
struct auth_cache *auth_cache_new(uint32_t ttl_ms, struct loop *loop, struct mailbox *mbox);
void auth_cache_free(struct auth_cache *c);
/* 1 when this user (with this stored hash) verified with this password
 * within the cache's ttl. A changed hash never hits. */
int auth_cache_hit(struct auth_cache *c, const char *user, const char *hash, const char *pass);
void auth_cache_put(struct auth_cache *c, const char *user, const char *hash, const char *pass);

/* Constant-time comparison of two NUL-terminated strings. */
int auth_streq(const char *a, const char *b);
/* Overwrites a secret so it does not linger in memory. */
void auth_wipe(void *p, size_t n);

/* `socks5d passwd NAME`: reads a password from stdin and prints the line.
 * Returns the exit code. */
int auth_passwd_main(const char *name);

#endif
