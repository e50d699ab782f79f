/* GSS-API acceptor (see gss.h), on MIT Kerberos. */
#include "gss.h"

#include <errno.h>
#include <gssapi/gssapi.h>
#include <gssapi/gssapi_krb5.h>
#include <krb5.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth_pool.h"

struct gss_server {
    gss_cred_id_t cred;
};

struct gss_conn {
    gss_ctx_id_t ctx;
    gss_buffer_desc out; /* the last step's output token */
    struct gss_job *job; /* a step in flight */
    uint8_t orphan;      /* freed while a step was in flight */
    char principal[512];
    char error[256];
};

struct gss_job {
    struct auth_task task; /* first */
    struct gss_conn *conn;
    const struct gss_server *srv;
    gss_done_fn done;
    void *owner; /* NULL once cancelled */
    int status;
    size_t len;
    uint8_t token[]; /* the client's, copied */
};

/* "what: major status text (minor status text)". */
static void describe(char *buf, size_t len, const char *what, OM_uint32 major, OM_uint32 minor)
{
    OM_uint32 min2, ctx = 0;
    gss_buffer_desc maj_text = GSS_C_EMPTY_BUFFER, min_text = GSS_C_EMPTY_BUFFER;
    gss_display_status(&min2, major, GSS_C_GSS_CODE, GSS_C_NO_OID, &ctx, &maj_text);
    ctx = 0;
    if (minor)
        gss_display_status(&min2, minor, GSS_C_MECH_CODE, GSS_C_NO_OID, &ctx, &min_text);
    snprintf(buf, len, "%s: %.*s%s%.*s%s", what, (int)maj_text.length, (char *)maj_text.value,
             min_text.length ? " (" : "", (int)min_text.length, (char *)min_text.value,
             min_text.length ? ")" : "");
    gss_release_buffer(&min2, &maj_text);
    gss_release_buffer(&min2, &min_text);
}

/* ---------------- acceptor credentials ---------------- */

/* Copies the keys of `service`/<any host> from `from` into a memory keytab,
 * so accepting needs no file (nor its permissions) after start-up, and
 * only this service's keys are ever accepted. Returns 0 or the error of
 * reading `from`; *n is the number of keys copied. */
static krb5_error_code copy_service_keys(krb5_context k, krb5_keytab from, const char *service,
                                         krb5_keytab to, int *n)
{
    krb5_kt_cursor cur;
    krb5_keytab_entry e;
    size_t slen = strlen(service);
    krb5_error_code rc = krb5_kt_start_seq_get(k, from, &cur);
    *n = 0;
    if (rc != 0)
        return rc;
    while (krb5_kt_next_entry(k, from, &e, &cur) == 0) {
        const krb5_data *c0 = e.principal->length == 2 ? &e.principal->data[0] : NULL;
        if (c0 && c0->length == slen && memcmp(c0->data, service, slen) == 0 &&
            krb5_kt_add_entry(k, to, &e) == 0)
            (*n)++;
        krb5_free_keytab_entry_contents(k, &e);
    }
    krb5_kt_end_seq_get(k, from, &cur);
    return 0;
}

/* "keytab NAME: MIT's message for rc" into err (the message is freed). */
static void keytab_error(krb5_context k, krb5_error_code rc, const char *name, char *err,
                         size_t errlen)
{
    const char *msg = krb5_get_error_message(k, rc);
    snprintf(err, errlen, "keytab %s: %s", name, msg);
    krb5_free_error_message(k, msg);
}

/* Opens `keytab` (or the default) and fills the memory keytab `mem`.
 * Returns 0, or -1 with err set. */
static int load_keys(krb5_context k, const char *keytab, const char *service, krb5_keytab mem,
                     char *err, size_t errlen)
{
    krb5_keytab kt;
    char name[1024];
    krb5_error_code rc = keytab ? krb5_kt_resolve(k, keytab, &kt) : krb5_kt_default(k, &kt);
    if (rc != 0) {
        keytab_error(k, rc, keytab ? keytab : "(default)", err, errlen);
        return -1;
    }
    if (krb5_kt_get_name(k, kt, name, sizeof name) != 0)
        snprintf(name, sizeof name, "%s", keytab ? keytab : "(default)");
    int n;
    rc = copy_service_keys(k, kt, service, mem, &n);
    krb5_kt_close(k, kt);
    if (rc != 0)
        keytab_error(k, rc, name, err, errlen);
    else if (n == 0)
        snprintf(err, errlen, "keytab %s: no key for %s/<host>", name, service);
    return n > 0 ? 0 : -1;
}

