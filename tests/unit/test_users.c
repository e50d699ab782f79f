/* Unit tests for src/users.c: parsing, lookups, errors with their line,
 * hash settings and a load that stays O(n log n). */
#include "auth_support.h"

#include <errno.h>

TEST(users_parse_reads_entries_skipping_comments_and_blank_lines)
{
    char text[4096], err[256];
    snprintf(text, sizeof text,
             "# socks5d users\n"
             "\n"
             "   \t\n"
             "%s:%s\n"
             "  # indented comment: with a colon\n"
             "\t%s:%s   \r\n" /* leading white space, trailing spaces, CRLF */
             "%s:%s",         /* last line without a newline */
             alg_user[ALG_SHA512], alg_hash[ALG_SHA512], alg_user[ALG_BCRYPT], alg_hash[ALG_BCRYPT],
             alg_user[ALG_YESCRYPT], alg_hash[ALG_YESCRYPT]);
    struct users *u = parse_str(text, err, sizeof err);
    if (!u)
        fail_msg("rejected a valid file: %s", err);
    assert_int_equal(users_count(u), 3);
    for (int i = 0; i < NALG; i++) {
        const char *h = users_find(u, alg_user[i]);
        assert_non_null(h);
        assert_string_equal(h, alg_hash[i]);
    }
    users_free(u);
}

TEST(users_find_is_exact_and_handles_missing_names)
{
    char text[4096], err[256];
    snprintf(text, sizeof text, "bob:%s\nalice:%s\nzed:%s\n", alg_hash[0], alg_hash[1],
             alg_hash[2]);
    struct users *u = parse_str(text, err, sizeof err);
    assert_non_null(u);
    assert_string_equal(users_find(u, "alice"), alg_hash[1]);
    assert_string_equal(users_find(u, "bob"), alg_hash[0]);
    assert_string_equal(users_find(u, "zed"), alg_hash[2]);
    assert_null(users_find(u, "Alice")); /* case-sensitive */
    assert_null(users_find(u, "alic"));
    assert_null(users_find(u, "alice "));
    assert_null(users_find(u, ""));
    assert_null(users_find(u, "aaa")); /* before the first */
    assert_null(users_find(u, "zzz")); /* after the last */
    users_free(u);
    assert_null(users_find(NULL, "alice"));
    assert_int_equal(users_count(NULL), 0);
    users_free(NULL);
}

TEST(users_compare_tells_removed_and_new_passwords_from_the_same)
{
    char text[4096], err[256];
    snprintf(text, sizeof text, "alice:%s\nbob:%s\ncarol:%s\n", alg_hash[0], alg_hash[1],
             alg_hash[2]);
    struct users *old = parse_str(text, err, sizeof err);
    snprintf(text, sizeof text, "carol:%s\nalice:%s\ndave:%s\n", alg_hash[2], alg_hash[1],
             alg_hash[0]);
    struct users *new = parse_str(text, err, sizeof err);
    assert_non_null(old);
    assert_non_null(new);
    assert_int_equal(users_compare(old, new, "alice"), USERS_NEW_PASSWORD);
    assert_int_equal(users_compare(old, new, "bob"), USERS_REMOVED);
    assert_int_equal(users_compare(old, new, "carol"), USERS_SAME);
    assert_int_equal(users_compare(old, NULL, "carol"), USERS_REMOVED); /* no users file now */
    /* Names in sort order. */
    assert_string_equal(users_name(new, 0), "alice");
    assert_string_equal(users_name(new, 2), "dave");
    users_free(old);
    users_free(new);
}

TEST(users_parse_empty_and_comment_only_files_have_no_users)
{
    char err[256];
    struct users *u = parse_str("", err, sizeof err);
    assert_non_null(u);
    assert_int_equal(users_count(u), 0);
    assert_null(users_find(u, "x"));
    users_free(u);
    u = parse_str("# nobody\n\n", err, sizeof err);
    assert_non_null(u);
    assert_int_equal(users_count(u), 0);
    users_free(u);
}

