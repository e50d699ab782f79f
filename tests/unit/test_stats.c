/* Unit tests for the latency histogram (stats_observe in src/metrics.c):
 * each value lands in the first bucket whose upper bound it does not exceed
 * (bounds are inclusive, as Prometheus' `le` says), sum and count follow,
 * and values beyond the last bound go to +Inf. */
#include "unit_support.h"

#include "stats.h"

/* The bucket a value was put in: the only one that changed. */
static int bucket_of(uint64_t ms)
{
    struct histogram h;
    memset(&h, 0, sizeof h);
    stats_observe(&h, ms);
    int found = -1;
    for (int i = 0; i < STATS_BUCKETS; i++) {
        uint64_t n = stat_get(&h.bucket[i]);
        assert_true(n <= 1);
        if (n) {
            assert_int_equal(found, -1);
            found = i;
        }
    }
    assert_int_equal(stat_get(&h.count), 1);
    assert_int_equal(stat_get(&h.sum_ms), ms);
    return found;
}

TEST(bucket_bounds_are_increasing_and_start_at_one_ms)
{
    assert_int_equal(stats_bucket_ms[0], 1);
    assert_int_equal(stats_bucket_ms[1], 2);
    for (int i = 1; i < STATS_BUCKETS - 1; i++)
        assert_true(stats_bucket_ms[i] > stats_bucket_ms[i - 1]);
}

TEST(zero_ms_goes_in_the_first_bucket)
{
    assert_int_equal(bucket_of(0), 0);
}

TEST(one_ms_goes_in_le_0_001_and_two_ms_in_le_0_002)
{
    assert_int_equal(bucket_of(1), 0);
    assert_int_equal(bucket_of(2), 1);
    assert_int_equal(bucket_of(3), 2); /* le=0.005 */
}

TEST(every_bound_is_inclusive_and_one_more_goes_to_the_next_bucket)
{
    for (int i = 0; i < STATS_BUCKETS - 1; i++) {
        assert_int_equal(bucket_of(stats_bucket_ms[i]), i);
        assert_int_equal(bucket_of(stats_bucket_ms[i] + 1ull), i + 1);
        if (i > 0)
            assert_int_equal(bucket_of(stats_bucket_ms[i - 1] + 1ull), i);
    }
}

TEST(values_above_the_last_bound_go_to_inf)
{
    uint32_t last = stats_bucket_ms[STATS_BUCKETS - 2];
    assert_int_equal(bucket_of(last), STATS_BUCKETS - 2);
    assert_int_equal(bucket_of(last + 1ull), STATS_BUCKETS - 1);
    assert_int_equal(bucket_of(3600000), STATS_BUCKETS - 1);
    assert_int_equal(bucket_of(UINT32_MAX + 5ull), STATS_BUCKETS - 1);
}

TEST(sum_and_count_accumulate_over_observations)
{
    struct histogram h;
    memset(&h, 0, sizeof h);
    static const uint64_t v[] = {0, 1, 1, 2, 7, 25, 26, 999, 1000, 10000, 10001, 50000};
    uint64_t sum = 0;
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        stats_observe(&h, v[i]);
        sum += v[i];
    }
    assert_int_equal(stat_get(&h.count), sizeof v / sizeof v[0]);
    assert_int_equal(stat_get(&h.sum_ms), sum);
    /* Per-bucket counts (not cumulative): bounds 1 2 5 10 25 50 100 250 1000
     * 2500 10000 +Inf. */
    static const uint64_t want[STATS_BUCKETS] = {3, 1, 0, 1, 1, 1, 0, 0, 2, 0, 1, 2};
    uint64_t total = 0;
    for (int i = 0; i < STATS_BUCKETS; i++) {
        if (stat_get(&h.bucket[i]) != want[i])
            fail_msg("bucket %d: %llu, want %llu", i, (unsigned long long)stat_get(&h.bucket[i]),
                     (unsigned long long)want[i]);
        total += stat_get(&h.bucket[i]);
    }
    assert_int_equal(total, stat_get(&h.count));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(bucket_bounds_are_increasing_and_start_at_one_ms),
        cmocka_unit_test(zero_ms_goes_in_the_first_bucket),
        cmocka_unit_test(one_ms_goes_in_le_0_001_and_two_ms_in_le_0_002),
        cmocka_unit_test(every_bound_is_inclusive_and_one_more_goes_to_the_next_bucket),
        cmocka_unit_test(values_above_the_last_bound_go_to_inf),
        cmocka_unit_test(sum_and_count_accumulate_over_observations),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
