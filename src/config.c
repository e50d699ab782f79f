/* Config file + command line -> validated configuration snapshot.
 *
 * Every command-line option is also a directive of the same name in the
 * file ("--timeout-idle 5m" is "timeout-idle 5m"), so one table and one
 * function apply both. The file is read first, then the command line on top:
 * a list option given on the command line (listen, rule) replaces the file's. */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <libgen.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "log.h"
#include "proto.h"
#include "rules.h"
#include "users.h"
#include "version.h"

#define MAX_INCLUDE_DEPTH 8
/* auth-fail-address-limit not given: ten users' worth of auth-fail-limit. */
#define ADDRESS_LIMIT_DERIVED UINT32_MAX
#define ADDRESS_LIMIT_FACTOR 10u

/* Where problems are reported: stderr at start, a buffer during reload.
 * Configuration is only ever loaded by the main thread. */
static FILE *errout;
#define ERRLEN 512

enum {
    O_LISTEN = 'l',
    O_WORKERS = 'w',
    O_VERBOSE = 'v',
    O_QUIET = 'q',
    O_CONFIG = 'c',
    O_CHECK = 't',
    O_HELP = 'h',
    O_AUTH = 256,
    O_USERS,
    O_T_HANDSHAKE,
    O_T_CONNECT,
    O_T_IDLE,
    O_T_BIND,
    O_T_UDP,
    O_GRACE,
    O_DRAIN_DELAY,
    O_MAX_SESSIONS,
    O_MAX_PER_IP,
    O_MAX_PER_USER,
    O_MAX_HANDSHAKES,
    O_AUTH_FAIL_LIMIT,
    O_AUTH_FAIL_WINDOW,
    O_AUTH_FAIL_COOLDOWN,
    O_AUTH_FAIL_ADDRESS_LIMIT,
    O_AUTH_FAIL_EXEMPT,
    O_AUTH_CACHE_TTL,
    O_IPV6_PREFIX,
    O_OPEN_PROXY,
    O_NO_BIND,
    O_NO_UDP,
    O_UDP_PORTS,
    O_UDP_FULL_CONE,
    O_ADVERTISE,
    O_RULE,
    O_PROXY_PROTOCOL,
    O_PP_FROM,
    O_LOG_LEVEL,
    O_ERROR_LOG,
    O_ACCESS_LOG,
    O_ACCESS_LOG_FORMAT,
    O_METRICS,
    O_USER,
    O_ALLOW_ROOT,
    O_RATE_LIMIT,
    O_REUSE_PORT,
    O_PID_FILE,
    O_KEEP_USER_SESSIONS,
    O_VERSION,
};

static const struct option long_opts[] = {
    {"listen", required_argument, NULL, O_LISTEN},
    {"workers", required_argument, NULL, O_WORKERS},
    {"config", required_argument, NULL, O_CONFIG},
    {"check", no_argument, NULL, O_CHECK},
    {"auth", required_argument, NULL, O_AUTH},
    {"users", required_argument, NULL, O_USERS},
    {"timeout-handshake", required_argument, NULL, O_T_HANDSHAKE},
    {"timeout-connect", required_argument, NULL, O_T_CONNECT},
    {"timeout-idle", required_argument, NULL, O_T_IDLE},
    {"timeout-bind", required_argument, NULL, O_T_BIND},
    {"timeout-udp", required_argument, NULL, O_T_UDP},
    {"shutdown-grace", required_argument, NULL, O_GRACE},
    {"drain-delay", required_argument, NULL, O_DRAIN_DELAY},
    {"max-sessions", required_argument, NULL, O_MAX_SESSIONS},
    {"max-sessions-per-ip", required_argument, NULL, O_MAX_PER_IP},
    {"max-sessions-per-user", required_argument, NULL, O_MAX_PER_USER},
    {"max-handshakes", required_argument, NULL, O_MAX_HANDSHAKES},
    {"auth-fail-limit", required_argument, NULL, O_AUTH_FAIL_LIMIT},
    {"auth-fail-window", required_argument, NULL, O_AUTH_FAIL_WINDOW},
    {"auth-fail-cooldown", required_argument, NULL, O_AUTH_FAIL_COOLDOWN},
    {"auth-fail-address-limit", required_argument, NULL, O_AUTH_FAIL_ADDRESS_LIMIT},
    {"auth-fail-exempt", required_argument, NULL, O_AUTH_FAIL_EXEMPT},
    {"auth-cache-ttl", required_argument, NULL, O_AUTH_CACHE_TTL},
    {"ipv6-prefix", required_argument, NULL, O_IPV6_PREFIX},
    {"open-proxy", no_argument, NULL, O_OPEN_PROXY},
    {"no-bind", no_argument, NULL, O_NO_BIND},
    {"no-udp", no_argument, NULL, O_NO_UDP},
    {"udp-ports", required_argument, NULL, O_UDP_PORTS},
    {"udp-full-cone", no_argument, NULL, O_UDP_FULL_CONE},
    {"advertise", required_argument, NULL, O_ADVERTISE},
    {"rule", required_argument, NULL, O_RULE},
    {"proxy-protocol", no_argument, NULL, O_PROXY_PROTOCOL},
    {"proxy-protocol-from", required_argument, NULL, O_PP_FROM},
    {"log-level", required_argument, NULL, O_LOG_LEVEL},
    {"error-log", required_argument, NULL, O_ERROR_LOG},
    {"access-log", required_argument, NULL, O_ACCESS_LOG},
    {"access-log-format", required_argument, NULL, O_ACCESS_LOG_FORMAT},
    {"metrics", required_argument, NULL, O_METRICS},
    {"user", required_argument, NULL, O_USER},
    {"allow-root", no_argument, NULL, O_ALLOW_ROOT},
    {"rate-limit", required_argument, NULL, O_RATE_LIMIT},
    {"reuse-port", no_argument, NULL, O_REUSE_PORT},
    {"pid-file", required_argument, NULL, O_PID_FILE},
    {"keep-user-sessions", no_argument, NULL, O_KEEP_USER_SESSIONS},
    {"verbose", no_argument, NULL, O_VERBOSE},
    {"quiet", no_argument, NULL, O_QUIET},
    {"version", no_argument, NULL, O_VERSION},
    {"help", no_argument, NULL, O_HELP},
    {NULL, 0, NULL, 0},
};

