/* Configuration snapshot: built from the config file and the command line
 * (the command line wins), validated as a whole, then immutable. Workers and
 * sessions hold references; a reload publishes a new snapshot and the old one
 * is freed when its last session ends. */
#ifndef SOCKS5D_CONFIG_H
#define SOCKS5D_CONFIG_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "addr.h"
#include "log.h"

struct users;
struct rules;
struct gss_server;
struct routes;

#define CONFIG_MAX_LISTEN 64
#define CONFIG_DEFAULT_PATH "/etc/socks5d/socks5d.conf"

struct listen_spec {
    union addr_any addr;
    uint8_t proxy_protocol;   /* a PROXY v1/v2 header precedes the greeting */
    union addr_any advertise; /* family 0: the global advertise, if any */
};

struct rate_limit {
    char *user;
    uint64_t bytes_per_sec;
    char *at; /* "file:line:column"; NULL: command line */
};

struct config {
    atomic_int refs;
    char *path; /* the config file read, or NULL */
    struct listen_spec listen[CONFIG_MAX_LISTEN];
    char *listen_at[CONFIG_MAX_LISTEN]; /* "file:line:column" of each; NULL: command line */
    size_t nlisten;
    int workers;        /* 0: one per online CPU */
    uint8_t methods[3]; /* server preference order */
    size_t nmethods;
    char *users_path;
    char *users_at;      /* "file:line:column" naming it; NULL: command line */
    struct users *users; /* loaded from users_path, NULL if none */
    struct rules *rules; /* access rules, NULL if none */
    char **rule_text;    /* the rules as written, for -T */
    size_t nrules;
    struct rules *pp_from; /* trusted PROXY protocol sources; required by PROXY listeners */
    char *pp_from_text;
    struct routes *routes;         /* upstream routes (route.h), NULL if none */
    char *upstream_credentials;    /* passwords of route hops (upcreds.h); NULL: none */
    char *upstream_credentials_at; /* "file:line:column" naming it; NULL: command line */
    int socks4;                    /* serve SOCKS4/4a clients on the same port */
    uint32_t timeout_handshake_ms, timeout_connect_ms, timeout_idle_ms;
    uint32_t timeout_bind_ms, timeout_udp_ms, shutdown_grace_ms, drain_delay_ms;
    uint32_t auth_cache_ttl_ms;
    uint64_t max_sessions;                             /* 0: derived from the fd limit */
    uint32_t max_per_ip, max_per_user, max_handshakes; /* 0: unlimited (ip: derived) */
    uint32_t auth_fail_limit;                          /* failures per (address, user) */
    uint32_t auth_fail_address_limit;                  /* failures per address, all users */
    uint32_t auth_fail_window_ms, auth_fail_cooldown_ms;
    struct rules *auth_fail_exempt; /* never throttled; NULL: none */
    char *auth_fail_exempt_text;
    uint32_t ipv6_prefix; /* IPv6 clients are keyed by this many leading bits */
    struct rate_limit *rate_limits;
    size_t nrate_limits;
    struct log_settings log;
    int open_proxy;
    int proxy_protocol_all; /* --proxy-protocol: on every listener */
    int no_bind, no_udp, udp_full_cone;
    uint16_t udp_port_lo, udp_port_hi; /* 0,0: ephemeral */
    union addr_any advertise;          /* family 0: not set; port unused */
    union addr_any metrics;            /* family 0: no metrics endpoint */
    int metrics_sessions;              /* enum metrics_sessions: who may list and close */
    uint32_t metrics_users;            /* users with series of their own (0: none) */
    char *run_user;                    /* drop privileges to this user */
    /* GSS-API (RFC 1961): acceptor credentials when gssapi is a method,
     * read from gss_keytab (NULL: KRB5_KTNAME or the system default) for
     * gss_service; protection levels allowed (1 << level);
     * realms accepted (comma-separated, NULL: any); strip the realm. */
    struct gss_server *gss;
    char *gss_keytab, *gss_service, *gss_realms;
    uint8_t gss_levels;
    int gss_strip_realm;
    int allow_root;
    int reuse_port;         /* join a listen address another process holds */
    char *pid_file;         /* NULL: none */
    int keep_user_sessions; /* a reload does not end sessions of removed/changed users */
};

/* What the command line asks for besides the configuration itself. */
enum config_mode { CONFIG_RUN = 0, CONFIG_CHECK = 1 /* -t */, CONFIG_DUMP = 2 /* -T */ };

/* Builds a snapshot from the command line and the config file it names
 * (-c FILE, or CONFIG_DEFAULT_PATH when that exists); src/options.c, which
 * reads both through the option table, then calls config_validate. Returns NULL after
 * printing every problem to `err` as "file:line:column: message"; *exit_code
 * is then 0 for --help, --version and --build-info and 2 for any error.
 * *mode is set to an enum config_mode. */
struct config *config_load(int argc, char **argv, FILE *err, int *exit_code, int *mode);
struct config *config_ref(struct config *c);
void config_unref(struct config *c);
/* Cross-option checks, and loading the files the options name (users).
 * Returns 0, or -1 after printing every problem to err. */
int config_validate(struct config *c, FILE *err);
/* Drops every access rule (the command line's replace the file's). */
void config_free_rules(struct config *c);
/* Prints c in the config file's syntax (socks5d -T; src/options.c). */
void config_dump(const struct config *c, FILE *out);
/* Protected mode for listeners ls[0..n): 0, or -1 after printing to err
 * why a listener beyond loopback without authentication is refused. */
int config_check_open_proxy(const struct config *c, const struct listen_spec *ls, size_t n,
                            FILE *err);
/* Fills the limits left at 0 (automatic) from the fd limit. */
void config_size_limits(struct config *c, uint64_t nofile);
/* Bytes per second for this user, 0 when unlimited. */
uint64_t config_rate_limit(const struct config *c, const char *user);
/* The address to put in BIND/UDP replies for a control connection that
 * arrived on local address `local`: its listener's advertise, else the
 * global one, else NULL (use the socket's own address). */
const union addr_any *config_advertise(const struct config *c, const struct sockaddr *local);
/* Replaces the IP of bnd (a BIND or UDP relay address, port kept) with
 * the advertise address for a control connection that arrived on `local`,
 * when one is configured. */
void config_advertise_into(const struct config *c, const struct sockaddr *local,
                           union addr_any *bnd);
/* 1 when both list the same address (ports included). */
int config_same_listen(const struct listen_spec *a, const struct listen_spec *b);

#endif
