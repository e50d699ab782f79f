/* A question the metrics thread puts to every worker about its sessions:
 * list them (as JSON) or close those that match. Each worker answers in its
 * own part, on its own loop, through its mailbox; nobody reads a session
 * but the worker that owns it. The asker polls sessq_answered and may give
 * up first (timeout, shutdown): the question lives until its last holder
 * lets go. */
#ifndef SOCKS5D_SESSQ_H
#define SOCKS5D_SESSQ_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "mailbox.h"

struct sessq;

/* One worker's answer, written only by that worker. */
struct sessq_part {
    struct mail mail;
    struct sessq *q;
    void *ctx;  /* the worker answering */
    char *json; /* list: the worker's sessions as JSON objects, comma-separated */
    size_t len;
    unsigned closed; /* close: how many sessions it ended */
};

struct sessq {
    atomic_int refs, pending;
    int close;   /* 0: list; 1: close the matching sessions */
    uint64_t id; /* match this session id (0: any id) */
    char *user;  /* match this user (NULL: any user) */
    int nparts;
    struct sessq_part part[];
};

/* A question for n workers (one reference, the asker's). user is copied.
 * Returns NULL when out of memory. */
struct sessq *sessq_new(int n, int close, uint64_t id, const char *user);
/* Whether session (id, user) is one the question is about. */
int sessq_match(const struct sessq *q, uint64_t id, const char *user);
/* A worker has written its part: counts it answered and lets go. */
void sessq_done(struct sessq_part *p);
/* 1 once every worker has answered. */
int sessq_answered(const struct sessq *q);
/* Lets go of a reference; the last one frees the question. */
void sessq_unref(struct sessq *q);

#endif
