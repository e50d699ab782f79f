/* Unit tests for src/loop.c: timers (min-heap), edge-triggered file events,
 * deferred work.
 *
 * Every wait is bounded by WAIT_MS and every assertion is about order or
 * outcome, never about how fast something happened. */
#include "unit_support.h"

#include "loop.h"

/* Runs the loop until *flag becomes nonzero or WAIT_MS passes. */
static void run_until(struct loop *l, const int *flag)
{
    uint64_t deadline = now_ms() + WAIT_MS;
    while (!*flag && now_ms() < deadline)
        assert_true(loop_run_once(l, 100) >= 0);
}

/* ---------------------------------------------------------------------------
 * Timers */

struct rec_timer {
    struct loop_timer t;
    int id;
    int fired;
};

static int order[4096];
static int norder;

static void on_rec_timer(struct loop_timer *t)
{
    struct rec_timer *r = container_of(t, struct rec_timer, t);
    assert_int_equal(loop_timer_armed(t), 0); /* one-shot: disarmed before the call */
    r->fired++;
    order[norder++] = r->id;
}

TEST(timers_fire_in_deadline_order_not_arming_order)
{
    struct loop *l = loop_new();
    struct rec_timer t[4] = {{.id = 30}, {.id = 0}, {.id = 20}, {.id = 10}};
    assert_non_null(l);
    norder = 0;
    for (int i = 0; i < 4; i++) {
        assert_int_equal(loop_timer_arm(l, &t[i].t, (uint64_t)t[i].id, on_rec_timer), 0);
        assert_true(loop_timer_armed(&t[i].t));
    }
    uint64_t deadline = now_ms() + WAIT_MS;
    while (norder < 4 && now_ms() < deadline)
        loop_run_once(l, 100);
    assert_int_equal(norder, 4);
    assert_int_equal(order[0], 0);
    assert_int_equal(order[1], 10);
    assert_int_equal(order[2], 20);
    assert_int_equal(order[3], 30);
    for (int i = 0; i < 4; i++)
        assert_int_equal(t[i].fired, 1);
    loop_free(l);
}

TEST(timer_does_not_fire_before_its_deadline)
{
    struct loop *l = loop_new();
    struct rec_timer t = {.id = 1};
    assert_non_null(l);
    norder = 0;
    uint64_t start = loop_now(l);
    assert_int_equal(loop_timer_arm(l, &t.t, 50, on_rec_timer), 0);
    assert_int_equal(t.t.when, start + 50);
    /* Lower bound only: the loop's clock must have reached the deadline. */
    run_until(l, &t.fired);
    assert_int_equal(t.fired, 1);
    assert_true(loop_now(l) >= start + 50);
    assert_true(now_ms() >= start + 50);
    loop_free(l);
}

TEST(cancelled_timer_never_fires_and_cancel_is_idempotent)
{
    struct loop *l = loop_new();
    struct rec_timer a = {.id = 1}, b = {.id = 2}, c = {.id = 3};
    assert_non_null(l);
    norder = 0;
    assert_int_equal(loop_timer_arm(l, &a.t, 0, on_rec_timer), 0);
    assert_int_equal(loop_timer_arm(l, &b.t, 5, on_rec_timer), 0);
    assert_int_equal(loop_timer_arm(l, &c.t, 20, on_rec_timer), 0);
    loop_timer_cancel(l, &a.t);
    assert_false(loop_timer_armed(&a.t));
    loop_timer_cancel(l, &a.t); /* again: no effect */
    run_until(l, &c.fired);
    assert_int_equal(a.fired, 0);
    assert_int_equal(b.fired, 1);
    assert_int_equal(c.fired, 1);
    assert_int_equal(norder, 2);
    /* Cancelling a timer that already fired is harmless too. */
    loop_timer_cancel(l, &b.t);
    assert_int_equal(loop_run_once(l, 0), 0);
    assert_int_equal(norder, 2);
    loop_free(l);
}

TEST(rearming_an_armed_timer_moves_its_deadline)
{
    struct loop *l = loop_new();
    struct rec_timer a = {.id = 1}, b = {.id = 2};
    assert_non_null(l);
    norder = 0;
    assert_int_equal(loop_timer_arm(l, &a.t, 0, on_rec_timer), 0);
    assert_int_equal(loop_timer_arm(l, &b.t, 30, on_rec_timer), 0);
    /* Re-arm a later than b: it must fire once, after b. */
    assert_int_equal(loop_timer_arm(l, &a.t, 60, on_rec_timer), 0);
    run_until(l, &a.fired);
    assert_int_equal(norder, 2);
    assert_int_equal(order[0], 2);
    assert_int_equal(order[1], 1);
    assert_int_equal(a.fired, 1);
    assert_int_equal(b.fired, 1);
    /* And earlier: b at 40, a at 20, then b re-armed to 0 fires first. */
    norder = 0;
    a.fired = b.fired = 0;
    assert_int_equal(loop_timer_arm(l, &b.t, 40, on_rec_timer), 0);
    assert_int_equal(loop_timer_arm(l, &a.t, 20, on_rec_timer), 0);
    assert_int_equal(loop_timer_arm(l, &b.t, 0, on_rec_timer), 0);
    run_until(l, &a.fired);
    assert_int_equal(norder, 2);
    assert_int_equal(order[0], 2);
    assert_int_equal(order[1], 1);
    assert_int_equal(b.fired, 1);
    loop_free(l);
}