/* Parses text expected to fail; checks the message starts with
 * "users.txt:<line>: " and mentions `reason`. */
static void assert_parse_error(const char *text, int line, const char *reason)
{
    char err[512], prefix[64];
    struct users *u = parse_str(text, err, sizeof err);
    if (u) {
        users_free(u);
        fail_msg("accepted invalid file (expected error on line %d): %s", line, text);
    }
    snprintf(prefix, sizeof prefix, "users.txt:%d: ", line);
    if (strncmp(err, prefix, strlen(prefix)) != 0)
        fail_msg("error \"%s\" does not start with \"%s\"", err, prefix);
    if (reason && !strstr(err, reason))
        fail_msg("error \"%s\" does not mention \"%s\"", err, reason);
}

TEST(users_parse_error_missing_colon_names_the_line)
{
    char text[4096];
    snprintf(text, sizeof text, "# c\nok:%s\nalice %s\n", alg_hash[0], alg_hash[0]);
    assert_parse_error(text, 3, "name:hash");
}

TEST(users_parse_error_empty_name)
{
    char text[4096];
    snprintf(text, sizeof text, ":%s\n", alg_hash[0]);
    assert_parse_error(text, 1, "empty");
    snprintf(text, sizeof text, "\n\n  :%s\n", alg_hash[0]);
    assert_parse_error(text, 3, "empty");
}

TEST(users_parse_error_bad_hash)
{
    assert_parse_error("alice:plaintext\n", 1, "hash");
    assert_parse_error("alice:\n", 1, "hash");
    assert_parse_error("#\nalice:$zz$notanalgorithm\n", 2, "hash");
    assert_parse_error("alice:*\n", 1, "hash");
}

TEST(users_parse_error_duplicate_user)
{
    char text[4096];
    snprintf(text, sizeof text, "alice:%s\nbob:%s\n\nalice:%s\n", alg_hash[0], alg_hash[1],
             alg_hash[2]);
    assert_parse_error(text, 4, "duplicate");
}

TEST(users_parse_error_name_with_white_space)
{
    char text[4096];
    snprintf(text, sizeof text, "alice smith:%s\n", alg_hash[0]);
    assert_parse_error(text, 1, "white space");
    snprintf(text, sizeof text, "x:%s\nalice\tsmith:%s\n", alg_hash[0], alg_hash[0]);
    assert_parse_error(text, 2, "white space");
    snprintf(text, sizeof text, "alice :%s\n", alg_hash[0]);
    assert_parse_error(text, 1, "white space");
}

TEST(users_parse_error_name_longer_than_255_bytes)
{
    char text[4096], name[257];
    memset(name, 'n', 256);
    name[256] = '\0';
    snprintf(text, sizeof text, "%s:%s\n", name, alg_hash[0]);
    assert_parse_error(text, 1, "255");
    /* 255 is fine. */
    char err[256];
    name[255] = '\0';
    snprintf(text, sizeof text, "%s:%s\n", name, alg_hash[0]);
    struct users *u = parse_str(text, err, sizeof err);
    assert_non_null(u);
    assert_string_equal(users_find(u, name), alg_hash[0]);
    users_free(u);
}

TEST(users_parse_error_nul_byte_and_overlong_line)
{
    char err[256];
    const char bin[] = "alice:$6$x\0y\n";
    struct users *u = users_parse(bin, sizeof bin - 1, "users.txt", err, sizeof err);
    assert_null(u);
    assert_true(strncmp(err, "users.txt:1: ", 13) == 0);

    size_t n = 5000;
    char *big = malloc(n);
    assert_non_null(big);
    memcpy(big, "ok:", 3);
    memset(big + 3, 'a', n - 3);
    u = users_parse(big, n, "users.txt", err, sizeof err);
    assert_null(u);
    assert_true(strncmp(err, "users.txt:1: ", 13) == 0);
    free(big);
}

