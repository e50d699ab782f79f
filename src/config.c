/* The configuration snapshot: checks of the whole (options.c reads each
 * option from the file and the command line), its lifetime, and lookups. */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "gss.h"
#include "proto.h"
#include "route.h"
#include "rules.h"
#include "upcreds.h"
#include "users.h"

/* Where problems are reported: stderr at start, a buffer during reload.
 * Configuration is only ever loaded by the main thread. */
static FILE *errout;
#define ERRLEN 512

/* ---------------- validation ---------------- */

static int is_open(const struct config *c)
{
    return memchr(c->methods, SOCKS5_METHOD_NONE, c->nmethods) != NULL;
}

#define BAD(...)                                                                                   \
    do {                                                                                           \
        fprintf(errout, "socks5d: " __VA_ARGS__);                                                  \
        fputc('\n', errout);                                                                       \
        return -1;                                                                                 \
    } while (0)

/* Whether `allow from` rules judge the real client on listener l: behind a
 * PROXY header the client address is whatever the trusted senders say, so
 * the rules are only as restricted as the list of those senders. */
static int client_checked(const struct config *c, const struct listen_spec *l)
{
    return rules_allow_restricted_by_client(c->rules) &&
           (!l->proxy_protocol || rules_allow_restricted_by_client(c->pp_from));
}

/* Protected mode: a listener beyond loopback that anyone can use unchecked
 * is refused unless asked for; client-restricted allow rules count as a check. */
int config_check_open_proxy(const struct config *c, const struct listen_spec *ls, size_t n,
                            FILE *err)
{
    char name[ADDR_STRLEN];
    if (!is_open(c) || c->open_proxy)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!addr_is_loopback(&ls[i].addr.sa) && !client_checked(c, &ls[i])) {
            fprintf(err,
                    "socks5d: refusing to run an open proxy on %s: listening beyond loopback "
                    "without authentication lets anyone use this host. Use --auth userpass "
                    "--users FILE, allow rules restricted by 'from' (behind proxy-protocol, "
                    "with a restricted proxy-protocol-from too), or --open-proxy if that is "
                    "really what you want\n",
                    addr_str(&ls[i].addr.sa, name, sizeof name));
            return -1;
        }
    return 0;
}

/* A PROXY header sets the client address that rules, limits and login
 * throttling rely on, so only listed senders may write one. */
static int check_proxy_trust(const struct config *c)
{
    char name[ADDR_STRLEN];
    int bad = 0;
    for (size_t i = 0; i < c->nlisten && !c->pp_from; i++) {
        if (!c->listen[i].proxy_protocol)
            continue;
        fprintf(errout,
                "%s: listen %s: proxy-protocol needs proxy-protocol-from CIDR[,CIDR...] naming "
                "the balancers trusted to send PROXY headers (without it any client can claim "
                "any address)\n",
                c->listen_at[i] ? c->listen_at[i] : "socks5d",
                addr_str(&c->listen[i].addr.sa, name, sizeof name));
        bad = 1;
    }
    return bad ? -1 : 0;
}

/* "file:line:column" of a value, or "socks5d" for the command line: the
 * prefix of a message about it. */
static const char *at(const char *where)
{
    return where ? where : "socks5d";
}

static int check_listeners(const struct config *c)
{
    char name[ADDR_STRLEN];
    for (size_t i = 0; i < c->nlisten; i++)
        for (size_t j = 0; j < i; j++)
            if (config_same_listen(&c->listen[i], &c->listen[j])) {
                fprintf(errout, "%s: listen %s given twice (first at %s)\n", at(c->listen_at[i]),
                        addr_str(&c->listen[i].addr.sa, name, sizeof name),
                        c->listen_at[j] ? c->listen_at[j] : "the command line");
                return -1;
            }
    return 0;
}

