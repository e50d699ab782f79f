/* Unit tests for src/auth.c: the users file, constant-time comparison, the
 * verification cache, and verification on the pool threads delivered back
 * through a real mailbox and event loop.
 *
 * Hashes are made here with crypt_gensalt_rn + crypt_r so sha512-crypt
 * ($6$), bcrypt ($2b$) and yescrypt ($y$) are all exercised. The pool is
 * started once for the whole group (it is process-wide). */
#include "unit_support.h"

#include <crypt.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>

#include "auth.h"
#include "loop.h"
#include "mailbox.h"

enum { ALG_SHA512, ALG_BCRYPT, ALG_YESCRYPT, NALG };
static const char *const alg_prefix[NALG] = {"$6$", "$2b$", "$y$"};
static const char *const alg_user[NALG] = {"sha", "bcr", "yes"};
static const char *const alg_pass[NALG] = {"s3cret-sha", "s3cret-bcrypt", "s3cret-yes"};
static char alg_hash[NALG][CRYPT_OUTPUT_SIZE];
/* A second hash of the same password (another salt): "the hash changed". */
static char alt_hash[CRYPT_OUTPUT_SIZE];
/* The verification queue's ceiling (AUTH_QUEUE_MAX in auth.c). */
#define AUTH_TEST_MAX_QUEUE 4096

static void make_hash(const char *prefix, const char *pass, char *out)
{
    struct crypt_data *cd = calloc(1, sizeof *cd);
    assert_non_null(cd);
    const char *salt = crypt_gensalt_rn(prefix, 0, NULL, 0, cd->setting, sizeof cd->setting);
    if (!salt)
        fail_msg("crypt_gensalt_rn(%s) failed", prefix);
    const char *h = crypt_r(pass, salt, cd);
    if (!h || h[0] == '*')
        fail_msg("crypt_r(%s) failed", prefix);
    assert_true(strncmp(h, prefix, strlen(prefix)) == 0);
    snprintf(out, CRYPT_OUTPUT_SIZE, "%s", h);
    free(cd);
}

static int group_setup(void **state)
{
    (void)state;
    for (int i = 0; i < NALG; i++)
        make_hash(alg_prefix[i], alg_pass[i], alg_hash[i]);
    make_hash("$6$", alg_pass[ALG_SHA512], alt_hash);
    return auth_pool_start(2);
}

static int group_teardown(void **state)
{
    (void)state;
    auth_pool_stop();
    return 0;
}

/* ---------------------------------------------------------------------------
 * users file */

static struct users *parse_str(const char *text, char *err, size_t errlen)
{
    /* An exact-size heap copy: ASan catches a read past len. */
    size_t len = strlen(text);
    char *copy = malloc(len ? len : 1);
    assert_non_null(copy);
    memcpy(copy, text, len);
    err[0] = '\0';
    struct users *u = users_parse(copy, len, "users.txt", err, errlen);
    free(copy);
    return u;
}

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

/* ---------------------------------------------------------------------------
 * secrets */

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

/* ---------------------------------------------------------------------------
 * verification cache */

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

/* auth.h puts no bound on the strings the cache takes. An earlier
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

/* ---------------------------------------------------------------------------
 * verification on the pool, answered through a mailbox */

struct verify_rec {
    int calls;
    int ok;
    pthread_t thread;
};

/* Callbacks run so far, all tests together. */
static int answers;

static void on_verified(void *owner, int ok)
{
    struct verify_rec *r = owner;
    answers++;
    r->calls++;
    r->ok = ok;
    r->thread = pthread_self();
}

struct harness {
    struct loop *l;
    struct mailbox mb;
    struct auth_cache *cache;
    struct users *users;
};

static void harness_init(struct harness *h, int with_users)
{
    char text[4096], err[256];
    h->l = loop_new();
    assert_non_null(h->l);
    assert_int_equal(mailbox_init(&h->mb, h->l), 0);
    h->cache = auth_cache_new(LONG_TTL, h->l, &h->mb);
    assert_non_null(h->cache);
    text[0] = '\0';
    if (with_users)
        snprintf(text, sizeof text, "%s:%s\n%s:%s\n%s:%s\n", alg_user[0], alg_hash[0], alg_user[1],
                 alg_hash[1], alg_user[2], alg_hash[2]);
    h->users = parse_str(text, err, sizeof err);
    assert_non_null(h->users);
}

