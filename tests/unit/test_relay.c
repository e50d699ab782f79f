/* Unit tests for src/relay.c: moving bytes between two connected sockets.
 *
 * The relay sits between a "client pair" and a "target pair" of
 * non-blocking AF_UNIX stream sockets: the relay owns one end of each, the
 * test plays the client application and the target server on the others.
 * Most tests feed events with relay_note by hand, so each step is exact;
 * one drives the same thing through a real loop. Payloads are a running
 * byte pattern, so loss, duplication and reordering are all caught.
 *
 * A direction copies through a pool buffer for its first RELAY_SPLICE_AFTER
 * bytes and through a pooled pipe (splice) after that; backpressure and the
 * budget are checked in both modes. */
#include "unit_support.h"

#include <sys/ioctl.h>

#include "bufpool.h"
#include "loop.h"
#include "relay.h"

struct rig {
    int fds_before;
    int c[2]; /* c[0]: relay's client side; c[1]: the client application */
    int t[2]; /* t[0]: relay's target side; t[1]: the target server */
    struct relay r;
    struct bufpool pool;
    uint64_t now; /* the clock handed to relay_pump */
};

static void rig_init(struct rig *g)
{
    memset(g, 0, sizeof *g);
    g->fds_before = fd_count();
    nb_socketpair(g->c);
    nb_socketpair(g->t);
    g->r.client.io.fd = g->c[0];
    g->r.target.io.fd = g->t[0];
    bufpool_init(&g->pool, 4);
    g->now = 1000000;
}

static void rig_free(struct rig *g)
{
    relay_release(&g->r, &g->pool);
    assert_int_equal(g->pool.in_use, 0);
    bufpool_destroy(&g->pool);
    for (int i = 0; i < 2; i++) {
        if (g->c[i] >= 0)
            close(g->c[i]);
        if (g->t[i] >= 0)
            close(g->t[i]);
    }
    assert_int_equal(fd_count(), g->fds_before); /* no pipe left open */
}

/* Bytes a direction has read but not yet written, in either mode. */
static uint32_t pending(const struct relay_dir *d)
{
    /* [off, len) in both modes: off counts what left the pipe too. */
    return d->buf || d->pipe ? d->len - d->off : 0;
}

/* Buffers plus pipes a direction holds. */
static int held(const struct relay_dir *d)
{
    return (d->buf != NULL) + (d->pipe != NULL);
}

/* One pump; returns the status, *flags the flags. Fails the test on an
 * unexpected error. */
static int pump(struct rig *g, unsigned *flags)
{
    int err = 0;
    unsigned f = 0;
    int rc = relay_pump(&g->r, &g->pool, g->now, &f, &err);
    if (rc == RES_ERROR)
        fail_msg("relay_pump: unexpected error %s", strerror(err));
    if (flags)
        *flags = f;
    return rc;
}

static void send_str(int fd, const char *s)
{
    assert_int_equal(write(fd, s, strlen(s)), (ssize_t)strlen(s));
}

static void recv_str(int fd, const char *want)
{
    char buf[256];
    size_t n = strlen(want);
    assert_true(n < sizeof buf);
    ssize_t got = read(fd, buf, sizeof buf);
    if (got < 0)
        fail_msg("read: %s (wanted \"%s\")", strerror(errno), want);
    assert_int_equal(got, (ssize_t)n);
    buf[got] = '\0';
    assert_string_equal(buf, want);
}

static void assert_nothing_to_read(int fd)
{
    char b;
    assert_int_equal(read(fd, &b, 1), -1);
    assert_int_equal(errno, EAGAIN);
}

static void assert_eof(int fd)
{
    char b;
    assert_int_equal(read(fd, &b, 1), 0);
}

static int inq(int fd)
{
    int n = -1;
    assert_int_equal(ioctl(fd, FIONREAD, &n), 0);
    return n;
}

