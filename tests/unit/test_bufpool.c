/* Unit tests for src/bufpool.c: per-worker relay buffers and splice pipes.
 *
 * Run under ASan or valgrind these also prove that every buffer is either
 * kept on the free list or freed (no leak) and that a whole BUFPOOL_SIZE
 * buffer is usable (no overflow). */
#include "unit_support.h"

#include "bufpool.h"

/* The pool's bookkeeping, in one place (the struct's layout is not the
 * subject here; its counts are). */
static size_t nfree(const struct bufpool *p)
{
    return p->big.n;
}

static void *first_free(const struct bufpool *p)
{
    return p->big.head;
}

TEST(get_returns_a_writable_buffer_of_bufpool_size)
{
    struct bufpool p;
    bufpool_init(&p, 4);
    uint8_t *b = bufpool_get(&p);
    assert_non_null(b);
    memset(b, 0x5A, BUFPOOL_SIZE);
    assert_int_equal(b[0], 0x5A);
    assert_int_equal(b[BUFPOOL_SIZE - 1], 0x5A);
    assert_int_equal(p.in_use, 1);
    assert_int_equal(nfree(&p), 0);
    bufpool_put(&p, b);
    assert_int_equal(p.in_use, 0);
    assert_int_equal(nfree(&p), 1);
    bufpool_destroy(&p);
    assert_int_equal(nfree(&p), 0);
    assert_null(first_free(&p));
}

TEST(put_then_get_reuses_the_same_buffer)
{
    struct bufpool p;
    bufpool_init(&p, 4);
    uint8_t *a = bufpool_get(&p), *b = bufpool_get(&p);
    assert_non_null(a);
    assert_non_null(b);
    assert_ptr_not_equal(a, b);
    bufpool_put(&p, a);
    bufpool_put(&p, b);
    assert_int_equal(nfree(&p), 2);
    /* Both come back (in either order) before anything new is allocated. */
    uint8_t *x = bufpool_get(&p), *y = bufpool_get(&p);
    assert_true((x == a && y == b) || (x == b && y == a));
    assert_int_equal(nfree(&p), 0);
    assert_int_equal(p.in_use, 2);
    bufpool_put(&p, a);
    bufpool_put(&p, b);
    bufpool_destroy(&p);
}

TEST(reused_buffer_is_whole_again)
{
    /* The free list links through the buffer's first bytes; a buffer
     * handed out again must be fully the caller's (writing all of it must
     * not break the pool). */
    struct bufpool p;
    bufpool_init(&p, 2);
    uint8_t *a = bufpool_get(&p);
    assert_non_null(a);
    bufpool_put(&p, a);
    uint8_t *b = bufpool_get(&p);
    assert_ptr_equal(a, b);
    memset(b, 0xFF, BUFPOOL_SIZE);
    bufpool_put(&p, b);
    assert_ptr_equal(bufpool_get(&p), b);
    assert_int_equal(nfree(&p), 0);
    bufpool_put(&p, b);
    bufpool_destroy(&p);
}

TEST(free_list_is_bounded_by_max_free)
{
    enum { N = 10, MAX_FREE = 3 };
    struct bufpool p;
    uint8_t *b[N];
    bufpool_init(&p, MAX_FREE);
    for (int i = 0; i < N; i++) {
        b[i] = bufpool_get(&p);
        assert_non_null(b[i]);
        assert_int_equal(p.in_use, (size_t)i + 1);
    }
    for (int i = 0; i < N; i++) {
        bufpool_put(&p, b[i]);
        assert_int_equal(p.in_use, (size_t)(N - i - 1));
        assert_int_equal(nfree(&p), (size_t)(i + 1 < MAX_FREE ? i + 1 : MAX_FREE));
    }
    /* The kept ones are the first MAX_FREE returned, and getting MAX_FREE
     * buffers hands exactly those back; the rest went back to malloc (a
     * leak checker sees them freed, not lost). */
    uint8_t *g[MAX_FREE];
    for (int i = 0; i < MAX_FREE; i++) {
        int found = 0;
        g[i] = bufpool_get(&p);
        for (int j = 0; j < MAX_FREE; j++)
            found += g[i] == b[j];
        for (int j = 0; j < i; j++)
            assert_ptr_not_equal(g[i], g[j]);
        assert_int_equal(found, 1);
    }
    assert_int_equal(nfree(&p), 0);
    for (int i = 0; i < MAX_FREE; i++)
        bufpool_put(&p, g[i]);
    bufpool_destroy(&p);
}

TEST(max_free_zero_keeps_nothing)
{
    struct bufpool p;
    bufpool_init(&p, 0);
    uint8_t *a = bufpool_get(&p);
    assert_non_null(a);
    bufpool_put(&p, a);
    assert_int_equal(nfree(&p), 0);
    assert_null(first_free(&p));
    assert_int_equal(p.in_use, 0);
    bufpool_destroy(&p);
}