void config_usage(FILE *out)
{
    fprintf(
        out,
        "usage: socks5d [options]\n"
        "       socks5d passwd NAME   (reads a password on stdin, prints a users-file line)\n"
        "\n"
        "  -c, --config FILE           config file (default " CONFIG_DEFAULT_PATH " if it exists)\n"
        "  -t, --check                 check the configuration and the files it names, then exit\n"
        "  -l, --listen ADDR:PORT      listen address, repeatable; IPv6 as [::1]:1080\n"
        "                              (default 127.0.0.1:1080)\n"
        "  -w, --workers N|auto        worker threads (default: one per CPU)\n"
        "      --auth LIST             methods in preference order: none, userpass\n"
        "                              (default: none, or userpass with --users)\n"
        "      --users FILE            users file: name:crypt-hash per line\n"
        "      --keep-user-sessions    a reload that removes a user or changes their\n"
        "                              password leaves their open sessions up\n"
        "      --rule 'RULE'           access rule, repeatable (see socks5d.conf(5))\n"
        "      --timeout-handshake T   greeting to request (default 10s)\n"
        "      --timeout-connect T     resolve and connect (default 10s)\n"
        "      --timeout-idle T        relay without traffic (default 5m)\n"
        "      --timeout-bind T        BIND waiting for its peer (default 60s)\n"
        "      --timeout-udp T         UDP association without datagrams (default 2m)\n"
        "      --shutdown-grace T      drain time on SIGTERM/SIGINT (default 10s)\n"
        "      --drain-delay T         on SIGTERM, /healthz fails this long before the\n"
        "                              listeners close (default 0: at once)\n"
        "      --max-sessions N        concurrent sessions (default: from the fd limit)\n"
        "      --max-sessions-per-ip N, --max-sessions-per-user N\n"
        "      --max-handshakes N      sessions allowed in the handshake at once\n"
        "      --auth-fail-limit K     failed logins of one user from one address before\n"
        "                              a cooldown (default 10)\n"
        "      --auth-fail-address-limit K  ...of all users from one address\n"
        "                              (default: 10 x auth-fail-limit)\n"
        "      --auth-fail-window T    ...counted over this window (default 1m)\n"
        "      --auth-fail-cooldown T  ...refused for this long (default 5m)\n"
        "      --auth-fail-exempt CIDR[,CIDR...]  never throttled\n"
        "      --auth-cache-ttl T      remember verified passwords (default 5m, 0: off)\n"
        "      --ipv6-prefix N         IPv6 clients share per-IP limits and login\n"
        "                              throttling per /N (default 64, 128: per address)\n"
        "      --rate-limit 'USER RATE' bytes/s each way for all of USER's tunnels,\n"
        "                              e.g. 'alice 10M'\n"
        "      --no-bind, --no-udp     refuse BIND / UDP ASSOCIATE (REP 2)\n"
        "      --udp-ports LO-HI       UDP relay ports (default: ephemeral)\n"
        "      --udp-full-cone         let any host answer through a UDP association\n"
        "      --advertise ADDR        address to put in BIND and UDP replies\n"
        "      --proxy-protocol        expect a PROXY v1/v2 header on every listener\n"
        "      --proxy-protocol-from CIDR[,CIDR...]  trusted PROXY header senders\n"
        "      --open-proxy            allow a non-loopback listener without auth\n"
        "      --user NAME             drop privileges to NAME after binding\n"
        "      --allow-root            allow running as root beyond loopback\n"
        "      --reuse-port            share listen addresses another process holds\n"
        "                              (default: refuse to start, exit 2)\n"
        "      --pid-file FILE         write the pid here; refuse to start while the\n"
        "                              pid in it runs socks5d\n"
        "      --metrics [ADDR:]PORT   Prometheus /metrics and /healthz endpoint\n"
        "                              (a bare port listens on 127.0.0.1)\n"
        "      --log-level LEVEL       error, warn, info (default), debug\n"
        "      --error-log stderr|syslog|FILE\n"
        "      --access-log off|stderr|syslog|FILE\n"
        "      --access-log-format logfmt|json\n"
        "  -v, --verbose               debug logging\n"
        "  -q, --quiet                 no access log, warnings and errors only\n"
        "      --version               print the version\n"
        "  -h, --help                  this text\n"
        "\n"
        "Times are seconds, or take a unit: 500ms, 10s, 5m, 1h. Rates take k, M, G.\n");
}

