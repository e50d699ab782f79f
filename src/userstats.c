#include "userstats.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

struct userstats {
    struct userstats *next;
    _Atomic uint64_t sessions, active, up, down;
    char name[];
};

static struct {
    pthread_mutex_t mu; /* for the list and the count, not the counters */
    struct userstats *head;
    size_t n;
    _Atomic size_t max;
    struct userstats *other;
} us = {.mu = PTHREAD_MUTEX_INITIALIZER};

void userstats_set_max(size_t max)
{
    atomic_store(&us.max, max);
}

static struct userstats *make(const char *name)
{
    size_t len = strlen(name) + 1;
    struct userstats *u = calloc(1, sizeof *u + len);
    if (u)
        memcpy(u->name, name, len);
    return u;
}

/* The entry of `user`, made while there is room, else the overflow entry.
 * Called with the lock held. */
static struct userstats *find(const char *user)
{
    for (struct userstats *u = us.head; u; u = u->next)
        if (strcmp(u->name, user) == 0)
            return u;
    if (us.n < atomic_load(&us.max)) {
        struct userstats *u = make(user);
        if (u) {
            u->next = us.head;
            us.head = u;
            us.n++;
            return u;
        }
    }
    if (!us.other)
        us.other = make(USERSTATS_OTHER);
    return us.other;
}

struct userstats *userstats_begin(const char *user)
{
    struct userstats *u;
    if (!user || atomic_load_explicit(&us.max, memory_order_relaxed) == 0)
        return NULL;
    pthread_mutex_lock(&us.mu);
    u = find(user);
    pthread_mutex_unlock(&us.mu);
    if (u) {
        atomic_fetch_add_explicit(&u->sessions, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&u->active, 1, memory_order_relaxed);
    }
    return u;
}

void userstats_end(struct userstats *u, uint64_t up, uint64_t down)
{
    if (!u)
        return;
    atomic_fetch_sub_explicit(&u->active, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&u->up, up, memory_order_relaxed);
    atomic_fetch_add_explicit(&u->down, down, memory_order_relaxed);
}

/* Prometheus label values escape backslash, quote and newline. */
static void label(FILE *f, const char *v)
{
    for (; *v; v++) {
        if (*v == '\\' || *v == '"')
            fputc('\\', f);
        if (*v == '\n')
            fputs("\\n", f);
        else
            fputc(*v, f);
    }
}

/* The entries in order, the overflow entry last. Called with the lock held. */
static struct userstats *after(const struct userstats *u)
{
    if (!u)
        return us.head ? us.head : us.other;
    return u == us.other ? NULL : u->next ? u->next : us.other;
}

static void sample(FILE *f, const char *name, const struct userstats *u, const char *dir,
                   const _Atomic uint64_t *v)
{
    fprintf(f, "%s{user=\"", name);
    label(f, u->name);
    if (dir)
        fprintf(f, "\",direction=\"%s", dir);
    fprintf(f, "\"} %llu\n", (unsigned long long)atomic_load((_Atomic uint64_t *)v));
}

void userstats_render(FILE *f)
{
    static const char *const names[] = {"socks5d_user_sessions_total",
                                        "socks5d_user_sessions_active", "socks5d_user_bytes_total"};
    static const char *const help[] = {
        "counter Sessions started, per user.", "gauge Sessions open now, per user.",
        "counter Bytes relayed by ended sessions, per user (up: client to target)."};
    if (atomic_load(&us.max) == 0)
        return;
    pthread_mutex_lock(&us.mu);
    for (int k = 0; k < 3; k++) {
        const char *type_end = strchr(help[k], ' ');
        fprintf(f, "# HELP %s %s\n# TYPE %s %.*s\n", names[k], type_end + 1, names[k],
                (int)(type_end - help[k]), help[k]);
        for (const struct userstats *u = after(NULL); u; u = after(u)) {
            if (k == 0)
                sample(f, names[k], u, NULL, &u->sessions);
            else if (k == 1)
                sample(f, names[k], u, NULL, &u->active);
            else {
                sample(f, names[k], u, "up", &u->up);
                sample(f, names[k], u, "down", &u->down);
            }
        }
    }
    pthread_mutex_unlock(&us.mu);
}

void userstats_reset(void)
{
    pthread_mutex_lock(&us.mu);
    while (us.head) {
        struct userstats *u = us.head;
        us.head = u->next;
        free(u);
    }
    free(us.other);
    us.other = NULL;
    us.n = 0;
    pthread_mutex_unlock(&us.mu);
}
