/* Unit tests for src/hostaddr.c: the snapshot of the host's addresses and
 * the non-blocking drain of the change socket. The netlink messages
 * themselves are exercised by tests/integration/test_attack_selfreach.py,
 * which changes addresses inside a namespace of its own. */
#include "unit_support.h"

#include <sys/socket.h>
#include <unistd.h>

#include "hostaddr.h"

TEST(snapshot_holds_loopback)
{
    char err[128];
    struct addr_list *l = hostaddr_snapshot(err, sizeof err);
    if (!l)
        fail_msg("hostaddr_snapshot: %s", err);
    struct in6_addr lo4;
    assert_int_equal(inet_pton(AF_INET6, "::ffff:127.0.0.1", &lo4), 1);
    assert_true(addr_list_has(l, &lo4));
    addr_list_unref(l);
}

TEST(watch_opens_a_netlink_socket)
{
    int fd = hostaddr_watch();
    assert_true(fd >= 0);
    int type = 0;
    socklen_t len = sizeof type;
    assert_int_equal(getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len), 0);
    assert_int_equal(type, SOCK_RAW);
    assert_int_equal(hostaddr_changed(fd) >= 0, 1);
    close(fd);
}

/* hostaddr_changed only reads datagrams: a socketpair stands in for netlink. */
TEST(changed_is_0_when_quiet_1_after_messages_and_drains_them)
{
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK, 0, sv), 0);
    assert_int_equal(hostaddr_changed(sv[0]), 0);
    for (int i = 0; i < 3; i++)
        assert_int_equal(send(sv[1], "x", 1, 0), 1);
    assert_int_equal(hostaddr_changed(sv[0]), 1);
    assert_int_equal(hostaddr_changed(sv[0]), 0); /* all three were read */
    close(sv[1]);
    close(sv[0]);
}

TEST(changed_on_a_bad_descriptor_is_an_error)
{
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_DGRAM, 0, sv), 0);
    close(sv[0]);
    close(sv[1]);
    errno = 0;
    assert_int_equal(hostaddr_changed(sv[0]), -1);
    assert_int_equal(errno, EBADF);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(snapshot_holds_loopback),
        cmocka_unit_test(watch_opens_a_netlink_socket),
        cmocka_unit_test(changed_is_0_when_quiet_1_after_messages_and_drains_them),
        cmocka_unit_test(changed_on_a_bad_descriptor_is_an_error),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
