/* libFuzzer target: the client side of a SOCKS5 TCP handshake.
 *
 * Input: byte 0 chooses how the stream is cut into reads; the rest is what a
 * client sends. A server parses it in order: greeting, then the RFC 1929
 * user/pass message if the next byte is its version 0x01, then the request.
 * That is done twice, with the whole stream available at once and with it
 * arriving in reads of the chosen sizes. Every parse gets an exact-size heap
 * copy of the unconsumed bytes, so ASan reports any read past `len`.
 *
 * Traps on: a parse answer that differs from a reference reading of RFC 1928
 * and RFC 1929 (status, consumed count, error, each decoded field), and any
 * difference between the whole and the split run. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto.h"
#include "splitter.h"
#include "spec_name.h"

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            __builtin_trap();                                                                      \
    } while (0)

enum stage { ST_GREETING, ST_AUTH_OR_REQUEST, ST_USERPASS, ST_REQUEST, ST_END };

union msg {
    struct proto_greeting g;
    struct proto_userpass u;
    struct proto_request r;
};

/* The outcome of one message: a parse that answered DONE or ERROR. */
struct step {
    enum stage stage;
    int status;
    size_t consumed;
    enum proto_err err;
    union msg out;
};

/* What a server made of the stream. */
struct run {
    struct step steps[3];
    size_t nsteps;
    enum stage stage; /* waiting for more bytes in this stage, or ST_END */
    size_t pos;       /* bytes taken by the messages parsed so far */
};

/* ---------------------------------------------------------------------------
 * Reference reading of the wire format, written from the RFCs and the
 * contract in proto.h: NEED_MORE only while the bytes are a valid prefix, so
 * a message is rejected at the first byte that makes it invalid. Each returns
 * the status, with the message length in *need or the reason in *err. */

static int spec_greeting(const uint8_t *b, size_t n, size_t *need, enum proto_err *err)
{
    if (n < 1)
        return RES_AGAIN;
    if (b[0] != SOCKS5_VERSION)
        return *err = PROTO_E_VERSION, RES_ERROR;
    if (n < 2)
        return RES_AGAIN;
    if (b[1] == 0)
        return *err = PROTO_E_NMETHODS, RES_ERROR;
    *need = 2 + (size_t)b[1];
    return n < *need ? RES_AGAIN : RES_DONE;
}

static int spec_userpass(const uint8_t *b, size_t n, size_t *need, enum proto_err *err)
{
    size_t plen_at;

    if (n < 1)
        return RES_AGAIN;
    if (b[0] != SOCKS5_USERPASS_VERSION)
        return *err = PROTO_E_AUTH_VERSION, RES_ERROR;
    if (n < 2)
        return RES_AGAIN;
    if (b[1] == 0)
        return *err = PROTO_E_AUTH_EMPTY, RES_ERROR;
    plen_at = 2 + (size_t)b[1];
    if (n <= plen_at)
        return RES_AGAIN;
    if (b[plen_at] == 0)
        return *err = PROTO_E_AUTH_EMPTY, RES_ERROR;
    *need = plen_at + 1 + b[plen_at];
    return n < *need ? RES_AGAIN : RES_DONE;
}

static int spec_request(const uint8_t *b, size_t n, size_t *need, enum proto_err *err)
{
    char name[256];
    if (n < 1)
        return RES_AGAIN;
    if (b[0] != SOCKS5_VERSION)
        return *err = PROTO_E_VERSION, RES_ERROR;
    if (n < 2)
        return RES_AGAIN;
    if (b[1] < SOCKS5_CMD_CONNECT || b[1] > SOCKS5_CMD_UDP)
        return *err = PROTO_E_CMD, RES_ERROR;
    if (n < 4) /* RSV, ATYP */
        return RES_AGAIN;
    switch (b[3]) {
    case SOCKS5_ATYP_IPV4:
        *need = 4 + 4 + 2;
        break;
    case SOCKS5_ATYP_IPV6:
        *need = 4 + 16 + 2;
        break;
    case SOCKS5_ATYP_DOMAIN:
        if (n < 5)
            return RES_AGAIN;
        if (b[4] == 0)
            return *err = PROTO_E_DOMAIN_EMPTY, RES_ERROR;
        *need = 4 + 1 + (size_t)b[4] + 2;
        if (n >= *need - 2 && spec_name(b + 5, b[4], name) == 0)
            return *err = PROTO_E_HOSTNAME, RES_ERROR;
        break;
    default:
        return *err = PROTO_E_ATYP, RES_ERROR;
    }
    return n < *need ? RES_AGAIN : RES_DONE;
}