/* ---------------- value parsers ---------------- */

/* "10", "10s", "500ms", "5m", "1h" -> milliseconds. Returns 0 or -1. */
static int parse_duration(const char *s, uint32_t *ms)
{
    char *end;
    unsigned long long v, mult;
    errno = 0;
    v = strtoull(s, &end, 10);
    if (end == s || errno || *s == '-')
        return -1;
    if (*end == '\0' || strcmp(end, "s") == 0)
        mult = 1000;
    else if (strcmp(end, "ms") == 0)
        mult = 1;
    else if (strcmp(end, "m") == 0)
        mult = 60000;
    else if (strcmp(end, "h") == 0)
        mult = 3600000;
    else
        return -1;
    if (v > UINT32_MAX / mult)
        return -1;
    *ms = (uint32_t)(v * mult);
    return 0;
}

/* "64k", "10M", "1G" (powers of 1024) or plain bytes. */
static int parse_size(const char *s, uint64_t *out)
{
    char *end;
    unsigned long long v, mult = 1;
    errno = 0;
    v = strtoull(s, &end, 10);
    if (end == s || errno || *s == '-')
        return -1;
    if (*end && end[1] == '\0') {
        switch (*end) {
        case 'k':
        case 'K':
            mult = 1ULL << 10;
            break;
        case 'm':
        case 'M':
            mult = 1ULL << 20;
            break;
        case 'g':
        case 'G':
            mult = 1ULL << 30;
            break;
        default:
            return -1;
        }
    } else if (*end) {
        return -1;
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
        else
            return -1;
        if (c->nmethods == sizeof c->methods || memchr(c->methods, m, c->nmethods))
            return -1;
        c->methods[c->nmethods++] = m;
    }
    return c->nmethods ? 0 : -1;
}

static int parse_port_range(const char *s, uint16_t *lo, uint16_t *hi)
{
    unsigned a, b;
    char tail;
    if (sscanf(s, "%u-%u%c", &a, &b, &tail) != 2 || a == 0 || a > b || b > 65535)
        return -1;
    *lo = (uint16_t)a;
    *hi = (uint16_t)b;
    return 0;
}

/* An address without a port: "1.2.3.4", "::1" or "[::1]". */
static int parse_host(const char *s, union addr_any *out)
{
    char buf[INET6_ADDRSTRLEN + 16];
    int wrap = s[0] != '[' && strchr(s, ':');
    snprintf(buf, sizeof buf, "%s%s%s:1", wrap ? "[" : "", s, wrap ? "]" : "");
    return addr_parse(buf, out);
}

static int parse_sink(const char *s, int allow_off, int *sink, char **path)
{
    free(*path);
    *path = NULL;
    if (allow_off && strcmp(s, "off") == 0)
        *sink = SINK_OFF;
    else if (strcmp(s, "stderr") == 0)
        *sink = SINK_STDERR;
    else if (strcmp(s, "syslog") == 0)
        *sink = SINK_SYSLOG;
    else if (s[0] == '/' || s[0] == '.')
        *sink = SINK_FILE, *path = strdup(s);
    else
        return -1;
    return (*sink == SINK_FILE && !*path) ? -1 : 0;
}

