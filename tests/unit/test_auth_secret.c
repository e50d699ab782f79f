/* Unit tests for src/auth_secret.c. */
#include "auth_support.h"

#include "auth_secret.h"

TEST(streq_equal_different_and_different_length)
{
    assert_true(auth_streq("", ""));
    assert_true(auth_streq("secret", "secret"));
    assert_false(auth_streq("secret", "secreT"));
    assert_false(auth_streq("secret", "Secret"));
    assert_false(auth_streq("secret", "secret2"));
    assert_false(auth_streq("secret2", "secret"));
    assert_false(auth_streq("", "a"));
    assert_false(auth_streq("a", ""));
    assert_true(auth_streq(alg_hash[0], alg_hash[0]));
    assert_false(auth_streq(alg_hash[0], alt_hash));
}

TEST(wipe_zeroes_the_bytes)
{
    char buf[32];
    memset(buf, 'x', sizeof buf);
    auth_wipe(buf + 4, 20);
    for (size_t i = 0; i < sizeof buf; i++)
        assert_int_equal(buf[i], (i >= 4 && i < 24) ? 0 : 'x');
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(streq_equal_different_and_different_length),
        cmocka_unit_test(wipe_zeroes_the_bytes),
    };
    return cmocka_run_group_tests(tests, make_alg_hashes, NULL);
}