TEST(bytes_flow_both_ways)
{
    struct rig g;
    unsigned flags;
    rig_init(&g);

    send_str(g.c[1], "hello target");
    relay_note(&g.r.client, LOOP_READ);
    assert_int_equal(pump(&g, &flags), RES_AGAIN);
    assert_true(flags & RELAY_MOVED);
    assert_false(flags & RELAY_MORE);
    recv_str(g.t[1], "hello target");
    assert_int_equal(g.r.up.bytes, 12);
    assert_int_equal(g.pool.in_use, 0); /* idle: no buffer held */

    send_str(g.t[1], "hello client");
    relay_note(&g.r.target, LOOP_READ);
    assert_int_equal(pump(&g, &flags), RES_AGAIN);
    assert_true(flags & RELAY_MOVED);
    recv_str(g.c[1], "hello client");
    assert_int_equal(g.r.down.bytes, 12);
    assert_int_equal(g.pool.in_use, 0);

    /* Both at once. */
    send_str(g.c[1], "ping");
    send_str(g.t[1], "pong");
    relay_note(&g.r.client, LOOP_READ);
    relay_note(&g.r.target, LOOP_READ);
    assert_int_equal(pump(&g, &flags), RES_AGAIN);
    recv_str(g.t[1], "ping");
    recv_str(g.c[1], "pong");

    /* Nothing new: nothing moves, nothing is reported. */
    assert_int_equal(pump(&g, &flags), RES_AGAIN);
    assert_false(flags & RELAY_MOVED);
    assert_nothing_to_read(g.t[1]);
    assert_nothing_to_read(g.c[1]);
    rig_free(&g);
}

TEST(stale_readable_note_with_nothing_to_read_is_harmless)
{
    struct rig g;
    unsigned flags;
    rig_init(&g);
    relay_note(&g.r.client, LOOP_READ | LOOP_WRITE);
    relay_note(&g.r.target, LOOP_READ | LOOP_WRITE);
    assert_int_equal(pump(&g, &flags), RES_AGAIN);
    assert_false(flags & RELAY_MOVED);
    assert_int_equal(g.pool.in_use, 0);
    assert_false(g.r.client.readable); /* EAGAIN clears it */
    rig_free(&g);
}

TEST(early_data_in_up_buf_is_delivered_first)
{
    struct rig g;
    unsigned flags;
    rig_init(&g);
    /* Bytes the client sent right behind its request, already read by the
     * session: they go out before anything still in the socket. */
    g.r.up.buf = bufpool_get(&g.pool);
    assert_non_null(g.r.up.buf);
    memcpy(g.r.up.buf, "GET / HTTP/1.1\r\n", 16);
    g.r.up.off = 4; /* and only from off */
    g.r.up.len = 16;
    send_str(g.c[1], "Host: x\r\n");
    relay_note(&g.r.client, LOOP_READ);
    assert_int_equal(pump(&g, &flags), RES_AGAIN);
    recv_str(g.t[1], "/ HTTP/1.1\r\nHost: x\r\n");
    assert_int_equal(g.r.up.bytes, 12 + 9);
    assert_int_equal(g.pool.in_use, 0);
    rig_free(&g);
}

TEST(early_data_goes_out_even_without_a_read_event)
{
    struct rig g;
    rig_init(&g);
    g.r.up.buf = bufpool_get(&g.pool);
    memcpy(g.r.up.buf, "early", 5);
    g.r.up.len = 5;
    assert_int_equal(pump(&g, NULL), RES_AGAIN);
    recv_str(g.t[1], "early");
    assert_int_equal(g.pool.in_use, 0);
    rig_free(&g);
}

TEST(eof_becomes_shutdown_wr_while_the_reverse_still_flows)
{
    struct rig g;
    rig_init(&g);
    /* The client sends its last bytes and a FIN. */
    send_str(g.c[1], "last words");
    assert_int_equal(shutdown(g.c[1], SHUT_WR), 0);
    relay_note(&g.r.client, LOOP_READ | LOOP_RDHUP);
    assert_int_equal(pump(&g, NULL), RES_AGAIN);
    assert_true(g.r.up.shut);
    assert_false(g.r.down.shut);
    /* The target sees the bytes, then EOF. */
    recv_str(g.t[1], "last words");
    assert_eof(g.t[1]);

    /* The reply still reaches the client, more than once. */
    send_str(g.t[1], "reply 1");
    relay_note(&g.r.target, LOOP_READ);
    assert_int_equal(pump(&g, NULL), RES_AGAIN);
    recv_str(g.c[1], "reply 1");
    send_str(g.t[1], "reply 2");
    relay_note(&g.r.target, LOOP_READ);
    assert_int_equal(pump(&g, NULL), RES_AGAIN);
    recv_str(g.c[1], "reply 2");

    /* The client side was only half-closed: its socket is still open. */
    assert_int_equal(write(g.c[0], "x", 1), 1);
    recv_str(g.c[1], "x");
    rig_free(&g);
}

