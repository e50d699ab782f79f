/* BIND (RFC 1928 section 4): listen for one incoming connection on the
 * client's behalf, reply twice, then relay like CONNECT. */
#ifndef SOCKS5D_BIND_H
#define SOCKS5D_BIND_H

struct session;

/* Opens the listener and sends the first reply. The session waits in
 * S_BIND_WAIT; on failure the session is closed after its reply. A request
 * naming its peer by a name comes here resolved: s->bind_peers. */
void bind_start(struct session *s);

#endif