struct self_rearm {
    struct loop_timer t;
    struct loop *l;
    int fired;
};

static void on_self_rearm(struct loop_timer *t)
{
    struct self_rearm *s = container_of(t, struct self_rearm, t);
    s->fired++;
    if (s->fired < 3)
        assert_int_equal(loop_timer_arm(s->l, t, 1, on_self_rearm), 0);
}

TEST(timer_rearms_itself_from_its_handler)
{
    struct loop *l = loop_new();
    struct self_rearm s = {.l = l};
    assert_non_null(l);
    assert_int_equal(loop_timer_arm(l, &s.t, 1, on_self_rearm), 0);
    uint64_t deadline = now_ms() + WAIT_MS;
    while (s.fired < 3 && now_ms() < deadline)
        loop_run_once(l, 100);
    assert_int_equal(s.fired, 3);
    assert_false(loop_timer_armed(&s.t));
    /* Nothing left: a bounded wait returns without running anything. */
    assert_int_equal(loop_run_once(l, 0), 0);
    assert_int_equal(s.fired, 3);
    loop_free(l);
}

/* Many timers: heap order holds for random deadlines, with cancellations
 * mixed in and more timers than the heap's first allocation. */
struct heap_timer {
    struct loop_timer t;
    int fired;
    int cancelled;
};

static uint64_t last_when;
static int heap_fired, heap_out_of_order;

static void on_heap_timer(struct loop_timer *t)
{
    struct heap_timer *h = container_of(t, struct heap_timer, t);
    if (t->when < last_when)
        heap_out_of_order++;
    last_when = t->when;
    h->fired++;
    heap_fired++;
}

static void many_timers(int n, unsigned seed)
{
    struct loop *l = loop_new();
    struct heap_timer *h = calloc((size_t)n, sizeof *h);
    int live = n;
    assert_non_null(l);
    assert_non_null(h);
    srand(seed);
    last_when = 0;
    heap_fired = heap_out_of_order = 0;
    for (int i = 0; i < n; i++)
        assert_int_equal(loop_timer_arm(l, &h[i].t, (uint64_t)(rand() % 100), on_heap_timer), 0);
    /* Cancel every seventh, re-arm every eleventh to a new random deadline. */
    for (int i = 0; i < n; i++) {
        if (i % 7 == 3) {
            loop_timer_cancel(l, &h[i].t);
            h[i].cancelled = 1;
            live--;
        } else if (i % 11 == 5) {
            assert_int_equal(loop_timer_arm(l, &h[i].t, (uint64_t)(rand() % 100), on_heap_timer),
                             0);
        }
    }
    uint64_t deadline = now_ms() + WAIT_MS;
    while (heap_fired < live && now_ms() < deadline)
        loop_run_once(l, 100);
    assert_int_equal(heap_fired, live);
    assert_int_equal(heap_out_of_order, 0);
    for (int i = 0; i < n; i++) {
        assert_int_equal(h[i].fired, h[i].cancelled ? 0 : 1);
        assert_false(loop_timer_armed(&h[i].t));
    }
    free(h);
    loop_free(l);
}

TEST(thousand_random_timers_fire_in_heap_order)
{
    many_timers(1000, 12345);
}

TEST(heap_grows_past_first_allocation_and_keeps_order)
{
    many_timers(5000, 777);
}

/* Cancelling from the middle of the heap (not only the root) keeps it a
 * heap: the rest still fire in order. */
TEST(cancelling_inner_heap_nodes_keeps_order)
{
    struct loop *l = loop_new();
    struct heap_timer h[64];
    memset(h, 0, sizeof h);
    assert_non_null(l);
    last_when = 0;
    heap_fired = heap_out_of_order = 0;
    /* Descending deadlines make every arm sift to the root. */
    for (int i = 0; i < 64; i++)
        assert_int_equal(loop_timer_arm(l, &h[i].t, (uint64_t)(64 - i), on_heap_timer), 0);
    for (int i = 0; i < 64; i += 3) {
        loop_timer_cancel(l, &h[i].t);
        h[i].cancelled = 1;
    }
    int live = 64 - 22;
    uint64_t deadline = now_ms() + WAIT_MS;
    while (heap_fired < live && now_ms() < deadline)
        loop_run_once(l, 100);
    assert_int_equal(heap_fired, live);
    assert_int_equal(heap_out_of_order, 0);
    for (int i = 0; i < 64; i++)
        assert_int_equal(h[i].fired, h[i].cancelled ? 0 : 1);
    loop_free(l);
}

/* ---------------------------------------------------------------------------
 * File events */

struct rec_io {
    struct loop_io io;
    int calls;
    unsigned events; /* union of everything delivered */
    unsigned last;
};

static void on_rec_io(struct loop_io *io, unsigned events)
{
    struct rec_io *r = container_of(io, struct rec_io, io);
    r->calls++;
    r->events |= events;
    r->last = events;
}

static void write_byte(int fd)
{
    assert_int_equal(write(fd, "x", 1), 1);
}

