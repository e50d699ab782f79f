/* Unit tests for src/session.c: the SOCKS5 handshake (RFC 1928, RFC 1929)
 * and CONNECT, through the wire of a real worker (worker_rig.h). Targets
 * are loopback listeners of the test's; every reply is read and checked
 * byte for byte, and a refused request must end in the RFC's REP code. */
#include "worker_rig.h"

static void expect_bytes(struct rig *r, int fd, const char *want)
{
    char buf[64];
    size_t n = strlen(want);
    rig_recv(r, fd, buf, n);
    assert_memory_equal(buf, want, n);
}

TEST(connect_tunnels_bytes_and_passes_each_half_close_on)
{
    struct rig r;
    struct rig_tunnel tn;
    rig_start(&r, NULL);
    rig_tunnel_open(&r, &tn);

    rig_send(tn.c, "request", 7);
    expect_bytes(&r, tn.t, "request");
    rig_send(tn.t, "answer", 6);
    expect_bytes(&r, tn.c, "answer");
    /* The client's FIN reaches the target; the answer still flows back. */
    assert_int_equal(shutdown(tn.c, SHUT_WR), 0);
    rig_expect_closed(&r, tn.t);
    rig_send(tn.t, "tail", 4);
    expect_bytes(&r, tn.c, "tail");
    assert_int_equal(shutdown(tn.t, SHUT_WR), 0);
    rig_expect_closed(&r, tn.c);
    RIG_UNTIL(&r, rig_sessions(&r) == 0);
    assert_int_equal(RIG_STAT(&r, bytes_up), 7);
    assert_int_equal(RIG_STAT(&r, bytes_down), 10);

    rig_tunnel_close(&tn);
    rig_stop(&r);
}

TEST(greeting_request_and_data_in_one_segment_all_arrive)
{
    struct rig r;
    struct sockaddr_in ta;
    uint8_t msg[3 + 10 + 5] = {5, 1, 0, 5, SOCKS5_CMD_CONNECT, 0, SOCKS5_ATYP_IPV4, 127, 0, 0, 1};
    uint8_t rsp[2];
    rig_start(&r, NULL);
    int lfd = listen_loopback(&ta, 4);
    set_nonblock(lfd);
    memcpy(msg + 11, &ta.sin_port, 2);
    memcpy(msg + 13, "early", 5);
    int c = rig_client(&r);
    rig_send(c, msg, sizeof msg);
    rig_recv(&r, c, rsp, 2);
    assert_memory_equal(rsp, "\x05\x00", 2);
    assert_int_equal(rig_reply(&r, c, NULL), SOCKS5_REP_SUCCEEDED);
    int t = rig_accept(&r, lfd);
    expect_bytes(&r, t, "early");

    close(t);
    close(lfd);
    close(c);
    rig_stop(&r);
}

TEST(handshake_sent_one_byte_at_a_time_is_parsed_the_same)
{
    struct rig r;
    struct sockaddr_in ta;
    uint8_t msg[3 + 10] = {5, 1, 0, 5, SOCKS5_CMD_CONNECT, 0, SOCKS5_ATYP_IPV4, 127, 0, 0, 1};
    uint8_t rsp[2];
    rig_start(&r, NULL);
    int lfd = listen_loopback(&ta, 4);
    set_nonblock(lfd);
    memcpy(msg + 11, &ta.sin_port, 2);
    int c = rig_client(&r);
    for (size_t i = 0; i < sizeof msg; i++) {
        rig_send(c, msg + i, 1);
        rig_turn(&r);
        rig_turn(&r);
    }
    rig_recv(&r, c, rsp, 2);
    assert_memory_equal(rsp, "\x05\x00", 2);
    assert_int_equal(rig_reply(&r, c, NULL), SOCKS5_REP_SUCCEEDED);
    int t = rig_accept(&r, lfd);

    close(t);
    close(lfd);
    close(c);
    rig_stop(&r);
}

TEST(no_acceptable_method_gets_0xff_then_close)
{
    struct rig r;
    uint8_t rsp[2];
    rig_start(&r, NULL);
    int c = rig_client(&r);
    rig_send(c, "\x05\x02\x01\x02", 4); /* GSSAPI, user/password: none offered */
    rig_recv(&r, c, rsp, 2);
    assert_memory_equal(rsp, "\x05\xff", 2);
    rig_expect_closed(&r, c);
    assert_int_equal(RIG_STAT(&r, handshake_fail[HSF_NO_METHOD]), 1);
    close(c);
    rig_stop(&r);
}

