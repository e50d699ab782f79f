/* A worker thread: its own loop, listening sockets, resolver, buffer pool,
 * auth cache and sessions. Nothing here is shared with other workers except
 * through the mailbox and the atomic session count. */
#ifndef SOCKS5D_WORKER_H
#define SOCKS5D_WORKER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "addr.h"
#include "bufpool.h"
#include "config.h"
#include "loop.h"
#include "mailbox.h"
#include "stats.h"

struct session;
struct sessq_part;
struct worker;

struct listener {
    struct loop_io io; /* fd -1: slot free */
    struct worker *w;
    struct listen_spec spec;
};

/* A listening socket handed to a worker, with what it is for. */
struct worker_listen {
    struct listen_spec spec;
    int fd;
};

struct worker {
    int id;
    pthread_t thread;
    struct loop *loop;
    struct mailbox mbox;
    struct config *cfg;     /* snapshot new sessions start with (one reference) */
    struct addr_list *self; /* the host's own addresses now (one reference) */
    struct resolver *resolver;
    struct auth_cache *auth_cache;
    struct bufpool pool;
    struct listener listeners[CONFIG_MAX_LISTEN];
    struct session *sessions; /* doubly linked via session->prev/next */
    size_t nsessions;
    struct loop_timer accept_pause; /* out of fds: retry accept later */
    struct loop_timer drain_deadline;
    int draining;
    int emfile_logged;
    atomic_uint reloads_posted;  /* reload messages sent by the main thread */
    atomic_uint reloads_applied; /* reload messages taken in (main waits on it) */
    struct stats stats;
};

/* Sessions alive in all workers; bounds --max-sessions. */
extern atomic_ulong g_sessions;
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

/* For sessions. */
void worker_link(struct worker *w, struct session *s);
void worker_unlink(struct worker *w, struct session *s);

#endif
