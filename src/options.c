/* The option table and what is made from it: value parsing and validation,
 * defaults, --help, getopt's tables, directive lookup and `socks5d -T`; and
 * reading config files and the command line through it (config_load).
 *
 * Every command-line option is also a directive of the same name in the
 * file ("--timeout-idle 5m" is "timeout-idle 5m") unless the table says
 * otherwise. A list option given on the command line (listen, rule)
 * replaces the file's. */
#include "options.h"

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <libgen.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "buildinfo.h"
#include "config.h"
#include "proto.h"
#include "route.h"
#include "rules.h"
#include "version.h"

#define MAX_INCLUDE_DEPTH 8

/* Where problems are reported: stderr at start, a buffer during reload.
 * Configuration is only ever loaded by the main thread. */
static FILE *errout;
#define ERRLEN 512

/* ---------------- value parsers ---------------- */

static const struct {
    const char *unit;
    uint32_t ms;
} duration_units[] = {{"h", 3600000}, {"m", 60000}, {"s", 1000}, {"ms", 1}};

/* "10", "10s", "500ms", "5m", "1h" -> milliseconds. Returns 0 or -1. */
static int parse_duration(const char *s, uint32_t *ms)
{
    char *end;
    unsigned long long v, mult = 0;
    errno = 0;
    v = strtoull(s, &end, 10);
    if (end == s || errno || *s == '-')
        return -1;
    for (size_t i = 0; i < sizeof duration_units / sizeof *duration_units; i++)
        if (strcmp(end, duration_units[i].unit) == 0)
            mult = duration_units[i].ms;
    if (*end == '\0')
        mult = 1000;
    if (mult == 0 || v > UINT32_MAX / mult)
        return -1;
    *ms = (uint32_t)(v * mult);
    return 0;
}

static const char size_units[] = "kmg"; /* powers of 1024 */

/* "64k", "10M", "1G" (powers of 1024) or plain bytes. */
static int parse_size(const char *s, uint64_t *out)
{
    char *end;
    unsigned long long v, mult = 1;
    errno = 0;
    v = strtoull(s, &end, 10);
    if (end == s || errno || *s == '-')
        return -1;
    if (*end) {
        const char *u = strchr(size_units, end[0] | 0x20);
        if (!u || end[1])
            return -1;
        mult = 1ULL << (10 * (u - size_units + 1));
    }
    if (v > UINT64_MAX / mult)
        return -1;
    *out = v * mult;
    return 0;
}

static int parse_uint(const char *s, unsigned long long max, unsigned long long *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (end == s || *end || errno || *s == '-' || v > max)
        return -1;
    *out = v;
    return 0;
}

static const char *const method_names[] = {[SOCKS5_METHOD_NONE] = "none",
                                           [SOCKS5_METHOD_GSSAPI] = "gssapi",
                                           [SOCKS5_METHOD_USERPASS] = "userpass"};

static int parse_methods(struct config *c, const char *list)
{
    char buf[64];
    snprintf(buf, sizeof buf, "%s", list);
    c->nmethods = 0;
    for (char *save, *tok = strtok_r(buf, ", ", &save); tok; tok = strtok_r(NULL, ", ", &save)) {
        uint8_t m;
        if (strcasecmp(tok, "none") == 0)
            m = SOCKS5_METHOD_NONE;
        else if (strcasecmp(tok, "userpass") == 0)
            m = SOCKS5_METHOD_USERPASS;
        else if (strcasecmp(tok, "gssapi") == 0)
            m = SOCKS5_METHOD_GSSAPI;
        else
            return -1;
        if (c->nmethods == sizeof c->methods || memchr(c->methods, m, c->nmethods))
            return -1;
        c->methods[c->nmethods++] = m;
    }
    return c->nmethods ? 0 : -1;
}

/* An address without a port: "1.2.3.4", "::1" or "[::1]". */
static int parse_host(const char *s, union addr_any *out)
{
    char buf[INET6_ADDRSTRLEN + 16];
    int wrap = s[0] != '[' && strchr(s, ':');
    snprintf(buf, sizeof buf, "%s%s%s:1", wrap ? "[" : "", s, wrap ? "]" : "");
    return addr_parse(buf, out);
}

/* A path named in a file is relative to that file's directory; on the
 * command line, to the working directory. Returns a new string or NULL. */
static char *resolve_path(const struct options_origin *o, const char *path)
{
    char dir[PATH_MAX], *out;
    if (!o->file || path[0] == '/')
        return strdup(path);
    while (path[0] == '.' && path[1] == '/')
        path += 2 + strspn(path + 2, "/");
    snprintf(dir, sizeof dir, "%s", o->file);
    return asprintf(&out, "%s/%s", dirname(dir), path) < 0 ? NULL : out;
}

static int out_of_memory(char *err, size_t errlen)
{
    snprintf(err, errlen, "out of memory");
    return -1;
}

/* The address without its port, as parse_host reads it back. */
static const char *host_str(const struct sockaddr *sa, char *buf, size_t len)
{
    const void *ip = sa->sa_family == AF_INET6
                         ? (const void *)&((const struct sockaddr_in6 *)sa)->sin6_addr
                         : (const void *)&((const struct sockaddr_in *)sa)->sin_addr;
    return inet_ntop(sa->sa_family, ip, buf, (socklen_t)len) ? buf : "?";
}

#define FIELD(c, d, type) ((type *)((char *)(c) + (d)->field))
#define CFIELD(c, d, type) ((const type *)((const char *)(c) + (d)->field))

/* ---------------- generic kinds ---------------- */

static int set_duration(struct config *c, const struct options_def *d, const char *arg,
                        struct options_origin *o, char *err, size_t errlen)
{
    uint32_t ms;
    (void)o;
    if (parse_duration(arg, &ms) < 0)
        return snprintf(err, errlen, "'%s': expected a duration such as 30, 30s, 500ms, 5m", arg),
               -1;
    if (ms < d->min)
        return snprintf(err, errlen, "'%s': must be greater than zero", arg), -1;
    *FIELD(c, d, uint32_t) = ms;
    return 0;
}

static void format_duration(uint32_t ms, char *buf, size_t len)
{
    size_t i = 0;
    while (ms && ms % duration_units[i].ms)
        i++;
    snprintf(buf, len, "%u%s", ms / duration_units[i].ms, ms ? duration_units[i].unit : "");
}

static void show_duration(const struct config *c, const struct options_def *d, FILE *out)
{
    char v[32];
    format_duration(*CFIELD(c, d, uint32_t), v, sizeof v);
    fprintf(out, "%s %s\n", d->name, v);
}

static int set_count(struct config *c, const struct options_def *d, const char *arg,
                     struct options_origin *o, char *err, size_t errlen)
{
    unsigned long long v;
    (void)o;
    if (parse_uint(arg, d->max, &v) < 0 || v < d->min)
        return snprintf(err, errlen, "'%s': expected a number %llu..%llu%s", arg,
                        (unsigned long long)d->min, (unsigned long long)d->max,
                        d->min ? "" : " (0: no limit)"),
               -1;
    if (d->max > UINT32_MAX)
        *FIELD(c, d, uint64_t) = v;
    else
        *FIELD(c, d, uint32_t) = (uint32_t)v;
    return 0;
}

