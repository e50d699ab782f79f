/* See pidfile.h. */
#include "pidfile.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The pid in path; 0 when the file is missing or holds no pid. */
static long read_pid(const char *path)
{
    char buf[32] = "";
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    if (!fgets(buf, sizeof buf, f))
        buf[0] = '\0';
    fclose(f);
    char *end;
    long pid = strtol(buf, &end, 10);
    return pid > 0 && (*end == '\n' || *end == '\0') ? pid : 0;
}

/* The command name of pid (/proc/PID/comm), "" when it cannot be read. */
static void comm_of(const char *pid, char *out, size_t len)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%s/comm", pid);
    FILE *f = fopen(path, "r");
    out[0] = '\0';
    if (!f)
        return;
    if (!fgets(out, (int)len, f))
        out[0] = '\0';
    fclose(f);
}

/* A live process running this program: a pid reused by something else
 * after a crash or a reboot leaves the file stale (as start-stop-daemon's
 * --name decides). */
static int runs_us(long pid)
{
    char id[32], theirs[64], ours[64];
    if (pid == (long)getpid() || (kill((pid_t)pid, 0) < 0 && errno != EPERM))
        return 0;
    snprintf(id, sizeof id, "%ld", pid);
    comm_of(id, theirs, sizeof theirs);
    comm_of("self", ours, sizeof ours);
    return ours[0] && strcmp(theirs, ours) == 0;
}

/* Writes "pid\n" to a new file next to path and renames it over path. */
static int write_pid(const char *path, char *err, size_t errlen)
{
    char tmp[PATH_MAX];
    char line[32];
    int n = snprintf(line, sizeof line, "%ld\n", (long)getpid());
    if (snprintf(tmp, sizeof tmp, "%s.XXXXXX", path) >= (int)sizeof tmp)
        return snprintf(err, errlen, "pid-file %s: path too long", path), -1;
    int fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0)
        return snprintf(err, errlen, "pid-file %s: %s", path, strerror(errno)), -1;
    errno = EIO; /* a short write sets none */
    int bad = fchmod(fd, 0644) < 0 || write(fd, line, (size_t)n) != n;
    int e = errno;
    if (close(fd) < 0 && !bad)
        bad = 1, e = errno;
    if (!bad && rename(tmp, path) == 0)
        return 0;
    e = bad ? e : errno;
    unlink(tmp);
    return snprintf(err, errlen, "pid-file %s: %s", path, strerror(e)), -1;
}

int pidfile_claim(const char *path, char *err, size_t errlen)
{
    long pid = read_pid(path);
    if (pid && runs_us(pid))
        return snprintf(err, errlen, "pid-file %s: socks5d is already running as pid %ld", path,
                        pid),
               1;
    return write_pid(path, err, errlen);
}

int pidfile_check(const char *path, char *err, size_t errlen)
{
    char dir[PATH_MAX];
    struct stat st;
    snprintf(dir, sizeof dir, "%s", path);
    const char *d = dirname(dir);
    if (stat(d, &st) < 0)
        return snprintf(err, errlen, "pid-file %s: directory %s: %s", path, d, strerror(errno)), -1;
    if (!S_ISDIR(st.st_mode))
        return snprintf(err, errlen, "pid-file %s: %s is not a directory", path, d), -1;
    return 0;
}

int pidfile_release(const char *path, char *err, size_t errlen)
{
    /* A later instance may have replaced the file: its pid stays. */
    if (read_pid(path) != (long)getpid())
        return 0;
    if (unlink(path) < 0)
        return snprintf(err, errlen, "pid-file %s: cannot remove: %s", path, strerror(errno)), -1;
    return 0;
}
