/* Unit tests for src/dial.c: non-blocking connects raced RFC 8305 style.
 *
 * Targets are local: a listening loopback socket (open), a port nobody
 * listens on (refused), a listener whose accept queue is full (a
 * "black hole": SYNs are dropped, the connect just hangs), and addresses a
 * TCP connect refuses synchronously (multicast, broadcast). Descriptor
 * leaks are checked by counting /proc/self/fd. */
#include "unit_support.h"

#include "addr.h"
#include "dial.h"
#include "loop.h"

struct dial_rec {
    struct loop *l;
    int calls;
    int fd;
    int err;
    int had_io;
    int io_fd_matched;
    union addr_any peer;
    int had_peer;
    uint64_t when;     /* loop_now at the callback */
    struct loop_io io; /* takes the winner's registration over */
    int events;
};

static void on_owned_io(struct loop_io *io, unsigned events)
{
    struct dial_rec *r = container_of(io, struct dial_rec, io);
    (void)events;
    r->events++;
}

static void on_dialed(void *owner, int fd, struct loop_io *io, int err, const union addr_any *peer)
{
    struct dial_rec *r = owner;
    r->calls++;
    r->fd = fd;
    r->err = err;
    r->had_io = io != NULL;
    r->had_peer = peer != NULL;
    r->when = loop_now(r->l);
    if (peer)
        r->peer = *peer;
    if (fd >= 0) {
        assert_non_null(io);
        r->io_fd_matched = io->fd == fd;
        /* The dial (and the io inside it) is freed after we return: move
         * the registration to memory we own, as a session does. */
        assert_int_equal(loop_io_move(r->l, io, &r->io, LOOP_READ, on_owned_io), 0);
    }
}

static void rec_init(struct dial_rec *r, struct loop *l)
{
    memset(r, 0, sizeof *r);
    r->l = l;
    r->fd = -2;
}

static void rec_close(struct dial_rec *r)
{
    if (r->fd >= 0) {
        loop_io_del(r->l, &r->io);
        close(r->fd);
        r->fd = -1;
    }
}

/* Runs the loop until the callback ran (or WAIT_MS). */
static void run_until_called(struct loop *l, struct dial_rec *r)
{
    uint64_t deadline = now_ms() + WAIT_MS;
    while (!r->calls && now_ms() < deadline)
        assert_true(loop_run_once(l, 100) >= 0);
    assert_int_equal(r->calls, 1);
}

/* Runs the loop for about ms more, for "nothing else happens" checks. */
static void run_for(struct loop *l, unsigned ms)
{
    uint64_t end = now_ms() + ms;
    while (now_ms() < end)
        loop_run_once(l, 10);
}

static union addr_any any4(const struct sockaddr_in *in)
{
    union addr_any a;
    memset(&a, 0, sizeof a);
    a.in4 = *in;
    return a;
}

static union addr_any ip4(const char *ip, uint16_t port)
{
    union addr_any a;
    memset(&a, 0, sizeof a);
    a.in4.sin_family = AF_INET;
    a.in4.sin_port = htons(port);
    assert_int_equal(inet_pton(AF_INET, ip, &a.in4.sin_addr), 1);
    return a;
}

static void assert_same_addr(const union addr_any *a, const union addr_any *b)
{
    char x[ADDR_STRLEN], y[ADDR_STRLEN];
    if (!addr_same_ip(&a->sa, &b->sa) || addr_port(&a->sa) != addr_port(&b->sa))
        fail_msg("peer %s, expected %s", addr_str(&a->sa, x, sizeof x),
                 addr_str(&b->sa, y, sizeof y));
}

/* A listener whose accept queue is full: further connects hang in SYN_SENT
 * (the SYN is dropped, the first retry is a second away). */
struct blackhole {
    int lfd, filler;
    union addr_any addr;
};

static void blackhole_open(struct blackhole *b)
{
    struct sockaddr_in in;
    b->lfd = listen_loopback(&in, 0);
    b->addr = any4(&in);
    b->filler = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(b->filler >= 0);
    assert_int_equal(connect(b->filler, &b->addr.sa, sizeof in), 0);
    /* Check it really swallows a connect now. */
    int probe = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    assert_int_equal(connect(probe, &b->addr.sa, sizeof in), -1);
    assert_int_equal(errno, EINPROGRESS);
    sleep_ms(20);
    int err = 0;
    socklen_t len = sizeof err;
    assert_int_equal(getsockopt(probe, SOL_SOCKET, SO_ERROR, &err, &len), 0);
    assert_int_equal(err, 0);
    close(probe);
}