static void show_count(const struct config *c, const struct options_def *d, FILE *out)
{
    uint64_t v = d->max > UINT32_MAX ? *CFIELD(c, d, uint64_t) : *CFIELD(c, d, uint32_t);
    if (v || !d->min)
        fprintf(out, "%s %llu\n", d->name, (unsigned long long)v);
}

static int set_prefix(struct config *c, const struct options_def *d, const char *arg,
                      struct options_origin *o, char *err, size_t errlen)
{
    if (set_count(c, d, arg, o, err, errlen) < 0)
        return snprintf(err, errlen, "'%s': expected a prefix length 1..128", arg), -1;
    return 0;
}

static int parse_flag(const char *arg, int *flag)
{
    static const char *const words[] = {"yes", "no", "on", "off", "true", "false"};
    if (!*arg) {
        *flag = 1;
        return 0;
    }
    for (int i = 0; i < 6; i++)
        if (strcasecmp(arg, words[i]) == 0)
            return *flag = i % 2 == 0, 0;
    return -1;
}

static int set_flag(struct config *c, const struct options_def *d, const char *arg,
                    struct options_origin *o, char *err, size_t errlen)
{
    (void)o;
    if (parse_flag(arg, FIELD(c, d, int)) < 0)
        return snprintf(err, errlen, "'%s': expected yes or no (also on/off, true/false)", arg), -1;
    return 0;
}

static void show_flag(const struct config *c, const struct options_def *d, FILE *out)
{
    fprintf(out, "%s %s\n", d->name, *CFIELD(c, d, int) ? "yes" : "no");
}

static int set_string(struct config *c, const struct options_def *d, const char *arg,
                      struct options_origin *o, char *err, size_t errlen)
{
    char **dst = FIELD(c, d, char *);
    (void)o;
    free(*dst);
    return (*dst = strdup(arg)) ? 0 : out_of_memory(err, errlen);
}

/* A file, and where it was named for the messages about it. */
static int set_file_at(char **path, char **at, const char *arg, struct options_origin *o, char *err,
                       size_t errlen)
{
    free(*path);
    free(*at);
    *at = NULL;
    if (!(*path = resolve_path(o, arg)) ||
        (o->file && asprintf(at, "%s:%d:%d", o->file, o->line, o->column) < 0)) {
        *at = NULL;
        return out_of_memory(err, errlen);
    }
    return 0;
}

static int set_users(struct config *c, const struct options_def *d, const char *arg,
                     struct options_origin *o, char *err, size_t errlen)
{
    (void)d;
    return set_file_at(&c->users_path, &c->users_at, arg, o, err, errlen);
}

static int set_upstream_credentials(struct config *c, const struct options_def *d, const char *arg,
                                    struct options_origin *o, char *err, size_t errlen)
{
    (void)d;
    return set_file_at(&c->upstream_credentials, &c->upstream_credentials_at, arg, o, err, errlen);
}

/* A file named in a config file is relative to that file. */
static int set_path(struct config *c, const struct options_def *d, const char *arg,
                    struct options_origin *o, char *err, size_t errlen)
{
    char **dst = FIELD(c, d, char *);
    free(*dst);
    return (*dst = resolve_path(o, arg)) ? 0 : out_of_memory(err, errlen);
}

static void show_string(const struct config *c, const struct options_def *d, FILE *out)
{
    const char *s = *CFIELD(c, d, char *);
    if (s)
        fprintf(out, "%s %s\n", d->name, s);
}

/* ---------------- listeners, methods, rules ---------------- */

static int listen_word(struct listen_spec *l, char **save, const char *tok, char *err,
                       size_t errlen)
{
    if (strcmp(tok, "proxy-protocol") == 0) {
        l->proxy_protocol = 1;
        return 0;
    }
    if (strcmp(tok, "advertise") == 0) {
        tok = strtok_r(NULL, " \t", save);
        if (!tok || parse_host(tok, &l->advertise) < 0)
            return snprintf(err, errlen, "advertise needs an IPv4 or IPv6 address"), -1;
        return 0;
    }
    snprintf(err, errlen, "'%s': listener options are proxy-protocol and advertise ADDR", tok);
    return -1;
}

/* "ADDR:PORT [proxy-protocol] [advertise ADDR]" */
static int set_listen(struct config *c, const struct options_def *d, const char *arg,
                      struct options_origin *o, char *err, size_t errlen)
{
    char buf[512];
    (void)d;
    if (!o->file && !o->cli_listen) {
        c->nlisten = 0; /* the command line replaces the file's listeners */
        o->cli_listen = 1;
    }
    if (c->nlisten == CONFIG_MAX_LISTEN)
        return snprintf(err, errlen, "at most %d listen addresses", CONFIG_MAX_LISTEN), -1;
    struct listen_spec *l = &c->listen[c->nlisten];
    memset(l, 0, sizeof *l);
    snprintf(buf, sizeof buf, "%s", arg);
    char *save, *tok = strtok_r(buf, " \t", &save);
    if (!tok || addr_parse(tok, &l->addr) < 0)
        return snprintf(err, errlen, "'%s': expected IPv4:PORT or [IPv6]:PORT", arg), -1;
    while ((tok = strtok_r(NULL, " \t", &save)))
        if (listen_word(l, &save, tok, err, errlen) < 0)
            return -1;
    free(c->listen_at[c->nlisten]);
    c->listen_at[c->nlisten] = NULL;
    if (o->file &&
        asprintf(&c->listen_at[c->nlisten], "%s:%d:%d", o->file, o->line, o->column) < 0) {
        c->listen_at[c->nlisten] = NULL;
        return out_of_memory(err, errlen);
    }
    c->nlisten++;
    return 0;
}

static void show_listen(const struct config *c, const struct options_def *d, FILE *out)
{
    char a[ADDR_STRLEN], adv[ADDR_STRLEN];
    for (size_t i = 0; i < c->nlisten; i++) {
        const struct listen_spec *l = &c->listen[i];
        fprintf(out, "%s %s%s", d->name, addr_str(&l->addr.sa, a, sizeof a),
                l->proxy_protocol ? " proxy-protocol" : "");
        if (l->advertise.sa.sa_family)
            fprintf(out, " advertise %s", host_str(&l->advertise.sa, adv, sizeof adv));
        fputc('\n', out);
    }
}

static int set_workers(struct config *c, const struct options_def *d, const char *arg,
                       struct options_origin *o, char *err, size_t errlen)
{
    if (strcmp(arg, "auto") == 0)
        return c->workers = 0, 0;
    if (set_count(c, d, arg, o, err, errlen) < 0)
        return snprintf(err, errlen, "'%s': expected 1..1024 or auto", arg), -1;
    return 0;
}

static void show_workers(const struct config *c, const struct options_def *d, FILE *out)
{
    if (c->workers)
        fprintf(out, "%s %d\n", d->name, c->workers);
    else
        fprintf(out, "%s auto\n", d->name);
}

static int set_auth(struct config *c, const struct options_def *d, const char *arg,
                    struct options_origin *o, char *err, size_t errlen)
{
    (void)d, (void)o;
    if (parse_methods(c, arg) < 0)
        return snprintf(err, errlen, "'%s': expected none, userpass, gssapi, in preference order",
                        arg),
               -1;
    return 0;
}

/* A keytab is a file name, or a Kerberos keytab name ("FILE:...",
 * "MEMORY:..."): only a relative file name is resolved. */
