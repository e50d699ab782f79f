/* Reference reading of the domain rule of proto.h, for the fuzz targets: a
 * name is accepted when, after one trailing dot is dropped (from a name
 * longer than one byte), it is an IPv6 literal or a host name (dot-separated
 * labels of 1..63 letters, digits, '-' or '_', 253 bytes at most). The
 * parser hands it over in lower case. Written apart from hostname.c on
 * purpose: a target that reused it would only check it against itself. */
#ifndef SOCKS5D_FUZZ_SPEC_NAME_H
#define SOCKS5D_FUZZ_SPEC_NAME_H

#include <arpa/inet.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

static int spec_label_char(uint8_t c)
{
    uint8_t lower = c | 0x20;
    return (lower >= 'a' && lower <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
}

static int spec_host_name(const char *s, size_t n)
{
    size_t start = 0;
    if (n == 0 || n > 253)
        return 0;
    for (size_t i = 0; i <= n; i++) {
        if (i < n && s[i] != '.') {
            if (!spec_label_char((uint8_t)s[i]))
                return 0;
            continue;
        }
        if (i - start < 1 || i - start > 63)
            return 0;
        start = i + 1;
    }
    return 1;
}

/* Writes the expected form of the name p[0..n) to out (256 bytes, NUL
 * terminated); returns its length, or 0 when the parser must refuse it. */
static size_t spec_name(const uint8_t *p, size_t n, char *out)
{
    struct in6_addr ip6;
    if (n > 1 && p[n - 1] == '.')
        n--;
    memcpy(out, p, n);
    out[n] = '\0';
    if (memchr(out, '\0', n) != NULL)
        return 0;
    if (!spec_host_name(out, n) && inet_pton(AF_INET6, out, &ip6) != 1)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (out[i] >= 'A' && out[i] <= 'Z')
            out[i] = (char)(out[i] + ('a' - 'A'));
    return n;
}

#endif
