/* The relay of a session under GSS-API protection (RFC 1961 section 6):
 * every byte between client and proxy travels in VER 1, MTYP 3, LEN, TOKEN
 * messages made with gss_wrap (encrypted at the confidentiality level).
 *
 * Client to target: whole messages are read, unwrapped and written in
 * clear; target to client: reads of at most gss_wrap_size_limit bytes are
 * wrapped into one message each. As in relay.c, a side is read only when
 * its peer took everything before (backpressure; at most one message in
 * each of two buffers per direction, held only while bytes are in flight),
 * EOF becomes shutdown(SHUT_WR) on the other side, and a call moves at most
 * RELAY_BUDGET bytes per direction. */
#ifndef SOCKS5D_GSS_RELAY_H
#define SOCKS5D_GSS_RELAY_H

#include <stddef.h>
#include <stdint.h>

#include "relay.h"

struct gss_conn;
struct gss_relay;

/* The largest RFC 1961 message: header and a 65535-byte token. */
#define GSS_MSG_MAX (4 + 65535)

/* conn stays the caller's. Returns NULL when out of memory. */
struct gss_relay *gss_relay_new(struct gss_conn *conn, int conf);
void gss_relay_free(struct gss_relay *g);

/* What the client sent after its request: plaintext already unwrapped
 * (for the target) and raw bytes of the messages that follow. Returns 0,
 * or -1 when out of memory. */
int gss_relay_preload(struct gss_relay *g, const uint8_t *plain, size_t plain_len,
                      const uint8_t *raw, size_t raw_len);

/* An enum result (RES_ERROR: a socket error, errno in *err), or
 * GSS_RELAY_BAD: the client sent a message that is malformed, fails its
 * integrity check, is a replay or out of sequence, is not encrypted at the
 * confidentiality level, or an abort (gss_relay_error says which). *flags
 * as relay_pump's (RELAY_THROTTLED: call again in a few ms). */
#define GSS_RELAY_BAD (-2)
int gss_relay_pump(struct gss_relay *g, struct relay_side *client, struct relay_side *target,
                   uint64_t now_ms, unsigned *flags, int *err);
/* Limits the directions by the user's buckets (ratelimit.h), as relay_pump
 * does: each counts the bytes it reads (wrapped messages from the client,
 * plaintext from the target). */
void gss_relay_limit(struct gss_relay *g, struct relay_bucket *up, struct relay_bucket *down);
const char *gss_relay_error(const struct gss_relay *g);
/* Plaintext bytes moved so far, each way (up: client to target). */
uint64_t gss_relay_bytes_up(const struct gss_relay *g);
uint64_t gss_relay_bytes_down(const struct gss_relay *g);

/* Wraps one message (header and token) for the client into out. Returns
 * its length, or 0 on failure (reason in gss_conn_error). */
size_t gss_relay_encap(struct gss_conn *conn, int conf, const uint8_t *in, size_t len, uint8_t *out,
                       size_t cap);

/* Per-datagram protection of a UDP association (udp_seal callbacks, arg
 * the session's gss_relay): one whole encapsulated message per datagram,
 * encrypted at the confidentiality level. */
long gss_relay_open_dgram(void *arg, const uint8_t *in, size_t len, uint8_t *out, size_t cap);
size_t gss_relay_seal_dgram(void *arg, const uint8_t *in, size_t len, uint8_t *out, size_t cap);

#endif
