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

/* Starts/stops the verification threads (process-wide). Returns 0 or -1. */
int auth_pool_start(int nthreads);
void auth_pool_stop(void);

struct auth_job;
struct auth_cache;
/* Runs on the worker that submitted the job. `owner` is what was given to
 * auth_verify; ok is 1 when the password matched. */
typedef void (*auth_done_fn)(void *owner, int ok);

/* Verifies user/pass against `users` on a pool thread and calls done(owner)
 * through `reply_to`. A request for the same user and password as one still
 * in flight on this cache waits for that one instead of hashing again. Unknown users are verified
 * against a stand-in hash, so they take the same path and about the same time as a wrong password.
 * A success is remembered in `cache` (owned by the receiving worker). Returns the pending job (for
 * auth_cancel) or NULL on allocation failure. */
struct auth_job *auth_verify(const struct users *users, const char *user, const char *pass,
                             struct auth_cache *cache, struct mailbox *reply_to, auth_done_fn done,
                             void *owner);
/* The owner is going away: the result will be dropped. */
void auth_cancel(struct auth_job *job);

/* Per-worker cache of successful verifications keyed on the user, the stored
 * hash and a keyed digest of the password; bounded and expiring. */
struct auth_cache *auth_cache_new(uint32_t ttl_ms);
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