static void blackhole_close(struct blackhole *b)
{
    close(b->filler);
    close(b->lfd);
}

TEST(connect_to_a_listening_socket_succeeds_with_the_peer_address)
{
    struct loop *l = loop_new();
    struct dial_rec r;
    struct sockaddr_in in;
    int err = 0;
    assert_non_null(l);
    rec_init(&r, l);
    int base = fd_count();
    int lfd = listen_loopback(&in, 8);
    union addr_any a = any4(&in);

    struct dial *d = dial_start(l, &a, 1, NULL, WAIT_MS, on_dialed, &r, &err);
    assert_non_null(d);
    assert_int_equal(r.calls, 0); /* never from inside dial_start */
    run_until_called(l, &r);
    assert_true(r.fd >= 0);
    assert_int_equal(r.err, 0);
    assert_true(r.had_io);
    assert_true(r.io_fd_matched);
    assert_true(r.had_peer);
    assert_same_addr(&r.peer, &a);

    /* The socket is connected to that listener. */
    union addr_any got;
    socklen_t glen = sizeof got;
    assert_int_equal(getpeername(r.fd, &got.sa, &glen), 0);
    assert_same_addr(&got, &a);
    int s = accept(lfd, NULL, NULL);
    assert_true(s >= 0);

    /* The moved registration delivers events to the new owner. */
    r.events = 0;
    assert_int_equal(write(s, "x", 1), 1);
    uint64_t deadline = now_ms() + WAIT_MS;
    while (!r.events && now_ms() < deadline)
        loop_run_once(l, 100);
    assert_true(r.events >= 1);

    run_for(l, 20);
    assert_int_equal(r.calls, 1); /* exactly once */
    close(s);
    rec_close(&r);
    close(lfd);
    assert_int_equal(fd_count(), base);
    loop_free(l);
}

TEST(connect_to_a_closed_port_fails_with_econnrefused)
{
    struct loop *l = loop_new();
    struct dial_rec r;
    struct sockaddr_in in;
    int err = 0;
    assert_non_null(l);
    rec_init(&r, l);
    int base = fd_count();
    closed_loopback_port(&in);
    union addr_any a = any4(&in);

    struct dial *d = dial_start(l, &a, 1, NULL, WAIT_MS, on_dialed, &r, &err);
    if (d) {
        assert_int_equal(r.calls, 0);
        run_until_called(l, &r);
        assert_int_equal(r.fd, -1);
        assert_int_equal(r.err, ECONNREFUSED);
        assert_false(r.had_io);
        assert_false(r.had_peer);
    } else {
        /* Refused at once is allowed too: then no callback ever. */
        assert_int_equal(err, ECONNREFUSED);
        run_for(l, 20);
        assert_int_equal(r.calls, 0);
    }
    assert_int_equal(fd_count(), base);
    loop_free(l);
}

/* [refused, open]: the refusal starts the next attempt at once (RFC 8305
 * section 5), it does not wait out the 250 ms stagger. The stagger timer is
 * armed at loop_now() + DIAL_STAGGER_MS when dial_start runs and can only
 * fire once the loop's clock reaches that, so an answer with loop_now()
 * still below it cannot have come through the stagger. A stall of the
 * whole machine could still push a correct run past the mark, so the
 * scenario gets three tries; a dialler that waits fails all three. */
TEST(refused_first_address_moves_on_to_the_second_without_waiting_the_stagger)
{
    int fast = 0;
    for (int attempt = 0; attempt < 3 && !fast; attempt++) {
        struct loop *l = loop_new();
        struct dial_rec r;
        struct sockaddr_in closed, open;
        int err = 0;
        assert_non_null(l);
        rec_init(&r, l);
        int base = fd_count();
        closed_loopback_port(&closed);
        int lfd = listen_loopback(&open, 8);
        union addr_any list[2] = {any4(&closed), any4(&open)};

        loop_run_once(l, 0); /* fresh clock */
        uint64_t t0 = loop_now(l);
        struct dial *d = dial_start(l, list, 2, NULL, WAIT_MS, on_dialed, &r, &err);
        assert_non_null(d);
        run_until_called(l, &r);
        assert_true(r.fd >= 0);
        assert_int_equal(r.err, 0);
        assert_same_addr(&r.peer, &list[1]);
        fast = r.when < t0 + DIAL_STAGGER_MS;
        rec_close(&r);
        close(lfd);
        assert_int_equal(fd_count(), base);
        loop_free(l);
    }
    assert_true(fast);
}

