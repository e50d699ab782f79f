/* Per-user bandwidth limits: one token bucket per (user, direction), shared
 * by all of that user's sessions on every worker, so opening more tunnels
 * does not multiply the allowance. Touched only by sessions of users that
 * have a limit: a lookup under a lock when such a session starts its relay;
 * the buckets themselves are lock-free (relay.h). */
#ifndef SOCKS5D_RATELIMIT_H
#define SOCKS5D_RATELIMIT_H

#include <stdint.h>

#include "relay.h"

struct ratelimit_user;

/* The buckets of `user`, limited to `rate` bytes per second each way: made
 * on first use, the rate updated when a reload changed it. They live until
 * the process ends, so closing the last tunnel and opening a new one does
 * not refill the burst. Returns NULL when out of memory. Thread-safe. */
struct ratelimit_user *ratelimit_get(const char *user, uint64_t rate, uint64_t now_ms);
/* The shared bucket for client -> target (up) or target -> client (down). */
struct relay_bucket *ratelimit_up(struct ratelimit_user *u);
struct relay_bucket *ratelimit_down(struct ratelimit_user *u);

#endif
