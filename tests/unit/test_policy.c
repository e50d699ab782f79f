/* Unit tests for src/policy.c: the verdict at each point a session passes
 * (accept, request, every resolved address) and the limits it takes and
 * gives back, through the wire of a real worker (worker_rig.h). A refused
 * request must end in REP 2; a client refused at accept gets no byte. */
#include "worker_rig.h"

/* Greets and sends CONNECT ip:port; returns REP. */
static uint8_t connect4(struct rig *r, int c, const char *ip, uint16_t port)
{
    rig_greet(r, c);
    rig_request4(c, SOCKS5_CMD_CONNECT, ip, port);
    return rig_reply(r, c, NULL);
}

static uint8_t connect_name(struct rig *r, int c, const char *name, uint16_t port)
{
    rig_greet(r, c);
    rig_request_name(c, SOCKS5_CMD_CONNECT, name, port);
    return rig_reply(r, c, NULL);
}

/* A target listener of the test's; returns its port (host order). */
static uint16_t target(int *lfd)
{
    struct sockaddr_in a;
    *lfd = listen_loopback(&a, 8);
    set_nonblock(*lfd);
    return ntohs(a.sin_port);
}

TEST(client_denied_by_rule_is_closed_at_accept_without_a_byte)
{
    static const char *const opts[] = {"--rule", "deny from 127.0.0.0/8", "--rule", "allow", NULL};
    struct rig r;
    rig_start(&r, opts);
    int c = rig_client(&r);
    rig_send(c, "\x05\x01\x00", 3);
    rig_expect_closed(&r, c);
    assert_int_equal(RIG_STAT(&r, refused_rule), 1);
    close(c);
    rig_stop(&r);
}

TEST(request_denied_by_port_gets_rep_2_other_ports_pass)
{
    /* Targets opened before the rig outlive it: its descriptor check
     * counts them on both sides. */
    struct rig r;
    int lfd, lfd2;
    uint16_t denied = target(&lfd), open = target(&lfd2);
    char rule[64];
    snprintf(rule, sizeof rule, "deny cmd connect port %u", denied);
    const char *opts[] = {"--rule", rule, "--rule", "allow", NULL};
    rig_start(&r, opts);
    int c = rig_client(&r);
    assert_int_equal(connect4(&r, c, "127.0.0.1", denied), SOCKS5_REP_NOT_ALLOWED);
    rig_expect_closed(&r, c);
    close(c);
    c = rig_client(&r);
    assert_int_equal(connect4(&r, c, "127.0.0.1", open), SOCKS5_REP_SUCCEEDED);
    int t = rig_accept(&r, lfd2);
    close(t);
    close(c);
    assert_int_equal(RIG_STAT(&r, refused_rule), 1);
    rig_stop(&r);
    close(lfd);
    close(lfd2);
}

TEST(name_denied_by_a_pattern_gets_rep_2_without_being_looked_up)
{
    static const char *const opts[] = {"--rule", "deny to *.blocked.test", "--rule", "allow", NULL};
    struct rig r;
    rig_start(&r, opts);
    int c = rig_client(&r);
    /* A lookup would fail (no such name): REP 4, not 2, and a DNS failure. */
    assert_int_equal(connect_name(&r, c, "www.blocked.test", 80), SOCKS5_REP_NOT_ALLOWED);
    rig_expect_closed(&r, c);
    assert_int_equal(RIG_STAT(&r, dns_failures), 0);
    close(c);
    rig_stop(&r);
}

TEST(name_whose_every_address_is_denied_gets_rep_2)
{
    static const char *const opts[] = {"--rule", "deny to 127.0.0.1,::1", "--rule", "allow", NULL};
    struct rig r;
    rig_start(&r, opts);
    int c = rig_client(&r);
    assert_int_equal(connect_name(&r, c, RIG_NAME, 80), SOCKS5_REP_NOT_ALLOWED);
    rig_expect_closed(&r, c);
    close(c);
    rig_stop(&r);
}

TEST(denied_addresses_of_a_name_are_skipped_and_the_allowed_one_is_dialed)
{
    static const char *const opts[] = {"--rule", "deny to ::1", "--rule", "allow", NULL};
    struct rig r;
    int lfd;
    uint16_t port = target(&lfd);
    rig_start(&r, opts);
    int c = rig_client(&r);
    assert_int_equal(connect_name(&r, c, RIG_NAME, port), SOCKS5_REP_SUCCEEDED);
    int t = rig_accept(&r, lfd);
    assert_int_equal(rig_session(&r)->peer.sa.sa_family, AF_INET);
    close(t);
    close(c);
    rig_stop(&r);
    close(lfd);
}

TEST(udp_associate_with_no_destination_allowed_gets_rep_2)
{
    static const char *const opts[] = {"--rule", "allow cmd connect", "--rule", "deny", NULL};
    rig_expect_request_refused(opts, SOCKS5_CMD_UDP, SOCKS5_REP_NOT_ALLOWED);
}

TEST(per_ip_limit_closes_the_extra_client_and_frees_its_slot_at_close)
{
    static const char *const opts[] = {"--max-sessions-per-ip", "1", NULL};
    struct rig r;
    rig_start(&r, opts);
    int c1 = rig_client_from(&r, "127.0.0.11");
    rig_greet(&r, c1);
    int c2 = rig_client_from(&r, "127.0.0.11");
    rig_send(c2, "\x05\x01\x00", 3);
    rig_expect_closed(&r, c2);
    assert_int_equal(RIG_STAT(&r, refused_limit), 1);
    int other = rig_client_from(&r, "127.0.0.12"); /* another address is not limited */
    rig_greet(&r, other);
    close(c1);
    RIG_UNTIL(&r, rig_sessions(&r) == 1);
    int c3 = rig_client_from(&r, "127.0.0.11");
    rig_greet(&r, c3);
    close(c2);
    close(c3);
    close(other);
    rig_stop(&r);
}

