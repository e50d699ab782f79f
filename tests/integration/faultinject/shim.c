/* Fault injection and double-close detection for socks5d, loaded with
 * LD_PRELOAD by tests/integration/test_attack_faults.py.
 *
 * Injection: while the file named by FAULT_ARM exists, the first and then
 * every FAULT_EVERY-th call (default 5) of each call named in FAULT_CALLS
 * (default "epoll_ctl,accept4,socket,splice,pipe2") fails as the kernel could make it
 * fail: epoll_ctl ADD/MOD with ENOMEM, accept4/socket/pipe2/eventfd with
 * EMFILE, splice with ENOMEM. Each injection writes "inject <call>" to the
 * file named by FAULT_REPORT.
 *
 * Detection: the state of every descriptor number (open / closed) is tracked
 * through the calls that create descriptors and through close(). A close of
 * a number this process closed before and has not been handed out again is a
 * double close: "double-close <fd>" goes to the report. So does a close the
 * kernel answers with EBADF ("ebadf-close <fd>"). The state is changed before
 * the real close and after the real open, so a number freed by one thread and
 * reused by another is never misread. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_FD 65536
enum { FD_UNKNOWN, FD_OPEN, FD_CLOSED };
enum { C_EPOLL_CTL, C_ACCEPT4, C_SOCKET, C_SPLICE, C_PIPE2, C_EVENTFD, C_MAX };
static const char *const call_names[C_MAX] = {"epoll_ctl", "accept4", "socket",
                                              "splice",    "pipe2",   "eventfd"};

static _Atomic unsigned char fd_state[MAX_FD];
static atomic_uint calls[C_MAX];
static int enabled[C_MAX];
static unsigned every = 5;
static const char *arm_path;
static int report_fd = -1;

static int (*real_close)(int);
static int (*real_socket)(int, int, int);
static int (*real_accept)(int, struct sockaddr *, socklen_t *);
static int (*real_accept4)(int, struct sockaddr *, socklen_t *, int);
static int (*real_pipe)(int[2]);
static int (*real_pipe2)(int[2], int);
static int (*real_socketpair)(int, int, int, int[2]);
static int (*real_epoll_create1)(int);
static int (*real_epoll_ctl)(int, int, int, struct epoll_event *);
static int (*real_eventfd)(unsigned, int);
static ssize_t (*real_splice)(int, loff_t *, int, loff_t *, size_t, unsigned);
static int (*real_open)(const char *, int, ...);
static int (*real_openat)(int, const char *, int, ...);
static int (*real_dup)(int);
static int (*real_dup3)(int, int, int);

/* One line to the report; write(2) with O_APPEND keeps lines whole. */
static void report(const char *fmt, ...)
{
    char line[96];
    va_list ap;
    int len;
    if (report_fd < 0)
        return;
    va_start(ap, fmt);
    len = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (len > 0 && write(report_fd, line, (size_t)len) < 0)
        report_fd = -1;
}

__attribute__((constructor)) static void shim_init(void)
{
    const char *list = getenv("FAULT_CALLS"), *e = getenv("FAULT_EVERY");
    const char *path = getenv("FAULT_REPORT");
#define REAL(name) real_##name = dlsym(RTLD_NEXT, #name)
    REAL(close);
    REAL(socket);
    REAL(accept);
    REAL(accept4);
    REAL(pipe);
    REAL(pipe2);
    REAL(socketpair);
    REAL(epoll_create1);
    REAL(epoll_ctl);
    REAL(eventfd);
    REAL(splice);
    REAL(open);
    REAL(openat);
    REAL(dup);
    REAL(dup3);
#undef REAL
    if (!list)
        list = "epoll_ctl,accept4,socket,splice,pipe2";
    for (int i = 0; i < C_MAX; i++) {
        const char *p = strstr(list, call_names[i]);
        size_t n = strlen(call_names[i]);
        enabled[i] = p && (p == list || p[-1] == ',') && (p[n] == ',' || p[n] == '\0');
    }
    if (e && atoi(e) > 0)
        every = (unsigned)atoi(e);
    arm_path = getenv("FAULT_ARM");
    if (path)
        report_fd = real_open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
}