static int set_keytab(struct config *c, const struct options_def *d, const char *arg,
                      struct options_origin *o, char *err, size_t errlen)
{
    (void)d;
    free(c->gss_keytab);
    c->gss_keytab = strchr(arg, ':') ? strdup(arg) : resolve_path(o, arg);
    return c->gss_keytab ? 0 : out_of_memory(err, errlen);
}

static int set_gss_service(struct config *c, const struct options_def *d, const char *arg,
                           struct options_origin *o, char *err, size_t errlen)
{
    if (!*arg || strpbrk(arg, "/@ \t"))
        return snprintf(err, errlen, "'%s': expected a service name such as rcmd", arg), -1;
    return set_string(c, d, arg, o, err, errlen);
}

static const char *const gss_level_names[] = {"none", "integrity", "confidentiality"};

/* RFC 1961 protection levels as a set of bits (1 << level). */
static int set_gss_protection(struct config *c, const struct options_def *d, const char *arg,
                              struct options_origin *o, char *err, size_t errlen)
{
    char buf[128];
    (void)d, (void)o;
    snprintf(buf, sizeof buf, "%s", arg);
    c->gss_levels = 0;
    for (char *save, *tok = strtok_r(buf, ", ", &save); tok; tok = strtok_r(NULL, ", ", &save)) {
        size_t i = 0;
        while (i < 3 && strcasecmp(tok, gss_level_names[i]) != 0)
            i++;
        if (i == 3)
            break;
        c->gss_levels |= (uint8_t)(1u << i);
    }
    if (!c->gss_levels || strlen(arg) >= sizeof buf)
        return snprintf(err, errlen, "'%s': expected a list of none, integrity, confidentiality",
                        arg),
               -1;
    return 0;
}

static void show_gss_protection(const struct config *c, const struct options_def *d, FILE *out)
{
    const char *sep = " ";
    fprintf(out, "%s", d->name);
    for (int i = 0; i < 3; i++)
        if (c->gss_levels & (1u << i)) {
            fprintf(out, "%s%s", sep, gss_level_names[i]);
            sep = ",";
        }
    fputc('\n', out);
}

static int set_gss_realms(struct config *c, const struct options_def *d, const char *arg,
                          struct options_origin *o, char *err, size_t errlen)
{
    size_t n = strlen(arg);
    if (!n || strpbrk(arg, " \t@") || strstr(arg, ",,") || arg[0] == ',' || arg[n - 1] == ',')
        return snprintf(err, errlen, "'%s': expected realms separated by commas", arg), -1;
    return set_string(c, d, arg, o, err, errlen);
}

static void show_auth(const struct config *c, const struct options_def *d, FILE *out)
{
    fprintf(out, "%s", d->name);
    for (size_t i = 0; i < c->nmethods; i++)
        fprintf(out, "%s%s", i ? ", " : " ", method_names[c->methods[i]]);
    fputc('\n', out);
}

/* "WORD" + " " + "ARG" in a fresh string (rule lines are as long as the
 * config line allows), or NULL. */
static char *join(const char *word, const char *arg)
{
    char *out;
    return asprintf(&out, "%s%s%s", word, *arg ? " " : "", arg) < 0 ? NULL : out;
}

/* Adds the rule `text`, kept as written for -T. */
static int add_rule(struct config *c, const char *text, const struct options_origin *o, char *err,
                    size_t errlen)
{
    char **v = realloc(c->rule_text, (c->nrules + 1) * sizeof *v);
    if (!v)
        return out_of_memory(err, errlen);
    c->rule_text = v;
    if ((!c->rules && !(c->rules = rules_new())) || !(v[c->nrules] = strdup(text)))
        return out_of_memory(err, errlen);
    if (rules_add(c->rules, text, o->file, o->line, err, errlen) < 0) {
        free(v[c->nrules]);
        return -1;
    }
    c->nrules++;
    return 0;
}

/* rules_add says "column N: why" of the text "NAME VALUE" it was given; the
 * file's reader wants the column in the line itself. */
static void locate_rule_error(struct options_origin *o, size_t name_len, char *err)
{
    int n, skip = 0;
    if (sscanf(err, "column %d: %n", &n, &skip) != 1 || skip == 0)
        return;
    if ((size_t)n <= name_len)
        o->column = o->name_column + n - 1;
    else
        o->column += n - (int)name_len - 2;
    memmove(err, err + skip, strlen(err + skip) + 1);
}

/* "allow ...", "deny ...", "deny-private" in a file. */
static int set_file_rule(struct config *c, const struct options_def *d, const char *arg,
                         struct options_origin *o, char *err, size_t errlen)
{
    char *rule = join(d->name, arg);
    if (!rule)
        return out_of_memory(err, errlen);
    int rc = add_rule(c, rule, o, err, errlen);
    free(rule);
    if (rc < 0)
        locate_rule_error(o, strlen(d->name), err);
    return rc;
}

/* --rule 'RULE': the command line's rules replace the file's. */
static int set_cli_rule(struct config *c, const struct options_def *d, const char *arg,
                        struct options_origin *o, char *err, size_t errlen)
{
    (void)d;
    if (!o->cli_rules) {
        config_free_rules(c);
        o->cli_rules = 1;
    }
    o->line++; /* logged as "(command line):N" for the Nth --rule */
    return add_rule(c, arg, o, err, errlen);
}

static void show_rules(const struct config *c, const struct options_def *d, FILE *out)
{
    (void)d;
    for (size_t i = 0; i < c->nrules; i++)
        fprintf(out, "%s\n", c->rule_text[i]);
}

/* A route (route.h), from the file or --route; credentials only from a
 * file: a command line is visible to every local user. */
static int set_route(struct config *c, const struct options_def *d, const char *arg,
                     struct options_origin *o, char *err, size_t errlen)
{
    int n, skip = 0;
    (void)d;
    if (!c->routes && !(c->routes = routes_new()))
        return out_of_memory(err, errlen);
    if (routes_add(c->routes, arg, o->file, o->line, o->file ? ROUTES_SECRETS_OK : 0, err,
                   errlen) == 0)
        return 0;
    if (sscanf(err, "column %d: %n", &n, &skip) == 1 && skip > 0) {
        o->column += n - 1;
        memmove(err, err + skip, strlen(err + skip) + 1);
    }
    return -1;
}

/* Passwords come out as "***" (route.h keeps the text masked). */
static void show_routes(const struct config *c, const struct options_def *d, FILE *out)
{
    for (size_t i = 0; i < routes_count(c->routes); i++)
        fprintf(out, "%s %s\n", d->name, routes_get(c->routes, i)->text);
}

/* A list of networks ("CIDR[,CIDR...]") as the rule "allow from LIST" in
 * *list, and as written in d's field (for -T). */
static int set_networks(struct rules **list, struct config *c, const struct options_def *d,
                        const char *arg, struct options_origin *o, char *err, size_t errlen)
{
    char *rule = join("allow from", arg);
    rules_free(*list);
    *list = NULL;
    if (!rule || !(*list = rules_new()) || set_string(c, d, arg, o, err, errlen) < 0) {
        free(rule);
        return out_of_memory(err, errlen);
    }
    int rc = rules_add(*list, rule, NULL, 0, err, errlen);
    free(rule);
    return rc;
}

