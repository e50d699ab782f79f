#include "net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

int net_blocking(int fd, int timeout_s)
{
    struct timeval tv = {.tv_sec = timeout_s};
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0 || fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) < 0)
        return -1;
    if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0)
        return -1;
    return setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

bool net_listen6;
unsigned net_listen_port;

/* [::]:port for a dual-stack listener; addr says 127.0.0.1 and the port. */
static int bind_any6(int fd, struct sockaddr_in *addr, uint16_t port)
{
    struct sockaddr_in6 a6 = {
        .sin6_family = AF_INET6, .sin6_addr = in6addr_any, .sin6_port = htons(port)};
    socklen_t len = sizeof(a6);
    if (bind(fd, (struct sockaddr *)&a6, sizeof(a6)) < 0 ||
        getsockname(fd, (struct sockaddr *)&a6, &len) < 0)
        return -1;
    memset(addr, 0, sizeof(*addr));
    addr->sin_family = AF_INET;
    addr->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr->sin_port = a6.sin6_port;
    return 0;
}

static int bind_loopback(int fd, struct sockaddr_in *addr, uint16_t port)
{
    socklen_t len = sizeof(*addr);
    memset(addr, 0, sizeof(*addr));
    addr->sin_family = AF_INET;
    addr->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr->sin_port = htons(port);
    if (bind(fd, (struct sockaddr *)addr, sizeof(*addr)) < 0)
        return -1;
    return getsockname(fd, (struct sockaddr *)addr, &len);
}

/* Lowest port of the kernel's ephemeral range, or 0 if unknown. */
static unsigned ephemeral_low(void)
{
    unsigned lo = 0, hi = 0;
    FILE *f = fopen("/proc/sys/net/ipv4/ip_local_port_range", "r");
    if (!f)
        return 0;
    if (fscanf(f, "%u %u", &lo, &hi) != 2)
        lo = 0;
    fclose(f);
    return lo;
}

/* Bind a listening socket below the ephemeral range. After a crr run tens
 * of thousands of TIME_WAIT sockets of the proxies' outgoing connections
 * hold ephemeral ports of 127.0.0.1, and bind() to port 0 then fails with
 * EADDRINUSE. Random candidates, then port 0 as a last resort; with
 * net_listen_port, that port and nothing else. */
static int bind_listener(int fd, struct sockaddr_in *addr)
{
    static unsigned seed;
    int (*bind_at)(int, struct sockaddr_in *, uint16_t) = net_listen6 ? bind_any6 : bind_loopback;
    unsigned lo = 10000, hi = ephemeral_low();
    if (net_listen_port)
        return bind_at(fd, addr, (uint16_t)net_listen_port++);
    if (seed == 0)
        seed = (unsigned)getpid() ^ (unsigned)time(NULL);
    for (int i = 0; hi > lo + 1000 && i < 64; i++) {
        uint16_t port = (uint16_t)(lo + (unsigned)rand_r(&seed) % (hi - lo));
        if (bind_at(fd, addr, port) == 0)
            return 0;
        if (errno != EADDRINUSE)
            return -1;
    }
    return bind_at(fd, addr, 0);
}

static int close_keep_errno(int fd)
{
    int saved = errno;
    close(fd);
    errno = saved;
    return -1;
}

int net_listen_tcp(struct sockaddr_in *addr)
{
    int one = 1, zero = 0;
    int fd =
        socket(net_listen6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (net_listen6 && setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero)) < 0)
        return close_keep_errno(fd);
    /* A port whose earlier connections sit in TIME_WAIT is still usable. */
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0)
        return close_keep_errno(fd);
    /* Large backlog: crr and idle open hundreds of connections at once. */
    if (bind_listener(fd, addr) < 0 || listen(fd, 4096) < 0)
        return close_keep_errno(fd);
    return fd;
}

int net_bind_udp(struct sockaddr_in *addr)
{
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    /* UDP ports are not held by TCP's TIME_WAIT: any ephemeral one will do. */
    if (bind_loopback(fd, addr, 0) < 0)
        return close_keep_errno(fd);
    return fd;
}

static int bind_source(int fd, const struct in_addr *src)
{
    int one = 1;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr = *src};
    /* Defer the port choice to connect(), which can then reuse a port that
     * is busy towards other destinations. */
    if (setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one)) < 0)
        return -1;
    return bind(fd, (struct sockaddr *)&sa, sizeof(sa));
}

int net_connect(const struct sockaddr_in *dst, const struct in_addr *src)
{
    int one = 1;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    /* Small request/response messages must not wait for Nagle. */
    if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0)
        return close_keep_errno(fd);
    if (src && bind_source(fd, src) < 0)
        return close_keep_errno(fd);
    if (connect(fd, (const struct sockaddr *)dst, sizeof(*dst)) < 0 && errno != EINPROGRESS)
        return close_keep_errno(fd);
    return fd;
}

int net_connect_error(int fd)
{
    int err = 0;
    socklen_t len = sizeof(err);
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        return errno;
    return err;
}

int net_parse_addr(const char *s, struct sockaddr_in *out)
{
    char host[64];
    const char *colon = strrchr(s, ':');
    char *end;
    long port;
    if (!colon || (size_t)(colon - s) >= sizeof(host))
        return -1;
    memcpy(host, s, (size_t)(colon - s));
    host[colon - s] = '\0';
    port = strtol(colon + 1, &end, 10);
    if (*end != '\0' || port < 1 || port > 65535)
        return -1;
    memset(out, 0, sizeof(*out));
    out->sin_family = AF_INET;
    out->sin_port = htons((uint16_t)port);
    return inet_pton(AF_INET, host, &out->sin_addr) == 1 ? 0 : -1;
}

struct in_addr net_spread_src(unsigned i)
{
    struct in_addr a = {.s_addr = htonl(0x7f000000u | (2u + i % 250u))};
    return a;
}

int net_write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

int net_read_full(int fd, void *buf, size_t len)
{
    char *p = buf;
    while (len > 0) {
        ssize_t n = recv(fd, p, len, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        if (n == 0) {
            errno = ECONNRESET;
            return -1;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}