TEST(done_only_after_both_eofs_and_each_eof_passed_on_once)
{
    struct rig g;
    unsigned flags;
    rig_init(&g);
    assert_int_equal(shutdown(g.t[1], SHUT_WR), 0);
    relay_note(&g.r.target, LOOP_READ | LOOP_RDHUP);
    assert_int_equal(pump(&g, &flags), RES_AGAIN);
    assert_true(g.r.down.shut);
    assert_eof(g.c[1]);
    /* Pumping again does not change anything. */
    assert_int_equal(pump(&g, &flags), RES_AGAIN);

    send_str(g.c[1], "bye");
    assert_int_equal(shutdown(g.c[1], SHUT_WR), 0);
    relay_note(&g.r.client, LOOP_READ | LOOP_RDHUP);
    assert_int_equal(pump(&g, &flags), RES_DONE);
    assert_true(flags & RELAY_MOVED);
    recv_str(g.t[1], "bye");
    assert_int_equal(g.pool.in_use, 0);
    assert_int_equal(held(&g.r.up) + held(&g.r.down), 0);
    assert_int_equal(pump(&g, &flags), RES_DONE);
    /* Done: the owner closes both sockets, and that ends the target's read
     * side (a FIN, not a reset: nothing was left unread). */
    close(g.c[0]);
    close(g.t[0]);
    g.c[0] = g.t[0] = -1;
    assert_eof(g.t[1]);
    assert_eof(g.c[1]);
    rig_free(&g);
}

TEST(eof_without_rdhup_note_is_found_by_reading)
{
    /* Some events carry only READ for a FIN; reading 0 is what counts. */
    struct rig g;
    rig_init(&g);
    assert_int_equal(shutdown(g.c[1], SHUT_WR), 0);
    relay_note(&g.r.client, LOOP_READ);
    assert_int_equal(pump(&g, NULL), RES_AGAIN);
    assert_true(g.r.client.eof);
    assert_true(g.r.up.shut);
    assert_eof(g.t[1]);
    rig_free(&g);
}

/* Keeps the client application writing until the relay holds a partly
 * written buffer because the target does not read. */
static void stall_upstream(struct rig *g, uint8_t *wseq)
{
    uint64_t deadline = now_ms() + WAIT_MS;
    for (;;) {
        fill_socket(g->c[1], wseq, 64u << 20);
        relay_note(&g->r.client, LOOP_READ);
        pump(g, NULL);
        if (pending(&g->r.up) > 0)
            break;
        if (now_ms() > deadline)
            fail_msg("the target never filled up");
    }
    /* Top the source up again: there are bytes waiting behind the stall. */
    fill_socket(g->c[1], wseq, 64u << 20);
}

/* The stalled state must hold: pumping again (with fresh read events) reads
 * nothing more from the source and holds one buffer or pipe, no more. */
static void assert_holds_still(struct rig *g)
{
    unsigned flags;
    int waiting = inq(g->c[0]);
    uint64_t moved = g->r.up.bytes;
    uint32_t left = pending(&g->r.up);
    assert_true(waiting > 0);
    assert_true(left > 0);
    assert_int_equal(held(&g->r.up), 1);
    assert_int_equal(held(&g->r.down), 0);
    for (int i = 0; i < 5; i++) {
        relay_note(&g->r.client, LOOP_READ);
        assert_int_equal(pump(g, &flags), RES_AGAIN);
        assert_false(flags & RELAY_MOVED);
        assert_false(flags & RELAY_MORE);
        assert_int_equal(inq(g->c[0]), waiting);
        assert_int_equal(g->r.up.bytes, moved);
        assert_int_equal(pending(&g->r.up), left);
        assert_int_equal(held(&g->r.up), 1);
    }
}

