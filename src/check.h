/* `socks5d -t` beyond loading: what the start would still refuse, and
 * what can never match. */
#ifndef SOCKS5D_CHECK_H
#define SOCKS5D_CHECK_H

#include <stdio.h>

struct config;

/* Prints warnings to warn and errors to err. Returns 0 when only warnings
 * (or nothing) were found, -1 when the start would fail. */
int check_config(const struct config *c, FILE *warn, FILE *err);

#endif
