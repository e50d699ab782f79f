/* BIND (RFC 1928 section 4): listen for one incoming connection on the
 * client's behalf, reply twice, then relay like CONNECT. */
#ifndef SOCKS5D_BIND_H
#define SOCKS5D_BIND_H

#include <stddef.h>

#include "addr.h"

struct bind_listener;
struct cmd_ctx;

/* The peer a BIND request names: DST (its port 0: any port; its address
 * unspecified: any address), or a name and the addresses it resolved to
 * that the rules allow. All of it outlives the listener. */
struct bind_want {
    union addr_any dst;
    const char *name;
    const union addr_any *addrs;
    size_t naddrs;
};

/* The peer arrived (fd >= 0, owned by the callee, charged to the budget) or
 * the listener failed (fd -1, errno value in err). The listener is gone
 * either way. */
typedef void (*bind_fn)(void *owner, int fd, const union addr_any *peer, int err);

/* Opens the listener for a session (ctx, copied) waiting for `want` and
 * fills bnd with the address for the first reply. Returns the listener,
 * which calls done(owner, ...) once, or NULL with errno set. */
struct bind_listener *bind_start(const struct cmd_ctx *ctx, const struct bind_want *want,
                                 union addr_any *bnd, bind_fn done, void *owner);
/* Closes a listener whose peer has not come; done is not called. */
void bind_cancel(struct bind_listener *b);

#endif
