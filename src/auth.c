/* Users file, password verification pool and verification cache. */
#include "auth.h"

#include <crypt.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "hash.h"
#include "log.h"

/* ---------------- users file ---------------- */

struct user_entry {
    char *name;
    char *hash;
};

struct users {
    struct user_entry *v; /* sorted by name */
    size_t n;
    size_t nsettings;     /* distinct algorithm-and-cost settings */
    const char *stand_in; /* a hash of the slowest setting, for unknown users */
    uint32_t cost_us;     /* what a hash of the slowest setting took at load */
};

static int entry_cmp(const void *a, const void *b)
{
    return strcmp(((const struct user_entry *)a)->name, ((const struct user_entry *)b)->name);
}

void users_free(struct users *u)
{
    if (!u)
        return;
    for (size_t i = 0; i < u->n; i++) {
        free(u->v[i].name);
        free(u->v[i].hash);
    }
    free(u->v);
    free(u);
}

size_t users_count(const struct users *u)
{
    return u ? u->n : 0;
}

size_t users_settings(const struct users *u)
{
    return u ? u->nsettings : 0;
}

uint32_t users_cost_us(const struct users *u)
{
    return u ? u->cost_us : 0;
}

/* Checks one "name:hash" line; returns NULL or the reason it is invalid. */
static const char *check_line(const char *name, size_t nlen, const char *hash)
{
    if (nlen == 0)
        return "empty user name";
    if (strcspn(name, " \t") < nlen)
        return "user name contains white space";
    if (nlen > 255)
        return "user name longer than 255 bytes (RFC 1929 limit)";
    if (hash[0] != '$' || crypt_checksalt(hash) == CRYPT_SALT_INVALID)
        return "not a crypt(3) hash this system supports (make one with `socks5d passwd NAME`)";
    return NULL;
}

static int users_add(struct users *u, size_t *cap, const char *name, size_t nlen, const char *hash)
{
    if (u->n == *cap) {
        size_t ncap = *cap ? *cap * 2 : 16;
        struct user_entry *v = realloc(u->v, ncap * sizeof *v);
        if (!v)
            return -1;
        u->v = v;
        *cap = ncap;
    }
    u->v[u->n].name = strndup(name, nlen);
    u->v[u->n].hash = strdup(hash);
    if (!u->v[u->n].name || !u->v[u->n].hash) {
        free(u->v[u->n].name);
        free(u->v[u->n].hash);
        return -1;
    }
    u->n++;
    return 0;
}

/* Parses one line (NUL-terminated, no newline). Returns 0 or -1 with err set. */
static int users_line(struct users *u, size_t *cap, char *line, const char *path, int lineno,
                      char *err, size_t errlen)
{
    char *p = line + strspn(line, " \t");
    size_t len = strlen(p);
    while (len && (p[len - 1] == ' ' || p[len - 1] == '\t' || p[len - 1] == '\r'))
        p[--len] = '\0';
    if (len == 0 || p[0] == '#')
        return 0;
    char *colon = strchr(p, ':');
    if (!colon) {
        snprintf(err, errlen, "%s:%d: expected name:hash", path, lineno);
        return -1;
    }
    *colon = '\0';
    const char *why = check_line(p, (size_t)(colon - p), colon + 1);
    if (!why && users_find(u, p))
        why = "duplicate user";
    if (why) {
        snprintf(err, errlen, "%s:%d: %s", path, lineno, why);
        return -1;
    }
    if (users_add(u, cap, p, (size_t)(colon - p), colon + 1) < 0) {
        snprintf(err, errlen, "%s:%d: out of memory", path, lineno);
        return -1;
    }
    /* Keep the table sorted so lookups (and the duplicate check) are binary searches. */
    qsort(u->v, u->n, sizeof *u->v, entry_cmp);
    return 0;
}

static uint64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

/* Length of the part of a crypt(3) hash that fixes its algorithm and cost:
 * "$6$rounds=9000$" of "$6$rounds=9000$SALT$DIGEST", "$y$j9T$" of yescrypt,
 * "$2b$12$" of bcrypt (whose salt and digest have no '$' between them). */
