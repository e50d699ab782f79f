/* The pid file: claimed at start (refused while the pid in it runs this
 * program, replaced when stale), removed at exit. */
#ifndef SOCKS5D_PIDFILE_H
#define SOCKS5D_PIDFILE_H

#include <stddef.h>

/* Writes this process's pid to path (a new file renamed over the old one).
 * Returns 0; 1 when another live process of this program is named in it;
 * -1 on an error. Both failures leave the reason in err. */
int pidfile_claim(const char *path, char *err, size_t errlen);

/* For -t: whether path could be written at start (its directory exists).
 * A live process named in it is no error here: -t runs next to the server
 * it checks a reload for. Returns 0, or -1 with the reason in err. */
int pidfile_check(const char *path, char *err, size_t errlen);

/* Removes path if it still names this process. Returns 0, or -1 with the
 * reason in err. */
int pidfile_release(const char *path, char *err, size_t errlen);

#endif
