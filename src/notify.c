#include "notify.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "net.h"

void notify(const char *fmt, ...)
{
    const char *path = getenv("NOTIFY_SOCKET");
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    char msg[512];
    va_list ap;
    size_t plen;
    if (!path || (path[0] != '/' && path[0] != '@') || (plen = strlen(path)) >= sizeof sun.sun_path)
        return;
    memcpy(sun.sun_path, path, plen);
    if (path[0] == '@')
        sun.sun_path[0] = '\0'; /* abstract namespace */
    va_start(ap, fmt);
    int n = vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (n <= 0)
        return;
    int fd = net_socket(AF_UNIX, SOCK_DGRAM, 0, NULL, 0);
    if (fd < 0)
        return;
    /* Best effort, never waiting: a supervisor that stops reading must not
     * stall the main thread. */
    ssize_t w = sendto(fd, msg, (size_t)n < sizeof msg ? (size_t)n : sizeof msg - 1,
                       MSG_NOSIGNAL | MSG_DONTWAIT, (struct sockaddr *)&sun,
                       (socklen_t)(offsetof(struct sockaddr_un, sun_path) + plen));
    (void)w;
    close(fd);
}
