/* hostaddr - the host's own IP addresses, which deny-private must refuse as
 * destinations: a local service bound to 0.0.0.0 answers on every one of
 * them, not only on 127.0.0.1. A snapshot comes from getifaddrs(3); a
 * NETLINK_ROUTE socket subscribed to address changes says when to take a
 * new one. Used by the main thread, which hands snapshots to the workers. */
#ifndef SOCKS5D_HOSTADDR_H
#define SOCKS5D_HOSTADDR_H

#include <stddef.h>

#include "addr.h"

/* The addresses of every interface now, with one reference. Returns NULL
 * with the reason in err when they cannot be read. */
struct addr_list *hostaddr_snapshot(char *err, size_t errlen);

/* Opens a non-blocking netlink socket that receives every IPv4 and IPv6
 * address addition and removal. Returns the fd (the caller closes it), or
 * -1 with errno set. */
int hostaddr_watch(void);

/* Reads what is waiting on a hostaddr_watch() socket without blocking.
 * Returns 1 when an address may have changed (a message, or messages lost to
 * a full socket buffer), 0 when nothing came, -1 with errno on a read error. */
int hostaddr_changed(int fd);

#endif