/* The target reads again: everything arrives, intact and in order. */
static void release_stall(struct rig *g, uint8_t *rseq, uint8_t wseq, size_t already)
{
    size_t got = already;
    uint64_t deadline = now_ms() + WAIT_MS;
    while (inq(g->c[0]) > 0 || pending(&g->r.up) > 0) {
        got += drain_pattern(g->t[1], rseq, NULL);
        relay_note(&g->r.target, LOOP_WRITE);
        relay_note(&g->r.client, LOOP_READ);
        pump(g, NULL);
        if (now_ms() > deadline)
            fail_msg("relay did not resume after the target drained");
    }
    got += drain_pattern(g->t[1], rseq, NULL);
    assert_int_equal(got, g->r.up.bytes);
    assert_int_equal(*rseq, wseq);
    assert_int_equal(held(&g->r.up), 0);
    assert_int_equal(g->pool.in_use, 0);
}

TEST(backpressure_stops_reading_the_source_while_the_destination_is_full)
{
    struct rig g;
    uint8_t wseq = 0, rseq = 0;
    int small = 4096;
    rig_init(&g);
    /* A small target buffer: the stall comes while still in buffer mode. */
    assert_int_equal(setsockopt(g.t[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof small), 0);
    stall_upstream(&g, &wseq);
    assert_true(g.r.up.bytes < RELAY_SPLICE_AFTER);
    assert_non_null(g.r.up.buf);
    assert_int_equal(g.pool.in_use, 1); /* exactly one buffer: the stalled direction's */
    /* The source's arrivals would only wake the loop: not watched now. */
    assert_int_equal(relay_interest(&g.r, &g.r.client), LOOP_WRITE);
    assert_int_equal(relay_interest(&g.r, &g.r.target), LOOP_READ | LOOP_WRITE);
    assert_holds_still(&g);
    assert_int_equal(g.pool.in_use, 1);
    /* The destination's writability is what ends the wait. */
    relay_note(&g.r.target, LOOP_WRITE);
    assert_int_equal(relay_interest(&g.r, &g.r.client), LOOP_READ | LOOP_WRITE);
    release_stall(&g, &rseq, wseq, 0);
    assert_int_equal(relay_interest(&g.r, &g.r.client), LOOP_READ | LOOP_WRITE);
    rig_free(&g);
}

TEST(backpressure_in_splice_mode_holds_one_pipe_and_stops_reading)
{
    struct rig g;
    uint8_t wseq = 0, rseq = 0;
    size_t got = 0;
    rig_init(&g);
    /* Move more than RELAY_SPLICE_AFTER with the target reading. */
    uint64_t deadline = now_ms() + WAIT_MS;
    while (g.r.up.bytes < 2 * RELAY_SPLICE_AFTER) {
        fill_socket(g.c[1], &wseq, 64u << 20);
        relay_note(&g.r.client, LOOP_READ);
        relay_note(&g.r.target, LOOP_WRITE);
        pump(&g, NULL);
        got += drain_pattern(g.t[1], &rseq, NULL);
        if (now_ms() > deadline)
            fail_msg("could not move %d bytes", 2 * RELAY_SPLICE_AFTER);
    }
    /* Now stop reading at the target. */
    stall_upstream(&g, &wseq);
    assert_non_null(g.r.up.pipe);
    assert_null(g.r.up.buf);
    assert_int_equal(g.pool.in_use, 0);
    assert_int_equal(relay_interest(&g.r, &g.r.client), LOOP_WRITE);
    assert_holds_still(&g);
    release_stall(&g, &rseq, wseq, got);
    rig_free(&g);
}

TEST(backpressure_in_one_direction_does_not_stop_the_other)
{
    struct rig g;
    uint8_t wseq = 0;
    rig_init(&g);
    stall_upstream(&g, &wseq);
    send_str(g.t[1], "still here");
    relay_note(&g.r.target, LOOP_READ);
    assert_int_equal(pump(&g, NULL), RES_AGAIN);
    recv_str(g.c[1], "still here");
    assert_int_equal(held(&g.r.up), 1);   /* still stalled */
    assert_int_equal(held(&g.r.down), 0); /* idle again */
    assert_int_equal(relay_interest(&g.r, &g.r.client), LOOP_WRITE);
    assert_int_equal(relay_interest(&g.r, &g.r.target), LOOP_READ | LOOP_WRITE);
    rig_free(&g);
}

/* Raises a socket's send buffer past what RELAY_BUDGET reads need;
 * SO_SNDBUFFORCE needs CAP_NET_ADMIN. Returns 0 when it is not allowed. */
static int big_sndbuf(int fd, int bytes)
{
    int got = 0;
    socklen_t len = sizeof got;
    if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &bytes, sizeof bytes) < 0)
        return 0;
    assert_int_equal(getsockopt(fd, SOL_SOCKET, SO_SNDBUF, &got, &len), 0);
    return got >= bytes;
}