TEST(hanging_first_address_gets_a_second_attempt_after_the_stagger)
{
    struct loop *l = loop_new();
    struct dial_rec r;
    struct blackhole bh;
    struct sockaddr_in open;
    int err = 0;
    assert_non_null(l);
    rec_init(&r, l);
    int base = fd_count();
    blackhole_open(&bh);
    int lfd = listen_loopback(&open, 8);
    union addr_any list[2] = {bh.addr, any4(&open)};

    loop_run_once(l, 0);
    uint64_t t0 = loop_now(l);
    struct dial *d = dial_start(l, list, 2, NULL, WAIT_MS, on_dialed, &r, &err);
    assert_non_null(d);
    assert_int_equal(fd_count(), base + 3 + 1); /* bh (2) + listener + attempt 1 */
    run_until_called(l, &r);
    assert_true(r.fd >= 0);
    assert_same_addr(&r.peer, &list[1]);
    /* Lower bound only: the second attempt waited for the stagger. */
    assert_true(r.when >= t0 + DIAL_STAGGER_MS);
    /* The loser (still hanging) was closed: only the winner is left. */
    assert_int_equal(fd_count(), base + 3 + 1);
    rec_close(&r);
    close(lfd);
    blackhole_close(&bh);
    assert_int_equal(fd_count(), base);
    loop_free(l);
}

TEST(deadline_passing_fails_with_etimedout_and_closes_the_attempts)
{
    struct loop *l = loop_new();
    struct dial_rec r;
    struct blackhole bh;
    int err = 0;
    assert_non_null(l);
    rec_init(&r, l);
    int base = fd_count();
    blackhole_open(&bh);
    union addr_any list[2] = {bh.addr, bh.addr};

    loop_run_once(l, 0);
    uint64_t t0 = loop_now(l);
    struct dial *d = dial_start(l, list, 2, NULL, 400, on_dialed, &r, &err);
    assert_non_null(d);
    run_until_called(l, &r);
    assert_int_equal(r.fd, -1);
    assert_int_equal(r.err, ETIMEDOUT);
    assert_false(r.had_io);
    assert_true(r.when >= t0 + 400);
    blackhole_close(&bh);
    assert_int_equal(fd_count(), base);
    run_for(l, 20);
    assert_int_equal(r.calls, 1);
    loop_free(l);
}

TEST(cancel_closes_every_attempt_and_no_callback_follows)
{
    struct loop *l = loop_new();
    struct dial_rec r;
    struct blackhole bh;
    int err = 0;
    assert_non_null(l);
    rec_init(&r, l);
    blackhole_open(&bh);
    int base = fd_count();
    union addr_any list[3] = {bh.addr, bh.addr, bh.addr};

    struct dial *d = dial_start(l, list, 3, NULL, WAIT_MS, on_dialed, &r, &err);
    assert_non_null(d);
    /* Past the first stagger: two attempts in flight, a timer armed. */
    uint64_t deadline = now_ms() + WAIT_MS;
    while (fd_count() < base + 2 && now_ms() < deadline)
        loop_run_once(l, 50);
    assert_int_equal(fd_count(), base + 2);
    dial_cancel(d);
    assert_int_equal(fd_count(), base);
    /* Stagger and deadline timers were cancelled too (ASan would flag a
     * timer firing into the freed dial). */
    run_for(l, DIAL_STAGGER_MS + 100);
    assert_int_equal(r.calls, 0);
    assert_int_equal(fd_count(), base);
    blackhole_close(&bh);
    loop_free(l);
}

TEST(cancel_before_the_loop_runs_drops_a_finished_connect)
{
    struct loop *l = loop_new();
    struct dial_rec r;
    struct sockaddr_in in;
    int err = 0;
    assert_non_null(l);
    rec_init(&r, l);
    int lfd = listen_loopback(&in, 8);
    int base = fd_count();
    union addr_any a = any4(&in);
    struct dial *d = dial_start(l, &a, 1, NULL, WAIT_MS, on_dialed, &r, &err);
    assert_non_null(d);
    sleep_ms(5); /* the connect has most likely completed in the kernel */
    dial_cancel(d);
    assert_int_equal(fd_count(), base);
    run_for(l, 50);
    assert_int_equal(r.calls, 0);
    close(lfd);
    loop_free(l);
}