/* A decoded address (ATYP ADDR PORT) equals the bytes at p. */
static void check_addr(const struct proto_addr *a, const uint8_t *p)
{
    size_t port_at;

    CHECK(a->atyp == p[0]);
    if (a->atyp == SOCKS5_ATYP_DOMAIN) {
        char want[256];
        CHECK(a->name_len == spec_name(p + 2, p[1], want) && a->name_len > 0);
        CHECK(memcmp(a->u.name, want, (size_t)a->name_len + 1) == 0);
        port_at = 2 + (size_t)p[1];
    } else {
        size_t iplen = a->atyp == SOCKS5_ATYP_IPV4 ? 4 : 16;
        CHECK(memcmp(a->u.ip6, p + 1, iplen) == 0);
        port_at = 1 + iplen;
    }
    CHECK(a->port == (uint16_t)(p[port_at] << 8 | p[port_at + 1]));
}

/* The decoded fields of a DONE message equal its bytes. */
static void check_fields(enum stage st, const uint8_t *b, const union msg *m)
{
    static const uint8_t prefs[] = {SOCKS5_METHOD_USERPASS, SOCKS5_METHOD_NONE};
    uint8_t want;

    switch (st) {
    case ST_GREETING:
        CHECK(m->g.nmethods == b[1] && memcmp(m->g.methods, b + 2, b[1]) == 0);
        /* Server preference order picks the first preferred method offered. */
        want = memchr(b + 2, prefs[0], b[1])   ? prefs[0]
               : memchr(b + 2, prefs[1], b[1]) ? prefs[1]
                                               : SOCKS5_METHOD_UNACCEPTABLE;
        CHECK(proto_select_method(&m->g, prefs, 2) == want);
        break;
    case ST_USERPASS:
        CHECK(m->u.ulen == b[1] && memcmp(m->u.user, b + 2, m->u.ulen) == 0);
        CHECK(m->u.user[m->u.ulen] == '\0');
        CHECK(m->u.plen == b[2 + m->u.ulen]);
        CHECK(memcmp(m->u.pass, b + 3 + m->u.ulen, m->u.plen) == 0);
        CHECK(m->u.pass[m->u.plen] == '\0');
        break;
    case ST_REQUEST:
        CHECK(m->r.cmd == b[1]);
        check_addr(&m->r.dst, b + 3);
        break;
    default:
        CHECK(0);
    }
}

/* One parse answered as the reference says. */
static void check_parse(enum stage st, const uint8_t *b, size_t n, const struct step *s)
{
    size_t need = 0;
    enum proto_err err = PROTO_E_NONE;
    int want = st == ST_GREETING   ? spec_greeting(b, n, &need, &err)
               : st == ST_USERPASS ? spec_userpass(b, n, &need, &err)
                                   : spec_request(b, n, &need, &err);

    CHECK(s->status == want);
    if (want == RES_ERROR) {
        CHECK(s->err == err && proto_err_str(s->err) != NULL);
        /* Only request errors have a reply code; the rest close. */
        int rep = proto_err_rep(s->err);
        CHECK(st == ST_REQUEST ? rep >= 0 : rep == -1 || s->err == PROTO_E_VERSION);
    }
    if (want == RES_DONE) {
        CHECK(s->consumed == need && need <= n);
        check_fields(st, b, &s->out);
    }
}

/* ---------------------------------------------------------------------------
 * The server loop. */

static int parse(enum stage st, const uint8_t *b, size_t n, struct step *s, uint8_t poison)
{
    /* Poison the output differently in each run: a field the parser leaves
     * unset then differs between the runs instead of matching by luck. */
    memset(&s->out, poison, sizeof s->out);
    s->consumed = SIZE_MAX;
    s->err = PROTO_E_NONE;
    switch (st) {
    case ST_GREETING:
        return proto_parse_greeting(b, n, &s->out.g, &s->consumed, &s->err);
    case ST_USERPASS:
        return proto_parse_userpass(b, n, &s->out.u, &s->consumed, &s->err);
    case ST_REQUEST:
        return proto_parse_request(b, n, &s->out.r, &s->consumed, &s->err);
    default:
        __builtin_trap();
    }
}

