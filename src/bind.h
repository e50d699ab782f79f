/* BIND (RFC 1928 section 4): listen for one incoming connection on the
 * client's behalf, reply twice, then relay like CONNECT. */
#ifndef SOCKS5D_BIND_H
#define SOCKS5D_BIND_H

#include "addr.h"

struct session;
struct bind_listener;

/* The peer arrived (fd >= 0, owned by the callee, charged to the budget) or
 * the listener failed (fd -1, errno value in err). The listener is gone
 * either way. */
typedef void (*bind_fn)(void *owner, int fd, const union addr_any *peer, int err);

/* Opens the listener for s's request and fills bnd with the address for the
 * first reply. The expected peer is the request's destination; a request
 * naming it by a name comes here resolved: s->bind_peers. Returns the
 * listener, which calls done(s, ...) once, or NULL with errno set. */
struct bind_listener *bind_start(struct session *s, union addr_any *bnd, bind_fn done);
/* Closes a listener whose peer has not come; done is not called. */
void bind_cancel(struct bind_listener *b);

#endif
