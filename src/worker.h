/* A worker thread: its own loop, listening sockets, resolver, buffer pool,
 * auth cache and sessions. Nothing here is shared with other workers except
 * through the mailbox and the leased session count. */
#ifndef SOCKS5D_WORKER_H
#define SOCKS5D_WORKER_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "addr.h"
#include "config.h"

struct sessq_part;
struct wenv;
/* One thread: its loop, listeners, mailbox and the environment its
 * sessions run in. Opaque: only worker.c reads or writes it. */
struct worker;

/* A listening socket handed to a worker, with what it is for. */
struct worker_listen {
    struct listen_spec spec;
    int fd;
};

/* Worker threads whose loop has not ended yet. */
extern atomic_int g_workers_running;

/* Creates a worker around listening sockets ls[0..n) (ownership of the fds
 * taken), a config reference and a reference to the host's addresses (self
 * may be NULL). Returns NULL with a reason in err. */
struct worker *worker_new(int id, struct config *cfg, struct addr_list *self,
                          const struct worker_listen *ls, size_t n, char *err, size_t errlen);
/* Hands the worker a new snapshot (a reference is taken) and its complete
 * set of listeners: fds it has and ls lacks are closed, new ones adopted.
 * Thread-safe; applied on the worker's loop. Returns 0 or -1 (ENOMEM). */
int worker_reload(struct worker *w, struct config *cfg, const struct worker_listen *ls, size_t n);
/* 1 while a snapshot handed over by worker_reload is not in use yet. */
int worker_reload_pending(struct worker *w);
/* Hands the worker a new list of the host's addresses (a reference is
 * taken); sessions check against it from then on. Thread-safe; applied on
 * the worker's loop. Returns 0 or -1 (ENOMEM). */
int worker_set_self(struct worker *w, struct addr_list *self);
/* Tells w the workers (all[0..n), w among them, alive as long as w) it may
 * hand new connections to, so that sessions start evenly spread. Call
 * before worker_start; without it w starts every connection it accepts. */
void worker_group(struct worker *w, struct worker *const *all, int n);
int worker_start(struct worker *w);
/* Asks the worker to stop accepting and end once its sessions are done or
 * grace_ms has passed. Thread-safe. */
void worker_drain(struct worker *w);
/* Puts a session question (sessq.h) to the worker: answered on its loop,
 * in part p. Thread-safe. */
void worker_sessq(struct worker *w, struct sessq_part *p);
/* Waits for the thread to end (after draining). */
void worker_wait(struct worker *w);
/* Frees everything; the thread must have ended (or never started). Runs
 * what is still queued for the worker first, so call it after the password
 * pool has stopped posting. */
void worker_free(struct worker *w);

/* The environment the worker's sessions run in: its loop, counters and
 * session set (for the metrics thread's sums, relaxed loads only, and for
 * tests that turn the loop themselves). */
struct wenv *worker_env(struct worker *w);
/* Reserves a slot under --max-sessions on the worker's thread for a session
 * about to start there (accept does it before session_start). Returns 1,
 * or 0 when the limit is reached. */
int worker_admit(struct worker *w);
/* Sessions admitted on w and not ended yet. Any thread. */
uint64_t worker_sessions(const struct worker *w);
/* 1 once a drain asked for by worker_drain has begun. */
int worker_draining(const struct worker *w);

#endif