TEST(pipe_read_event_is_delivered_once_per_edge)
{
    struct loop *l = loop_new();
    struct rec_io r = {.calls = 0};
    int p[2];
    char buf[16];
    assert_non_null(l);
    assert_int_equal(pipe2(p, O_NONBLOCK | O_CLOEXEC), 0);
    assert_int_equal(loop_io_add(l, &r.io, p[0], LOOP_READ, on_rec_io), 0);
    assert_int_equal(r.io.fd, p[0]);
    /* Empty pipe: nothing. */
    assert_int_equal(loop_run_once(l, 0), 0);
    assert_int_equal(r.calls, 0);

    write_byte(p[1]);
    run_until(l, &r.calls);
    assert_int_equal(r.calls, 1);
    assert_true(r.last & LOOP_READ);
    /* Not read: edge-triggered, so no repeat for the same edge. */
    assert_int_equal(loop_run_once(l, 0), 0);
    assert_int_equal(r.calls, 1);

    /* New bytes are a new edge. */
    write_byte(p[1]);
    assert_int_equal(loop_run_once(l, WAIT_MS), 1);
    assert_int_equal(r.calls, 2);

    /* Drained: quiet again. */
    assert_int_equal(read(p[0], buf, sizeof buf), 2);
    assert_int_equal(loop_run_once(l, 0), 0);
    assert_int_equal(r.calls, 2);

    loop_io_del(l, &r.io);
    assert_int_equal(r.io.fd, -1);
    write_byte(p[1]);
    assert_int_equal(loop_run_once(l, 0), 0); /* unregistered: nothing */
    assert_int_equal(r.calls, 2);
    close(p[0]);
    close(p[1]);
    loop_free(l);
}

TEST(level_triggered_io_repeats_until_drained)
{
    struct loop *l = loop_new();
    struct rec_io r = {.calls = 0};
    int p[2];
    char buf[4];
    assert_non_null(l);
    assert_int_equal(pipe2(p, O_NONBLOCK | O_CLOEXEC), 0);
    assert_int_equal(loop_io_add(l, &r.io, p[0], LOOP_READ | LOOP_LEVEL, on_rec_io), 0);
    write_byte(p[1]);
    assert_int_equal(loop_run_once(l, WAIT_MS), 1);
    assert_int_equal(loop_run_once(l, WAIT_MS), 1);
    assert_int_equal(r.calls, 2);
    assert_int_equal(read(p[0], buf, sizeof buf), 1);
    assert_int_equal(loop_run_once(l, 0), 0);
    assert_int_equal(r.calls, 2);
    loop_io_del(l, &r.io);
    close(p[0]);
    close(p[1]);
    loop_free(l);
}

TEST(socket_write_interest_via_io_set_and_unchanged_set_is_a_no_op)
{
    struct loop *l = loop_new();
    struct rec_io r = {.calls = 0};
    int sv[2];
    uint8_t seq = 0;
    assert_non_null(l);
    nb_socketpair(sv);
    /* Read interest only: an empty, writable socket reports nothing. */
    assert_int_equal(loop_io_add(l, &r.io, sv[0], LOOP_READ, on_rec_io), 0);
    assert_int_equal(loop_run_once(l, 0), 0);
    assert_int_equal(r.calls, 0);

    /* Asking for WRITE delivers the (already true) writability. */
    assert_int_equal(loop_io_set(l, &r.io, LOOP_READ | LOOP_WRITE), 0);
    assert_int_equal(r.io.mask, LOOP_READ | LOOP_WRITE);
    assert_int_equal(loop_run_once(l, WAIT_MS), 1);
    assert_int_equal(r.calls, 1);
    assert_true(r.last & LOOP_WRITE);
    assert_false(r.last & LOOP_READ);

    /* Same mask again: no epoll_ctl, so no re-armed edge either. */
    assert_int_equal(loop_io_set(l, &r.io, LOOP_READ | LOOP_WRITE), 0);
    assert_int_equal(loop_run_once(l, 0), 0);
    assert_int_equal(r.calls, 1);

    /* Fill it; the peer draining it is a new WRITE edge. */
    assert_true(fill_socket(sv[0], &seq, 64u << 20) > 0);
    assert_int_equal(loop_run_once(l, 0), 0);
    assert_int_equal(r.calls, 1);
    uint8_t rseq = 0;
    assert_true(drain_pattern(sv[1], &rseq, NULL) > 0);
    uint64_t deadline = now_ms() + WAIT_MS;
    while (r.calls < 2 && now_ms() < deadline)
        loop_run_once(l, 100);
    assert_int_equal(r.calls, 2);
    assert_true(r.last & LOOP_WRITE);

    /* Peer data: READ. */
    write_byte(sv[1]);
    deadline = now_ms() + WAIT_MS;
    while (!(r.last & LOOP_READ) && now_ms() < deadline)
        loop_run_once(l, 100);
    assert_true(r.last & LOOP_READ);

    loop_io_del(l, &r.io);
    close(sv[0]);
    close(sv[1]);
    loop_free(l);
}

/* Two descriptors ready in the same batch; whichever handler runs first
 * unregisters, closes and frees the other. The other's event, already
 * collected, must be dropped: calling it would be a use-after-free (ASan
 * reports it; without ASan the poisoned fn pointer crashes or the count is 2). */
struct victim_io {
    struct loop_io io;
    struct loop *l;
    struct victim_io **other; /* where the other one is kept (freed → NULL) */
    int peer_fd;              /* the write end to close with it */
};

static int victim_calls;

