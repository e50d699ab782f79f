/* PROXY protocol header parser (HAProxy spec, versions 1 and 2), sans I/O.
 *
 * A listener configured with `proxy-protocol` expects this header from a
 * trusted load balancer before the SOCKS5 greeting. The parser is fed the
 * bytes received so far and answers:
 *   RES_AGAIN  the bytes are a valid prefix of a header (or too few
 *              to tell yet); call again with more;
 *   RES_DONE   a whole header was decoded into *out; it is the first
 *              *consumed bytes, the rest (the SOCKS greeting, maybe
 *              in the same segment) belongs to the caller;
 *   RES_ERROR  the bytes can never start a valid header; *reason is a
 *              static string for the log; close the connection.
 * The answer for a prefix is never contradicted by more bytes: once RES_DONE, the
 * same header and count; once RES_ERROR, always RES_ERROR. Malformed framing is
 * reported as soon as it arrives (a first byte that is neither 'P' nor '\r', a
 * wrong signature, v2 version/command/family/length, a control byte in a v1
 * line), so a client that skipped the header is rejected without waiting for a
 * timeout; the v1 fields themselves are judged once the CRLF is in.
 * Nothing is read past `len`, nothing is allocated, there is no state. */
#ifndef SOCKS5D_PROXYPROTO_H
#define SOCKS5D_PROXYPROTO_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "result.h"

/* Longest v1 line, CRLF included (spec: "PROXY UNKNOWN" + two IPv6 + ports). */
#define PROXYPROTO_V1_MAX 107
/* v2 fixed part: signature, version/command, family, length. */
#define PROXYPROTO_V2_FIXED 16
/* Cap on the v2 length field (addresses + TLVs). The spec allows 65535, but a
 * header that big is no honest load balancer's; refusing it bounds how much a
 * connection may make us buffer before SOCKS starts. */
#define PROXYPROTO_V2_MAX_BODY 1024
/* A buffer of this size always holds a whole header, of either version. */
#define PROXYPROTO_MAX_HEADER (PROXYPROTO_V2_FIXED + PROXYPROTO_V2_MAX_BODY)

struct proxyproto_result {
    int version; /* 1 or 2 */
    /* 1 when the header carries no client address to use: v1 "UNKNOWN", v2
     * LOCAL (health check), v2 AF_UNSPEC, AF_UNIX or UNSPEC transport. The
     * caller keeps the socket's own peer and local addresses. */
    int local;
    /* The real client and the address it connected to, AF_INET or AF_INET6
     * with the port set (network byte order); zeroed (AF_UNSPEC) when local. */
    struct sockaddr_storage src;
    struct sockaddr_storage dst;
};

/* Parses the header at buf[0..len). All pointers must be valid (buf may be
 * anything when len is 0). Returns an enum result:
 *   RES_AGAIN  nothing written;
 *   RES_DONE   *out and *consumed written (0 < *consumed <= len,
 *              at most PROXYPROTO_MAX_HEADER);
 *   RES_ERROR  *reason written.
 * With len >= PROXYPROTO_MAX_HEADER the answer is never RES_AGAIN.
 *
 * v1 is checked strictly: "PROXY TCP4|TCP6 src dst sport dport\r\n", single
 * spaces, printable ASCII, addresses accepted by inet_pton for the family,
 * ports 0..65535 in decimal without sign or leading zeros (the spec forbids
 * them to avoid octal confusion; "0" itself is fine). "PROXY UNKNOWN" is
 * followed by CRLF or by a space and anything printable up to CRLF.
 * v2: version 2, command LOCAL or PROXY; the family byte is ignored for LOCAL
 * (as the spec says) and must be a defined family/transport for PROXY; the
 * length must hold the family's address block; TLVs after the addresses must
 * tile the rest of the block exactly, and their contents are ignored. */
enum result proxyproto_parse(const uint8_t *buf, size_t len, struct proxyproto_result *out,
                             size_t *consumed, const char **reason);

#endif
