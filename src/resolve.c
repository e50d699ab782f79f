/* c-ares on the event loop: its sockets become loop file events (level
 * triggered) and its timeouts one loop timer. */
#include "resolve.h"

#include <ares.h>
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "hostname.h"
#include "log.h"

struct ares_sock {
    struct loop_io io;
    struct resolver *r;
    struct ares_sock *next;
};

struct resolver {
    struct loop *loop;
    ares_channel ch;
    struct ares_sock *socks;
    struct loop_timer timer;
    struct resolve_query *deferred; /* answered during start, not yet delivered */
};

struct resolve_query {
    struct resolver *r;
    resolve_fn fn;
    void *owner; /* NULL once cancelled */
    uint16_t port;
    int starting; /* inside ares_getaddrinfo */
    int status;
    size_t n;
    union addr_any addrs[RESOLVE_MAX_ADDRS];
    struct loop_timer defer; /* delivers an answer that came during start */
    struct resolve_query *next_deferred;
};

static void rearm_timer(struct resolver *r);
static void deliver(struct resolve_query *q);

static void on_sock_io(struct loop_io *io, unsigned events)
{
    struct ares_sock *s = container_of(io, struct ares_sock, io);
    struct resolver *r = s->r;
    ares_socket_t fd = io->fd;
    ares_process_fd(r->ch, (events & LOOP_READ) ? fd : ARES_SOCKET_BAD,
                    (events & LOOP_WRITE) ? fd : ARES_SOCKET_BAD);
    rearm_timer(r);
}