static void on_victim(struct loop_io *io, unsigned events)
{
    struct victim_io *v = container_of(io, struct victim_io, io);
    struct victim_io *o = *v->other;
    (void)events;
    victim_calls++;
    if (o) {
        int fd = o->io.fd;
        loop_io_del(v->l, &o->io);
        close(fd);
        close(o->peer_fd);
        memset(o, 0xA5, sizeof *o); /* a stale call jumps through garbage */
        free(o);
        *v->other = NULL;
    }
}

TEST(io_del_inside_handler_drops_pending_event_of_the_deleted_io)
{
    struct loop *l = loop_new();
    struct victim_io *a = calloc(1, sizeof *a), *b = calloc(1, sizeof *b);
    int pa[2], pb[2];
    assert_non_null(l);
    assert_non_null(a);
    assert_non_null(b);
    nb_socketpair(pa);
    nb_socketpair(pb);
    a->l = b->l = l;
    a->other = &b;
    b->other = &a;
    a->peer_fd = pa[1];
    b->peer_fd = pb[1];
    victim_calls = 0;
    assert_int_equal(loop_io_add(l, &a->io, pa[0], LOOP_READ, on_victim), 0);
    assert_int_equal(loop_io_add(l, &b->io, pb[0], LOOP_READ, on_victim), 0);
    /* Both readable before the loop looks: one batch holds both events. */
    write_byte(pa[1]);
    write_byte(pb[1]);
    sleep_ms(1);
    /* Both are ready before epoll_wait, so one batch collects both events;
     * only the handler that runs first may be called. */
    assert_true(loop_run_once(l, WAIT_MS) >= 1);
    assert_int_equal(victim_calls, 1);
    assert_true((a == NULL) != (b == NULL));
    struct victim_io *left = a ? a : b;
    int fd = left->io.fd;
    loop_io_del(l, &left->io);
    close(fd);
    close(left->peer_fd);
    free(left);
    loop_free(l);
}

/* The same with loop_io_close: the victim's fd is closed (which ends the
 * registration) and its memory freed from the survivor's handler. */
static void on_closer(struct loop_io *io, unsigned events)
{
    struct victim_io *v = container_of(io, struct victim_io, io);
    struct victim_io *o = *v->other;
    (void)events;
    victim_calls++;
    if (o) {
        loop_io_close(v->l, &o->io);
        assert_int_equal(o->io.fd, -1);
        close(o->peer_fd);
        memset(o, 0xA5, sizeof *o);
        free(o);
        *v->other = NULL;
    }
}

TEST(io_close_inside_handler_drops_pending_event_of_the_closed_io)
{
    struct loop *l = loop_new();
    struct victim_io *a = calloc(1, sizeof *a), *b = calloc(1, sizeof *b);
    int pa[2], pb[2];
    assert_non_null(l);
    assert_non_null(a);
    assert_non_null(b);
    int base = fd_count();
    nb_socketpair(pa);
    nb_socketpair(pb);
    a->l = b->l = l;
    a->other = &b;
    b->other = &a;
    a->peer_fd = pa[1];
    b->peer_fd = pb[1];
    victim_calls = 0;
    assert_int_equal(loop_io_add(l, &a->io, pa[0], LOOP_READ, on_closer), 0);
    assert_int_equal(loop_io_add(l, &b->io, pb[0], LOOP_READ, on_closer), 0);
    write_byte(pa[1]);
    write_byte(pb[1]);
    sleep_ms(1);
    assert_true(loop_run_once(l, WAIT_MS) >= 1);
    assert_int_equal(victim_calls, 1);
    assert_true((a == NULL) != (b == NULL));
    struct victim_io *left = a ? a : b;
    assert_int_equal(fd_count(), base + 2); /* the victim's pair is gone */
    /* The survivor, closed the same way outside any handler: the fd is
     * closed and nothing more is delivered. */
    int fd = left->io.fd, peer = left->peer_fd;
    loop_io_close(l, &left->io);
    assert_int_equal(fcntl(fd, F_GETFD), -1);
    assert_int_equal(errno, EBADF);
    free(left);
    assert_int_equal(loop_run_once(l, 0), 0);
    close(peer);
    assert_int_equal(fd_count(), base);
    loop_free(l);
}

/* A handler may delete itself too (the common "session closes" case): the
 * other io in the batch still gets its event. */
struct self_del {
    struct loop_io io;
    struct loop *l;
    int calls;
};

static void on_self_del(struct loop_io *io, unsigned events)
{
    struct self_del *s = container_of(io, struct self_del, io);
    (void)events;
    s->calls++;
    loop_io_del(s->l, io);
}

TEST(io_del_of_itself_leaves_other_events_in_the_batch)
{
    struct loop *l = loop_new();
    struct self_del s[2] = {{.l = l}, {.l = l}};
    int pa[2], pb[2];
    assert_non_null(l);
    nb_socketpair(pa);
    nb_socketpair(pb);
    assert_int_equal(loop_io_add(l, &s[0].io, pa[0], LOOP_READ, on_self_del), 0);
    assert_int_equal(loop_io_add(l, &s[1].io, pb[0], LOOP_READ, on_self_del), 0);
    write_byte(pa[1]);
    write_byte(pb[1]);
    sleep_ms(1);
    assert_int_equal(loop_run_once(l, WAIT_MS), 2);
    assert_int_equal(s[0].calls, 1);
    assert_int_equal(s[1].calls, 1);
    write_byte(pa[1]);
    write_byte(pb[1]);
    assert_int_equal(loop_run_once(l, 0), 0); /* both unregistered */
    close(pa[0]);
    close(pa[1]);
    close(pb[0]);
    close(pb[1]);
    loop_free(l);
}