static void harness_free(struct harness *h)
{
    users_free(h->users);
    auth_cache_free(h->cache);
    mailbox_destroy(&h->mb, h->l);
    loop_free(h->l);
}

/* Waits (without running the loop, so nothing is drained) until `n` results
 * are queued in the mailbox and every poster has also written the eventfd:
 * after that no pool thread touches the mailbox for these jobs, so the test
 * may destroy it. The eventfd counter is taken here and put back in one
 * write, so the loop still sees it readable. */
static void wait_mail(struct mailbox *mb, int n)
{
    uint64_t deadline = now_ms() + 6 * WAIT_MS; /* yescrypt under valgrind is slow */
    uint64_t posted = 0, v;
    int have = 0;
    for (;;) {
        while (read(mb->io.fd, &v, sizeof v) == (ssize_t)sizeof v)
            posted += v;
        have = 0;
        pthread_mutex_lock(&mb->mu);
        for (struct mail *m = mb->head; m; m = m->next)
            have++;
        pthread_mutex_unlock(&mb->mu);
        if (have >= n && posted >= (uint64_t)n)
            break;
        if (now_ms() > deadline)
            fail_msg("only %d of %d verification results arrived", have, n);
        sleep_ms(1);
    }
    assert_int_equal(have, n);
    assert_int_equal(posted, n);
    assert_int_equal(write(mb->io.fd, &posted, sizeof posted), sizeof posted);
}

/* Runs the loop until `n` more callbacks have run (answers are held back
 * by timers, see auth_verify), then checks nothing else is pending. */
static void drain(struct harness *h, int n)
{
    int want = answers + n;
    uint64_t deadline = now_ms() + 6 * WAIT_MS;
    do {
        assert_true(loop_run_once(h->l, 50) >= 0);
        if (now_ms() > deadline)
            fail_msg("only %d of %d answers came", n - (want - answers), n);
    } while (answers < want);
    assert_int_equal(loop_run_once(h->l, 0), 0);
    assert_null(h->mb.head);
    assert_int_equal(answers, want);
}

TEST(verify_right_wrong_and_unknown_each_call_back_once_with_the_right_result)
{
    struct harness h;
    struct verify_rec right[NALG], wrong[NALG], unknown;
    harness_init(&h, 1);
    memset(right, 0, sizeof right);
    memset(wrong, 0, sizeof wrong);
    memset(&unknown, 0, sizeof unknown);
    for (int i = 0; i < NALG; i++) {
        assert_non_null(
            auth_verify(h.users, alg_user[i], alg_pass[i], h.cache, on_verified, &right[i]));
        assert_non_null(
            auth_verify(h.users, alg_user[i], "not-the-password", h.cache, on_verified, &wrong[i]));
    }
    /* A known user's password does not work for an unknown name. */
    assert_non_null(auth_verify(h.users, "mallory", alg_pass[0], h.cache, on_verified, &unknown));
    /* Answers only ever come through the loop. */
    wait_mail(&h.mb, 2 * NALG + 1);
    for (int i = 0; i < NALG; i++)
        assert_int_equal(right[i].calls + wrong[i].calls, 0);
    assert_int_equal(unknown.calls, 0);
    drain(&h, 2 * NALG + 1);
    pthread_t me = pthread_self();
    for (int i = 0; i < NALG; i++) {
        assert_int_equal(right[i].calls, 1);
        assert_int_equal(right[i].ok, 1);
        assert_true(pthread_equal(right[i].thread, me));
        assert_int_equal(wrong[i].calls, 1);
        assert_int_equal(wrong[i].ok, 0);
        assert_true(pthread_equal(wrong[i].thread, me));
    }
    assert_int_equal(unknown.calls, 1);
    assert_int_equal(unknown.ok, 0);
    harness_free(&h);
}

