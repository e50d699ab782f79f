/* Unit tests for src/net.c: the socket helpers. Every helper is checked for
 * what it promises: the socket it returns is non-blocking and close-on-exec
 * with the options asked for (read back with getsockopt), a failure comes
 * with errno, a message naming the operation and address, nothing left
 * open and nothing left charged to the descriptor budget. */
#include "unit_support.h"

#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>

#include "fdbudget.h"
#include "net.h"

/* With nofile 100, nothing open and no worker, sockets of a session's own
 * (FDB_EXTRA) may take 80 (see test_fdbudget.c). */
#define EXTRA_LIMIT 80

/* An address of a loopback IP no other test uses, so port ranges on it
 * are not disturbed by other listeners on the machine. */
#define QUIET_V4 "127.83.1.9"

static int setup(void **state)
{
    (void)state;
    fdbudget_init(100, 0, 0);
    return 0;
}

static union addr_any ip_port(const char *ip, uint16_t port)
{
    union addr_any a;
    memset(&a, 0, sizeof a);
    if (strchr(ip, ':')) {
        a.in6.sin6_family = AF_INET6;
        assert_int_equal(inet_pton(AF_INET6, ip, &a.in6.sin6_addr), 1);
    } else {
        a.in4.sin_family = AF_INET;
        assert_int_equal(inet_pton(AF_INET, ip, &a.in4.sin_addr), 1);
    }
    addr_set_port(&a, port);
    return a;
}

static uint16_t local_port(int fd)
{
    union addr_any a;
    socklen_t len = sizeof a;
    assert_int_equal(getsockname(fd, &a.sa, &len), 0);
    return addr_port(&a.sa);
}

static int opt(int fd, int level, int name)
{
    int v = -1;
    socklen_t len = sizeof v;
    assert_int_equal(getsockopt(fd, level, name, &v, &len), 0);
    return v;
}

static void assert_nonblock_cloexec(int fd)
{
    assert_true(fcntl(fd, F_GETFL) & O_NONBLOCK);
    assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
}

