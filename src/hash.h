/* SipHash-2-4: a keyed hash, for tables an attacker must not be able to
 * aim at (limits) and digests that must not be testable offline (auth). */
#ifndef SOCKS5D_HASH_H
#define SOCKS5D_HASH_H

#include <stddef.h>
#include <stdint.h>

uint64_t hash_sip(const uint64_t key[2], const void *data, size_t len);
/* Fills key with random bytes. Returns 0 or -1. */
int hash_random_key(uint64_t key[2]);

#endif