static int set_pp_from(struct config *c, const struct options_def *d, const char *arg,
                       struct options_origin *o, char *err, size_t errlen)
{
    return set_networks(&c->pp_from, c, d, arg, o, err, errlen);
}

static int set_auth_fail_exempt(struct config *c, const struct options_def *d, const char *arg,
                                struct options_origin *o, char *err, size_t errlen)
{
    return set_networks(&c->auth_fail_exempt, c, d, arg, o, err, errlen);
}

static int set_include(struct config *c, const struct options_def *d, const char *arg,
                       struct options_origin *o, char *err, size_t errlen)
{
    char *path = resolve_path(o, arg);
    (void)d;
    if (!path)
        return out_of_memory(err, errlen);
    int rc = o->include(c, path, o) < 0 ? -2 : 0;
    free(path);
    return rc;
}

/* "timeout idle 5m" is "timeout-idle 5m". */
static int set_timeout(struct config *c, const struct options_def *d, const char *arg,
                       struct options_origin *o, char *err, size_t errlen)
{
    char name[64];
    size_t n = strcspn(arg, " \t");
    const char *value = arg + n + strspn(arg + n, " \t");
    snprintf(name, sizeof name, "%s-%.*s", d->name, (int)n, arg);
    const struct options_def *t = options_directive(name);
    if (!t || t->set != set_duration) {
        const char *near = options_did_you_mean(name, OPTIONS_FILE);
        return snprintf(err, errlen, "unknown timeout '%.*s'%s%s%s (see socks5d.conf(5))", (int)n,
                        arg, near ? "; did you mean '" : "", near ? near : "", near ? "'?" : ""),
               -1;
    }
    if (!*value)
        return snprintf(err, errlen, "'%s' needs a value", name), -1;
    o->column += (int)(value - arg);
    return t->set(c, t, value, o, err, errlen);
}

/* ---------------- limits, UDP, logs, metrics ---------------- */

static int set_rate_limit(struct config *c, const struct options_def *d, const char *arg,
                          struct options_origin *o, char *err, size_t errlen)
{
    char user[256], rate[64];
    uint64_t bps;
    (void)d;
    /* "user NAME RATE" in the file reads naturally; "NAME RATE" is accepted too. */
    if (strncmp(arg, "user ", 5) == 0)
        arg += 5;
    if (sscanf(arg, "%255s %63s", user, rate) != 2 || parse_size(rate, &bps) < 0 || bps == 0)
        return snprintf(err, errlen, "'%s': expected 'user NAME RATE', e.g. 'user alice 10M'", arg),
               -1;
    struct rate_limit *v = realloc(c->rate_limits, (c->nrate_limits + 1) * sizeof *v);
    if (!v)
        return out_of_memory(err, errlen);
    c->rate_limits = v;
    v += c->nrate_limits;
    memset(v, 0, sizeof *v);
    v->bytes_per_sec = bps;
    if (!(v->user = strdup(user)) ||
        (o->file && asprintf(&v->at, "%s:%d:%d", o->file, o->line, o->column) < 0)) {
        free(v->user);
        return out_of_memory(err, errlen);
    }
    c->nrate_limits++;
    return 0;
}

static void show_rate_limits(const struct config *c, const struct options_def *d, FILE *out)
{
    for (size_t i = 0; i < c->nrate_limits; i++)
        fprintf(out, "%s user %s %llu\n", d->name, c->rate_limits[i].user,
                (unsigned long long)c->rate_limits[i].bytes_per_sec);
}

static int set_udp_ports(struct config *c, const struct options_def *d, const char *arg,
                         struct options_origin *o, char *err, size_t errlen)
{
    unsigned a, b;
    char tail;
    (void)d, (void)o;
    if (sscanf(arg, "%u-%u%c", &a, &b, &tail) != 2 || a == 0 || a > b || b > 65535)
        return snprintf(err, errlen, "'%s': expected LO-HI with 1 <= LO <= HI <= 65535", arg), -1;
    c->udp_port_lo = (uint16_t)a;
    c->udp_port_hi = (uint16_t)b;
    return 0;
}

static void show_udp_ports(const struct config *c, const struct options_def *d, FILE *out)
{
    if (c->udp_port_lo)
        fprintf(out, "%s %u-%u\n", d->name, c->udp_port_lo, c->udp_port_hi);
}

static int set_advertise(struct config *c, const struct options_def *d, const char *arg,
                         struct options_origin *o, char *err, size_t errlen)
{
    (void)d, (void)o;
    if (parse_host(arg, &c->advertise) < 0)
        return snprintf(err, errlen, "'%s': expected an IPv4 or IPv6 address", arg), -1;
    return 0;
}

static void show_advertise(const struct config *c, const struct options_def *d, FILE *out)
{
    char a[ADDR_STRLEN];
    if (c->advertise.sa.sa_family)
        fprintf(out, "%s %s\n", d->name, host_str(&c->advertise.sa, a, sizeof a));
}

static int set_metrics(struct config *c, const struct options_def *d, const char *arg,
                       struct options_origin *o, char *err, size_t errlen)
{
    (void)d, (void)o;
    if (strcmp(arg, "off") == 0) {
        memset(&c->metrics, 0, sizeof c->metrics);
        return 0;
    }
    /* A bare port listens on loopback: metrics stay local unless asked. */
    if (strspn(arg, "0123456789") == strlen(arg)) {
        char local[32];
        snprintf(local, sizeof local, "127.0.0.1:%s", arg);
        if (addr_parse(local, &c->metrics) == 0)
            return 0;
    }
    if (addr_parse(arg, &c->metrics) < 0)
        return snprintf(err, errlen,
                        "'%s': expected PORT (on 127.0.0.1), IPv4:PORT, [IPv6]:PORT or off", arg),
               -1;
    return 0;
}

static void show_metrics(const struct config *c, const struct options_def *d, FILE *out)
{
    char a[ADDR_STRLEN];
    fprintf(out, "%s %s\n", d->name,
            c->metrics.sa.sa_family ? addr_str(&c->metrics.sa, a, sizeof a) : "off");
}

static const char *const level_names[] = {"error", "warn", "info", "debug"};

static int set_log_level(struct config *c, const struct options_def *d, const char *arg,
                         struct options_origin *o, char *err, size_t errlen)
{
    (void)d, (void)o;
    for (int i = 0; i < 4; i++)
        if (strcmp(arg, level_names[i]) == 0)
            return c->log.level = i, 0;
    return snprintf(err, errlen, "'%s': expected error, warn, info or debug", arg), -1;
}

static void show_log_level(const struct config *c, const struct options_def *d, FILE *out)
{
    fprintf(out, "%s %s\n", d->name, level_names[c->log.level]);
}

static const char *const sink_names[] = {
    [SINK_OFF] = "off", [SINK_STDERR] = "stderr", [SINK_SYSLOG] = "syslog", [SINK_FILE] = "file"};

/* error-log (min SINK_STDERR) or access-log (min SINK_OFF: may be off). */
static int is_access(const struct options_def *d)
{
    return d->min == SINK_OFF;
}

