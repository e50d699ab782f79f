/* What a reload changes, in words for the error log: the operator reads
 * there what took effect and what waits for a restart. */
#ifndef SOCKS5D_CONFDIFF_H
#define SOCKS5D_CONFDIFF_H

#include <stddef.h>

#include "config.h"

/* Writes to out what differs from old to new: listen addresses added and
 * removed (only when `listeners`: under socket activation the configuration
 * does not choose them), the number of rules, and the number of users with
 * how many were removed or given another password. Always ends in a string;
 * "no change" when none of these moved. */
void confdiff_changes(const struct config *old, const struct config *new, int listeners, char *out,
                      size_t len);

/* Writes to out the settings new changes that take effect only on restart
 * (comma-separated; workers compared with the `running` count), or "". */
void confdiff_restart(const struct config *old, const struct config *new, int running, char *out,
                      size_t len);

#endif
