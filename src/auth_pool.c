/* The verification pool: a bounded queue of tasks (crypt(3) runs and other
 * slow calls), the threads that run them, and password answers held back to
 * the users file's slowest setting. */
#include "auth_pool.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "auth_secret.h"
#include "log.h"

/* The queue holds what the pool hashes in this long at the slowest setting of
 * the users file: a login let in is answered about that soon, well inside the
 * default 10 s handshake timeout, and one beyond it is refused at once (the
 * client may retry) instead of timing out behind an attacker's. The floor keeps cheap
 * hashes from refusing a small burst; the ceiling bounds memory (~1 KB each). */
#define AUTH_QUEUE_BUDGET_MS 1000
#define AUTH_QUEUE_MIN 16
#define AUTH_QUEUE_MAX 4096

/* One crypt(3) run. Sessions that send the same user and password while it
 * runs wait on it instead of queueing their own (64 clients starting at once
 * with one account would otherwise cost 64 slow hashes). */
struct auth_work {
    struct auth_task task;           /* first; its cache is the submitting worker's */
    struct loop_timer hold;          /* delays the answer (see job_finish) */
    struct auth_cache_link inflight; /* in the worker's table of works in flight */
    struct auth_job *waiters;
    unsigned live; /* waiters not cancelled */
    uint8_t known; /* the user exists: a match counts */
    uint8_t ok;
    uint8_t mixed;   /* the users file has more than one setting */
    uint8_t slowest; /* ...and this is hashed with the slowest one */
    uint32_t cost_us, took_us;
    char user[256];
    char pass[256];
    char hash[512];
};

/* A session waiting for a work: the handle auth_verify returns. */
struct auth_job {
    struct auth_job *next;
    struct auth_work *work; /* NULL once the answer is being delivered */
    auth_done_fn done;
    void *owner; /* NULL once cancelled */
};

static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_cond_t idle;           /* a thread let go of a work */
    struct auth_task *head, *tail; /* tasks queued, oldest first */
    size_t len;
    pthread_t *threads;
    /* The cache of the task each thread runs or posts now, or NULL. */
    struct auth_cache **held;
    int nthreads, stop;
    /* What hashes of the slowest setting of a mixed users file take now:
     * the cost measured at load holds on an idle machine, but under CPU
     * contention a slow hash takes longer, and a cheap one held only to the
     * measured cost would again answer sooner. A peak that decays by 1/8 per
     * such hash. */
    _Atomic uint32_t slowest_us;
} pool = {.mu = PTHREAD_MUTEX_INITIALIZER,
          .cv = PTHREAD_COND_INITIALIZER,
          .idle = PTHREAD_COND_INITIALIZER};

static void note_slowest(uint32_t took_us)
{
    uint32_t old = atomic_load_explicit(&pool.slowest_us, memory_order_relaxed), next;
    do
        next = took_us > old - old / 8 ? took_us : old - old / 8;
    while (!atomic_compare_exchange_weak_explicit(&pool.slowest_us, &old, next,
                                                  memory_order_relaxed, memory_order_relaxed));
}

/* Stand-in for unknown users when the users file is empty: the hash of a
 * random password nobody knows, made at start so it costs what a real one does. */
static char fallback_hash[CRYPT_OUTPUT_SIZE];

static int make_fallback_hash(void)
{
    struct crypt_data cd;
    uint8_t secret[24];
    char pass[2 * sizeof secret + 1];
    memset(&cd, 0, sizeof cd);
    if (getrandom(secret, sizeof secret, 0) != (ssize_t)sizeof secret)
        return -1;
    for (size_t i = 0; i < sizeof secret; i++)
        snprintf(pass + 2 * i, 3, "%02x", secret[i]);
    const char *salt = crypt_gensalt_rn("$y$", 0, NULL, 0, cd.setting, sizeof cd.setting);
    const char *h = salt ? crypt_r(pass, salt, &cd) : NULL;
    if (!h || h[0] == '*')
        return -1;
    snprintf(fallback_hash, sizeof fallback_hash, "%s", h);
    auth_wipe(&cd, sizeof cd);
    return 0;
}

static void job_run(struct auth_task *t)
{
    struct auth_work *j = (struct auth_work *)t;
    struct crypt_data *cd = calloc(1, sizeof *cd);
    const char *out = NULL;
    if (cd)
        j->took_us = users_crypt_timed(j->pass, j->hash, cd, &out);
    j->ok = j->known && out && out[0] != '*' && auth_streq(out, j->hash);
    if (cd) {
        auth_wipe(cd, sizeof *cd);
        free(cd);
    }
    if (j->slowest)
        note_slowest(j->took_us);
}

/* Under pool.mu. */
static void queue_unlink(struct auth_task *t)
{
    if (t->qprev)
        t->qprev->qnext = t->qnext;
    else
        pool.head = t->qnext;
    if (t->qnext)
        t->qnext->qprev = t->qprev;
    else
        pool.tail = t->qprev;
    t->qprev = t->qnext = NULL;
    t->queued = 0;
    pool.len--;
}