TEST(put_null_is_a_no_op)
{
    struct bufpool p;
    bufpool_init(&p, 2);
    uint8_t *a = bufpool_get(&p);
    bufpool_put(&p, NULL);
    assert_int_equal(p.in_use, 1);
    assert_int_equal(nfree(&p), 0);
    bufpool_put(&p, a);
    bufpool_put(&p, NULL);
    assert_int_equal(p.in_use, 0);
    assert_int_equal(nfree(&p), 1);
    bufpool_destroy(&p);
}

TEST(in_use_counts_buffers_handed_out)
{
    struct bufpool p;
    uint8_t *b[5];
    bufpool_init(&p, 8);
    for (int i = 0; i < 5; i++)
        b[i] = bufpool_get(&p);
    assert_int_equal(p.in_use, 5);
    bufpool_put(&p, b[2]);
    bufpool_put(&p, b[0]);
    assert_int_equal(p.in_use, 3);
    b[0] = bufpool_get(&p); /* reused: still counted */
    assert_int_equal(p.in_use, 4);
    assert_int_equal(nfree(&p), 1);
    bufpool_put(&p, b[0]);
    bufpool_put(&p, b[1]);
    bufpool_put(&p, b[3]);
    bufpool_put(&p, b[4]);
    assert_int_equal(p.in_use, 0);
    assert_int_equal(nfree(&p), 5);
    bufpool_destroy(&p);
}

TEST(destroy_frees_the_free_list_and_pool_is_reusable)
{
    struct bufpool p;
    bufpool_init(&p, 8);
    for (int round = 0; round < 2; round++) {
        uint8_t *a = bufpool_get(&p), *b = bufpool_get(&p);
        bufpool_put(&p, a);
        bufpool_put(&p, b);
        assert_int_equal(nfree(&p), 2);
        bufpool_destroy(&p);
        assert_int_equal(nfree(&p), 0);
        assert_null(first_free(&p));
    }
}

/* ---------------------------------------------------------------------------
 * small (handshake) buffers */

TEST(small_buffers_are_separate_reused_and_bounded)
{
    struct bufpool p;
    enum { MAX_FREE = 2, N = 4 * MAX_FREE + 3 };
    uint8_t *s[N];
    bufpool_init(&p, MAX_FREE);
    s[0] = bufpool_get_small(&p);
    assert_non_null(s[0]);
    memset(s[0], 0x11, BUFPOOL_SMALL);
    assert_int_equal(p.in_use, 0); /* in_use counts big buffers only */
    assert_int_equal(nfree(&p), 0);
    bufpool_put_small(&p, s[0]);
    assert_int_equal(nfree(&p), 0); /* not on the big list */
    uint8_t *again = bufpool_get_small(&p);
    assert_ptr_equal(again, s[0]);
    bufpool_put_small(&p, again);
    bufpool_put_small(&p, NULL);

    /* Bounded like the big list (its own bound): a burst is given back. */
    for (int i = 0; i < N; i++) {
        s[i] = bufpool_get_small(&p);
        assert_non_null(s[i]);
        memset(s[i], i, BUFPOOL_SMALL);
    }
    for (int i = 0; i < N; i++)
        bufpool_put_small(&p, s[i]);
    assert_true(p.small.n < (size_t)N);
    assert_true(p.small.n >= MAX_FREE);
    /* A big buffer after small ones is whole (ASan: no overflow into a
     * recycled small one). */
    uint8_t *big = bufpool_get(&p);
    assert_non_null(big);
    memset(big, 0, BUFPOOL_SIZE);
    bufpool_put(&p, big);
    bufpool_destroy(&p); /* frees both lists: a leak checker sees none */
}

TEST(small_buffer_is_wiped_before_reuse)
{
    /* A handshake buffer held credentials; the next session that gets it
     * (or a read past what it received) must find none of them. */
    static const char secret[] = "\x01\x05alice\x06s3cret";
    struct bufpool p;
    bufpool_init(&p, 2);
    uint8_t *b = bufpool_get_small(&p);
    assert_non_null(b);
    memset(b, 0xA5, BUFPOOL_SMALL);
    memcpy(b + 3, secret, sizeof secret); /* after a greeting, cut short */
    bufpool_put_small(&p, b);
    uint8_t *again = bufpool_get_small(&p);
    assert_ptr_equal(again, b);
    for (size_t i = 0; i < BUFPOOL_SMALL; i++)
        if (again[i] != 0)
            fail_msg("byte %zu of a reused handshake buffer is 0x%02x, not 0", i, again[i]);
    bufpool_put_small(&p, again);
    bufpool_destroy(&p);
}

/* ---------------------------------------------------------------------------
 * pipes for splice */

static int is_nonblocking(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    assert_true(fl >= 0);
    return (fl & O_NONBLOCK) != 0;
}

