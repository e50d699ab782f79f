/* Unit tests for src/udp.c: UDP ASSOCIATE (RFC 1928 section 7) through the
 * wire of a real worker (worker_rig.h). The client, the targets and the
 * strangers are UDP sockets of the test's on loopback addresses.
 *
 * A datagram the relay must drop leaves no trace on the wire, so every
 * "dropped" check sends it, then a good datagram, and asserts that the good
 * one is the first to arrive (loopback keeps order) and that the worker
 * counted exactly one more drop. */
#include "worker_rig.h"

struct assoc {
    int ctl;              /* the TCP control connection */
    int cu;               /* the client's UDP socket */
    union addr_any relay; /* BND of the reply: where the client sends */
};

/* A non-blocking UDP socket on ip, port chosen by the kernel. */
static int udp_on(const char *ip, union addr_any *a)
{
    union addr_any tmp;
    socklen_t len = sizeof *a;
    if (!a)
        a = &tmp;
    memset(a, 0, sizeof *a);
    if (inet_pton(AF_INET, ip, &a->in4.sin_addr) == 1) {
        a->in4.sin_family = AF_INET;
    } else {
        assert_int_equal(inet_pton(AF_INET6, ip, &a->in6.sin6_addr), 1);
        a->in6.sin6_family = AF_INET6;
    }
    int fd = socket(a->sa.sa_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    assert_int_equal(bind(fd, &a->sa, addr_len(&a->sa)), 0);
    assert_int_equal(getsockname(fd, &a->sa, &len), 0);
    return fd;
}

/* Opens an association; the request names the client's UDP port when
 * name_port is set, else port 0 (learned from the first datagram). */
static void assoc_open(struct rig *r, struct assoc *as, int name_port)
{
    union addr_any cl;
    as->ctl = rig_client(r);
    as->cu = udp_on("127.0.0.1", &cl);
    rig_greet(r, as->ctl);
    rig_request4(as->ctl, SOCKS5_CMD_UDP, "127.0.0.1", name_port ? addr_port(&cl.sa) : 0);
    assert_int_equal(rig_reply(r, as->ctl, &as->relay), SOCKS5_REP_SUCCEEDED);
    assert_int_equal(as->relay.sa.sa_family, AF_INET);
    assert_int_equal(ntohl(as->relay.in4.sin_addr.s_addr), INADDR_LOOPBACK);
}

static void assoc_close(struct assoc *as)
{
    close(as->ctl);
    close(as->cu);
}

/* Sends header + payload from fd to the relay; hdr may be a raw header. */
static void send_raw(int fd, const struct assoc *as, const void *hdr, size_t hlen, const char *data)
{
    uint8_t buf[512];
    size_t n = strlen(data);
    memcpy(buf, hdr, hlen);
    memcpy(buf + hlen, data, n);
    assert_int_equal(sendto(fd, buf, hlen + n, 0, &as->relay.sa, addr_len(&as->relay.sa)),
                     (ssize_t)(hlen + n));
}

/* Sends data to `to` through the relay, from fd, with a proper header. */
static void send_via(int fd, const struct assoc *as, const union addr_any *to, const char *data)
{
    uint8_t hdr[PROTO_UDP_HEADER_MAX];
    size_t hlen = proto_encode_udp_header(hdr, sizeof hdr, &to->sa);
    assert_true(hlen > 0);
    send_raw(fd, as, hdr, hlen, data);
}

/* Receives one datagram, turning the loop while none is there; `from` gets
 * its source. Returns its length. */
static size_t recv_dgram(struct rig *r, int fd, uint8_t *buf, size_t cap, union addr_any *from)
{
    ssize_t n;
    socklen_t fl = sizeof *from;
    RIG_UNTIL(r, (n = recvfrom(fd, buf, cap, 0, &from->sa, &fl)) >= 0 || errno != EAGAIN);
    assert_true(n >= 0);
    return (size_t)n;
}

/* The target receives exactly `want`; returns where it came from. */
static union addr_any target_gets(struct rig *r, int fd, const char *want)
{
    uint8_t buf[512];
    union addr_any from;
    size_t n = recv_dgram(r, fd, buf, sizeof buf, &from);
    assert_int_equal(n, strlen(want));
    assert_memory_equal(buf, want, n);
    return from;
}

/* The client receives `want` with a header naming `src`. */
static void client_gets(struct rig *r, const struct assoc *as, const union addr_any *src,
                        const char *want)
{
    uint8_t buf[512], hdr[PROTO_UDP_HEADER_MAX];
    union addr_any from;
    size_t hlen = proto_encode_udp_header(hdr, sizeof hdr, &src->sa);
    size_t n = recv_dgram(r, as->cu, buf, sizeof buf, &from);
    assert_true(addr_same_ip(&from.sa, &as->relay.sa));
    assert_int_equal(addr_port(&from.sa), addr_port(&as->relay.sa));
    assert_int_equal(n, hlen + strlen(want));
    assert_memory_equal(buf, hdr, hlen);
    assert_memory_equal(buf + hlen, want, strlen(want));
}

static uint64_t drops(const struct rig *r)
{
    return RIG_STAT(r, dgrams_dropped);
}

TEST(datagram_goes_out_without_its_header_and_the_answer_comes_back_with_one)
{
    struct rig r;
    struct assoc as;
    union addr_any ta;
    rig_start(&r, NULL);
    int t = udp_on("127.0.0.1", &ta);
    assoc_open(&r, &as, 0);

    send_via(as.cu, &as, &ta, "ping");
    union addr_any out = target_gets(&r, t, "ping");
    /* The target sees the relay's own socket, not the client. */
    union addr_any cl;
    socklen_t len = sizeof cl;
    assert_int_equal(getsockname(as.cu, &cl.sa, &len), 0);
    assert_int_not_equal(addr_port(&out.sa), addr_port(&cl.sa));
    assert_int_equal(sendto(t, "pong", 4, 0, &out.sa, addr_len(&out.sa)), 4);
    client_gets(&r, &as, &ta, "pong");
    assert_int_equal(RIG_STAT(&r, dgrams_up), 1);
    assert_int_equal(RIG_STAT(&r, dgrams_down), 1);
    assert_int_equal(drops(&r), 0);

    assoc_close(&as);
    close(t);
    rig_stop(&r);
}

TEST(datagrams_from_a_foreign_ip_or_another_port_than_the_named_one_are_dropped)
{
    struct rig r;
    struct assoc as;
    union addr_any ta;
    rig_start(&r, NULL);
    int t = udp_on("127.0.0.1", &ta);
    assoc_open(&r, &as, 1);
    int other_port = udp_on("127.0.0.1", NULL);
    int other_ip = udp_on("127.0.0.2", NULL);

    send_via(other_port, &as, &ta, "spoofed port");
    send_via(other_ip, &as, &ta, "spoofed ip");
    send_via(as.cu, &as, &ta, "genuine");
    target_gets(&r, t, "genuine");
    assert_int_equal(drops(&r), 2);

    close(other_port);
    close(other_ip);
    assoc_close(&as);
    close(t);
    rig_stop(&r);
}

TEST(port_learned_from_the_first_datagram_is_held_to_after)
{
    struct rig r;
    struct assoc as;
    union addr_any ta;
    rig_start(&r, NULL);
    int t = udp_on("127.0.0.1", &ta);
    assoc_open(&r, &as, 0);
    int later = udp_on("127.0.0.1", NULL);

    send_via(as.cu, &as, &ta, "first");
    target_gets(&r, t, "first");
    send_via(later, &as, &ta, "same ip, other port");
    send_via(as.cu, &as, &ta, "second");
    target_gets(&r, t, "second");
    assert_int_equal(drops(&r), 1);

    close(later);
    assoc_close(&as);
    close(t);
    rig_stop(&r);
}

TEST(fragments_truncated_headers_and_unknown_atyp_are_dropped)
{
    struct rig r;
    struct assoc as;
    union addr_any ta;
    uint8_t hdr[PROTO_UDP_HEADER_MAX];
    rig_start(&r, NULL);
    int t = udp_on("127.0.0.1", &ta);
    assoc_open(&r, &as, 0);
    size_t hlen = proto_encode_udp_header(hdr, sizeof hdr, &ta.sa);

    hdr[2] = 1; /* FRAG: this relay does not reassemble (RFC 1928 section 7) */
    send_raw(as.cu, &as, hdr, hlen, "fragment");
    hdr[2] = 0;
    send_raw(as.cu, &as, hdr, 7, ""); /* IPv4 header cut inside the port */
    hdr[3] = 9;                       /* no such ATYP */
    send_raw(as.cu, &as, hdr, hlen, "bad atyp");
    send_via(as.cu, &as, &ta, "whole");
    target_gets(&r, t, "whole");
    assert_int_equal(drops(&r), 3);

    assoc_close(&as);
    close(t);
    rig_stop(&r);
}

/* A stranger on another IP sends to the relay's target-side socket. */
static void stranger_knocks(const union addr_any *out, union addr_any *sa)
{
    int s = udp_on("127.0.0.2", sa);
    assert_int_equal(sendto(s, "knock", 5, 0, &out->sa, addr_len(&out->sa)), 5);
    close(s);
}

TEST(answer_from_an_address_never_sent_to_is_dropped)
{
    struct rig r;
    struct assoc as;
    union addr_any ta, sa;
    rig_start(&r, NULL);
    int t = udp_on("127.0.0.1", &ta);
    assoc_open(&r, &as, 0);

    send_via(as.cu, &as, &ta, "ping");
    union addr_any out = target_gets(&r, t, "ping");
    stranger_knocks(&out, &sa);
    assert_int_equal(sendto(t, "pong", 4, 0, &out.sa, addr_len(&out.sa)), 4);
    client_gets(&r, &as, &ta, "pong");
    assert_int_equal(drops(&r), 1);

    assoc_close(&as);
    close(t);
    rig_stop(&r);
}

TEST(full_cone_passes_an_answer_from_anyone_with_its_source_in_the_header)
{
    static const char *const opts[] = {"--udp-full-cone", NULL};
    struct rig r;
    struct assoc as;
    union addr_any ta, sa;
    rig_start(&r, opts);
    int t = udp_on("127.0.0.1", &ta);
    assoc_open(&r, &as, 0);

    send_via(as.cu, &as, &ta, "ping");
    union addr_any out = target_gets(&r, t, "ping");
    stranger_knocks(&out, &sa);
    client_gets(&r, &as, &sa, "knock");
    assert_int_equal(drops(&r), 0);

    assoc_close(&as);
    close(t);
    rig_stop(&r);
}

TEST(ipv6_target_from_an_ipv4_association_gets_a_socket_of_its_family)
{
    struct rig r;
    struct assoc as;
    union addr_any t4a, t6a;
    rig_start(&r, NULL);
    int t4 = udp_on("127.0.0.1", &t4a);
    int t6 = udp_on("::1", &t6a);
    assoc_open(&r, &as, 0);

    send_via(as.cu, &as, &t6a, "six");
    union addr_any out6 = target_gets(&r, t6, "six");
    assert_int_equal(out6.sa.sa_family, AF_INET6);
    send_via(as.cu, &as, &t4a, "four");
    union addr_any out4 = target_gets(&r, t4, "four");
    assert_int_equal(out4.sa.sa_family, AF_INET);
    assert_int_equal(sendto(t6, "back6", 5, 0, &out6.sa, addr_len(&out6.sa)), 5);
    client_gets(&r, &as, &t6a, "back6");
    assert_int_equal(sendto(t4, "back4", 5, 0, &out4.sa, addr_len(&out4.sa)), 5);
    client_gets(&r, &as, &t4a, "back4");

    assoc_close(&as);
    close(t4);
    close(t6);
    rig_stop(&r);
}

/* A header naming the destination by name. */
static size_t name_header(uint8_t *hdr, const char *name, uint16_t port)
{
    size_t n = strlen(name);
    hdr[0] = hdr[1] = hdr[2] = 0;
    hdr[3] = SOCKS5_ATYP_DOMAIN;
    hdr[4] = (uint8_t)n;
    memcpy(hdr + 5, name, n);
    hdr[5 + n] = (uint8_t)(port >> 8);
    hdr[6 + n] = (uint8_t)port;
    return 7 + n;
}

TEST(name_is_resolved_once_in_the_client_family_then_taken_from_the_cache)
{
    struct rig r;
    struct assoc as;
    union addr_any ta;
    uint8_t hdr[300];
    rig_start(&r, NULL);
    int t = udp_on("127.0.0.1", &ta);
    assoc_open(&r, &as, 0);
    size_t hlen = name_header(hdr, RIG_NAME, addr_port(&ta.sa));

    /* RIG_NAME has ::1 and 127.0.0.1: the IPv4 association picks the
     * latter. The second datagram comes from the association's cache. */
    send_raw(as.cu, &as, hdr, hlen, "by name");
    target_gets(&r, t, "by name");
    send_raw(as.cu, &as, hdr, hlen, "cached");
    target_gets(&r, t, "cached");
    hlen = name_header(hdr, "localhost", addr_port(&ta.sa));
    send_raw(as.cu, &as, hdr, hlen, "literal");
    target_gets(&r, t, "literal");
    assert_int_equal(drops(&r), 0);

    assoc_close(&as);
    close(t);
    rig_stop(&r);
}

TEST(name_with_addresses_of_the_other_family_only_is_sent_there)
{
    struct rig r;
    struct assoc as;
    union addr_any t6a;
    uint8_t hdr[300];
    rig_start(&r, NULL);
    int t6 = udp_on("::1", &t6a);
    assoc_open(&r, &as, 0);
    size_t hlen = name_header(hdr, RIG_NAME6, addr_port(&t6a.sa));
    send_raw(as.cu, &as, hdr, hlen, "over six");
    target_gets(&r, t6, "over six");
    assoc_close(&as);
    close(t6);
    rig_stop(&r);
}

/* An IPv6 answer of the largest size leaves no room for its 22-byte SOCKS
 * header in a datagram to the client: dropped, not cut. */
TEST(answer_too_big_for_its_socks_header_is_dropped_not_truncated)
{
    static uint8_t big[65520]; /* + 22 > 65535, yet IPv6 carries it */
    struct rig r;
    struct assoc as;
    union addr_any t6a;
    rig_start(&r, NULL);
    int t6 = udp_on("::1", &t6a);
    assoc_open(&r, &as, 0);
    send_via(as.cu, &as, &t6a, "ping");
    union addr_any out = target_gets(&r, t6, "ping");
    memset(big, 'b', sizeof big);
    assert_int_equal(sendto(t6, big, sizeof big, 0, &out.sa, addr_len(&out.sa)),
                     (ssize_t)sizeof big);
    assert_int_equal(sendto(t6, "small", 5, 0, &out.sa, addr_len(&out.sa)), 5);
    client_gets(&r, &as, &t6a, "small");
    assert_int_equal(drops(&r), 1);
    assoc_close(&as);
    close(t6);
    rig_stop(&r);
}

/* More datagrams than one event's budget (64) wait on the socket: the
 * relay comes back for them in the same loop round, both ways, in order. */
TEST(burst_beyond_one_events_budget_is_relayed_whole_and_in_order)
{
    enum { N = 100 };
    struct rig r;
    struct assoc as;
    union addr_any t6a, out;
    char msg[16];
    rig_start(&r, NULL);
    int t6 = udp_on("::1", &t6a);
    assoc_open(&r, &as, 0);
    for (int i = 0; i < N; i++) {
        snprintf(msg, sizeof msg, "up %03d", i);
        send_via(as.cu, &as, &t6a, msg);
    }
    for (int i = 0; i < N; i++) {
        snprintf(msg, sizeof msg, "up %03d", i);
        out = target_gets(&r, t6, msg);
    }
    for (int i = 0; i < N; i++) {
        snprintf(msg, sizeof msg, "down %03d", i);
        assert_int_equal(sendto(t6, msg, strlen(msg), 0, &out.sa, addr_len(&out.sa)),
                         (ssize_t)strlen(msg));
    }
    for (int i = 0; i < N; i++) {
        snprintf(msg, sizeof msg, "down %03d", i);
        client_gets(&r, &as, &t6a, msg);
    }
    assert_int_equal(drops(&r), 0);
    assoc_close(&as);
    close(t6);
    rig_stop(&r);
}

TEST(rules_refuse_a_udp_destination_by_address_and_by_name_before_lookup)
{
    static const char *const opts[] = {"--rule", "deny to 127.0.0.3,*.blocked.test", "--rule",
                                       "allow", NULL};
    struct rig r;
    struct assoc as;
    union addr_any ta, denied;
    uint8_t hdr[300];
    rig_start(&r, opts);
    int t = udp_on("127.0.0.1", &ta);
    assoc_open(&r, &as, 0);
    denied = ta;
    assert_int_equal(inet_pton(AF_INET, "127.0.0.3", &denied.in4.sin_addr), 1);

    send_via(as.cu, &as, &denied, "to a denied address");
    size_t hlen = name_header(hdr, "x.blocked.test", 9);
    send_raw(as.cu, &as, hdr, hlen, "to a denied name");
    send_via(as.cu, &as, &ta, "allowed");
    target_gets(&r, t, "allowed");
    assert_int_equal(drops(&r), 2);

    assoc_close(&as);
    close(t);
    rig_stop(&r);
}

TEST(relay_socket_is_bound_inside_udp_ports)
{
    static const char *const opts[] = {"--udp-ports", "41000-41999", NULL};
    struct rig r;
    struct assoc as;
    rig_start(&r, opts);
    assoc_open(&r, &as, 0);
    assert_in_range(addr_port(&as.relay.sa), 41000, 41999);
    assoc_close(&as);
    rig_stop(&r);
}

TEST(closing_the_control_connection_ends_the_association)
{
    struct rig r;
    struct assoc as;
    rig_start(&r, NULL);
    assoc_open(&r, &as, 0);
    assert_int_equal(rig_sessions(&r), 1);
    close(as.ctl);
    RIG_UNTIL(&r, rig_sessions(&r) == 0);
    close(as.cu);
    rig_stop(&r); /* and every socket of the association is closed */
}

TEST(association_without_traffic_ends_at_the_udp_timeout)
{
    static const char *const opts[] = {"--timeout-udp", "100ms", NULL};
    struct rig r;
    struct assoc as;
    rig_start(&r, opts);
    assoc_open(&r, &as, 0);
    rig_expect_closed(&r, as.ctl);
    assert_int_equal(rig_sessions(&r), 0);
    assoc_close(&as);
    rig_stop(&r);
}

TEST(no_udp_refuses_the_command_with_rep_2_not_allowed)
{
    static const char *const opts[] = {"--no-udp", NULL};
    rig_expect_request_refused(opts, SOCKS5_CMD_UDP, SOCKS5_REP_NOT_ALLOWED);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(datagram_goes_out_without_its_header_and_the_answer_comes_back_with_one),
        cmocka_unit_test(
            datagrams_from_a_foreign_ip_or_another_port_than_the_named_one_are_dropped),
        cmocka_unit_test(port_learned_from_the_first_datagram_is_held_to_after),
        cmocka_unit_test(fragments_truncated_headers_and_unknown_atyp_are_dropped),
        cmocka_unit_test(answer_from_an_address_never_sent_to_is_dropped),
        cmocka_unit_test(full_cone_passes_an_answer_from_anyone_with_its_source_in_the_header),
        cmocka_unit_test(ipv6_target_from_an_ipv4_association_gets_a_socket_of_its_family),
        cmocka_unit_test(name_is_resolved_once_in_the_client_family_then_taken_from_the_cache),
        cmocka_unit_test(name_with_addresses_of_the_other_family_only_is_sent_there),
        cmocka_unit_test(answer_too_big_for_its_socks_header_is_dropped_not_truncated),
        cmocka_unit_test(burst_beyond_one_events_budget_is_relayed_whole_and_in_order),
        cmocka_unit_test(rules_refuse_a_udp_destination_by_address_and_by_name_before_lookup),
        cmocka_unit_test(relay_socket_is_bound_inside_udp_ports),
        cmocka_unit_test(closing_the_control_connection_ends_the_association),
        cmocka_unit_test(association_without_traffic_ends_at_the_udp_timeout),
        cmocka_unit_test(no_udp_refuses_the_command_with_rep_2_not_allowed),
    };
    return cmocka_run_group_tests(tests, rig_global_setup, rig_global_teardown);
}
