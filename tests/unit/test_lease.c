/* Unit tests for src/lease.c: a count under a limit shared by holders that
 * each keep a lease, so most takes and gives touch no shared line. */
#include "unit_support.h"

#include <pthread.h>

#include "lease.h"

TEST(batch_is_exact_for_small_limits_and_bounded_for_large_ones)
{
    assert_int_equal(lease_batch(255, 1), 0);
    assert_int_equal(lease_batch(1000, 4), 0);
    assert_int_equal(lease_batch(2560, 2), 5);
    assert_int_equal(lease_batch(1u << 30, 2), LEASE_MAX_BATCH);
    assert_int_equal(lease_batch(512, 0), 2); /* no holder known: one */
}

TEST(batch_0_is_the_exact_shared_count)
{
    struct lease_pool p = {0};
    struct lease a = {0}, b = {0};
    assert_true(lease_take(&p, &a, 1, 2, 0));
    assert_true(lease_take(&p, &b, 1, 2, 0));
    assert_false(lease_take(&p, &a, 1, 2, 0));
    assert_int_equal(lease_leased(&p), 2);
    lease_give(&p, &b, 1, 0);
    assert_int_equal(lease_leased(&p), 1); /* kept nothing: the other may take it */
    assert_true(lease_take(&p, &a, 1, 2, 0));
    lease_give(&p, &a, 2, 0);
    assert_int_equal(lease_leased(&p), 0);
}

TEST(a_take_leases_a_batch_and_later_takes_come_from_it)
{
    struct lease_pool p = {0};
    struct lease a = {0};
    assert_true(lease_take(&p, &a, 1, 1000, 8));
    assert_int_equal(lease_leased(&p), 9);
    for (int i = 0; i < 8; i++)
        assert_true(lease_take(&p, &a, 1, 1000, 8));
    assert_int_equal(lease_leased(&p), 9); /* untouched */
    assert_int_equal(a.have, 0);
    lease_give(&p, &a, 9, 8);
    assert_int_equal(a.have, 9); /* up to two batches are kept */
    assert_int_equal(lease_leased(&p), 9);
    lease_give(&p, &a, 0, 4);
    assert_int_equal(a.have, 4); /* more than two: down to one, the rest went back */
    assert_int_equal(lease_leased(&p), 4);
    lease_return(&p, &a);
    assert_int_equal(lease_leased(&p), 0);
}

TEST(near_the_limit_a_take_is_exact_and_a_refused_one_takes_nothing)
{
    struct lease_pool p = {0};
    struct lease a = {0}, b = {0};
    assert_true(lease_take(&p, &a, 6, 10, 4)); /* 6 + 4 fit: a keeps 4 */
    assert_int_equal(lease_leased(&p), 10);
    assert_false(lease_take(&p, &b, 1, 10, 4)); /* what a keeps is not b's */
    assert_int_equal(lease_leased(&p), 10);
    lease_return(&p, &a);
    assert_true(lease_take(&p, &b, 4, 10, 4)); /* 6 + 4 + 4 > 10: exactly 4 */
    assert_int_equal(b.have, 0);
    assert_false(lease_take(&p, &b, 1, 10, 4));
    lease_give(&p, &b, 4, 0);
    lease_give(&p, &a, 6, 0);
    assert_int_equal(lease_leased(&p), 0);
}

TEST(a_lowered_limit_takes_back_what_a_holder_keeps)
{
    struct lease_pool p = {0};
    struct lease a = {0};
    assert_true(lease_take(&p, &a, 1, 100000, 64));
    assert_int_equal(a.have, 64);
    /* A reload brings the limit down to 1: the 64 kept go back first. */
    assert_false(lease_take(&p, &a, 1, 1, 0));
    assert_int_equal(a.have, 0);
    assert_int_equal(lease_leased(&p), 1);
    lease_give(&p, &a, 1, 0);
    assert_int_equal(lease_leased(&p), 0);
}

#define THREADS 4
#define ROUNDS 20000
#define LIMIT 300 /* two threads holding 200 each would pass it */
#define BATCH 2

struct racer {
    struct lease_pool *p;
    atomic_int *in_use, *max_in_use;
    pthread_barrier_t *start;
};

/* Holds up to 200 slots at a time, taking and giving in a pattern that
 * keeps the pool near the limit. */
static void *racer_main(void *arg)
{
    struct racer *r = arg;
    struct lease l = {0};
    int held = 0;
    pthread_barrier_wait(r->start);
    for (int i = 0; i < ROUNDS; i++) {
        if ((i / 200) % 2 == 0 && lease_take(r->p, &l, 1, LIMIT, BATCH)) {
            int now = atomic_fetch_add(r->in_use, 1) + 1;
            int max = atomic_load(r->max_in_use);
            while (now > max && !atomic_compare_exchange_weak(r->max_in_use, &max, now))
                ;
            held++;
        } else if ((i / 200) % 2 == 1 && held > 0) {
            atomic_fetch_sub(r->in_use, 1);
            lease_give(r->p, &l, 1, BATCH);
            held--;
        }
    }
    atomic_fetch_sub(r->in_use, held);
    lease_give(r->p, &l, (uint64_t)held, BATCH);
    lease_return(r->p, &l);
    return NULL;
}

TEST(parallel_holders_never_have_more_than_the_limit_in_use_and_end_at_zero)
{
    struct lease_pool p = {0};
    atomic_int in_use = 0, max_in_use = 0;
    pthread_barrier_t start;
    pthread_t th[THREADS];
    struct racer r = {.p = &p, .in_use = &in_use, .max_in_use = &max_in_use, .start = &start};
    assert_int_equal(pthread_barrier_init(&start, NULL, THREADS), 0);
    for (int t = 0; t < THREADS; t++)
        assert_int_equal(pthread_create(&th[t], NULL, racer_main, &r), 0);
    for (int t = 0; t < THREADS; t++)
        assert_int_equal(pthread_join(th[t], NULL), 0);
    pthread_barrier_destroy(&start);
    assert_true(atomic_load(&max_in_use) <= LIMIT);
    assert_int_equal(lease_leased(&p), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(batch_is_exact_for_small_limits_and_bounded_for_large_ones),
        cmocka_unit_test(batch_0_is_the_exact_shared_count),
        cmocka_unit_test(a_take_leases_a_batch_and_later_takes_come_from_it),
        cmocka_unit_test(near_the_limit_a_take_is_exact_and_a_refused_one_takes_nothing),
        cmocka_unit_test(a_lowered_limit_takes_back_what_a_holder_keeps),
        cmocka_unit_test(parallel_holders_never_have_more_than_the_limit_in_use_and_end_at_zero),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