TEST(io_move_hands_the_registration_to_the_new_owner)
{
    struct loop *l = loop_new();
    struct rec_io from = {.calls = 0}, to = {.calls = 0};
    int sv[2];
    char buf[8];
    assert_non_null(l);
    nb_socketpair(sv);
    assert_int_equal(loop_io_add(l, &from.io, sv[0], LOOP_READ, on_rec_io), 0);
    write_byte(sv[1]);
    /* Moved before the loop looked: the pending readiness goes to `to`. */
    assert_int_equal(loop_io_move(l, &from.io, &to.io, LOOP_READ, on_rec_io), 0);
    assert_int_equal(from.io.fd, -1);
    assert_int_equal(to.io.fd, sv[0]);
    assert_int_equal(to.io.mask, LOOP_READ);
    run_until(l, &to.calls);
    assert_int_equal(to.calls, 1);
    assert_int_equal(from.calls, 0);
    assert_true(to.last & LOOP_READ);
    assert_int_equal(read(sv[0], buf, sizeof buf), 1);

    /* The new mask applies: WRITE interest now reports writability. */
    assert_int_equal(loop_io_set(l, &to.io, LOOP_READ | LOOP_WRITE), 0);
    assert_int_equal(loop_run_once(l, WAIT_MS), 1);
    assert_int_equal(to.calls, 2);
    assert_true(to.last & LOOP_WRITE);
    assert_int_equal(from.calls, 0);

    loop_io_del(l, &to.io);
    close(sv[0]);
    close(sv[1]);
    loop_free(l);
}

/* Moving from inside the old owner's handler (what a session does with the
 * dialled socket): the new owner hears about readiness that is still there. */
struct mover {
    struct rec_io from, to;
    struct loop *l;
};

static void on_move_me(struct loop_io *io, unsigned events)
{
    struct mover *m = container_of(io, struct mover, from.io);
    m->from.calls++;
    m->from.last = events;
    assert_int_equal(loop_io_move(m->l, io, &m->to.io, LOOP_READ | LOOP_WRITE, on_rec_io), 0);
}

TEST(io_move_inside_handler_redelivers_current_readiness)
{
    struct mover m;
    int sv[2];
    memset(&m, 0, sizeof m);
    m.l = loop_new();
    assert_non_null(m.l);
    nb_socketpair(sv);
    assert_int_equal(loop_io_add(m.l, &m.from.io, sv[0], LOOP_WRITE, on_move_me), 0);
    write_byte(sv[1]); /* unread data, not yet of interest */
    assert_int_equal(loop_run_once(m.l, WAIT_MS), 1);
    assert_int_equal(m.from.calls, 1);
    assert_int_equal(m.to.calls, 0);
    run_until(m.l, &m.to.calls);
    assert_int_equal(m.from.calls, 1);
    assert_int_equal(m.to.calls, 1);
    assert_true(m.to.last & LOOP_READ);
    loop_io_del(m.l, &m.to.io);
    close(sv[0]);
    close(sv[1]);
    loop_free(m.l);
}

/* The same move with the interest unchanged (a dial's winner handed to the
 * session): no re-arming syscall, and the new owner gets the event being
 * handled in the same round. */
static void on_move_same_mask(struct loop_io *io, unsigned events)
{
    struct mover *m = container_of(io, struct mover, from.io);
    m->from.calls++;
    m->from.last = events;
    assert_int_equal(loop_io_move(m->l, io, &m->to.io, LOOP_READ | LOOP_WRITE, on_rec_io), 0);
    /* Whatever reaches `from` from now on jumps through garbage. */
    memset(&m->from.io, 0xA5, sizeof m->from.io);
}

TEST(io_move_with_the_same_mask_hands_the_event_over_in_the_same_round)
{
    struct mover m;
    int sv[2];
    char buf[8];
    memset(&m, 0, sizeof m);
    m.l = loop_new();
    assert_non_null(m.l);
    nb_socketpair(sv);
    assert_int_equal(loop_io_add(m.l, &m.from.io, sv[0], LOOP_READ | LOOP_WRITE, on_move_same_mask),
                     0);
    write_byte(sv[1]);
    sleep_ms(1);
    assert_int_equal(loop_run_once(m.l, WAIT_MS), 1);
    assert_int_equal(m.from.calls, 1);
    assert_int_equal(m.to.calls, 1);
    assert_int_equal(m.to.last, m.from.last);
    assert_true(m.to.last & LOOP_READ);
    assert_int_equal(m.to.io.fd, sv[0]);
    /* Later edges reach the new owner only. */
    assert_int_equal(read(sv[0], buf, sizeof buf), 1);
    m.to.calls = 0;
    write_byte(sv[1]);
    run_until(m.l, &m.to.calls);
    assert_int_equal(m.to.calls, 1);
    assert_true(m.to.last & LOOP_READ);
    loop_io_del(m.l, &m.to.io);
    close(sv[0]);
    close(sv[1]);
    loop_free(m.l);
}

