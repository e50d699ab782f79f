/* Unit tests for src/worker.c: accepting, the session count, reloads,
 * draining and the worker's own thread, through a real worker
 * (worker_rig.h) and real clients on loopback. */
#include "worker_rig.h"

#include <sys/time.h>

TEST(queued_clients_all_become_sessions_and_the_counts_return_to_zero)
{
    struct rig r;
    int c[5];
    rig_start(&r, NULL);
    for (int i = 0; i < 5; i++)
        c[i] = rig_client(&r);
    RIG_UNTIL(&r, rig_sessions(&r) == 5);
    assert_int_equal(worker_sessions(r.w), 5);
    assert_int_equal(RIG_STAT(&r, active), 5);
    for (int i = 0; i < 5; i++)
        close(c[i]);
    RIG_UNTIL(&r, rig_sessions(&r) == 0);
    assert_int_equal(worker_sessions(r.w), 0);
    assert_int_equal(RIG_STAT(&r, active), 0);
    assert_int_equal(RIG_STAT(&r, probes), 5); /* closed without a byte */
    rig_stop(&r);
}

TEST(max_sessions_closes_connections_over_the_limit_at_accept)
{
    static const char *const opts[] = {"--max-sessions", "2", NULL};
    struct rig r;
    rig_start(&r, opts);
    int c1 = rig_client(&r), c2 = rig_client(&r);
    rig_greet(&r, c1);
    rig_greet(&r, c2);
    int c3 = rig_client(&r);
    rig_expect_closed(&r, c3);
    assert_int_equal(RIG_STAT(&r, refused_limit), 1);
    close(c1);
    RIG_UNTIL(&r, rig_sessions(&r) == 1);
    int c4 = rig_client(&r);
    rig_greet(&r, c4);
    close(c2);
    close(c3);
    close(c4);
    rig_stop(&r);
}

static void tunnel_still_works(struct rig *r, const struct rig_tunnel *tn)
{
    char buf[4];
    rig_send(tn->c, "ping", 4);
    rig_recv(r, tn->t, buf, 4);
    assert_memory_equal(buf, "ping", 4);
}

/* Hands the worker cfg with the listeners ls[0..n) and waits until its
 * loop has applied them. */
static void reload(struct rig *r, struct config *cfg, const struct worker_listen *ls, size_t n)
{
    assert_int_equal(worker_reload(r->w, cfg, ls, n), 0);
    config_unref(cfg);
    assert_true(worker_reload_pending(r->w));
    RIG_UNTIL(r, !worker_reload_pending(r->w));
}

TEST(reload_rules_apply_to_new_sessions_while_old_tunnels_go_on)
{
    static const char *const deny_all[] = {"--rule", "deny", NULL};
    struct rig r;
    struct rig_tunnel tn;
    rig_start(&r, NULL);
    rig_tunnel_open(&r, &tn);
    reload(&r, rig_config(deny_all), &r.ls, 1);

    int c = rig_client(&r);
    rig_expect_closed(&r, c); /* refused at accept by the new rules */
    close(c);
    assert_int_equal(RIG_STAT(&r, refused_rule), 1);
    tunnel_still_works(&r, &tn);
    assert_null(rig_session(&r)->cfg->rules); /* the tunnel keeps its snapshot */

    rig_tunnel_close(&tn);
    rig_stop(&r);
}

/* Sessions take no reference of their own: the worker holds one per
 * snapshot in use and gives an old one up with its last session. */
TEST(an_old_snapshot_is_kept_for_its_sessions_and_given_up_with_the_last)
{
    struct rig r;
    struct rig_tunnel tn;
    rig_start(&r, NULL);
    rig_tunnel_open(&r, &tn);
    int idle = rig_client(&r);
    RIG_UNTIL(&r, rig_sessions(&r) == 2);
    struct config *old = config_ref(rig_session(&r)->cfg);
    assert_int_equal(atomic_load(&old->refs), 2); /* the worker's and ours */
    reload(&r, rig_config(NULL), &r.ls, 1);
    assert_int_equal(atomic_load(&old->refs), 2); /* kept: two sessions use it */
    close(idle);
    RIG_UNTIL(&r, rig_sessions(&r) == 1);
    assert_int_equal(atomic_load(&old->refs), 2);
    tunnel_still_works(&r, &tn);
    rig_tunnel_close(&tn);
    RIG_UNTIL(&r, rig_sessions(&r) == 0);
    assert_int_equal(atomic_load(&old->refs), 1); /* the worker let it go */
    config_unref(old);
    rig_stop(&r);
}

