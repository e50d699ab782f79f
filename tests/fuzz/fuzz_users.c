/* libFuzzer target for the users-file parser (users_parse in src/users.c).
 *
 * The input is the file's text. It is handed over in an exact-size heap copy
 * (not NUL-terminated), so ASan reports any read past `len`; the error buffer
 * gets a length chosen by the input and canaries behind it.
 *
 * Traps on: an error message that is not NUL-terminated within errlen or
 * writes past it, a NULL result with an empty message, a result whose
 * lookups disagree with a reference reading of the format (every
 * "name:hash" line, blanks around it and '#' comments ignored, must be found
 * with exactly its hash; names that are not in the file must not be). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "users.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            __builtin_trap();                                                                      \
    } while (0)

#define ERRMAX 300
#define CANARY 0x5A
#define MAX_CHECKED 64

/* Reference reading of one line: fills name/hash (NUL-terminated copies)
 * and returns 1 for a "name:hash" entry, 0 for a blank or comment line. */
static int ref_line(const char *line, size_t len, char *name, char *hash, size_t cap)
{
    while (len && (*line == ' ' || *line == '\t'))
        line++, len--;
    while (len && (line[len - 1] == ' ' || line[len - 1] == '\t' || line[len - 1] == '\r'))
        len--;
    if (len == 0 || line[0] == '#')
        return 0;
    const char *colon = memchr(line, ':', len);
    CHECK(colon != NULL); /* users_parse accepted the file: every entry has one */
    size_t nlen = (size_t)(colon - line), hlen = len - nlen - 1;
    if (nlen >= cap || hlen >= cap)
        return -1;
    memcpy(name, line, nlen);
    name[nlen] = '\0';
    memcpy(hash, colon + 1, hlen);
    hash[hlen] = '\0';
    return 1;
}

static void check_lookups(const struct users *u, const char *text, size_t size)
{
    static char name[4200], hash[4200];
    size_t off = 0, entries = 0;
    int complete = 1;
    while (off < size) {
        const char *nl = memchr(text + off, '\n', size - off);
        size_t len = nl ? (size_t)(nl - (text + off)) : size - off;
        int r = ref_line(text + off, len, name, hash, sizeof name);
        if (r < 0) {
            complete = 0;
        } else if (r == 1) {
            entries++;
            if (entries <= MAX_CHECKED) {
                const char *got = users_find(u, name);
                CHECK(got != NULL);
                CHECK(strcmp(got, hash) == 0);
                CHECK(got[0] == '$'); /* only crypt(3) hashes are accepted */
                CHECK(strlen(name) > 0 && strlen(name) <= 255);
                CHECK(strpbrk(name, " \t") == NULL);
            }
        }
        off += len + 1;
    }
    if (complete)
        CHECK(users_count(u) == entries);
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
    struct users *u = users_parse(text, size, "fuzz", err, errlen);
    for (size_t i = errlen; i < sizeof err; i++)
        CHECK(err[i] == (char)CANARY);
    if (!u) {
        CHECK(memchr(err, '\0', errlen) != NULL);
        CHECK(err[0] != '\0' || errlen == 1); /* a reason, unless there is no room */
        if (errlen > 4)
            CHECK(strncmp(err, "fuzz", 4) == 0); /* "PATH:LINE: reason" */
    } else {
        check_lookups(u, text, size);
        /* Names that cannot be in any valid file, and a few that may be. */
        CHECK(users_find(u, "") == NULL);
        CHECK(users_find(u, "has space") == NULL);
        (void)users_find(u, "alice");
        (void)users_find(u, "bob");
        (void)users_find(u, "#");
    }
    /* NULL is accepted by the lookups and by users_free. */
    CHECK(users_find(NULL, "alice") == NULL);
    CHECK(users_count(NULL) == 0);
    users_free(u);
    free(text);
    return 0;
}