/* ---------------- applying one option ---------------- */

/* Where an option came from, for messages and for rules' file:line. */
struct origin {
    const char *file; /* NULL: the command line */
    int line;
    int column;                /* of the value: where most errors are */
    int name_column;           /* of the directive's name */
    int cli_listen, cli_rules; /* the command line replaced these lists */
};

static int set_flag(int *flag, const char *arg)
{
    if (!arg || !*arg || !strcmp(arg, "yes") || !strcmp(arg, "on") || !strcmp(arg, "true"))
        *flag = 1;
    else if (!strcmp(arg, "no") || !strcmp(arg, "off") || !strcmp(arg, "false"))
        *flag = 0;
    else
        return -1;
    return 0;
}

static int parse_host(const char *s, union addr_any *out);

/* "ADDR:PORT [proxy-protocol] [advertise ADDR]" */
static int add_listen(struct config *c, const char *arg, const struct origin *o, char *err,
                      size_t errlen)
{
    char buf[512];
    struct listen_spec *l = &c->listen[c->nlisten];
    if (c->nlisten == CONFIG_MAX_LISTEN) {
        snprintf(err, errlen, "at most %d listen addresses", CONFIG_MAX_LISTEN);
        return -1;
    }
    memset(l, 0, sizeof *l);
    snprintf(buf, sizeof buf, "%s", arg);
    char *save, *tok = strtok_r(buf, " \t", &save);
    if (!tok || addr_parse(tok, &l->addr) < 0) {
        snprintf(err, errlen, "'%s': expected IPv4:PORT or [IPv6]:PORT", arg);
        return -1;
    }
    while ((tok = strtok_r(NULL, " \t", &save))) {
        if (strcmp(tok, "proxy-protocol") == 0) {
            l->proxy_protocol = 1;
        } else if (strcmp(tok, "advertise") == 0) {
            tok = strtok_r(NULL, " \t", &save);
            if (!tok || parse_host(tok, &l->advertise) < 0) {
                snprintf(err, errlen, "advertise needs an IPv4 or IPv6 address");
                return -1;
            }
        } else {
            snprintf(err, errlen, "'%s': listener options are proxy-protocol and advertise ADDR",
                     tok);
            return -1;
        }
    }
    free(c->listen_at[c->nlisten]);
    c->listen_at[c->nlisten] = NULL;
    if (o->file &&
        asprintf(&c->listen_at[c->nlisten], "%s:%d:%d", o->file, o->line, o->column) < 0) {
        c->listen_at[c->nlisten] = NULL;
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    c->nlisten++;
    return 0;
}

static int add_rate_limit(struct config *c, const char *arg, char *err, size_t errlen)
{
    char user[256], rate[64];
    uint64_t bps;
    /* "user NAME RATE" in the file reads naturally; "NAME RATE" is accepted too. */
    if (strncmp(arg, "user ", 5) == 0)
        arg += 5;
    if (sscanf(arg, "%255s %63s", user, rate) != 2 || parse_size(rate, &bps) < 0 || bps == 0) {
        snprintf(err, errlen, "'%s': expected 'user NAME RATE', e.g. 'user alice 10M'", arg);
        return -1;
    }
    struct rate_limit *v = realloc(c->rate_limits, (c->nrate_limits + 1) * sizeof *v);
    if (!v || !(v[c->nrate_limits].user = strdup(user))) {
        if (v)
            c->rate_limits = v;
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    c->rate_limits = v;
    v[c->nrate_limits++].bytes_per_sec = bps;
    return 0;
}

static int add_rule(struct config *c, const char *arg, const struct origin *o, char *err,
                    size_t errlen)
{
    if (!c->rules && !(c->rules = rules_new())) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    return rules_add(c->rules, arg, o->file, o->line, err, errlen);
}

/* "WORD" + " " + "ARG" in a fresh string (rule lines are as long as the
 * config line allows), or NULL. */
static char *join(const char *word, const char *arg)
{
    char *out;
    return asprintf(&out, "%s%s%s", word, *arg ? " " : "", arg) < 0 ? NULL : out;
}

/* A list of networks ("CIDR[,CIDR...]") as the rule "allow from LIST". */
static int set_networks(struct rules **list, const char *arg, char *err, size_t errlen)
{
    char *rule = join("allow from", arg);
    int rc;
    rules_free(*list);
    if (!rule || !(*list = rules_new())) {
        free(rule);
        return snprintf(err, errlen, "out of memory"), -1;
    }
    rc = rules_add(*list, rule, NULL, 0, err, errlen);
    free(rule);
    return rc;
}

static uint32_t *duration_field(struct config *c, int opt)
{
    switch (opt) {
    case O_T_HANDSHAKE:
        return &c->timeout_handshake_ms;
    case O_T_CONNECT:
        return &c->timeout_connect_ms;
    case O_T_IDLE:
        return &c->timeout_idle_ms;
    case O_T_BIND:
        return &c->timeout_bind_ms;
    case O_T_UDP:
        return &c->timeout_udp_ms;
    case O_GRACE:
        return &c->shutdown_grace_ms;
    case O_DRAIN_DELAY:
        return &c->drain_delay_ms;
    case O_AUTH_CACHE_TTL:
        return &c->auth_cache_ttl_ms;
    case O_AUTH_FAIL_WINDOW:
        return &c->auth_fail_window_ms;
    case O_AUTH_FAIL_COOLDOWN:
        return &c->auth_fail_cooldown_ms;
    default:
        return NULL;
    }
}

static uint32_t *count_field(struct config *c, int opt)
{
    switch (opt) {
    case O_MAX_PER_IP:
        return &c->max_per_ip;
    case O_MAX_PER_USER:
        return &c->max_per_user;
    case O_MAX_HANDSHAKES:
        return &c->max_handshakes;
    case O_AUTH_FAIL_LIMIT:
        return &c->auth_fail_limit;
    case O_AUTH_FAIL_ADDRESS_LIMIT:
        return &c->auth_fail_address_limit;
    default:
        return NULL;
    }
}

static int set_string(char **dst, const char *arg)
{
    free(*dst);
    *dst = strdup(arg);
    return *dst ? 0 : -1;
}

/* Applies one option. Returns 0, or -1 with the reason (and a hint) in err. */
static int apply(struct config *c, int opt, const char *arg, struct origin *o, char *err,
                 size_t errlen)
{
    unsigned long long v;
    uint32_t *ms = duration_field(c, opt), *count = count_field(c, opt);
    if (ms) {
        if (parse_duration(arg, ms) < 0)
            return snprintf(err, errlen, "'%s': expected a duration such as 30, 30s, 500ms, 5m",
                            arg),
                   -1;
        if (*ms == 0 && opt != O_AUTH_CACHE_TTL && opt != O_DRAIN_DELAY)
            return snprintf(err, errlen, "must be greater than zero"), -1;
        return 0;
    }
    if (count) {
        if (parse_uint(arg, UINT32_MAX, &v) < 0)
            return snprintf(err, errlen, "'%s': expected a number (0: no limit)", arg), -1;
        *count = (uint32_t)v;
        return 0;
    }
    switch (opt) {
    case O_LISTEN:
        if (!o->file && !o->cli_listen) {
            c->nlisten = 0; /* the command line replaces the file's listeners */
            o->cli_listen = 1;
        }
        return add_listen(c, arg, o, err, errlen);
    case O_WORKERS:
        if (strcmp(arg, "auto") == 0)
            c->workers = 0;
        else if (parse_uint(arg, 1024, &v) < 0 || v == 0)
            return snprintf(err, errlen, "'%s': expected 1..1024 or auto", arg), -1;
        else
            c->workers = (int)v;
        return 0;
    case O_AUTH:
        if (parse_methods(c, arg) < 0)
            return snprintf(err, errlen,
                            "'%s': expected none, userpass, or both in preference order", arg),
                   -1;
        return 0;
    case O_USERS:
        return set_string(&c->users_path, arg);
    case O_IPV6_PREFIX:
        if (parse_uint(arg, 128, &v) < 0 || v == 0)
            return snprintf(err, errlen, "'%s': expected a prefix length 1..128", arg), -1;
        c->ipv6_prefix = (uint32_t)v;
        return 0;
    case O_MAX_SESSIONS:
        if (parse_uint(arg, UINT64_MAX, &v) < 0 || v == 0)
            return snprintf(err, errlen, "'%s': expected a positive number", arg), -1;
        c->max_sessions = v;
        return 0;
    case O_OPEN_PROXY:
        return set_flag(&c->open_proxy, arg);
    case O_NO_BIND:
        return set_flag(&c->no_bind, arg);
    case O_NO_UDP:
        return set_flag(&c->no_udp, arg);
    case O_UDP_FULL_CONE:
        return set_flag(&c->udp_full_cone, arg);
    case O_ALLOW_ROOT:
        return set_flag(&c->allow_root, arg);
    case O_REUSE_PORT:
        return set_flag(&c->reuse_port, arg);
    case O_PID_FILE:
        return set_string(&c->pid_file, arg);
    case O_KEEP_USER_SESSIONS:
        return set_flag(&c->keep_user_sessions, arg);
    case O_PROXY_PROTOCOL:
        return set_flag(&c->proxy_protocol_all, arg);
    case O_UDP_PORTS:
        if (parse_port_range(arg, &c->udp_port_lo, &c->udp_port_hi) < 0)
            return snprintf(err, errlen, "'%s': expected LO-HI with 1 <= LO <= HI <= 65535", arg),
                   -1;
        return 0;
    case O_ADVERTISE:
        if (parse_host(arg, &c->advertise) < 0)
            return snprintf(err, errlen, "'%s': expected an IPv4 or IPv6 address", arg), -1;
        return 0;
    case O_METRICS:
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
                            "'%s': expected PORT (on 127.0.0.1), IPv4:PORT, [IPv6]:PORT or off",
                            arg),
                   -1;
        return 0;
    case O_RULE:
        if (!o->file && !o->cli_rules) {
            rules_free(c->rules); /* the command line replaces the file's rules */
            c->rules = NULL;
            o->cli_rules = 1;
        }
        if (!o->file)
            o->line++; /* logged as "(command line):N" for the Nth --rule */
        return add_rule(c, arg, o, err, errlen);
    case O_PP_FROM:
        return set_networks(&c->pp_from, arg, err, errlen);
    case O_AUTH_FAIL_EXEMPT:
        return set_networks(&c->auth_fail_exempt, arg, err, errlen);
    case O_RATE_LIMIT:
        return add_rate_limit(c, arg, err, errlen);
    case O_USER:
        return set_string(&c->run_user, arg);
    case O_LOG_LEVEL: {
        static const char *const names[] = {"error", "warn", "info", "debug"};
        for (int i = 0; i < 4; i++)
            if (strcmp(arg, names[i]) == 0)
                return c->log.level = i, 0;
        return snprintf(err, errlen, "'%s': expected error, warn, info or debug", arg), -1;
    }
    case O_ERROR_LOG:
        if (parse_sink(arg, 0, &c->log.error_sink, &c->log.error_log_path) < 0)
            return snprintf(err, errlen, "'%s': expected stderr, syslog or an absolute file path",
                            arg),
                   -1;
        return 0;
    case O_ACCESS_LOG:
        if (parse_sink(arg, 1, &c->log.access_sink, &c->log.access_log_path) < 0)
            return snprintf(err, errlen,
                            "'%s': expected off, stderr, syslog or an absolute file path", arg),
                   -1;
        return 0;
    case O_ACCESS_LOG_FORMAT:
        if (strcmp(arg, "json") && strcmp(arg, "logfmt"))
            return snprintf(err, errlen, "'%s': expected logfmt or json", arg), -1;
        c->log.access_json = strcmp(arg, "json") == 0;
        return 0;
    case O_VERBOSE:
        c->log.level = LOG_LVL_DEBUG;
        return 0;
    case O_QUIET:
        c->log.access_sink = SINK_OFF;
        c->log.level = LOG_LVL_WARN;
        return 0;
    default:
        return snprintf(err, errlen, "not allowed here"), -1;
    }
}

/* ---------------- the config file ---------------- */

static const struct option *find_option(const char *name)
{
    for (const struct option *o = long_opts; o->name; o++)
        if (strcmp(o->name, name) == 0)
            return o;
    return NULL;
}

static int read_file(struct config *c, const char *path, int depth, struct origin *parent);

/* rules_add says "column N: why" of the text "NAME VALUE" it was given; the
 * file's reader wants the column in the line itself. */
static void locate_rule_error(struct origin *o, size_t name_len, char *err)
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

/* "timeout idle 5m" is "timeout-idle 5m"; "allow ..." and "deny ..." are rules. */
static int apply_directive(struct config *c, char *name, char *value, struct origin *o, char *err,
                           size_t errlen, int depth)
{
    char joined[64];
    if (strcmp(name, "include") == 0) {
        char dir[PATH_MAX], path[PATH_MAX * 2];
        snprintf(dir, sizeof dir, "%s", o->file);
        if (value[0] == '/')
            snprintf(path, sizeof path, "%s", value);
        else
            snprintf(path, sizeof path, "%s/%s", dirname(dir), value);
        return read_file(c, path, depth + 1, o) < 0 ? -2 : 0;
    }
    if (!strcmp(name, "allow") || !strcmp(name, "deny") || !strcmp(name, "deny-private")) {
        char *rule = join(name, value);
        int rc =
            rule ? add_rule(c, rule, o, err, errlen) : (snprintf(err, errlen, "out of memory"), -1);
        free(rule);
        if (rc < 0)
            locate_rule_error(o, strlen(name), err);
        return rc;
    }
    if (strcmp(name, "timeout") == 0) {
        char *sp = value + strcspn(value, " \t");
        if (*sp)
            *sp++ = '\0';
        snprintf(joined, sizeof joined, "timeout-%s", value);
        name = joined;
        char *next = sp + strspn(sp, " \t");
        o->column += (int)(next - value);
        value = next;
    }
    const struct option *opt = find_option(name);
    if (!opt || opt->val == O_CONFIG || opt->val == O_CHECK || opt->val == O_HELP ||
        opt->val == O_VERSION || opt->val == O_RULE) {
        o->column = o->name_column;
        snprintf(err, errlen, "unknown directive '%s' (see socks5d.conf(5))", name);
        return -1;
    }
    if (opt->has_arg == required_argument && !*value) {
        snprintf(err, errlen, "'%s' needs a value", name);
        return -1;
    }
    return apply(c, opt->val, value, o, err, errlen);
}

/* Splits "name value..." and applies it. Returns 0, -1 (error printed) or -2
 * (error in an included file, already printed). */
static int file_line(struct config *c, char *line, struct origin *o, int depth)
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
    int rc = apply_directive(c, p, value, o, err, sizeof err, depth);
    if (rc == -1)
        fprintf(errout, "%s:%d:%d: %s\n", o->file, o->line, o->column, err);
    return rc;
}

