/* Socket helpers for the load generator: loopback IPv4 only. */
#ifndef BENCH_NET_H
#define BENCH_NET_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>

/* Listen on 127.0.0.1 with an ephemeral port; *addr receives the address.
 * With net_listen6 (loadgen -6), on [::] (IPv4 too) with such a port: *addr
 * is then 127.0.0.1 and that port. */
int net_listen_tcp(struct sockaddr_in *addr);
extern bool net_listen6;
/* Nonzero (loadgen -T): the next TCP listener takes exactly this port, the
 * one after it this port + 1, and so on, so that a forwarder configured
 * before the run can name them. */
extern unsigned net_listen_port;

/* Make fd blocking, with send and receive timeouts of timeout_s seconds so
 * that no single call can hang. Returns 0 or -1 with errno set. */
int net_blocking(int fd, int timeout_s);

/* Bind a non-blocking UDP socket to 127.0.0.1 with an ephemeral port. */
int net_bind_udp(struct sockaddr_in *addr);

/* Start a non-blocking connect to dst, optionally from source address src
 * (port chosen at connect time). Returns the socket or -1 with errno set. */
int net_connect(const struct sockaddr_in *dst, const struct in_addr *src);

/* 0 once a non-blocking connect has completed, else the pending error. */
int net_connect_error(int fd);

/* Parse "a.b.c.d:port"; returns 0 or -1. */
int net_parse_addr(const char *s, struct sockaddr_in *out);

/* Loopback source address number i, spread over 127.0.0.2 .. 127.0.0.251 so
 * that many connections to one destination do not run out of ports. */
struct in_addr net_spread_src(unsigned i);

/* Write all of buf on a blocking socket; returns 0 or -1 with errno set. */
int net_write_all(int fd, const void *buf, size_t len);

/* Read exactly len bytes on a blocking socket; returns 0, or -1 (errno set;
 * ECONNRESET on an early end of stream). */
int net_read_full(int fd, void *buf, size_t len);

#endif