static size_t setting_len(const char *hash)
{
    if (strncmp(hash, "$2", 2) == 0) {
        const char *cost = strchr(hash + 1, '$');
        const char *end = cost ? strchr(cost + 1, '$') : NULL;
        return end ? (size_t)(end - hash) + 1 : strlen(hash);
    }
    if (strncmp(hash, "$7$", 3) == 0) /* scrypt: 11 characters of parameters */
        return strnlen(hash, 14);
    const char *digest = strrchr(hash, '$');
    size_t salt = (size_t)(digest - hash);
    while (salt > 0 && hash[salt - 1] != '$')
        salt--;
    return salt > 0 ? salt : (size_t)(digest - hash) + 1;
}

static int same_setting(const char *a, const char *b)
{
    size_t len = setting_len(a);
    return setting_len(b) == len && strncmp(a, b, len) == 0;
}

/* Microseconds one hash with this setting takes: the median of three runs,
 * so one preempted run does not count. */
static uint32_t hash_cost_us(const char *hash, struct crypt_data *cd)
{
    uint32_t t[3];
    for (int i = 0; i < 3; i++) {
        uint64_t t0 = mono_us();
        crypt_r("socks5d: not a password", hash, cd);
        t[i] = (uint32_t)(mono_us() - t0);
    }
    uint32_t lo = t[0] < t[1] ? t[0] : t[1], hi = t[0] < t[1] ? t[1] : t[0];
    return t[2] < lo ? lo : t[2] > hi ? hi : t[2];
}

/* Finds the distinct settings and measures each once, here on the thread
 * that loads the file (never a worker): every answer is later held until
 * the slowest would have finished, and unknown users are hashed with it. */
static int users_measure(struct users *u)
{
    struct crypt_data *cd = calloc(1, sizeof *cd);
    size_t *rep = calloc(u->n ? u->n : 1, sizeof *rep);
    if (!cd || !rep) {
        free(cd);
        free(rep);
        return -1;
    }
    for (size_t i = 0; i < u->n; i++) {
        size_t k = 0;
        while (k < u->nsettings && !same_setting(u->v[rep[k]].hash, u->v[i].hash))
            k++;
        if (k < u->nsettings)
            continue;
        rep[u->nsettings++] = i;
        uint32_t cost = hash_cost_us(u->v[i].hash, cd);
        if (!u->stand_in || cost > u->cost_us) {
            u->stand_in = u->v[i].hash;
            u->cost_us = cost;
        }
    }
    auth_wipe(cd, sizeof *cd);
    free(cd);
    free(rep);
    return 0;
}

struct users *users_parse(const char *text, size_t len, const char *path, char *err, size_t errlen)
{
    struct users *u = calloc(1, sizeof *u);
    size_t cap = 0, off = 0;
    int lineno = 0;
    char line[4096];

    if (!u) {
        snprintf(err, errlen, "%s: out of memory", path);
        return NULL;
    }
    while (off < len) {
        const char *nl = memchr(text + off, '\n', len - off);
        size_t l = nl ? (size_t)(nl - (text + off)) : len - off;
        lineno++;
        if (l >= sizeof line || memchr(text + off, '\0', l)) {
            snprintf(err, errlen, "%s:%d: line too long or not text", path, lineno);
            users_free(u);
            return NULL;
        }
        memcpy(line, text + off, l);
        line[l] = '\0';
        if (users_line(u, &cap, line, path, lineno, err, errlen) < 0) {
            users_free(u);
            return NULL;
        }
        off += l + 1;
    }
    if (users_measure(u) < 0) {
        snprintf(err, errlen, "%s: out of memory", path);
        users_free(u);
        return NULL;
    }
    return u;
}

struct users *users_load(const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    char *buf = NULL;
    size_t cap = 0, len = 0;

    if (!f) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return NULL;
    }
    for (;;) {
        if (len == cap) {
            char *nb = cap < (64u << 20) ? realloc(buf, cap ? cap * 2 : 4096) : NULL;
            if (!nb) {
                snprintf(err, errlen, "%s: too large or out of memory", path);
                free(buf);
                fclose(f);
                return NULL;
            }
            buf = nb;
            cap = cap ? cap * 2 : 4096;
        }
        size_t n = fread(buf + len, 1, cap - len, f);
        len += n;
        if (n == 0)
            break;
    }
    int bad = ferror(f);
    fclose(f);
    struct users *u = NULL;
    if (bad)
        snprintf(err, errlen, "%s: read error", path);
    else
        u = users_parse(buf, len, path, err, errlen);
    free(buf);
    return u;
}

