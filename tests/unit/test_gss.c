/* Unit tests for src/gss.c that need no KDC: the session user made from a
 * principal (realm list, strip-realm) and refusals of unusable keytabs. The
 * context steps and message protection are tested against a real KDC in
 * tests/integration/test_gssapi.py. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gss.h"

#define TEST(name) static void name(void **state __attribute__((unused)))

TEST(user_is_the_whole_principal_without_a_realm_list)
{
    char out[64];
    assert_string_equal(gss_user("alice@SOCKS5D.TEST", NULL, 0, out, sizeof out),
                        "alice@SOCKS5D.TEST");
    assert_string_equal(gss_user("alice@SOCKS5D.TEST", "", 0, out, sizeof out),
                        "alice@SOCKS5D.TEST");
}

TEST(user_of_a_realm_outside_the_list_is_refused)
{
    char out[64];
    assert_null(gss_user("alice@EVIL.TEST", "SOCKS5D.TEST,CORP.TEST", 0, out, sizeof out));
    /* Whole realm names only: neither a prefix nor a suffix matches. */
    assert_null(gss_user("alice@SOCKS5D", "SOCKS5D.TEST", 0, out, sizeof out));
    assert_null(gss_user("alice@SOCKS5D.TEST.EVIL", "SOCKS5D.TEST", 0, out, sizeof out));
    assert_null(gss_user("alice", "SOCKS5D.TEST", 0, out, sizeof out));
}

TEST(user_of_any_realm_in_the_list_is_accepted)
{
    char out[64];
    assert_string_equal(gss_user("bob@CORP.TEST", "SOCKS5D.TEST,CORP.TEST", 0, out, sizeof out),
                        "bob@CORP.TEST");
    assert_string_equal(gss_user("bob@SOCKS5D.TEST", "SOCKS5D.TEST,CORP.TEST", 0, out, sizeof out),
                        "bob@SOCKS5D.TEST");
}

TEST(strip_realm_keeps_the_name_only)
{
    char out[64];
    assert_string_equal(gss_user("alice@SOCKS5D.TEST", "SOCKS5D.TEST", 1, out, sizeof out),
                        "alice");
    /* An instance stays: alice/admin is not alice. */
    assert_string_equal(gss_user("alice/admin@SOCKS5D.TEST", NULL, 1, out, sizeof out),
                        "alice/admin");
    assert_null(gss_user("@SOCKS5D.TEST", NULL, 1, out, sizeof out));
    assert_null(gss_user("a-rather-long-name@SOCKS5D.TEST", NULL, 1, out, 8));
}

TEST(server_with_a_missing_keytab_says_which_file)
{
    char err[512] = "";
    assert_null(gss_server_new("FILE:/nonexistent/socks5d.keytab", "rcmd", err, sizeof err));
    assert_non_null(strstr(err, "/nonexistent/socks5d.keytab"));
}

TEST(server_with_a_keytab_of_other_services_says_what_is_missing)
{
    /* An empty keytab file: version 0x0502 and no entry. */
    char path[] = "/tmp/socks5d-test-keytab-XXXXXX", err[512] = "", name[64];
    const unsigned char empty[] = {0x05, 0x02};
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, empty, sizeof empty), sizeof empty);
    close(fd);
    snprintf(name, sizeof name, "FILE:%s", path);
    assert_null(gss_server_new(name, "rcmd", err, sizeof err));
    unlink(path);
    assert_non_null(strstr(err, "no key for rcmd/<host>"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(user_is_the_whole_principal_without_a_realm_list),
        cmocka_unit_test(user_of_a_realm_outside_the_list_is_refused),
        cmocka_unit_test(user_of_any_realm_in_the_list_is_accepted),
        cmocka_unit_test(strip_realm_keeps_the_name_only),
        cmocka_unit_test(server_with_a_missing_keytab_says_which_file),
        cmocka_unit_test(server_with_a_keytab_of_other_services_says_what_is_missing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