TEST(socks4_or_garbage_greeting_is_closed_without_a_reply)
{
    struct rig r;
    rig_start(&r, NULL);
    int c = rig_client(&r);
    rig_send(c, "\x04\x01\x00\x50\x7f\x00\x00\x01", 8);
    rig_expect_closed(&r, c);
    assert_int_equal(RIG_STAT(&r, handshake_fail[HSF_PROTOCOL]), 1);
    close(c);
    rig_stop(&r);
}

TEST(unknown_command_gets_rep_7_and_unknown_atyp_rep_8)
{
    static const uint8_t bad_cmd[10] = {5, 9, 0, SOCKS5_ATYP_IPV4, 127, 0, 0, 1, 0, 80};
    static const uint8_t bad_atyp[10] = {5, SOCKS5_CMD_CONNECT, 0, 7, 127, 0, 0, 1, 0, 80};
    struct rig r;
    rig_start(&r, NULL);
    int c = rig_client(&r);
    rig_greet(&r, c);
    rig_send(c, bad_cmd, sizeof bad_cmd);
    assert_int_equal(rig_reply(&r, c, NULL), SOCKS5_REP_CMD_UNSUPPORTED);
    rig_expect_closed(&r, c);
    close(c);
    c = rig_client(&r);
    rig_greet(&r, c);
    rig_send(c, bad_atyp, sizeof bad_atyp);
    assert_int_equal(rig_reply(&r, c, NULL), SOCKS5_REP_ATYP_UNSUPPORTED);
    rig_expect_closed(&r, c);
    close(c);
    rig_stop(&r);
}

TEST(connect_to_a_closed_port_gets_rep_5_connection_refused)
{
    struct rig r;
    struct sockaddr_in closed;
    rig_start(&r, NULL);
    closed_loopback_port(&closed);
    int c = rig_client(&r);
    rig_greet(&r, c);
    rig_request4(c, SOCKS5_CMD_CONNECT, "127.0.0.1", ntohs(closed.sin_port));
    assert_int_equal(rig_reply(&r, c, NULL), SOCKS5_REP_CONN_REFUSED);
    rig_expect_closed(&r, c);
    close(c);
    rig_stop(&r);
}

TEST(connect_by_name_resolves_and_reaches_the_address_that_answers)
{
    struct rig r;
    struct sockaddr_in ta;
    rig_start(&r, NULL);
    int lfd = listen_loopback(&ta, 4);
    set_nonblock(lfd);
    int c = rig_client(&r);
    rig_greet(&r, c);
    /* RIG_NAME is ::1 and 127.0.0.1; only the latter listens. */
    rig_request_name(c, SOCKS5_CMD_CONNECT, RIG_NAME, ntohs(ta.sin_port));
    assert_int_equal(rig_reply(&r, c, NULL), SOCKS5_REP_SUCCEEDED);
    int t = rig_accept(&r, lfd);
    assert_string_equal(rig_session(&r)->dst_name, RIG_NAME);
    assert_true(addr_same_ip(&rig_session(&r)->peer.sa, (struct sockaddr *)&ta));

    close(t);
    close(lfd);
    close(c);
    rig_stop(&r);
}

TEST(userpass_right_password_goes_on_wrong_one_gets_status_1_and_close)
{
    const char *opts[] = {"--users", rig_users_path(), "--auth", "userpass", NULL};
    struct rig r;
    struct sockaddr_in closed;
    rig_start(&r, opts);
    closed_loopback_port(&closed);
    int c = rig_client(&r);
    assert_int_equal(rig_login(&r, c, "secret"), 0);
    assert_string_equal(rig_session(&r)->user, "alice");
    rig_request4(c, SOCKS5_CMD_CONNECT, "127.0.0.1", ntohs(closed.sin_port));
    assert_int_equal(rig_reply(&r, c, NULL), SOCKS5_REP_CONN_REFUSED);
    close(c);
    c = rig_client(&r);
    assert_int_not_equal(rig_login(&r, c, "wrong"), 0);
    rig_expect_closed(&r, c);
    close(c);
    assert_int_equal(RIG_STAT(&r, auth_ok), 1);
    assert_int_equal(RIG_STAT(&r, auth_fail), 1);
    rig_stop(&r);
}

