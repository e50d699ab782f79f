/* Limits shared by all workers without locks: sessions per client IP and
 * per user, sessions in the handshake, and failed-login throttling.
 *
 * Per-key counts live in fixed-size count-min sketches (two rows of atomic
 * counters, each indexed by a keyed hash): memory is bounded whatever an
 * attacker sends, a key's count is never underestimated (a limit is never
 * exceeded), and an innocent key shares a counter with another only if both
 * of its hashes collide. */
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
int quota_ip_take(const struct sockaddr *ip, uint32_t limit);
void quota_ip_release(const struct sockaddr *ip);
int quota_user_take(const char *user, uint32_t limit);
void quota_user_release(const char *user);

/* Sessions in the handshake, all workers together. */
int quota_handshake_take(uint32_t limit);
void quota_handshake_release(void);

/* Failed logins: 1 when ip has failed `limit` times within window_ms and is
 * still inside cooldown_ms of the last failure. */
int quota_auth_blocked(const struct sockaddr *ip, uint32_t limit, uint32_t window_ms,
                       uint32_t cooldown_ms, uint64_t now_ms);
void quota_auth_failed(const struct sockaddr *ip, uint32_t window_ms, uint64_t now_ms);

#endif