TEST(every_address_failing_at_once_returns_null_with_err_and_no_callback)
{
    struct loop *l = loop_new();
    struct dial_rec r;
    int err = 0;
    assert_non_null(l);
    rec_init(&r, l);
    int base = fd_count();
    /* TCP cannot connect to multicast or broadcast: connect(2) fails
     * before any packet is sent. */
    union addr_any list[2] = {ip4("224.0.0.1", 80), ip4("255.255.255.255", 80)};
    struct dial *d = dial_start(l, list, 2, NULL, WAIT_MS, on_dialed, &r, &err);
    assert_null(d);
    assert_int_equal(err, ENETUNREACH);
    assert_int_equal(fd_count(), base);
    run_for(l, 20);
    assert_int_equal(r.calls, 0);
    loop_free(l);
}

TEST(synchronous_failure_moves_straight_on_to_the_next_address)
{
    struct loop *l = loop_new();
    struct dial_rec r;
    struct sockaddr_in open;
    int err = 0;
    assert_non_null(l);
    rec_init(&r, l);
    int base = fd_count();
    int lfd = listen_loopback(&open, 8);
    union addr_any list[2] = {ip4("224.0.0.1", 80), any4(&open)};
    loop_run_once(l, 0);
    struct dial *d = dial_start(l, list, 2, NULL, WAIT_MS, on_dialed, &r, &err);
    assert_non_null(d);
    assert_int_equal(r.calls, 0);
    run_until_called(l, &r);
    assert_true(r.fd >= 0);
    assert_same_addr(&r.peer, &list[1]);
    rec_close(&r);
    close(lfd);
    assert_int_equal(fd_count(), base);
    loop_free(l);
}

TEST(all_attempts_refused_reports_the_refusal)
{
    struct loop *l = loop_new();
    struct dial_rec r;
    struct sockaddr_in c1, c2;
    int err = 0;
    assert_non_null(l);
    rec_init(&r, l);
    int base = fd_count();
    closed_loopback_port(&c1);
    closed_loopback_port(&c2);
    union addr_any list[3] = {any4(&c1), ip4("224.0.0.1", 80), any4(&c2)};
    struct dial *d = dial_start(l, list, 3, NULL, WAIT_MS, on_dialed, &r, &err);
    if (d) {
        run_until_called(l, &r);
        assert_int_equal(r.fd, -1);
        assert_int_equal(r.err, ECONNREFUSED);
    } else {
        assert_int_equal(err, ECONNREFUSED);
    }
    assert_int_equal(fd_count(), base);
    loop_free(l);
}

TEST(connect_over_ipv6_loopback)
{
    struct loop *l = loop_new();
    struct dial_rec r;
    union addr_any a;
    int err = 0, one = 1;
    assert_non_null(l);
    rec_init(&r, l);
    memset(&a, 0, sizeof a);
    a.in6.sin6_family = AF_INET6;
    a.in6.sin6_addr = in6addr_loopback;
    int lfd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(lfd >= 0);
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    socklen_t alen = sizeof a.in6;
    /* The suite needs IPv6 loopback (the integration tests use ::1 too). */
    assert_int_equal(bind(lfd, &a.sa, sizeof a.in6), 0);
    assert_int_equal(getsockname(lfd, &a.sa, &alen), 0);
    assert_int_equal(listen(lfd, 8), 0);
    struct dial *d = dial_start(l, &a, 1, NULL, WAIT_MS, on_dialed, &r, &err);
    assert_non_null(d);
    run_until_called(l, &r);
    assert_true(r.fd >= 0);
    assert_int_equal(r.peer.sa.sa_family, AF_INET6);
    assert_same_addr(&r.peer, &a);
    rec_close(&r);
    close(lfd);
    loop_free(l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(connect_to_a_listening_socket_succeeds_with_the_peer_address),
        cmocka_unit_test(connect_to_a_closed_port_fails_with_econnrefused),
        cmocka_unit_test(refused_first_address_moves_on_to_the_second_without_waiting_the_stagger),
        cmocka_unit_test(hanging_first_address_gets_a_second_attempt_after_the_stagger),
        cmocka_unit_test(deadline_passing_fails_with_etimedout_and_closes_the_attempts),
        cmocka_unit_test(cancel_closes_every_attempt_and_no_callback_follows),
        cmocka_unit_test(cancel_before_the_loop_runs_drops_a_finished_connect),
        cmocka_unit_test(every_address_failing_at_once_returns_null_with_err_and_no_callback),
        cmocka_unit_test(synchronous_failure_moves_straight_on_to_the_next_address),
        cmocka_unit_test(all_attempts_refused_reports_the_refusal),
        cmocka_unit_test(connect_over_ipv6_loopback),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
