/* Host name syntax, pure: the names socks5d accepts from clients and in
 * rule patterns are the ones every resolver reads the same way. */
#ifndef SOCKS5D_HOSTNAME_H
#define SOCKS5D_HOSTNAME_H

#include <stddef.h>

#define HOSTNAME_MAX_LEN 253 /* RFC 1035 text form, without the trailing dot */
#define HOSTNAME_MAX_LABEL 63

/* Returns NULL when s[0..len) is a host name: letters, digits, '-', '_' and
 * dots, labels of 1 to 63 characters, at most 253 in all, no trailing dot.
 * Otherwise a short reason for an error message. */
const char *hostname_problem(const char *s, size_t len);

#endif
