/* See confdiff.h. */
#include "confdiff.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "rules.h"
#include "users.h"

/* Listeners named one by one up to this many per direction, then counted:
 * a log line has room for about 2 KiB. */
#define NAMED_LISTENERS 8

/* An append-only string in a fixed buffer; output past its end is cut. */
struct text {
    char *p;
    size_t len, used;
};

static void put(struct text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(struct text *t, const char *fmt, ...)
{
    va_list ap;
    if (t->used >= t->len)
        return;
    va_start(ap, fmt);
    int n = vsnprintf(t->p + t->used, t->len - t->used, fmt, ap);
    va_end(ap);
    if (n > 0)
        t->used += (size_t)n < t->len - t->used ? (size_t)n : t->len - t->used - 1;
}

/* A separator before every item but the first. */
static void item(struct text *t)
{
    if (t->used > 0)
        put(t, ", ");
}

static void item_if(struct text *t, int cond, const char *name)
{
    if (cond) {
        item(t);
        put(t, "%s", name);
    }
}

static int listed(const struct config *c, const struct listen_spec *l)
{
    for (size_t i = 0; i < c->nlisten; i++)
        if (config_same_listen(&c->listen[i], l))
            return 1;
    return 0;
}

/* "listening on A, B" / "stopped listening on C": what `in` has that
 * `other` has not. */
static void listeners_only_in(struct text *t, const struct config *in, const struct config *other,
                              const char *what)
{
    char name[ADDR_STRLEN];
    size_t n = 0;
    for (size_t i = 0; i < in->nlisten; i++) {
        if (listed(other, &in->listen[i]))
            continue;
        if (n == 0) {
            item(t);
            put(t, "%s ", what);
        }
        if (n < NAMED_LISTENERS)
            put(t, "%s%s", n ? " " : "", addr_str(&in->listen[i].addr.sa, name, sizeof name));
        n++;
    }
    if (n > NAMED_LISTENERS)
        put(t, " and %zu more", n - NAMED_LISTENERS);
}

/* Users of old that new does not let in with the same hash. */
static void users_lost(const struct config *old, const struct config *new, size_t *removed,
                       size_t *changed)
{
    *removed = *changed = 0;
    for (size_t i = 0; i < users_count(old->users); i++) {
        enum users_change ch = users_compare(old->users, new->users, users_name(old->users, i));
        *removed += ch == USERS_REMOVED;
        *changed += ch == USERS_NEW_PASSWORD;
    }
}

void confdiff_changes(const struct config *old, const struct config *new, int listeners, char *out,
                      size_t len)
{
    struct text t = {out, len, 0};
    size_t removed, changed;
    out[0] = '\0';
    if (listeners) {
        listeners_only_in(&t, new, old, "listening on");
        listeners_only_in(&t, old, new, "stopped listening on");
    }
    if (rules_count(old->rules) != rules_count(new->rules)) {
        item(&t);
        put(&t, "rules %zu -> %zu", rules_count(old->rules), rules_count(new->rules));
    }
    users_lost(old, new, &removed, &changed);
    if (removed || changed || users_count(old->users) != users_count(new->users)) {
        item(&t);
        put(&t, "users %zu -> %zu (%zu removed, %zu with a new password)", users_count(old->users),
            users_count(new->users), removed, changed);
    }
    if (t.used == 0)
        put(&t, "no change to listeners, rules or users");
}

static int differs(const char *a, const char *b)
{
    return (a == NULL) != (b == NULL) || (a && strcmp(a, b) != 0);
}

static int same_endpoint(const union addr_any *a, const union addr_any *b)
{
    return a->sa.sa_family == b->sa.sa_family &&
           (!a->sa.sa_family ||
            (addr_same_ip(&a->sa, &b->sa) && addr_port(&a->sa) == addr_port(&b->sa)));
}

void confdiff_restart(const struct config *old, const struct config *new, int running, char *out,
                      size_t len)
{
    struct text t = {out, len, 0};
    out[0] = '\0';
    if (new->workers &&new->workers != running) {
        item(&t);
        put(&t, "workers (running %d, configured %d)", running, new->workers);
    }
    item_if(&t, !same_endpoint(&old->metrics, &new->metrics), "metrics");
    item_if(&t, differs(old->run_user, new->run_user), "user");
    item_if(&t, old->allow_root != new->allow_root, "allow-root");
    item_if(&t, old->auth_cache_ttl_ms != new->auth_cache_ttl_ms, "auth-cache-ttl");
    item_if(&t, differs(old->pid_file, new->pid_file), "pid-file");
}
