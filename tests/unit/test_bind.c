/* Unit tests for src/bind.c: BIND (RFC 1928 section 4) through the wire of
 * a real worker (worker_rig.h). The first reply names the listening port,
 * the second the peer that connected to it; then the session relays like
 * CONNECT. Peers are TCP sockets of the test's, bound before they connect
 * when the test needs a known source address. */
#include "worker_rig.h"

/* A TCP socket bound to ip:0, not yet connected; *a gets its address. */
static int peer_on(const char *ip, union addr_any *a)
{
    socklen_t len = sizeof *a;
    memset(a, 0, sizeof *a);
    if (inet_pton(AF_INET, ip, &a->in4.sin_addr) == 1) {
        a->in4.sin_family = AF_INET;
    } else {
        assert_int_equal(inet_pton(AF_INET6, ip, &a->in6.sin6_addr), 1);
        a->in6.sin6_family = AF_INET6;
    }
    int fd = socket(a->sa.sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    assert_int_equal(bind(fd, &a->sa, addr_len(&a->sa)), 0);
    assert_int_equal(getsockname(fd, &a->sa, &len), 0);
    return fd;
}

/* Connects fd to the BIND port (the kernel completes it from the backlog)
 * and makes it non-blocking. */
static void peer_connect(int fd, const union addr_any *to)
{
    assert_int_equal(connect(fd, &to->sa, addr_len(&to->sa)), 0);
    set_nonblock(fd);
}

/* Greets and sends BIND for ip:port; returns the first reply's BND. */
static union addr_any bind_request(struct rig *r, int c, const char *ip, uint16_t port)
{
    union addr_any bnd;
    rig_greet(r, c);
    rig_request4(c, SOCKS5_CMD_BIND, ip, port);
    assert_int_equal(rig_reply(r, c, &bnd), SOCKS5_REP_SUCCEEDED);
    assert_int_not_equal(addr_port(&bnd.sa), 0);
    return bnd;
}

static void assert_same_addr(const union addr_any *a, const union addr_any *b)
{
    assert_true(addr_same_ip(&a->sa, &b->sa));
    assert_int_equal(addr_port(&a->sa), addr_port(&b->sa));
}

/* The peer comes: the second reply names it. */
static void second_reply_names(struct rig *r, int c, const union addr_any *peer)
{
    union addr_any bnd;
    assert_int_equal(rig_reply(r, c, &bnd), SOCKS5_REP_SUCCEEDED);
    assert_same_addr(&bnd, peer);
}

/* A peer that is turned away: accepted, then closed, and the wait goes on. */
static void turned_away(struct rig *r, const char *ip, const union addr_any *bnd)
{
    union addr_any pa;
    int p = peer_on(ip, &pa);
    peer_connect(p, bnd);
    rig_expect_closed(r, p);
    close(p);
    assert_int_equal(rig_sessions(r), 1); /* still waiting */
}

TEST(bind_replies_twice_then_relays_both_ways_with_half_close)
{
    struct rig r;
    union addr_any pa;
    char buf[16];
    rig_start(&r, NULL);
    int c = rig_client(&r);
    union addr_any bnd = bind_request(&r, c, "0.0.0.0", 0);
    /* The listener is on the address the client reached us on. */
    assert_true(addr_same_ip(&bnd.sa, (struct sockaddr *)&r.proxy));
    int p = peer_on("127.0.0.1", &pa);
    peer_connect(p, &bnd);
    second_reply_names(&r, c, &pa);

    rig_send(p, "from peer", 9);
    rig_recv(&r, c, buf, 9);
    assert_memory_equal(buf, "from peer", 9);
    rig_send(c, "from client", 11);
    rig_recv(&r, p, buf, 11);
    assert_memory_equal(buf, "from client", 11);
    /* The client is done sending; the peer still answers, then ends. */
    assert_int_equal(shutdown(c, SHUT_WR), 0);
    rig_expect_closed(&r, p);
    rig_send(p, "late", 4);
    rig_recv(&r, c, buf, 4);
    assert_memory_equal(buf, "late", 4);
    close(p);
    rig_expect_closed(&r, c);
    RIG_UNTIL(&r, rig_sessions(&r) == 0);

    close(c);
    rig_stop(&r);
}

TEST(peer_from_another_port_or_address_is_turned_away_and_the_wait_goes_on)
{
    struct rig r;
    union addr_any pa;
    rig_start(&r, NULL);
    int p = peer_on("127.0.0.1", &pa);
    int c = rig_client(&r);
    union addr_any bnd = bind_request(&r, c, "127.0.0.1", addr_port(&pa.sa));

    turned_away(&r, "127.0.0.1", &bnd); /* right address, wrong port */
    turned_away(&r, "127.0.0.2", &bnd); /* wrong address */
    peer_connect(p, &bnd);
    second_reply_names(&r, c, &pa);

    close(p);
    close(c);
    rig_stop(&r);
}

TEST(no_peer_before_the_bind_timeout_gives_rep_6_ttl_expired)
{
    static const char *const opts[] = {"--timeout-bind", "100ms", NULL};
    struct rig r;
    rig_start(&r, opts);
    int c = rig_client(&r);
    bind_request(&r, c, "0.0.0.0", 0);
    assert_int_equal(rig_reply(&r, c, NULL), SOCKS5_REP_TTL_EXPIRED);
    rig_expect_closed(&r, c);
    close(c);
    rig_stop(&r);
}

TEST(ipv6_request_on_an_ipv4_connection_listens_in_ipv6)
{
    static const uint8_t req[22] = {5, SOCKS5_CMD_BIND, 0, SOCKS5_ATYP_IPV6};
    struct rig r;
    union addr_any bnd, pa;
    rig_start(&r, NULL);
    int c = rig_client(&r);
    rig_greet(&r, c);
    rig_send(c, req, sizeof req); /* [::]:0, any peer */
    assert_int_equal(rig_reply(&r, c, &bnd), SOCKS5_REP_SUCCEEDED);
    assert_int_equal(bnd.sa.sa_family, AF_INET6);
    assert_true(addr_is_unspecified(&bnd.sa));
    int p = peer_on("::1", &pa);
    assert_int_equal(inet_pton(AF_INET6, "::1", &bnd.in6.sin6_addr), 1);
    peer_connect(p, &bnd);
    second_reply_names(&r, c, &pa);

    close(p);
    close(c);
    rig_stop(&r);
}

TEST(peer_named_by_a_name_must_come_from_one_of_its_addresses)
{
    struct rig r;
    union addr_any bnd, pa;
    rig_start(&r, NULL);
    int c = rig_client(&r);
    rig_greet(&r, c);
    rig_request_name(c, SOCKS5_CMD_BIND, RIG_NAME, 0); /* 127.0.0.1 and ::1 */
    assert_int_equal(rig_reply(&r, c, &bnd), SOCKS5_REP_SUCCEEDED);

    turned_away(&r, "127.0.0.2", &bnd);
    int p = peer_on("127.0.0.1", &pa);
    peer_connect(p, &bnd);
    second_reply_names(&r, c, &pa);

    close(p);
    close(c);
    rig_stop(&r);
}

TEST(rules_refuse_a_bind_peer_by_its_address)
{
    static const char *const opts[] = {"--rule", "deny cmd bind to 127.0.0.2", "--rule", "allow",
                                       NULL};
    struct rig r;
    union addr_any pa;
    rig_start(&r, opts);
    int c = rig_client(&r);
    union addr_any bnd = bind_request(&r, c, "0.0.0.0", 0);

    turned_away(&r, "127.0.0.2", &bnd);
    int p = peer_on("127.0.0.1", &pa);
    peer_connect(p, &bnd);
    second_reply_names(&r, c, &pa);

    close(p);
    close(c);
    rig_stop(&r);
}

TEST(client_leaving_during_the_wait_closes_the_listener)
{
    struct rig r;
    rig_start(&r, NULL);
    int c = rig_client(&r);
    union addr_any bnd = bind_request(&r, c, "0.0.0.0", 0);
    close(c);
    RIG_UNTIL(&r, rig_sessions(&r) == 0);
    int p = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(p >= 0);
    assert_int_equal(connect(p, &bnd.sa, addr_len(&bnd.sa)), -1);
    assert_int_equal(errno, ECONNREFUSED);
    close(p);
    rig_stop(&r);
}

TEST(advertise_replaces_the_address_in_the_first_reply)
{
    static const char *const opts[] = {"--advertise", "192.0.2.7", NULL};
    struct rig r;
    union addr_any want;
    rig_start(&r, opts);
    int c = rig_client(&r);
    union addr_any bnd = bind_request(&r, c, "0.0.0.0", 0);
    memset(&want, 0, sizeof want);
    want.in4.sin_family = AF_INET;
    assert_int_equal(inet_pton(AF_INET, "192.0.2.7", &want.in4.sin_addr), 1);
    assert_true(addr_same_ip(&bnd.sa, &want.sa));
    close(c);
    rig_stop(&r);
}

TEST(no_bind_refuses_the_command_with_rep_2_not_allowed)
{
    static const char *const opts[] = {"--no-bind", NULL};
    rig_expect_request_refused(opts, SOCKS5_CMD_BIND, SOCKS5_REP_NOT_ALLOWED);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(bind_replies_twice_then_relays_both_ways_with_half_close),
        cmocka_unit_test(peer_from_another_port_or_address_is_turned_away_and_the_wait_goes_on),
        cmocka_unit_test(no_peer_before_the_bind_timeout_gives_rep_6_ttl_expired),
        cmocka_unit_test(ipv6_request_on_an_ipv4_connection_listens_in_ipv6),
        cmocka_unit_test(peer_named_by_a_name_must_come_from_one_of_its_addresses),
        cmocka_unit_test(rules_refuse_a_bind_peer_by_its_address),
        cmocka_unit_test(client_leaving_during_the_wait_closes_the_listener),
        cmocka_unit_test(advertise_replaces_the_address_in_the_first_reply),
        cmocka_unit_test(no_bind_refuses_the_command_with_rep_2_not_allowed),
    };
    return cmocka_run_group_tests(tests, rig_global_setup, rig_global_teardown);
}
