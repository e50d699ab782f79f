/* `socks5d passwd [-f FILE] NAME`: a yescrypt users-file line for NAME,
 * printed, or set in FILE in place.
 *
 * In place means: NAME's first line is replaced and any later line for NAME
 * dropped (a duplicate makes the whole file invalid), every other line kept
 * as it is, the result written to a temporary file next to FILE and renamed
 * over it, so that a reload never reads half a file. Concurrent runs on one
 * file take turns (flock), so none loses another's user. */
#include "passwd.h"

#include <crypt.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include "auth_secret.h"

#define PASSWD_MAX 255

/* Reads one line from stdin, without echo when it is a terminal. */
static int read_line(const char *prompt, int tty, char *buf, size_t len)
{
    struct termios old, quiet;
    tty = tty && tcgetattr(STDIN_FILENO, &old) == 0;
    if (tty) {
        /* Echo off before the prompt: what is typed after it is kept. */
        quiet = old;
        quiet.c_lflag &= ~(tcflag_t)ECHO;
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
        fprintf(stderr, "%s", prompt);
    }
    char *ok = fgets(buf, (int)len, stdin);
    if (tty) {
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
        fprintf(stderr, "\n");
    }
    if (!ok)
        return -1;
    buf[strcspn(buf, "\r\n")] = '\0';
    return 0;
}

/* The password: asked twice on a terminal, read once from a pipe. Returns 0,
 * or -1 after saying why. */
static int read_password(char *pass, size_t len)
{
    char again[512];
    int tty = isatty(STDIN_FILENO);
    if (read_line("Password: ", tty, pass, len) < 0 || pass[0] == '\0' ||
        strlen(pass) > PASSWD_MAX) {
        fprintf(stderr, "socks5d passwd: expected a password of 1..%d bytes on stdin\n",
                PASSWD_MAX);
        return -1;
    }
    if (!tty)
        return 0;
    int same = read_line("Again: ", tty, again, sizeof again) == 0 && strcmp(pass, again) == 0;
    auth_wipe(again, sizeof again);
    if (!same)
        fprintf(stderr, "socks5d passwd: the passwords do not match; nothing changed\n");
    return same ? 0 : -1;
}

/* "NAME:HASH" with a new yescrypt hash into line. Returns 0 or -1. */
static int make_line(const char *name, const char *pass, char *line, size_t len)
{
    struct crypt_data cd;
    memset(&cd, 0, sizeof cd);
    const char *salt = crypt_gensalt_rn("$y$", 0, NULL, 0, cd.setting, sizeof cd.setting);
    const char *hash = salt ? crypt_r(pass, salt, &cd) : NULL;
    int ok = hash && hash[0] != '*' && (size_t)snprintf(line, len, "%s:%s", name, hash) < len;
    if (!ok)
        fprintf(stderr, "socks5d passwd: crypt failed: %s\n", strerror(errno));
    auth_wipe(&cd, sizeof cd);
    return ok ? 0 : -1;
}

/* 1 when the users-file line `l` is NAME's. */
static int is_user_line(const char *l, const char *name)
{
    size_t n = strlen(name);
    l += strspn(l, " \t");
    return strncmp(l, name, n) == 0 && l[n] == ':';
}

/* Opens and locks FILE (made empty, mode 0600, if missing). Another run may
 * have renamed a new file over the one we waited for: then lock that one. */
static int lock_file(const char *path, struct stat *st)
{
    for (int tries = 0; tries < 100; tries++) {
        struct stat now;
        int fd = open(path, O_RDONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0 || flock(fd, LOCK_EX) < 0 || fstat(fd, st) < 0) {
            fprintf(stderr, "socks5d passwd: %s: %s\n", path, strerror(errno));
            if (fd >= 0)
                close(fd);
            return -1;
        }
        if (stat(path, &now) == 0 && now.st_ino == st->st_ino && now.st_dev == st->st_dev)
            return fd;
        close(fd);
    }
    fprintf(stderr, "socks5d passwd: %s: keeps being replaced\n", path);
    return -1;
}