static int read_file(struct config *c, const char *path, int depth, struct origin *parent)
{
    char line[4096];
    int errors = 0;
    struct origin o = {.file = path};
    if (depth > MAX_INCLUDE_DEPTH) {
        fprintf(errout, "%s:%d:%d: include nested more than %d deep (a loop?)\n", parent->file,
                parent->line, parent->column, MAX_INCLUDE_DEPTH);
        return -1;
    }
    FILE *f = fopen(path, "r");
    if (!f) {
        if (parent)
            fprintf(errout, "%s:%d:%d: include %s: %s\n", parent->file, parent->line,
                    parent->column, path, strerror(errno));
        else
            fprintf(errout, "socks5d: config file %s: %s\n", path, strerror(errno));
        return -1;
    }
    while (fgets(line, sizeof line, f)) {
        o.line++;
        if (!strchr(line, '\n') && !feof(f)) {
            fprintf(errout, "%s:%d:1: line longer than %zu bytes\n", path, o.line, sizeof line - 2);
            errors++;
            break;
        }
        if (file_line(c, line, &o, depth) < 0)
            errors++;
    }
    fclose(f);
    return errors ? -1 : 0;
}

/* ---------------- validation ---------------- */

static int is_open(const struct config *c)
{
    return memchr(c->methods, SOCKS5_METHOD_NONE, c->nmethods) != NULL;
}

