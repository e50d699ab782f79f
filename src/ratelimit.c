#include "ratelimit.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* Only users with a configured limit get here, so the list is bounded by
 * the configuration (by every configuration loaded, over reloads). */
struct ratelimit_user {
    struct ratelimit_user *next;
    struct relay_bucket up, down;
    char name[];
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct ratelimit_user *users;

static struct ratelimit_user *find(const char *name)
{
    struct ratelimit_user *u = users;
    while (u && strcmp(u->name, name) != 0)
        u = u->next;
    return u;
}

static struct ratelimit_user *add(const char *name, uint64_t rate, uint64_t now_ms)
{
    size_t len = strlen(name) + 1;
    struct ratelimit_user *u = malloc(sizeof *u + len);
    if (!u)
        return NULL;
    memcpy(u->name, name, len);
    relay_bucket_init(&u->up, rate, now_ms);
    relay_bucket_init(&u->down, rate, now_ms);
    u->next = users;
    users = u;
    return u;
}

struct ratelimit_user *ratelimit_get(const char *user, uint64_t rate, uint64_t now_ms)
{
    pthread_mutex_lock(&lock);
    struct ratelimit_user *u = find(user);
    if (u) {
        relay_bucket_set_rate(&u->up, rate);
        relay_bucket_set_rate(&u->down, rate);
    } else {
        u = add(user, rate, now_ms);
    }
    pthread_mutex_unlock(&lock);
    return u;
}

struct relay_bucket *ratelimit_up(struct ratelimit_user *u)
{
    return &u->up;
}

struct relay_bucket *ratelimit_down(struct ratelimit_user *u)
{
    return &u->down;
}
