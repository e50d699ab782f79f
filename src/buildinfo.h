/* `socks5d -V`: the version and what the binary was built with. */
#ifndef SOCKS5D_BUILDINFO_H
#define SOCKS5D_BUILDINFO_H

#include <stdio.h>

void buildinfo_print(FILE *out);

#endif
