/* libFuzzer target for the upstream credentials file parser (upcreds_parse
 * in src/upcreds.c).
 *
 * The input is the file's text, handed over in an exact-size heap copy (not
 * NUL-terminated), so ASan reports any read past `len`; the error buffer
 * gets a length chosen by the input and canaries behind it.
 *
 * Traps on: an error message not NUL-terminated within errlen or written
 * past it, a NULL result with an empty message or one that does not start
 * with the path, a password found that is empty, over 255 bytes or has
 * blanks around it. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "route.h"
#include "upcreds.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            __builtin_trap();                                                                      \
    } while (0)

#define ERRMAX 300
#define CANARY 0x5A

/* Every hop the text's lines start with must find a sane password. */
static void check_lookups(const struct upcreds *u, const char *text, size_t size)
{
    char err[256];
    for (size_t off = 0; off < size;) {
        const char *nl = memchr(text + off, '\n', size - off);
        size_t len = nl ? (size_t)(nl - (text + off)) : size - off, k = 0;
        const char *line = text + off;
        off += len + 1;
        while (k < len && line[k] != ' ' && line[k] != '\t' && line[k] != '\r')
            k++;
        struct upstream_hop h;
        if (k == 0 || route_hop_parse(line, k, &h, err, sizeof err) < 0)
            continue;
        const char *pw = upcreds_find(u, &h);
        if (pw == NULL)
            continue;
        size_t n = strlen(pw);
        CHECK(n > 0 && n <= 255);
        CHECK(pw[0] != ' ' && pw[0] != '\t' && pw[n - 1] != ' ' && pw[n - 1] != '\t');
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char err[ERRMAX + 16];
    size_t errlen = size ? 1 + data[size - 1] % ERRMAX : ERRMAX;
    char *text = malloc(size ? size : 1); /* exact size: no terminator to lean on */
    if (!text)
        return 0;
    memcpy(text, data, size);
    memset(err, CANARY, sizeof err);
    struct upcreds *u = upcreds_parse(text, size, "fuzz", err, errlen);
    for (size_t i = errlen; i < sizeof err; i++)
        CHECK(err[i] == (char)CANARY);
    if (!u) {
        CHECK(memchr(err, '\0', errlen) != NULL);
        CHECK(err[0] != '\0' || errlen == 1);
        if (errlen > 4)
            CHECK(strncmp(err, "fuzz", 4) == 0); /* "PATH:LINE: reason" */
    } else {
        check_lookups(u, text, size);
    }
    upcreds_free(u);
    free(text);
    return 0;
}