TEST(users_load_reads_a_file_and_reports_a_missing_one)
{
    char path[] = "/tmp/socks5d-test-users-XXXXXX", err[512];
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "w");
    assert_non_null(f);
    fprintf(f, "# test\n%s:%s\n%s:%s\n", alg_user[0], alg_hash[0], alg_user[2], alg_hash[2]);
    fclose(f);
    struct users *u = users_load(path, err, sizeof err);
    if (!u)
        fail_msg("users_load: %s", err);
    assert_int_equal(users_count(u), 2);
    assert_string_equal(users_find(u, alg_user[2]), alg_hash[2]);
    users_free(u);

    /* An error in a loaded file names the real path. */
    f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f, "a:%s\n\nbroken\n", alg_hash[0]);
    fclose(f);
    u = users_load(path, err, sizeof err);
    assert_null(u);
    char prefix[128];
    snprintf(prefix, sizeof prefix, "%s:3: ", path);
    assert_true(strncmp(err, prefix, strlen(prefix)) == 0);

    assert_int_equal(unlink(path), 0);
    u = users_load(path, err, sizeof err);
    assert_null(u);
    assert_true(strncmp(err, path, strlen(path)) == 0);
    assert_non_null(strstr(err, strerror(ENOENT)));
}

TEST(users_settings_counts_algorithms_and_costs_not_salts)
{
    char text[4096], err[256], h2[CRYPT_OUTPUT_SIZE], rounds[CRYPT_OUTPUT_SIZE];
    struct crypt_data *cd = calloc(1, sizeof *cd);
    assert_non_null(cd);
    make_hash("$6$", "other", h2); /* same setting, another salt */
    const char *h = crypt_r("pw", "$6$rounds=6000$abcdefgh", cd);
    assert_non_null(h);
    snprintf(rounds, sizeof rounds, "%s", h);
    free(cd);
    snprintf(text, sizeof text, "a:%s\nb:%s\n", alg_hash[ALG_SHA512], h2);
    struct users *u = parse_str(text, err, sizeof err);
    assert_non_null(u);
    assert_int_equal(users_settings(u), 1);
    assert_true(users_cost_us(u) > 0);
    users_free(u);
    snprintf(text, sizeof text, "a:%s\nb:%s\nc:%s\n", alg_hash[ALG_SHA512], h2, rounds);
    u = parse_str(text, err, sizeof err);
    assert_non_null(u);
    assert_int_equal(users_settings(u), 2);
    users_free(u);
    u = parse_str("", err, sizeof err);
    assert_non_null(u);
    assert_int_equal(users_settings(u), 0);
    users_free(u);
}

TEST(users_parse_error_reports_the_earliest_duplicate_line)
{
    char text[4096];
    /* Sorted, bob's repeat sits before alice's; the file's order decides. */
    snprintf(text, sizeof text, "bob:%s\nalice:%s\nbob:%s\nalice:%s\n", alg_hash[0], alg_hash[1],
             alg_hash[2], alg_hash[0]);
    assert_parse_error(text, 3, "duplicate");
    snprintf(text, sizeof text, "zed:%s\nalice:%s\nalice:%s\nzed:%s\n", alg_hash[0], alg_hash[1],
             alg_hash[2], alg_hash[0]);
    assert_parse_error(text, 3, "duplicate");
    /* A third occurrence does not hide the second. */
    snprintf(text, sizeof text, "x:%s\ny:%s\nx:%s\nx:%s\n", alg_hash[0], alg_hash[0], alg_hash[0],
             alg_hash[0]);
    assert_parse_error(text, 3, "duplicate");
}

