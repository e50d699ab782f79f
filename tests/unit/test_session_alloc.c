/* Unit tests for the memory of src/session.c: the handshake state (struct
 * session_hs, taken at accept, given back when the relay or the UDP
 * association starts) and the state only some sessions use (struct
 * session_ext, taken at its first use). An idle tunnel must hold neither.
 * When one cannot be allocated the session must end cleanly, with the
 * reply its protocol gives (REP 1, SOCKS4 0x5B) or a plain close, and leave
 * nothing behind: the rig checks the session count and the descriptors,
 * ASan the memory.
 *
 * calloc is wrapped at link time (-Wl,--wrap=calloc, see the Makefile):
 * while a size is armed, a calloc of one object of exactly that size fails
 * with ENOMEM and is counted, so a test also proves that the failure it
 * is about did happen. */
#include "worker_rig.h"

void *__real_calloc(size_t n, size_t size);
void *__wrap_calloc(size_t n, size_t size);

static size_t fail_size; /* 0: nothing fails */
static unsigned failed;  /* callocs made to fail since arm() */

void *__wrap_calloc(size_t n, size_t size)
{
    if (fail_size && n == 1 && size == fail_size) {
        failed++;
        errno = ENOMEM;
        return NULL;
    }
    return __real_calloc(n, size);
}

static void arm(size_t size)
{
    fail_size = size;
    failed = 0;
}

static void disarm(void)
{
    fail_size = 0;
}

/* No byte comes back: the session is closed at accept. */
TEST(no_memory_for_the_handshake_state_closes_the_connection_at_accept)
{
    struct rig r;
    rig_start(&r, NULL);
    arm(sizeof(struct session_hs));
    int c = rig_client(&r);
    rig_send(c, "\x05\x01\x00", 3);
    rig_expect_closed(&r, c);
    assert_int_equal(failed, 1);
    disarm();
    assert_int_equal(rig_sessions(&r), 0);
    close(c);
    /* The worker serves the next client as usual. */
    c = rig_client(&r);
    rig_greet(&r, c);
    close(c);
    rig_stop(&r);
}

TEST(no_memory_for_a_socks4_userid_gets_0x5b_and_close)
{
    static const char *const opts[] = {"--socks4", NULL};
    /* CONNECT 127.0.0.1:80, USERID "bob" */
    static const uint8_t req[] = {4, 1, 0, 80, 127, 0, 0, 1, 'b', 'o', 'b', 0};
    uint8_t rsp[8];
    struct rig r;
    rig_start(&r, opts);
    arm(sizeof(struct session_ext));
    int c = rig_client(&r);
    rig_send(c, req, sizeof req);
    rig_recv(&r, c, rsp, sizeof rsp);
    assert_int_equal(rsp[0], 0);
    assert_int_equal(rsp[1], 0x5b);
    rig_expect_closed(&r, c);
    assert_int_equal(failed, 1);
    disarm();
    RIG_UNTIL(&r, rig_sessions(&r) == 0);
    close(c);
    rig_stop(&r);
}

TEST(no_memory_for_a_udp_association_gets_rep_1_and_close)
{
    struct rig r;
    rig_start(&r, NULL);
    arm(sizeof(struct session_ext));
    int c = rig_client(&r);
    rig_greet(&r, c);
    rig_request4(c, SOCKS5_CMD_UDP, "0.0.0.0", 0);
    assert_int_equal(rig_reply(&r, c, NULL), SOCKS5_REP_GENERAL_FAILURE);
    rig_expect_closed(&r, c);
    assert_int_equal(failed, 1);
    disarm();
    RIG_UNTIL(&r, rig_sessions(&r) == 0);
    close(c);
    rig_stop(&r);
}

TEST(no_memory_to_note_the_route_gets_rep_1_and_close)
{
    static const char *const opts[] = {"--route", "to any via direct", NULL};
    struct rig r;
    struct sockaddr_in ta;
    rig_start(&r, opts);
    int lfd = listen_loopback(&ta, 4);
    arm(sizeof(struct session_ext));
    int c = rig_client(&r);
    rig_greet(&r, c);
    rig_request4(c, SOCKS5_CMD_CONNECT, "127.0.0.1", ntohs(ta.sin_port));
    assert_int_equal(rig_reply(&r, c, NULL), SOCKS5_REP_GENERAL_FAILURE);
    rig_expect_closed(&r, c);
    assert_int_equal(failed, 1);
    disarm();
    RIG_UNTIL(&r, rig_sessions(&r) == 0);
    close(c);
    close(lfd);
    rig_stop(&r);
}