/* On the submitting worker. */
static void task_answer(struct mail *m)
{
    struct auth_task *t = (struct auth_task *)m;
    t->done(t, t->ran);
}

/* Takes the next task for thread `i`, or NULL on stop. */
static struct auth_task *take(int i)
{
    pthread_mutex_lock(&pool.mu);
    while (!pool.head && !pool.stop)
        pthread_cond_wait(&pool.cv, &pool.mu);
    /* On stop, what is still queued is not run: each queued task has a
     * waiting session, whose close withdraws and frees it. */
    struct auth_task *t = pool.stop ? NULL : pool.head;
    if (t) {
        queue_unlink(t);
        pool.held[i] = t->cache;
    }
    pthread_mutex_unlock(&pool.mu);
    return t;
}

/* Thread `i` no longer touches what it took: auth_pool_release may end. */
static void let_go(int i)
{
    pthread_mutex_lock(&pool.mu);
    pool.held[i] = NULL;
    pthread_cond_broadcast(&pool.idle);
    pthread_mutex_unlock(&pool.mu);
}

static void *pool_main(void *arg)
{
    int i = (int)(intptr_t)arg;
    struct auth_task *t;
    while ((t = take(i))) {
        t->run(t);
        t->ran = 1;
        mailbox_post(auth_cache_mailbox(t->cache), &t->mail, task_answer);
        let_go(i);
    }
    return NULL;
}

int auth_pool_start(int nthreads)
{
    if (make_fallback_hash() < 0)
        return -1;
    pool.threads = calloc((size_t)nthreads, sizeof *pool.threads);
    pool.held = calloc((size_t)nthreads, sizeof *pool.held);
    if (!pool.threads || !pool.held) {
        auth_pool_stop();
        return -1;
    }
    for (int i = 0; i < nthreads; i++) {
        if (pthread_create(&pool.threads[i], NULL, pool_main, (void *)(intptr_t)i) != 0) {
            auth_pool_stop();
            return -1;
        }
        pool.nthreads++;
    }
    return 0;
}

void auth_pool_stop(void)
{
    pthread_mutex_lock(&pool.mu);
    pool.stop = 1;
    pthread_cond_broadcast(&pool.cv);
    pthread_mutex_unlock(&pool.mu);
    for (int i = 0; i < pool.nthreads; i++)
        pthread_join(pool.threads[i], NULL);
    free(pool.threads);
    free(pool.held);
    pool.threads = NULL;
    pool.held = NULL;
    pool.nthreads = 0;
    pool.stop = 0;
}

/* Under pool.mu. */
static int holds(const struct auth_cache *c)
{
    for (int i = 0; i < pool.nthreads; i++)
        if (pool.held[i] == c)
            return 1;
    return 0;
}

/* Shutdown only, so a scan of the queue (at most AUTH_QUEUE_MAX) is fine. */
void auth_pool_release(struct auth_cache *c)
{
    if (!c)
        return; /* a worker that failed before it had one */
    pthread_mutex_lock(&pool.mu);
    for (struct auth_task *t = pool.head, *next; t; t = next) {
        next = t->qnext;
        if (t->cache != c)
            continue;
        queue_unlink(t);
        mailbox_post(auth_cache_mailbox(c), &t->mail, task_answer);
    }
    while (holds(c))
        pthread_cond_wait(&pool.idle, &pool.mu);
    pthread_mutex_unlock(&pool.mu);
}

/* On the submitting worker, once no pool thread holds j. */
static void work_free(struct auth_work *j)
{
    auth_cache_inflight_del(&j->inflight);
    while (j->waiters) {
        struct auth_job *w = j->waiters;
        j->waiters = w->next;
        free(w);
    }
    auth_wipe(j->pass, sizeof j->pass);
    free(j);
}

/* Every waiter still there hears the result. A callback may cancel another
 * waiter of this work: the list is detached first, so that finds no work. */
static void deliver(struct auth_work *j)
{
    struct auth_job *list = j->waiters;
    int ok = j->ok;
    for (struct auth_job *w = list; w; w = w->next)
        w->work = NULL;
    j->waiters = NULL;
    if (ok)
        auth_cache_put(j->task.cache, j->user, j->hash, j->pass);
    work_free(j);
    while (list) {
        struct auth_job *w = list;
        list = w->next;
        if (w->owner)
            w->done(w->owner, ok);
        free(w);
    }
}

static void on_hold_end(struct loop_timer *t)
{
    deliver(container_of(t, struct auth_work, hold));
}

/* On the submitting worker. A work nobody waits for any more is dropped, its
 * result unused and uncached. Otherwise the answer goes out no sooner than
 * the slowest setting of the users file takes from the start of the hash, so
 * its timing does not tell which user exists or what hash it has; the wait is
 * a timer on the worker's loop, never a sleeping thread. A work answered
 * without hashing failed (j->ok is 0). */
