/* Per-user session and traffic counters for the metrics, kept only when
 * the operator asks for them (metrics-users N: at most N users get their
 * own series, the rest are counted under one overflow label), because
 * every user is a time series in Prometheus. A session looks its user up
 * once, when the login succeeds, and adds its bytes once, when it ends:
 * no shared write per byte relayed. Counters live for the process, across
 * reloads. */
#ifndef SOCKS5D_USERSTATS_H
#define SOCKS5D_USERSTATS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* The label of the users beyond the cap. */
#define USERSTATS_OTHER "_other"

struct userstats;

/* At most max users get their own counters (0: none are kept). Called by
 * the main thread before the workers start, and on reload. */
void userstats_set_max(size_t max);
/* A session of `user` starts: its counters (made on first use), or NULL
 * when per-user counters are off. Thread-safe. */
struct userstats *userstats_begin(const char *user);
/* That session ends, having moved `up` and `down` bytes. */
void userstats_end(struct userstats *u, uint64_t up, uint64_t down);
/* Writes the Prometheus families (HELP, TYPE, one sample per user). */
void userstats_render(FILE *f);
/* Forgets every user (for tests). */
void userstats_reset(void);

#endif
