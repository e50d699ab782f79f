/* GSS-API (Kerberos) acceptor for the SOCKS5 GSS-API method (RFC 1961).
 *
 * A gss_server holds the acceptor credentials: the keys of the keytab for
 * the host-less service name ("rcmd@"), so a client that asks for
 * rcmd/<any host> finds its key. It belongs to a configuration snapshot and
 * is shared read-only by every worker.
 *
 * A gss_conn is one session's security context. Context steps read the
 * keytab and write the replay cache, so they run on the auth pool
 * (gss_accept_start) and answer on the submitting worker's loop; wrap and
 * unwrap are pure computation and run on the loop. */
#ifndef SOCKS5D_GSS_H
#define SOCKS5D_GSS_H

#include <stddef.h>
#include <stdint.h>

struct auth_cache;
struct gss_server;
struct gss_conn;
struct gss_job;

enum gss_status { GSS_ERROR = -1, GSS_CONTINUE = 0, GSS_COMPLETE = 1 };

/* Acquires acceptor credentials for `service` (e.g. "rcmd") from `keytab`
 * (NULL: KRB5_KTNAME, else the system default) and checks that the keytab
 * holds a key for it. Returns NULL with the reason in err. */
struct gss_server *gss_server_new(const char *keytab, const char *service, char *err,
                                  size_t errlen);
void gss_server_free(struct gss_server *srv);

struct gss_conn *gss_conn_new(void);
/* Safe while a step is in flight: the conn is then freed when it answers. */
void gss_conn_free(struct gss_conn *c);

/* The session's callback, on its worker: `status` is enum gss_status. */
typedef void (*gss_done_fn)(void *owner, int status);

/* Feeds the client's token (copied) to gss_accept_sec_context on a pool
 * thread. Returns the job (for gss_accept_cancel), or NULL with errno
 * ENOMEM, or EAGAIN when the pool's queue is full. */
struct gss_job *gss_accept_start(struct gss_conn *c, const struct gss_server *srv,
                                 const uint8_t *token, size_t len, struct auth_cache *cache,
                                 gss_done_fn done, void *owner);
/* The owner is going away: its callback never runs. */
void gss_accept_cancel(struct gss_job *job);

/* After a step: the token to send back (len 0: none), and why it failed. */
const uint8_t *gss_conn_token(const struct gss_conn *c, size_t *len);
const char *gss_conn_error(const struct gss_conn *c);
/* Once complete: the client principal, "user@REALM". */
const char *gss_conn_principal(const struct gss_conn *c);

/* Largest input whose wrapped token fits in `max_out` bytes. */
size_t gss_conn_wrap_limit(const struct gss_conn *c, int conf, size_t max_out);
/* Wraps in[0..len) (encrypted when conf) into out (capacity cap). Returns
 * the token length, or 0 on failure (reason in gss_conn_error). */
size_t gss_conn_wrap(struct gss_conn *c, int conf, const uint8_t *in, size_t len, uint8_t *out,
                     size_t cap);
/* Unwraps a token into out (capacity cap). Returns the message length, or
 * -1 when the token fails its integrity check, is a replay, is out of
 * sequence or does not fit (reason in gss_conn_error). *conf tells whether
 * it was encrypted. */
long gss_conn_unwrap(struct gss_conn *c, const uint8_t *in, size_t len, uint8_t *out, size_t cap,
                     int *conf);

/* The same for a datagram: a gap (lost datagrams before it) or a token
 * older than the last one seen (reordered) is accepted, a replay is not. */
long gss_conn_unwrap_dgram(struct gss_conn *c, const uint8_t *in, size_t len, uint8_t *out,
                           size_t cap, int *conf);

/* The session user for principal `p` ("name@REALM"): NULL when `realms`
 * (a comma-separated list, NULL or "" for any) does not hold its realm;
 * otherwise `p` itself, or with `strip` only its name (written to out). */
const char *gss_user(const char *p, const char *realms, int strip, char *out, size_t cap);

#endif
