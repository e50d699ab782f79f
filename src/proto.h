/* RFC 1928 / RFC 1929 / RFC 1961 wire format, sans I/O.
 *
 * Every parser takes the bytes received so far and answers one of:
 *   RES_AGAIN  the bytes are a valid prefix; call again with more;
 *   RES_DONE   a whole message was decoded; *consumed bytes belong to it;
 *   RES_ERROR  the bytes can never form a valid message; *err says why
 *              and proto_err_rep() gives the reply code to send (if any).
 * Nothing is read past `len`, nothing is allocated, strings from the wire are
 * copied with their length and NUL-terminated in the output struct. */
#ifndef SOCKS5D_PROTO_H
#define SOCKS5D_PROTO_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "result.h"

#define SOCKS5_VERSION 0x05
#define SOCKS5_USERPASS_VERSION 0x01

enum socks5_method {
    SOCKS5_METHOD_NONE = 0x00,
    SOCKS5_METHOD_GSSAPI = 0x01,
    SOCKS5_METHOD_USERPASS = 0x02,
    SOCKS5_METHOD_UNACCEPTABLE = 0xFF,
};

enum socks5_cmd { SOCKS5_CMD_CONNECT = 0x01, SOCKS5_CMD_BIND = 0x02, SOCKS5_CMD_UDP = 0x03 };

enum socks5_atyp { SOCKS5_ATYP_IPV4 = 0x01, SOCKS5_ATYP_DOMAIN = 0x03, SOCKS5_ATYP_IPV6 = 0x04 };

enum socks5_rep {
    SOCKS5_REP_SUCCEEDED = 0x00,
    SOCKS5_REP_GENERAL_FAILURE = 0x01,
    SOCKS5_REP_NOT_ALLOWED = 0x02,
    SOCKS5_REP_NET_UNREACHABLE = 0x03,
    SOCKS5_REP_HOST_UNREACHABLE = 0x04,
    SOCKS5_REP_CONN_REFUSED = 0x05,
    SOCKS5_REP_TTL_EXPIRED = 0x06,
    SOCKS5_REP_CMD_UNSUPPORTED = 0x07,
    SOCKS5_REP_ATYP_UNSUPPORTED = 0x08,
};

/* Why a message was rejected. */
enum proto_err {
    PROTO_E_NONE = 0,
    PROTO_E_VERSION,      /* VER is not 5 */
    PROTO_E_NMETHODS,     /* NMETHODS is 0 */
    PROTO_E_AUTH_VERSION, /* RFC 1929 VER is not 1 */
    PROTO_E_AUTH_EMPTY,   /* RFC 1929 ULEN or PLEN is 0 */
    PROTO_E_CMD,          /* unknown CMD */
    PROTO_E_ATYP,         /* unknown ATYP */
    PROTO_E_DOMAIN_EMPTY, /* domain of length 0 */
    PROTO_E_HOSTNAME,     /* domain outside the host name syntax (hostname.h) */
    PROTO_E_TRUNCATED,    /* datagram shorter than its header */
    PROTO_E_FRAG,         /* UDP FRAG is not 0: fragments are not supported */
    PROTO_E_GSS_VERSION,  /* RFC 1961 VER is not 1 */
    PROTO_E_GSS_MTYP,     /* RFC 1961 MTYP is not the one this phase expects */
    PROTO_E_GSS_EMPTY,    /* RFC 1961 token of length 0 */
    PROTO_E_GSS_TOO_LONG, /* RFC 1961 token longer than the receiver takes */
};

/* RFC 1961: every message of the GSS-API method is VER MTYP LEN(2) TOKEN,
 * except the abort, which is VER 0xff alone. */
#define SOCKS5_GSS_VERSION 0x01
enum socks5_gss_mtyp {
    SOCKS5_GSS_AUTH = 0x01,  /* context establishment */
    SOCKS5_GSS_PROT = 0x02,  /* protection-level negotiation */
    SOCKS5_GSS_ENCAP = 0x03, /* a wrapped request, reply or relayed chunk */
    SOCKS5_GSS_ABORT = 0xff,
};
/* The protection levels of RFC 1961 section 4.3; 0 is what NEC-derived
 * clients ask for to keep the data in clear after authentication. */
enum socks5_gss_level { SOCKS5_GSS_CLEAR = 0, SOCKS5_GSS_INTEGRITY = 1, SOCKS5_GSS_CONF = 2 };
#define PROTO_GSS_HEADER 4

/* A SOCKS address as it appears on the wire. */
struct proto_addr {
    uint8_t atyp;     /* enum socks5_atyp */
    uint8_t name_len; /* domain length when atyp is DOMAIN */
    uint16_t port;    /* host byte order */
    union {
        uint8_t ip4[4];
        uint8_t ip6[16];
        char name[256]; /* the domain, NUL-terminated, lower case, no trailing dot */
    } u;
};

