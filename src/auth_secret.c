#include "auth_secret.h"

#include <string.h>

int auth_streq(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    volatile unsigned char diff = (unsigned char)(la != lb);
    for (size_t i = 0; i < la && i < lb; i++)
        diff |= (unsigned char)(a[i] ^ b[i]);
    return diff == 0;
}

void auth_wipe(void *p, size_t n)
{
    explicit_bzero(p, n);
}
