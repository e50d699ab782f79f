/* Unit tests for src/auth_cache.c: the cache of successful verifications
 * and the table of verifications in flight. */
#include "auth_support.h"

#include "auth_cache.h"

#define LONG_TTL 600000 /* never expires during a test */

TEST(cache_put_then_hit)
{
    struct auth_cache *c = auth_cache_new(LONG_TTL, NULL, NULL);
    assert_non_null(c);
    assert_false(auth_cache_hit(c, "alice", alg_hash[0], "pw"));
    auth_cache_put(c, "alice", alg_hash[0], "pw");
    assert_true(auth_cache_hit(c, "alice", alg_hash[0], "pw"));
    assert_true(auth_cache_hit(c, "alice", alg_hash[0], "pw")); /* not consumed */
    auth_cache_free(c);
}

TEST(cache_wrong_password_or_other_user_misses)
{
    struct auth_cache *c = auth_cache_new(LONG_TTL, NULL, NULL);
    assert_non_null(c);
    auth_cache_put(c, "alice", alg_hash[0], "pw");
    assert_false(auth_cache_hit(c, "alice", alg_hash[0], "pW"));
    assert_false(auth_cache_hit(c, "alice", alg_hash[0], "pw "));
    assert_false(auth_cache_hit(c, "alice", alg_hash[0], "p"));
    assert_false(auth_cache_hit(c, "alice", alg_hash[0], ""));
    assert_false(auth_cache_hit(c, "bob", alg_hash[0], "pw"));
    /* The NUL separators keep "user|pass" boundaries apart. */
    auth_cache_put(c, "ab", alg_hash[0], "c");
    assert_false(auth_cache_hit(c, "a", alg_hash[0], "bc"));
    assert_true(auth_cache_hit(c, "ab", alg_hash[0], "c"));
    auth_cache_free(c);
}

TEST(cache_changed_hash_misses)
{
    struct auth_cache *c = auth_cache_new(LONG_TTL, NULL, NULL);
    assert_non_null(c);
    auth_cache_put(c, "sha", alg_hash[ALG_SHA512], alg_pass[ALG_SHA512]);
    assert_true(auth_cache_hit(c, "sha", alg_hash[ALG_SHA512], alg_pass[ALG_SHA512]));
    /* Same user and password, new hash (the users file was reloaded). */
    assert_false(auth_cache_hit(c, "sha", alt_hash, alg_pass[ALG_SHA512]));
    auth_cache_free(c);
}

TEST(cache_with_ttl_0_never_hits)
{
    struct auth_cache *c = auth_cache_new(0, NULL, NULL);
    assert_non_null(c);
    auth_cache_put(c, "alice", alg_hash[0], "pw");
    assert_false(auth_cache_hit(c, "alice", alg_hash[0], "pw"));
    auth_cache_free(c);
    /* And no cache at all is a miss, and put is a no-op. */
    auth_cache_put(NULL, "alice", alg_hash[0], "pw");
    assert_false(auth_cache_hit(NULL, "alice", alg_hash[0], "pw"));
    auth_cache_free(NULL);
}

TEST(cache_entry_expires_after_ttl)
{
    struct auth_cache *c = auth_cache_new(20, NULL, NULL);
    assert_non_null(c);
    uint64_t start = now_ms();
    auth_cache_put(c, "alice", alg_hash[0], "pw");
    /* Poll for the miss; a generous deadline, no claim about how soon. */
    uint64_t deadline = start + WAIT_MS;
    while (auth_cache_hit(c, "alice", alg_hash[0], "pw") && now_ms() < deadline)
        sleep_ms(2);
    assert_false(auth_cache_hit(c, "alice", alg_hash[0], "pw"));
    /* Never before the ttl: the coarse clock may lag the fine one by up to
     * its resolution, never lead it. */
    struct timespec res;
    assert_int_equal(clock_getres(CLOCK_MONOTONIC_COARSE, &res), 0);
    uint64_t res_ms = (uint64_t)res.tv_sec * 1000 + ((uint64_t)res.tv_nsec + 999999) / 1000000;
    assert_true(now_ms() - start + res_ms >= 20);
    auth_cache_free(c);
}

TEST(cache_distinct_entries_coexist_and_each_cache_has_its_own_key)
{
    struct auth_cache *c = auth_cache_new(LONG_TTL, NULL, NULL),
                      *d = auth_cache_new(LONG_TTL, NULL, NULL);
    char user[32];
    assert_non_null(c);
    assert_non_null(d);
    for (int i = 0; i < 50; i++) {
        snprintf(user, sizeof user, "user%d", i);
        auth_cache_put(c, user, alg_hash[0], "pw");
    }
    /* Direct-mapped slots may evict a few; most must still be there. */
    int hits = 0;
    for (int i = 0; i < 50; i++) {
        snprintf(user, sizeof user, "user%d", i);
        hits += auth_cache_hit(c, user, alg_hash[0], "pw");
        assert_false(auth_cache_hit(d, user, alg_hash[0], "pw")); /* d saw nothing */
    }
    assert_true(hits >= 40);
    /* The most recent put always hits. */
    assert_true(auth_cache_hit(c, "user49", alg_hash[0], "pw"));
    auth_cache_free(c);
    auth_cache_free(d);
}