static void on_timer(struct loop_timer *t)
{
    struct resolver *r = container_of(t, struct resolver, timer);
    ares_process_fd(r->ch, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
    rearm_timer(r);
}

static void rearm_timer(struct resolver *r)
{
    struct timeval tv, *tvp = ares_timeout(r->ch, NULL, &tv);
    if (!tvp) {
        loop_timer_cancel(r->loop, &r->timer);
        return;
    }
    uint64_t ms = (uint64_t)tvp->tv_sec * 1000 + (uint64_t)tvp->tv_usec / 1000 + 1;
    if (loop_timer_arm(r->loop, &r->timer, ms, on_timer) < 0)
        log_error("resolver: cannot arm timer");
}

/* c-ares tells us which sockets it wants watched, and for what. */
static void sock_state_cb(void *data, ares_socket_t fd, int readable, int writable)
{
    struct resolver *r = data;
    struct ares_sock **pp = &r->socks, *s;
    unsigned mask = LOOP_LEVEL | (readable ? LOOP_READ : 0) | (writable ? LOOP_WRITE : 0);

    while (*pp && (*pp)->io.fd != fd)
        pp = &(*pp)->next;
    s = *pp;
    if (!readable && !writable) {
        if (s) {
            loop_io_del(r->loop, &s->io);
            *pp = s->next;
            free(s);
        }
        return;
    }
    if (s) {
        if (loop_io_set(r->loop, &s->io, mask) < 0)
            log_error("resolver: epoll_ctl fd %d failed", fd);
        return;
    }
    s = calloc(1, sizeof *s);
    if (!s || loop_io_add(r->loop, &s->io, fd, mask, on_sock_io) < 0) {
        log_error("resolver: cannot watch fd %d", fd);
        free(s);
        return;
    }
    s->r = r;
    s->next = r->socks;
    r->socks = s;
}

struct resolver *resolver_new(struct loop *l, char *err, size_t errlen)
{
    struct resolver *r = calloc(1, sizeof *r);
    struct ares_options o;
    int rc;
    if (!r) {
        snprintf(err, errlen, "resolver: out of memory");
        return NULL;
    }
    memset(&o, 0, sizeof o);
    o.sock_state_cb = sock_state_cb;
    o.sock_state_cb_data = r;
    o.timeout = 1500; /* ms per try, with ARES_OPT_TIMEOUTMS */
    o.tries = 2;
    o.lookups = (char *)"fb"; /* /etc/hosts, then DNS */
    /* The name looked up must be the name the rules judged: no domain from
     * the search list of resolv.conf (or $LOCALDOMAIN) may be appended, and
     * no $HOSTALIASES alias followed. ares_getaddrinfo ignores NOSEARCH
     * before c-ares 1.23; an empty domain list is what stops it there. */
    o.flags = ARES_FLAG_NOSEARCH | ARES_FLAG_NOALIASES;
    o.domains = NULL;
    o.ndomains = 0;
    rc = ares_init_options(&r->ch, &o,
                           ARES_OPT_SOCK_STATE_CB | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES |
                               ARES_OPT_LOOKUPS | ARES_OPT_FLAGS | ARES_OPT_DOMAINS);
    if (rc != ARES_SUCCESS) {
        snprintf(err, errlen, "resolver: c-ares init: %s", ares_strerror(rc));
        free(r);
        return NULL;
    }
    r->loop = l;
    return r;
}

void resolver_free(struct resolver *r)
{
    if (!r)
        return;
    ares_destroy(r->ch); /* answers every pending query */
    while (r->deferred) {
        struct resolve_query *q = r->deferred;
        r->deferred = q->next_deferred;
        loop_timer_cancel(r->loop, &q->defer);
        deliver(q);
    }
    while (r->socks) {
        struct ares_sock *s = r->socks;
        r->socks = s->next;
        loop_io_del(r->loop, &s->io);
        free(s);
    }
    loop_timer_cancel(r->loop, &r->timer);
    free(r);
}

static void set_addr(union addr_any *a, int family, const void *ip, uint16_t port)
{
    memset(a, 0, sizeof *a);
    if (family == AF_INET) {
        a->in4.sin_family = AF_INET;
        memcpy(&a->in4.sin_addr, ip, 4);
        a->in4.sin_port = htons(port);
    } else {
        a->in6.sin6_family = AF_INET6;
        memcpy(&a->in6.sin6_addr, ip, 16);
        a->in6.sin6_port = htons(port);
    }
}

static int is_localhost(const char *name)
{
    size_t n = strlen(name);
    if (n && name[n - 1] == '.')
        n--;
    return (n == 9 && strncasecmp(name, "localhost", 9) == 0) ||
           (n > 10 && strncasecmp(name + n - 10, ".localhost", 10) == 0);
}

int resolve_literal(const char *name, uint16_t port, union addr_any *addrs, size_t *n)
{
    uint8_t ip[16];
    if (inet_pton(AF_INET, name, ip) == 1) {
        set_addr(&addrs[0], AF_INET, ip, port);
        *n = 1;
        return 1;
    }
    if (inet_pton(AF_INET6, name, ip) == 1) {
        set_addr(&addrs[0], AF_INET6, ip, port);
        *n = 1;
        return 1;
    }
    if (is_localhost(name)) {
        set_addr(&addrs[0], AF_INET6, &in6addr_loopback, port);
        ip[0] = 127, ip[1] = 0, ip[2] = 0, ip[3] = 1;
        set_addr(&addrs[1], AF_INET, ip, port);
        *n = 2;
        return 1;
    }
    return 0;
}

/* Collects the answers, IPv6 and IPv4 alternating, IPv6 first. */
static size_t order_answers(const struct ares_addrinfo *res, uint16_t port, union addr_any *out)
{
    union addr_any v6[RESOLVE_MAX_ADDRS], v4[RESOLVE_MAX_ADDRS];
    size_t n6 = 0, n4 = 0, n = 0;
    for (const struct ares_addrinfo_node *a = res ? res->nodes : NULL; a; a = a->ai_next) {
        if (a->ai_family == AF_INET6 && n6 < RESOLVE_MAX_ADDRS)
            set_addr(&v6[n6++], AF_INET6,
                     &((const struct sockaddr_in6 *)(const void *)a->ai_addr)->sin6_addr, port);
        else if (a->ai_family == AF_INET && n4 < RESOLVE_MAX_ADDRS)
            set_addr(&v4[n4++], AF_INET,
                     &((const struct sockaddr_in *)(const void *)a->ai_addr)->sin_addr, port);
    }
    for (size_t i = 0; n < RESOLVE_MAX_ADDRS && (i < n6 || i < n4); i++) {
        if (i < n6)
            out[n++] = v6[i];
        if (i < n4 && n < RESOLVE_MAX_ADDRS)
            out[n++] = v4[i];
    }
    return n;
}

static void deliver(struct resolve_query *q)
{
    if (q->owner)
        q->fn(q->owner, q->status, q->addrs, q->n);
    free(q);
}

static void on_deferred(struct loop_timer *t)
{
    struct resolve_query *q = container_of(t, struct resolve_query, defer);
    struct resolve_query **pp = &q->r->deferred;
    while (*pp != q)
        pp = &(*pp)->next_deferred;
    *pp = q->next_deferred;
    deliver(q);
}

static void on_answer(void *arg, int status, int timeouts, struct ares_addrinfo *res)
{
    struct resolve_query *q = arg;
    (void)timeouts;
    q->n = status == ARES_SUCCESS ? order_answers(res, q->port, q->addrs) : 0;
    if (q->n)
        q->status = RESOLVE_OK;
    else if (status == ARES_ENOTFOUND || status == ARES_ENODATA || status == ARES_SUCCESS)
        q->status = RESOLVE_NOTFOUND;
    else
        q->status = RESOLVE_FAILED;
    if (res)
        ares_freeaddrinfo(res);
    if (!q->starting) {
        deliver(q);
    } else if (loop_timer_arm(q->r->loop, &q->defer, 0, on_deferred) < 0) {
        q->owner = NULL;
        q->starting = 2; /* cannot defer: resolve_start reports failure */
    } else {
        q->next_deferred = q->r->deferred;
        q->r->deferred = q;
    }
}

struct resolve_query *resolve_start(struct resolver *r, const char *name, uint16_t port,
                                    resolve_fn fn, void *owner)
{
    struct ares_addrinfo_hints hints;
    struct resolve_query *q = calloc(1, sizeof *q);
    if (!q)
        return NULL;
    q->r = r;
    q->fn = fn;
    q->owner = owner;
    q->port = port;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    /* $CARES_HOSTS may name another hosts file (tests use their own). */
    hints.ai_flags = ARES_AI_ENVHOSTS;
    /* c-ares may answer from /etc/hosts inside this call; the caller is told
     * that fn never runs from here, so such an answer waits for a 0 ms timer. */
    q->starting = 1;
    if (hostname_problem(name, strlen(name)) == NULL)
        ares_getaddrinfo(r->ch, name, NULL, &hints, on_answer, q);
    else /* c-ares would read escapes in it: refused like proto does */
        on_answer(q, ARES_EBADNAME, 0, NULL);
    rearm_timer(r);
    if (q->starting == 2) {
        free(q);
        return NULL;
    }
    q->starting = 0;
    return q;
}

void resolve_cancel(struct resolve_query *q)
{
    q->owner = NULL;
}