TEST(verify_success_is_cached_failure_is_not)
{
    struct harness h;
    struct verify_rec ok = {0}, bad = {0};
    harness_init(&h, 1);
    assert_non_null(auth_verify(h.users, alg_user[0], alg_pass[0], h.cache, on_verified, &ok));
    assert_non_null(auth_verify(h.users, alg_user[1], "nope", h.cache, on_verified, &bad));
    wait_mail(&h.mb, 2);
    drain(&h, 2);
    assert_int_equal(ok.ok, 1);
    assert_int_equal(bad.ok, 0);
    assert_true(auth_cache_hit(h.cache, alg_user[0], alg_hash[0], alg_pass[0]));
    assert_false(auth_cache_hit(h.cache, alg_user[1], alg_hash[1], "nope"));
    assert_false(auth_cache_hit(h.cache, alg_user[1], alg_hash[1], alg_pass[1]));
    harness_free(&h);
}

TEST(verify_unknown_user_with_empty_users_file_fails)
{
    struct harness h;
    struct verify_rec r = {0}, e = {0};
    harness_init(&h, 0);
    assert_non_null(auth_verify(h.users, "anyone", "anything", h.cache, on_verified, &r));
    assert_non_null(auth_verify(h.users, "", "", h.cache, on_verified, &e));
    wait_mail(&h.mb, 2);
    drain(&h, 2);
    assert_int_equal(r.calls, 1);
    assert_int_equal(r.ok, 0);
    assert_int_equal(e.calls, 1);
    assert_int_equal(e.ok, 0);
    harness_free(&h);
}

TEST(verify_with_a_users_password_under_another_name_fails)
{
    /* Unknown names are checked against a user's hash of the slowest
     * setting; no user's right password lets an unknown name in. */
    struct harness h;
    struct verify_rec r[NALG];
    harness_init(&h, 1);
    memset(r, 0, sizeof r);
    for (int i = 0; i < NALG; i++)
        assert_non_null(auth_verify(h.users, "ghost", alg_pass[i], h.cache, on_verified, &r[i]));
    wait_mail(&h.mb, NALG);
    drain(&h, NALG);
    for (int i = 0; i < NALG; i++) {
        assert_int_equal(r[i].calls, 1);
        assert_int_equal(r[i].ok, 0);
    }
    for (int i = 0; i < NALG; i++)
        assert_false(auth_cache_hit(h.cache, "ghost", alg_hash[i], alg_pass[i]));
    harness_free(&h);
}

TEST(verify_maximum_length_credentials)
{
    char user[256], pass[256], text[1024], err[256];
    struct harness h;
    struct verify_rec ok = {0}, cut = {0};
    memset(user, 'u', 255);
    user[255] = '\0';
    memset(pass, 'p', 255);
    pass[255] = '\0';
    char hash[CRYPT_OUTPUT_SIZE];
    make_hash("$6$", pass, hash);
    harness_init(&h, 0);
    users_free(h.users);
    snprintf(text, sizeof text, "%s:%s\n", user, hash);
    h.users = parse_str(text, err, sizeof err);
    assert_non_null(h.users);
    assert_non_null(auth_verify(h.users, user, pass, h.cache, on_verified, &ok));
    pass[254] = '\0'; /* one byte short */
    assert_non_null(auth_verify(h.users, user, pass, h.cache, on_verified, &cut));
    wait_mail(&h.mb, 2);
    drain(&h, 2);
    assert_int_equal(ok.ok, 1);
    assert_int_equal(cut.ok, 0);
    harness_free(&h);
}

/* Occupies both pool threads with slow hashes (bcrypt, yescrypt), so that
 * what is submitted next waits in the queue for a while. */
static void occupy_pool(struct harness *h, struct verify_rec busy[2])
{
    memset(busy, 0, 2 * sizeof *busy);
    assert_non_null(
        auth_verify(h->users, alg_user[ALG_BCRYPT], "busy-1", h->cache, on_verified, &busy[0]));
    assert_non_null(
        auth_verify(h->users, alg_user[ALG_YESCRYPT], "busy-2", h->cache, on_verified, &busy[1]));
}

