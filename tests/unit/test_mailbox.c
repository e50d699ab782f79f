/* Unit tests for src/mailbox.c: a worker's cross-thread inbox.
 *
 * Posts come from real threads while the receiving loop runs; assertions are
 * about delivery (each message once, per-sender order), never about speed.
 * Every wait is bounded by WAIT_MS. */
#include "unit_support.h"

#include <pthread.h>

#include "loop.h"
#include "mailbox.h"

#define SENDERS 4
#define PER_SENDER 1000

struct msg {
    struct mail m;
    int sender;
    int seq;
    int delivered; /* touched only on the receiving thread */
};

static struct msg msgs[SENDERS][PER_SENDER];
static int next_seq[SENDERS];
static int total;
static int out_of_order, duplicates;
static pthread_t loop_thread;
static int wrong_thread;

static void on_msg(struct mail *m)
{
    struct msg *x = container_of(m, struct msg, m);
    if (!pthread_equal(pthread_self(), loop_thread))
        wrong_thread++;
    if (x->delivered++)
        duplicates++;
    if (x->seq != next_seq[x->sender])
        out_of_order++;
    next_seq[x->sender] = x->seq + 1;
    total++;
}

struct sender {
    struct mailbox *mb;
    pthread_barrier_t *start;
    int id;
};

static void *sender_main(void *arg)
{
    struct sender *s = arg;
    pthread_barrier_wait(s->start);
    for (int i = 0; i < PER_SENDER; i++)
        mailbox_post(s->mb, &msgs[s->id][i].m, on_msg);
    return NULL;
}

static void run_until_count(struct loop *l, const int *count, int want)
{
    uint64_t deadline = now_ms() + WAIT_MS;
    while (*count < want && now_ms() < deadline)
        assert_true(loop_run_once(l, 100) >= 0);
}

TEST(posts_from_four_threads_arrive_once_each_in_per_thread_order)
{
    struct loop *l = loop_new();
    struct mailbox mb;
    pthread_t th[SENDERS];
    struct sender s[SENDERS];
    pthread_barrier_t start;
    assert_non_null(l);
    assert_int_equal(mailbox_init(&mb, l), 0);
    memset(msgs, 0, sizeof msgs);
    memset(next_seq, 0, sizeof next_seq);
    total = out_of_order = duplicates = wrong_thread = 0;
    loop_thread = pthread_self();
    for (int t = 0; t < SENDERS; t++)
        for (int i = 0; i < PER_SENDER; i++)
            msgs[t][i].sender = t, msgs[t][i].seq = i;

    assert_int_equal(pthread_barrier_init(&start, NULL, SENDERS), 0);
    for (int t = 0; t < SENDERS; t++) {
        s[t] = (struct sender){.mb = &mb, .start = &start, .id = t};
        assert_int_equal(pthread_create(&th[t], NULL, sender_main, &s[t]), 0);
    }
    /* The loop runs while the senders post: deliveries interleave with posts. */
    run_until_count(l, &total, SENDERS * PER_SENDER);
    for (int t = 0; t < SENDERS; t++)
        assert_int_equal(pthread_join(th[t], NULL), 0);
    pthread_barrier_destroy(&start);
    run_until_count(l, &total, SENDERS * PER_SENDER);

    /* A few more rounds deliver nothing more: no message came twice. */
    for (int i = 0; i < 3; i++)
        assert_true(loop_run_once(l, 0) >= 0);
    assert_int_equal(total, SENDERS * PER_SENDER);
    assert_int_equal(duplicates, 0);
    assert_int_equal(out_of_order, 0);
    assert_int_equal(wrong_thread, 0);
    for (int t = 0; t < SENDERS; t++) {
        assert_int_equal(next_seq[t], PER_SENDER);
        for (int i = 0; i < PER_SENDER; i++)
            assert_int_equal(msgs[t][i].delivered, 1);
    }
    mailbox_destroy(&mb, l);
    loop_free(l);
}

/* A handler that posts a follow-up to the same mailbox (a reply bounced back
 * to the same worker). */
static struct mailbox *self_mb;
static struct msg first, second;
static int rounds_seen;
static int first_at_round, second_at_round;

static void on_second(struct mail *m)
{
    assert_ptr_equal(m, &second.m);
    second.delivered++;
    second_at_round = rounds_seen;
}

static void on_first(struct mail *m)
{
    assert_ptr_equal(m, &first.m);
    first.delivered++;
    first_at_round = rounds_seen;
    mailbox_post(self_mb, &second.m, on_second);
}

TEST(post_from_inside_a_handler_is_delivered_in_this_or_the_next_round)
{
    struct loop *l = loop_new();
    struct mailbox mb;
    assert_non_null(l);
    assert_int_equal(mailbox_init(&mb, l), 0);
    self_mb = &mb;
    memset(&first, 0, sizeof first);
    memset(&second, 0, sizeof second);
    first_at_round = second_at_round = -1;
    rounds_seen = 0;

    mailbox_post(&mb, &first.m, on_first);
    uint64_t deadline = now_ms() + WAIT_MS;
    while (!second.delivered && now_ms() < deadline) {
        int n = loop_run_once(l, 100);
        assert_true(n >= 0);
        /* Count only rounds that handled an event (a timed-out wait is not
         * a delivery round). */
        if (n > 0)
            rounds_seen++;
    }
    assert_int_equal(first.delivered, 1);
    assert_int_equal(second.delivered, 1);
    /* The follow-up needed at most one more round after the first message. */
    assert_int_equal(first_at_round, 0);
    assert_true(second_at_round == 0 || second_at_round == 1);
    for (int i = 0; i < 3; i++)
        assert_true(loop_run_once(l, 0) >= 0);
    assert_int_equal(first.delivered, 1);
    assert_int_equal(second.delivered, 1);
    mailbox_destroy(&mb, l);
    loop_free(l);
}

TEST(post_before_the_loop_runs_is_not_lost_and_mailbox_is_reusable)
{
    struct loop *l = loop_new();
    struct mailbox mb;
    static struct msg a[3];
    assert_non_null(l);
    assert_int_equal(mailbox_init(&mb, l), 0);
    memset(a, 0, sizeof a);
    memset(next_seq, 0, sizeof next_seq);
    total = out_of_order = duplicates = wrong_thread = 0;
    loop_thread = pthread_self();
    for (int i = 0; i < 3; i++)
        a[i].seq = i;
    /* Two posts, one delivery round, then a third post after the inbox emptied. */
    mailbox_post(&mb, &a[0].m, on_msg);
    mailbox_post(&mb, &a[1].m, on_msg);
    run_until_count(l, &total, 2);
    assert_int_equal(total, 2);
    mailbox_post(&mb, &a[2].m, on_msg);
    run_until_count(l, &total, 3);
    assert_int_equal(total, 3);
    assert_int_equal(out_of_order, 0);
    assert_int_equal(duplicates, 0);
    mailbox_destroy(&mb, l);
    loop_free(l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(posts_from_four_threads_arrive_once_each_in_per_thread_order),
        cmocka_unit_test(post_from_inside_a_handler_is_delivered_in_this_or_the_next_round),
        cmocka_unit_test(post_before_the_loop_runs_is_not_lost_and_mailbox_is_reusable),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
