#include "pingpong.h"

#include "loop.h"
#include "net.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* Seconds a single send or receive may block before the tunnel counts as
 * stuck. */
#define IO_TIMEOUT_S 2

static void round_trips(struct pingpong *p, int fd)
{
    char msg[65536];
    size_t size = (size_t)p->o->size;
    memset(msg, 'p', size);
    while (now_s() < p->win.end) {
        uint64_t t0 = now_ns(), t1;
        if (net_write_all(fd, msg, size) < 0 || net_read_full(fd, msg, size) < 0) {
            snprintf(p->err, sizeof(p->err), "ping-pong after %lld rounds: %s", p->rounds,
                     strerror(errno));
            return;
        }
        t1 = now_ns();
        p->rounds++;
        if ((double)t0 / 1e9 >= p->win.start && (double)t1 / 1e9 < p->win.end)
            hist_add_ns(&p->hist, t1 - t0);
    }
}

static void *pingpong_main(void *arg)
{
    struct pingpong *p = arg;
    struct tunnel t;
    if (tunnel_open_wait(&t, &p->o->proxy, &p->dest, SOCKS_CMD_CONNECT, NULL, now_s() + 5) < 0) {
        snprintf(p->err, sizeof(p->err), "ping-pong tunnel: %s", t.err);
        return NULL;
    }
    /* Blocking calls from here: the thread has one socket, and a blocking
     * read wakes up sooner than an extra epoll round. */
    if (net_blocking(t.fd, IO_TIMEOUT_S) < 0)
        snprintf(p->err, sizeof(p->err), "ping-pong socket setup: %s", strerror(errno));
    else
        round_trips(p, t.fd);
    close(t.fd);
    return NULL;
}

int pingpong_start(struct pingpong *p, const struct opts *o, const struct sockaddr_in *echo,
                   struct window win)
{
    int rc;
    memset(p, 0, sizeof(*p));
    p->o = o;
    p->dest.addr = *echo;
    p->dest.domain = o->domain;
    p->win = win;
    if (o->size < 1 || o->size > 65536) {
        snprintf(p->err, sizeof(p->err), "message size %d out of range 1..65536", o->size);
        return -1;
    }
    if (hist_init(&p->hist) < 0) {
        snprintf(p->err, sizeof(p->err), "histogram: out of memory");
        return -1;
    }
    rc = pthread_create(&p->thread, NULL, pingpong_main, p);
    if (rc != 0) {
        snprintf(p->err, sizeof(p->err), "pthread_create: %s", strerror(rc));
        hist_free(&p->hist);
        return -1;
    }
    return 0;
}

void pingpong_join(struct pingpong *p)
{
    pthread_join(p->thread, NULL);
}

void pingpong_free(struct pingpong *p)
{
    hist_free(&p->hist);
}