static int set_sink(struct config *c, const struct options_def *d, const char *arg,
                    struct options_origin *o, char *err, size_t errlen)
{
    char **path = is_access(d) ? &c->log.access_log_path : &c->log.error_log_path;
    int *sink = is_access(d) ? &c->log.access_sink : &c->log.error_sink;
    free(*path);
    *path = NULL;
    for (int s = (int)d->min; s < SINK_FILE; s++)
        if (strcmp(arg, sink_names[s]) == 0)
            return *sink = s, 0;
    if (arg[0] != '/' && arg[0] != '.')
        return snprintf(err, errlen,
                        "'%s': expected %sstderr, syslog or a file path (/... or ./...)", arg,
                        is_access(d) ? "off, " : ""),
               -1;
    *sink = SINK_FILE;
    return (*path = resolve_path(o, arg)) ? 0 : out_of_memory(err, errlen);
}

static void show_sink(const struct config *c, const struct options_def *d, FILE *out)
{
    int sink = is_access(d) ? c->log.access_sink : c->log.error_sink;
    const char *path = is_access(d) ? c->log.access_log_path : c->log.error_log_path;
    fprintf(out, "%s %s\n", d->name, sink == SINK_FILE ? path : sink_names[sink]);
}

static int set_access_format(struct config *c, const struct options_def *d, const char *arg,
                             struct options_origin *o, char *err, size_t errlen)
{
    (void)d, (void)o;
    if (strcmp(arg, "json") && strcmp(arg, "logfmt"))
        return snprintf(err, errlen, "'%s': expected logfmt or json", arg), -1;
    c->log.access_json = strcmp(arg, "json") == 0;
    return 0;
}

static void show_access_format(const struct config *c, const struct options_def *d, FILE *out)
{
    fprintf(out, "%s %s\n", d->name, c->log.access_json ? "json" : "logfmt");
}

/* plain, json, or auto: JSON exactly when the access log is (config.c
 * resolves it, so that stderr never mixes JSON and plain lines). */
static int set_error_format(struct config *c, const struct options_def *d, const char *arg,
                            struct options_origin *o, char *err, size_t errlen)
{
    (void)d, (void)o;
    if (strcmp(arg, "auto") && strcmp(arg, "plain") && strcmp(arg, "json"))
        return snprintf(err, errlen, "'%s': expected auto, plain or json", arg), -1;
    c->log.error_json = strcmp(arg, "auto") == 0 ? -1 : strcmp(arg, "json") == 0;
    return 0;
}

static void show_error_format(const struct config *c, const struct options_def *d, FILE *out)
{
    fprintf(out, "%s %s\n", d->name,
            c->log.error_json < 0 ? "auto"
            : c->log.error_json   ? "json"
                                  : "plain");
}

static const char *const sessions_names[] = {"loopback", "off", "any"}; /* enum metrics_sessions */

static int set_metrics_sessions(struct config *c, const struct options_def *d, const char *arg,
                                struct options_origin *o, char *err, size_t errlen)
{
    (void)d, (void)o;
    for (int i = 0; i < 3; i++)
        if (strcmp(arg, sessions_names[i]) == 0)
            return c->metrics_sessions = i, 0;
    return snprintf(err, errlen, "'%s': expected loopback, off or any", arg), -1;
}

static void show_metrics_sessions(const struct config *c, const struct options_def *d, FILE *out)
{
    fprintf(out, "%s %s\n", d->name, sessions_names[c->metrics_sessions]);
}

/* verbose and quiet change log-level and access-log, which -T prints. */
static int set_verbose(struct config *c, const struct options_def *d, const char *arg,
                       struct options_origin *o, char *err, size_t errlen)
{
    int on;
    (void)d, (void)o;
    if (parse_flag(arg, &on) < 0)
        return snprintf(err, errlen, "'%s': expected yes or no", arg), -1;
    if (on)
        c->log.level = LOG_LVL_DEBUG;
    return 0;
}

static int set_quiet(struct config *c, const struct options_def *d, const char *arg,
                     struct options_origin *o, char *err, size_t errlen)
{
    int on;
    (void)d, (void)o;
    if (parse_flag(arg, &on) < 0)
        return snprintf(err, errlen, "'%s': expected yes or no", arg), -1;
    if (on) {
        c->log.access_sink = SINK_OFF;
        c->log.level = LOG_LVL_WARN;
    }
    return 0;
}

/* ---------------- the table ---------------- */

#define OFF(f) offsetof(struct config, f)
/* One line per option of the common kinds. */
#define DURATION(name, help, def, f, min)                                                          \
    {                                                                                              \
        name, 0, OPTIONS_BOTH, "T", help, def, set_duration, show_duration, OFF(f), min,           \
            UINT32_MAX, 0                                                                          \
    }
#define COUNT(name, help, def, f, min, max)                                                        \
    {                                                                                              \
        name, 0, OPTIONS_BOTH, "N", help, def, set_count, show_count, OFF(f), min, max, 0          \
    }
#define FLAG(name, help, f)                                                                        \
    {                                                                                              \
        name, 0, OPTIONS_BOTH, NULL, help, "no", set_flag, show_flag, OFF(f), 0, 1, 0              \
    }
#define CLI_FIRST(name, letter, metavar, help, what)                                               \
    {                                                                                              \
        name, letter, OPTIONS_CLI, metavar, help, NULL, NULL, NULL, 0, 0, 0, what                  \
    }
#define FILE_ONLY(name, metavar, set)                                                              \
    {                                                                                              \
        name, 0, OPTIONS_FILE, metavar, NULL, NULL, set, NULL, 0, 0, 0, 0                          \
    }