TEST(cancel_prevents_the_callback_and_drops_the_queued_job_unhashed)
{
    struct harness h;
    struct verify_rec busy[2], r[3];
    harness_init(&h, 1);
    memset(r, 0, sizeof r);
    occupy_pool(&h, busy);
    struct auth_job *j[3];
    j[0] = auth_verify(h.users, alg_user[0], alg_pass[0], h.cache, on_verified, &r[0]);
    j[1] = auth_verify(h.users, alg_user[1], "wrong", h.cache, on_verified, &r[1]);
    j[2] = auth_verify(h.users, "nobody", "x", h.cache, on_verified, &r[2]);
    for (int i = 0; i < 3; i++) {
        assert_non_null(j[i]);
        auth_cancel(j[i]);
    }
    /* One more, not cancelled, shares the mailbox: it still answers. */
    struct verify_rec live = {0};
    assert_non_null(auth_verify(h.users, alg_user[2], alg_pass[2], h.cache, on_verified, &live));
    /* Only the two busy ones and the live one ever reach the mailbox: the
     * cancelled ones left the queue before a thread took them (and ASan
     * reports a leak if they were not freed). */
    wait_mail(&h.mb, 3);
    drain(&h, 3);
    for (int i = 0; i < 3; i++)
        assert_int_equal(r[i].calls, 0);
    assert_false(auth_cache_hit(h.cache, alg_user[0], alg_hash[0], alg_pass[0]));
    assert_int_equal(live.calls, 1);
    assert_int_equal(live.ok, 1);
    assert_int_equal(busy[0].calls + busy[1].calls, 2);
    harness_free(&h);
}

TEST(a_full_queue_refuses_with_eagain_and_takes_work_again_once_drained)
{
    enum { TRIES = AUTH_TEST_MAX_QUEUE + 8 };
    struct harness h;
    static struct verify_rec r[TRIES];
    struct verify_rec joined = {0};
    char pass[32];
    int accepted = 0;
    harness_init(&h, 1);
    memset(r, 0, sizeof r);
    for (; accepted < TRIES; accepted++) {
        snprintf(pass, sizeof pass, "guess-%d", accepted);
        if (!auth_verify(h.users, alg_user[0], pass, h.cache, on_verified, &r[accepted]))
            break;
    }
    assert_int_equal(errno, EAGAIN);
    assert_true(accepted >= 16 && accepted < TRIES);
    /* Joining a verification already in flight needs no queue space. */
    assert_non_null(auth_verify(h.users, alg_user[0], "guess-0", h.cache, on_verified, &joined));
    drain(&h, accepted + 1);
    for (int i = 0; i < accepted; i++)
        assert_int_equal(r[i].calls, 1);
    struct verify_rec again = {0};
    assert_non_null(auth_verify(h.users, alg_user[0], alg_pass[0], h.cache, on_verified, &again));
    drain(&h, 1);
    assert_int_equal(again.ok, 1);
    harness_free(&h);
}