/* Parses as many messages as the `arrived` bytes of the stream hold. */
static void advance(const uint8_t *stream, size_t arrived, struct run *r, uint8_t poison)
{
    while (r->stage != ST_END) {
        size_t avail = arrived - r->pos;
        struct step *s = &r->steps[r->nsteps];
        uint8_t *copy;

        if (r->stage == ST_AUTH_OR_REQUEST) {
            if (avail == 0)
                return;
            r->stage = stream[r->pos] == SOCKS5_USERPASS_VERSION ? ST_USERPASS : ST_REQUEST;
            continue;
        }
        /* Exact size: the parser may look at these bytes and no others. */
        copy = malloc(avail); /* even 0: ASan then flags any read at all */
        CHECK(copy != NULL || avail == 0);
        if (avail)
            memcpy(copy, stream + r->pos, avail);
        s->status = parse(r->stage, copy, avail, s, poison);
        check_parse(r->stage, copy, avail, s);
        free(copy);
        if (s->status == RES_AGAIN)
            return;
        s->stage = r->stage;
        r->nsteps++;
        if (s->status == RES_ERROR) {
            r->stage = ST_END;
            return;
        }
        r->pos += s->consumed;
        r->stage = r->stage == ST_GREETING   ? ST_AUTH_OR_REQUEST
                   : r->stage == ST_USERPASS ? ST_REQUEST
                                             : ST_END;
    }
}

/* Serves the stream delivered in reads from `sp`, or all at once if NULL. */
static void serve(const uint8_t *stream, size_t len, struct splitter *sp, uint8_t poison,
                  struct run *r)
{
    size_t arrived = 0;

    memset(r, 0, sizeof *r);
    r->stage = ST_GREETING;
    do {
        arrived += sp ? next_read(sp, len - arrived) : len;
        advance(stream, arrived, r, poison);
    } while (arrived < len);
}

/* ---------------------------------------------------------------------------
 * Whole versus split. */

static void check_same_addr(const struct proto_addr *a, const struct proto_addr *b)
{
    CHECK(a->atyp == b->atyp && a->port == b->port);
    if (a->atyp == SOCKS5_ATYP_DOMAIN)
        CHECK(a->name_len == b->name_len && memcmp(a->u.name, b->u.name, a->name_len + 1) == 0);
    else
        CHECK(memcmp(a->u.ip6, b->u.ip6, a->atyp == SOCKS5_ATYP_IPV4 ? 4 : 16) == 0);
}

static void check_same_step(const struct step *a, const struct step *b)
{
    CHECK(a->stage == b->stage && a->status == b->status);
    if (a->status == RES_ERROR) {
        CHECK(a->err == b->err);
        return;
    }
    CHECK(a->consumed == b->consumed);
    switch (a->stage) {
    case ST_GREETING:
        CHECK(a->out.g.nmethods == b->out.g.nmethods);
        CHECK(memcmp(a->out.g.methods, b->out.g.methods, a->out.g.nmethods) == 0);
        break;
    case ST_USERPASS:
        CHECK(a->out.u.ulen == b->out.u.ulen && a->out.u.plen == b->out.u.plen);
        CHECK(memcmp(a->out.u.user, b->out.u.user, a->out.u.ulen + 1) == 0);
        CHECK(memcmp(a->out.u.pass, b->out.u.pass, a->out.u.plen + 1) == 0);
        break;
    case ST_REQUEST:
        CHECK(a->out.r.cmd == b->out.r.cmd);
        check_same_addr(&a->out.r.dst, &b->out.r.dst);
        break;
    default:
        CHECK(0);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct run whole, split; /* static: ~2.5 KiB each, off the stack */
    struct splitter sp;

    if (size < 1)
        return 0;
    sp.max = (data[0] & 0x0F) + 1u;
    sp.state = (data[0] + 1u) * 2654435761u;

    serve(data + 1, size - 1, NULL, 0xA5, &whole);
    serve(data + 1, size - 1, &sp, 0x5A, &split);

    CHECK(whole.nsteps == split.nsteps);
    CHECK(whole.stage == split.stage && whole.pos == split.pos);
    for (size_t i = 0; i < whole.nsteps; i++)
        check_same_step(&whole.steps[i], &split.steps[i]);
    return 0;
}