const struct options_def options_table[] = {
    CLI_FIRST("config", 'c', "FILE", "config file (default " CONFIG_DEFAULT_PATH " if it exists)",
              OPTIONS_CONFIG),
    CLI_FIRST("check", 't', NULL, "check the configuration and the files it names, then exit",
              OPTIONS_CHECK),
    CLI_FIRST("dump-config", 'T', NULL,
              "check, then print the effective configuration as a config file", OPTIONS_DUMP),
    {"listen", 'l', OPTIONS_BOTH, "ADDR:PORT",
     "listen address, repeatable; IPv6 as [::1]:1080\n(default 127.0.0.1:1080)", NULL, set_listen,
     show_listen, 0, 0, 0, 0},
    {"workers", 'w', OPTIONS_BOTH, "N|auto", "worker threads, or auto: one per CPU", "auto",
     set_workers, show_workers, OFF(workers), 1, 1024, 0},
    {"auth", 0, OPTIONS_BOTH, "LIST",
     "methods in preference order: none, userpass, gssapi\n(default: none, or userpass with "
     "--users)",
     NULL, set_auth, show_auth, 0, 0, 0, 0},
    {"users", 0, OPTIONS_BOTH, "FILE", "users file: name:crypt-hash per line", NULL, set_users,
     show_string, OFF(users_path), 0, 0, 0},
    FLAG("keep-user-sessions",
         "a reload that removes a user or changes their\npassword leaves their open sessions up",
         keep_user_sessions),
    {"gssapi-keytab", 0, OPTIONS_BOTH, "FILE",
     "keytab for gssapi (default: KRB5_KTNAME,\nelse /etc/krb5.keytab)", NULL, set_keytab,
     show_string, OFF(gss_keytab), 0, 0, 0},
    {"gssapi-service", 0, OPTIONS_BOTH, "NAME", "gssapi service: keys of NAME/<any host>", "rcmd",
     set_gss_service, show_string, OFF(gss_service), 0, 0, 0},
    {"gssapi-protection", 0, OPTIONS_BOTH, "LIST", "gssapi protection levels offered",
     "none,integrity,confidentiality", set_gss_protection, show_gss_protection, 0, 0, 0, 0},
    {"gssapi-realms", 0, OPTIONS_BOTH, "LIST", "accept only principals of these realms", NULL,
     set_gss_realms, show_string, OFF(gss_realms), 0, 0, 0},
    FLAG("gssapi-strip-realm", "the session user is the principal without @REALM", gss_strip_realm),
    {"rule", 0, OPTIONS_CLI, "'RULE'", "access rule, repeatable (see socks5d.conf(5))", NULL,
     set_cli_rule, show_rules, 0, 0, 0, 0},
    FILE_ONLY("allow", NULL, set_file_rule),
    FILE_ONLY("deny", NULL, set_file_rule),
    FILE_ONLY("deny-private", NULL, set_file_rule),
    FILE_ONLY("include", "FILE", set_include),
    FILE_ONLY("timeout", "NAME T", set_timeout),
    DURATION("timeout-handshake", "greeting to request", "10s", timeout_handshake_ms, 1),
    DURATION("timeout-connect", "resolve and connect", "10s", timeout_connect_ms, 1),
    DURATION("timeout-idle", "relay without traffic", "5m", timeout_idle_ms, 1),
    DURATION("timeout-bind", "BIND waiting for its peer", "60s", timeout_bind_ms, 1),
    DURATION("timeout-udp", "UDP association without datagrams", "2m", timeout_udp_ms, 1),
    DURATION("shutdown-grace", "drain time on SIGTERM/SIGINT", "10s", shutdown_grace_ms, 1),
    DURATION("drain-delay",
             "on SIGTERM, /healthz fails this long before the\nlisteners close (0: at once)", "0",
             drain_delay_ms, 0),
    COUNT("max-sessions", "concurrent sessions (default: from the fd limit)", NULL, max_sessions, 1,
          UINT64_MAX),
    COUNT("max-sessions-per-ip", "sessions per client address (default: from max-sessions)", NULL,
          max_per_ip, 0, UINT32_MAX),
    COUNT("max-sessions-per-user", "sessions per user (0: no limit)", "0", max_per_user, 0,
          UINT32_MAX),
    COUNT("max-handshakes", "sessions allowed in the handshake at once", NULL, max_handshakes, 0,
          UINT32_MAX),
    COUNT("auth-fail-limit", "failed logins of one user from one address before\na cooldown", "10",
          auth_fail_limit, 0, UINT32_MAX),
    COUNT("auth-fail-address-limit",
          "...of all users from one address\n(default and 0: 10 x auth-fail-limit)", NULL,
          auth_fail_address_limit, 0, UINT32_MAX),
    DURATION("auth-fail-window", "...counted over this window", "1m", auth_fail_window_ms, 1),
    DURATION("auth-fail-cooldown", "...refused for this long", "5m", auth_fail_cooldown_ms, 1),
    {"auth-fail-exempt", 0, OPTIONS_BOTH, "CIDR[,CIDR...]", "logins from here are never throttled",
     NULL, set_auth_fail_exempt, show_string, OFF(auth_fail_exempt_text), 0, 0, 0},
    DURATION("auth-cache-ttl", "remember verified passwords (0: off)", "5m", auth_cache_ttl_ms, 0),
    {"ipv6-prefix", 0, OPTIONS_BOTH, "N",
     "IPv6 clients share per-IP limits and login\nthrottling per /N (128: per address)", "64",
     set_prefix, show_count, OFF(ipv6_prefix), 1, 128, 0},
    {"rate-limit", 0, OPTIONS_BOTH, "'USER RATE'",
     "bytes/s each way for all of USER's tunnels,\ne.g. 'alice 10M'", NULL, set_rate_limit,
     show_rate_limits, 0, 0, 0, 0},
    FLAG("no-bind", "refuse BIND (REP 2)", no_bind),
    FLAG("no-udp", "refuse UDP ASSOCIATE (REP 2)", no_udp),
    {"udp-ports", 0, OPTIONS_BOTH, "LO-HI", "UDP relay ports (default: ephemeral)", NULL,
     set_udp_ports, show_udp_ports, 0, 0, 0, 0},
    FLAG("udp-full-cone", "let any host answer through a UDP association", udp_full_cone),
    {"advertise", 0, OPTIONS_BOTH, "ADDR", "address to put in BIND and UDP replies", NULL,
     set_advertise, show_advertise, 0, 0, 0, 0},
    FLAG("proxy-protocol", "expect a PROXY v1/v2 header on every listener", proxy_protocol_all),
    {"proxy-protocol-from", 0, OPTIONS_BOTH, "CIDR[,CIDR...]", "trusted PROXY header senders", NULL,
     set_pp_from, show_string, OFF(pp_from_text), 0, 0, 0},
    FLAG("open-proxy", "allow a non-loopback listener without auth", open_proxy),
    {"route", 0, OPTIONS_BOTH, "'ROUTE'",
     "where traffic leaves, repeatable: '[CLAUSES] via\nHOPS|direct [| ...] [out ...]' "
     "(docs/routes.md;\ncredentials only in the config file)",
     NULL, set_route, show_routes, 0, 0, 0, 0},
    {"upstream-credentials", 0, OPTIONS_BOTH, "FILE",
     "passwords of route hops named USER@HOST:PORT\n(one 'HOP PASSWORD' a line; mode o-rwx)", NULL,
     set_upstream_credentials, show_string, OFF(upstream_credentials), 0, 0, 0},
    FLAG("socks4", "serve SOCKS4/4a on the same port (no login)", socks4),
    {"user", 0, OPTIONS_BOTH, "NAME", "drop privileges to NAME after binding", NULL, set_string,
     show_string, OFF(run_user), 0, 0, 0},
    FLAG("allow-root", "allow running as root beyond loopback", allow_root),
    FLAG("reuse-port",
         "share listen addresses another process holds\n(default: refuse to start, exit 2)",
         reuse_port),
    {"pid-file", 0, OPTIONS_BOTH, "FILE",
     "write the pid here; refuse to start while the\npid in it runs socks5d", NULL, set_path,
     show_string, OFF(pid_file), 0, 0, 0},
    {"metrics", 0, OPTIONS_BOTH, "[ADDR:]PORT",
     "Prometheus /metrics and /healthz endpoint\n(a bare port listens on 127.0.0.1)", "off",
     set_metrics, show_metrics, 0, 0, 0, 0},
    {"metrics-sessions", 0, OPTIONS_BOTH, "loopback|off|any",
     "who may list and close sessions at /sessions", "loopback", set_metrics_sessions,
     show_metrics_sessions, 0, 0, 0, 0},
    COUNT("metrics-users", "users with metrics series of their own (0: none)", "0", metrics_users,
          0, 100000),
    {"log-level", 0, OPTIONS_BOTH, "LEVEL", "error, warn, info or debug", "info", set_log_level,
     show_log_level, 0, 0, 0, 0},
    {"error-log", 0, OPTIONS_BOTH, "stderr|syslog|FILE", "where errors go", "stderr", set_sink,
     show_sink, 0, SINK_STDERR, 0, 0},
    {"access-log", 0, OPTIONS_BOTH, "off|stderr|syslog|FILE", "one line per session", "stderr",
     set_sink, show_sink, 0, SINK_OFF, 0, 0},
    {"access-log-format", 0, OPTIONS_BOTH, "logfmt|json", "access log lines", "logfmt",
     set_access_format, show_access_format, 0, 0, 0, 0},
    {"error-log-format", 0, OPTIONS_BOTH, "auto|plain|json",
     "error log lines (auto: json when the access log is)", "auto", set_error_format,
     show_error_format, 0, 0, 0, 0},
    {"verbose", 0, OPTIONS_BOTH, NULL, "debug logging (same as --log-level debug)", NULL,
     set_verbose, NULL, 0, 0, 0, 0},
    {"quiet", 'q', OPTIONS_BOTH, NULL, "no access log, warnings and errors only", NULL, set_quiet,
     NULL, 0, 0, 0, 0},
    CLI_FIRST("version", 'v', NULL, "print the version", OPTIONS_VERSION),
    CLI_FIRST("build-info", 'V', NULL, "print the version and the build options", OPTIONS_BUILD),
    CLI_FIRST("help", 'h', NULL, "this text", OPTIONS_HELP),
};
const size_t options_count = sizeof options_table / sizeof *options_table;
_Static_assert(sizeof options_table / sizeof *options_table <= OPTIONS_MAX, "raise OPTIONS_MAX");

