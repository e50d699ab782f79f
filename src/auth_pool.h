/* Slow authentication work off the event loop: a process-wide pool of
 * threads hashes RFC 1929 credentials against the users file, and runs other
 * slow calls (GSS-API context steps, see gss.c) as tasks; both answer on the
 * submitting worker's loop, through the mailbox of its auth_cache. */
#ifndef SOCKS5D_AUTH_POOL_H
#define SOCKS5D_AUTH_POOL_H

#include <stdint.h>

#include "auth_cache.h"
#include "users.h"

/* Starts/stops the verification threads (process-wide). Returns 0 or -1. */
int auth_pool_start(int nthreads);
void auth_pool_stop(void);

struct auth_job;
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
 * verification queue is full (see AUTH_QUEUE_BUDGET_MS in auth_pool.c). */
struct auth_job *auth_verify(const struct users *users, const char *user, const char *pass,
                             struct auth_cache *cache, auth_done_fn done, void *owner);
/* The owner is going away: its callback never runs. A verification nobody
 * waits for any more leaves the queue at once, O(1), unhashed; one already
 * hashing is dropped when it ends. */
void auth_cancel(struct auth_job *job);
/* A task: any slow call, embedded in its owner's struct. run() runs on a
 * pool thread; done() on the loop of the cache's worker, with ran 0 when the
 * task was answered without running (auth_pool_release). */
struct auth_task {
    struct mail mail; /* first: posted back to the worker */
    struct auth_task *qprev, *qnext;
    struct auth_cache *cache;
    void (*run)(struct auth_task *t);
    void (*done)(struct auth_task *t, int ran);
    uint8_t queued, ran;
};
/* Queues t (run and done set) for `cache`'s worker. Returns 0, or -1 when
 * the queue is full. */
int auth_pool_submit(struct auth_task *t, struct auth_cache *cache);
/* Takes back a task that no thread has taken yet: returns 1 and done()
 * never comes; 0 when it runs now or ran, and done() still comes. */
int auth_pool_withdraw(struct auth_task *t);

/* Before `cache`'s mailbox goes away: its verifications still queued are
 * answered as failed without hashing, and this waits for those a pool thread
 * hashes now. On return every answer for `cache` is in its mailbox and no
 * pool thread will touch it again; running the loop once delivers them. */
void auth_pool_release(struct auth_cache *cache);

#endif
