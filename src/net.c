/* Socket set-up helpers. See net.h. */
#include "net.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fdbudget.h"

/* Tries per port range: a busy range fails in bounded time. */
#define NET_PORT_TRIES 4096

/* Writes "op ctx: reason" for the current errno and returns -1, errno
 * untouched. */
static int fail(char *err, size_t errlen, const char *op, const char *ctx)
{
    int e = errno;
    if (err && errlen > 0)
        snprintf(err, errlen, "%s %s: %s", op, ctx, strerror(e));
    errno = e;
    return -1;
}

/* fail, then closes fd (giving back its charge under NET_BUDGET). */
static int fail_close(int fd, unsigned flags, char *err, size_t errlen, const char *op,
                      const char *ctx)
{
    fail(err, errlen, op, ctx);
    net_close(fd, flags);
    return -1;
}

static const struct net_opt {
    unsigned flag;
    int level, name;
    const char *label;
} opts[] = {
    {NET_REUSEADDR, SOL_SOCKET, SO_REUSEADDR, "setsockopt SO_REUSEADDR"},
    {NET_REUSEPORT, SOL_SOCKET, SO_REUSEPORT, "setsockopt SO_REUSEPORT"},
    {NET_NODELAY, IPPROTO_TCP, TCP_NODELAY, "setsockopt TCP_NODELAY"},
    {NET_V6ONLY, IPPROTO_IPV6, IPV6_V6ONLY, "setsockopt IPV6_V6ONLY"},
    /* SOL_IP serves IPv6 sockets too: the flag is the socket's, not the family's. */
    {NET_FREEBIND, SOL_IP, IP_FREEBIND, "setsockopt IP_FREEBIND"},
};

/* net_socket with ctx naming the socket in messages. */
static int open_socket(int family, int type, unsigned flags, const char *ctx, char *err,
                       size_t errlen)
{
    int one = 1;
    if ((flags & NET_BUDGET) && !fdbudget_take(1, FDB_EXTRA)) {
        errno = EMFILE;
        return fail(err, errlen, "socket", ctx);
    }
    int fd = socket(family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        fail(err, errlen, "socket", ctx);
        if (flags & NET_BUDGET)
            fdbudget_give(1);
        return -1;
    }
    for (size_t i = 0; i < sizeof opts / sizeof opts[0]; i++) {
        const struct net_opt *o = &opts[i];
        if (!(flags & o->flag) || (o->flag == NET_V6ONLY && family != AF_INET6))
            continue;
        if (setsockopt(fd, o->level, o->name, &one, sizeof one) < 0)
            return fail_close(fd, flags, err, errlen, o->label, ctx);
    }
    return fd;
}

int net_socket(int family, int type, unsigned flags, char *err, size_t errlen)
{
    const char *ctx = family == AF_INET    ? "IPv4"
                      : family == AF_INET6 ? "IPv6"
                      : family == AF_UNIX  ? "unix"
                                           : "(other family)";
    return open_socket(family, type, flags, ctx, err, errlen);
}

int net_listen_tcp(const union addr_any *a, int backlog, unsigned flags, char *err, size_t errlen)
{
    char name[ADDR_STRLEN];
    addr_str(&a->sa, name, sizeof name);
    int fd = open_socket(a->sa.sa_family, SOCK_STREAM, flags, name, err, errlen);
    if (fd < 0)
        return -1;
    if (bind(fd, &a->sa, addr_len(&a->sa)) < 0)
        return fail_close(fd, flags, err, errlen, "bind", name);
    if (listen(fd, backlog) < 0)
        return fail_close(fd, flags, err, errlen, "listen", name);
    return fd;
}

int net_tcp_held(const union addr_any *a)
{
    char name[ADDR_STRLEN];
    addr_str(&a->sa, name, sizeof name);
    /* Without SO_REUSEPORT the bind conflicts with any listener on a, ours
     * or not; SO_REUSEADDR keeps connections in TIME_WAIT out of it. */
    int fd = open_socket(a->sa.sa_family, SOCK_STREAM, NET_REUSEADDR | NET_V6ONLY, name, NULL, 0);
    if (fd < 0)
        return -1;
    int rc = bind(fd, &a->sa, addr_len(&a->sa)) == 0 ? 0 : errno == EADDRINUSE ? 1 : -1;
    net_close(fd, 0);
    return rc;
}