/* ---------------- lookups ---------------- */

const struct options_def *options_directive(const char *name)
{
    for (size_t i = 0; i < options_count; i++)
        if ((options_table[i].where & OPTIONS_FILE) && strcasecmp(options_table[i].name, name) == 0)
            return &options_table[i];
    return NULL;
}

/* Edit distance (insertions, deletions, substitutions, case ignored),
 * stopping at 8: names are short. */
static size_t distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b), row[64];
    if (la >= 63 || lb >= 63)
        return 8;
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            size_t sub = diag + ((a[i - 1] | 0x20) != (b[j - 1] | 0x20));
            size_t best = up + 1 < row[j - 1] + 1 ? up + 1 : row[j - 1] + 1;
            row[j] = sub < best ? sub : best;
            diag = up;
        }
    }
    return row[lb] < 8 ? row[lb] : 8;
}

const char *options_did_you_mean(const char *name, enum options_where where)
{
    const char *best = NULL;
    size_t best_d = strlen(name) / 3 + 1; /* a third of the letters, at least one */
    if (best_d > 3)
        best_d = 3;
    for (size_t i = 0; i < options_count; i++) {
        if (!(options_table[i].where & where))
            continue;
        size_t d = distance(name, options_table[i].name);
        if (d <= best_d && (!best || d < best_d))
            best = options_table[i].name, best_d = d;
    }
    return best;
}

void options_getopt(struct option *lo, char *shorts)
{
    size_t k = 0;
    *shorts++ = ':'; /* a missing value is ':', not '?' */
    for (size_t i = 0; i < options_count; i++) {
        const struct options_def *d = &options_table[i];
        if (!(d->where & OPTIONS_CLI))
            continue;
        lo[k++] = (struct option){d->name, d->metavar ? required_argument : no_argument, NULL,
                                  256 + (int)i};
        if (d->letter) {
            *shorts++ = (char)d->letter;
            if (d->metavar)
                *shorts++ = ':';
        }
    }
    lo[k] = (struct option){NULL, 0, NULL, 0};
    *shorts = '\0';
}

const struct options_def *options_from_getopt(int v)
{
    if (v >= 256 && (size_t)(v - 256) < options_count)
        return &options_table[v - 256];
    for (size_t i = 0; v > 0 && i < options_count; i++)
        if (options_table[i].letter == v)
            return &options_table[i];
    return NULL;
}

int options_defaults(struct config *c)
{
    char err[256];
    struct options_origin o = {0};
    for (size_t i = 0; i < options_count; i++) {
        const struct options_def *d = &options_table[i];
        if (d->def && d->set(c, d, d->def, &o, err, sizeof err) < 0) {
            fprintf(errout, "socks5d: default of %s: %s\n", d->name, err);
            return -1;
        }
    }
    return 0;
}

/* ---------------- --help and -T ---------------- */

void options_usage(FILE *out)
{
    fprintf(out, "usage: socks5d [options]\n"
                 "       socks5d passwd [-f FILE] NAME   (set a password; see socks5d(8))\n"
                 "\n");
    for (size_t i = 0; i < options_count; i++) {
        const struct options_def *d = &options_table[i];
        char left[64];
        if (!(d->where & OPTIONS_CLI) || !d->help)
            continue;
        int n = snprintf(left, sizeof left, "  %c%c%c --%s%s%s", d->letter ? '-' : ' ',
                         d->letter ? d->letter : ' ', d->letter ? ',' : ' ', d->name,
                         d->metavar ? " " : "", d->metavar ? d->metavar : "");
        fprintf(out, "%-30s%s", left, n >= 30 ? "\n" : "");
        for (const char *h = d->help, *nl; h; h = nl ? nl + 1 : NULL) {
            nl = strchr(h, '\n');
            fprintf(out, "%*s%.*s", h == d->help && n < 30 ? 0 : 30, "",
                    nl ? (int)(nl - h) : (int)strlen(h), h);
            if (!nl && d->def && d->metavar)
                fprintf(out, " (default %s)", d->def);
            fputc('\n', out);
        }
    }
    fprintf(out, "\nTimes are seconds, or take a unit: 500ms, 10s, 5m, 1h. Rates take k, M, G.\n");
}

void config_dump(const struct config *c, FILE *out)
{
    fprintf(out, "# effective configuration%s%s\n", c->path ? " of " : "", c->path ? c->path : "");
    for (size_t i = 0; i < options_count; i++)
        if (options_table[i].show)
            options_table[i].show(c, &options_table[i], out);
}

/* ---------------- the config file ---------------- */

static int read_file(struct config *c, const char *path, int depth, struct options_origin *parent);

static int include_file(struct config *c, const char *path, struct options_origin *parent)
{
    return read_file(c, path, parent->depth + 1, parent);
}

/* "unknown directive 'x'", with the nearest name when it looks like a typo. */
static int unknown(const char *what, const char *name, enum options_where where, char *err,
                   size_t errlen)
{
    const char *near = options_did_you_mean(name, where);
    snprintf(err, errlen, "unknown %s '%s'%s%s%s", what, name, near ? "; did you mean '" : "",
             near ? near : "", near ? "'?" : "");
    return -1;
}

/* Directive names are case-insensitive, as rule keywords are. */
static int apply_directive(struct config *c, const char *name, const char *value,
                           struct options_origin *o, char *err, size_t errlen)
{
    const struct options_def *d = options_directive(name);
    if (!d) {
        o->column = o->name_column;
        unknown("directive", name, OPTIONS_FILE, err, errlen);
        snprintf(err + strlen(err), errlen - strlen(err), " (see socks5d.conf(5))");
        return -1;
    }
    if (d->metavar && !*value)
        return snprintf(err, errlen, "'%s' needs a value (%s %s)", d->name, d->name, d->metavar),
               -1;
    return d->set(c, d, value, o, err, errlen);
}

/* Splits "name value..." and applies it. Returns 0, -1 (error printed) or -2
 * (error in an included file, already printed). */