const char *users_find(const struct users *u, const char *name)
{
    struct user_entry key = {.name = (char *)name};
    const struct user_entry *e;
    if (!u || u->n == 0)
        return NULL;
    e = bsearch(&key, u->v, u->n, sizeof *u->v, entry_cmp);
    return e ? e->hash : NULL;
}

/* ---------------- secrets ---------------- */

int auth_streq(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    volatile unsigned char diff = (unsigned char)(la != lb);
    for (size_t i = 0; i < la && i < lb; i++)
        diff |= (unsigned char)(a[i] ^ b[i]);
    return diff == 0;
}

void auth_wipe(void *p, size_t n)
{
    explicit_bzero(p, n);
}

/* ---------------- verification pool ---------------- */

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
    struct mail mail;                 /* first: posted back to the worker */
    struct loop_timer hold;           /* delays the answer (see job_finish) */
    struct auth_work *qprev, *qnext;  /* pool queue, under pool.mu */
    struct auth_work *hnext, **hprev; /* the worker's table of works in flight */
    struct auth_cache *cache;         /* the submitting worker's */
    struct auth_job *waiters;
    unsigned live;  /* waiters not cancelled */
    uint8_t queued; /* in the pool queue, under pool.mu */
    uint8_t known;  /* the user exists: a match counts */
    uint8_t ok;
    uint8_t mixed;   /* the users file has more than one setting */
    uint8_t slowest; /* ...and this is hashed with the slowest one */
    uint32_t cost_us, took_us;
    uint64_t digest[2];
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

static void cache_digest(const struct auth_cache *c, const char *user, const char *hash,
                         const char *pass, uint64_t out[2]);
static struct auth_work *inflight_find(struct auth_cache *c, const uint64_t digest[2]);
static void inflight_link(struct auth_cache *c, struct auth_work *j);
static void inflight_unlink(struct auth_work *j);
static struct loop *cache_loop(const struct auth_cache *c);
static struct mailbox *cache_mailbox(const struct auth_cache *c);

static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct auth_work *head, *tail;
    size_t len;
    pthread_t *threads;
    int nthreads, stop;
    /* What hashes of the slowest setting of a mixed users file take now:
     * the cost measured at load holds on an idle machine, but under CPU
     * contention a slow hash takes longer, and a cheap one held only to the
     * measured cost would again answer sooner. A peak that decays by 1/8 per
     * such hash. */
    _Atomic uint32_t slowest_us;
} pool = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

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

static void job_run(struct auth_work *j)
{
    struct crypt_data *cd = calloc(1, sizeof *cd);
    uint64_t t0 = mono_us();
    const char *out = cd ? crypt_r(j->pass, j->hash, cd) : NULL;
    j->ok = j->known && out && out[0] != '*' && auth_streq(out, j->hash);
    j->took_us = (uint32_t)(mono_us() - t0);
    if (cd) {
        auth_wipe(cd, sizeof *cd);
        free(cd);
    }
}

/* Under pool.mu. */
static void queue_unlink(struct auth_work *j)
{
    if (j->qprev)
        j->qprev->qnext = j->qnext;
    else
        pool.head = j->qnext;
    if (j->qnext)
        j->qnext->qprev = j->qprev;
    else
        pool.tail = j->qprev;
    j->qprev = j->qnext = NULL;
    j->queued = 0;
    pool.len--;
}

static void job_finish(struct mail *m);

static void *pool_main(void *arg)
{
    (void)arg;
    for (;;) {
        pthread_mutex_lock(&pool.mu);
        while (!pool.head && !pool.stop)
            pthread_cond_wait(&pool.cv, &pool.mu);
        /* On stop, what is still queued is not hashed: each queued work has
         * a waiting session, whose close cancels and frees it. */
        struct auth_work *j = pool.stop ? NULL : pool.head;
        if (j)
            queue_unlink(j);
        pthread_mutex_unlock(&pool.mu);
        if (!j)
            return NULL;
        job_run(j);
        if (j->slowest)
            note_slowest(j->took_us);
        mailbox_post(cache_mailbox(j->cache), &j->mail, job_finish);
    }
}

