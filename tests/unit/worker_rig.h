/* A real worker in the test's own thread, for the unit tests that reach the
 * core (session, udp, bind, policy, worker) through the wire.
 *
 * The configuration comes from config_load with an argv, as the daemon
 * builds it; the worker gets a real listening socket on a loopback port the
 * kernel chose, and the test turns its loop with loop_run_once whenever it
 * waits for something (never in a thread of its own, so every step is
 * deterministic and the worker's state can be read between steps). Clients
 * are ordinary non-blocking sockets that connect to that listener.
 *
 * Kept apart from unit_support.h so the unit tests of the pure modules do
 * not pull in the worker. */
#ifndef SOCKS5D_WORKER_RIG_H
#define SOCKS5D_WORKER_RIG_H

#include "unit_support.h"

#include <ares.h>
#include <poll.h>
#include <stdio.h>
#include <sys/mman.h>

/* The password pool moves to auth_pool.h when auth.c is split (issue 11):
 * either header declares the same auth_pool_start/auth_pool_stop. */
#include "auth_pool.h"
#include "config.h"
#include "log.h"
#include "proto.h"
#include "quota.h"
#include "session.h"
#include "wenv.h"
#include "worker.h"

struct rig {
    struct worker *w;
    struct wenv *env;         /* the worker's, as its sessions see it */
    struct worker_listen ls;  /* the listener the worker was given */
    struct sockaddr_in proxy; /* where clients connect */
    int fds_before;
};

/* A hosts file of the tests' own, named to c-ares by CARES_HOSTS before any
 * resolver exists: RIG_NAME resolves to loopback in both families and
 * RIG_NAME6 to ::1 alone, without a network, whatever the machine's
 * /etc/hosts holds. */
#define RIG_NAME "rig-target.test"
#define RIG_NAME6 "rig-target6.test"
static char rig_hosts[64];

/* What every rig needs once per process, as main() does it. */
static inline int rig_global_setup(void **state)
{
    (void)state;
    snprintf(rig_hosts, sizeof rig_hosts, "/tmp/socks5d-unit-rig-hosts.%d", (int)getpid());
    FILE *f = fopen(rig_hosts, "w");
    assert_non_null(f);
    fprintf(f, "127.0.0.1 %s\n::1 %s\n::1 %s\n", RIG_NAME, RIG_NAME, RIG_NAME6);
    assert_int_equal(fclose(f), 0);
    assert_int_equal(setenv("CARES_HOSTS", rig_hosts, 1), 0);
    assert_int_equal(log_init(), 0);
    assert_int_equal(ares_library_init(ARES_LIB_INIT_ALL), ARES_SUCCESS);
    assert_int_equal(quota_init(), 0);
    assert_int_equal(auth_pool_start(1), 0);
    return 0;
}

static inline int rig_global_teardown(void **state)
{
    (void)state;
    auth_pool_stop();
    unlink(rig_hosts);
    return 0;
}

/* The users file has alice with the password "secret" (a cheap
 * sha256crypt). */
static inline const char *rig_users_path(void)
{
    static char path[64];
    static const char users[] =
        "alice:$5$rounds=1000$fuzzsalt$qGCc4JvvMNwwgoU2eJ4FMcZ.jSqNaOPBoUN0Jv2w9O2\n";
    if (path[0])
        return path;
    int fd = memfd_create("users", MFD_CLOEXEC);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, users, sizeof users - 1), (ssize_t)(sizeof users - 1));
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    return path;
}

/* A snapshot from the daemon's own option parser: logs to /dev/null, no
 * auth cache, an explicit --max-sessions (main() derives the default from
 * the descriptor limit), then `extra` (NULL-terminated) as on the command
 * line. */
static inline struct config *rig_config(const char *const *extra)
{
    char *argv[64];
    int argc = 0, code = 0, check = 0;
    static const char *const base[] = {"socks5d",
                                       "-l",
                                       "127.0.0.1:1080",
                                       "--access-log",
                                       "/dev/null",
                                       "--error-log",
                                       "/dev/null",
                                       "--auth-cache-ttl",
                                       "0",
                                       "--max-sessions",
                                       "1000"};
    for (size_t i = 0; i < sizeof base / sizeof base[0]; i++)
        argv[argc++] = (char *)base[i];
    for (; extra && *extra; extra++) {
        assert_true(argc < 63);
        argv[argc++] = (char *)*extra;
    }
    argv[argc] = NULL;
    struct config *c = config_load(argc, argv, stderr, &code, &check);
    assert_non_null(c);
    return c;
}

