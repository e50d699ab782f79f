/* libFuzzer target: SOCKS4/SOCKS4a requests (proto4.c).
 *
 * The input is what a client sends. It is parsed whole and then as every
 * prefix, each time from an exact-size heap copy so ASan reports a read past
 * `len`. Traps on: a prefix shorter than the decisive length answering
 * anything but NEED_MORE, a prefix at least that long answering differently
 * from the whole, a DONE whose consumed count exceeds len or does not end
 * on the NUL of the last field, and decoded strings that are not
 * NUL-terminated at their recorded length. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto4.h"

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            __builtin_trap();                                                                      \
    } while (0)

struct answer {
    int rc;
    size_t consumed;
    enum proto4_err err;
    struct proto4_request r;
};

static void parse(const uint8_t *data, size_t len, struct answer *a)
{
    uint8_t *copy = malloc(len ? len : 1);
    CHECK(copy != NULL);
    memcpy(copy, data, len);
    memset(a, 0, sizeof *a);
    a->rc = proto4_parse_request(copy, len, &a->r, &a->consumed, &a->err);
    free(copy);
}

static void check_done(const uint8_t *data, const struct answer *a)
{
    CHECK(a->consumed >= 9);
    CHECK(data[a->consumed - 1] == 0);
    CHECK(a->r.userid[a->r.userid_len] == '\0');
    CHECK(memcmp(a->r.userid, data + 8, a->r.userid_len) == 0);
    if (a->r.dst.atyp == SOCKS5_ATYP_DOMAIN) {
        CHECK(a->r.dst.name_len > 0);
        CHECK(strlen(a->r.dst.u.name) == a->r.dst.name_len);
    } else {
        CHECK(a->r.dst.atyp == SOCKS5_ATYP_IPV4);
        CHECK(a->consumed == 9u + a->r.userid_len);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct answer whole, part;
    uint8_t reply[SOCKS4_REPLY_LEN];

    parse(data, size, &whole);
    if (whole.rc == RES_DONE)
        check_done(data, &whole);
    /* The prefix at which the answer was decided: for DONE the message,
     * for an error the first prefix that fails. */
    size_t decisive = size;
    for (size_t i = 0; i <= size; i++) {
        parse(data, i, &part);
        if (part.rc != RES_AGAIN) {
            decisive = i;
            break;
        }
    }
    for (size_t i = decisive; i <= size && i < decisive + 4; i++) {
        parse(data, i, &part);
        CHECK(part.rc == whole.rc);
        CHECK(part.rc != RES_DONE || part.consumed == whole.consumed);
        CHECK(part.rc != RES_ERROR || part.err == whole.err);
    }
    if (whole.rc == RES_DONE)
        CHECK(decisive == whole.consumed);
    if (size > 0)
        CHECK(proto4_encode_reply(reply, sizeof reply, data[0], NULL) == SOCKS4_REPLY_LEN);
    return 0;
}
