/* A worker's inbox: other threads post messages, the worker runs them on its
 * own loop. Posting takes a mutex; it is used for control messages and
 * password-verification results, never per byte relayed. */
#ifndef SOCKS5D_MAILBOX_H
#define SOCKS5D_MAILBOX_H

#include <pthread.h>

#include "loop.h"

struct mail;
typedef void (*mail_fn)(struct mail *m);

/* Embedded in the message's owner; fn runs on the receiving worker. */
struct mail {
    mail_fn fn;
    struct mail *next;
};

struct mailbox {
    pthread_mutex_t mu;
    struct mail *head, *tail;
    struct loop_io io; /* eventfd */
};

/* Returns 0 or -1 with errno set. */
int mailbox_init(struct mailbox *mb, struct loop *l);
void mailbox_destroy(struct mailbox *mb, struct loop *l);
/* Thread-safe. Ownership of m passes to the receiver. */
void mailbox_post(struct mailbox *mb, struct mail *m, mail_fn fn);

#endif
