/* Unit tests for src/bufpool.c: per-worker relay buffers.
 *
 * Run under ASan or valgrind these also prove that every buffer is either
 * kept on the free list or freed (no leak) and that a whole BUFPOOL_SIZE
 * buffer is usable (no overflow). */
#include "unit_support.h"

#include "bufpool.h"

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
    assert_int_equal(p.nfree, 0);
    bufpool_put(&p, b);
    assert_int_equal(p.in_use, 0);
    assert_int_equal(p.nfree, 1);
    bufpool_destroy(&p);
    assert_int_equal(p.nfree, 0);
    assert_null(p.free_list);
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
    assert_int_equal(p.nfree, 2);
    /* Both come back (in either order) before anything new is allocated. */
    uint8_t *x = bufpool_get(&p), *y = bufpool_get(&p);
    assert_true((x == a && y == b) || (x == b && y == a));
    assert_int_equal(p.nfree, 0);
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
    assert_int_equal(p.nfree, 0);
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
        assert_int_equal(p.nfree, (size_t)(i + 1 < MAX_FREE ? i + 1 : MAX_FREE));
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
    assert_int_equal(p.nfree, 0);
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
    assert_int_equal(p.nfree, 0);
    assert_null(p.free_list);
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
    assert_int_equal(p.nfree, 0);
    bufpool_put(&p, a);
    bufpool_put(&p, NULL);
    assert_int_equal(p.in_use, 0);
    assert_int_equal(p.nfree, 1);
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
    assert_int_equal(p.nfree, 1);
    bufpool_put(&p, b[0]);
    bufpool_put(&p, b[1]);
    bufpool_put(&p, b[3]);
    bufpool_put(&p, b[4]);
    assert_int_equal(p.in_use, 0);
    assert_int_equal(p.nfree, 5);
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
        assert_int_equal(p.nfree, 2);
        bufpool_destroy(&p);
        assert_int_equal(p.nfree, 0);
        assert_null(p.free_list);
    }
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
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
