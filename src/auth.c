/* Users file, password verification pool and verification cache. */
#include "auth.h"

#include <crypt.h>
#include <errno.h>
#include <pthread.h>
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

/* One crypt(3) run. Sessions that send the same user and password while it
 * runs wait on it instead of queueing their own (64 clients starting at once
 * with one account would otherwise cost 64 slow hashes). */
struct auth_work {
    struct mail mail;                /* first: posted back to the worker */
    struct auth_work *next;          /* pool queue */
    struct auth_work *next_inflight; /* the worker's works in flight */
    struct mailbox *reply_to;
    struct auth_cache *cache;
    struct auth_job *waiters;
    uint64_t digest[2];
    int known; /* the user exists: a match counts */
    int ok;
    char user[256];
    char pass[256];
    char hash[512];
};

/* A session waiting for a work: the handle auth_verify returns. */
struct auth_job {
    struct auth_job *next;
    auth_done_fn done;
    void *owner; /* NULL once cancelled */
};

static void cache_digest(const struct auth_cache *c, const char *user, const char *hash,
                         const char *pass, uint64_t out[2]);
static struct auth_work **inflight(struct auth_cache *c);

static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct auth_work *head, *tail;
    pthread_t *threads;
    int nthreads, stop;
} pool = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

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
    const char *out = cd ? crypt_r(j->pass, j->hash, cd) : NULL;
    j->ok = j->known && out && out[0] != '*' && auth_streq(out, j->hash);
    if (cd) {
        auth_wipe(cd, sizeof *cd);
        free(cd);
    }
}

static void job_finish(struct mail *m);

static void *pool_main(void *arg)
{
    (void)arg;
    for (;;) {
        pthread_mutex_lock(&pool.mu);
        while (!pool.head && !pool.stop)
            pthread_cond_wait(&pool.cv, &pool.mu);
        struct auth_work *j = pool.head;
        if (j) {
            pool.head = j->next;
            if (!pool.head)
                pool.tail = NULL;
        }
        pthread_mutex_unlock(&pool.mu);
        if (!j)
            return NULL;
        job_run(j);
        mailbox_post(j->reply_to, &j->mail, job_finish);
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

/* On the submitting worker: every waiter hears the result. */
static void job_finish(struct mail *m)
{
    struct auth_work *j = (struct auth_work *)m;
    if (j->cache) {
        struct auth_work **pp = inflight(j->cache);
        while (*pp && *pp != j)
            pp = &(*pp)->next_inflight;
        if (*pp)
            *pp = j->next_inflight;
        if (j->ok)
            auth_cache_put(j->cache, j->user, j->hash, j->pass);
    }
    while (j->waiters) {
        struct auth_job *w = j->waiters;
        j->waiters = w->next;
        if (w->owner)
            w->done(w->owner, j->ok);
        free(w);
    }
    auth_wipe(j->pass, sizeof j->pass);
    free(j);
}

/* The work for the same user, hash and password already in flight. */
static struct auth_work *find_inflight(struct auth_cache *c, const uint64_t digest[2])
{
    for (struct auth_work *j = c ? *inflight(c) : NULL; j; j = j->next_inflight)
        if (j->digest[0] == digest[0] && j->digest[1] == digest[1])
            return j;
    return NULL;
}

/* hash: the user's stored hash, or NULL for an unknown user. */
static struct auth_work *new_work(const struct users *users, const char *user, const char *hash,
                                  const char *pass, struct auth_cache *cache,
                                  struct mailbox *reply_to)
{
    struct auth_work *j = calloc(1, sizeof *j);
    if (!j)
        return NULL;
    j->known = hash != NULL;
    /* An unknown user is checked against a real user's hash (same algorithm,
     * same cost) and can never succeed: no timing tells the two apart. */
    if (!hash)
        hash = users_count(users) ? users->v[0].hash : fallback_hash;
    snprintf(j->user, sizeof j->user, "%s", user);
    snprintf(j->pass, sizeof j->pass, "%s", pass);
    snprintf(j->hash, sizeof j->hash, "%s", hash);
    j->reply_to = reply_to;
    j->cache = cache;
    return j;
}

static void submit(struct auth_work *j)
{
    if (j->cache) {
        j->next_inflight = *inflight(j->cache);
        *inflight(j->cache) = j;
    }
    pthread_mutex_lock(&pool.mu);
    if (pool.tail)
        pool.tail->next = j;
    else
        pool.head = j;
    pool.tail = j;
    pthread_cond_signal(&pool.cv);
    pthread_mutex_unlock(&pool.mu);
}

struct auth_job *auth_verify(const struct users *users, const char *user, const char *pass,
                             struct auth_cache *cache, struct mailbox *reply_to, auth_done_fn done,
                             void *owner)
{
    struct auth_job *w = calloc(1, sizeof *w);
    struct auth_work *j = NULL;
    uint64_t digest[2] = {0, 0};
    const char *hash = users_find(users, user);
    if (!w)
        return NULL;
    if (cache) {
        cache_digest(cache, user, hash ? hash : "", pass, digest);
        j = find_inflight(cache, digest);
    }
    if (!j) {
        if (!(j = new_work(users, user, hash, pass, cache, reply_to))) {
            free(w);
            return NULL;
        }
        j->digest[0] = digest[0];
        j->digest[1] = digest[1];
        submit(j);
    }
    w->done = done;
    w->owner = owner;
    w->next = j->waiters;
    j->waiters = w;
    return w;
}

void auth_cancel(struct auth_job *job)
{
    job->owner = NULL;
}

/* ---------------- verification cache ---------------- */

/* The cache keys on a keyed digest (SipHash under a per-process random key),
 * so it never holds anything a password could be tested against offline. */

#define CACHE_SLOTS 1024 /* per worker; a power of two */

struct cache_slot {
    uint64_t digest[2];
    uint64_t expires; /* ms; 0 = empty */
};

struct auth_cache {
    uint64_t key[2][2];
    uint32_t ttl_ms;
    struct auth_work *inflight; /* verifications this worker waits for */
    struct cache_slot slot[CACHE_SLOTS];
};

static uint64_t coarse_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static struct auth_work **inflight(struct auth_cache *c)
{
    return &c->inflight;
}

struct auth_cache *auth_cache_new(uint32_t ttl_ms)
{
    struct auth_cache *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    if (hash_random_key(c->key[0]) < 0 || hash_random_key(c->key[1]) < 0) {
        free(c);
        return NULL;
    }
    c->ttl_ms = ttl_ms;
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
