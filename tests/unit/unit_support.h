/* Shared helpers for the unit tests that drive real descriptors and a real
 * event loop (loop, relay, dial, resolve, auth).
 *
 * Everything here is static so each test binary gets its own copy; a test
 * file uses what it needs and -Wunused-function stays quiet because every
 * helper is `static inline`. */
#ifndef SOCKS5D_UNIT_SUPPORT_H
#define SOCKS5D_UNIT_SUPPORT_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* cmocka passes per-test state; most tests keep none. */
#define TEST(name) static void name(void **state __attribute__((unused)))

/* How long a test waits for something that normally takes microseconds.
 * Generous on purpose: a loaded 2-core CI machine (or valgrind) must never
 * turn a correct program into a failure. Tests assert ordering and
 * outcomes, never speed. */
#define WAIT_MS 10000

static inline uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static inline void sleep_ms(unsigned ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

/* A non-blocking, close-on-exec AF_UNIX stream pair. */
static inline void nb_socketpair(int sv[2])
{
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
}

static inline void set_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    assert_true(fl >= 0);
    assert_int_equal(fcntl(fd, F_SETFL, fl | O_NONBLOCK), 0);
}

/* A listening TCP socket on an IPv4 loopback address with a kernel-chosen
 * port; *addr receives the address. SO_REUSEADDR and a few other 127/8
 * addresses keep a machine full of TIME-WAIT sockets (a benchmark running
 * next to the tests) from failing the bind with EADDRINUSE. */
static inline int listen_loopback(struct sockaddr_in *addr, int backlog)
{
    for (int i = 0; i < 32; i++) {
        struct sockaddr_in a = {.sin_family = AF_INET};
        socklen_t alen = sizeof a;
        int one = 1;
        a.sin_addr.s_addr = htonl(i == 0 ? INADDR_LOOPBACK : 0x7f000001u + (uint32_t)i * 257u);
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        assert_true(fd >= 0);
        assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one), 0);
        if (bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
            getsockname(fd, (struct sockaddr *)&a, &alen) == 0 && listen(fd, backlog) == 0) {
            *addr = a;
            return fd;
        }
        assert_int_equal(errno, EADDRINUSE);
        close(fd);
        sleep_ms(10);
    }
    fail_msg("cannot bind a loopback listener");
    return -1;
}

/* A loopback address:port where nothing listens (a port just released by a
 * listener that was bound and closed without ever accepting). */
static inline void closed_loopback_port(struct sockaddr_in *addr)
{
    int fd = listen_loopback(addr, 1);
    close(fd);
}

/* Number of open descriptors of this process, from /proc/self/fd. */
static inline int fd_count(void)
{
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    int n = 0;
    assert_non_null(d);
    while ((e = readdir(d)))
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n - 1; /* the directory stream's own descriptor */
}

/* Writes until the socket refuses more (EAGAIN); returns the byte count.
 * Bytes are a running pattern starting at *seq (updated), so a reader can
 * check order and integrity with check_pattern. */
static inline size_t fill_socket(int fd, uint8_t *seq, size_t max)
{
    uint8_t buf[16384];
    size_t total = 0;
    while (total < max) {
        size_t want = max - total < sizeof buf ? max - total : sizeof buf;
        for (size_t i = 0; i < want; i++)
            buf[i] = (uint8_t)(*seq + i);
        ssize_t n = write(fd, buf, want);
        if (n < 0) {
            assert_true(errno == EAGAIN || errno == EINTR);
            if (errno == EAGAIN)
                break;
            continue;
        }
        *seq = (uint8_t)(*seq + (size_t)n);
        total += (size_t)n;
    }
    return total;
}

/* Reads whatever is there now (until EAGAIN or EOF), checking it continues
 * the pattern at *seq. Returns the byte count; *eof is set on EOF. */
static inline size_t drain_pattern(int fd, uint8_t *seq, int *eof)
{
    uint8_t buf[16384];
    size_t total = 0;
    for (;;) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n == 0) {
            if (eof)
                *eof = 1;
            return total;
        }
        if (n < 0) {
            if (errno == EINTR)
                continue;
            assert_int_equal(errno, EAGAIN);
            return total;
        }
        for (ssize_t i = 0; i < n; i++) {
            if (buf[i] != *seq)
                fail_msg("byte %zu: got 0x%02x, expected 0x%02x", total + (size_t)i, buf[i], *seq);
            (*seq)++;
        }
        total += (size_t)n;
    }
}

#endif