TEST(get_pipe_returns_an_empty_non_blocking_close_on_exec_pipe)
{
    struct bufpool p;
    int base = fd_count();
    bufpool_init(&p, 2);
    struct relay_pipe *pp = bufpool_get_pipe(&p);
    assert_non_null(pp);
    assert_int_equal(fd_count(), base + 2);
    assert_true(is_nonblocking(pp->r));
    assert_true(is_nonblocking(pp->w));
    assert_true(fcntl(pp->r, F_GETFD) & FD_CLOEXEC);
    assert_true(fcntl(pp->w, F_GETFD) & FD_CLOEXEC);
    char c;
    assert_int_equal(read(pp->r, &c, 1), -1);
    assert_int_equal(errno, EAGAIN);
    /* w -> r */
    assert_int_equal(write(pp->w, "z", 1), 1);
    assert_int_equal(read(pp->r, &c, 1), 1);
    assert_int_equal(c, 'z');
    /* Buffers are not involved. */
    assert_int_equal(p.in_use, 0);
    bufpool_put_pipe(&p, pp, 0);
    bufpool_destroy(&p);
    assert_int_equal(fd_count(), base);
}

/* The relay reads at most pipe->size per splice and takes a shorter read
 * for a drained socket: the size must be what the pipe really holds. */
TEST(pipe_size_is_what_the_pipe_holds)
{
    static char chunk[4096];
    struct bufpool p;
    bufpool_init(&p, 2);
    struct relay_pipe *pp = bufpool_get_pipe(&p);
    assert_non_null(pp);
    assert_int_equal(pp->size, fcntl(pp->w, F_GETPIPE_SZ));
    size_t held = 0;
    for (int i = 0; i < 1024; i++) { /* at most 4 MiB: the loop is bounded */
        ssize_t n = write(pp->w, chunk, sizeof chunk);
        if (n < 0) {
            assert_int_equal(errno, EAGAIN);
            break;
        }
        held += (size_t)n;
    }
    assert_int_equal(held, pp->size);
    bufpool_put_pipe(&p, pp, 1);
    bufpool_destroy(&p);
}

TEST(clean_pipe_is_reused_dirty_pipe_is_closed)
{
    struct bufpool p;
    int base = fd_count();
    bufpool_init(&p, 2);
    struct relay_pipe *a = bufpool_get_pipe(&p);
    assert_non_null(a);
    int ar = a->r, aw = a->w;
    bufpool_put_pipe(&p, a, 0);
    assert_int_equal(p.npipes, 1);
    assert_int_equal(fd_count(), base + 2); /* kept open for reuse */
    struct relay_pipe *b = bufpool_get_pipe(&p);
    assert_ptr_equal(b, a);
    assert_int_equal(b->r, ar);
    assert_int_equal(b->w, aw);
    assert_int_equal(p.npipes, 0);

    /* Bytes left in it: closing is the only way to empty it. */
    assert_int_equal(write(b->w, "left", 4), 4);
    bufpool_put_pipe(&p, b, 1);
    assert_int_equal(p.npipes, 0);
    assert_int_equal(fd_count(), base);
    struct relay_pipe *c = bufpool_get_pipe(&p); /* a fresh one, empty */
    char ch;
    assert_int_equal(read(c->r, &ch, 1), -1);
    assert_int_equal(errno, EAGAIN);
    bufpool_put_pipe(&p, c, 0);
    bufpool_put_pipe(&p, NULL, 0); /* NULL accepted */
    bufpool_destroy(&p);
    assert_int_equal(fd_count(), base);
}

TEST(idle_pipes_are_bounded_and_destroy_closes_them)
{
    enum { N = 6, MAX_FREE = 2 };
    struct bufpool p;
    struct relay_pipe *pp[N];
    int base = fd_count();
    bufpool_init(&p, MAX_FREE);
    for (int i = 0; i < N; i++) {
        pp[i] = bufpool_get_pipe(&p);
        assert_non_null(pp[i]);
    }
    assert_int_equal(fd_count(), base + 2 * N);
    for (int i = 0; i < N; i++)
        bufpool_put_pipe(&p, pp[i], 0);
    assert_int_equal(p.npipes, MAX_FREE);
    assert_int_equal(fd_count(), base + 2 * MAX_FREE);
    bufpool_destroy(&p);
    assert_int_equal(p.npipes, 0);
    assert_int_equal(fd_count(), base);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(get_returns_a_writable_buffer_of_bufpool_size),
        cmocka_unit_test(put_then_get_reuses_the_same_buffer),
        cmocka_unit_test(reused_buffer_is_whole_again),
        cmocka_unit_test(free_list_is_bounded_by_max_free),
        cmocka_unit_test(max_free_zero_keeps_nothing),
        cmocka_unit_test(put_null_is_a_no_op),
        cmocka_unit_test(in_use_counts_buffers_handed_out),
        cmocka_unit_test(destroy_frees_the_free_list_and_pool_is_reusable),
        cmocka_unit_test(small_buffers_are_separate_reused_and_bounded),
        cmocka_unit_test(small_buffer_is_wiped_before_reuse),
        cmocka_unit_test(get_pipe_returns_an_empty_non_blocking_close_on_exec_pipe),
        cmocka_unit_test(pipe_size_is_what_the_pipe_holds),
        cmocka_unit_test(clean_pipe_is_reused_dirty_pipe_is_closed),
        cmocka_unit_test(idle_pipes_are_bounded_and_destroy_closes_them),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
