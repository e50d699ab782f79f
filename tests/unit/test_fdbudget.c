/* Unit tests for src/fdbudget.c: the process's descriptor budget, and the
 * pipe pool and dial, which must fall back or refuse when it is spent.
 *
 * The budget is one process-wide counter: each test sets it up with
 * fdbudget_init and gives back everything it took. */
#include "unit_support.h"

#include "bufpool.h"
#include "dial.h"
#include "fdbudget.h"

/* With nofile 100, nothing open and no worker: 100 - (8 + 1) = 91 for
 * clients, of which 91 / 8 = 11 are the clients' reserve. */
#define NOFILE 100
#define LIMIT 91
#define RESERVE 11

static int setup(void **state)
{
    (void)state;
    fdbudget_init(NOFILE, 0, 0);
    return 0;
}

TEST(extras_stop_at_the_reserve_clients_may_use_it)
{
    for (int i = 0; i < LIMIT - RESERVE; i++)
        assert_true(fdbudget_take(1, FDB_EXTRA));
    assert_false(fdbudget_take(1, FDB_EXTRA));
    for (int i = 0; i < RESERVE; i++)
        assert_true(fdbudget_take(1, FDB_CLIENT));
    assert_false(fdbudget_take(1, FDB_CLIENT));
    fdbudget_give(LIMIT);
    assert_true(fdbudget_take(1, FDB_EXTRA));
    fdbudget_give(1);
}

TEST(a_refused_take_charges_nothing)
{
    assert_true(fdbudget_take(LIMIT - RESERVE - 2, FDB_EXTRA));
    assert_false(fdbudget_take(3, FDB_EXTRA)); /* all or nothing */
    assert_true(fdbudget_take(2, FDB_EXTRA));
    fdbudget_give(LIMIT - RESERVE);
}

TEST(tight_when_little_is_left)
{
    assert_false(fdbudget_tight());
    assert_true(fdbudget_take(LIMIT - 4 * RESERVE + 1, FDB_EXTRA));
    assert_true(fdbudget_tight());
    fdbudget_give(LIMIT - 4 * RESERVE + 1);
    assert_false(fdbudget_tight());
}

TEST(a_limit_below_what_is_open_leaves_nothing)
{
    fdbudget_init(NOFILE, NOFILE, 4);
    assert_false(fdbudget_take(1, FDB_CLIENT));
    assert_false(fdbudget_take(1, FDB_EXTRA));
}

TEST(no_pipe_beyond_the_budget_and_idle_pipes_close_when_tight)
{
    struct bufpool p;
    bufpool_init(&p, 8);
    assert_true(fdbudget_take(LIMIT - RESERVE - 2, FDB_EXTRA));
    struct relay_pipe *pp = bufpool_get_pipe(&p); /* the last two descriptors */
    assert_non_null(pp);
    assert_null(bufpool_get_pipe(&p)); /* the relay stays on buffers */
    bufpool_put_pipe(&p, pp, 0);       /* tight: closed, not pooled */
    assert_int_equal(p.npipes, 0);
    assert_true(fdbudget_take(2, FDB_EXTRA)); /* its charge came back */
    fdbudget_give(LIMIT - RESERVE);
    bufpool_destroy(&p);
}

static void on_dial_unused(void *owner, int fd, struct loop_io *io, int err,
                           const union addr_any *peer)
{
    (void)owner, (void)fd, (void)io, (void)err, (void)peer;
    fail_msg("a dial refused at start must not call back");
}

TEST(a_dial_that_cannot_afford_a_socket_fails_at_once_with_emfile)
{
    struct loop *l = loop_new();
    union addr_any to;
    int err = 0;
    assert_non_null(l);
    memset(&to, 0, sizeof to);
    to.in4.sin_family = AF_INET;
    to.in4.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    to.in4.sin_port = htons(9);
    assert_true(fdbudget_take(LIMIT - RESERVE, FDB_EXTRA));
    assert_null(dial_start(l, &to, 1, NULL, 1000, on_dial_unused, NULL, &err));
    assert_int_equal(err, EMFILE);
    fdbudget_give(LIMIT - RESERVE);
    loop_free(l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(extras_stop_at_the_reserve_clients_may_use_it, setup),
        cmocka_unit_test_setup(a_refused_take_charges_nothing, setup),
        cmocka_unit_test_setup(tight_when_little_is_left, setup),
        cmocka_unit_test_setup(a_limit_below_what_is_open_leaves_nothing, setup),
        cmocka_unit_test_setup(no_pipe_beyond_the_budget_and_idle_pipes_close_when_tight, setup),
        cmocka_unit_test_setup(a_dial_that_cannot_afford_a_socket_fails_at_once_with_emfile, setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