TEST(users_parse_error_duplicate_and_syntax_error_the_earlier_line_wins)
{
    char text[4096];
    snprintf(text, sizeof text, "a:%s\na:%s\nbroken\n", alg_hash[0], alg_hash[0]);
    assert_parse_error(text, 2, "duplicate");
    snprintf(text, sizeof text, "a:%s\nbroken\na:%s\n", alg_hash[0], alg_hash[0]);
    assert_parse_error(text, 2, "name:hash");
    snprintf(text, sizeof text, "a:%s\nb:plain\na:%s\n", alg_hash[0], alg_hash[0]);
    assert_parse_error(text, 2, "hash");
}

/* Writes `n` users in descending name order (no help from a presorted
 * input), then one more line: a repeat of the first name when `dup`. */
static char *many_users(size_t n, int dup, size_t *len)
{
    size_t hlen = strlen(alg_hash[ALG_SHA512]), cap = (n + 1) * (hlen + 16), off = 0;
    char *text = malloc(cap);
    assert_non_null(text);
    for (size_t i = 0; i < n + (dup ? 1 : 0); i++)
        off += (size_t)snprintf(text + off, cap - off, "u%07zu:%s\n", i < n ? n - 1 - i : n - 1,
                                alg_hash[ALG_SHA512]);
    *len = off;
    return text;
}

/* 100,000 users load in one sort. Re-sorting after each line, as the parser
 * once did, is O(n^2 log n): minutes here, so the watchdog ends the binary
 * (SIGALRM) long before. The bound is a deadline, not a speed claim: the
 * sort takes well under a second even under ASan. */
TEST(users_parse_100k_users_sorts_once_and_finds_a_late_duplicate)
{
    enum { N = 100000, WATCHDOG_S = 60 };
    char err[256];
    size_t len;
    char *text = many_users(N, 0, &len);
    alarm(WATCHDOG_S);
    struct users *u = users_parse(text, len, "users.txt", err, sizeof err);
    if (!u)
        fail_msg("rejected %d users: %s", N, err);
    assert_int_equal(users_count(u), N);
    assert_string_equal(users_find(u, "u0000000"), alg_hash[ALG_SHA512]);
    assert_string_equal(users_find(u, "u0099999"), alg_hash[ALG_SHA512]);
    assert_null(users_find(u, "u0100000"));
    assert_int_equal(users_settings(u), 1);
    users_free(u);
    free(text);

    text = many_users(N, 1, &len);
    u = users_parse(text, len, "users.txt", err, sizeof err);
    alarm(0);
    assert_null(u);
    assert_string_equal(err, "users.txt:100001: duplicate user");
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(users_parse_reads_entries_skipping_comments_and_blank_lines),
        cmocka_unit_test(users_find_is_exact_and_handles_missing_names),
        cmocka_unit_test(users_compare_tells_removed_and_new_passwords_from_the_same),
        cmocka_unit_test(users_parse_empty_and_comment_only_files_have_no_users),
        cmocka_unit_test(users_parse_error_missing_colon_names_the_line),
        cmocka_unit_test(users_parse_error_empty_name),
        cmocka_unit_test(users_parse_error_bad_hash),
        cmocka_unit_test(users_parse_error_duplicate_user),
        cmocka_unit_test(users_parse_error_name_with_white_space),
        cmocka_unit_test(users_parse_error_name_longer_than_255_bytes),
        cmocka_unit_test(users_parse_error_nul_byte_and_overlong_line),
        cmocka_unit_test(users_load_reads_a_file_and_reports_a_missing_one),
        cmocka_unit_test(users_settings_counts_algorithms_and_costs_not_salts),
        cmocka_unit_test(users_parse_error_reports_the_earliest_duplicate_line),
        cmocka_unit_test(users_parse_error_duplicate_and_syntax_error_the_earlier_line_wins),
        cmocka_unit_test(users_parse_100k_users_sorts_once_and_finds_a_late_duplicate),
    };
    return cmocka_run_group_tests(tests, make_alg_hashes, NULL);
}