TEST(budget_runs_out_with_data_waiting_gives_relay_more)
{
    struct rig g;
    uint8_t wseq = 0, rseq = 0;
    unsigned flags;
    /* More than one call's byte budget, with room at the target for all. */
    enum { WANT = RELAY_BUDGET * 4 };
    rig_init(&g);
    /* Buffers this large need CAP_NET_ADMIN: the suite runs as root. */
    assert_true(big_sndbuf(g.c[1], 2 * WANT));
    assert_true(big_sndbuf(g.t[0], 2 * WANT));
    assert_int_equal(fill_socket(g.c[1], &wseq, WANT), WANT);
    relay_note(&g.r.client, LOOP_READ);
    assert_int_equal(pump(&g, &flags), RES_AGAIN);
    assert_true(flags & RELAY_MOVED);
    assert_true(flags & RELAY_MORE);
    /* Stopped early: part moved, the rest still in the socket. */
    assert_true(g.r.up.bytes > 0);
    assert_true(g.r.up.bytes <= (uint64_t)RELAY_BUDGET);
    assert_int_equal(inq(g.c[0]) + (int)pending(&g.r.up) + (int)g.r.up.bytes, WANT);
    assert_true(inq(g.c[0]) > 0);
    assert_true(g.r.client.readable); /* no new edge will come: still marked */

    /* Called again without any new event, it carries on to the end. */
    int calls = 0;
    do {
        assert_int_equal(pump(&g, &flags), RES_AGAIN);
        calls++;
        drain_pattern(g.t[1], &rseq, NULL);
    } while ((flags & RELAY_MORE) && calls < 1000);
    assert_false(flags & RELAY_MORE);
    drain_pattern(g.t[1], &rseq, NULL);
    assert_int_equal(g.r.up.bytes, WANT);
    assert_int_equal(inq(g.c[0]), 0);
    assert_int_equal(rseq, wseq);
    rig_free(&g);
}

TEST(small_burst_does_not_report_relay_more)
{
    struct rig g;
    uint8_t wseq = 0;
    unsigned flags;
    rig_init(&g);
    fill_socket(g.c[1], &wseq, 3 * BUFPOOL_SIZE + 100);
    relay_note(&g.r.client, LOOP_READ);
    assert_int_equal(pump(&g, &flags), RES_AGAIN);
    assert_true(flags & RELAY_MOVED);
    assert_false(flags & RELAY_MORE);
    assert_int_equal(g.r.up.bytes, 3 * BUFPOOL_SIZE + 100);
    rig_free(&g);
}

TEST(reset_by_the_target_gives_relay_error_with_econnreset)
{
    struct rig g;
    unsigned flags = 0;
    int err = 0;
    rig_init(&g);
    /* The target server closes with bytes it never read: a reset. */
    send_str(g.c[1], "unread by target");
    relay_note(&g.r.client, LOOP_READ);
    assert_int_equal(pump(&g, NULL), RES_AGAIN);
    close(g.t[1]);
    g.t[1] = -1;
    relay_note(&g.r.target, LOOP_READ | LOOP_WRITE | LOOP_HUP);
    assert_int_equal(relay_pump(&g.r, &g.pool, g.now, &flags, &err), RES_ERROR);
    assert_int_equal(err, ECONNRESET);
    rig_free(&g);
}