/* Reads the address of a /proc/net/tcp{,6} line: hex words as the kernel
 * printed them (raw 32-bit words of the network-order address). */
static int proc_addr(const char *hex, unsigned port, int family, union addr_any *out)
{
    uint32_t w[4];
    size_t words = family == AF_INET ? 1 : 4;
    if (strlen(hex) != words * 8)
        return -1;
    for (size_t i = 0; i < words; i++) {
        char part[9];
        memcpy(part, hex + i * 8, 8);
        part[8] = '\0';
        w[i] = (uint32_t)strtoul(part, NULL, 16);
    }
    memset(out, 0, sizeof *out);
    if (family == AF_INET) {
        out->in4.sin_family = AF_INET;
        memcpy(&out->in4.sin_addr, w, 4);
        out->in4.sin_port = htons((uint16_t)port);
    } else {
        out->in6.sin6_family = AF_INET6;
        memcpy(&out->in6.sin6_addr, w, 16);
        out->in6.sin6_port = htons((uint16_t)port);
    }
    return 0;
}

static int is_own(unsigned long inode, const int *fds, size_t n)
{
    struct stat st;
    for (size_t i = 0; i < n; i++)
        if (fstat(fds[i], &st) == 0 && (unsigned long)st.st_ino == inode)
            return 1;
    return 0;
}

int net_tcp_others(const union addr_any *a, const int *fds, size_t n)
{
    char line[512], hex[40];
    unsigned port, state;
    unsigned long inode;
    union addr_any l;
    int found = 0;
    FILE *f = fopen(a->sa.sa_family == AF_INET ? "/proc/net/tcp" : "/proc/net/tcp6", "re");
    if (!f)
        return -1;
    while (!found && fgets(line, sizeof line, f)) {
        /* "sl local rem st tx:rx tr:when retrnsmt uid timeout inode" */
        if (sscanf(line, " %*u: %39[0-9A-Fa-f]:%x %*s %x %*s %*s %*s %*u %*u %lu", hex, &port,
                   &state, &inode) != 4 ||
            state != 0x0A /* TCP_LISTEN */ || port != addr_port(&a->sa) ||
            proc_addr(hex, port, a->sa.sa_family, &l) < 0)
            continue;
        found = (addr_same_ip(&l.sa, &a->sa) || addr_is_unspecified(&l.sa) ||
                 addr_is_unspecified(&a->sa)) &&
                !is_own(inode, fds, n);
    }
    fclose(f);
    return found;
}

/* Binds fd to a's IP on a port from lo..hi (0, 0: ephemeral). */
static int bind_port_range(int fd, union addr_any *a, uint16_t lo, uint16_t hi)
{
    uint32_t span, start;
    if (lo == 0) {
        addr_set_port(a, 0);
        return bind(fd, &a->sa, addr_len(&a->sa));
    }
    span = (uint32_t)(hi - lo) + 1;
    if (getrandom(&start, sizeof start, 0) != sizeof start)
        start = 0;
    for (uint32_t i = 0; i < span && i < NET_PORT_TRIES; i++) {
        uint16_t port = (uint16_t)(lo + (start + i) % span);
        addr_set_port(a, port);
        if (bind(fd, &a->sa, addr_len(&a->sa)) == 0)
            return 0;
        if (errno != EADDRINUSE)
            return -1;
    }
    errno = EADDRINUSE;
    return -1;
}

int net_bind_udp(union addr_any *a, uint16_t lo, uint16_t hi, unsigned flags, char *err,
                 size_t errlen)
{
    char name[ADDR_STRLEN + 8];
    size_t n;
    addr_set_port(a, lo);
    addr_str(&a->sa, name, sizeof name);
    n = strlen(name);
    if (hi > lo)
        snprintf(name + n, sizeof name - n, "-%u", (unsigned)hi);
    int fd = open_socket(a->sa.sa_family, SOCK_DGRAM, flags, name, err, errlen);
    if (fd < 0)
        return -1;
    if (bind_port_range(fd, a, lo, hi) < 0)
        return fail_close(fd, flags, err, errlen, "bind", name);
    return fd;
}

