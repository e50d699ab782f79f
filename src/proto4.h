/* SOCKS4 and SOCKS4a wire format, sans I/O, with the conventions of proto.h
 * (enum result, nothing read past `len`).
 *
 * Request: VN=4, CD (1 CONNECT, 2 BIND), DSTPORT (2), DSTIP (4), USERID, NUL;
 * SOCKS4a: DSTIP 0.0.0.x with x != 0, then the host name and a NUL.
 * Reply:   VN=0, CD (0x5A granted, 0x5B rejected or failed), DSTPORT, DSTIP. */
#ifndef SOCKS5D_PROTO4_H
#define SOCKS5D_PROTO4_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "proto.h"

#define SOCKS4_VERSION 0x04
#define SOCKS4_REPLY_LEN 8
/* USERID and host name each: at most 255 bytes before their NUL. */
#define PROTO4_FIELD_MAX 255

enum socks4_cd {
    SOCKS4_GRANTED = 0x5A,
    SOCKS4_REJECTED = 0x5B,
    SOCKS4_NO_IDENTD = 0x5C,
    SOCKS4_IDENT_MISMATCH = 0x5D,
};

enum proto4_err {
    PROTO4_E_NONE = 0,
    PROTO4_E_VERSION,     /* VN is not 4 */
    PROTO4_E_CMD,         /* CD is neither CONNECT nor BIND */
    PROTO4_E_ADDR,        /* DSTIP 0.0.0.0: neither an address nor the 4a marker */
    PROTO4_E_USERID_LONG, /* no NUL within 256 bytes of USERID */
    PROTO4_E_NAME_LONG,   /* no NUL within 256 bytes of the 4a host name */
    PROTO4_E_NAME_EMPTY,  /* 4a marker with an empty host name */
    PROTO4_E_HOSTNAME,    /* 4a host name outside the host name syntax */
};

struct proto4_request {
    uint8_t cmd;           /* SOCKS5_CMD_CONNECT or SOCKS5_CMD_BIND: same values */
    struct proto_addr dst; /* IPv4, or a normalized domain for SOCKS4a */
    uint8_t userid_len;
    char userid[PROTO4_FIELD_MAX + 1]; /* NUL-terminated; may hold any byte but NUL */
};

enum result proto4_parse_request(const uint8_t *buf, size_t len, struct proto4_request *out,
                                 size_t *consumed, enum proto4_err *err);

/* The SOCKS4 reply for a SOCKS5 REP: success is granted, every failure is
 * "rejected or failed" (0x5C/0x5D are about identd, which socks5d does not
 * use). `bnd` may be NULL; an address that is not IPv4 (or IPv4-mapped) is
 * sent as 0.0.0.0. Returns SOCKS4_REPLY_LEN, or 0 when cap is too small. */
size_t proto4_encode_reply(uint8_t *out, size_t cap, uint8_t rep5, const struct sockaddr *bnd);
uint8_t proto4_cd_from_rep(uint8_t rep5);
/* The SOCKS5 REP that tells a SOCKS5 client what a SOCKS4 server answered. */
uint8_t proto4_rep_from_cd(uint8_t cd);
const char *proto4_err_str(enum proto4_err err);

#endif
