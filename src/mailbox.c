#include "mailbox.h"

#include <stdint.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "log.h"

static void mailbox_drain(struct loop_io *io, unsigned events)
{
    struct mailbox *mb = container_of(io, struct mailbox, io);
    uint64_t v;
    (void)events;
    /* Reset the counter first: a post racing with us writes again. */
    while (read(io->fd, &v, sizeof v) == sizeof v)
        ;
    pthread_mutex_lock(&mb->mu);
    struct mail *m = mb->head;
    mb->head = mb->tail = NULL;
    pthread_mutex_unlock(&mb->mu);
    while (m) {
        struct mail *next = m->next;
        m->fn(m);
        m = next;
    }
}

int mailbox_init(struct mailbox *mb, struct loop *l)
{
    int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (fd < 0)
        return -1;
    pthread_mutex_init(&mb->mu, NULL);
    mb->head = mb->tail = NULL;
    if (loop_io_add(l, &mb->io, fd, LOOP_READ, mailbox_drain) < 0) {
        close(fd);
        pthread_mutex_destroy(&mb->mu);
        return -1;
    }
    return 0;
}

void mailbox_destroy(struct mailbox *mb, struct loop *l)
{
    int fd = mb->io.fd;
    loop_io_del(l, &mb->io);
    close(fd);
    pthread_mutex_destroy(&mb->mu);
}

void mailbox_post(struct mailbox *mb, struct mail *m, mail_fn fn)
{
    uint64_t one = 1;
    m->fn = fn;
    m->next = NULL;
    pthread_mutex_lock(&mb->mu);
    if (mb->tail)
        mb->tail->next = m;
    else
        mb->head = m;
    mb->tail = m;
    pthread_mutex_unlock(&mb->mu);
    if (write(mb->io.fd, &one, sizeof one) != sizeof one)
        log_error("mailbox: eventfd write failed");
}
