/* Non-blocking SOCKS5 client handshake (RFC 1928, RFC 1929 user/password). */
#ifndef BENCH_SOCKS_H
#define BENCH_SOCKS_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum { SOCKS_CMD_CONNECT = 1, SOCKS_CMD_UDP_ASSOCIATE = 3 };

struct proxy_cfg {
    bool direct;  /* no proxy: connect straight to the destination */
    bool forward; /* a plain TCP forwarder at addr: no SOCKS handshake */
    struct sockaddr_in addr;
    int port_shift;   /* forward: its port for a destination is the destination's
                       * port plus this (one listening port per target) */
    const char *user; /* NULL: offer "no authentication" only */
    const char *pass;
};

struct dest {
    struct sockaddr_in addr; /* used for IPv4 ATYP, direct mode, and the port */
    const char *domain;      /* non-NULL: CONNECT by domain name ATYP */
};

enum tun_status { TUN_WANT_READ, TUN_WANT_WRITE, TUN_DONE, TUN_ERROR };

struct tunnel {
    int fd;
    int state;
    uint8_t cmd;
    const struct proxy_cfg *proxy;
    const struct dest *dest;
    uint8_t out[520];
    size_t out_len, out_off;
    uint8_t in[262];
    size_t in_have, in_need;
    struct sockaddr_in bound; /* BND.ADDR/PORT from the reply, IPv4 only */
    char err[160];
};

/* Start connecting (to the proxy, to the forwarder's port for dest, or
 * straight to dest in direct mode), optionally from source address src. Returns 0, or -1 with
 * t->err set. */
int tunnel_open(struct tunnel *t, const struct proxy_cfg *p, const struct dest *d, uint8_t cmd,
                const struct in_addr *src);

/* Advance the handshake as far as the socket allows. On TUN_ERROR t->err
 * says why; the caller closes t->fd in every case it stops using it. */
enum tun_status tunnel_step(struct tunnel *t);

/* Open and finish a tunnel on a blocking wait, giving up at deadline
 * (monotonic seconds). Returns 0, or -1 with t->err set and t->fd closed. */
int tunnel_open_wait(struct tunnel *t, const struct proxy_cfg *p, const struct dest *d, uint8_t cmd,
                     const struct in_addr *src, double deadline);

#endif