/* Moved, then closed by its new owner within the same handler, its number
 * taken at once by a new descriptor: the handed-over event is dropped, not
 * given to the newcomer. */
struct reuser {
    struct mover m;
    struct rec_io newcomer;
    int pair[2];
};

static void on_move_close_reuse(struct loop_io *io, unsigned events)
{
    struct reuser *r = container_of(io, struct reuser, m.from.io);
    int old = io->fd;
    r->m.from.calls++;
    (void)events;
    assert_int_equal(loop_io_move(r->m.l, io, &r->m.to.io, LOOP_READ | LOOP_WRITE, on_rec_io), 0);
    loop_io_close(r->m.l, &r->m.to.io);
    nb_socketpair(r->pair);
    assert_int_equal(r->pair[0], old); /* the lowest free number comes back */
    assert_int_equal(loop_io_add(r->m.l, &r->newcomer.io, r->pair[0], LOOP_READ, on_rec_io), 0);
}

TEST(io_closed_after_a_move_in_the_same_handler_hands_nothing_to_a_reused_number)
{
    struct reuser r;
    int sv[2];
    memset(&r, 0, sizeof r);
    r.m.l = loop_new();
    assert_non_null(r.m.l);
    nb_socketpair(sv);
    assert_int_equal(
        loop_io_add(r.m.l, &r.m.from.io, sv[0], LOOP_READ | LOOP_WRITE, on_move_close_reuse), 0);
    write_byte(sv[1]);
    sleep_ms(1);
    assert_int_equal(loop_run_once(r.m.l, WAIT_MS), 1);
    assert_int_equal(r.m.from.calls, 1);
    assert_int_equal(r.m.to.calls, 0);
    assert_int_equal(r.newcomer.calls, 0);
    /* The newcomer hears about its own edges. */
    write_byte(r.pair[1]);
    run_until(r.m.l, &r.newcomer.calls);
    assert_int_equal(r.newcomer.calls, 1);
    loop_io_del(r.m.l, &r.newcomer.io);
    close(r.pair[0]);
    close(r.pair[1]);
    close(sv[1]);
    loop_free(r.m.l);
}

/* The ownership rule of loop.h: a failed add leaves the fd with the caller
 * and io->fd at -1, so the owner's close path cannot close it a second time. */
TEST(failed_io_add_leaves_the_fd_with_the_caller)
{
    struct loop *l = loop_new();
    struct rec_io a = {.calls = 0}, b = {.calls = 0};
    int sv[2];
    assert_non_null(l);
    nb_socketpair(sv);
    assert_int_equal(loop_io_add(l, &a.io, sv[0], LOOP_READ, on_rec_io), 0);
    b.io.fd = 12345; /* stale value from an earlier use */
    assert_int_equal(loop_io_add(l, &b.io, sv[0], LOOP_READ, on_rec_io), -1);
    assert_int_equal(errno, EEXIST);
    assert_int_equal(b.io.fd, -1);
    assert_int_equal(a.io.fd, sv[0]);
    assert_true(fcntl(sv[0], F_GETFD) >= 0); /* still open: the caller's */
    loop_io_close(l, &a.io);
    assert_int_equal(a.io.fd, -1);
    assert_true(fcntl(sv[0], F_GETFD) < 0);
    close(sv[1]);
    loop_free(l);
}

TEST(peer_shutdown_wr_gives_rdhup_without_hup)
{
    struct loop *l = loop_new();
    struct rec_io r = {.calls = 0};
    int sv[2];
    char buf[8];
    assert_non_null(l);
    nb_socketpair(sv);
    assert_int_equal(loop_io_add(l, &r.io, sv[0], LOOP_READ, on_rec_io), 0);
    assert_int_equal(shutdown(sv[1], SHUT_WR), 0);
    run_until(l, &r.calls);
    assert_int_equal(r.calls, 1);
    assert_true(r.last & LOOP_RDHUP);
    assert_true(r.last & LOOP_READ); /* so a reader looks and finds the 0 */
    assert_false(r.last & LOOP_HUP);
    assert_int_equal(read(sv[0], buf, sizeof buf), 0);
    /* Still writable the other way. */
    assert_int_equal(write(sv[0], "y", 1), 1);
    assert_int_equal(read(sv[1], buf, sizeof buf), 1);
    loop_io_del(l, &r.io);
    close(sv[0]);
    close(sv[1]);
    loop_free(l);
}

TEST(peer_close_gives_hup)
{
    struct loop *l = loop_new();
    struct rec_io r = {.calls = 0};
    int sv[2];
    assert_non_null(l);
    nb_socketpair(sv);
    assert_int_equal(loop_io_add(l, &r.io, sv[0], LOOP_READ, on_rec_io), 0);
    close(sv[1]);
    run_until(l, &r.calls);
    assert_int_equal(r.calls, 1);
    assert_true(r.last & LOOP_HUP);
    assert_true(r.last & LOOP_READ);
    assert_true(r.last & LOOP_WRITE); /* a writer learns too */
    loop_io_del(l, &r.io);
    close(sv[0]);
    loop_free(l);
}