static int check_users(struct config *c)
{
    char err[ERRLEN];
    if (memchr(c->methods, SOCKS5_METHOD_USERPASS, c->nmethods) && !c->users_path)
        BAD("auth userpass needs a users file (--users FILE; make lines with `socks5d passwd "
            "NAME`)");
    if (c->users_path && !(c->users = users_load(c->users_path, err, sizeof err))) {
        fprintf(errout, "%s: users file %s\n", at(c->users_at), err);
        return -1;
    }
    int gss = memchr(c->methods, SOCKS5_METHOD_GSSAPI, c->nmethods) != NULL;
    if (c->max_per_user && !c->users_path && !gss)
        BAD("max-sessions-per-user needs authentication (a users file or gssapi)");
    if (c->socks4 && !memchr(c->methods, SOCKS5_METHOD_NONE, c->nmethods))
        BAD("socks4 needs auth none among the methods (SOCKS4 clients cannot log in, so they "
            "would get around the login)");
    /* Kerberos principals are not listed anywhere socks5d can look. */
    for (size_t i = 0; i < c->nrate_limits && !gss; i++)
        if (!users_find(c->users, c->rate_limits[i].user)) {
            fprintf(errout, "%s: rate-limit: no user '%s' in the users file%s%s\n",
                    at(c->rate_limits[i].at), c->rate_limits[i].user,
                    c->users_path ? " " : " (there is no users file)",
                    c->users_path ? c->users_path : "");
            return -1;
        }
    return 0;
}

static const char *hop_password(void *arg, const struct upstream_hop *h)
{
    return upcreds_find(arg, h);
}

/* Route hops named with a user and no password get it from the upstream
 * credentials file, read again at every reload. */
static int check_upstream_credentials(struct config *c)
{
    char err[ERRLEN];
    struct upcreds *uc = NULL;
    if (c->upstream_credentials && !(uc = upcreds_load(c->upstream_credentials, err, sizeof err))) {
        fprintf(errout, "%s: upstream-credentials %s\n", at(c->upstream_credentials_at), err);
        return -1;
    }
    int rc = routes_set_passwords(c->routes, hop_password, uc, err, sizeof err);
    upcreds_free(uc);
    if (rc < 0) {
        if (c->upstream_credentials)
            fprintf(errout, "%s in upstream-credentials %s\n", err, c->upstream_credentials);
        else
            fprintf(errout, "%s (USER:PASS@ in the file, or an upstream-credentials file)\n", err);
        return -1;
    }
    return 0;
}

/* The keys of the service are read now: at start that is before the
 * privilege drop, and `-t` finds a keytab without them. */
static int check_gss(struct config *c)
{
    char err[ERRLEN];
    if (!memchr(c->methods, SOCKS5_METHOD_GSSAPI, c->nmethods))
        return 0;
    if (!(c->gss = gss_server_new(c->gss_keytab, c->gss_service, err, sizeof err)))
        BAD("gssapi %s", err);
    return 0;
}

/* Two logs on one stream (stderr, the journal) share one format: a reader
 * of that stream must not get JSON and plain lines mixed. */
static int check_log_formats(struct config *c)
{
    struct log_settings *l = &c->log;
    if (l->error_json < 0)
        l->error_json = l->access_json;
    if (l->error_sink == SINK_STDERR && l->access_sink == SINK_STDERR &&
        l->error_json != l->access_json)
        BAD("error-log-format %s and access-log-format %s both write to stderr: set both to "
            "json, or send one log elsewhere",
            l->error_json ? "json" : "plain", l->access_json ? "json" : "logfmt");
    return 0;
}

static int validate(struct config *c)
{
    if (c->nlisten == 0) {
        addr_parse("127.0.0.1:1080", &c->listen[0].addr);
        c->nlisten = 1;
    }
    for (size_t i = 0; i < c->nlisten; i++)
        c->listen[i].proxy_protocol |= (uint8_t)c->proxy_protocol_all;
    if (check_listeners(c) < 0 || check_proxy_trust(c) < 0)
        return -1;
    if (c->nmethods == 0) {
        c->methods[0] = c->users_path ? SOCKS5_METHOD_USERPASS : SOCKS5_METHOD_NONE;
        c->nmethods = 1;
    }
    /* Ten users' worth of failures from one address: one person's typos
     * never reach it, one address trying many names does. */
    if (c->auth_fail_address_limit == 0)
        c->auth_fail_address_limit =
            c->auth_fail_limit > UINT32_MAX / 10 ? UINT32_MAX : c->auth_fail_limit * 10;
    if (check_users(c) < 0 || check_upstream_credentials(c) < 0 || check_gss(c) < 0 ||
        check_log_formats(c) < 0)
        return -1;
    return config_check_open_proxy(c, c->listen, c->nlisten, errout);
}