/* Whether this call of `c` fails. */
static int inject(int c)
{
    if (!enabled[c] || !arm_path || access(arm_path, F_OK) != 0)
        return 0;
    if (atomic_fetch_add(&calls[c], 1) % every != 0)
        return 0;
    report("inject %s\n", call_names[c]);
    return 1;
}

static int opened(int fd)
{
    if (fd >= 0 && fd < MAX_FD && fd != report_fd)
        atomic_store(&fd_state[fd], FD_OPEN);
    return fd;
}

static int opened_pair(int rc, const int fds[2])
{
    if (rc == 0) {
        opened(fds[0]);
        opened(fds[1]);
    }
    return rc;
}

int close(int fd)
{
    int prev = FD_UNKNOWN, rc, err;
    if (fd == report_fd && fd >= 0) {
        errno = EBADF; /* the report stays open to the end */
        return -1;
    }
    if (fd >= 0 && fd < MAX_FD)
        prev = atomic_exchange(&fd_state[fd], FD_CLOSED);
    if (prev == FD_CLOSED)
        report("double-close %d\n", fd);
    rc = real_close(fd);
    err = errno;
    if (rc < 0 && err == EBADF && prev != FD_CLOSED)
        report("ebadf-close %d\n", fd);
    errno = err;
    return rc;
}

int socket(int domain, int type, int protocol)
{
    if (inject(C_SOCKET)) {
        errno = EMFILE;
        return -1;
    }
    return opened(real_socket(domain, type, protocol));
}

int accept(int fd, struct sockaddr *addr, socklen_t *len)
{
    return opened(real_accept(fd, addr, len));
}

int accept4(int fd, struct sockaddr *addr, socklen_t *len, int flags)
{
    if (inject(C_ACCEPT4)) {
        errno = EMFILE;
        return -1;
    }
    return opened(real_accept4(fd, addr, len, flags));
}

int pipe(int fds[2])
{
    return opened_pair(real_pipe(fds), fds);
}

int pipe2(int fds[2], int flags)
{
    if (inject(C_PIPE2)) {
        errno = EMFILE;
        return -1;
    }
    return opened_pair(real_pipe2(fds, flags), fds);
}

int socketpair(int domain, int type, int protocol, int fds[2])
{
    return opened_pair(real_socketpair(domain, type, protocol, fds), fds);
}

int epoll_create1(int flags)
{
    return opened(real_epoll_create1(flags));
}

int epoll_ctl(int epfd, int op, int fd, struct epoll_event *ev)
{
    if ((op == EPOLL_CTL_ADD || op == EPOLL_CTL_MOD) && inject(C_EPOLL_CTL)) {
        errno = ENOMEM;
        return -1;
    }
    return real_epoll_ctl(epfd, op, fd, ev);
}

int eventfd(unsigned initval, int flags)
{
    if (inject(C_EVENTFD)) {
        errno = EMFILE;
        return -1;
    }
    return opened(real_eventfd(initval, flags));
}

ssize_t splice(int in, loff_t *off_in, int out, loff_t *off_out, size_t len, unsigned flags)
{
    if (inject(C_SPLICE)) {
        errno = ENOMEM;
        return -1;
    }
    return real_splice(in, off_in, out, off_out, len, flags);
}

int open(const char *path, int flags, ...)
{
    mode_t mode = 0;
    if (flags & (O_CREAT | O_TMPFILE)) {
        va_list ap;
        va_start(ap, flags);
        mode = va_arg(ap, mode_t);
        va_end(ap);
    }
    return opened(real_open(path, flags, mode));
}

int open64(const char *path, int flags, ...) __attribute__((alias("open")));

int openat(int dirfd, const char *path, int flags, ...)
{
    mode_t mode = 0;
    if (flags & (O_CREAT | O_TMPFILE)) {
        va_list ap;
        va_start(ap, flags);
        mode = va_arg(ap, mode_t);
        va_end(ap);
    }
    return opened(real_openat(dirfd, path, flags, mode));
}

int openat64(int dirfd, const char *path, int flags, ...) __attribute__((alias("openat")));

int dup(int fd)
{
    return opened(real_dup(fd));
}

int dup2(int fd, int to)
{
    if (fd == to)
        return fcntl(fd, F_GETFD) < 0 ? -1 : to;
    return opened(real_dup3(fd, to, 0));
}

int dup3(int fd, int to, int flags)
{
    return opened(real_dup3(fd, to, flags));
}