/* Copies `in` to `out` with NAME's line set to `line`. Returns 1 when NAME
 * was there, 0 when it was added, -1 on a read or write error. */
static int copy_with(FILE *in, FILE *out, const char *name, const char *line)
{
    char *l = NULL;
    size_t cap = 0;
    ssize_t n;
    int found = 0, last_nl = 1;
    while ((n = getline(&l, &cap, in)) > 0) {
        if (is_user_line(l, name)) {
            if (!found)
                fprintf(out, "%s\n", line);
            found = 1;
            continue;
        }
        fwrite(l, 1, (size_t)n, out);
        last_nl = l[n - 1] == '\n';
    }
    auth_wipe(l, cap);
    free(l);
    if (!found)
        fprintf(out, "%s%s\n", last_nl ? "" : "\n", line);
    return ferror(in) || ferror(out) ? -1 : found;
}

/* The new file keeps the old one's owner, group and mode, less anything
 * for others: the hashes are worth guessing offline. */
static int set_owner_and_mode(int fd, const char *path, const struct stat *st)
{
    if (st->st_mode & 0007)
        fprintf(stderr,
                "socks5d passwd: warning: %s was readable by others (mode %04o); the new file "
                "is not\n",
                path, (unsigned)(st->st_mode & 07777));
    if ((geteuid() == 0 && fchown(fd, st->st_uid, st->st_gid) < 0) ||
        fchmod(fd, st->st_mode & 0770) < 0) {
        fprintf(stderr, "socks5d passwd: %s: %s\n", path, strerror(errno));
        return -1;
    }
    return 0;
}

static int write_file(const char *path, const char *name, const char *line)
{
    struct stat st;
    char tmp[4096];
    int fd = lock_file(path, &st), out_fd = -1, rc = -1;
    FILE *in = NULL, *out = NULL;
    if (fd < 0)
        return -1;
    if (snprintf(tmp, sizeof tmp, "%s.XXXXXX", path) >= (int)sizeof tmp ||
        (out_fd = mkstemp(tmp)) < 0) {
        fprintf(stderr, "socks5d passwd: %s: cannot make a temporary file: %s\n", path,
                strerror(errno));
        close(fd);
        return -1;
    }
    if (set_owner_and_mode(out_fd, path, &st) == 0 && (in = fdopen(fd, "r")) &&
        (out = fdopen(out_fd, "w"))) {
        int found = copy_with(in, out, name, line);
        if (found >= 0 && fflush(out) == 0 && fsync(out_fd) == 0 && rename(tmp, path) == 0) {
            fprintf(stderr, "socks5d passwd: %s user %s in %s\n", found ? "replaced" : "added",
                    name, path);
            rc = 0;
        } else {
            fprintf(stderr, "socks5d passwd: %s: %s\n", path, strerror(errno));
        }
    }
    if (rc < 0)
        unlink(tmp);
    out ? fclose(out) : close(out_fd);
    in ? fclose(in) : close(fd); /* and the lock */
    return rc;
}

static int usage(void)
{
    fprintf(stderr, "usage: socks5d passwd [-f FILE] NAME\n");
    return 2;
}

int passwd_main(int argc, char **argv)
{
    char pass[512], line[1024];
    const char *file = NULL, *name;
    if (argc == 4 && strcmp(argv[1], "-f") == 0)
        file = argv[2];
    else if (argc != 2 || argv[1][0] == '-')
        return usage();
    name = argv[argc - 1];
    size_t nlen = strlen(name);
    if (nlen == 0 || nlen > 255 || strchr(name, ':') || strpbrk(name, " \t\r\n#")) {
        fprintf(stderr,
                "socks5d passwd: user name must be 1..255 bytes without ':', '#' or spaces\n");
        return 2;
    }
    int bad = read_password(pass, sizeof pass) < 0;
    bad = bad ? 2 : make_line(name, pass, line, sizeof line) < 0;
    auth_wipe(pass, sizeof pass);
    if (!bad && file)
        bad = write_file(file, name, line) < 0;
    else if (!bad)
        printf("%s\n", line);
    auth_wipe(line, sizeof line);
    return bad;
}