TEST(silent_client_is_closed_at_the_handshake_timeout)
{
    static const char *const opts[] = {"--timeout-handshake", "100ms", NULL};
    struct rig r;
    rig_start(&r, opts);
    int c = rig_client(&r);
    rig_send(c, "\x05", 1); /* half a greeting, then nothing */
    rig_expect_closed(&r, c);
    assert_int_equal(rig_sessions(&r), 0);
    assert_int_equal(RIG_STAT(&r, handshake_fail[HSF_TIMEOUT]), 1);
    close(c);
    rig_stop(&r);
}

TEST(quiet_tunnel_is_closed_at_the_idle_timeout)
{
    static const char *const opts[] = {"--timeout-idle", "100ms", NULL};
    struct rig r;
    struct rig_tunnel tn;
    rig_start(&r, opts);
    rig_tunnel_open(&r, &tn); /* no byte after it */
    rig_expect_closed(&r, tn.c);
    rig_expect_closed(&r, tn.t);
    rig_tunnel_close(&tn);
    rig_stop(&r);
}

TEST(proxy_header_from_a_trusted_balancer_names_the_client)
{
    static const char *const opts[] = {"--proxy-protocol", "--proxy-protocol-from", "127.0.0.0/8",
                                       NULL};
    static const char hdr[] = "PROXY TCP4 192.0.2.9 127.0.0.1 5555 1080\r\n";
    struct rig r;
    rig_start(&r, opts);
    int c = rig_client(&r);
    rig_send(c, hdr, sizeof hdr - 1);
    rig_greet(&r, c);
    assert_int_equal(rig_session(&r)->pol.client.sa.sa_family, AF_INET);
    assert_int_equal(ntohl(rig_session(&r)->pol.client.in4.sin_addr.s_addr), 0xc0000209);
    close(c);
    rig_stop(&r);
}

TEST(proxy_header_local_health_check_ends_cleanly)
{
    static const char *const opts[] = {"--proxy-protocol", "--proxy-protocol-from", "127.0.0.0/8",
                                       NULL};
    /* PROXY protocol v2, LOCAL command, no addresses. */
    static const uint8_t v2[16] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51,
                                   0x55, 0x49, 0x54, 0x0a, 0x20, 0x00, 0x00, 0x00};
    struct rig r;
    rig_start(&r, opts);
    int c = rig_client(&r);
    rig_send(c, v2, sizeof v2);
    rig_expect_closed(&r, c);
    close(c);
    assert_int_equal(RIG_STAT(&r, handshake_fail[HSF_PROXY]), 0);
    /* A broken header, unlike the health check, is a handshake failure. */
    c = rig_client(&r);
    rig_send(c, "PROXY TCP4 nonsense\r\n", 21);
    rig_expect_closed(&r, c);
    close(c);
    assert_int_equal(RIG_STAT(&r, handshake_fail[HSF_PROXY]), 1);
    rig_stop(&r);
}

TEST(session_close_of_a_live_tunnel_closes_both_sides)
{
    struct rig r;
    struct rig_tunnel tn;
    rig_start(&r, NULL);
    rig_tunnel_open(&r, &tn);
    session_close(rig_session(&r));
    assert_int_equal(rig_sessions(&r), 0);
    rig_expect_closed(&r, tn.c);
    rig_expect_closed(&r, tn.t);
    rig_tunnel_close(&tn);
    rig_stop(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(connect_tunnels_bytes_and_passes_each_half_close_on),
        cmocka_unit_test(greeting_request_and_data_in_one_segment_all_arrive),
        cmocka_unit_test(handshake_sent_one_byte_at_a_time_is_parsed_the_same),
        cmocka_unit_test(no_acceptable_method_gets_0xff_then_close),
        cmocka_unit_test(socks4_or_garbage_greeting_is_closed_without_a_reply),
        cmocka_unit_test(unknown_command_gets_rep_7_and_unknown_atyp_rep_8),
        cmocka_unit_test(connect_to_a_closed_port_gets_rep_5_connection_refused),
        cmocka_unit_test(connect_by_name_resolves_and_reaches_the_address_that_answers),
        cmocka_unit_test(userpass_right_password_goes_on_wrong_one_gets_status_1_and_close),
        cmocka_unit_test(silent_client_is_closed_at_the_handshake_timeout),
        cmocka_unit_test(quiet_tunnel_is_closed_at_the_idle_timeout),
        cmocka_unit_test(proxy_header_from_a_trusted_balancer_names_the_client),
        cmocka_unit_test(proxy_header_local_health_check_ends_cleanly),
        cmocka_unit_test(session_close_of_a_live_tunnel_closes_both_sides),
    };
    return cmocka_run_group_tests(tests, rig_global_setup, rig_global_teardown);
}
