/* The users file: parse, sort once, find; hash settings and their cost. */
#include "users.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "auth_secret.h"

struct user_entry {
    char *name;
    char *hash;
    int line; /* in the file, for the duplicate's message */
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

/* By name, then by line: of equal names, the later line sorts after. */
static int entry_line_cmp(const void *a, const void *b)
{
    int c = entry_cmp(a, b);
    if (c)
        return c;
    return ((const struct user_entry *)a)->line - ((const struct user_entry *)b)->line;
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

enum users_change users_compare(const struct users *old, const struct users *new, const char *name)
{
    const char *was = users_find(old, name), *now = users_find(new, name);
    if (!now)
        return USERS_REMOVED;
    return was && strcmp(was, now) != 0 ? USERS_NEW_PASSWORD : USERS_SAME;
}

const char *users_name(const struct users *u, size_t i)
{
    return u->v[i].name;
}

size_t users_settings(const struct users *u)
{
    return u ? u->nsettings : 0;
}

uint32_t users_cost_us(const struct users *u)
{
    return u ? u->cost_us : 0;
}

const char *users_stand_in(const struct users *u)
{
    return u ? u->stand_in : NULL;
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

static int users_add(struct users *u, size_t *cap, const char *name, size_t nlen, const char *hash,
                     int line)
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
    u->v[u->n].line = line;
    if (!u->v[u->n].name || !u->v[u->n].hash) {
        free(u->v[u->n].name);
        free(u->v[u->n].hash);
        return -1;
    }
    u->n++;
    return 0;
}

/* Parses one line (NUL-terminated, no newline). Duplicates are found later,
 * once every line is in. Returns 0 or -1 with err set. */
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
    if (why) {
        snprintf(err, errlen, "%s:%d: %s", path, lineno, why);
        return -1;
    }
    if (users_add(u, cap, p, (size_t)(colon - p), colon + 1, lineno) < 0) {
        snprintf(err, errlen, "%s:%d: out of memory", path, lineno);
        return -1;
    }
    return 0;
}

/* Sorts the entries once, so lookups are binary searches, and returns the
 * earliest line that repeats a name before it, or 0. One pass: after the
 * sort, a repeated name sits right after its first line. */
static int users_sort(struct users *u)
{
    int dup = 0;
    if (u->n > 1)
        qsort(u->v, u->n, sizeof *u->v, entry_line_cmp);
    for (size_t i = 1; i < u->n; i++)
        if (strcmp(u->v[i - 1].name, u->v[i].name) == 0 && (!dup || u->v[i].line < dup))
            dup = u->v[i].line;
    return dup;
}

static uint64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

uint32_t users_crypt_timed(const char *pass, const char *hash, struct crypt_data *cd,
                           const char **out)
{
    uint64_t t0 = mono_us();
    *out = crypt_r(pass, hash, cd);
    return (uint32_t)(mono_us() - t0);
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

int users_same_setting(const char *a, const char *b)
{
    size_t len = setting_len(a);
    return setting_len(b) == len && strncmp(a, b, len) == 0;
}

/* Microseconds one hash with this setting takes: the median of three runs,
 * so one preempted run does not count. */
static uint32_t hash_cost_us(const char *hash, struct crypt_data *cd)
{
    uint32_t t[3];
    const char *out;
    for (int i = 0; i < 3; i++)
        t[i] = users_crypt_timed("socks5d: not a password", hash, cd, &out);
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
        while (k < u->nsettings && !users_same_setting(u->v[rep[k]].hash, u->v[i].hash))
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

/* Ends a parse that stopped at `bad` (0 or the line whose error is in err):
 * a duplicate on an earlier line is reported instead, as it comes first. */
static struct users *users_finish(struct users *u, int bad, const char *path, char *err,
                                  size_t errlen)
{
    int dup = users_sort(u);
    if (dup && (!bad || dup < bad))
        snprintf(err, errlen, "%s:%d: duplicate user", path, dup);
    else if (!bad && users_measure(u) < 0)
        snprintf(err, errlen, "%s: out of memory", path);
    else if (!bad)
        return u;
    users_free(u);
    return NULL;
}

struct users *users_parse(const char *text, size_t len, const char *path, char *err, size_t errlen)
{
    struct users *u = calloc(1, sizeof *u);
    size_t cap = 0, off = 0;
    int lineno = 0, bad = 0;
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
            bad = lineno;
            break;
        }
        memcpy(line, text + off, l);
        line[l] = '\0';
        if (users_line(u, &cap, line, path, lineno, err, errlen) < 0) {
            bad = lineno;
            break;
        }
        off += l + 1;
    }
    return users_finish(u, bad, path, err, errlen);
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

void users_warn_mixed(const struct users *u, const char *path, FILE *out)
{
    if (users_settings(u) <= 1)
        return;
    fprintf(out,
            "socks5d: warning: users file %s mixes %zu hash algorithms or costs: every "
            "login is answered as late as the slowest (%u ms), so that timing does not "
            "tell users apart; rehash with one setting (`socks5d passwd NAME`)\n",
            path, users_settings(u), (unsigned)((users_cost_us(u) + 999) / 1000));
}

/* The length crypt(3) gives hashes of `hash`'s setting, 0 when it refuses
 * the setting. Every hash of one setting has the same length. */
static size_t made_len(const char *hash, struct crypt_data *cd)
{
    const char *out = crypt_r("socks5d: not a password", hash, cd);
    return out && out[0] != '*' && users_same_setting(out, hash) ? strlen(out) : 0;
}

size_t users_warn_unusable(const struct users *u, const char *path, FILE *out)
{
    static const char digits[] =
        "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz$";
    struct {
        const char *hash;
        size_t len;
    } seen[32];
    size_t nseen = 0, bad = 0;
    struct crypt_data *cd = u && u->n ? calloc(1, sizeof *cd) : NULL;
    for (size_t i = 0; cd && i < u->n; i++) {
        const char *h = u->v[i].hash;
        size_t k = 0, len;
        while (k < nseen && !users_same_setting(seen[k].hash, h))
            k++;
        len = k < nseen ? seen[k].len : made_len(h, cd);
        if (k == nseen && nseen < sizeof seen / sizeof *seen)
            seen[nseen++].hash = h, seen[k].len = len;
        size_t tail = setting_len(h);
        if (len == strlen(h) && strspn(h + tail, digits) == strlen(h + tail))
            continue;
        bad++;
        fprintf(out,
                "%s:%d: warning: user %s: crypt(3) cannot match this hash with any password (%s), "
                "so every login as %s fails; make a new one with `socks5d passwd -f %s %s`\n",
                path, u->v[i].line, u->v[i].name,
                len ? "cut short or with stray characters" : "its algorithm is refused here",
                u->v[i].name, path, u->v[i].name);
    }
    if (cd)
        auth_wipe(cd, sizeof *cd);
    free(cd);
    return bad;
}
