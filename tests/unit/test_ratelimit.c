/* Unit tests for src/ratelimit.c: the per-user store of shared buckets.
 *
 * The store is process-wide and keeps its users, so every test uses names
 * of its own. How a bucket limits is tested in test_relay.c. */
#include "unit_support.h"

#include <stdatomic.h>

#include "ratelimit.h"

TEST(one_user_gets_the_same_buckets_every_time)
{
    struct ratelimit_user *a = ratelimit_get("same-alice", 4000, 1000);
    struct ratelimit_user *b = ratelimit_get("same-alice", 4000, 2000);
    assert_non_null(a);
    assert_ptr_equal(a, b);
    assert_ptr_equal(ratelimit_up(a), ratelimit_up(b));
    assert_ptr_equal(ratelimit_down(a), ratelimit_down(b));
    assert_ptr_not_equal(ratelimit_up(a), ratelimit_down(a));
}

TEST(users_are_kept_apart_and_names_are_exact)
{
    struct ratelimit_user *a = ratelimit_get("apart-alice", 4000, 1000);
    struct ratelimit_user *b = ratelimit_get("apart-bob", 4000, 1000);
    struct ratelimit_user *c = ratelimit_get("apart-alic", 4000, 1000);
    assert_non_null(a);
    assert_non_null(b);
    assert_non_null(c);
    assert_ptr_not_equal(a, b);
    assert_ptr_not_equal(a, c);
    assert_ptr_not_equal(ratelimit_up(a), ratelimit_up(b));
}

/* A reload that changes the rate changes it for the user's open tunnels
 * too: they share the buckets with the new ones. */
TEST(a_new_rate_applies_to_the_shared_buckets)
{
    struct ratelimit_user *a = ratelimit_get("rate-carol", 4000, 1000);
    assert_non_null(a);
    assert_int_equal(atomic_load(&ratelimit_up(a)->rate), 4000);
    assert_ptr_equal(ratelimit_get("rate-carol", 8000, 1500), a);
    assert_int_equal(atomic_load(&ratelimit_up(a)->rate), 8000);
    assert_int_equal(atomic_load(&ratelimit_down(a)->rate), 8000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(one_user_gets_the_same_buckets_every_time),
        cmocka_unit_test(users_are_kept_apart_and_names_are_exact),
        cmocka_unit_test(a_new_rate_applies_to_the_shared_buckets),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
