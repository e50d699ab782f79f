/* libFuzzer target: RFC 1961 message framing (the GSS-API method).
 *
 * Input: byte 0 chooses how the stream is cut into reads, byte 1 the largest
 * token the server takes ((b+1)*16 bytes); the rest is what a client sends. A
 * server parses messages in turn, the i-th expecting type 1, 2, 3, 1, ...
 * (context, protection, encapsulation), until an error or an abort. That is
 * done with the whole stream at once and with it arriving in reads; every
 * parse gets an exact-size heap copy of the unconsumed bytes, so ASan reports
 * any read past `len`.
 *
 * Traps on: an answer that differs from a reference reading of RFC 1961
 * (status, consumed count, error, type, length, token bytes), and any
 * difference between the whole and the split run. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto.h"
#include "splitter.h"

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            __builtin_trap();                                                                      \
    } while (0)

#define MAX_STEPS 64

struct step {
    int status;
    size_t consumed;
    enum proto_err err;
    uint8_t mtyp;
    uint16_t len;
    uint64_t sum; /* of the token bytes, to compare runs whose copies are freed */
};

struct run {
    struct step steps[MAX_STEPS];
    size_t nsteps, pos;
    int ended;
};

static uint8_t want_type(size_t i)
{
    static const uint8_t types[] = {SOCKS5_GSS_AUTH, SOCKS5_GSS_PROT, SOCKS5_GSS_ENCAP};
    return types[i % 3];
}

/* The reference: NEED_MORE only while the bytes are a valid prefix. */
static int spec(const uint8_t *b, size_t n, uint8_t mtyp, size_t max, size_t *need,
                enum proto_err *err)
{
    if (n < 1)
        return RES_AGAIN;
    if (b[0] != 1)
        return *err = PROTO_E_GSS_VERSION, RES_ERROR;
    if (n < 2)
        return RES_AGAIN;
    if (b[1] == 0xff)
        return *need = 2, RES_DONE;
    if (b[1] != mtyp)
        return *err = PROTO_E_GSS_MTYP, RES_ERROR;
    if (n < 4)
        return RES_AGAIN;
    size_t len = (size_t)b[2] << 8 | b[3];
    if (len == 0)
        return *err = PROTO_E_GSS_EMPTY, RES_ERROR;
    if (len > max)
        return *err = PROTO_E_GSS_TOO_LONG, RES_ERROR;
    *need = 4 + len;
    return n < *need ? RES_AGAIN : RES_DONE;
}

static uint64_t sum(const uint8_t *p, size_t n)
{
    uint64_t h = 1469598103934665603u;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 1099511628211u;
    return h;
}

static void advance(const uint8_t *stream, size_t arrived, size_t max, struct run *r)
{
    while (!r->ended && r->nsteps < MAX_STEPS) {
        size_t avail = arrived - r->pos, need = 0;
        struct step *s = &r->steps[r->nsteps];
        struct proto_gss_msg m;
        enum proto_err want_err = PROTO_E_NONE;
        uint8_t mtyp = want_type(r->nsteps);
        uint8_t *copy = malloc(avail);
        CHECK(copy != NULL || avail == 0);
        if (avail)
            memcpy(copy, stream + r->pos, avail);
        memset(&m, 0xA5, sizeof m);
        s->err = PROTO_E_NONE;
        s->status = proto_parse_gss(copy, avail, mtyp, max, &m, &s->consumed, &s->err);
        int want = spec(copy, avail, mtyp, max, &need, &want_err);
        CHECK(s->status == want);
        if (want == RES_ERROR)
            CHECK(s->err == want_err && proto_err_rep(s->err) == -1);
        if (want == RES_DONE) {
            CHECK(s->consumed == need);
            CHECK(m.mtyp == copy[1]);
            if (m.mtyp == SOCKS5_GSS_ABORT) {
                CHECK(m.len == 0 && m.token == NULL);
            } else {
                CHECK(m.len == need - 4 && m.token == copy + 4);
            }
            s->mtyp = m.mtyp;
            s->len = m.len;
            s->sum = sum(copy + (need > 2 ? 4 : 2), m.len);
        }
        free(copy);
        if (s->status == RES_AGAIN)
            return;
        r->nsteps++;
        if (s->status == RES_ERROR || s->mtyp == SOCKS5_GSS_ABORT) {
            r->ended = 1;
            return;
        }
        r->pos += s->consumed;
    }
}

static void serve(const uint8_t *stream, size_t len, size_t max, struct splitter *sp, struct run *r)
{
    size_t arrived = 0;
    memset(r, 0, sizeof *r);
    do {
        arrived += sp ? next_read(sp, len - arrived) : len;
        advance(stream, arrived, max, r);
    } while (arrived < len);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct run whole, split;
    struct splitter sp;
    size_t max;

    if (size < 2)
        return 0;
    sp.max = (data[0] & 0x3F) + 1u;
    sp.state = (data[0] + 1u) * 2654435761u;
    max = ((size_t)data[1] + 1) * 16;

    serve(data + 2, size - 2, max, NULL, &whole);
    serve(data + 2, size - 2, max, &sp, &split);

    CHECK(whole.nsteps == split.nsteps && whole.pos == split.pos && whole.ended == split.ended);
    for (size_t i = 0; i < whole.nsteps; i++) {
        const struct step *a = &whole.steps[i], *b = &split.steps[i];
        CHECK(a->status == b->status);
        if (a->status == RES_ERROR)
            CHECK(a->err == b->err);
        else
            CHECK(a->consumed == b->consumed && a->mtyp == b->mtyp && a->len == b->len &&
                  a->sum == b->sum);
    }
    return 0;
}
