/* The upstream credentials file: passwords of route hops named with a user
 * and no password (`route via socks5://alice@10.0.0.2:1080`), so that they
 * live in a file of their own and not in the configuration.
 *
 * One entry per line: the hop as a route names it, blanks, the password
 * (the rest of the line, without surrounding blanks; 1 to 255 bytes):
 *   socks5://alice@10.0.0.2:1080  s3cret words
 *   http://proxyuser@[2001:db8::2]:3128  hunter2
 * Blank lines and lines starting with # are skipped. The file must be a
 * regular file that others may neither read nor write (mode o-rwx): it is
 * refused otherwise. */
#ifndef SOCKS5D_UPCREDS_H
#define SOCKS5D_UPCREDS_H

#include <stddef.h>

#include "upstream.h"

struct upcreds;

/* Reads and checks the file. Returns NULL with "PATH[:LINE]: why" in err. */
struct upcreds *upcreds_load(const char *path, char *err, size_t errlen);
/* Parses text (len bytes) as the file's content; path names it in errors. */
struct upcreds *upcreds_parse(const char *text, size_t len, const char *path, char *err,
                              size_t errlen);
/* The password for hop h (same scheme, user, host and port), or NULL. */
const char *upcreds_find(const struct upcreds *u, const struct upstream_hop *h);
/* Wipes the passwords and frees u (NULL: nothing). */
void upcreds_free(struct upcreds *u);

#endif
