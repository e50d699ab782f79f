#include "privs.h"

#include <errno.h>
#include <grp.h>
#include <libgen.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "log.h"

/* Passwords pass through memory: no core dumps, no ptrace by others. */
static void protect_memory(void)
{
    struct rlimit none = {0, 0};
    setrlimit(RLIMIT_CORE, &none);
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
}

static int become(const char *name, char *err, size_t errlen)
{
    struct passwd *pw = getpwnam(name);
    if (!pw) {
        snprintf(err, errlen, "user %s: no such user", name);
        return -1;
    }
    /* Groups first, while still root: the user's own (a group that may read
     * a key or socket), none of root's. */
    if (initgroups(name, pw->pw_gid) < 0 || setgid(pw->pw_gid) < 0) {
        snprintf(err, errlen, "user %s: cannot drop privileges: %s", name, strerror(errno));
        return -1;
    }
    if (log_chown(pw->pw_uid) < 0) {
        snprintf(err, errlen, "user %s: cannot give it the log files: %s", name, strerror(errno));
        return -1;
    }
    if (setuid(pw->pw_uid) < 0) {
        snprintf(err, errlen, "user %s: cannot drop privileges: %s", name, strerror(errno));
        return -1;
    }
    if (pw->pw_uid != 0 && (setuid(0) == 0 || seteuid(0) == 0)) {
        snprintf(err, errlen, "user %s: privileges could be regained after the drop", name);
        return -1;
    }
    /* A change of uid resets the flag to fs.suid_dumpable, which may be 1. */
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0) {
        snprintf(err, errlen, "user %s: PR_SET_DUMPABLE: %s", name, strerror(errno));
        return -1;
    }
    log_info("running as %s (uid %u, gid %u)", name, (unsigned)pw->pw_uid, (unsigned)pw->pw_gid);
    return 0;
}

/* Whether pw may add or remove names in a directory of this mode, by the
 * classic permission bits (owner, else group, else others). */
static int user_can_write(const struct stat *dir, const struct passwd *pw)
{
    gid_t groups[1024];
    int n = 1024;
    if (dir->st_uid == pw->pw_uid)
        return (dir->st_mode & S_IWUSR) != 0;
    if (getgrouplist(pw->pw_name, pw->pw_gid, groups, &n) < 0)
        return 1; /* cannot tell: assume the worst */
    for (int i = 0; i < n; i++)
        if (groups[i] == dir->st_gid)
            return (dir->st_mode & S_IWGRP) != 0;
    return (dir->st_mode & S_IWOTH) != 0;
}

int privs_check_log_file(const struct config *c, const char *what, const char *path, char *err,
                         size_t errlen)
{
    struct stat st;
    char dir[PATH_MAX];
    if (lstat(path, &st) == 0 && S_ISLNK(st.st_mode)) {
        snprintf(err, errlen,
                 "%s %s: is a symbolic link (log files are opened without following links)", what,
                 path);
        return -1;
    }
    snprintf(dir, sizeof dir, "%s", path);
    const char *d = dirname(dir);
    int gone = stat(d, &st) < 0;
    if (gone || !S_ISDIR(st.st_mode)) {
        snprintf(err, errlen, "%s %s: directory %s: %s", what, path, d,
                 strerror(gone ? errno : ENOTDIR));
        return -1;
    }
    if (geteuid() != 0 || !c->run_user)
        return 0;
    struct passwd *pw = getpwnam(c->run_user);
    if (!pw) {
        snprintf(err, errlen, "user %s: no such user", c->run_user);
        return -1;
    }
    if (user_can_write(&st, pw)) {
        snprintf(err, errlen,
                 "%s %s: directory %s is writable by user %s, who could replace the file with "
                 "a link before root opens it; use a directory only root can write",
                 what, path, d, c->run_user);
        return -1;
    }
    return 0;
}

int privs_early(void)
{
    protect_memory();
    /* Per thread, inherited by threads created later: set before the first. */
    return prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
}

/* Refuses a listener beyond loopback for a process that runs as `uid`. */
static int refuse_root(const struct config *c, const struct listen_spec *ls, size_t n, uid_t uid,
                       char *err, size_t errlen)
{
    char name[ADDR_STRLEN];
    for (size_t i = 0; uid == 0 && !c->allow_root && i < n; i++)
        if (!addr_is_loopback(&ls[i].addr.sa)) {
            snprintf(err, errlen,
                     "refusing to run as root with a listener on %s: start socks5d as an "
                     "unprivileged user (the packaged unit does: User=socks5d; check a file as "
                     "that user), set 'user NAME' to drop privileges after binding, or "
                     "allow-root if you must",
                     addr_str(&ls[i].addr.sa, name, sizeof name));
            return -1;
        }
    return 0;
}

int privs_check(const struct config *c, const struct listen_spec *ls, size_t n, char *err,
                size_t errlen)
{
    uid_t uid = geteuid();
    if (c->run_user) {
        struct passwd *pw = getpwnam(c->run_user);
        if (!pw) {
            snprintf(err, errlen, "user %s: no such user", c->run_user);
            return -1;
        }
        uid = uid == 0 ? pw->pw_uid : uid;
    }
    return refuse_root(c, ls, n, uid, err, errlen);
}

int privs_drop(const struct config *c, const struct listen_spec *ls, size_t n, char *err,
               size_t errlen)
{
    if (c->run_user && become(c->run_user, err, errlen) < 0)
        return -1;
    return refuse_root(c, ls, n, geteuid(), err, errlen);
}