TEST(tcp_reset_gives_hup)
{
    struct loop *l = loop_new();
    struct rec_io r = {.calls = 0};
    struct sockaddr_in a;
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    char buf[8];
    assert_non_null(l);
    int lfd = listen_loopback(&a, 4);
    int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (connect(c, (struct sockaddr *)&a, sizeof a) < 0)
        fail_msg("connect: %s", strerror(errno));
    int s = accept(lfd, NULL, NULL);
    assert_true(s >= 0);
    set_nonblock(c);
    assert_int_equal(loop_io_add(l, &r.io, c, LOOP_READ, on_rec_io), 0);
    assert_int_equal(setsockopt(s, SOL_SOCKET, SO_LINGER, &lg, sizeof lg), 0);
    close(s); /* RST */
    uint64_t deadline = now_ms() + WAIT_MS;
    while (!(r.events & LOOP_HUP) && now_ms() < deadline)
        loop_run_once(l, 100);
    assert_true(r.events & LOOP_HUP);
    assert_int_equal(read(c, buf, sizeof buf), -1);
    assert_int_equal(errno, ECONNRESET);
    loop_io_del(l, &r.io);
    close(c);
    close(lfd);
    loop_free(l);
}

/* ---------------------------------------------------------------------------
 * Deferred work */

struct deferrer {
    struct loop_io io;
    struct loop *l;
    struct loop_defer *d;
    int calls;
};

static int defer_runs;
static int defer_runs_seen_by_handlers;

static void on_defer_count(struct loop_defer *d)
{
    (void)d;
    defer_runs++;
}

static void on_deferring_io(struct loop_io *io, unsigned events)
{
    struct deferrer *x = container_of(io, struct deferrer, io);
    (void)events;
    x->calls++;
    /* Whichever handler runs second must still see no deferred run. */
    defer_runs_seen_by_handlers += defer_runs;
    loop_defer(x->l, x->d, on_defer_count);
    loop_defer(x->l, x->d, on_defer_count); /* already queued: no-op */
    assert_int_equal(defer_runs, 0);
}

TEST(defer_runs_after_the_batch_and_only_once)
{
    struct loop *l = loop_new();
    struct loop_defer d = {0};
    struct deferrer x[2] = {{.l = l, .d = &d}, {.l = l, .d = &d}};
    int pa[2], pb[2];
    assert_non_null(l);
    nb_socketpair(pa);
    nb_socketpair(pb);
    defer_runs = defer_runs_seen_by_handlers = 0;
    assert_int_equal(loop_io_add(l, &x[0].io, pa[0], LOOP_READ, on_deferring_io), 0);
    assert_int_equal(loop_io_add(l, &x[1].io, pb[0], LOOP_READ, on_deferring_io), 0);
    write_byte(pa[1]);
    write_byte(pb[1]);
    sleep_ms(1);
    assert_int_equal(loop_run_once(l, WAIT_MS), 2);
    assert_int_equal(x[0].calls, 1);
    assert_int_equal(x[1].calls, 1);
    assert_int_equal(defer_runs_seen_by_handlers, 0);
    assert_int_equal(defer_runs, 1); /* ran before loop_run_once returned, once */
    assert_false(d.queued);
    assert_int_equal(loop_run_once(l, 0), 0);
    assert_int_equal(defer_runs, 1);
    for (int i = 0; i < 2; i++)
        loop_io_del(l, &x[i].io);
    close(pa[0]);
    close(pa[1]);
    close(pb[0]);
    close(pb[1]);
    loop_free(l);
}

/* A deferred item that re-queues itself (a busy tunnel yielding) runs once
 * per iteration, and the loop does not block while it is queued. */
struct requeue {
    struct loop_defer d;
    struct loop *l;
    int runs;
};

static void on_requeue(struct loop_defer *d)
{
    struct requeue *r = container_of(d, struct requeue, d);
    r->runs++;
    if (r->runs < 3)
        loop_defer(r->l, d, on_requeue);
}

TEST(defer_requeued_from_its_callback_runs_next_iteration_without_blocking)
{
    struct loop *l = loop_new();
    struct requeue r = {.l = l};
    assert_non_null(l);
    loop_defer(l, &r.d, on_requeue);
    /* Nothing else can wake the loop: with an item queued it must not wait
     * (a bug would sleep the full WAIT_MS each time). */
    uint64_t start = now_ms();
    for (int i = 1; i <= 3; i++) {
        assert_int_equal(loop_run_once(l, WAIT_MS), 0);
        assert_int_equal(r.runs, i); /* once per iteration, not all at once */
        assert_int_equal(r.d.queued, i < 3);
    }
    assert_true(now_ms() - start < WAIT_MS);
    loop_free(l);
}

TEST(defer_cancel_before_the_end_of_iteration_prevents_the_run)
{
    struct loop *l = loop_new();
    struct loop_defer a = {0}, b = {0}, c = {0};
    assert_non_null(l);
    defer_runs = 0;
    loop_defer(l, &a, on_defer_count);
    loop_defer(l, &b, on_defer_count);
    loop_defer(l, &c, on_defer_count);
    loop_defer_cancel(l, &b); /* from the middle of the list */
    loop_defer_cancel(l, &b); /* twice: no effect */
    assert_false(b.queued);
    assert_int_equal(loop_run_once(l, 0), 0);
    assert_int_equal(defer_runs, 2);
    assert_int_equal(loop_run_once(l, 0), 0);
    assert_int_equal(defer_runs, 2);
    loop_free(l);
}