static int set_int(int fd, int level, int name, int v, const char *label, const char *ctx,
                   char *err, size_t errlen)
{
    if (setsockopt(fd, level, name, &v, sizeof v) < 0)
        return fail(err, errlen, label, ctx);
    return 0;
}

static int bind_source(int fd, const union addr_any *src, char *err, size_t errlen)
{
    char name[ADDR_STRLEN];
    addr_str(&src->sa, name, sizeof name);
    int v6 = src->sa.sa_family == AF_INET6;
    if (set_int(fd, SOL_IP, IP_BIND_ADDRESS_NO_PORT, 1, "setsockopt IP_BIND_ADDRESS_NO_PORT", name,
                err, errlen) < 0 ||
        set_int(fd, v6 ? SOL_IPV6 : SOL_IP, v6 ? IPV6_FREEBIND : IP_FREEBIND, 1,
                v6 ? "setsockopt IPV6_FREEBIND" : "setsockopt IP_FREEBIND", name, err, errlen) < 0)
        return -1;
    if (bind(fd, &src->sa, addr_len(&src->sa)) < 0)
        return fail(err, errlen, "bind source", name);
    return 0;
}

int net_apply_out(int fd, int family, const struct net_out *o, char *err, size_t errlen)
{
    if (o == NULL)
        return 0;
    if (o->dev[0] != '\0' &&
        setsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, o->dev, (socklen_t)strlen(o->dev)) < 0)
        return fail(err, errlen, "setsockopt SO_BINDTODEVICE", o->dev);
    if (o->has_mark && set_int(fd, SOL_SOCKET, SO_MARK, (int)o->mark, "setsockopt SO_MARK",
                               "(out mark)", err, errlen) < 0)
        return -1;
    for (size_t i = 0; i < o->nsrc && i < 2; i++)
        if (o->src[i].sa.sa_family == family)
            return bind_source(fd, &o->src[i], err, errlen);
    return 0;
}

int net_connect_nb(const union addr_any *to, const struct net_out *out, unsigned flags, char *err,
                   size_t errlen)
{
    char name[ADDR_STRLEN];
    addr_str(&to->sa, name, sizeof name);
    int fd = open_socket(to->sa.sa_family, SOCK_STREAM, flags, name, err, errlen);
    if (fd < 0)
        return -1;
    if (net_apply_out(fd, to->sa.sa_family, out, err, errlen) < 0) {
        net_close(fd, flags);
        return -1;
    }
    if (connect(fd, &to->sa, addr_len(&to->sa)) < 0 && errno != EINPROGRESS)
        return fail_close(fd, flags, err, errlen, "connect", name);
    return fd;
}

int net_accept(int fd, union addr_any *peer)
{
    for (;;) {
        socklen_t len = sizeof *peer;
        int c =
            accept4(fd, peer ? &peer->sa : NULL, peer ? &len : NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (c >= 0 || errno != EINTR)
            return c;
    }
}

int net_discard(int fd)
{
    uint8_t sink[256];
    for (;;) {
        ssize_t n = read(fd, sink, sizeof sink);
        if (n > 0 || (n < 0 && errno == EINTR))
            continue;
        return !(n < 0 && errno == EAGAIN);
    }
}

int net_set_nonblock(int fd, char *err, size_t errlen)
{
    char ctx[32];
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0 && fcntl(fd, F_SETFL, fl | O_NONBLOCK) == 0)
        return 0;
    snprintf(ctx, sizeof ctx, "fd %d", fd);
    return fail(err, errlen, "fcntl O_NONBLOCK", ctx);
}

void net_close(int fd, unsigned flags)
{
    int e = errno;
    close(fd);
    if (flags & NET_BUDGET)
        fdbudget_give(1);
    errno = e;
}