TEST(every_answer_waits_for_the_slowest_setting_of_the_file)
{
    /* sha512-crypt is many times cheaper than yescrypt or bcrypt here: its
     * wrong password, right password and an unknown name all answer no
     * sooner than the slowest setting took at load. */
    struct harness h;
    harness_init(&h, 1);
    uint64_t cost_ms = users_cost_us(h.users) / 1000;
    const char *who[3] = {alg_user[ALG_SHA512], alg_user[ALG_SHA512], "nobody"};
    const char *pw[3] = {"wrong", alg_pass[ALG_SHA512], "x"};
    assert_true(users_settings(h.users) == NALG);
    for (int i = 0; i < 3; i++) {
        struct verify_rec r = {0};
        uint64_t t0 = now_ms();
        assert_non_null(auth_verify(h.users, who[i], pw[i], h.cache, on_verified, &r));
        drain(&h, 1);
        /* 1 ms for the loop's millisecond clock. */
        assert_true(now_ms() - t0 + 1 >= cost_ms);
        assert_int_equal(r.ok, i == 1);
    }
    harness_free(&h);
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

TEST(same_credentials_in_flight_share_one_verification)
{
    /* One pool thread runs works in order: three requests with the same
     * credentials, then another user's. If the three were hashed apart, the
     * marker's answer would be the fourth mail, not the second. */
    struct harness h;
    struct verify_rec r[3], marker = {0};
    struct auth_job *j[3];
    harness_init(&h, 1);
    memset(r, 0, sizeof r);
    for (int i = 0; i < 3; i++) {
        j[i] = auth_verify(h.users, alg_user[0], alg_pass[0], h.cache, on_verified, &r[i]);
        assert_non_null(j[i]);
    }
    assert_ptr_not_equal(j[0], j[1]);
    auth_cancel(j[1]); /* one waiter leaves: the others still hear */
    assert_non_null(auth_verify(h.users, alg_user[1], alg_pass[1], h.cache, on_verified, &marker));
    wait_mail(&h.mb, 2);
    drain(&h, 3);
    assert_int_equal(marker.calls, 1);
    assert_int_equal(r[0].calls, 1);
    assert_int_equal(r[0].ok, 1);
    assert_int_equal(r[1].calls, 0);
    assert_int_equal(r[2].calls, 1);
    assert_int_equal(r[2].ok, 1);
    harness_free(&h);
}

TEST(cancel_after_the_result_is_queued_still_drops_it)
{
    /* The owner goes away while the answer sits in the mailbox. */
    struct harness h;
    struct verify_rec r = {0};
    harness_init(&h, 1);
    struct auth_job *j = auth_verify(h.users, alg_user[0], alg_pass[0], h.cache, on_verified, &r);
    assert_non_null(j);
    wait_mail(&h.mb, 1);
    auth_cancel(j);
    drain(&h, 0);
    assert_int_equal(r.calls, 0);
    /* Nobody waited for that success: it is not remembered either. */
    assert_false(auth_cache_hit(h.cache, alg_user[0], alg_hash[0], alg_pass[0]));
    harness_free(&h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(users_parse_reads_entries_skipping_comments_and_blank_lines),
        cmocka_unit_test(users_find_is_exact_and_handles_missing_names),
        cmocka_unit_test(users_parse_empty_and_comment_only_files_have_no_users),
        cmocka_unit_test(users_parse_error_missing_colon_names_the_line),
        cmocka_unit_test(users_parse_error_empty_name),
        cmocka_unit_test(users_parse_error_bad_hash),
        cmocka_unit_test(users_parse_error_duplicate_user),
        cmocka_unit_test(users_parse_error_name_with_white_space),
        cmocka_unit_test(users_parse_error_name_longer_than_255_bytes),
        cmocka_unit_test(users_parse_error_nul_byte_and_overlong_line),
        cmocka_unit_test(users_load_reads_a_file_and_reports_a_missing_one),

        cmocka_unit_test(streq_equal_different_and_different_length),
        cmocka_unit_test(wipe_zeroes_the_bytes),

        cmocka_unit_test(cache_put_then_hit),
        cmocka_unit_test(cache_wrong_password_or_other_user_misses),
        cmocka_unit_test(cache_changed_hash_misses),
        cmocka_unit_test(cache_with_ttl_0_never_hits),
        cmocka_unit_test(cache_entry_expires_after_ttl),
        cmocka_unit_test(cache_distinct_entries_coexist_and_each_cache_has_its_own_key),
        cmocka_unit_test(cache_handles_rfc1929_maximum_lengths),

        cmocka_unit_test(verify_right_wrong_and_unknown_each_call_back_once_with_the_right_result),
        cmocka_unit_test(verify_success_is_cached_failure_is_not),
        cmocka_unit_test(verify_unknown_user_with_empty_users_file_fails),
        cmocka_unit_test(verify_with_a_users_password_under_another_name_fails),
        cmocka_unit_test(verify_maximum_length_credentials),
        cmocka_unit_test(cancel_prevents_the_callback_and_drops_the_queued_job_unhashed),
        cmocka_unit_test(a_full_queue_refuses_with_eagain_and_takes_work_again_once_drained),
        cmocka_unit_test(every_answer_waits_for_the_slowest_setting_of_the_file),
        cmocka_unit_test(users_settings_counts_algorithms_and_costs_not_salts),
        cmocka_unit_test(cancel_after_the_result_is_queued_still_drops_it),
        cmocka_unit_test(same_credentials_in_flight_share_one_verification),

        cmocka_unit_test(cache_takes_inputs_longer_than_rfc1929_without_overflow_or_collision),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
