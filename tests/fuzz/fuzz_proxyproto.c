/* libFuzzer target for the PROXY protocol parser.
 *
 * Besides memory safety (ASan/UBSan), checks the contract of proxyproto.h on
 * every prefix of the input, as if it had arrived one byte at a time: the
 * answers form NEED_MORE* followed by either DONE (always the same count and
 * result) or ERROR for good. Each prefix is parsed from its own heap copy of
 * exactly that size, so a read past `len` is an ASan report. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "proxyproto.h"

struct answer {
    int rc;
    size_t consumed;
    const char *reason;
    struct proxyproto_result r;
};

static void check(int ok, const char *what, size_t prefix)
{
    if (ok)
        return;
    fprintf(stderr, "proxyproto contract broken at prefix %zu: %s\n", prefix, what);
    abort();
}

static struct answer parse_copy(const uint8_t *data, size_t len)
{
    struct answer a;
    uint8_t *copy = malloc(len ? len : 1);

    check(copy != NULL, "out of memory", len);
    if (len)
        memcpy(copy, data, len);
    memset(&a, 0, sizeof a);
    a.rc = proxyproto_parse(copy, len, &a.r, &a.consumed, &a.reason);
    free(copy);
    return a;
}

static int endpoint_ok(const struct sockaddr_storage *ss)
{
    return ss->ss_family == AF_INET || ss->ss_family == AF_INET6;
}

/* What must hold for one answer on its own. */
static void check_answer(const struct answer *a, size_t len)
{
    check(a->rc == RES_AGAIN || a->rc == RES_DONE || a->rc == RES_ERROR, "unknown status", len);
    check(a->rc != RES_AGAIN || len < PROXYPROTO_MAX_HEADER,
          "NEED_MORE with a whole header's worth of bytes", len);
    if (a->rc == RES_ERROR)
        check(a->reason != NULL && a->reason[0] != '\0', "ERROR without a reason", len);
    if (a->rc != RES_DONE)
        return;
    check(a->consumed > 0 && a->consumed <= len, "consumed out of range", len);
    check(a->consumed <= PROXYPROTO_MAX_HEADER, "header longer than the maximum", len);
    check(a->r.version == 1 || a->r.version == 2, "bad version", len);
    check(a->r.local == 0 || a->r.local == 1, "bad local flag", len);
    if (a->r.local)
        check(a->r.src.ss_family == AF_UNSPEC && a->r.dst.ss_family == AF_UNSPEC,
              "local result with addresses", len);
    else
        check(endpoint_ok(&a->r.src) && a->r.dst.ss_family == a->r.src.ss_family,
              "proxied result without a pair of addresses", len);
}

static int same_done(const struct answer *a, const struct answer *b)
{
    return a->consumed == b->consumed && a->r.version == b->r.version && a->r.local == b->r.local &&
           memcmp(&a->r.src, &b->r.src, sizeof a->r.src) == 0 &&
           memcmp(&a->r.dst, &b->r.dst, sizeof a->r.dst) == 0;
}

/* How the answer for `prefix` bytes may follow the one for fewer bytes. */
static void check_sequence(const struct answer *prev, const struct answer *cur, size_t prefix)
{
    if (prev->rc == RES_DONE)
        check(cur->rc == RES_DONE && same_done(prev, cur), "more bytes changed a DONE answer",
              prefix);
    else if (prev->rc == RES_ERROR)
        check(cur->rc == RES_ERROR, "more bytes turned an ERROR around", prefix);
    if (cur->rc == RES_DONE && prev->rc == RES_AGAIN)
        check(cur->consumed == prefix, "DONE before the last byte of the header arrived", prefix);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct answer prev = parse_copy(data, 0);
    /* Past the largest header every answer is final, so longer prefixes
     * would only repeat it; the full input is still checked below. */
    size_t last = size < PROXYPROTO_MAX_HEADER ? size : PROXYPROTO_MAX_HEADER;

    check(prev.rc == RES_AGAIN, "empty input is not NEED_MORE", 0);
    for (size_t i = 1; i <= last; i++) {
        struct answer cur = parse_copy(data, i);
        check_answer(&cur, i);
        check_sequence(&prev, &cur, i);
        prev = cur;
    }
    if (size > last) {
        struct answer full = parse_copy(data, size);
        check_answer(&full, size);
        check_sequence(&prev, &full, size);
    }
    return 0;
}