/* Deferred items queued for the same iteration; the first to run cancels
 * the other (its owner is closing the other's owner, e.g. a session closing
 * its UDP association). The cancelled one must not run: its owner may be
 * freed right after loop_defer_cancel returns. */
struct pair_defer {
    struct loop_defer d;
    struct loop *l;
    struct pair_defer *other;
    int runs;
};

static void on_pair_defer(struct loop_defer *d)
{
    struct pair_defer *p = container_of(d, struct pair_defer, d);
    p->runs++;
    loop_defer_cancel(p->l, &p->other->d);
}

TEST(defer_cancelled_by_another_deferred_callback_does_not_run)
{
    struct loop *l = loop_new();
    struct pair_defer a = {.l = l}, b = {.l = l};
    assert_non_null(l);
    a.other = &b;
    b.other = &a;
    loop_defer(l, &a.d, on_pair_defer);
    loop_defer(l, &b.d, on_pair_defer);
    assert_int_equal(loop_run_once(l, 0), 0);
    assert_int_equal(a.runs + b.runs, 1);
    assert_false(a.d.queued);
    assert_false(b.d.queued);
    assert_int_equal(loop_run_once(l, 0), 0);
    assert_int_equal(a.runs + b.runs, 1);
    loop_free(l);
}

static char trace[16];
static size_t ntrace;

static void trace_io(struct loop_io *io, unsigned events)
{
    (void)io;
    (void)events;
    trace[ntrace++] = 'i';
}

static void trace_timer(struct loop_timer *t)
{
    (void)t;
    trace[ntrace++] = 't';
}

static void trace_defer(struct loop_defer *d)
{
    (void)d;
    trace[ntrace++] = 'd';
}

TEST(one_iteration_runs_io_then_timers_then_deferred)
{
    struct loop *l = loop_new();
    struct loop_io io;
    struct loop_timer t = {0};
    struct loop_defer d = {0};
    int sv[2];
    assert_non_null(l);
    nb_socketpair(sv);
    memset(trace, 0, sizeof trace);
    ntrace = 0;
    /* Queued in the opposite order to the one expected. */
    loop_defer(l, &d, trace_defer);
    assert_int_equal(loop_timer_arm(l, &t, 0, trace_timer), 0);
    assert_int_equal(loop_io_add(l, &io, sv[0], LOOP_READ, trace_io), 0);
    write_byte(sv[1]);
    sleep_ms(1);
    assert_int_equal(loop_run_once(l, WAIT_MS), 1);
    assert_string_equal(trace, "itd");
    loop_io_del(l, &io);
    close(sv[0]);
    close(sv[1]);
    loop_free(l);
}

TEST(loop_now_advances_with_the_clock)
{
    struct loop *l = loop_new();
    assert_non_null(l);
    uint64_t a = loop_now(l);
    sleep_ms(20);
    assert_int_equal(loop_now(l), a); /* cached between iterations */
    loop_run_once(l, 0);
    assert_true(loop_now(l) >= a + 20);
    loop_free(l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(timers_fire_in_deadline_order_not_arming_order),
        cmocka_unit_test(timer_does_not_fire_before_its_deadline),
        cmocka_unit_test(cancelled_timer_never_fires_and_cancel_is_idempotent),
        cmocka_unit_test(rearming_an_armed_timer_moves_its_deadline),
        cmocka_unit_test(timer_rearms_itself_from_its_handler),
        cmocka_unit_test(thousand_random_timers_fire_in_heap_order),
        cmocka_unit_test(heap_grows_past_first_allocation_and_keeps_order),
        cmocka_unit_test(cancelling_inner_heap_nodes_keeps_order),

        cmocka_unit_test(pipe_read_event_is_delivered_once_per_edge),
        cmocka_unit_test(level_triggered_io_repeats_until_drained),
        cmocka_unit_test(socket_write_interest_via_io_set_and_unchanged_set_is_a_no_op),
        cmocka_unit_test(io_del_inside_handler_drops_pending_event_of_the_deleted_io),
        cmocka_unit_test(io_close_inside_handler_drops_pending_event_of_the_closed_io),
        cmocka_unit_test(io_del_of_itself_leaves_other_events_in_the_batch),
        cmocka_unit_test(io_move_hands_the_registration_to_the_new_owner),
        cmocka_unit_test(io_move_inside_handler_redelivers_current_readiness),
        cmocka_unit_test(io_move_with_the_same_mask_hands_the_event_over_in_the_same_round),
        cmocka_unit_test(
            io_closed_after_a_move_in_the_same_handler_hands_nothing_to_a_reused_number),
        cmocka_unit_test(failed_io_add_leaves_the_fd_with_the_caller),
        cmocka_unit_test(peer_shutdown_wr_gives_rdhup_without_hup),
        cmocka_unit_test(peer_close_gives_hup),
        cmocka_unit_test(tcp_reset_gives_hup),

        cmocka_unit_test(defer_runs_after_the_batch_and_only_once),
        cmocka_unit_test(defer_requeued_from_its_callback_runs_next_iteration_without_blocking),
        cmocka_unit_test(defer_cancel_before_the_end_of_iteration_prevents_the_run),
        cmocka_unit_test(defer_cancelled_by_another_deferred_callback_does_not_run),
        cmocka_unit_test(one_iteration_runs_io_then_timers_then_deferred),
        cmocka_unit_test(loop_now_advances_with_the_clock),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
