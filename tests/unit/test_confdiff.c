/* Unit tests for src/confdiff.c: what a reload's log line says changed and
 * what it says waits for a restart. Configurations come from config_load
 * with "-c /dev/null" and options, so nothing on disk is read or bound. */
#include "unit_support.h"

#include <stdio.h>

#include "confdiff.h"
#include "config.h"

/* config_load of {"socks5d", "-c", "/dev/null", args..., NULL}. */
static struct config *load_args(const char *const *args)
{
    char *argv[64] = {(char *)"socks5d", (char *)"-c", (char *)"/dev/null"};
    int argc = 3, code, check;
    for (size_t i = 0; args[i]; i++) {
        assert_true(argc < 63);
        argv[argc++] = (char *)args[i];
    }
    struct config *c = config_load(argc, argv, stderr, &code, &check);
    assert_non_null(c);
    return c;
}
#define LOAD(...) load_args((const char *const[]){__VA_ARGS__, NULL})

TEST(same_configuration_says_no_change_and_needs_no_restart)
{
    char out[512];
    struct config *a = LOAD("-l", "127.0.0.1:1080", "--rule", "allow");
    struct config *b = LOAD("-l", "127.0.0.1:1080", "--rule", "allow");
    confdiff_changes(a, b, 1, out, sizeof out);
    assert_string_equal(out, "no change to listeners, rules or users");
    confdiff_restart(a, b, 2, out, sizeof out);
    assert_string_equal(out, "");
    config_unref(a);
    config_unref(b);
}

TEST(listeners_added_and_removed_and_rules_counted)
{
    char out[512];
    struct config *a = LOAD("-l", "127.0.0.1:1080", "-l", "[::1]:1080", "--rule", "allow");
    struct config *b = LOAD("-l", "[::1]:1080", "-l", "127.0.0.1:1081", "--rule", "deny port 25",
                            "--rule", "allow");
    confdiff_changes(a, b, 1, out, sizeof out);
    assert_string_equal(out, "listening on 127.0.0.1:1081, stopped listening on 127.0.0.1:1080, "
                             "rules 1 -> 2");
    /* Under socket activation the listeners are systemd's: not reported. */
    confdiff_changes(a, b, 0, out, sizeof out);
    assert_string_equal(out, "rules 1 -> 2");
    config_unref(a);
    config_unref(b);
}

TEST(many_new_listeners_are_named_up_to_eight_then_counted)
{
    char out[1024];
    struct config *a = LOAD("-l", "127.0.0.1:1080");
    struct config *b = LOAD("-l", "127.0.0.1:1080", "-l", "127.0.0.1:2001", "-l", "127.0.0.1:2002",
                            "-l", "127.0.0.1:2003", "-l", "127.0.0.1:2004", "-l", "127.0.0.1:2005",
                            "-l", "127.0.0.1:2006", "-l", "127.0.0.1:2007", "-l", "127.0.0.1:2008",
                            "-l", "127.0.0.1:2009", "-l", "127.0.0.1:2010");
    confdiff_changes(a, b, 1, out, sizeof out);
    assert_string_equal(out, "listening on 127.0.0.1:2001 127.0.0.1:2002 127.0.0.1:2003 "
                             "127.0.0.1:2004 127.0.0.1:2005 127.0.0.1:2006 127.0.0.1:2007 "
                             "127.0.0.1:2008 and 2 more");
    config_unref(a);
    config_unref(b);
}

TEST(a_short_buffer_is_cut_and_still_a_string)
{
    char out[16];
    struct config *a = LOAD("-l", "127.0.0.1:1080");
    struct config *b = LOAD("-l", "127.0.0.1:1081");
    confdiff_changes(a, b, 1, out, sizeof out);
    assert_string_equal(out, "listening on 12");
    config_unref(a);
    config_unref(b);
}

TEST(restart_lists_each_setting_that_waits)
{
    char out[512];
    struct config *a = LOAD("-l", "127.0.0.1:1080", "-w", "2");
    struct config *b =
        LOAD("-l", "127.0.0.1:1080", "-w", "4", "--metrics", "9180", "--user", "nobody",
             "--allow-root", "--auth-cache-ttl", "1m", "--pid-file", "/run/socks5d.pid");
    confdiff_restart(a, b, 2, out, sizeof out);
    assert_string_equal(out, "workers (running 2, configured 4), metrics, user, allow-root, "
                             "auth-cache-ttl, pid-file");
    /* The running count decides, not the old configuration's. */
    confdiff_restart(b, b, 4, out, sizeof out);
    assert_string_equal(out, "");
    config_unref(a);
    config_unref(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(same_configuration_says_no_change_and_needs_no_restart),
        cmocka_unit_test(listeners_added_and_removed_and_rules_counted),
        cmocka_unit_test(many_new_listeners_are_named_up_to_eight_then_counted),
        cmocka_unit_test(a_short_buffer_is_cut_and_still_a_string),
        cmocka_unit_test(restart_lists_each_setting_that_waits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
