/* Configuration snapshot: built from the command line, validated, then
 * immutable. Workers and sessions hold references; a reload publishes a new
 * snapshot and the old one is freed when its last session ends. */
#ifndef SOCKS5D_CONFIG_H
#define SOCKS5D_CONFIG_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdint.h>

#include "addr.h"

struct users;

#define CONFIG_MAX_LISTEN 64

struct config {
    atomic_int refs;
    union addr_any listen[CONFIG_MAX_LISTEN];
    size_t nlisten;
    int workers;          /* 0: one per online CPU */
    uint8_t methods[2];   /* server preference order */
    size_t nmethods;
    char *users_path;
    struct users *users;  /* loaded from users_path, NULL if none */
    uint32_t timeout_handshake_ms, timeout_connect_ms, timeout_idle_ms;
    uint32_t timeout_bind_ms, timeout_udp_ms, shutdown_grace_ms;
    uint32_t auth_cache_ttl_ms;
    uint64_t max_sessions; /* 0: derived from the fd limit */
    int log_level;         /* enum log_level */
    int access_log;
    int open_proxy;
    int no_bind, no_udp, udp_full_cone;
    uint16_t udp_port_lo, udp_port_hi; /* 0,0: ephemeral */
    union addr_any advertise;          /* family 0: not set; port unused */
};

/* Parses argv into a new snapshot (refs = 1). Returns NULL after printing
 * the reason to stderr; *exit_code is then 0 for --help/--version and 2 for
 * a usage or validation error. */
struct config *config_from_args(int argc, char **argv, int *exit_code);
struct config *config_ref(struct config *c);
void config_unref(struct config *c);
void config_usage(FILE *out);

#endif
