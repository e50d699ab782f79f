/* Unit tests for src/upcreds.c: the upstream credentials file. */
#include "unit_support.h"

#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "route.h"
#include "upcreds.h"

static struct upstream_hop hop_of(const char *text)
{
    struct upstream_hop h;
    char err[256];
    assert_int_equal(route_hop_parse(text, strlen(text), &h, err, sizeof err), 0);
    return h;
}

static void expect_bad(const char *text, const char *want)
{
    char err[256] = "";
    assert_null(upcreds_parse(text, strlen(text), "f", err, sizeof err));
    if (!strstr(err, want))
        fail_msg("'%s': got '%s', want '%s'", text, err, want);
}

TEST(each_line_gives_a_hop_its_password)
{
    const char text[] = "# upstreams\n"
                        "socks5://alice@10.0.0.2:1080  s3cret words \r\n"
                        "\n"
                        "  HTTP://bob@[2001:db8::2]:3128\thunter2";
    char err[256];
    struct upcreds *u = upcreds_parse(text, sizeof text - 1, "f", err, sizeof err);
    assert_non_null(u);
    struct upstream_hop a = hop_of("socks5://alice@10.0.0.2:1080");
    struct upstream_hop b = hop_of("http://bob@[2001:DB8::2]:3128");
    assert_string_equal(upcreds_find(u, &a), "s3cret words");
    assert_string_equal(upcreds_find(u, &b), "hunter2");
    struct upstream_hop other = hop_of("socks5://alice@10.0.0.2:1081");
    assert_null(upcreds_find(u, &other));
    other = hop_of("http://alice@10.0.0.2:1080");
    assert_null(upcreds_find(u, &other));
    upcreds_free(u);
    upcreds_free(NULL);
}

TEST(bad_lines_are_refused_with_their_number)
{
    expect_bad("socks5://alice@h:1\n", "f:1: the password (after the hop) must be 1 to 255");
    expect_bad("\nsocks5://h:1 pw\n", "f:2: the hop needs the form scheme://USER@HOST:PORT");
    expect_bad("socks5://a:b@h:1 pw\n", "f:1: the hop needs the form");
    expect_bad("socks4a://a@h:1 pw\n", "f:1: ");
    expect_bad("ftp://a@h:1 pw\n", "f:1: column 1: unknown hop");
    expect_bad("socks5://a@h:1 x\nsocks5://a@H:1 y\n", "f:2: second password for the same hop");
    char err[256];
    const char nul[] = "socks5://a@h:1 x\0y\n";
    assert_null(upcreds_parse(nul, sizeof nul - 1, "f", err, sizeof err));
    assert_string_equal(err, "f:1: not text");
    char longpw[300];
    memset(longpw, 'p', sizeof longpw - 1);
    longpw[sizeof longpw - 1] = '\0';
    char line[400];
    snprintf(line, sizeof line, "socks5://a@h:1 %s\n", longpw);
    expect_bad(line, "must be 1 to 255 bytes");
}

TEST(a_file_others_can_read_is_refused)
{
    char dir[] = "/tmp/socks5d-upcreds-XXXXXX", path[64], err[256];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/creds", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("socks5://a@h:1 pw\n", f);
    fclose(f);
    assert_int_equal(chmod(path, 0644), 0);
    assert_null(upcreds_load(path, err, sizeof err));
    assert_non_null(strstr(err, "others may read or write it (mode 0644)"));
    assert_int_equal(chmod(path, 0640), 0);
    struct upcreds *u = upcreds_load(path, err, sizeof err);
    assert_non_null(u);
    upcreds_free(u);
    assert_null(upcreds_load(dir, err, sizeof err));
    assert_non_null(strstr(err, "not a regular file"));
    assert_int_equal(unlink(path), 0);
    assert_null(upcreds_load(path, err, sizeof err));
    assert_non_null(strstr(err, "No such file"));
    assert_int_equal(rmdir(dir), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(each_line_gives_a_hop_its_password),
        cmocka_unit_test(bad_lines_are_refused_with_their_number),
        cmocka_unit_test(a_file_others_can_read_is_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
