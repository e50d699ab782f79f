/* Unit tests for src/auth_pool.c: verification on the pool threads
 * delivered back through a real mailbox and event loop. The pool is started
 * once for the whole group (it is process-wide). */
#include "auth_support.h"

#include <errno.h>
#include <pthread.h>
#include <semaphore.h>

#include "auth_pool.h"
#include "loop.h"
#include "mailbox.h"

/* The verification queue's ceiling (AUTH_QUEUE_MAX in auth_pool.c). */
#define AUTH_TEST_MAX_QUEUE 4096
#define LONG_TTL 600000 /* never expires during a test */

static int group_setup(void **state)
{
    make_alg_hashes(state);
    return auth_pool_start(2);
}

static int group_teardown(void **state)
{
    (void)state;
    auth_pool_stop();
    return 0;
}

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

/* Mails in the mailbox now, without running the loop. */
static int mail_count(struct mailbox *mb)
{
    int n = 0;
    pthread_mutex_lock(&mb->mu);
    for (struct mail *m = mb->head; m; m = m->next)
        n++;
    pthread_mutex_unlock(&mb->mu);
    return n;
}

/* A worker freed while a hash of its runs: once auth_pool_release returns,
 * every answer is in its mailbox, so the mailbox may go and no pool thread
 * posts into freed memory (ASan would report it in harness_free's wake). */
TEST(release_posts_every_answer_before_it_returns)
{
    struct harness h;
    struct verify_rec busy[2], queued = {0};
    harness_init(&h, 1);
    occupy_pool(&h, busy);
    assert_non_null(auth_verify(h.users, alg_user[0], alg_pass[0], h.cache, on_verified, &queued));
    auth_pool_release(h.cache);
    assert_int_equal(mail_count(&h.mb), 3);
    drain(&h, 3);
    assert_int_equal(busy[0].calls, 1);
    assert_int_equal(busy[1].calls, 1);
    assert_int_equal(queued.calls, 1);
    /* A cache the pool never saw is released at once. */
    struct harness idle;
    harness_init(&idle, 0);
    auth_pool_release(idle.cache);
    assert_int_equal(mail_count(&idle.mb), 0);
    harness_free(&idle);
    harness_free(&h);
}

/* ---------------------------------------------------------------------------
 * Tasks: the pool's second kind of work (GSS-API context steps). */

struct test_task {
    struct auth_task t; /* first */
    sem_t *gate;        /* run() waits on it when set */
    int runs, answers, ran;
    pthread_t ran_on;
};

static void task_run(struct auth_task *t)
{
    struct test_task *x = (struct test_task *)t;
    if (x->gate)
        while (sem_wait(x->gate) < 0 && errno == EINTR)
            ;
    x->runs++;
    x->ran_on = pthread_self();
}

static void task_done(struct auth_task *t, int ran)
{
    struct test_task *x = (struct test_task *)t;
    x->answers++;
    x->ran = ran;
    answers++;
}

static void task_init(struct test_task *x, sem_t *gate)
{
    memset(x, 0, sizeof *x);
    x->t.run = task_run;
    x->t.done = task_done;
    x->gate = gate;
}

TEST(task_runs_on_a_pool_thread_and_answers_on_the_loop)
{
    struct harness h;
    struct test_task x;
    harness_init(&h, 0);
    task_init(&x, NULL);
    assert_int_equal(auth_pool_submit(&x.t, h.cache), 0);
    drain(&h, 1);
    assert_int_equal(x.runs, 1);
    assert_int_equal(x.answers, 1);
    assert_int_equal(x.ran, 1);
    assert_false(pthread_equal(x.ran_on, pthread_self()));
    /* It ran: too late to take back, and nothing more comes. */
    assert_int_equal(auth_pool_withdraw(&x.t), 0);
    assert_int_equal(loop_run_once(h.l, 0), 0);
    assert_int_equal(x.answers, 1);
    harness_free(&h);
}

TEST(task_withdrawn_while_queued_never_runs_nor_answers)
{
    struct harness h;
    struct test_task busy[2], queued;
    sem_t gate;
    harness_init(&h, 0);
    assert_int_equal(sem_init(&gate, 0, 0), 0);
    /* Both pool threads block in a task, so the third stays queued. */
    for (int i = 0; i < 2; i++) {
        task_init(&busy[i], &gate);
        assert_int_equal(auth_pool_submit(&busy[i].t, h.cache), 0);
    }
    task_init(&queued, NULL);
    assert_int_equal(auth_pool_submit(&queued.t, h.cache), 0);
    assert_int_equal(auth_pool_withdraw(&queued.t), 1);
    assert_int_equal(sem_post(&gate), 0);
    assert_int_equal(sem_post(&gate), 0);
    drain(&h, 2);
    assert_int_equal(busy[0].answers + busy[1].answers, 2);
    assert_int_equal(queued.runs, 0);
    assert_int_equal(queued.answers, 0);
    sem_destroy(&gate);
    harness_free(&h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(verify_right_wrong_and_unknown_each_call_back_once_with_the_right_result),
        cmocka_unit_test(verify_success_is_cached_failure_is_not),
        cmocka_unit_test(verify_unknown_user_with_empty_users_file_fails),
        cmocka_unit_test(verify_with_a_users_password_under_another_name_fails),
        cmocka_unit_test(verify_maximum_length_credentials),
        cmocka_unit_test(cancel_prevents_the_callback_and_drops_the_queued_job_unhashed),
        cmocka_unit_test(a_full_queue_refuses_with_eagain_and_takes_work_again_once_drained),
        cmocka_unit_test(every_answer_waits_for_the_slowest_setting_of_the_file),
        cmocka_unit_test(same_credentials_in_flight_share_one_verification),
        cmocka_unit_test(cancel_after_the_result_is_queued_still_drops_it),
        cmocka_unit_test(release_posts_every_answer_before_it_returns),
        cmocka_unit_test(task_runs_on_a_pool_thread_and_answers_on_the_loop),
        cmocka_unit_test(task_withdrawn_while_queued_never_runs_nor_answers),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
