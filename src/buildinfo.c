/* The optional libraries announce themselves at build time: a build with
 * GSSAPI defines SOCKS5D_KRB5_VERSION (e.g. from `pkg-config --modversion
 * krb5-gssapi`), one with eBPF SOCKS5D_LIBBPF_VERSION; without, "no". */
#include "buildinfo.h"

#include <ares.h>

#include "version.h"

#ifndef SOCKS5D_KRB5_VERSION
#define SOCKS5D_KRB5_VERSION "no"
#endif
#ifndef SOCKS5D_LIBBPF_VERSION
#define SOCKS5D_LIBBPF_VERSION "no"
#endif

void buildinfo_print(FILE *out)
{
    fprintf(out,
            "socks5d %s\n"
            "c-ares: %s (built with %s)\n"
            "krb5: %s\n"
            "libbpf: %s\n",
            SOCKS5D_VERSION, ares_version(NULL), ARES_VERSION_STR, SOCKS5D_KRB5_VERSION,
            SOCKS5D_LIBBPF_VERSION);
}