static void set_defaults(struct config *c)
{
    atomic_init(&c->refs, 1);
    c->timeout_handshake_ms = 10000;
    c->timeout_connect_ms = 10000;
    c->timeout_idle_ms = 300000;
    c->timeout_bind_ms = 60000;
    c->timeout_udp_ms = 120000;
    c->shutdown_grace_ms = 10000;
    c->auth_cache_ttl_ms = 300000;
    c->auth_fail_limit = 10;
    c->auth_fail_address_limit = ADDRESS_LIMIT_DERIVED;
    c->auth_fail_window_ms = 60000;
    c->auth_fail_cooldown_ms = 300000;
    c->ipv6_prefix = 64;
    c->log.level = LOG_LVL_INFO;
    c->log.error_sink = SINK_STDERR;
    c->log.access_sink = SINK_STDERR;
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

/* Cross-option checks, and loading the files the options name. */
static int validate(struct config *c)
{
    char err[ERRLEN];
    if (c->nlisten == 0) {
        addr_parse("127.0.0.1:1080", &c->listen[0].addr);
        c->nlisten = 1;
    }
    for (size_t i = 0; i < c->nlisten; i++)
        c->listen[i].proxy_protocol |= (uint8_t)c->proxy_protocol_all;
    for (size_t i = 0; i < c->nlisten; i++)
        for (size_t j = 0; j < i; j++)
            if (config_same_listen(&c->listen[i], &c->listen[j]))
                BAD("listen %s given twice", addr_str(&c->listen[i].addr.sa, err, sizeof err));
    if (check_proxy_trust(c) < 0)
        return -1;
    if (c->nmethods == 0)
        parse_methods(c, c->users_path ? "userpass" : "none");
    if (memchr(c->methods, SOCKS5_METHOD_USERPASS, c->nmethods) && !c->users_path)
        BAD("auth userpass needs a users file (--users FILE; make lines with `socks5d passwd "
            "NAME`)");
    if (c->users_path && !(c->users = users_load(c->users_path, err, sizeof err)))
        BAD("users file %s", err);
    if (c->auth_fail_address_limit == ADDRESS_LIMIT_DERIVED)
        c->auth_fail_address_limit = c->auth_fail_limit > UINT32_MAX / ADDRESS_LIMIT_FACTOR
                                         ? UINT32_MAX - 1
                                         : c->auth_fail_limit * ADDRESS_LIMIT_FACTOR;
    if (c->max_per_user && !c->users_path)
        BAD("max-sessions-per-user needs authentication (a users file)");
    for (size_t i = 0; i < c->nrate_limits; i++)
        if (!users_find(c->users, c->rate_limits[i].user))
            BAD("rate-limit: no user '%s' in the users file", c->rate_limits[i].user);
    return config_check_open_proxy(c, c->listen, c->nlisten, errout);
}

/* ---------------- command line ---------------- */

/* First pass: only -c, -t, -h, --version, so the file is read before the
 * rest of the command line is applied on top of it. */
static int first_pass(int argc, char **argv, const char **path, int *check, int *exit_code)
{
    int opt, idx;
    opterr = 0;
    optind = 0; /* 0, not 1: glibc then forgets its place in an earlier argv */
    while ((opt = getopt_long(argc, argv, "l:w:c:tvqh", long_opts, &idx)) != -1) {
        if (opt == O_CONFIG)
            *path = optarg;
        else if (opt == O_CHECK)
            *check = 1;
        else if (opt == O_HELP || opt == O_VERSION) {
            if (opt == O_HELP)
                config_usage(stdout);
            else
                printf("socks5d %s\n", SOCKS5D_VERSION);
            *exit_code = 0;
            return -1;
        }
    }
    return 0;
}

static int apply_cli(struct config *c, int argc, char **argv)
{
    int opt, idx, errors = 0;
    char err[ERRLEN];
    struct origin o = {0};
    opterr = 1;
    optind = 0;
    while ((opt = getopt_long(argc, argv, "l:w:c:tvqh", long_opts, &idx)) != -1) {
        if (opt == O_CONFIG || opt == O_CHECK)
            continue;
        if (opt == '?') {
            errors++;
            continue;
        }
        const char *name = opt >= 256 ? long_opts[idx].name : "";
        if (opt < 256)
            for (const struct option *lo = long_opts; lo->name; lo++)
                if (lo->val == opt)
                    name = lo->name;
        if (apply(c, opt, optarg ? optarg : "", &o, err, sizeof err) < 0) {
            fprintf(errout, "socks5d: --%s: %s\n", name, err);
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

struct config *config_load(int argc, char **argv, FILE *err, int *exit_code, int *check_only)
{
    const char *path = NULL;
    struct config *c;
    errout = err;
    *exit_code = 2;
    *check_only = 0;
    if (first_pass(argc, argv, &path, check_only, exit_code) < 0)
        return NULL;
    if (!(c = calloc(1, sizeof *c))) {
        fprintf(errout, "socks5d: out of memory\n");
        return NULL;
    }
    set_defaults(c);
    if (!path && access(CONFIG_DEFAULT_PATH, F_OK) == 0)
        path = CONFIG_DEFAULT_PATH;
    int bad = path && (!(c->path = strdup(path)) || read_file(c, path, 0, NULL) < 0);
    bad |= apply_cli(c, argc, argv) < 0;
    bad = bad || validate(c) < 0;
    errout = NULL; /* `err` may be closed after this returns */
    if (bad) {
        config_unref(c);
        return NULL;
    }
    return c;
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
    rules_free(c->rules);
    rules_free(c->pp_from);
    rules_free(c->auth_fail_exempt);
    for (size_t i = 0; i < CONFIG_MAX_LISTEN; i++)
        free(c->listen_at[i]);
    for (size_t i = 0; i < c->nrate_limits; i++)
        free(c->rate_limits[i].user);
    free(c->rate_limits);
    free(c->users_path);
    free(c->log.error_log_path);
    free(c->log.access_log_path);
    free(c->run_user);
    free(c->pid_file);
    free(c->path);
    free(c);
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
