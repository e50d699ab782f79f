#include "bulk.h"

#include "loop.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define CHUNK (512 * 1024)
/* Calls per wakeup, so that one stream cannot starve the others. */
#define BURST 16

struct stream {
    struct handler h;
    struct tunnel t;
    struct bulk *b;
    bool ready;
    atomic_ullong bytes; /* sent (upload) or received (download) */
};

static char chunk[CHUNK];

static void stream_fail(struct stream *s, const char *what, int err)
{
    struct bulk *b = s->b;
    if (b->err[0] == '\0')
        snprintf(b->err, sizeof(b->err), "stream: %s%s%s", what, err ? ": " : "",
                 err ? strerror(err) : "");
    b->failed++;
    close(s->h.fd);
    loop_forget(&s->h);
    s->h.fd = -1;
}

static void pump(struct stream *s)
{
    struct bulk *b = s->b;
    for (int i = 0; i < BURST; i++) {
        ssize_t n =
            b->upload ? send(s->h.fd, chunk, CHUNK, MSG_NOSIGNAL) : recv(s->h.fd, chunk, CHUNK, 0);
        if (n < 0 && errno == EAGAIN)
            return;
        if (n < 0) {
            stream_fail(s, b->upload ? "send" : "recv", errno);
            return;
        }
        if (n == 0) {
            stream_fail(s, "proxy closed the stream", 0);
            return;
        }
        atomic_fetch_add_explicit(&s->bytes, (unsigned long long)n, memory_order_relaxed);
        if (!b->upload)
            atomic_fetch_add_explicit(&b->rx_bytes, (unsigned long long)n, memory_order_relaxed);
    }
}

static void handshake(struct stream *s)
{
    struct bulk *b = s->b;
    enum tun_status st = tunnel_step(&s->t);
    uint32_t ev = st == TUN_WANT_READ ? EPOLLIN : EPOLLOUT;
    if (st == TUN_ERROR) {
        stream_fail(s, s->t.err, 0);
        return;
    }
    if (st == TUN_DONE) {
        s->ready = true;
        b->established++;
        ev = b->upload ? EPOLLOUT : EPOLLIN;
    }
    if (loop_watch(b->epfd, &s->h, ev) < 0)
        stream_fail(s, "epoll_ctl", errno);
}

static void on_stream(struct handler *h, uint32_t events)
{
    struct stream *s = (struct stream *)h;
    (void)events;
    if (s->ready)
        pump(s);
    else
        handshake(s);
}

static void open_streams(struct bulk *b)
{
    for (int i = 0; i < b->n; i++) {
        struct stream *s = &b->streams[i];
        s->b = b;
        s->h.on_event = on_stream;
        if (tunnel_open(&s->t, &b->o->proxy, &b->dest, SOCKS_CMD_CONNECT, NULL) < 0) {
            s->h.fd = -1;
            b->failed++;
            if (b->err[0] == '\0')
                snprintf(b->err, sizeof(b->err), "stream: %s", s->t.err);
            continue;
        }
        s->h.fd = s->t.fd;
        if (loop_watch(b->epfd, &s->h, EPOLLOUT) < 0)
            stream_fail(s, "epoll_ctl", errno);
    }
}

static void *bulk_main(void *arg)
{
    struct bulk *b = arg;
    open_streams(b);
    while (now_s() < b->end) {
        if (loop_poll(b->epfd, 50) < 0) {
            snprintf(b->err, sizeof(b->err), "epoll_wait: %s", strerror(errno));
            break;
        }
    }
    return NULL;
}

int bulk_start(struct bulk *b, const struct opts *o, const struct sockaddr_in *target, bool upload,
               int n, double end)
{
    int rc;
    memset(b, 0, sizeof(*b));
    b->o = o;
    b->dest.addr = *target;
    b->upload = upload;
    b->n = n;
    b->end = end;
    b->streams = calloc((size_t)n, sizeof(*b->streams));
    b->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (!b->streams || b->epfd < 0) {
        snprintf(b->err, sizeof(b->err), "bulk setup: %s", strerror(errno));
        if (b->epfd >= 0)
            close(b->epfd);
        free(b->streams);
        return -1;
    }
    rc = pthread_create(&b->thread, NULL, bulk_main, b);
    if (rc != 0) {
        snprintf(b->err, sizeof(b->err), "pthread_create: %s", strerror(rc));
        close(b->epfd);
        free(b->streams);
        return -1;
    }
    return 0;
}

void bulk_stream_bytes(const struct bulk *b, unsigned long long *out)
{
    for (int i = 0; i < b->n; i++)
        out[i] = atomic_load_explicit(&b->streams[i].bytes, memory_order_relaxed);
}

void bulk_join(struct bulk *b)
{
    pthread_join(b->thread, NULL);
    for (int i = 0; i < b->n; i++) {
        if (b->streams[i].h.fd >= 0)
            close(b->streams[i].h.fd);
    }
    close(b->epfd);
    free(b->streams);
}
