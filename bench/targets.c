#include "targets.h"

#include "net.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

/* Bulk sink and source move big chunks (few syscalls, so `direct` shows
 * the loopback ceiling); an echo connection keeps a small buffer of its own,
 * which crr allocates per connection. */
#define CHUNK (512 * 1024)
#define ECHO_CHUNK 65536
/* Per-wakeup cap on read/write calls so one busy socket cannot starve the
 * others sharing the thread. */
#define BURST 16

struct tconn {
    struct handler h;
    struct target *t;
    struct tconn *prev, *next;
    size_t pend_off, pend_len; /* echo: bytes read but not yet sent back */
    char buf[];                /* echo only: ECHO_CHUNK bytes */
};

static void note_err(struct target *t, const char *what, int err)
{
    if (t->err[0] == '\0')
        snprintf(t->err, sizeof(t->err), "target: %s: %s", what, strerror(err));
}

static void tconn_close(struct tconn *c)
{
    struct target *t = c->t;
    close(c->h.fd);
    if (c->prev)
        c->prev->next = c->next;
    else
        t->live = c->next;
    if (c->next)
        c->next->prev = c->prev;
    free(c);
}

static void on_sink(struct tconn *c)
{
    for (int i = 0; i < BURST; i++) {
        ssize_t n = recv(c->h.fd, c->t->scratch, CHUNK, 0);
        if (n < 0 && errno == EAGAIN)
            return;
        if (n <= 0) {
            tconn_close(c);
            return;
        }
        atomic_fetch_add_explicit(&c->t->bytes, (unsigned long long)n, memory_order_relaxed);
    }
}

static void on_source(struct tconn *c)
{
    for (int i = 0; i < BURST; i++) {
        ssize_t n = send(c->h.fd, c->t->scratch, CHUNK, MSG_NOSIGNAL);
        if (n < 0 && errno == EAGAIN)
            return;
        if (n <= 0) {
            tconn_close(c);
            return;
        }
        atomic_fetch_add_explicit(&c->t->bytes, (unsigned long long)n, memory_order_relaxed);
    }
}

/* Echo: send back what is pending; read more only once all of it went out,
 * so a slow reader applies back-pressure instead of growing a buffer. */
static void on_echo(struct tconn *c)
{
    for (int i = 0; i < BURST; i++) {
        ssize_t n;
        if (c->pend_off < c->pend_len) {
            n = send(c->h.fd, c->buf + c->pend_off, c->pend_len - c->pend_off, MSG_NOSIGNAL);
            if (n < 0 && errno == EAGAIN)
                break;
            if (n < 0) {
                tconn_close(c);
                return;
            }
            c->pend_off += (size_t)n;
            continue;
        }
        n = recv(c->h.fd, c->buf, ECHO_CHUNK, 0);
        if (n < 0 && errno == EAGAIN)
            break;
        if (n <= 0) {
            tconn_close(c);
            return;
        }
        atomic_fetch_add_explicit(&c->t->bytes, (unsigned long long)n, memory_order_relaxed);
        c->pend_off = 0;
        c->pend_len = (size_t)n;
    }
    if (loop_watch(c->t->epfd, &c->h, c->pend_off < c->pend_len ? EPOLLOUT : EPOLLIN) < 0)
        tconn_close(c);
}

static void on_conn_event(struct handler *h, uint32_t events)
{
    struct tconn *c = (struct tconn *)h;
    (void)events;
    switch (c->t->kind) {
    case TARGET_SINK:
        on_sink(c);
        break;
    case TARGET_SOURCE:
        on_source(c);
        break;
    default:
        on_echo(c);
        break;
    }
}

static void add_conn(struct target *t, int fd)
{
    /* Only echo keeps per-connection data; sink and source share the
     * thread's scratch buffer, so 9,000 idle connections stay small. */
    struct tconn *c = calloc(1, sizeof(*c) + (t->kind == TARGET_ECHO ? ECHO_CHUNK : 0));
    uint32_t ev = t->kind == TARGET_SOURCE ? EPOLLOUT : EPOLLIN;
    if (!c) {
        note_err(t, "allocating a connection", ENOMEM);
        close(fd);
        return;
    }
    c->h.on_event = on_conn_event;
    c->h.fd = fd;
    c->t = t;
    c->next = t->live;
    if (t->live)
        t->live->prev = c;
    t->live = c;
    if (loop_watch(t->epfd, &c->h, ev) < 0) {
        note_err(t, "epoll_ctl", errno);
        tconn_close(c);
    }
}

static void on_accept(struct handler *h, uint32_t events)
{
    struct target *t = (struct target *)((char *)h - offsetof(struct target, listener));
    (void)events;
    for (int i = 0; i < 64; i++) {
        int fd = accept4(h->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno != EAGAIN && errno != ECONNABORTED && errno != EINTR)
                note_err(t, "accept", errno);
            return;
        }
        atomic_fetch_add_explicit(&t->conns, 1, memory_order_relaxed);
        add_conn(t, fd);
    }
}

static void on_datagram(struct handler *h, uint32_t events)
{
    struct target *t = (struct target *)((char *)h - offsetof(struct target, listener));
    (void)events;
    for (int i = 0; i < 64; i++) {
        struct sockaddr_in from;
        socklen_t flen = sizeof(from);
        ssize_t n = recvfrom(h->fd, t->scratch, CHUNK, 0, (struct sockaddr *)&from, &flen);
        if (n < 0)
            return;
        atomic_fetch_add_explicit(&t->bytes, (unsigned long long)n, memory_order_relaxed);
        /* A full socket buffer drops the reply, as a network would; the
         * client counts it as lost. */
        (void)sendto(h->fd, t->scratch, (size_t)n, 0, (struct sockaddr *)&from, flen);
    }
}

static void *target_main(void *arg)
{
    struct target *t = arg;
    while (!atomic_load(&t->stop)) {
        if (loop_poll(t->epfd, 50) < 0) {
            note_err(t, "epoll_wait", errno);
            break;
        }
    }
    return NULL;
}

static void release(struct target *t)
{
    while (t->live)
        tconn_close(t->live);
    if (t->listener.fd >= 0)
        close(t->listener.fd);
    if (t->epfd >= 0)
        close(t->epfd);
    free(t->scratch);
}

static int setup(struct target *t)
{
    bool udp = t->kind == TARGET_UDP_ECHO;
    t->scratch = malloc(CHUNK);
    if (!t->scratch) {
        note_err(t, "allocating a buffer", ENOMEM);
        return -1;
    }
    memset(t->scratch, 'S', CHUNK);
    t->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (t->epfd < 0) {
        note_err(t, "epoll_create1", errno);
        return -1;
    }
    t->listener.fd = udp ? net_bind_udp(&t->addr) : net_listen_tcp(&t->addr);
    t->listener.on_event = udp ? on_datagram : on_accept;
    if (t->listener.fd < 0 || loop_watch(t->epfd, &t->listener, EPOLLIN) < 0) {
        note_err(t, "listen", errno);
        return -1;
    }
    return 0;
}

int target_start(struct target *t, enum target_kind kind)
{
    int rc;
    memset(t, 0, sizeof(*t));
    t->kind = kind;
    t->epfd = -1;
    t->listener.fd = -1;
    if (setup(t) < 0) {
        release(t);
        return -1;
    }
    rc = pthread_create(&t->thread, NULL, target_main, t);
    if (rc != 0) {
        note_err(t, "pthread_create", rc);
        release(t);
        return -1;
    }
    return 0;
}

void target_stop(struct target *t)
{
    atomic_store(&t->stop, true);
    pthread_join(t->thread, NULL);
    release(t);
}
