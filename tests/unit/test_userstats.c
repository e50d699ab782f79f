/* Unit tests for the per-user counters (src/userstats.c): off unless a cap
 * is set, one series per user up to the cap and the rest under the
 * overflow label, and label values escaped as the Prometheus text format
 * wants. */
#include "unit_support.h"

#include "userstats.h"

/* The rendered families as a string (caller frees). */
static char *render(void)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_non_null(f);
    userstats_render(f);
    assert_int_equal(fclose(f), 0);
    return buf;
}

static int setup(void **state)
{
    (void)state;
    userstats_reset();
    userstats_set_max(0);
    return 0;
}

TEST(off_by_default_nothing_is_kept_or_rendered)
{
    assert_null(userstats_begin("alice"));
    userstats_end(NULL, 10, 20);
    char *out = render();
    assert_string_equal(out, "");
    free(out);
}

TEST(sessions_and_bytes_are_counted_per_user)
{
    userstats_set_max(10);
    struct userstats *a1 = userstats_begin("alice"), *a2 = userstats_begin("alice");
    struct userstats *b = userstats_begin("bob");
    assert_ptr_equal(a1, a2);
    assert_ptr_not_equal(a1, b);
    assert_null(userstats_begin(NULL));
    userstats_end(a1, 100, 2000);
    char *out = render();
    assert_non_null(strstr(out, "# TYPE socks5d_user_sessions_total counter\n"));
    assert_non_null(strstr(out, "socks5d_user_sessions_total{user=\"alice\"} 2\n"));
    assert_non_null(strstr(out, "socks5d_user_sessions_active{user=\"alice\"} 1\n"));
    assert_non_null(strstr(out, "socks5d_user_sessions_total{user=\"bob\"} 1\n"));
    assert_non_null(strstr(out, "socks5d_user_bytes_total{user=\"alice\",direction=\"up\"} 100\n"));
    assert_non_null(
        strstr(out, "socks5d_user_bytes_total{user=\"alice\",direction=\"down\"} 2000\n"));
    assert_non_null(strstr(out, "socks5d_user_bytes_total{user=\"bob\",direction=\"up\"} 0\n"));
    assert_null(strstr(out, USERSTATS_OTHER));
    free(out);
}

TEST(users_beyond_the_cap_share_the_overflow_series)
{
    char name[16];
    userstats_set_max(3);
    for (int i = 0; i < 50; i++) {
        snprintf(name, sizeof name, "user%d", i);
        userstats_end(userstats_begin(name), 1, 1);
    }
    char *out = render();
    size_t series = 0;
    for (const char *p = out; (p = strstr(p, "socks5d_user_sessions_total{")); p++)
        series++;
    assert_int_equal(series, 4);
    assert_non_null(strstr(out, "socks5d_user_sessions_total{user=\"_other\"} 47\n"));
    assert_non_null(strstr(out, "socks5d_user_sessions_total{user=\"user0\"} 1\n"));
    assert_null(strstr(out, "user=\"user3\""));
    free(out);
}

TEST(label_values_are_escaped)
{
    userstats_set_max(4);
    userstats_begin("a\"b\\c\nd");
    char *out = render();
    assert_non_null(strstr(out, "socks5d_user_sessions_total{user=\"a\\\"b\\\\c\\nd\"} 1\n"));
    free(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(off_by_default_nothing_is_kept_or_rendered, setup),
        cmocka_unit_test_setup(sessions_and_bytes_are_counted_per_user, setup),
        cmocka_unit_test_setup(users_beyond_the_cap_share_the_overflow_series, setup),
        cmocka_unit_test_setup(label_values_are_escaped, setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