int config_validate(struct config *c, FILE *err)
{
    errout = err;
    int rc = validate(c);
    errout = NULL; /* `err` may be closed after this returns */
    return rc;
}

/* ---------------- snapshot ---------------- */

struct config *config_ref(struct config *c)
{
    atomic_fetch_add_explicit(&c->refs, 1, memory_order_relaxed);
    return c;
}

void config_unref(struct config *c)
{
    if (!c || atomic_fetch_sub_explicit(&c->refs, 1, memory_order_acq_rel) != 1)
        return;
    users_free(c->users);
    gss_server_free(c->gss);
    free(c->gss_keytab);
    free(c->gss_service);
    free(c->gss_realms);
    config_free_rules(c);
    rules_free(c->pp_from);
    free(c->pp_from_text);
    routes_free(c->routes);
    free(c->upstream_credentials);
    free(c->upstream_credentials_at);
    rules_free(c->auth_fail_exempt);
    free(c->auth_fail_exempt_text);
    free(c->pid_file);
    for (size_t i = 0; i < CONFIG_MAX_LISTEN; i++)
        free(c->listen_at[i]);
    for (size_t i = 0; i < c->nrate_limits; i++) {
        free(c->rate_limits[i].user);
        free(c->rate_limits[i].at);
    }
    free(c->rate_limits);
    free(c->users_path);
    free(c->users_at);
    free(c->log.error_log_path);
    free(c->log.access_log_path);
    free(c->run_user);
    free(c->path);
    free(c);
}

void config_free_rules(struct config *c)
{
    rules_free(c->rules);
    c->rules = NULL;
    for (size_t i = 0; i < c->nrules; i++)
        free(c->rule_text[i]);
    free(c->rule_text);
    c->rule_text = NULL;
    c->nrules = 0;
}

void config_size_limits(struct config *c, uint64_t nofile)
{
    if (c->max_sessions == 0)
        c->max_sessions = nofile > 64 ? (nofile - 32) / 2 : 16;
    /* Slow-loris clients may hold at most half the sessions in the handshake. */
    if (c->max_handshakes == 0)
        c->max_handshakes = (uint32_t)(c->max_sessions / 2 > 64 ? c->max_sessions / 2 : 64);
    /* One address may hold an eighth of the sessions: enough for a busy
     * NAT gateway, not enough for one client to take every descriptor. */
    if (c->max_per_ip == 0)
        c->max_per_ip = (uint32_t)(c->max_sessions / 8 > 64 ? c->max_sessions / 8 : 64);
}

uint64_t config_rate_limit(const struct config *c, const char *user)
{
    for (size_t i = 0; user && i < c->nrate_limits; i++)
        if (strcmp(c->rate_limits[i].user, user) == 0)
            return c->rate_limits[i].bytes_per_sec;
    return 0;
}

const union addr_any *config_advertise(const struct config *c, const struct sockaddr *local)
{
    /* An exact listener first, then a wildcard one on the same port. */
    for (int exact = 1; exact >= 0; exact--)
        for (size_t i = 0; i < c->nlisten; i++) {
            const struct listen_spec *l = &c->listen[i];
            if (!l->advertise.sa.sa_family || addr_port(&l->addr.sa) != addr_port(local))
                continue;
            if (exact ? addr_same_ip(&l->addr.sa, local) : addr_is_unspecified(&l->addr.sa))
                return &l->advertise;
        }
    return c->advertise.sa.sa_family ? &c->advertise : NULL;
}

void config_advertise_into(const struct config *c, const struct sockaddr *local,
                           union addr_any *bnd)
{
    const union addr_any *adv = config_advertise(c, local);
    uint16_t port = addr_port(&bnd->sa);
    if (!adv)
        return;
    *bnd = *adv;
    addr_set_port(bnd, port);
}

int config_same_listen(const struct listen_spec *a, const struct listen_spec *b)
{
    return addr_same_ip(&a->addr.sa, &b->addr.sa) &&
           addr_port(&a->addr.sa) == addr_port(&b->addr.sa);
}