TEST(cache_handles_rfc1929_maximum_lengths)
{
    /* 255-byte user and password (RFC 1929) with a 511-byte stored hash
     * (what an auth job keeps): must hit, and differ in the last byte. */
    char user[256], pass[256], pass2[256], hash[512];
    memset(user, 'u', 255);
    user[255] = '\0';
    memset(pass, 'p', 255);
    pass[255] = '\0';
    memcpy(pass2, pass, sizeof pass);
    pass2[254] = 'q';
    memset(hash, 'h', 511);
    hash[0] = '$';
    hash[511] = '\0';
    struct auth_cache *c = auth_cache_new(LONG_TTL, NULL, NULL);
    assert_non_null(c);
    auth_cache_put(c, user, hash, pass);
    assert_true(auth_cache_hit(c, user, hash, pass));
    assert_false(auth_cache_hit(c, user, hash, pass2));
    auth_cache_free(c);
}

/* auth_cache.h puts no bound on the strings the cache takes. An earlier
 * cache_digest copied up to 511 bytes of each part into a 1024-byte stack
 * buffer: longer inputs overflowed it (ASan: stack-buffer-overflow) and
 * parts were cut at 511 bytes, so two passwords sharing 511 bytes collided.
 * Last in the list: if that comes back, ASan's report aborts the binary. */
TEST(cache_takes_inputs_longer_than_rfc1929_without_overflow_or_collision)
{
    enum { L = 600 };
    char *user = malloc(L + 1), *pass = malloc(L + 1), *pass2 = malloc(L + 1);
    assert_non_null(user);
    assert_non_null(pass);
    assert_non_null(pass2);
    memset(user, 'u', L);
    user[L] = '\0';
    memset(pass, 'p', L);
    pass[L] = '\0';
    memcpy(pass2, pass, L + 1);
    pass2[L - 1] = 'q'; /* differs only past byte 511 */
    struct auth_cache *c = auth_cache_new(LONG_TTL, NULL, NULL);
    assert_non_null(c);
    auth_cache_put(c, user, alg_hash[0], pass);
    assert_true(auth_cache_hit(c, user, alg_hash[0], pass));
    assert_false(auth_cache_hit(c, user, alg_hash[0], pass2));
    auth_cache_free(c);
    free(user);
    free(pass);
    free(pass2);
}

TEST(inflight_table_finds_by_digest_and_forgets_on_delete)
{
    struct auth_cache *c = auth_cache_new(LONG_TTL, NULL, NULL);
    struct auth_cache_link a = {0}, b = {0}, x = {0}, y = {0};
    uint64_t da[2], db[2];
    assert_non_null(c);
    auth_cache_digest(c, "alice", alg_hash[0], "pw", da);
    auth_cache_digest(c, "alice", alg_hash[0], "pW", db);
    assert_false(da[0] == db[0] && da[1] == db[1]);
    assert_null(auth_cache_inflight_find(c, da));
    auth_cache_inflight_add(c, &a, da);
    auth_cache_inflight_add(c, &b, db);
    assert_ptr_equal(auth_cache_inflight_find(c, da), &a);
    assert_ptr_equal(auth_cache_inflight_find(c, db), &b);
    auth_cache_inflight_del(&a);
    assert_null(auth_cache_inflight_find(c, da));
    assert_ptr_equal(auth_cache_inflight_find(c, db), &b);
    auth_cache_inflight_del(&a); /* twice is harmless */
    auth_cache_inflight_del(&b);
    assert_null(auth_cache_inflight_find(c, db));
    /* Two digests in one bucket (the same second word): each is found, and
     * deleting the head of the chain keeps the other. */
    const uint64_t dx[2] = {1, 7}, dy[2] = {2, 7};
    auth_cache_inflight_add(c, &x, dx);
    auth_cache_inflight_add(c, &y, dy);
    assert_ptr_equal(auth_cache_inflight_find(c, dx), &x);
    assert_ptr_equal(auth_cache_inflight_find(c, dy), &y);
    auth_cache_inflight_del(&y);
    assert_ptr_equal(auth_cache_inflight_find(c, dx), &x);
    assert_null(auth_cache_inflight_find(c, dy));
    auth_cache_inflight_del(&x);
    assert_null(auth_cache_inflight_find(c, dx));
    auth_cache_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(cache_put_then_hit),
        cmocka_unit_test(cache_wrong_password_or_other_user_misses),
        cmocka_unit_test(cache_changed_hash_misses),
        cmocka_unit_test(cache_with_ttl_0_never_hits),
        cmocka_unit_test(cache_entry_expires_after_ttl),
        cmocka_unit_test(cache_distinct_entries_coexist_and_each_cache_has_its_own_key),
        cmocka_unit_test(cache_handles_rfc1929_maximum_lengths),
        cmocka_unit_test(inflight_table_finds_by_digest_and_forgets_on_delete),
        cmocka_unit_test(cache_takes_inputs_longer_than_rfc1929_without_overflow_or_collision),
    };
    return cmocka_run_group_tests(tests, make_alg_hashes, NULL);
}
