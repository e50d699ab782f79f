/* SOCKS4 / SOCKS4a parser and encoder. See proto4.h for the contract. */
#include "proto4.h"

#include <netinet/in.h>
#include <string.h>

static enum result fail(enum proto4_err *err, enum proto4_err why)
{
    *err = why;
    return RES_ERROR;
}

/* Finds the NUL ending a field that starts at buf[off]. Returns its offset,
 * 0 when more bytes are needed (a field never ends at offset 0: 8 bytes of
 * header come first), or -1 when PROTO4_FIELD_MAX bytes passed with no NUL. */
static long field_end(const uint8_t *buf, size_t len, size_t off)
{
    size_t avail = len - off;
    size_t look = avail < PROTO4_FIELD_MAX + 1 ? avail : PROTO4_FIELD_MAX + 1;
    const uint8_t *nul = memchr(buf + off, 0, look);
    if (nul != NULL)
        return (long)(nul - buf);
    return avail > PROTO4_FIELD_MAX ? -1 : 0;
}

enum result proto4_parse_request(const uint8_t *buf, size_t len, struct proto4_request *out,
                                 size_t *consumed, enum proto4_err *err)
{
    static const uint8_t zero3[3] = {0, 0, 0};
    if (len < 1)
        return RES_AGAIN;
    if (buf[0] != SOCKS4_VERSION)
        return fail(err, PROTO4_E_VERSION);
    if (len < 2)
        return RES_AGAIN;
    if (buf[1] != SOCKS5_CMD_CONNECT && buf[1] != SOCKS5_CMD_BIND)
        return fail(err, PROTO4_E_CMD);
    if (len < 8)
        return RES_AGAIN;
    out->cmd = buf[1];
    out->dst.port = (uint16_t)(buf[2] << 8 | buf[3]);
    int socks4a = memcmp(buf + 4, zero3, 3) == 0;
    if (socks4a && buf[7] == 0)
        return fail(err, PROTO4_E_ADDR);

    long uend = field_end(buf, len, 8);
    if (uend < 0)
        return fail(err, PROTO4_E_USERID_LONG);
    if (uend == 0)
        return RES_AGAIN;
    out->userid_len = (uint8_t)(uend - 8);
    memcpy(out->userid, buf + 8, out->userid_len);
    out->userid[out->userid_len] = '\0';
    if (!socks4a) {
        out->dst.atyp = SOCKS5_ATYP_IPV4;
        memcpy(out->dst.u.ip4, buf + 4, 4);
        *consumed = (size_t)uend + 1;
        return RES_DONE;
    }

    size_t nstart = (size_t)uend + 1;
    long nend = field_end(buf, len, nstart);
    if (nend < 0)
        return fail(err, PROTO4_E_NAME_LONG);
    if (nend == 0)
        return RES_AGAIN;
    if ((size_t)nend == nstart)
        return fail(err, PROTO4_E_NAME_EMPTY);
    out->dst.atyp = SOCKS5_ATYP_DOMAIN;
    out->dst.name_len = (uint8_t)((size_t)nend - nstart);
    memcpy(out->dst.u.name, buf + nstart, out->dst.name_len);
    if (!proto_normalize_name(&out->dst))
        return fail(err, PROTO4_E_HOSTNAME);
    *consumed = (size_t)nend + 1;
    return RES_DONE;
}

uint8_t proto4_cd_from_rep(uint8_t rep5)
{
    return rep5 == SOCKS5_REP_SUCCEEDED ? SOCKS4_GRANTED : SOCKS4_REJECTED;
}

uint8_t proto4_rep_from_cd(uint8_t cd)
{
    switch (cd) {
    case SOCKS4_GRANTED:
        return SOCKS5_REP_SUCCEEDED;
    case SOCKS4_NO_IDENTD:
    case SOCKS4_IDENT_MISMATCH:
        return SOCKS5_REP_NOT_ALLOWED;
    default:
        return SOCKS5_REP_GENERAL_FAILURE;
    }
}

size_t proto4_encode_reply(uint8_t *out, size_t cap, uint8_t rep5, const struct sockaddr *bnd)
{
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (cap < SOCKS4_REPLY_LEN)
        return 0;
    memset(out, 0, SOCKS4_REPLY_LEN);
    out[1] = proto4_cd_from_rep(rep5);
    if (bnd != NULL && bnd->sa_family == AF_INET) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)bnd;
        memcpy(out + 2, &s4->sin_port, 2);
        memcpy(out + 4, &s4->sin_addr, 4);
    } else if (bnd != NULL && bnd->sa_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)bnd;
        memcpy(out + 2, &s6->sin6_port, 2);
        if (memcmp(s6->sin6_addr.s6_addr, mapped, 12) == 0)
            memcpy(out + 4, s6->sin6_addr.s6_addr + 12, 4);
    }
    return SOCKS4_REPLY_LEN;
}

const char *proto4_err_str(enum proto4_err err)
{
    switch (err) {
    case PROTO4_E_NONE:
        return "no error";
    case PROTO4_E_VERSION:
        return "bad SOCKS4 version";
    case PROTO4_E_CMD:
        return "unknown SOCKS4 command";
    case PROTO4_E_ADDR:
        return "SOCKS4 destination 0.0.0.0";
    case PROTO4_E_USERID_LONG:
        return "SOCKS4 USERID longer than 255 bytes";
    case PROTO4_E_NAME_LONG:
        return "SOCKS4a host name longer than 255 bytes";
    case PROTO4_E_NAME_EMPTY:
        return "empty SOCKS4a host name";
    case PROTO4_E_HOSTNAME:
        return "SOCKS4a name is not a host name";
    }
    return "unknown error";
}
