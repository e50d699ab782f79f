#include "privs.h"

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
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
    /* Supplementary groups first: root's would otherwise survive the drop. */
    if (setgroups(0, NULL) < 0 || setgid(pw->pw_gid) < 0 || setuid(pw->pw_uid) < 0) {
        snprintf(err, errlen, "user %s: cannot drop privileges: %s", name, strerror(errno));
        return -1;
    }
    if (pw->pw_uid != 0 && (setuid(0) == 0 || seteuid(0) == 0)) {
        snprintf(err, errlen, "user %s: privileges could be regained after the drop", name);
        return -1;
    }
    log_info("running as %s (uid %u, gid %u)", name, (unsigned)pw->pw_uid, (unsigned)pw->pw_gid);
    return 0;
}

int privs_early(void)
{
    protect_memory();
    /* Per thread, inherited by threads created later: set before the first. */
    return prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
}

int privs_drop(const struct config *c, const struct listen_spec *ls, size_t n, char *err,
               size_t errlen)
{
    if (c->run_user && become(c->run_user, err, errlen) < 0)
        return -1;
    if (geteuid() == 0 && !c->allow_root) {
        for (size_t i = 0; i < n; i++) {
            char name[ADDR_STRLEN];
            if (!addr_is_loopback(&ls[i].addr.sa)) {
                snprintf(err, errlen,
                         "refusing to run as root with a listener on %s: set 'user NAME' to drop "
                         "privileges after binding, or allow-root if you must",
                         addr_str(&ls[i].addr.sa, name, sizeof name));
                return -1;
            }
        }
    }
    return 0;
}
