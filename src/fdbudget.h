/* The process's descriptor budget.
 *
 * RLIMIT_NOFILE is one pool for every session, and sessions of different
 * kinds hold very different numbers of descriptors (a CONNECT tunnel 2, or
 * 6 once it splices; a UDP association 4; a Happy Eyeballs dial one per
 * attempt in flight). Every descriptor a session opens is charged here when
 * it is opened and given back when it is closed, so a session that cannot
 * be afforded is refused at once with a reply instead of running into
 * EMFILE, where new clients would wait unanswered in the accept queue.
 *
 * A reserve at the top is kept for client connections alone: accepting a
 * client never starves behind the extra sockets and pipes of others, so a
 * refused client still gets its reply. Nothing here assumes a size: the
 * budget follows whatever limit the process runs under. Thread-safe. */
#ifndef SOCKS5D_FDBUDGET_H
#define SOCKS5D_FDBUDGET_H

#include <stdint.h>

enum fdbudget_use {
    FDB_CLIENT, /* an accepted connection: may use the reserve */
    FDB_EXTRA,  /* what a session opens for itself: sockets, pipes */
};

/* Sets the budget from the descriptor limit, the descriptors open now
 * (listeners, loops, logs: not charged) and the worker count (each may open
 * a few uncharged ones: resolver sockets). Before this, every take
 * succeeds. Call once, before any worker runs. */
void fdbudget_init(uint64_t nofile, uint64_t in_use, int nworkers);
/* Charges n descriptors. Returns 1, or 0 (nothing charged) when they do
 * not fit. */
int fdbudget_take(unsigned n, enum fdbudget_use use);
/* Gives back n descriptors charged before. */
void fdbudget_give(unsigned n);
/* Whether the budget is short enough that idle descriptors (pooled pipes)
 * should be closed rather than kept. */
int fdbudget_tight(void);
/* Descriptors open in this process now, or 0 when unknown. */
uint64_t fdbudget_count_open(void);

#endif