TEST(writing_to_a_closed_target_gives_relay_error_with_epipe_not_sigpipe)
{
    struct rig g;
    unsigned flags = 0;
    int err = 0;
    rig_init(&g);
    close(g.t[1]);
    g.t[1] = -1;
    send_str(g.c[1], "into the void");
    relay_note(&g.r.client, LOOP_READ);
    /* SIGPIPE would kill the test binary here (MSG_NOSIGNAL prevents it). */
    assert_int_equal(relay_pump(&g.r, &g.pool, g.now, &flags, &err), RES_ERROR);
    assert_int_equal(err, EPIPE);
    rig_free(&g);
}

TEST(release_returns_a_held_buffer)
{
    struct rig g;
    uint8_t wseq = 0;
    rig_init(&g);
    stall_upstream(&g, &wseq);
    assert_int_equal(held(&g.r.up), 1);
    relay_release(&g.r, &g.pool);
    assert_int_equal(held(&g.r.up) + held(&g.r.down), 0);
    assert_int_equal(g.pool.in_use, 0);
    relay_release(&g.r, &g.pool); /* twice: harmless */
    assert_int_equal(g.pool.in_use, 0);
    rig_free(&g); /* a pipe that still held bytes was closed, not pooled */
}

/* ---------------------------------------------------------------------------
 * rate limit (token bucket); the clock is the now_ms given to relay_pump */

TEST(bucket_limits_a_direction_and_refills_with_time)
{
    struct rig g;
    struct relay_bucket b;
    uint8_t wseq = 0, rseq = 0;
    unsigned flags;
    rig_init(&g);
    relay_bucket_init(&b, 4000, g.now); /* 4000 B/s; burst max(1000, 1500) */
    g.r.up.bucket = &b;
    fill_socket(g.c[1], &wseq, 20000);
    relay_note(&g.r.client, LOOP_READ);

    assert_int_equal(pump(&g, &flags), RES_AGAIN);
    assert_true(flags & RELAY_MOVED);
    assert_true(flags & RELAY_THROTTLED);
    assert_int_equal(g.r.up.bytes, 1500); /* the burst */
    assert_int_equal(drain_pattern(g.t[1], &rseq, NULL), 1500);

    /* Same instant: nothing more. */
    assert_int_equal(pump(&g, &flags), RES_AGAIN);
    assert_true(flags & RELAY_THROTTLED);
    assert_false(flags & RELAY_MOVED);
    assert_int_equal(g.r.up.bytes, 1500);

    /* 250 ms later: 1000 more bytes of tokens. */
    g.now += 250;
    assert_int_equal(pump(&g, &flags), RES_AGAIN);
    assert_int_equal(g.r.up.bytes, 2500);
    /* A long pause refills only up to the burst. */
    g.now += 60000;
    assert_int_equal(pump(&g, &flags), RES_AGAIN);
    assert_int_equal(g.r.up.bytes, 4000);
    assert_int_equal(drain_pattern(g.t[1], &rseq, NULL), 2500);

    /* The other direction has no bucket: unlimited. */
    uint8_t dseq = 0, drseq = 0;
    fill_socket(g.t[1], &dseq, 20000);
    relay_note(&g.r.target, LOOP_READ);
    assert_int_equal(pump(&g, &flags), RES_AGAIN);
    assert_int_equal(g.r.down.bytes, 20000);
    assert_int_equal(drain_pattern(g.c[1], &drseq, NULL), 20000);
    rig_free(&g);
}

/* relay.h: a buffer is "returned when [its bytes] have all been written".
 * A throttled direction whose bytes have all gone out waits for tokens, not
 * for the destination, so it must not sit on an empty 64 KiB buffer: many
 * slow, rate-limited tunnels would pin one each. */
TEST(throttled_direction_holds_no_buffer_while_waiting_for_tokens)
{
    struct rig g;
    struct relay_bucket b;
    uint8_t wseq = 0, rseq = 0;
    unsigned flags1, flags2;
    rig_init(&g);
    relay_bucket_init(&b, 4000, g.now);
    g.r.up.bucket = &b;
    fill_socket(g.c[1], &wseq, 20000);
    relay_note(&g.r.client, LOOP_READ);
    assert_int_equal(pump(&g, &flags1), RES_AGAIN);
    assert_int_equal(drain_pattern(g.t[1], &rseq, NULL), 1500); /* all of it went out */
    size_t held_after_burst = g.pool.in_use;
    g.now += 250;
    assert_int_equal(pump(&g, &flags2), RES_AGAIN);
    size_t held_after_refill = g.pool.in_use;
    rig_free(&g); /* first, so a failure below leaks nothing */
    assert_true(flags1 & RELAY_THROTTLED);
    assert_true(flags2 & RELAY_THROTTLED);
    assert_int_equal(held_after_burst, 0);
    assert_int_equal(held_after_refill, 0);
}