static int file_line(struct config *c, char *line, struct options_origin *o)
{
    char err[ERRLEN];
    char *p = line + strspn(line, " \t");
    char *hash = strchr(p, '#');
    if (hash && (hash == p || hash[-1] == ' ' || hash[-1] == '\t'))
        *hash = '\0';
    size_t n = strlen(p);
    while (n && strchr(" \t\r\n", p[n - 1]))
        p[--n] = '\0';
    if (!*p)
        return 0;
    char *value = p + strcspn(p, " \t");
    if (*value)
        *value++ = '\0';
    value += strspn(value, " \t");
    o->name_column = (int)(p - line) + 1;
    o->column = (int)((*value ? value : p) - line) + 1;
    int rc = apply_directive(c, p, value, o, err, sizeof err);
    if (rc == -1)
        fprintf(errout, "%s:%d:%d: %s\n", o->file, o->line, o->column, err);
    return rc;
}

/* Why path cannot be read as a config file, printed at the include that
 * names it or as the -c file. */
static void cannot_read(const char *path, const struct options_origin *parent, const char *why)
{
    if (parent)
        fprintf(errout, "%s:%d:%d: include %s: %s\n", parent->file, parent->line, parent->column,
                path, why);
    else
        fprintf(errout, "socks5d: config file %s: %s\n", path, why);
}

static FILE *open_config(const char *path, const struct options_origin *parent)
{
    struct stat st;
    FILE *f = fopen(path, "r");
    if (!f) {
        cannot_read(path, parent, strerror(errno));
        return NULL;
    }
    if (fstat(fileno(f), &st) == 0 && S_ISDIR(st.st_mode)) {
        cannot_read(path, parent, "is a directory (name a file in it)");
        fclose(f);
        return NULL;
    }
    return f;
}

static int read_file(struct config *c, const char *path, int depth, struct options_origin *parent)
{
    char line[4096];
    int errors = 0;
    struct options_origin o = {.file = path, .depth = depth, .include = include_file};
    if (depth > MAX_INCLUDE_DEPTH) {
        fprintf(errout, "%s:%d:%d: include nested more than %d deep (a loop?)\n", parent->file,
                parent->line, parent->column, MAX_INCLUDE_DEPTH);
        return -1;
    }
    FILE *f = open_config(path, parent);
    if (!f)
        return -1;
    while (fgets(line, sizeof line, f)) {
        o.line++;
        if (!strchr(line, '\n') && !feof(f)) {
            fprintf(errout, "%s:%d:1: line longer than %zu bytes\n", path, o.line, sizeof line - 2);
            errors++;
            break;
        }
        if (file_line(c, line, &o) < 0)
            errors++;
    }
    if (ferror(f)) {
        cannot_read(path, parent, strerror(errno));
        errors++;
    }
    fclose(f);
    return errors ? -1 : 0;
}

/* ---------------- command line ---------------- */

/* Prints why getopt refused the option it just returned as opt. */
static void cli_refused(int opt, char **argv)
{
    const struct options_def *d = optopt ? options_from_getopt(optopt) : NULL;
    char err[ERRLEN], name[64];
    if (d && opt == ':')
        fprintf(errout, "socks5d: --%s needs a value (%s)\n", d->name, d->metavar);
    else if (d)
        fprintf(errout, "socks5d: --%s takes no value\n", d->name);
    else if (optopt)
        fprintf(errout, "socks5d: unknown option '-%c'\n", optopt);
    else {
        const char *arg = argv[optind - 1];
        arg += strspn(arg, "-");
        snprintf(name, sizeof name, "%.*s", (int)strcspn(arg, "="), arg);
        unknown("option", name, OPTIONS_CLI, err, sizeof err);
        fprintf(errout, "socks5d: %s (or an ambiguous abbreviation)\n", err);
    }
}

/* First pass: only what decides how the rest is read (-c, -t, -T) or
 * ends the run at once (--help, --version, --build-info), so the file is
 * read before the rest of the command line is applied on top of it. */
static int first_pass(int argc, char **argv, const char **path, int *mode, int *exit_code)
{
    struct option lo[OPTIONS_MAX + 1];
    char shorts[3 * OPTIONS_MAX + 2];
    int opt;
    options_getopt(lo, shorts);
    opterr = 0;
    optind = 0; /* 0, not 1: glibc then forgets its place in an earlier argv */
    while ((opt = getopt_long(argc, argv, shorts, lo, NULL)) != -1) {
        const struct options_def *d = opt == '?' || opt == ':' ? NULL : options_from_getopt(opt);
        switch (d ? d->first : OPTIONS_APPLY) {
        case OPTIONS_CONFIG:
            *path = optarg;
            break;
        case OPTIONS_CHECK:
            *mode = *mode == CONFIG_DUMP ? CONFIG_DUMP : CONFIG_CHECK;
            break;
        case OPTIONS_DUMP:
            *mode = CONFIG_DUMP;
            break;
        case OPTIONS_HELP:
            options_usage(stdout);
            return *exit_code = 0, -1;
        case OPTIONS_VERSION:
            printf("socks5d %s\n", SOCKS5D_VERSION);
            return *exit_code = 0, -1;
        case OPTIONS_BUILD:
            buildinfo_print(stdout);
            return *exit_code = 0, -1;
        case OPTIONS_APPLY:
            break;
        }
    }
    return 0;
}

static int apply_cli(struct config *c, int argc, char **argv)
{
    struct option lo[OPTIONS_MAX + 1];
    char shorts[3 * OPTIONS_MAX + 2], err[ERRLEN];
    int opt, errors = 0;
    struct options_origin o = {0};
    options_getopt(lo, shorts);
    opterr = 0;
    optind = 0;
    while ((opt = getopt_long(argc, argv, shorts, lo, NULL)) != -1) {
        const struct options_def *d = options_from_getopt(opt);
        if (opt == '?' || opt == ':' || !d) {
            cli_refused(opt, argv);
            errors++;
        } else if (d->first == OPTIONS_APPLY &&
                   d->set(c, d, optarg ? optarg : "", &o, err, sizeof err) < 0) {
            fprintf(errout, "socks5d: --%s: %s\n", d->name, err);
            errors++;
        }
    }
    if (optind < argc) {
        fprintf(errout, "socks5d: unexpected argument '%s'\n", argv[optind]);
        errors++;
    }
    if (errors)
        fprintf(errout, "Try 'socks5d --help'.\n");
    return errors ? -1 : 0;
}

struct config *config_load(int argc, char **argv, FILE *err, int *exit_code, int *mode)
{
    const char *path = NULL;
    struct config *c;
    errout = err;
    *exit_code = 2;
    *mode = CONFIG_RUN;
    if (first_pass(argc, argv, &path, mode, exit_code) < 0)
        return NULL;
    if (!(c = calloc(1, sizeof *c))) {
        fprintf(errout, "socks5d: out of memory\n");
        return NULL;
    }
    atomic_init(&c->refs, 1);
    int bad = options_defaults(c) < 0;
    if (!path && access(CONFIG_DEFAULT_PATH, F_OK) == 0)
        path = CONFIG_DEFAULT_PATH;
    bad = bad || (path && (!(c->path = strdup(path)) || read_file(c, path, 0, NULL) < 0));
    bad |= apply_cli(c, argc, argv) < 0;
    errout = NULL; /* `err` may be closed after this returns */
    bad = bad || config_validate(c, err) < 0;
    if (bad) {
        config_unref(c);
        return NULL;
    }
    return c;
}
