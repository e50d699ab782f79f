/* Listener slots: a number per listening address, the same for the life of
 * the process (across reloads that drop and add listeners), so that each
 * worker can count per listener in a plain array of its own counters and
 * the metrics thread can sum them by address. Addresses beyond the last
 * slot share it, labelled "other". */
#ifndef SOCKS5D_LSLOTS_H
#define SOCKS5D_LSLOTS_H

#include <stddef.h>

#include "addr.h"

#define LSLOTS_MAX 128

/* The slot of addr, taken on first use. Thread-safe. */
unsigned lslots_get(const union addr_any *addr);
/* Slots in use: 0..n-1 have names. */
unsigned lslots_count(void);
/* The label of slot i ("127.0.0.1:1080", "[::1]:1080" or "other"). */
const char *lslots_name(unsigned i);

#endif
