/* libFuzzer target for the configuration-file parser (config_load in
 * src/config.c, with the rule parser and the users-file loader it calls).
 *
 * The input is the file's text. It goes into a memfd and config_load reads
 * it as `socks5d -c /proc/self/fd/N`, exactly as it reads a file on disk;
 * messages go to /dev/null. A configuration that loads is released with
 * config_unref, so LeakSanitizer sees anything either path leaks.
 *
 * `include` and `users` directives may name real files; they are only read.
 * Inputs naming something that is not a regular file (a FIFO, a terminal,
 * /dev/zero, /dev/stdin, ...) are skipped: reading those would block or
 * never end, which says nothing about the parser. stdin is /dev/null here.
 *
 * Traps on: a NULL result whose exit code is not 2, and a loaded
 * configuration that breaks what validation promises (at least one
 * listener and one method, a users file loaded whenever userpass is on or a
 * per-user limit or a rate limit is set). */
#include <fcntl.h>
#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "proto.h"
#include "users.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            __builtin_trap();                                                                      \
    } while (0)

#define MAX_REAL_FILE (1 << 20)

/* 1 if the path names something this target should not let the parser read:
 * not a regular file, or a big one. A missing file is fine (an error path). */
static int unsafe_path(const char *path)
{
    struct stat st;
    if (stat(path, &st) < 0)
        return 0;
    return !S_ISREG(st.st_mode) || st.st_size > MAX_REAL_FILE;
}

/* Looks for include/users directives the way the parser splits a line
 * (leniently: anything that could be one is checked). */
static int reads_unsafe_files(const uint8_t *data, size_t size)
{
    char line[4200], path[PATH_MAX + 32];
    size_t off = 0;
    while (off < size) {
        const uint8_t *nl = memchr(data + off, '\n', size - off);
        size_t len = nl ? (size_t)(nl - (data + off)) : size - off;
        size_t n = len < sizeof line - 1 ? len : sizeof line - 1;
        memcpy(line, data + off, n);
        line[n] = '\0';
        off += len + 1;

        char *p = line + strspn(line, " \t");
        char *hash = strchr(p, '#');
        if (hash && (hash == p || hash[-1] == ' ' || hash[-1] == '\t'))
            *hash = '\0';
        size_t l = strlen(p);
        while (l && strchr(" \t\r\n", p[l - 1]))
            p[--l] = '\0';
        char *value = p + strcspn(p, " \t");
        if (*value)
            *value++ = '\0';
        value += strspn(value, " \t");
        int include = strcmp(p, "include") == 0, users = strcmp(p, "users") == 0;
        if (!include && !users)
            continue;
        if (!*value)
            continue;
        if (include && value[0] != '/')
            snprintf(path, sizeof path, "/proc/self/fd/%s", value); /* relative to the memfd */
        else
            snprintf(path, sizeof path, "%s", value);
        if (unsafe_path(path))
            return 1;
    }
    return 0;
}

static void check_config(const struct config *c)
{
    CHECK(c->nlisten >= 1 && c->nlisten <= CONFIG_MAX_LISTEN);
    CHECK(c->nmethods >= 1 && c->nmethods <= 2);
    int userpass = memchr(c->methods, SOCKS5_METHOD_USERPASS, c->nmethods) != NULL;
    if (userpass || c->max_per_user || c->nrate_limits)
        CHECK(c->users != NULL);
    for (size_t i = 0; i < c->nrate_limits; i++) {
        CHECK(c->rate_limits[i].bytes_per_sec > 0);
        CHECK(users_find(c->users, c->rate_limits[i].user) != NULL);
    }
    CHECK(c->timeout_handshake_ms > 0 && c->timeout_connect_ms > 0 && c->timeout_idle_ms > 0);
    CHECK(c->path != NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static FILE *devnull;
    static int ready;
    if (!ready) {
        int fd = open("/dev/null", O_RDONLY);
        if (fd >= 0 && fd != 0) {
            dup2(fd, 0); /* "include /dev/stdin" and the like must not block */
            close(fd);
        }
        devnull = fopen("/dev/null", "w");
        ready = 1;
    }
    if (!devnull || reads_unsafe_files(data, size))
        return 0;

    int fd = memfd_create("fuzz-config", MFD_CLOEXEC);
    if (fd < 0)
        return 0;
    size_t done = 0;
    while (done < size) {
        ssize_t n = write(fd, data + done, size - done);
        if (n <= 0) {
            close(fd);
            return 0;
        }
        done += (size_t)n;
    }
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    char *argv[] = {"socks5d", "-c", path, NULL};
    int code = -1, check = -1;
    struct config *c = config_load(3, argv, devnull, &code, &check);
    CHECK(check == 0);
    if (c) {
        check_config(c);
        config_unref(c);
    } else {
        CHECK(code == 2);
    }
    close(fd);
    return 0;
}