static inline void rig_start(struct rig *r, const char *const *extra)
{
    char err[256];
    struct config *c = rig_config(extra);
    memset(r, 0, sizeof *r);
    r->ls.spec = c->listen[0];
    r->fds_before = fd_count();
    r->ls.fd = listen_loopback(&r->proxy, 64);
    set_nonblock(r->ls.fd);
    if (log_configure(&c->log, err, sizeof err) < 0)
        fail_msg("log_configure: %s", err);
    r->w = worker_new(0, c, NULL, &r->ls, 1, err, sizeof err);
    if (!r->w)
        fail_msg("worker_new: %s", err);
    r->env = worker_env(r->w);
    config_unref(c);
}

/* One turn of the worker's loop, waiting at most 5 ms for an event. */
static inline void rig_turn(struct rig *r)
{
    assert_true(loop_run_once(r->env->loop, 5) >= 0);
}

/* Turns the loop until cond holds, for at most WAIT_MS. */
#define RIG_UNTIL(r, cond)                                                                         \
    do {                                                                                           \
        uint64_t rig_deadline_ = now_ms() + WAIT_MS;                                               \
        while (!(cond)) {                                                                          \
            if (now_ms() > rig_deadline_)                                                          \
                fail_msg("still not true after %d ms: %s", WAIT_MS, #cond);                        \
            rig_turn(r);                                                                           \
        }                                                                                          \
    } while (0)

/* What the tests read of the worker's environment: its counters, its
 * session count and its session (the one the test is driving). */
#define RIG_STAT(r, field) stat_get(&(r)->env->stats.field)

static inline size_t rig_sessions(const struct rig *r)
{
    return r->env->sessions.n;
}

static inline struct session *rig_session(const struct rig *r)
{
    assert_non_null(r->env->sessions.head);
    return r->env->sessions.head;
}

/* Ends every session still open and frees the worker; nothing may leak:
 * the session count returns to zero and no descriptor stays open. */
static inline void rig_stop(struct rig *r)
{
    while (r->env->sessions.head)
        session_close(r->env->sessions.head);
    assert_true(loop_run_once(r->env->loop, 0) >= 0);
    assert_int_equal(r->env->sessions.n, 0);
    assert_int_equal(worker_sessions(r->w), 0);
    worker_free(r->w);
    assert_int_equal(fd_count(), r->fds_before);
}

/* A client from IPv4 address `from` (another 127/8 address keeps the
 * per-address limits of one test away from the others), connected to the
 * worker's listener (accepted on a later turn). */
static inline int rig_client_from(struct rig *r, const char *from)
{
    struct sockaddr_in a = {.sin_family = AF_INET};
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    assert_int_equal(inet_pton(AF_INET, from, &a.sin_addr), 1);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(connect(fd, (struct sockaddr *)&r->proxy, sizeof r->proxy), 0);
    set_nonblock(fd);
    return fd;
}

static inline int rig_client(struct rig *r)
{
    return rig_client_from(r, "127.0.0.1");
}

static inline void rig_send(int fd, const void *buf, size_t len)
{
    assert_int_equal(send(fd, buf, len, MSG_NOSIGNAL), (ssize_t)len);
}

/* Reads exactly len bytes, turning the loop while they are not there. */
static inline void rig_recv(struct rig *r, int fd, void *buf, size_t len)
{
    size_t got = 0;
    uint64_t deadline = now_ms() + WAIT_MS;
    while (got < len) {
        ssize_t n = recv(fd, (uint8_t *)buf + got, len - got, 0);
        if (n > 0) {
            got += (size_t)n;
            continue;
        }
        if (n == 0)
            fail_msg("EOF after %zu of %zu bytes", got, len);
        if (errno != EAGAIN)
            fail_msg("recv: %s after %zu of %zu bytes", strerror(errno), got, len);
        if (now_ms() > deadline)
            fail_msg("only %zu of %zu bytes after %d ms", got, len, WAIT_MS);
        rig_turn(r);
    }
}

/* The server closed: EOF (or a reset) with no byte before it. */
static inline void rig_expect_closed(struct rig *r, int fd)
{
    uint8_t b;
    uint64_t deadline = now_ms() + WAIT_MS;
    for (;;) {
        ssize_t n = recv(fd, &b, 1, 0);
        if (n == 0 || (n < 0 && errno == ECONNRESET))
            return;
        if (n > 0)
            fail_msg("unexpected byte 0x%02x before the close", b);
        if (errno != EAGAIN)
            fail_msg("recv: %s", strerror(errno));
        if (now_ms() > deadline)
            fail_msg("server did not close within %d ms", WAIT_MS);
        rig_turn(r);
    }
}

/* Greeting offering only "no authentication", which must be chosen. */
static inline void rig_greet(struct rig *r, int fd)
{
    uint8_t rsp[2];
    rig_send(fd, "\x05\x01\x00", 3);
    rig_recv(r, fd, rsp, 2);
    assert_int_equal(rsp[0], 5);
    assert_int_equal(rsp[1], 0);
}

/* A request for an IPv4 address (host order port). */
static inline void rig_request4(int fd, uint8_t cmd, const char *ip, uint16_t port)
{
    uint8_t req[10] = {5, cmd, 0, SOCKS5_ATYP_IPV4};
    assert_int_equal(inet_pton(AF_INET, ip, req + 4), 1);
    req[8] = (uint8_t)(port >> 8);
    req[9] = (uint8_t)port;
    rig_send(fd, req, sizeof req);
}

/* A request for a domain name. */
static inline void rig_request_name(int fd, uint8_t cmd, const char *name, uint16_t port)
{
    uint8_t req[262] = {5, cmd, 0, SOCKS5_ATYP_DOMAIN};
    size_t n = strlen(name);
    assert_true(n < 256);
    req[4] = (uint8_t)n;
    memcpy(req + 5, name, n);
    req[5 + n] = (uint8_t)(port >> 8);
    req[6 + n] = (uint8_t)port;
    rig_send(fd, req, 7 + n);
}

/* Reads one reply; returns REP and fills bnd (may be NULL) with BND. */
static inline uint8_t rig_reply(struct rig *r, int fd, union addr_any *bnd)
{
    uint8_t h[4], a[18];
    union addr_any tmp;
    if (!bnd)
        bnd = &tmp;
    memset(bnd, 0, sizeof *bnd);
    rig_recv(r, fd, h, 4);
    assert_int_equal(h[0], 5);
    assert_int_equal(h[2], 0);
    if (h[3] == SOCKS5_ATYP_IPV4) {
        rig_recv(r, fd, a, 6);
        bnd->in4.sin_family = AF_INET;
        memcpy(&bnd->in4.sin_addr, a, 4);
        memcpy(&bnd->in4.sin_port, a + 4, 2);
    } else {
        assert_int_equal(h[3], SOCKS5_ATYP_IPV6);
        rig_recv(r, fd, a, 18);
        bnd->in6.sin6_family = AF_INET6;
        memcpy(&bnd->in6.sin6_addr, a, 16);
        memcpy(&bnd->in6.sin6_port, a + 16, 2);
    }
    return h[1];
}

/* Accepts one connection on a listener of the test's, turning the loop
 * while none has arrived. */
/* A server started with opts answers a request for cmd (to 0.0.0.0:0)
 * with rep, then closes. */
static inline void rig_expect_request_refused(const char *const *opts, uint8_t cmd, uint8_t rep)
{
    struct rig r;
    rig_start(&r, opts);
    int c = rig_client(&r);
    rig_greet(&r, c);
    rig_request4(c, cmd, "0.0.0.0", 0);
    assert_int_equal(rig_reply(&r, c, NULL), rep);
    rig_expect_closed(&r, c);
    close(c);
    rig_stop(&r);
}

static inline int rig_accept(struct rig *r, int lfd)
{
    int fd;
    RIG_UNTIL(r, (fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0);
    return fd;
}

/* RFC 1929 subnegotiation for alice; returns the status byte. */
static inline uint8_t rig_login(struct rig *r, int c, const char *pass)
{
    uint8_t msg[64] = {1, 5, 'a', 'l', 'i', 'c', 'e'};
    uint8_t rsp[2];
    size_t n = strlen(pass);
    msg[7] = (uint8_t)n;
    memcpy(msg + 8, pass, n);
    rig_send(c, "\x05\x01\x02", 3);
    rig_recv(r, c, rsp, 2);
    assert_memory_equal(rsp, "\x05\x02", 2);
    rig_send(c, msg, 8 + n);
    rig_recv(r, c, rsp, 2);
    assert_int_equal(rsp[0], 1);
    return rsp[1];
}

struct rig_tunnel {
    int c;   /* the client */
    int t;   /* the target's end, accepted by the test */
    int lfd; /* the target listener */
    union addr_any bnd;
};

/* CONNECT to a fresh loopback listener; the reply must be a success naming
 * the proxy's outbound address, which is where the target sees it from. */
static inline void rig_tunnel_open(struct rig *r, struct rig_tunnel *tn)
{
    struct sockaddr_in ta;
    union addr_any from;
    socklen_t len = sizeof from;
    tn->lfd = listen_loopback(&ta, 4);
    set_nonblock(tn->lfd);
    tn->c = rig_client(r);
    rig_greet(r, tn->c);
    rig_request4(tn->c, SOCKS5_CMD_CONNECT, "127.0.0.1", ntohs(ta.sin_port));
    assert_int_equal(rig_reply(r, tn->c, &tn->bnd), SOCKS5_REP_SUCCEEDED);
    tn->t = rig_accept(r, tn->lfd);
    assert_int_equal(getpeername(tn->t, &from.sa, &len), 0);
    assert_true(addr_same_ip(&from.sa, &tn->bnd.sa));
    assert_int_equal(addr_port(&from.sa), addr_port(&tn->bnd.sa));
}

static inline void rig_tunnel_close(struct rig_tunnel *tn)
{
    close(tn->c);
    close(tn->t);
    close(tn->lfd);
}

#endif
