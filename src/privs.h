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

/* Returns 0, or -1 with the reason in err (the caller exits). Refuses to run
 * as root with a listener beyond loopback unless the config names a user to
 * become or says allow-root. */
int privs_drop(const struct config *c, const struct listen_spec *ls, size_t n, char *err,
               size_t errlen);

#endif
