/* Limits shared by all workers: sessions per client IP and per user and
 * sessions in the handshake without locks, failed-login throttling under
 * one lock (taken per login, next to a password hash).
 *
 * Per-key counts live in fixed-size count-min sketches (two rows of
 * counters, each indexed by a keyed hash): memory is bounded whatever an
 * attacker sends, a key's count is never underestimated (a limit is never
 * exceeded), and an innocent key shares a counter with another only if both
 * of its hashes collide.
 *
 * An IPv6 client is keyed by its first `v6_prefix` bits (a /64 is what one
 * host or one customer usually gets, so a single address per attacker would
 * mean unlimited keys); IPv4 by the whole address. */
#ifndef SOCKS5D_QUOTA_H
#define SOCKS5D_QUOTA_H

#include <stddef.h>
#include <stdint.h>

#include "addr.h"

/* Once, before workers start. Returns 0 or -1. */
int quota_init(void);

/* Takes a slot for ip / user under limit (0: unlimited, always succeeds,
 * still counted). Returns 1 when taken (release it later), 0 when the limit
 * is reached. */
int quota_ip_take(const struct sockaddr *ip, unsigned v6_prefix, uint32_t limit);
void quota_ip_release(const struct sockaddr *ip, unsigned v6_prefix);
int quota_user_take(const char *user, uint32_t limit);
void quota_user_release(const char *user);

/* Sessions in the handshake, all workers together, counted in leases per
 * thread (lease.h): never more than limit (0: unlimited) at once; release
 * on the thread that took, with the limit in force. */
int quota_handshake_take(uint32_t limit);
void quota_handshake_release(uint32_t limit);

/* Failed-login throttling settings (from the configuration). */
struct quota_login {
    uint32_t limit;         /* failures per (address, user); 0: none */
    uint32_t address_limit; /* failures per address, all names together; 0: none */
    uint32_t window_ms, cooldown_ms;
    unsigned v6_prefix;
};

/* Login attempts count from the moment they are made, so attempts in flight
 * count against the limits too. Failures are counted per (address, user),
 * so one person's typos lock out only that name at that address, and per
 * address, against one address guessing many names. Returns 0 when the
 * login is throttled: the failures of its pair within window_ms plus its
 * attempts in flight reach `limit`, or those of its address reach
 * `address_limit`, and either one is still in flight or the last failure is
 * inside cooldown_ms (nothing is counted then; -1 instead of 0 when it is
 * the address's limit). Otherwise takes an in-flight slot and returns 1; the check and the take are
 * one step under a lock, so parallel attempts cannot all pass. Every slot taken is settled once,
 * with the same user and settings, as a failure or not. */
int quota_auth_attempt(const struct sockaddr *ip, const char *user, const struct quota_login *q,
                       uint64_t now_ms);
void quota_auth_settle(const struct sockaddr *ip, const char *user, const struct quota_login *q,
                       int failed, uint64_t now_ms);

/* After a reload: clears the failures of every cell whose last failing
 * address the new settings no longer throttle (`throttled` returns 0 for
 * it; per_user says whether the cell counts a pair or an address), so
 * they do not come back with a later configuration. Two addresses sharing
 * a cell are forgotten together: the error is towards leniency. Returns
 * the number of cells cleared. */
size_t quota_auth_forget(int (*throttled)(const struct sockaddr *ip, int per_user, void *ctx),
                         void *ctx);

#endif