/* An UDP port on ip that is free now, returned with a socket holding it. */
static int hold_udp_port(const char *ip, uint16_t *port)
{
    union addr_any a = ip_port(ip, 0);
    int fd = socket(a.sa.sa_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    assert_int_equal(bind(fd, &a.sa, addr_len(&a.sa)), 0);
    *port = local_port(fd);
    return fd;
}

TEST(a_tcp_listener_has_the_options_asked_for)
{
    union addr_any a = ip_port("127.0.0.1", 0);
    char err[128] = "";
    int fd = net_listen_tcp(&a, 16, NET_REUSEADDR | NET_REUSEPORT | NET_NODELAY, err, sizeof err);
    assert_true(fd >= 0);
    assert_string_equal(err, "");
    assert_nonblock_cloexec(fd);
    assert_int_equal(opt(fd, SOL_SOCKET, SO_ACCEPTCONN), 1);
    assert_int_equal(opt(fd, SOL_SOCKET, SO_TYPE), SOCK_STREAM);
    assert_int_equal(opt(fd, SOL_SOCKET, SO_REUSEADDR), 1);
    assert_int_equal(opt(fd, SOL_SOCKET, SO_REUSEPORT), 1);
    assert_int_equal(opt(fd, IPPROTO_TCP, TCP_NODELAY), 1);
    assert_true(local_port(fd) != 0);
    close(fd);
}

TEST(options_not_asked_for_stay_off)
{
    union addr_any a = ip_port("127.0.0.1", 0);
    int fd = net_listen_tcp(&a, 16, 0, NULL, 0);
    assert_true(fd >= 0);
    assert_nonblock_cloexec(fd);
    assert_int_equal(opt(fd, SOL_SOCKET, SO_REUSEADDR), 0);
    assert_int_equal(opt(fd, SOL_SOCKET, SO_REUSEPORT), 0);
    assert_int_equal(opt(fd, IPPROTO_TCP, TCP_NODELAY), 0);
    close(fd);
}

TEST(an_ipv6_listener_is_v6only_when_asked_and_ipv4_ignores_the_flag)
{
    union addr_any any6 = ip_port("::", 0), dual = ip_port("::", 0), lo4 = ip_port("127.0.0.1", 0);
    int v6 = net_listen_tcp(&any6, 4, NET_V6ONLY, NULL, 0);
    int plain = net_listen_tcp(&dual, 4, 0, NULL, 0);
    int v4 = net_listen_tcp(&lo4, 4, NET_V6ONLY, NULL, 0);
    assert_true(v6 >= 0 && plain >= 0 && v4 >= 0);
    assert_int_equal(opt(v6, IPPROTO_IPV6, IPV6_V6ONLY), 1);
    /* net.ipv6.bindv6only is 0 on Linux unless changed: [::] takes IPv4 too. */
    assert_int_equal(opt(plain, IPPROTO_IPV6, IPV6_V6ONLY), 0);
    assert_int_equal(opt(v4, SOL_SOCKET, SO_ACCEPTCONN), 1);
    close(v6);
    close(plain);
    close(v4);
}

TEST(a_busy_address_fails_with_bind_and_the_address_and_leaks_nothing)
{
    union addr_any a = ip_port("127.0.0.1", 0);
    char err[128], want[128];
    int first = net_listen_tcp(&a, 4, 0, NULL, 0);
    assert_true(first >= 0);
    uint16_t port = local_port(first);
    addr_set_port(&a, port);
    int before = fd_count();
    errno = 0;
    assert_int_equal(net_listen_tcp(&a, 4, NET_REUSEADDR, err, sizeof err), -1);
    assert_int_equal(errno, EADDRINUSE);
    snprintf(want, sizeof want, "bind 127.0.0.1:%u: %s", port, strerror(EADDRINUSE));
    assert_string_equal(err, want);
    assert_int_equal(fd_count(), before);
    close(first);
}

TEST(an_address_not_of_this_host_fails_with_context)
{
    union addr_any a = ip_port("192.0.2.1", 1080);
    char err[128], want[128];
    assert_int_equal(net_listen_tcp(&a, 4, 0, err, sizeof err), -1);
    assert_int_equal(errno, EADDRNOTAVAIL);
    snprintf(want, sizeof want, "bind 192.0.2.1:1080: %s", strerror(EADDRNOTAVAIL));
    assert_string_equal(err, want);
}

TEST(a_socket_of_an_unknown_family_fails_with_socket_in_the_message)
{
    char err[128], want[128];
    assert_int_equal(net_socket(12345, SOCK_STREAM, 0, err, sizeof err), -1);
    assert_int_equal(errno, EAFNOSUPPORT);
    snprintf(want, sizeof want, "socket (other family): %s", strerror(EAFNOSUPPORT));
    assert_string_equal(err, want);
}

TEST(an_option_that_cannot_be_set_fails_names_it_and_closes_the_socket)
{
    char err[128], want[128];
    int before = fd_count();
    assert_int_equal(net_socket(AF_INET, SOCK_DGRAM, NET_REUSEADDR | NET_NODELAY, err, sizeof err),
                     -1);
    int e = errno;
    assert_int_not_equal(e, 0);
    snprintf(want, sizeof want, "setsockopt TCP_NODELAY IPv4: %s", strerror(e));
    assert_string_equal(err, want);
    assert_int_equal(fd_count(), before);
}

TEST(net_socket_makes_nonblocking_cloexec_sockets_of_the_type_asked)
{
    int u = net_socket(AF_INET6, SOCK_DGRAM, NET_V6ONLY, NULL, 0);
    int t = net_socket(AF_INET, SOCK_STREAM, NET_NODELAY, NULL, 0);
    assert_true(u >= 0 && t >= 0);
    assert_nonblock_cloexec(u);
    assert_nonblock_cloexec(t);
    assert_int_equal(opt(u, SOL_SOCKET, SO_TYPE), SOCK_DGRAM);
    assert_int_equal(opt(u, IPPROTO_IPV6, IPV6_V6ONLY), 1);
    assert_int_equal(opt(t, SOL_SOCKET, SO_TYPE), SOCK_STREAM);
    assert_int_equal(opt(t, IPPROTO_TCP, TCP_NODELAY), 1);
    int x = net_socket(AF_UNIX, SOCK_DGRAM, 0, NULL, 0);
    assert_true(x >= 0);
    assert_nonblock_cloexec(x);
    close(x);
    close(u);
    close(t);
}

TEST(accept_gives_a_nonblocking_cloexec_socket_and_the_peer)
{
    union addr_any a = ip_port("127.0.0.1", 0), peer;
    int ln = net_listen_tcp(&a, 4, NET_NODELAY, NULL, 0);
    assert_true(ln >= 0);
    addr_set_port(&a, local_port(ln));
    errno = 0;
    assert_int_equal(net_accept(ln, &peer), -1);
    assert_int_equal(errno, EAGAIN);
    int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(c >= 0);
    assert_int_equal(connect(c, &a.sa, addr_len(&a.sa)), 0);
    struct pollfd p = {.fd = ln, .events = POLLIN};
    assert_int_equal(poll(&p, 1, WAIT_MS), 1);
    int s = net_accept(ln, &peer);
    assert_true(s >= 0);
    assert_nonblock_cloexec(s);
    assert_int_equal(opt(s, IPPROTO_TCP, TCP_NODELAY), 1); /* inherited */
    assert_int_equal(peer.sa.sa_family, AF_INET);
    assert_int_equal(addr_port(&peer.sa), local_port(c));
    close(s);
    close(c);
    close(ln);
}

TEST(accept_without_a_peer_buffer_works)
{
    union addr_any a = ip_port("::1", 0);
    int ln = net_listen_tcp(&a, 4, 0, NULL, 0);
    assert_true(ln >= 0);
    addr_set_port(&a, local_port(ln));
    int c = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(c >= 0);
    assert_int_equal(connect(c, &a.sa, addr_len(&a.sa)), 0);
    struct pollfd p = {.fd = ln, .events = POLLIN};
    assert_int_equal(poll(&p, 1, WAIT_MS), 1);
    int s = net_accept(ln, NULL);
    assert_true(s >= 0);
    assert_nonblock_cloexec(s);
    close(s);
    close(c);
    close(ln);
}

TEST(a_nonblocking_connect_completes_with_the_options_set)
{
    union addr_any a = ip_port("127.0.0.1", 0);
    int ln = net_listen_tcp(&a, 4, 0, NULL, 0);
    assert_true(ln >= 0);
    addr_set_port(&a, local_port(ln));
    int c = net_connect_nb(&a, NULL, NET_NODELAY, NULL, 0);
    assert_true(c >= 0);
    assert_nonblock_cloexec(c);
    assert_int_equal(opt(c, IPPROTO_TCP, TCP_NODELAY), 1);
    struct pollfd p = {.fd = c, .events = POLLOUT};
    assert_int_equal(poll(&p, 1, WAIT_MS), 1);
    assert_int_equal(opt(c, SOL_SOCKET, SO_ERROR), 0);
    p = (struct pollfd){.fd = ln, .events = POLLIN};
    assert_int_equal(poll(&p, 1, WAIT_MS), 1);
    int s = net_accept(ln, NULL);
    assert_true(s >= 0);
    close(s);
    close(c);
    close(ln);
}

/* Connects to a loopback listener leaving as `out` says; returns the
 * address the listener saw. */
static union addr_any connect_from(const struct net_out *out)
{
    union addr_any a = ip_port("127.0.0.1", 0), peer;
    int ln = net_listen_tcp(&a, 4, 0, NULL, 0);
    assert_true(ln >= 0);
    addr_set_port(&a, local_port(ln));
    int c = net_connect_nb(&a, out, 0, NULL, 0);
    assert_true(c >= 0);
    struct pollfd p = {.fd = ln, .events = POLLIN};
    assert_int_equal(poll(&p, 1, WAIT_MS), 1);
    int s = net_accept(ln, &peer);
    assert_true(s >= 0);
    close(s);
    close(c);
    close(ln);
    return peer;
}

TEST(a_connect_leaves_from_the_chosen_source_with_a_port_picked_at_connect)
{
    struct net_out out = {.nsrc = 2, .src = {ip_port("::1", 0), ip_port("127.0.0.9", 0)}};
    union addr_any peer = connect_from(&out);
    assert_true(addr_same_ip(&peer.sa, &out.src[1].sa));
    assert_int_not_equal(addr_port(&peer.sa), 0);
}

TEST(a_source_of_the_other_family_is_left_to_the_kernel)
{
    struct net_out out = {.nsrc = 1, .src = {ip_port("::1", 0)}};
    union addr_any peer = connect_from(&out);
    union addr_any lo = ip_port("127.0.0.1", 0);
    assert_true(addr_same_ip(&peer.sa, &lo.sa));
}

TEST(freebind_accepts_a_source_the_host_does_not_have)
{
    struct net_out out = {.nsrc = 1, .src = {ip_port("192.0.2.77", 0)}};
    int fd = net_socket(AF_INET, SOCK_STREAM, 0, NULL, 0);
    assert_true(fd >= 0);
    assert_int_equal(net_apply_out(fd, AF_INET, &out, NULL, 0), 0);
    assert_int_equal(opt(fd, SOL_IP, IP_FREEBIND), 1);
    assert_int_equal(opt(fd, SOL_IP, IP_BIND_ADDRESS_NO_PORT), 1);
    close(fd);
}

TEST(a_udp_socket_binds_a_foreign_source_with_freebind)
{
    union addr_any a = ip_port("192.0.2.78", 0);
    int fd = net_bind_udp(&a, 0, 0, NET_FREEBIND, NULL, 0);
    assert_true(fd >= 0);
    assert_int_equal(opt(fd, SOL_IP, IP_FREEBIND), 1);
    close(fd);
    a = ip_port("192.0.2.78", 0);
    assert_int_equal(net_bind_udp(&a, 0, 0, 0, NULL, 0), -1); /* not without it */
}

TEST(an_unknown_device_is_an_error_naming_it)
{
    struct net_out out = {.dev = "nosuchdev0"};
    char err[128];
    int fd = net_socket(AF_INET, SOCK_STREAM, 0, NULL, 0);
    assert_true(fd >= 0);
    assert_int_equal(net_apply_out(fd, AF_INET, &out, err, sizeof err), -1);
    assert_non_null(strstr(err, "SO_BINDTODEVICE nosuchdev0"));
    close(fd);
}

TEST(a_refused_connect_is_reported_through_so_error)
{
    struct sockaddr_in closed;
    union addr_any a;
    closed_loopback_port(&closed);
    memset(&a, 0, sizeof a);
    a.in4 = closed;
    int c = net_connect_nb(&a, NULL, 0, NULL, 0);
    if (c < 0) {
        assert_int_equal(errno, ECONNREFUSED);
        return;
    }
    struct pollfd p = {.fd = c, .events = POLLOUT};
    assert_int_equal(poll(&p, 1, WAIT_MS), 1);
    assert_int_equal(opt(c, SOL_SOCKET, SO_ERROR), ECONNREFUSED);
    close(c);
}

/* A v6-only socket cannot reach a v4-mapped address: connect fails at once. */
TEST(a_connect_that_fails_at_once_names_connect_and_the_target_and_gives_back_its_charge)
{
    union addr_any a = ip_port("::ffff:127.0.0.1", 9);
    char err[128], want[128];
    int before = fd_count();
    assert_true(fdbudget_take(EXTRA_LIMIT - 1, FDB_EXTRA));
    assert_int_equal(net_connect_nb(&a, NULL, NET_V6ONLY | NET_BUDGET, err, sizeof err), -1);
    assert_int_equal(errno, ENETUNREACH);
    snprintf(want, sizeof want, "connect [::ffff:127.0.0.1]:9: %s", strerror(ENETUNREACH));
    assert_string_equal(err, want);
    assert_int_equal(fd_count(), before);
    assert_true(fdbudget_take(1, FDB_EXTRA)); /* the failed call kept nothing */
    fdbudget_give(EXTRA_LIMIT);
}

TEST(the_budget_is_charged_per_socket_and_given_back_by_net_close)
{
    char err[128], want[128];
    assert_true(fdbudget_take(EXTRA_LIMIT - 1, FDB_EXTRA));
    int fd = net_socket(AF_INET, SOCK_STREAM, NET_BUDGET, NULL, 0);
    assert_true(fd >= 0);
    int before = fd_count();
    assert_int_equal(net_socket(AF_INET, SOCK_STREAM, NET_BUDGET, err, sizeof err), -1);
    assert_int_equal(errno, EMFILE);
    snprintf(want, sizeof want, "socket IPv4: %s", strerror(EMFILE));
    assert_string_equal(err, want);
    assert_int_equal(fd_count(), before);
    errno = EINTR;
    net_close(fd, NET_BUDGET);
    assert_int_equal(errno, EINTR); /* kept for the caller's report */
    fd = net_socket(AF_INET, SOCK_STREAM, NET_BUDGET, NULL, 0);
    assert_true(fd >= 0);
    net_close(fd, NET_BUDGET);
    fdbudget_give(EXTRA_LIMIT - 1);
}

TEST(a_failed_listen_gives_back_its_charge)
{
    union addr_any a = ip_port("192.0.2.1", 1080);
    assert_true(fdbudget_take(EXTRA_LIMIT - 1, FDB_EXTRA));
    assert_int_equal(net_listen_tcp(&a, 4, NET_BUDGET, NULL, 0), -1);
    assert_true(fdbudget_take(1, FDB_EXTRA));
    fdbudget_give(EXTRA_LIMIT);
}

TEST(sockets_without_the_budget_flag_charge_nothing)
{
    assert_true(fdbudget_take(EXTRA_LIMIT, FDB_EXTRA));
    int fd = net_socket(AF_INET, SOCK_DGRAM, 0, NULL, 0);
    assert_true(fd >= 0);
    net_close(fd, 0);
    assert_false(fdbudget_take(1, FDB_EXTRA));
    fdbudget_give(EXTRA_LIMIT);
}

TEST(an_ephemeral_udp_bind_reports_the_port_it_got)
{
    union addr_any a = ip_port("::1", 0);
    int fd = net_bind_udp(&a, 0, 0, NET_V6ONLY, NULL, 0);
    assert_true(fd >= 0);
    assert_nonblock_cloexec(fd);
    assert_int_equal(opt(fd, SOL_SOCKET, SO_TYPE), SOCK_DGRAM);
    assert_int_equal(opt(fd, IPPROTO_IPV6, IPV6_V6ONLY), 1);
    assert_int_not_equal(local_port(fd), 0);
    close(fd);
}

TEST(a_udp_port_range_skips_ports_in_use)
{
    uint16_t p;
    int held = hold_udp_port(QUIET_V4, &p);
    uint16_t lo = p, hi = (uint16_t)(p + 1);
    if (p == 65535) { /* the range must stay in 1..65535 */
        lo = (uint16_t)(p - 1);
        hi = p;
    }
    for (int i = 0; i < 8; i++) { /* the other port is taken at random by the range */
        union addr_any a = ip_port(QUIET_V4, 0);
        int fd = net_bind_udp(&a, lo, hi, 0, NULL, 0);
        assert_true(fd >= 0);
        assert_int_not_equal(addr_port(&a.sa), p);
        assert_int_equal(local_port(fd), addr_port(&a.sa));
        assert_true(addr_port(&a.sa) >= lo && addr_port(&a.sa) <= hi);
        close(fd);
    }
    close(held);
}

TEST(a_full_udp_port_range_fails_with_the_range_in_the_message)
{
    uint16_t p;
    char err[128], want[128];
    int held = hold_udp_port(QUIET_V4, &p);
    union addr_any a = ip_port(QUIET_V4, 0);
    int before = fd_count();
    assert_int_equal(net_bind_udp(&a, p, p, 0, err, sizeof err), -1);
    assert_int_equal(errno, EADDRINUSE);
    snprintf(want, sizeof want, "bind " QUIET_V4 ":%u: %s", p, strerror(EADDRINUSE));
    assert_string_equal(err, want);
    assert_int_equal(fd_count(), before);
    close(held);
}

TEST(a_udp_range_failure_names_both_ends)
{
    union addr_any a = ip_port("192.0.2.1", 0);
    char err[128], want[128];
    assert_int_equal(net_bind_udp(&a, 40000, 40009, 0, err, sizeof err), -1);
    assert_int_equal(errno, EADDRNOTAVAIL);
    snprintf(want, sizeof want, "bind 192.0.2.1:40000-40009: %s", strerror(EADDRNOTAVAIL));
    assert_string_equal(err, want);
}

TEST(a_held_address_is_seen_before_binding_and_another_listener_after)
{
    const unsigned f = NET_REUSEADDR | NET_REUSEPORT;
    union addr_any a = ip_port(QUIET_V4, 0);
    int ours = net_listen_tcp(&a, 4, f, NULL, 0);
    assert_true(ours >= 0);
    a = ip_port(QUIET_V4, local_port(ours));
    union addr_any wild = ip_port("0.0.0.0", local_port(ours));
    /* Our own listener holds it too: the probe does not tell whose. */
    assert_int_equal(net_tcp_held(&a), 1);
    assert_int_equal(net_tcp_others(&a, &ours, 1), 0);
    /* A second SO_REUSEPORT listener (another process, as far as the
     * table shows) is seen, also from the wildcard's point of view. */
    int theirs = net_listen_tcp(&a, 4, f, NULL, 0);
    assert_true(theirs >= 0);
    assert_int_equal(net_tcp_others(&a, &ours, 1), 1);
    assert_int_equal(net_tcp_others(&wild, &ours, 1), 1);
    int both[] = {ours, theirs};
    assert_int_equal(net_tcp_others(&a, both, 2), 0);
    close(theirs);
    close(ours);
    assert_int_equal(net_tcp_held(&a), 0);
    assert_int_equal(net_tcp_others(&a, NULL, 0), 0);
}

TEST(set_nonblock_turns_a_blocking_socket_nonblocking)
{
    char err[64];
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    assert_false(fcntl(fd, F_GETFL) & O_NONBLOCK);
    assert_int_equal(net_set_nonblock(fd, err, sizeof err), 0);
    assert_true(fcntl(fd, F_GETFL) & O_NONBLOCK);
    close(fd);
    assert_int_equal(net_set_nonblock(fd, err, sizeof err), -1);
    assert_int_equal(errno, EBADF);
    char want[64];
    snprintf(want, sizeof want, "fcntl O_NONBLOCK fd %d: %s", fd, strerror(EBADF));
    assert_string_equal(err, want);
}

TEST(discard_drops_what_is_waiting_and_tells_an_end_from_an_open_connection)
{
    int sv[2];
    char blob[4096];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
    memset(blob, 'x', sizeof blob);
    /* More than one read's worth: the loop must go on until EAGAIN. */
    assert_int_equal(write(sv[1], blob, sizeof blob), (ssize_t)sizeof blob);
    assert_int_equal(net_discard(sv[0]), 0);
    assert_int_equal(read(sv[0], blob, 1), -1);
    assert_int_equal(errno, EAGAIN);
    /* Data then the end: both are consumed, and the end is reported. */
    assert_int_equal(write(sv[1], blob, 100), 100);
    close(sv[1]);
    assert_int_equal(net_discard(sv[0]), 1);
    close(sv[0]);
    /* A descriptor that cannot be read is an end too. */
    assert_int_equal(net_discard(sv[0]), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(a_tcp_listener_has_the_options_asked_for, setup),
        cmocka_unit_test_setup(options_not_asked_for_stay_off, setup),
        cmocka_unit_test_setup(an_ipv6_listener_is_v6only_when_asked_and_ipv4_ignores_the_flag,
                               setup),
        cmocka_unit_test_setup(a_busy_address_fails_with_bind_and_the_address_and_leaks_nothing,
                               setup),
        cmocka_unit_test_setup(an_address_not_of_this_host_fails_with_context, setup),
        cmocka_unit_test_setup(a_socket_of_an_unknown_family_fails_with_socket_in_the_message,
                               setup),
        cmocka_unit_test_setup(an_option_that_cannot_be_set_fails_names_it_and_closes_the_socket,
                               setup),
        cmocka_unit_test_setup(net_socket_makes_nonblocking_cloexec_sockets_of_the_type_asked,
                               setup),
        cmocka_unit_test_setup(accept_gives_a_nonblocking_cloexec_socket_and_the_peer, setup),
        cmocka_unit_test_setup(accept_without_a_peer_buffer_works, setup),
        cmocka_unit_test_setup(a_nonblocking_connect_completes_with_the_options_set, setup),
        cmocka_unit_test_setup(a_refused_connect_is_reported_through_so_error, setup),
        cmocka_unit_test_setup(
            a_connect_that_fails_at_once_names_connect_and_the_target_and_gives_back_its_charge,
            setup),
        cmocka_unit_test_setup(the_budget_is_charged_per_socket_and_given_back_by_net_close, setup),
        cmocka_unit_test_setup(a_failed_listen_gives_back_its_charge, setup),
        cmocka_unit_test_setup(sockets_without_the_budget_flag_charge_nothing, setup),
        cmocka_unit_test_setup(an_ephemeral_udp_bind_reports_the_port_it_got, setup),
        cmocka_unit_test_setup(a_udp_port_range_skips_ports_in_use, setup),
        cmocka_unit_test_setup(a_full_udp_port_range_fails_with_the_range_in_the_message, setup),
        cmocka_unit_test_setup(a_held_address_is_seen_before_binding_and_another_listener_after,
                               setup),
        cmocka_unit_test_setup(a_udp_range_failure_names_both_ends, setup),
        cmocka_unit_test_setup(set_nonblock_turns_a_blocking_socket_nonblocking, setup),
        cmocka_unit_test_setup(
            a_connect_leaves_from_the_chosen_source_with_a_port_picked_at_connect, setup),
        cmocka_unit_test_setup(a_source_of_the_other_family_is_left_to_the_kernel, setup),
        cmocka_unit_test_setup(freebind_accepts_a_source_the_host_does_not_have, setup),
        cmocka_unit_test_setup(an_unknown_device_is_an_error_naming_it, setup),
        cmocka_unit_test_setup(a_udp_socket_binds_a_foreign_source_with_freebind, setup),
        cmocka_unit_test_setup(
            discard_drops_what_is_waiting_and_tells_an_end_from_an_open_connection, setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
