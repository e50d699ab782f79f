/* Handling of secrets shared by the users file, the verification pool and
 * the sessions that read credentials off the wire. */
#ifndef SOCKS5D_AUTH_SECRET_H
#define SOCKS5D_AUTH_SECRET_H

#include <stddef.h>

/* Constant-time comparison of two NUL-terminated strings: 1 when equal. */
int auth_streq(const char *a, const char *b);
/* Overwrites a secret so it does not linger in memory. */
void auth_wipe(void *p, size_t n);

#endif