struct gss_server *gss_server_new(const char *keytab, const char *service, char *err, size_t errlen)
{
    static atomic_uint serial;
    char memname[64];
    krb5_context k;
    krb5_keytab mem;
    OM_uint32 major, minor;
    struct gss_server *srv = calloc(1, sizeof *srv);
    if (!srv || krb5_init_context(&k) != 0) {
        snprintf(err, errlen, "gssapi: cannot start Kerberos: out of memory");
        free(srv);
        return NULL;
    }
    snprintf(memname, sizeof memname, "MEMORY:socks5d-%u", atomic_fetch_add(&serial, 1));
    if (krb5_kt_resolve(k, memname, &mem) != 0) {
        snprintf(err, errlen, "gssapi: cannot make a memory keytab");
        krb5_free_context(k);
        free(srv);
        return NULL;
    }
    int ok = load_keys(k, keytab, service, mem, err, errlen) == 0;
    /* The credential keeps its own handle on the memory keytab. */
    major = ok ? gss_krb5_import_cred(&minor, NULL, NULL, mem, &srv->cred) : GSS_S_FAILURE;
    if (ok && GSS_ERROR(major)) {
        describe(err, errlen, "gssapi: acquire acceptor credentials", major, minor);
        ok = 0;
    }
    krb5_kt_close(k, mem);
    krb5_free_context(k);
    if (!ok) {
        free(srv);
        return NULL;
    }
    return srv;
}

void gss_server_free(struct gss_server *srv)
{
    OM_uint32 minor;
    if (!srv)
        return;
    gss_release_cred(&minor, &srv->cred);
    free(srv);
}

/* ---------------- contexts ---------------- */

struct gss_conn *gss_conn_new(void)
{
    struct gss_conn *c = calloc(1, sizeof *c);
    if (c)
        c->ctx = GSS_C_NO_CONTEXT;
    return c;
}

static void conn_destroy(struct gss_conn *c)
{
    OM_uint32 minor;
    gss_release_buffer(&minor, &c->out);
    if (c->ctx != GSS_C_NO_CONTEXT)
        gss_delete_sec_context(&minor, &c->ctx, GSS_C_NO_BUFFER);
    free(c);
}

void gss_conn_free(struct gss_conn *c)
{
    if (!c)
        return;
    if (c->job) {
        c->orphan = 1;
        return;
    }
    conn_destroy(c);
}

/* On a pool thread: one gss_accept_sec_context step. */
static void accept_run(struct auth_task *t)
{
    struct gss_job *j = (struct gss_job *)t;
    struct gss_conn *c = j->conn;
    gss_buffer_desc in = {j->len, j->token};
    gss_name_t src = GSS_C_NO_NAME;
    OM_uint32 major, minor, min2;
    gss_release_buffer(&min2, &c->out);
    major = gss_accept_sec_context(&minor, &c->ctx, j->srv->cred, &in, GSS_C_NO_CHANNEL_BINDINGS,
                                   &src, NULL, &c->out, NULL, NULL, NULL);
    if (GSS_ERROR(major)) {
        describe(c->error, sizeof c->error, "gss_accept_sec_context", major, minor);
        j->status = GSS_ERROR;
    } else if (major & GSS_S_CONTINUE_NEEDED) {
        j->status = GSS_CONTINUE;
    } else {
        gss_buffer_desc name = GSS_C_EMPTY_BUFFER;
        major = gss_display_name(&minor, src, &name, NULL);
        j->status = GSS_ERROR;
        if (GSS_ERROR(major))
            describe(c->error, sizeof c->error, "gss_display_name", major, minor);
        else if (name.length >= sizeof c->principal || memchr(name.value, 0, name.length))
            snprintf(c->error, sizeof c->error, "client principal name unusable");
        else
            j->status = GSS_COMPLETE;
        if (j->status == GSS_COMPLETE) {
            memcpy(c->principal, name.value, name.length);
            c->principal[name.length] = '\0';
        }
        gss_release_buffer(&min2, &name);
    }
    gss_release_name(&min2, &src);
}

/* On the worker. */
static void accept_done(struct auth_task *t, int ran)
{
    struct gss_job *j = (struct gss_job *)t;
    struct gss_conn *c = j->conn;
    c->job = NULL;
    if (!ran) {
        snprintf(c->error, sizeof c->error, "server shutting down");
        j->status = GSS_ERROR;
    }
    if (j->owner)
        j->done(j->owner, j->status);
    else if (c->orphan)
        conn_destroy(c);
    free(j);
}

struct gss_job *gss_accept_start(struct gss_conn *c, const struct gss_server *srv,
                                 const uint8_t *token, size_t len, struct auth_cache *cache,
                                 gss_done_fn done, void *owner)
{
    struct gss_job *j = calloc(1, sizeof *j + len);
    if (!j) {
        errno = ENOMEM;
        return NULL;
    }
    j->conn = c;
    j->srv = srv;
    j->done = done;
    j->owner = owner;
    j->len = len;
    memcpy(j->token, token, len);
    j->task.run = accept_run;
    j->task.done = accept_done;
    if (auth_pool_submit(&j->task, cache) < 0) {
        free(j);
        errno = EAGAIN;
        return NULL;
    }
    c->job = j;
    return j;
}

