#include "hostaddr.h"

#include <errno.h>
#include <ifaddrs.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* Messages read per call: a storm of changes cannot hold the caller, and
 * one change is enough to know a new snapshot is due. */
#define DRAIN_MAX 256

struct addr_list *hostaddr_snapshot(char *err, size_t errlen)
{
    struct ifaddrs *all, *p;
    size_t n = 0;
    if (getifaddrs(&all) < 0) {
        snprintf(err, errlen, "getifaddrs: %s", strerror(errno));
        return NULL;
    }
    for (p = all; p; p = p->ifa_next)
        n++;
    const struct sockaddr **sa = calloc(n ? n : 1, sizeof *sa);
    struct addr_list *l = NULL;
    if (sa) {
        n = 0;
        for (p = all; p; p = p->ifa_next)
            sa[n++] = p->ifa_addr;
        l = addr_list_new(sa, n);
    }
    free(sa);
    freeifaddrs(all);
    if (!l)
        snprintf(err, errlen, "own addresses: out of memory");
    return l;
}

int hostaddr_watch(void)
{
    struct sockaddr_nl sn = {.nl_family = AF_NETLINK,
                             .nl_groups = RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR};
    int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, NETLINK_ROUTE);
    if (fd < 0)
        return -1;
    if (bind(fd, (struct sockaddr *)&sn, sizeof sn) < 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

int hostaddr_changed(int fd)
{
    char buf[8192];
    int changed = 0;
    for (int i = 0; i < DRAIN_MAX; i++) {
        ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
        if (n > 0 || (n < 0 && errno == ENOBUFS))
            changed = 1;
        else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return changed;
        else if (n < 0 && errno != EINTR)
            return -1;
    }
    return 1;
}