TEST(handshake_slot_is_taken_at_accept_and_given_back_at_the_request)
{
    static const char *const opts[] = {"--max-handshakes", "1", NULL};
    struct rig r;
    struct sockaddr_in closed;
    rig_start(&r, opts);
    closed_loopback_port(&closed);
    int c1 = rig_client(&r);
    RIG_UNTIL(&r, rig_sessions(&r) == 1); /* silent, yet holding the slot */
    int c2 = rig_client(&r);
    rig_expect_closed(&r, c2);
    assert_int_equal(RIG_STAT(&r, refused_limit), 1);
    /* The request ends c1's handshake even while its dial is out. */
    rig_greet(&r, c1);
    rig_request4(c1, SOCKS5_CMD_CONNECT, "127.0.0.1", ntohs(closed.sin_port));
    int c3 = rig_client(&r);
    rig_greet(&r, c3);
    close(c1);
    close(c2);
    close(c3);
    rig_stop(&r);
}

TEST(per_user_limit_refuses_the_extra_request_with_rep_2)
{
    const char *opts[] = {
        "--users", rig_users_path(), "--auth", "userpass", "--max-sessions-per-user", "1", NULL};
    struct rig r;
    int lfd;
    uint16_t port = target(&lfd);
    rig_start(&r, opts);
    int c1 = rig_client(&r);
    assert_int_equal(rig_login(&r, c1, "secret"), 0);
    rig_request4(c1, SOCKS5_CMD_CONNECT, "127.0.0.1", port);
    assert_int_equal(rig_reply(&r, c1, NULL), SOCKS5_REP_SUCCEEDED);
    int t = rig_accept(&r, lfd);
    int c2 = rig_client(&r);
    assert_int_equal(rig_login(&r, c2, "secret"), 0);
    rig_request4(c2, SOCKS5_CMD_CONNECT, "127.0.0.1", port);
    assert_int_equal(rig_reply(&r, c2, NULL), SOCKS5_REP_NOT_ALLOWED);
    rig_expect_closed(&r, c2);
    close(t);
    close(c1);
    close(c2);
    rig_stop(&r);
    close(lfd);
}

TEST(rule_naming_the_user_refuses_that_user_with_rep_2)
{
    const char *opts[] = {"--users",         rig_users_path(), "--auth", "userpass", "--rule",
                          "deny user alice", "--rule",         "allow",  NULL};
    struct rig r;
    rig_start(&r, opts);
    int c = rig_client(&r);
    assert_int_equal(rig_login(&r, c, "secret"), 0);
    rig_request4(c, SOCKS5_CMD_CONNECT, "127.0.0.1", 80);
    assert_int_equal(rig_reply(&r, c, NULL), SOCKS5_REP_NOT_ALLOWED);
    rig_expect_closed(&r, c);
    close(c);
    rig_stop(&r);
}

TEST(failed_logins_throttle_the_address_even_for_the_right_password)
{
    const char *opts[] = {
        "--users", rig_users_path(),       "--auth", "userpass", "--auth-fail-limit",
        "2",       "--auth-fail-cooldown", "1h",     NULL};
    struct rig r;
    rig_start(&r, opts);
    for (int i = 0; i < 2; i++) {
        int c = rig_client_from(&r, "127.0.0.21");
        assert_int_equal(rig_login(&r, c, "wrong"), 1);
        rig_expect_closed(&r, c);
        close(c);
    }
    int c = rig_client_from(&r, "127.0.0.21");
    assert_int_equal(rig_login(&r, c, "secret"), 1);
    rig_expect_closed(&r, c);
    close(c);
    assert_int_equal(RIG_STAT(&r, auth_fail), 2); /* the third was never checked */
    assert_int_equal(RIG_STAT(&r, auth_ok), 0);
    assert_int_equal(RIG_STAT(&r, handshake_fail[HSF_THROTTLED]), 1);
    c = rig_client_from(&r, "127.0.0.22"); /* another address logs in */
    assert_int_equal(rig_login(&r, c, "secret"), 0);
    close(c);
    rig_stop(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(client_denied_by_rule_is_closed_at_accept_without_a_byte),
        cmocka_unit_test(request_denied_by_port_gets_rep_2_other_ports_pass),
        cmocka_unit_test(name_denied_by_a_pattern_gets_rep_2_without_being_looked_up),
        cmocka_unit_test(name_whose_every_address_is_denied_gets_rep_2),
        cmocka_unit_test(denied_addresses_of_a_name_are_skipped_and_the_allowed_one_is_dialed),
        cmocka_unit_test(udp_associate_with_no_destination_allowed_gets_rep_2),
        cmocka_unit_test(per_ip_limit_closes_the_extra_client_and_frees_its_slot_at_close),
        cmocka_unit_test(handshake_slot_is_taken_at_accept_and_given_back_at_the_request),
        cmocka_unit_test(per_user_limit_refuses_the_extra_request_with_rep_2),
        cmocka_unit_test(rule_naming_the_user_refuses_that_user_with_rep_2),
        cmocka_unit_test(failed_logins_throttle_the_address_even_for_the_right_password),
    };
    return cmocka_run_group_tests(tests, rig_global_setup, rig_global_teardown);
}
