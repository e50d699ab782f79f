/* Outbound TCP connect: non-blocking, with a timeout, racing the addresses
 * of a name RFC 8305 style (next attempt 250 ms after the previous one or
 * as soon as it fails; the first connection wins, the others are closed). */
#ifndef SOCKS5D_DIAL_H
#define SOCKS5D_DIAL_H

#include <stddef.h>
#include <stdint.h>

#include "addr.h"
#include "loop.h"
#include "net.h"

#define DIAL_STAGGER_MS 250

struct dial;

/* Success: fd >= 0 is connected and still registered with the loop through
 * `io` (take it over with loop_io_move); peer is the address it reached.
 * Failure: fd is -1 and err the errno that best explains it (ETIMEDOUT when
 * the deadline passed). Runs on the loop, never inside dial_start. The dial
 * is freed after fn returns. */
typedef void (*dial_fn)(void *owner, int fd, struct loop_io *io, int err,
                        const union addr_any *peer);

/* Starts connecting to addrs[0..n) (n >= 1, at most RESOLVE_MAX_ADDRS),
 * every attempt leaving as `out` says (copied; NULL: as the kernel chooses).
 * Returns NULL with *err set when every address failed at once. */
struct dial *dial_start(struct loop *l, const union addr_any *addrs, size_t n,
                        const struct net_out *out, uint32_t timeout_ms, dial_fn fn, void *owner,
                        int *err);
/* Stops all attempts, closes their sockets and frees d; fn is not called. */
void dial_cancel(struct dial *d);

#endif