static void job_finish(struct auth_task *t, int ran)
{
    struct auth_work *j = (struct auth_work *)t;
    (void)ran;
    if (j->live == 0) {
        work_free(j);
        return;
    }
    uint32_t now_us = atomic_load_explicit(&pool.slowest_us, memory_order_relaxed);
    uint32_t cost_us = j->mixed && now_us > j->cost_us ? now_us : j->cost_us;
    uint32_t left_ms = j->took_us < cost_us ? (cost_us - j->took_us + 999) / 1000 : 0;
    if (left_ms &&
        loop_timer_arm(auth_cache_loop(j->task.cache), &j->hold, left_ms, on_hold_end) == 0)
        return;
    if (left_ms)
        log_error("auth: cannot delay an answer: out of memory");
    deliver(j);
}

/* hash: the user's stored hash, or NULL for an unknown user. */
static struct auth_work *new_work(const struct users *users, const char *user, const char *hash,
                                  const char *pass, struct auth_cache *cache)
{
    struct auth_work *j = calloc(1, sizeof *j);
    if (!j)
        return NULL;
    j->known = hash != NULL;
    /* An unknown user is checked against a hash of the slowest setting and
     * can never succeed. */
    if (!hash)
        hash = users_stand_in(users) ? users_stand_in(users) : fallback_hash;
    snprintf(j->user, sizeof j->user, "%s", user);
    snprintf(j->pass, sizeof j->pass, "%s", pass);
    snprintf(j->hash, sizeof j->hash, "%s", hash);
    j->cost_us = users_cost_us(users);
    j->mixed = users_settings(users) > 1;
    j->slowest = j->mixed && users_same_setting(hash, users_stand_in(users));
    j->task.cache = cache;
    j->task.run = job_run;
    j->task.done = job_finish;
    return j;
}

static size_t queue_bound(uint32_t cost_us)
{
    uint64_t n = (uint64_t)pool.nthreads * AUTH_QUEUE_BUDGET_MS * 1000 / (cost_us ? cost_us : 1);
    return n < AUTH_QUEUE_MIN ? AUTH_QUEUE_MIN : n > AUTH_QUEUE_MAX ? AUTH_QUEUE_MAX : (size_t)n;
}

/* Returns 0, or -1 when the queue holds `bound` tasks already. */
static int enqueue(struct auth_task *t, struct auth_cache *cache, size_t bound)
{
    t->cache = cache;
    t->ran = 0;
    pthread_mutex_lock(&pool.mu);
    if (pool.len >= bound) {
        pthread_mutex_unlock(&pool.mu);
        return -1;
    }
    t->qnext = NULL;
    t->qprev = pool.tail;
    if (pool.tail)
        pool.tail->qnext = t;
    else
        pool.head = t;
    pool.tail = t;
    pool.len++;
    t->queued = 1;
    pthread_cond_signal(&pool.cv);
    pthread_mutex_unlock(&pool.mu);
    return 0;
}

/* Other tasks are counted as taking about a millisecond (a GSS-API context
 * step: a decryption and a replay cache write). */
#define AUTH_TASK_COST_US 1000

int auth_pool_submit(struct auth_task *t, struct auth_cache *cache)
{
    return enqueue(t, cache, queue_bound(AUTH_TASK_COST_US));
}

int auth_pool_withdraw(struct auth_task *t)
{
    int queued;
    pthread_mutex_lock(&pool.mu);
    queued = t->queued;
    if (queued)
        queue_unlink(t);
    pthread_mutex_unlock(&pool.mu);
    return queued;
}

struct auth_job *auth_verify(const struct users *users, const char *user, const char *pass,
                             struct auth_cache *cache, auth_done_fn done, void *owner)
{
    struct auth_job *w = calloc(1, sizeof *w);
    uint64_t digest[2];
    const char *hash = users_find(users, user);
    if (!w) {
        errno = ENOMEM;
        return NULL;
    }
    auth_cache_digest(cache, user, hash ? hash : "", pass, digest);
    struct auth_cache_link *l = auth_cache_inflight_find(cache, digest);
    struct auth_work *j = l ? container_of(l, struct auth_work, inflight) : NULL;
    if (!j) {
        if (!(j = new_work(users, user, hash, pass, cache))) {
            free(w);
            errno = ENOMEM;
            return NULL;
        }
        if (enqueue(&j->task, cache, queue_bound(j->cost_us)) < 0) {
            auth_wipe(j->pass, sizeof j->pass);
            free(j);
            free(w);
            errno = EAGAIN;
            return NULL;
        }
        auth_cache_inflight_add(cache, &j->inflight, digest);
    }
    w->done = done;
    w->owner = owner;
    w->work = j;
    w->next = j->waiters;
    j->waiters = w;
    j->live++;
    return w;
}

void auth_cancel(struct auth_job *w)
{
    struct auth_work *j = w->work;
    w->owner = NULL;
    if (!j || --j->live > 0)
        return;
    if (loop_timer_armed(&j->hold)) {
        loop_timer_cancel(auth_cache_loop(j->task.cache), &j->hold);
        work_free(j);
        return;
    }
    /* Not queued: a pool thread hashes it now or its answer is in the
     * mailbox, and job_finish drops it. */
    if (auth_pool_withdraw(&j->task))
        work_free(j);
}