TEST(throttled_direction_still_passes_eof_when_drained)
{
    struct rig g;
    struct relay_bucket b;
    unsigned flags;
    rig_init(&g);
    relay_bucket_init(&b, 1500, g.now);
    g.r.up.bucket = &b;
    send_str(g.c[1], "small");
    assert_int_equal(shutdown(g.c[1], SHUT_WR), 0);
    relay_note(&g.r.client, LOOP_READ | LOOP_RDHUP);
    assert_int_equal(pump(&g, &flags), RES_AGAIN);
    recv_str(g.t[1], "small");
    assert_eof(g.t[1]);
    assert_true(g.r.up.shut);
    rig_free(&g);
}

/* A user's limit is one bucket shared by all of the user's tunnels
 * (ratelimit.h): it holds their sum to the rate, not each of them. */
TEST(bucket_shared_by_two_tunnels_limits_their_sum)
{
    struct rig a, b;
    struct relay_bucket k;
    uint8_t wa = 0, wb = 0;
    unsigned fa, fb;
    rig_init(&a);
    rig_init(&b);
    b.now = a.now;
    relay_bucket_init(&k, 4000, a.now); /* burst 1500 */
    a.r.up.bucket = b.r.up.bucket = &k;
    fill_socket(a.c[1], &wa, 20000);
    fill_socket(b.c[1], &wb, 20000);
    relay_note(&a.r.client, LOOP_READ);
    relay_note(&b.r.client, LOOP_READ);
    pump(&a, &fa);
    pump(&b, &fb);
    uint64_t burst = a.r.up.bytes + b.r.up.bytes;
    a.now += 250;
    b.now += 250;
    pump(&b, NULL);
    pump(&a, NULL);
    uint64_t later = a.r.up.bytes + b.r.up.bytes;
    rig_free(&b);
    rig_free(&a);
    assert_int_equal(burst, 1500);
    assert_true(fb & RELAY_THROTTLED);
    assert_int_equal(later, 2500); /* 250 ms at 4000 B/s, for both together */
}

/* ---------------------------------------------------------------------------
 * through a real loop: edge-triggered events, RELAY_MORE via loop_defer */

struct live {
    struct rig g;
    struct loop *l;
    struct loop_defer more;
    int status;
    int err;
};

static void on_live_more(struct loop_defer *d);

static void live_pump(struct live *v)
{
    unsigned flags = 0;
    if (v->status != RES_AGAIN)
        return;
    int rc = relay_pump(&v->g.r, &v->g.pool, loop_now(v->l), &flags, &v->err);
    v->status = rc;
    if (rc == RES_AGAIN && (flags & RELAY_MORE))
        loop_defer(v->l, &v->more, on_live_more);
}

static void on_live_more(struct loop_defer *d)
{
    live_pump(container_of(d, struct live, more));
}

static void on_live_client(struct loop_io *io, unsigned events)
{
    struct live *v = container_of(io, struct live, g.r.client.io);
    relay_note(&v->g.r.client, events);
    live_pump(v);
}

static void on_live_target(struct loop_io *io, unsigned events)
{
    struct live *v = container_of(io, struct live, g.r.target.io);
    relay_note(&v->g.r.target, events);
    live_pump(v);
}