TEST(reload_with_another_listener_closes_the_old_one_and_accepts_on_the_new)
{
    struct rig r;
    struct sockaddr_in old, fresh;
    rig_start(&r, NULL);
    old = r.proxy;
    struct worker_listen ls = {.spec = r.ls.spec};
    ls.fd = listen_loopback(&fresh, 8);
    set_nonblock(ls.fd);
    reload(&r, rig_config(NULL), &ls, 1);

    int p = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(p >= 0);
    assert_int_equal(connect(p, (struct sockaddr *)&old, sizeof old), -1);
    assert_int_equal(errno, ECONNREFUSED);
    close(p);
    r.proxy = fresh;
    int c = rig_client(&r);
    rig_greet(&r, c);
    close(c);
    rig_stop(&r);
}

TEST(drain_stops_accepting_and_closes_what_is_left_after_the_grace_period)
{
    static const char *const opts[] = {"--shutdown-grace", "200ms", NULL};
    struct rig r;
    struct rig_tunnel tn;
    rig_start(&r, opts);
    rig_tunnel_open(&r, &tn);
    struct sockaddr_in addr = r.proxy;
    worker_drain(r.w);
    RIG_UNTIL(&r, worker_draining(r.w));
    /* Armed in the turn that began the drain, the grace timer cannot have
     * fired yet: the tunnel is still there. */
    assert_int_equal(rig_sessions(&r), 1);

    int p = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(p >= 0);
    assert_int_equal(connect(p, (struct sockaddr *)&addr, sizeof addr), -1);
    assert_int_equal(errno, ECONNREFUSED);
    close(p);
    rig_expect_closed(&r, tn.c);
    assert_int_equal(rig_sessions(&r), 0);

    rig_tunnel_close(&tn);
    rig_stop(&r);
}

/* Blocking reads on a client of a worker that runs its own thread. */
static void recv_timed(int fd, void *buf, size_t len)
{
    struct timeval tv = {.tv_sec = WAIT_MS / 1000};
    assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv), 0);
    assert_int_equal(recv(fd, buf, len, MSG_WAITALL), (ssize_t)len);
}

TEST(started_worker_serves_on_its_thread_and_ends_once_drained_and_idle)
{
    struct rig r;
    uint8_t rsp[2];
    rig_start(&r, NULL);
    assert_int_equal(worker_start(r.w), 0);
    int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(c >= 0);
    assert_int_equal(connect(c, (struct sockaddr *)&r.proxy, sizeof r.proxy), 0);
    rig_send(c, "\x05\x01\x00", 3);
    recv_timed(c, rsp, 2);
    assert_memory_equal(rsp, "\x05\x00", 2);
    worker_drain(r.w);
    close(c); /* the last session ends: the thread may stop */
    uint64_t deadline = now_ms() + WAIT_MS;
    while (atomic_load(&g_workers_running) != 0 && now_ms() < deadline)
        sleep_ms(5);
    assert_int_equal(atomic_load(&g_workers_running), 0);
    worker_wait(r.w);
    rig_stop(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(queued_clients_all_become_sessions_and_the_counts_return_to_zero),
        cmocka_unit_test(max_sessions_closes_connections_over_the_limit_at_accept),
        cmocka_unit_test(reload_rules_apply_to_new_sessions_while_old_tunnels_go_on),
        cmocka_unit_test(an_old_snapshot_is_kept_for_its_sessions_and_given_up_with_the_last),
        cmocka_unit_test(reload_with_another_listener_closes_the_old_one_and_accepts_on_the_new),
        cmocka_unit_test(drain_stops_accepting_and_closes_what_is_left_after_the_grace_period),
        cmocka_unit_test(started_worker_serves_on_its_thread_and_ends_once_drained_and_idle),
    };
    return cmocka_run_group_tests(tests, rig_global_setup, rig_global_teardown);
}
