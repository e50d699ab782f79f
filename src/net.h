/* Socket set-up for the whole server, in one convention (in the spirit of
 * Redis anet.c).
 *
 * A function that makes or accepts a socket returns its descriptor;
 * net_set_nonblock returns 0. On failure each returns -1 with errno set
 * and, when it takes an err that is not NULL, writes there what failed with
 * its context for the caller to log:
 * "bind 127.0.0.1:1080: Address already in use". A failed call leaves
 * nothing open and nothing charged.
 *
 * Every socket made here is non-blocking and close-on-exec. With NET_BUDGET
 * the socket is charged to the descriptor budget (FDB_EXTRA, see
 * fdbudget.h) before it is opened, and whoever closes it gives the charge
 * back (net_close with the same flag). Without it nothing is charged:
 * listeners, and sockets whose owner charges a whole group at once. */
#ifndef SOCKS5D_NET_H
#define SOCKS5D_NET_H

#include <stddef.h>
#include <stdint.h>

#include "addr.h"

enum net_flag {
    NET_REUSEADDR = 1 << 0,
    NET_REUSEPORT = 1 << 1,
    /* TCP only. On a listener, Linux passes it on to every accepted
     * socket, which saves a setsockopt per connection. */
    NET_NODELAY = 1 << 2,
    /* Applied to AF_INET6 sockets only: [::] then does not take IPv4 too. */
    NET_V6ONLY = 1 << 3,
    NET_BUDGET = 1 << 4,
    /* Bind an address the host does not have (a prefix routed to it). */
    NET_FREEBIND = 1 << 5,
};

/* A socket of family and type (SOCK_STREAM, SOCK_DGRAM) with the options
 * in flags set. */
int net_socket(int family, int type, unsigned flags, char *err, size_t errlen);

/* A TCP socket bound to a, listening with backlog. */
int net_listen_tcp(const union addr_any *a, int backlog, unsigned flags, char *err, size_t errlen);

/* Whether a TCP listener is bound to a (or to a wildcard covering it) by
 * anyone: 1 held, 0 free, -1 the probe failed (errno set). A listener of
 * this process counts too. */
int net_tcp_held(const union addr_any *a);

/* After binding: 1 when a TCP listener other than fds[0..n) listens on a
 * (or a wildcard covering it, or on a's port when a is a wildcard), from
 * the kernel's table of this network namespace (/proc/net/tcp, tcp6); 0
 * when none; -1 when the table cannot be read (errno set). Two processes
 * that probed at the same moment and both joined with SO_REUSEPORT see
 * each other here. */
int net_tcp_others(const union addr_any *a, const int *fds, size_t n);

/* A UDP socket bound to a's IP on a port from lo..hi, tried from a random
 * start; a's port becomes the one bound. lo == 0 asks for an ephemeral
 * port and leaves a's port 0 (getsockname tells which). */
int net_bind_udp(union addr_any *a, uint16_t lo, uint16_t hi, unsigned flags, char *err,
                 size_t errlen);

/* How an outbound socket leaves the host (a route's `out`). */
struct net_out {
    size_t nsrc;
    union addr_any src[2]; /* source addresses, port 0, at most one per family; a socket
                              of a family with none leaves as the kernel chooses */
    char dev[16];          /* SO_BINDTODEVICE when not empty */
    int has_mark;
    uint32_t mark; /* SO_MARK, for policy routing */
};

/* Applies o (NULL: nothing) to a fresh socket fd of `family`, before its
 * connect or first send. The source is bound with IP_BIND_ADDRESS_NO_PORT,
 * so the port is picked at connect time together with the destination and
 * many sources do not exhaust the port range, and with IP_FREEBIND /
 * IPV6_FREEBIND, so any address of a prefix routed to the host works. */
int net_apply_out(int fd, int family, const struct net_out *o, char *err, size_t errlen);

/* A TCP socket connecting to to, leaving as `out` says (NULL: as the
 * kernel chooses): the connect has finished or is in progress (writability
 * tells when, SO_ERROR how). */
int net_connect_nb(const union addr_any *to, const struct net_out *out, unsigned flags, char *err,
                   size_t errlen);

/* The next connection of listener fd, non-blocking and close-on-exec;
 * peer (may be NULL) receives its address. EINTR is retried; EAGAIN means
 * the queue is empty. Nothing is charged: the caller decides the kind. */
int net_accept(int fd, union addr_any *peer);

/* Reads and drops what a non-blocking connection holds, for connections on
 * which nothing is expected (upstream UDP control connections). Returns 1
 * when the peer ended it (EOF or an error), 0 while it stays open. */
int net_discard(int fd);

/* Sets O_NONBLOCK on a descriptor made elsewhere (socket activation). */
int net_set_nonblock(int fd, char *err, size_t errlen);

/* Closes fd and, with NET_BUDGET in flags, gives back its charge. errno
 * is kept, so a failure path can close and then report. */
void net_close(int fd, unsigned flags);

#endif