void gss_accept_cancel(struct gss_job *j)
{
    j->owner = NULL;
    if (auth_pool_withdraw(&j->task)) {
        j->conn->job = NULL;
        free(j);
    }
}

const uint8_t *gss_conn_token(const struct gss_conn *c, size_t *len)
{
    *len = c->out.length;
    return c->out.value;
}

const char *gss_conn_error(const struct gss_conn *c)
{
    return c->error;
}

const char *gss_conn_principal(const struct gss_conn *c)
{
    return c->principal;
}

/* ---------------- per-message protection ---------------- */

size_t gss_conn_wrap_limit(const struct gss_conn *c, int conf, size_t max_out)
{
    OM_uint32 minor, max_in = 0;
    OM_uint32 major =
        gss_wrap_size_limit(&minor, c->ctx, conf, GSS_C_QOP_DEFAULT, (OM_uint32)max_out, &max_in);
    return GSS_ERROR(major) ? 0 : max_in;
}

size_t gss_conn_wrap(struct gss_conn *c, int conf, const uint8_t *in, size_t len, uint8_t *out,
                     size_t cap)
{
    OM_uint32 major, minor;
    int conf_state = 0;
    gss_buffer_desc msg = {len, (void *)in}, tok = GSS_C_EMPTY_BUFFER;
    size_t n = 0;
    major = gss_wrap(&minor, c->ctx, conf, GSS_C_QOP_DEFAULT, &msg, &conf_state, &tok);
    if (GSS_ERROR(major))
        describe(c->error, sizeof c->error, "gss_wrap", major, minor);
    else if (conf && !conf_state)
        snprintf(c->error, sizeof c->error, "gss_wrap: confidentiality not available");
    else if (tok.length > cap)
        snprintf(c->error, sizeof c->error, "gss_wrap: token of %zu bytes too long",
                 (size_t)tok.length);
    else
        memcpy(out, tok.value, n = tok.length);
    gss_release_buffer(&minor, &tok);
    return n;
}

/* `tolerated`: the supplementary status bits that are not errors. */
static long unwrap(struct gss_conn *c, OM_uint32 tolerated, const uint8_t *in, size_t len,
                   uint8_t *out, size_t cap, int *conf)
{
    OM_uint32 major, minor;
    gss_buffer_desc tok = {len, (void *)in}, msg = GSS_C_EMPTY_BUFFER;
    long n = -1;
    *conf = 0;
    major = gss_unwrap(&minor, c->ctx, &tok, &msg, conf, NULL);
    if ((major & ~tolerated) != GSS_S_COMPLETE)
        describe(c->error, sizeof c->error, "gss_unwrap", major, minor);
    else if (msg.length > cap)
        snprintf(c->error, sizeof c->error, "gss_unwrap: message of %zu bytes too long",
                 (size_t)msg.length);
    else
        memcpy(out, msg.value, (size_t)(n = (long)msg.length));
    gss_release_buffer(&minor, &msg);
    return n;
}

long gss_conn_unwrap(struct gss_conn *c, const uint8_t *in, size_t len, uint8_t *out, size_t cap,
                     int *conf)
{
    /* Replays, gaps and reordering are supplementary bits, not errors:
     * on a TCP stream each of them means an attacker. */
    return unwrap(c, 0, in, len, out, cap, conf);
}

long gss_conn_unwrap_dgram(struct gss_conn *c, const uint8_t *in, size_t len, uint8_t *out,
                           size_t cap, int *conf)
{
    /* UDP loses and reorders datagrams; a duplicate or a token too old to
     * tell is still refused. */
    return unwrap(c, GSS_S_GAP_TOKEN | GSS_S_UNSEQ_TOKEN, in, len, out, cap, conf);
}

/* ---------------- identity ---------------- */

/* 1 when the comma-separated `list` holds `item` (len bytes). */
static int list_has(const char *list, const char *item, size_t len)
{
    for (const char *p = list; *p;) {
        size_t n = strcspn(p, ",");
        if (n == len && memcmp(p, item, len) == 0)
            return 1;
        p += n + (p[n] == ',');
    }
    return 0;
}

const char *gss_user(const char *p, const char *realms, int strip, char *out, size_t cap)
{
    const char *at = strrchr(p, '@');
    const char *realm = at ? at + 1 : "";
    if (realms && *realms && !list_has(realms, realm, strlen(realm)))
        return NULL;
    if (!strip || !at)
        return p;
    if ((size_t)(at - p) >= cap || at == p)
        return NULL;
    memcpy(out, p, (size_t)(at - p));
    out[at - p] = '\0';
    return out;
}
