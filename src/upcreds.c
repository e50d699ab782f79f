/* The upstream credentials file. See upcreds.h. */
#include "upcreds.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "auth_secret.h"
#include "route.h"

#define UPCREDS_MAX_BYTES (1u << 20)

struct upcreds {
    struct upstream_hop *v; /* pass holds the password */
    size_t n, cap;
};

void upcreds_free(struct upcreds *u)
{
    if (u == NULL)
        return;
    for (size_t i = 0; i < u->n; i++)
        auth_wipe(u->v[i].pass, sizeof u->v[i].pass);
    free(u->v);
    free(u);
}

static int same_hop(const struct upstream_hop *a, const struct upstream_hop *b)
{
    return a->kind == b->kind && a->port == b->port && strcasecmp(a->host, b->host) == 0 &&
           strcmp(a->user, b->user) == 0;
}

const char *upcreds_find(const struct upcreds *u, const struct upstream_hop *h)
{
    for (size_t i = 0; u != NULL && i < u->n; i++)
        if (same_hop(&u->v[i], h))
            return u->v[i].pass;
    return NULL;
}

static int is_blank(char c)
{
    return c == ' ' || c == '\t' || c == '\r';
}

/* One line "HOP PASSWORD" (line[0..len)); 0, or -1 with err set. */
static int add_line(struct upcreds *u, const char *line, size_t len, const char *path, int lineno,
                    char *err, size_t errlen)
{
    char why[256];
    struct upstream_hop h;
    size_t k = 0, p, e = len;
    while (k < len && !is_blank(line[k]))
        k++;
    for (p = k; p < len && is_blank(line[p]); p++)
        ;
    while (e > p && is_blank(line[e - 1]))
        e--;
    if (route_hop_parse(line, k, &h, why, sizeof why) < 0) {
        /* why is "column N: ...": the column is the line's */
        snprintf(err, errlen, "%s:%d: %s", path, lineno, why);
        return -1;
    }
    if (h.user[0] == '\0' || h.pass[0] != '\0' || h.kind == UPSTREAM_SOCKS4A) {
        snprintf(err, errlen, "%s:%d: the hop needs the form scheme://USER@HOST:PORT", path,
                 lineno);
        return -1;
    }
    if (e == p || e - p > 255) {
        snprintf(err, errlen, "%s:%d: the password (after the hop) must be 1 to 255 bytes", path,
                 lineno);
        return -1;
    }
    if (upcreds_find(u, &h) != NULL) {
        snprintf(err, errlen, "%s:%d: second password for the same hop", path, lineno);
        return -1;
    }
    if (u->n == u->cap) {
        size_t cap = u->cap ? u->cap * 2 : 8;
        struct upstream_hop *v = realloc(u->v, cap * sizeof *v);
        if (v == NULL) {
            snprintf(err, errlen, "%s: out of memory", path);
            return -1;
        }
        u->v = v;
        u->cap = cap;
    }
    memcpy(h.pass, line + p, e - p);
    h.pass[e - p] = '\0';
    u->v[u->n++] = h;
    return 0;
}

struct upcreds *upcreds_parse(const char *text, size_t len, const char *path, char *err,
                              size_t errlen)
{
    struct upcreds *u = calloc(1, sizeof *u);
    int lineno = 0;
    if (u == NULL) {
        snprintf(err, errlen, "%s: out of memory", path);
        return NULL;
    }
    for (size_t off = 0; off < len;) {
        const char *nl = memchr(text + off, '\n', len - off);
        size_t l = nl ? (size_t)(nl - (text + off)) : len - off;
        const char *line = text + off;
        size_t b = 0;
        lineno++;
        off += l + 1;
        if (memchr(line, '\0', l) != NULL) {
            snprintf(err, errlen, "%s:%d: not text", path, lineno);
            upcreds_free(u);
            return NULL;
        }
        while (b < l && is_blank(line[b]))
            b++;
        if (b == l || line[b] == '#')
            continue;
        if (add_line(u, line + b, l - b, path, lineno, err, errlen) < 0) {
            upcreds_free(u);
            return NULL;
        }
    }
    return u;
}

/* The whole file, after checking that it is a regular file others cannot
 * touch. NULL with err set. */
static char *read_private(const char *path, size_t *len, char *err, size_t errlen)
{
    struct stat st;
    char *buf = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return NULL;
    }
    if (fstat(fd, &st) < 0)
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
    else if (!S_ISREG(st.st_mode))
        snprintf(err, errlen, "%s: not a regular file", path);
    else if (st.st_mode & 0007)
        snprintf(err, errlen,
                 "%s: others may read or write it (mode %04o): it holds passwords; chmod o-rwx",
                 path, (unsigned)(st.st_mode & 07777));
    else if (st.st_size > (off_t)UPCREDS_MAX_BYTES)
        snprintf(err, errlen, "%s: larger than %u bytes", path, UPCREDS_MAX_BYTES);
    else if ((buf = malloc((size_t)st.st_size + 1)) == NULL)
        snprintf(err, errlen, "%s: out of memory", path);
    else {
        ssize_t n = read(fd, buf, (size_t)st.st_size + 1);
        if (n < 0 || n > st.st_size) {
            snprintf(err, errlen, "%s: %s", path, n < 0 ? strerror(errno) : "changed while read");
            free(buf);
            buf = NULL;
        } else {
            *len = (size_t)n;
        }
    }
    close(fd);
    return buf;
}

struct upcreds *upcreds_load(const char *path, char *err, size_t errlen)
{
    size_t len = 0;
    char *text = read_private(path, &len, err, errlen);
    if (text == NULL)
        return NULL;
    struct upcreds *u = upcreds_parse(text, len, path, err, errlen);
    auth_wipe(text, len);
    free(text);
    return u;
}