struct proto_greeting {
    uint8_t nmethods;
    uint8_t methods[255];
};

struct proto_userpass {
    uint8_t ulen, plen;
    char user[256]; /* NUL-terminated */
    char pass[256]; /* NUL-terminated; callers wipe it after use */
};

struct proto_request {
    uint8_t cmd;
    struct proto_addr dst;
};

enum result proto_parse_greeting(const uint8_t *buf, size_t len, struct proto_greeting *out,
                                 size_t *consumed, enum proto_err *err);
enum result proto_parse_userpass(const uint8_t *buf, size_t len, struct proto_userpass *out,
                                 size_t *consumed, enum proto_err *err);
enum result proto_parse_request(const uint8_t *buf, size_t len, struct proto_request *out,
                                size_t *consumed, enum proto_err *err);

/* Parses the header of a whole UDP datagram (RFC 1928 section 7). Datagrams
 * are never incomplete, so the answer is RES_DONE with *hdr_len, the offset
 * of the payload, or RES_ERROR. */
enum result proto_parse_udp_header(const uint8_t *buf, size_t len, struct proto_addr *out,
                                   size_t *hdr_len, enum proto_err *err);

/* One RFC 1961 message of type `mtyp`, or an abort (out->mtyp is then
 * SOCKS5_GSS_ABORT and out->len 0). out->token points into buf, at out->len
 * bytes; a token longer than `max_token` is refused without waiting for it. */
struct proto_gss_msg {
    uint8_t mtyp;
    uint16_t len;
    const uint8_t *token;
};
enum result proto_parse_gss(const uint8_t *buf, size_t len, uint8_t mtyp, size_t max_token,
                            struct proto_gss_msg *out, size_t *consumed, enum proto_err *err);

/* Returns the method the server uses: the first of `prefs` (server
 * preference order, n entries) that the client offered, or
 * SOCKS5_METHOD_UNACCEPTABLE. */
uint8_t proto_select_method(const struct proto_greeting *g, const uint8_t *prefs, size_t n);

/* The reply code to send for a parse error, or -1 when the RFC gives no
 * reply for it and the connection is simply closed. */
int proto_err_rep(enum proto_err err);
const char *proto_err_str(enum proto_err err);
const char *proto_rep_str(uint8_t rep);

/* Encoders write into `out` (capacity `cap`) and return the bytes written,
 * or 0 when `cap` is too small. */
size_t proto_encode_method(uint8_t *out, size_t cap, uint8_t method);
size_t proto_encode_userpass_reply(uint8_t *out, size_t cap, uint8_t status);
/* The 4-byte header of an RFC 1961 message whose token of `len` bytes follows. */
size_t proto_encode_gss_header(uint8_t *out, size_t cap, uint8_t mtyp, uint16_t len);
size_t proto_encode_gss_abort(uint8_t *out, size_t cap);
/* `bnd` may be NULL (then 0.0.0.0:0); AF_INET and AF_INET6 are encoded as
 * such, an IPv4-mapped IPv6 address as IPv4. */
size_t proto_encode_reply(uint8_t *out, size_t cap, uint8_t rep, const struct sockaddr *bnd);
/* UDP header for a datagram from `src` (RSV, FRAG=0, address). */
size_t proto_encode_udp_header(uint8_t *out, size_t cap, const struct sockaddr *src);

/* Client side, for upstream SOCKS5 hops. The request for `dst` (an IP or a
 * non-empty domain, sent as is); 0 when cap is too small or dst is neither. */
size_t proto_encode_request(uint8_t *out, size_t cap, uint8_t cmd, const struct proto_addr *dst);
/* A server's reply (VER, REP, RSV, BND.ADDR, BND.PORT): RES_DONE with *rep
 * and *bnd, RES_AGAIN or RES_ERROR like the request parser. */
enum result proto_parse_reply(const uint8_t *buf, size_t len, uint8_t *rep, struct proto_addr *bnd,
                              size_t *consumed, enum proto_err *err);

/* Checks and normalizes a->u.name (a->name_len bytes, room for the NUL):
 * host name syntax or an IPv6 literal, one trailing dot dropped, lower case.
 * Returns 1, or 0 when the name is refused. Shared with SOCKS4a (proto4.c). */
int proto_normalize_name(struct proto_addr *a);

/* Largest encodings, for buffer sizing. */
#define PROTO_REPLY_MAX (4 + 16 + 2)
#define PROTO_UDP_HEADER_MAX (4 + 16 + 2)

/* Fills `sa` from an IP address (not a domain); returns its length or 0. */
socklen_t proto_addr_to_sockaddr(const struct proto_addr *a, struct sockaddr_storage *sa);

#endif