TEST(relay_on_a_loop_moves_megabytes_both_ways_then_finishes)
{
    struct live *v = calloc(1, sizeof *v);
    enum { SIZE = 3 << 20 };
    uint8_t cw = 0, cr = 0, tw = 0, tr = 0; /* client/target write/read patterns */
    size_t csent = 0, tsent = 0, cgot = 0, tgot = 0;
    int ceof = 0, teof = 0, cshut = 0, tshut = 0;
    assert_non_null(v);
    rig_init(&v->g);
    v->l = loop_new();
    assert_non_null(v->l);
    v->status = RES_AGAIN;
    assert_int_equal(
        loop_io_add(v->l, &v->g.r.client.io, v->g.c[0], LOOP_READ | LOOP_WRITE, on_live_client), 0);
    assert_int_equal(
        loop_io_add(v->l, &v->g.r.target.io, v->g.t[0], LOOP_READ | LOOP_WRITE, on_live_target), 0);
    uint64_t deadline = now_ms() + 6 * WAIT_MS;
    while (v->status == RES_AGAIN && now_ms() < deadline) {
        if (csent < SIZE)
            csent += fill_socket(v->g.c[1], &cw, SIZE - csent);
        if (tsent < SIZE)
            tsent += fill_socket(v->g.t[1], &tw, SIZE - tsent);
        if (csent == SIZE && !cshut)
            cshut = shutdown(v->g.c[1], SHUT_WR) == 0;
        if (tsent == SIZE && !tshut)
            tshut = shutdown(v->g.t[1], SHUT_WR) == 0;
        tgot += drain_pattern(v->g.t[1], &tr, &teof);
        cgot += drain_pattern(v->g.c[1], &cr, &ceof);
        loop_run_once(v->l, 10);
    }
    assert_int_equal(v->status, RES_DONE);
    assert_int_equal(v->g.pool.in_use, 0);
    assert_int_equal(held(&v->g.r.up) + held(&v->g.r.down), 0);
    /* Done: the owner closes both relay sockets, as a session does. */
    loop_defer_cancel(v->l, &v->more);
    loop_io_del(v->l, &v->g.r.client.io);
    loop_io_del(v->l, &v->g.r.target.io);
    close(v->g.c[0]);
    close(v->g.t[0]);
    v->g.c[0] = v->g.t[0] = -1;
    tgot += drain_pattern(v->g.t[1], &tr, &teof);
    cgot += drain_pattern(v->g.c[1], &cr, &ceof);
    assert_int_equal(tgot, SIZE);
    assert_int_equal(cgot, SIZE);
    assert_true(teof);
    assert_true(ceof);
    assert_int_equal(v->g.r.up.bytes, SIZE);
    assert_int_equal(v->g.r.down.bytes, SIZE);
    loop_free(v->l);
    rig_free(&v->g);
    free(v);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(bytes_flow_both_ways),
        cmocka_unit_test(stale_readable_note_with_nothing_to_read_is_harmless),
        cmocka_unit_test(early_data_in_up_buf_is_delivered_first),
        cmocka_unit_test(early_data_goes_out_even_without_a_read_event),
        cmocka_unit_test(eof_becomes_shutdown_wr_while_the_reverse_still_flows),
        cmocka_unit_test(done_only_after_both_eofs_and_each_eof_passed_on_once),
        cmocka_unit_test(eof_without_rdhup_note_is_found_by_reading),
        cmocka_unit_test(backpressure_stops_reading_the_source_while_the_destination_is_full),
        cmocka_unit_test(backpressure_in_splice_mode_holds_one_pipe_and_stops_reading),
        cmocka_unit_test(backpressure_in_one_direction_does_not_stop_the_other),
        cmocka_unit_test(budget_runs_out_with_data_waiting_gives_relay_more),
        cmocka_unit_test(small_burst_does_not_report_relay_more),
        cmocka_unit_test(reset_by_the_target_gives_relay_error_with_econnreset),
        cmocka_unit_test(writing_to_a_closed_target_gives_relay_error_with_epipe_not_sigpipe),
        cmocka_unit_test(release_returns_a_held_buffer),
        cmocka_unit_test(bucket_limits_a_direction_and_refills_with_time),
        cmocka_unit_test(throttled_direction_holds_no_buffer_while_waiting_for_tokens),
        cmocka_unit_test(throttled_direction_still_passes_eof_when_drained),
        cmocka_unit_test(bucket_shared_by_two_tunnels_limits_their_sum),
        cmocka_unit_test(relay_on_a_loop_moves_megabytes_both_ways_then_finishes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