int auth_pool_start(int nthreads)
{
    if (make_fallback_hash() < 0)
        return -1;
    pool.threads = calloc((size_t)nthreads, sizeof *pool.threads);
    if (!pool.threads)
        return -1;
    for (int i = 0; i < nthreads; i++) {
        if (pthread_create(&pool.threads[i], NULL, pool_main, NULL) != 0) {
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
    pool.threads = NULL;
    pool.nthreads = 0;
    pool.stop = 0;
}

/* On the submitting worker, once no pool thread holds j. */
static void work_free(struct auth_work *j)
{
    inflight_unlink(j);
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
        auth_cache_put(j->cache, j->user, j->hash, j->pass);
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
 * a timer on the worker's loop, never a sleeping thread. */
static void job_finish(struct mail *m)
{
    struct auth_work *j = (struct auth_work *)m;
    if (j->live == 0) {
        work_free(j);
        return;
    }
    uint32_t now_us = atomic_load_explicit(&pool.slowest_us, memory_order_relaxed);
    uint32_t cost_us = j->mixed && now_us > j->cost_us ? now_us : j->cost_us;
    uint32_t left_ms = j->took_us < cost_us ? (cost_us - j->took_us + 999) / 1000 : 0;
    if (left_ms && loop_timer_arm(cache_loop(j->cache), &j->hold, left_ms, on_hold_end) == 0)
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
        hash = users && users->stand_in ? users->stand_in : fallback_hash;
    snprintf(j->user, sizeof j->user, "%s", user);
    snprintf(j->pass, sizeof j->pass, "%s", pass);
    snprintf(j->hash, sizeof j->hash, "%s", hash);
    j->cost_us = users ? users->cost_us : 0;
    j->mixed = users && users->nsettings > 1;
    j->slowest = j->mixed && same_setting(hash, users->stand_in);
    j->cache = cache;
    return j;
}

static size_t queue_bound(uint32_t cost_us)
{
    uint64_t n = (uint64_t)pool.nthreads * AUTH_QUEUE_BUDGET_MS * 1000 / (cost_us ? cost_us : 1);
    return n < AUTH_QUEUE_MIN ? AUTH_QUEUE_MIN : n > AUTH_QUEUE_MAX ? AUTH_QUEUE_MAX : (size_t)n;
}

/* Returns 0, or -1 when the queue is full. */
static int submit(struct auth_work *j)
{
    size_t bound = queue_bound(j->cost_us);
    pthread_mutex_lock(&pool.mu);
    if (pool.len >= bound) {
        pthread_mutex_unlock(&pool.mu);
        return -1;
    }
    j->qprev = pool.tail;
    if (pool.tail)
        pool.tail->qnext = j;
    else
        pool.head = j;
    pool.tail = j;
    pool.len++;
    j->queued = 1;
    pthread_cond_signal(&pool.cv);
    pthread_mutex_unlock(&pool.mu);
    return 0;
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
    cache_digest(cache, user, hash ? hash : "", pass, digest);
    struct auth_work *j = inflight_find(cache, digest);
    if (!j) {
        if (!(j = new_work(users, user, hash, pass, cache))) {
            free(w);
            errno = ENOMEM;
            return NULL;
        }
        j->digest[0] = digest[0];
        j->digest[1] = digest[1];
        if (submit(j) < 0) {
            auth_wipe(j->pass, sizeof j->pass);
            free(j);
            free(w);
            errno = EAGAIN;
            return NULL;
        }
        inflight_link(cache, j);
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
    int queued;
    w->owner = NULL;
    if (!j || --j->live > 0)
        return;
    if (loop_timer_armed(&j->hold)) {
        loop_timer_cancel(cache_loop(j->cache), &j->hold);
        work_free(j);
        return;
    }
    pthread_mutex_lock(&pool.mu);
    queued = j->queued;
    if (queued)
        queue_unlink(j);
    pthread_mutex_unlock(&pool.mu);
    /* Not queued: a pool thread hashes it now or its answer is in the
     * mailbox, and job_finish drops it. */
    if (queued)
        work_free(j);
}

/* ---------------- verification cache ---------------- */

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
    struct auth_work *inflight[INFLIGHT_BUCKETS];
    struct cache_slot slot[CACHE_SLOTS];
};

static uint64_t coarse_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static struct loop *cache_loop(const struct auth_cache *c)
{
    return c->loop;
}

static struct mailbox *cache_mailbox(const struct auth_cache *c)
{
    return c->mbox;
}

static struct auth_work *inflight_find(struct auth_cache *c, const uint64_t digest[2])
{
    struct auth_work *j = c->inflight[digest[1] & (INFLIGHT_BUCKETS - 1)];
    while (j && (j->digest[0] != digest[0] || j->digest[1] != digest[1]))
        j = j->hnext;
    return j;
}

static void inflight_link(struct auth_cache *c, struct auth_work *j)
{
    struct auth_work **head = &c->inflight[j->digest[1] & (INFLIGHT_BUCKETS - 1)];
    j->hnext = *head;
    if (*head)
        (*head)->hprev = &j->hnext;
    j->hprev = head;
    *head = j;
}

static void inflight_unlink(struct auth_work *j)
{
    if (!j->hprev)
        return;
    *j->hprev = j->hnext;
    if (j->hnext)
        j->hnext->hprev = j->hprev;
    j->hprev = NULL;
    j->hnext = NULL;
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
static void cache_digest(const struct auth_cache *c, const char *user, const char *hash,
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
    cache_digest(c, user, hash, pass, d);
    const struct cache_slot *s = &c->slot[d[0] & (CACHE_SLOTS - 1)];
    return s->expires > coarse_ms() && s->digest[0] == d[0] && s->digest[1] == d[1];
}

void auth_cache_put(struct auth_cache *c, const char *user, const char *hash, const char *pass)
{
    uint64_t d[2];
    if (!c || c->ttl_ms == 0)
        return;
    cache_digest(c, user, hash, pass, d);
    struct cache_slot *s = &c->slot[d[0] & (CACHE_SLOTS - 1)];
    s->digest[0] = d[0];
    s->digest[1] = d[1];
    s->expires = coarse_ms() + c->ttl_ms;
}

/* ---------------- socks5d passwd ---------------- */

/* Reads one line from stdin without echo when it is a terminal. */
static int read_password(char *buf, size_t len)
{
    struct termios old, quiet;
    int tty = isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &old) == 0;
    if (tty) {
        fprintf(stderr, "Password: ");
        quiet = old;
        quiet.c_lflag &= ~(tcflag_t)ECHO;
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
    }
    char *ok = fgets(buf, (int)len, stdin);
    if (tty) {
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
        fprintf(stderr, "\n");
    }
    if (!ok)
        return -1;
    buf[strcspn(buf, "\r\n")] = '\0';
    return 0;
}

int auth_passwd_main(const char *name)
{
    char pass[512];
    struct crypt_data cd;
    size_t nlen = strlen(name);
    if (nlen == 0 || nlen > 255 || strchr(name, ':') || strpbrk(name, " \t\r\n#")) {
        fprintf(stderr,
                "socks5d passwd: user name must be 1..255 bytes without ':', '#' or spaces\n");
        return 2;
    }
    if (read_password(pass, sizeof pass) < 0 || pass[0] == '\0' || strlen(pass) > 255) {
        fprintf(stderr, "socks5d passwd: expected a password of 1..255 bytes on stdin\n");
        auth_wipe(pass, sizeof pass);
        return 2;
    }
    memset(&cd, 0, sizeof cd);
    const char *salt = crypt_gensalt_rn("$y$", 0, NULL, 0, cd.setting, sizeof cd.setting);
    const char *hash = salt ? crypt_r(pass, salt, &cd) : NULL;
    auth_wipe(pass, sizeof pass);
    if (!hash || hash[0] == '*') {
        fprintf(stderr, "socks5d passwd: crypt failed: %s\n", strerror(errno));
        return 1;
    }
    printf("%s:%s\n", name, hash);
    auth_wipe(&cd, sizeof cd);
    return 0;
}
