/* Process hardening after the listeners are bound: drop to an unprivileged
 * user, forbid regaining privileges, keep secrets out of core dumps. */
#ifndef SOCKS5D_PRIVS_H
#define SOCKS5D_PRIVS_H

#include <stddef.h>

struct config;
struct listen_spec;

/* First thing at start, before any thread: no new privileges (setuid
 * binaries cannot raise them), no core dumps. Returns 0 or -1. */
int privs_early(void);

/* For a log file at path (what: "error-log" or "access-log"), before it is
 * opened at start or checked by -t: refuses a symbolic link, a missing
 * directory and, when root
 * is to drop to 'user NAME', a file in a directory that user can write (it
 * could swap the file for a link to /etc/shadow before root opens it).
 * Returns 0, or -1 with the reason in err. */
int privs_check_log_file(const struct config *c, const char *what, const char *path, char *err,
                         size_t errlen);

/* What privs_drop would refuse, without changing anything (socks5d -t):
 * a run user that does not exist, root beyond loopback. Returns 0 or -1
 * with the reason in err. */
int privs_check(const struct config *c, const struct listen_spec *ls, size_t n, char *err,
                size_t errlen);
/* Returns 0, or -1 with the reason in err (the caller exits). Refuses to run
 * as root with a listener beyond loopback unless the config names a user to
 * become or says allow-root. Becoming the user takes its groups (initgroups)
 * and hands it the log files so that it can reopen them. */
int privs_drop(const struct config *c, const struct listen_spec *ls, size_t n, char *err,
               size_t errlen);

#endif
