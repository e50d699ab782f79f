/* Command line -> validated configuration snapshot. */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "auth.h"
#include "log.h"
#include "proto.h"
#include "version.h"

enum {
    OPT_AUTH = 256,
    OPT_USERS,
    OPT_T_HANDSHAKE,
    OPT_T_CONNECT,
    OPT_T_IDLE,
    OPT_T_BIND,
    OPT_T_UDP,
    OPT_GRACE,
    OPT_MAX_SESSIONS,
    OPT_OPEN_PROXY,
    OPT_NO_BIND,
    OPT_NO_UDP,
    OPT_UDP_PORTS,
    OPT_UDP_FULL_CONE,
    OPT_ADVERTISE,
    OPT_AUTH_CACHE_TTL,
    OPT_VERSION,
};

static const struct option long_opts[] = {
    {"listen", required_argument, NULL, 'l'},
    {"workers", required_argument, NULL, 'w'},
    {"auth", required_argument, NULL, OPT_AUTH},
    {"users", required_argument, NULL, OPT_USERS},
    {"timeout-handshake", required_argument, NULL, OPT_T_HANDSHAKE},
    {"timeout-connect", required_argument, NULL, OPT_T_CONNECT},
    {"timeout-idle", required_argument, NULL, OPT_T_IDLE},
    {"timeout-bind", required_argument, NULL, OPT_T_BIND},
    {"timeout-udp", required_argument, NULL, OPT_T_UDP},
    {"shutdown-grace", required_argument, NULL, OPT_GRACE},
    {"max-sessions", required_argument, NULL, OPT_MAX_SESSIONS},
    {"auth-cache-ttl", required_argument, NULL, OPT_AUTH_CACHE_TTL},
    {"open-proxy", no_argument, NULL, OPT_OPEN_PROXY},
    {"no-bind", no_argument, NULL, OPT_NO_BIND},
    {"no-udp", no_argument, NULL, OPT_NO_UDP},
    {"udp-ports", required_argument, NULL, OPT_UDP_PORTS},
    {"udp-full-cone", no_argument, NULL, OPT_UDP_FULL_CONE},
    {"advertise", required_argument, NULL, OPT_ADVERTISE},
    {"verbose", no_argument, NULL, 'v'},
    {"quiet", no_argument, NULL, 'q'},
    {"version", no_argument, NULL, OPT_VERSION},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

void config_usage(FILE *out)
{
    fprintf(out,
            "usage: socks5d [options]\n"
            "       socks5d passwd NAME   (reads a password on stdin, prints a users-file line)\n"
            "\n"
            "  -l, --listen ADDR:PORT      listen address, repeatable; IPv6 as [::1]:1080\n"
            "                              (default 127.0.0.1:1080)\n"
            "  -w, --workers N|auto        worker threads (default: one per CPU)\n"
            "      --auth LIST             methods in preference order: none, userpass\n"
            "                              (default: none, or userpass with --users)\n"
            "      --users FILE            users file: name:crypt-hash per line\n"
            "      --timeout-handshake T   greeting to request (default 10s)\n"
            "      --timeout-connect T     resolve and connect (default 10s)\n"
            "      --timeout-idle T        relay without traffic (default 5m)\n"
            "      --timeout-bind T        BIND waiting for its peer (default 60s)\n"
            "      --timeout-udp T         UDP association without datagrams (default 2m)\n"
            "      --shutdown-grace T      drain time on SIGTERM/SIGINT (default 10s)\n"
            "      --max-sessions N        concurrent sessions (default: from the fd limit)\n"
            "      --auth-cache-ttl T      remember verified passwords (default 5m, 0: off)\n"
            "      --no-bind, --no-udp     refuse BIND / UDP ASSOCIATE (REP 2)\n"
            "      --udp-ports LO-HI       UDP relay ports (default: ephemeral)\n"
            "      --udp-full-cone         let any host answer through a UDP association\n"
            "      --advertise ADDR        address to put in BIND and UDP replies\n"
            "      --open-proxy            allow a non-loopback listener without auth\n"
            "  -v, --verbose               debug logging\n"
            "  -q, --quiet                 no access log, warnings and errors only\n"
            "      --version               print the version\n"
            "  -h, --help                  this text\n"
            "\n"
            "Times are seconds, or take a unit: 500ms, 10s, 5m, 1h.\n");
}

/* "10", "10s", "500ms", "5m", "1h" -> milliseconds. Returns 0 or -1. */
static int parse_duration(const char *s, uint32_t *ms)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    unsigned long long mult;
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
    for (char *save, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
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

/* An address without a port for --advertise: "1.2.3.4" or "::1" / "[::1]". */
static int parse_host(const char *s, union addr_any *out)
{
    char buf[INET6_ADDRSTRLEN + 16];
    int bracket = s[0] == '[';
    snprintf(buf, sizeof buf, "%s%s%s:1", bracket || !strchr(s, ':') ? "" : "[", s,
             bracket || !strchr(s, ':') ? "" : "]");
    return addr_parse(buf, out);
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
    c->log_level = LOG_LVL_INFO;
    c->access_log = 1;
}

#define BAD(...)                                                                                  \
    do {                                                                                          \
        fprintf(stderr, "socks5d: " __VA_ARGS__);                                                 \
        fputc('\n', stderr);                                                                      \
        return -1;                                                                                \
    } while (0)

/* Applies one option. Returns 0, or -1 after printing why. */
static int apply(struct config *c, int opt, const char *arg, const char *name)
{
    unsigned long long v;
    uint32_t *ms = NULL;
    switch (opt) {
    case 'l':
        if (c->nlisten == CONFIG_MAX_LISTEN)
            BAD("--listen: at most %d addresses", CONFIG_MAX_LISTEN);
        if (addr_parse(arg, &c->listen[c->nlisten]) < 0)
            BAD("--listen %s: expected IPv4:PORT or [IPv6]:PORT", arg);
        c->nlisten++;
        return 0;
    case 'w':
        if (strcmp(arg, "auto") == 0)
            c->workers = 0;
        else if (parse_uint(arg, 1024, &v) < 0 || v == 0)
            BAD("--workers %s: expected 1..1024 or auto", arg);
        else
            c->workers = (int)v;
        return 0;
    case OPT_AUTH:
        if (parse_methods(c, arg) < 0)
            BAD("--auth %s: expected none, userpass, or both in preference order", arg);
        return 0;
    case OPT_USERS:
        free(c->users_path);
        c->users_path = strdup(arg);
        return c->users_path ? 0 : -1;
    case OPT_T_HANDSHAKE: ms = &c->timeout_handshake_ms; break;
    case OPT_T_CONNECT: ms = &c->timeout_connect_ms; break;
    case OPT_T_IDLE: ms = &c->timeout_idle_ms; break;
    case OPT_T_BIND: ms = &c->timeout_bind_ms; break;
    case OPT_T_UDP: ms = &c->timeout_udp_ms; break;
    case OPT_GRACE: ms = &c->shutdown_grace_ms; break;
    case OPT_AUTH_CACHE_TTL: ms = &c->auth_cache_ttl_ms; break;
    case OPT_MAX_SESSIONS:
        if (parse_uint(arg, UINT64_MAX, &v) < 0 || v == 0)
            BAD("--max-sessions %s: expected a positive number", arg);
        c->max_sessions = v;
        return 0;
    case OPT_OPEN_PROXY: c->open_proxy = 1; return 0;
    case OPT_NO_BIND: c->no_bind = 1; return 0;
    case OPT_NO_UDP: c->no_udp = 1; return 0;
    case OPT_UDP_FULL_CONE: c->udp_full_cone = 1; return 0;
    case OPT_UDP_PORTS:
        if (parse_port_range(arg, &c->udp_port_lo, &c->udp_port_hi) < 0)
            BAD("--udp-ports %s: expected LO-HI with 1 <= LO <= HI <= 65535", arg);
        return 0;
    case OPT_ADVERTISE:
        if (parse_host(arg, &c->advertise) < 0)
            BAD("--advertise %s: expected an IPv4 or IPv6 address", arg);
        return 0;
    case 'v': c->log_level = LOG_LVL_DEBUG; return 0;
    case 'q':
        c->access_log = 0;
        c->log_level = LOG_LVL_WARN;
        return 0;
    default:
        return -1;
    }
    /* A duration option. */
    if (parse_duration(arg, ms) < 0)
        BAD("--%s %s: expected a duration such as 30, 30s, 500ms, 5m", name, arg);
    if (*ms == 0 && ms != &c->auth_cache_ttl_ms)
        BAD("--%s: must be greater than zero", name);
    return 0;
}

static int is_open(const struct config *c)
{
    return memchr(c->methods, SOCKS5_METHOD_NONE, c->nmethods) != NULL;
}

/* Cross-option checks, and loading the files the options name. */
static int validate(struct config *c)
{
    char err[512];
    if (c->nlisten == 0) {
        addr_parse("127.0.0.1:1080", &c->listen[0]);
        c->nlisten = 1;
    }
    for (size_t i = 0; i < c->nlisten; i++)
        for (size_t j = 0; j < i; j++)
            if (memcmp(&c->listen[i], &c->listen[j], sizeof c->listen[i]) == 0)
                BAD("--listen %s given twice", addr_str(&c->listen[i].sa, err, sizeof err));
    if (c->nmethods == 0)
        parse_methods(c, c->users_path ? "userpass" : "none");
    if (memchr(c->methods, SOCKS5_METHOD_USERPASS, c->nmethods) && !c->users_path)
        BAD("--auth userpass needs --users FILE (make lines with `socks5d passwd NAME`)");
    if (c->users_path && !(c->users = users_load(c->users_path, err, sizeof err)))
        BAD("users file: %s", err);
    for (size_t i = 0; i < c->nlisten && is_open(c) && !c->open_proxy; i++)
        if (!addr_is_loopback(&c->listen[i].sa))
            BAD("refusing to run an open proxy on %s: listening beyond loopback without "
                "authentication lets anyone use this host. Use --auth userpass --users FILE, "
                "or --open-proxy if that is really what you want",
                addr_str(&c->listen[i].sa, err, sizeof err));
    return 0;
}

struct config *config_from_args(int argc, char **argv, int *exit_code)
{
    struct config *c = calloc(1, sizeof *c);
    int opt, idx;
    *exit_code = 2;
    if (!c) {
        fprintf(stderr, "socks5d: out of memory\n");
        return NULL;
    }
    set_defaults(c);
    optind = 1;
    while ((opt = getopt_long(argc, argv, "l:w:vqh", long_opts, &idx)) != -1) {
        const char *name = opt >= 256 ? long_opts[idx].name : "";
        if (opt == 'h' || opt == OPT_VERSION) {
            if (opt == 'h')
                config_usage(stdout);
            else
                printf("socks5d %s\n", SOCKS5D_VERSION);
            *exit_code = 0;
            config_unref(c);
            return NULL;
        }
        if (opt == '?' || apply(c, opt, optarg, name) < 0) {
            if (opt == '?')
                fprintf(stderr, "Try 'socks5d --help'.\n");
            config_unref(c);
            return NULL;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "socks5d: unexpected argument '%s'. Try 'socks5d --help'.\n", argv[optind]);
        config_unref(c);
        return NULL;
    }
    if (validate(c) < 0) {
        config_unref(c);
        return NULL;
    }
    return c;
}

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
    free(c->users_path);
    free(c);
}
