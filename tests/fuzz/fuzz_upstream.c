/* libFuzzer target: the client side of upstream handshakes (upstream.c).
 *
 * Input byte 0 picks the hop kind, credentials and command; byte 1 the read
 * size; the rest is what the hop answers, handed over in reads of that size
 * from exact-size heap copies (ASan catches a read past `len`). Traps on: a
 * consumed count beyond what was fed, an `out` longer than its buffer, a
 * success whose REP is not 0, a failure with REP 0 or without a reason, and
 * a BOUND answer for anything but BIND. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "upstream.h"

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            __builtin_trap();                                                                      \
    } while (0)

static int feed(struct upstream *u, const uint8_t *buf, size_t len, size_t *used)
{
    uint8_t *copy = malloc(len ? len : 1);
    CHECK(copy != NULL);
    memcpy(copy, buf, len);
    int rc = upstream_feed(u, copy, len, used);
    free(copy);
    CHECK(*used <= len);
    CHECK(u->out_len <= sizeof u->out);
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const uint8_t cmds[3] = {SOCKS5_CMD_CONNECT, SOCKS5_CMD_BIND, SOCKS5_CMD_UDP};
    struct upstream_hop hop;
    struct upstream u;
    struct proto_addr dst;
    if (size < 2)
        return 0;
    memset(&hop, 0, sizeof hop);
    memset(&dst, 0, sizeof dst);
    hop.kind = (enum upstream_kind)(data[0] % 3);
    if (data[0] & 4) {
        memset(hop.user, 'u', 255);
        memset(hop.pass, 'p', 255);
    }
    uint8_t cmd = cmds[(data[0] >> 3) % 3];
    dst.atyp = (data[0] & 0x20) ? SOCKS5_ATYP_IPV4 : SOCKS5_ATYP_DOMAIN;
    if (dst.atyp == SOCKS5_ATYP_DOMAIN) {
        memset(dst.u.name, 'n', 255);
        dst.name_len = 255;
    }
    dst.port = 65535;
    size_t step = data[1] ? data[1] : 1;
    data += 2;
    size -= 2;

    int rc = upstream_begin(&u, &hop, cmd, &dst);
    size_t pos = 0, avail = 0;
    while (rc == UPSTREAM_AGAIN || rc == UPSTREAM_BOUND) {
        CHECK(rc != UPSTREAM_BOUND || cmd == SOCKS5_CMD_BIND);
        size_t used = 0;
        avail = avail + step < size - pos ? avail + step : size - pos;
        rc = feed(&u, data + pos, avail, &used);
        pos += used;
        avail -= used;
        if (rc == UPSTREAM_AGAIN && used == 0 && pos + avail >= size)
            break;
    }
    if (rc == UPSTREAM_DONE)
        CHECK(u.rep == SOCKS5_REP_SUCCEEDED);
    if (rc == UPSTREAM_FAIL)
        CHECK(u.rep != SOCKS5_REP_SUCCEEDED && u.why != NULL);
    upstream_wipe(&u);
    return 0;
}