/* A plain tunnel needs no extra state until one round moves its whole
 * budget (RELAY_BUDGET) and the rest must wait for the next round: then
 * the deferred call needs a place, and without one the tunnel ends. */
TEST(no_memory_when_a_tunnel_first_runs_out_of_budget_closes_it)
{
    enum { CHUNK = 64 * 1024, TOTAL = 16 * 1024 * 1024 };
    static uint8_t buf[CHUNK];
    struct rig r;
    struct rig_tunnel tn;
    size_t sent = 0;
    uint64_t deadline;
    rig_start(&r, NULL);
    rig_tunnel_open(&r, &tn);
    assert_null(rig_session(&r)->ext); /* nothing extra so far */
    arm(sizeof(struct session_ext));
    /* The target sends while the client reads everything: bulk, both
     * sockets ready, so a round ends only on its budget. */
    deadline = now_ms() + WAIT_MS;
    while (rig_sessions(&r) == 1 && sent < TOTAL) {
        ssize_t n;
        while (sent < TOTAL && (n = send(tn.t, buf, sizeof buf, MSG_NOSIGNAL)) > 0)
            sent += (size_t)n;
        while (recv(tn.c, buf, sizeof buf, 0) > 0)
            ;
        rig_turn(&r);
        if (now_ms() > deadline)
            fail_msg("tunnel still up after %d ms, %zu bytes sent", WAIT_MS, sent);
    }
    assert_int_equal(failed, 1);
    disarm();
    assert_int_equal(rig_sessions(&r), 0);
    rig_tunnel_close(&tn);
    rig_stop(&r);
}

/* What the allocations above buy: a quiet tunnel that has relayed both
 * ways holds its struct session and nothing else (no handshake state, no
 * extra state, no buffer, no pipe). */
TEST(an_idle_tunnel_holds_only_its_session)
{
    struct rig r;
    struct rig_tunnel tn;
    uint8_t b[5];
    rig_start(&r, NULL);
    rig_tunnel_open(&r, &tn);
    rig_send(tn.c, "hello", 5);
    rig_recv(&r, tn.t, b, 5);
    rig_send(tn.t, "world", 5);
    rig_recv(&r, tn.c, b, 5);
    rig_turn(&r);
    const struct session *s = rig_session(&r);
    assert_null(s->hs);
    assert_null(s->ext);
    assert_null(s->relay.up.buf);
    assert_null(s->relay.down.buf);
    assert_null(s->relay.up.pipe);
    assert_null(s->relay.down.pipe);
    rig_tunnel_close(&tn);
    rig_stop(&r);
}

/* A UDP association keeps its association, not its handshake state. */
TEST(a_udp_association_gives_back_its_handshake_state)
{
    struct rig r;
    rig_start(&r, NULL);
    int c = rig_client(&r);
    rig_greet(&r, c);
    rig_request4(c, SOCKS5_CMD_UDP, "0.0.0.0", 0);
    assert_int_equal(rig_reply(&r, c, NULL), SOCKS5_REP_SUCCEEDED);
    const struct session *s = rig_session(&r);
    assert_null(s->hs);
    assert_non_null(s->ext);
    assert_non_null(s->ext->udp);
    close(c);
    RIG_UNTIL(&r, rig_sessions(&r) == 0);
    rig_stop(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(no_memory_for_the_handshake_state_closes_the_connection_at_accept),
        cmocka_unit_test(no_memory_for_a_socks4_userid_gets_0x5b_and_close),
        cmocka_unit_test(no_memory_for_a_udp_association_gets_rep_1_and_close),
        cmocka_unit_test(no_memory_to_note_the_route_gets_rep_1_and_close),
        cmocka_unit_test(no_memory_when_a_tunnel_first_runs_out_of_budget_closes_it),
        cmocka_unit_test(an_idle_tunnel_holds_only_its_session),
        cmocka_unit_test(a_udp_association_gives_back_its_handshake_state),
    };
    return cmocka_run_group_tests(tests, rig_global_setup, rig_global_teardown);
}
