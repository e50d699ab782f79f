/* Unit tests for src/config.c: the config file and the command line,
 * validation, error locations, and the snapshot's lookup helpers.
 *
 * Each test writes its files into a directory of its own under a temporary
 * root and calls config_load with "-c FILE" (so CONFIG_DEFAULT_PATH is never
 * read); problems are collected from an open_memstream FILE. Nothing binds:
 * config_load only parses and validates, so ports need not be free. */
#include "unit_support.h"

#include <crypt.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <sys/stat.h>

#include "addr.h"
#include "config.h"
#include "options.h"
#include "log.h"
#include "proto.h"
#include "rules.h"
#include "users.h"
#include "version.h"

static char root[PATH_MAX];
static char users_file[PATH_MAX]; /* alice and bob, yescrypt hashes */

/* ---------------------------------------------------------------------------
 * Helpers */

/* snprintf that fails the test instead of truncating. */
static void fmt(char *buf, size_t len, const char *f, ...) __attribute__((format(printf, 3, 4)));
static void fmt(char *buf, size_t len, const char *f, ...)
{
    va_list ap;
    va_start(ap, f);
    int n = vsnprintf(buf, len, f, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= len)
        fail_msg("test buffer too small for '%s'", f);
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (!f)
        fail_msg("cannot write %s: %s", path, strerror(errno));
    fputs(text, f);
    assert_int_equal(fclose(f), 0);
}

/* A directory of the test's own: root/name. */
static const char *test_dir(const char *name, char *buf, size_t len)
{
    fmt(buf, len, "%s/%s", root, name);
    if (mkdir(buf, 0755) < 0 && errno != EEXIST)
        fail_msg("mkdir %s: %s", buf, strerror(errno));
    return buf;
}

/* dir/name into buf; returns buf. */
static const char *in_dir(const char *dir, const char *name, char *buf, size_t len)
{
    fmt(buf, len, "%s/%s", dir, name);
    return buf;
}

struct loaded {
    struct config *c;
    char *err; /* everything written to the error FILE, NUL-terminated */
    int code, check;
};

/* config_load with argv = {"socks5d", args..., NULL}. Option strings are
 * the callers' literals, which outlive the call as a process's argv does
 * (see short_options_parse_after_a_call_whose_argv_changed for why that
 * matters). */
static struct loaded load_args(const char *const *args)
{
    char *argv[64];
    int argc = 0;
    struct loaded r = {.code = -1, .check = -1};
    size_t errlen = 0;
    argv[argc++] = (char *)"socks5d";
    for (size_t i = 0; args[i]; i++) {
        assert_true(argc < 63);
        argv[argc++] = (char *)args[i];
    }
    argv[argc] = NULL;
    FILE *err = open_memstream(&r.err, &errlen);
    assert_non_null(err);
    r.c = config_load(argc, argv, err, &r.code, &r.check);
    assert_int_equal(fclose(err), 0);
    return r;
}
#define LOAD(...) load_args((const char *const[]){__VA_ARGS__, NULL})

static void loaded_free(struct loaded *r)
{
    config_unref(r->c);
    free(r->err);
    r->c = NULL;
    r->err = NULL;
}

/* Writes `text` as dir/socks5d.conf and loads it with -c plus extra args. */
static struct loaded load_text(const char *dir, const char *text, char *path, size_t len)
{
    in_dir(dir, "socks5d.conf", path, len);
    write_file(path, text);
    return LOAD("-c", path);
}

static void expect_ok(const struct loaded *r)
{
    if (!r->c)
        fail_msg("config_load failed (code %d):\n%s", r->code, r->err);
    assert_int_equal(r->err[0], '\0');
}

static void expect_error(const struct loaded *r)
{
    if (r->c)
        fail_msg("config_load accepted a bad configuration");
    assert_int_equal(r->code, 2);
    assert_true(strlen(r->err) > 10);
}

/* Asserts a line of r->err starts with "file:line:column:" and contains
 * `what`. */
static void expect_located(const struct loaded *r, const char *file, int line, int column,
                           const char *what)
{
    char prefix[PATH_MAX + 64];
    fmt(prefix, sizeof prefix, "%s:%d:%d:", file, line, column);
    expect_error(r);
    for (const char *p = r->err; *p;) {
        const char *nl = strchr(p, '\n');
        size_t n = nl ? (size_t)(nl - p) : strlen(p);
        if (strncmp(p, prefix, strlen(prefix)) == 0) {
            char *l = strndup(p, n);
            int ok = strstr(l, what) != NULL;
            free(l);
            if (ok)
                return;
        }
        p += n + (nl != NULL);
    }
    fail_msg("expected a message starting '%s' mentioning '%s'; got:\n%s", prefix, what, r->err);
}

static void expect_message(const struct loaded *r, const char *what)
{
    expect_error(r);
    if (!strstr(r->err, what))
        fail_msg("expected a message mentioning '%s'; got:\n%s", what, r->err);
}

static size_t count_lines(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

static union addr_any parse(const char *text)
{
    union addr_any a;
    if (addr_parse(text, &a) < 0)
        fail_msg("bad address in test: %s", text);
    return a;
}

static void assert_addr(const union addr_any *a, const char *want)
{
    char buf[ADDR_STRLEN];
    assert_non_null(a);
    assert_string_equal(addr_str(&a->sa, buf, sizeof buf), want);
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static char *make_hash(const char *pass)
{
    struct crypt_data *cd = calloc(1, sizeof *cd);
    assert_non_null(cd);
    const char *salt = crypt_gensalt_rn("$y$", 0, NULL, 0, cd->setting, sizeof cd->setting);
    assert_non_null(salt);
    const char *h = crypt_r(pass, salt, cd);
    assert_true(h && h[0] == '$');
    char *out = strdup(h);
    free(cd);
    return out;
}

static int group_setup(void **state)
{
    (void)state;
    fmt(root, sizeof root, "/tmp/socks5d-test-config-XXXXXX");
    if (!mkdtemp(root))
        return -1;
    char *a = make_hash("alice-pass"), *b = make_hash("bob-pass");
    char text[1024];
    fmt(text, sizeof text, "# test users\nalice:%s\nbob:%s\n", a, b);
    free(a);
    free(b);
    fmt(users_file, sizeof users_file, "%s/users", root);
    write_file(users_file, text);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    nftw(root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    return 0;
}

/* ---------------------------------------------------------------------------
 * A valid file */

TEST(valid_file_with_every_directive_kind_fills_the_struct)
{
    char dir[PATH_MAX], path[PATH_MAX], extra[PATH_MAX], text[8192];
    char errlog[PATH_MAX], acclog[PATH_MAX];
    test_dir("every", dir, sizeof dir);
    in_dir(dir, "err.log", errlog, sizeof errlog);
    in_dir(dir, "access.log", acclog, sizeof acclog);
    write_file(in_dir(dir, "extra.conf", extra, sizeof extra), "# included\n"
                                                               "timeout udp 3m\n"
                                                               "allow from 10.0.0.0/8\n");
    fmt(text, sizeof text,
        "# every kind of directive\n"
        "\n"
        "listen 127.0.0.1:19001\n"
        "listen [::1]:19002 proxy-protocol advertise 192.0.2.10\n"
        "   listen 0.0.0.0:19003 advertise 2001:db8::5   # indented, trailing comment\n"
        "workers 3\n"
        "auth userpass,none\n"
        "users %s\n"
        "timeout idle 5m\n"
        "timeout-connect 500ms\n"
        "timeout handshake 10s\n"
        "timeout-bind 1h\n"
        "shutdown-grace 2s\n"
        "drain-delay 0\n"
        "auth-cache-ttl 0\n"
        "max-sessions 5000\n"
        "max-sessions-per-ip 7\n"
        "max-sessions-per-user 4\n"
        "max-handshakes 100\n"
        "auth-fail-limit 5\n"
        "auth-fail-window 2m\n"
        "auth-fail-cooldown 10m\n"
        "rate-limit user alice 10M\n"
        "rate-limit bob 64k\n"
        "no-bind\n"
        "no-udp yes\n"
        "udp-ports 40000-40100\n"
        "udp-full-cone on\n"
        "advertise 198.51.100.1\n"
        "proxy-protocol-from 10.0.0.0/8,192.168.0.0/16\n"
        "log-level debug\n"
        "error-log %s\n"
        "access-log %s\n"
        "access-log-format json\n"
        "metrics 127.0.0.1:9100\n"
        "user nobody\n"
        "allow-root no\n"
        "open-proxy off\n"
        "deny-private\n"
        "deny from 203.0.113.66\n"
        "allow from 192.0.2.0/24 user alice\n"
        "include extra.conf\n",
        users_file, errlog, acclog);
    struct loaded r = load_text(dir, text, path, sizeof path);
    expect_ok(&r);
    const struct config *c = r.c;
    assert_int_equal(r.code, 2); /* untouched meaning: not a --help exit */
    assert_int_equal(r.check, 0);
    assert_string_equal(c->path, path);

    assert_int_equal(c->nlisten, 3);
    assert_addr(&c->listen[0].addr, "127.0.0.1:19001");
    assert_int_equal(c->listen[0].proxy_protocol, 0);
    assert_int_equal(c->listen[0].advertise.sa.sa_family, 0);
    assert_addr(&c->listen[1].addr, "[::1]:19002");
    assert_int_equal(c->listen[1].proxy_protocol, 1);
    assert_int_equal(c->listen[1].advertise.sa.sa_family, AF_INET);
    assert_int_equal(c->listen[1].advertise.in4.sin_addr.s_addr, inet_addr("192.0.2.10"));
    assert_addr(&c->listen[2].addr, "0.0.0.0:19003");
    assert_int_equal(c->listen[2].proxy_protocol, 0);
    assert_int_equal(c->listen[2].advertise.sa.sa_family, AF_INET6);

    assert_int_equal(c->workers, 3);
    assert_int_equal(c->nmethods, 2);
    assert_int_equal(c->methods[0], SOCKS5_METHOD_USERPASS);
    assert_int_equal(c->methods[1], SOCKS5_METHOD_NONE);
    assert_string_equal(c->users_path, users_file);
    assert_non_null(c->users);
    assert_int_equal(users_count(c->users), 2);
    assert_non_null(users_find(c->users, "alice"));

    assert_int_equal(c->timeout_idle_ms, 300000);
    assert_int_equal(c->timeout_connect_ms, 500);
    assert_int_equal(c->timeout_handshake_ms, 10000);
    assert_int_equal(c->timeout_bind_ms, 3600000);
    assert_int_equal(c->timeout_udp_ms, 180000); /* from the included file */
    assert_int_equal(c->shutdown_grace_ms, 2000);
    assert_int_equal(c->drain_delay_ms, 0);
    assert_int_equal(c->auth_cache_ttl_ms, 0);

    assert_int_equal(c->max_sessions, 5000);
    assert_int_equal(c->max_per_ip, 7);
    assert_int_equal(c->max_per_user, 4);
    assert_int_equal(c->max_handshakes, 100);
    assert_int_equal(c->auth_fail_limit, 5);
    assert_int_equal(c->auth_fail_window_ms, 120000);
    assert_int_equal(c->auth_fail_cooldown_ms, 600000);

    assert_int_equal(c->nrate_limits, 2);
    assert_string_equal(c->rate_limits[0].user, "alice");
    assert_int_equal(c->rate_limits[0].bytes_per_sec, 10ull << 20);
    assert_string_equal(c->rate_limits[1].user, "bob");
    assert_int_equal(c->rate_limits[1].bytes_per_sec, 64ull << 10);

    assert_int_equal(c->no_bind, 1);
    assert_int_equal(c->no_udp, 1);
    assert_int_equal(c->udp_full_cone, 1);
    assert_int_equal(c->udp_port_lo, 40000);
    assert_int_equal(c->udp_port_hi, 40100);
    assert_int_equal(c->advertise.sa.sa_family, AF_INET);
    assert_int_equal(c->advertise.in4.sin_addr.s_addr, inet_addr("198.51.100.1"));
    assert_non_null(c->pp_from);
    assert_int_equal(rules_count(c->pp_from), 1);
    assert_int_equal(c->proxy_protocol_all, 0);

    assert_int_equal(c->log.level, LOG_LVL_DEBUG);
    assert_int_equal(c->log.error_sink, SINK_FILE);
    assert_string_equal(c->log.error_log_path, errlog);
    assert_int_equal(c->log.access_sink, SINK_FILE);
    assert_string_equal(c->log.access_log_path, acclog);
    assert_int_equal(c->log.access_json, 1);
    assert_addr(&c->metrics, "127.0.0.1:9100");
    assert_string_equal(c->run_user, "nobody");
    assert_int_equal(c->allow_root, 0);
    assert_int_equal(c->open_proxy, 0);

    /* deny-private, deny, allow, and the included allow. */
    assert_non_null(c->rules);
    assert_int_equal(rules_count(c->rules), 4);
    loaded_free(&r);
}

TEST(minimal_file_keeps_documented_defaults)
{
    char dir[PATH_MAX], path[PATH_MAX];
    test_dir("defaults", dir, sizeof dir);
    struct loaded r = load_text(dir, "# nothing but a comment\n\n", path, sizeof path);
    expect_ok(&r);
    const struct config *c = r.c;
    assert_int_equal(c->nlisten, 1);
    assert_addr(&c->listen[0].addr, "127.0.0.1:1080");
    assert_int_equal(c->nmethods, 1);
    assert_int_equal(c->methods[0], SOCKS5_METHOD_NONE);
    assert_int_equal(c->workers, 0);
    assert_int_equal(c->timeout_handshake_ms, 10000);
    assert_int_equal(c->timeout_connect_ms, 10000);
    assert_int_equal(c->timeout_idle_ms, 300000);
    assert_int_equal(c->timeout_bind_ms, 60000);
    assert_int_equal(c->timeout_udp_ms, 120000);
    assert_int_equal(c->shutdown_grace_ms, 10000);
    assert_int_equal(c->auth_cache_ttl_ms, 300000);
    assert_int_equal(c->auth_fail_limit, 10);
    assert_int_equal(c->auth_fail_window_ms, 60000);
    assert_int_equal(c->auth_fail_cooldown_ms, 300000);
    assert_int_equal(c->max_per_ip, 0);
    assert_int_equal(c->log.level, LOG_LVL_INFO);
    assert_int_equal(c->log.error_sink, SINK_STDERR);
    assert_int_equal(c->log.access_sink, SINK_STDERR);
    assert_int_equal(c->log.access_json, 0);
    assert_null(c->rules);
    assert_null(c->users);
    assert_int_equal(c->metrics.sa.sa_family, 0);
    assert_int_equal(c->advertise.sa.sa_family, 0);
    loaded_free(&r);
}

TEST(durations_take_ms_s_m_h_or_bare_seconds)
{
    char dir[PATH_MAX], path[PATH_MAX];
    test_dir("durations", dir, sizeof dir);
    struct loaded r = load_text(dir,
                                "timeout-handshake 500ms\n"
                                "timeout connect 10s\n"
                                "timeout idle 5m\n"
                                "timeout-bind 1h\n"
                                "timeout udp 7\n"
                                "auth-fail-window 1193h\n", /* the largest whole hours */
                                path, sizeof path);
    expect_ok(&r);
    assert_int_equal(r.c->timeout_handshake_ms, 500);
    assert_int_equal(r.c->timeout_connect_ms, 10000);
    assert_int_equal(r.c->timeout_idle_ms, 5 * 60000);
    assert_int_equal(r.c->timeout_bind_ms, 3600000);
    assert_int_equal(r.c->timeout_udp_ms, 7000);
    assert_int_equal(r.c->auth_fail_window_ms, 1193u * 3600000u);
    loaded_free(&r);
}

TEST(both_timeout_spellings_set_the_same_field)
{
    char dir[PATH_MAX], path[PATH_MAX];
    test_dir("spellings", dir, sizeof dir);
    struct loaded a = load_text(dir, "timeout idle 5m\n", path, sizeof path);
    expect_ok(&a);
    struct loaded b = load_text(dir, "timeout-idle 5m\n", path, sizeof path);
    expect_ok(&b);
    struct loaded c = load_text(dir, "timeout \t idle\t 42s\n", path, sizeof path);
    expect_ok(&c);
    assert_int_equal(a.c->timeout_idle_ms, 300000);
    assert_int_equal(b.c->timeout_idle_ms, 300000);
    assert_int_equal(c.c->timeout_idle_ms, 42000);
    loaded_free(&a);
    loaded_free(&b);
    loaded_free(&c);
}

TEST(rate_limits_take_powers_of_1024_and_config_rate_limit_finds_them)
{
    char dir[PATH_MAX], path[PATH_MAX], text[1024];
    test_dir("rates", dir, sizeof dir);
    fmt(text, sizeof text,
        "users %s\n"
        "rate-limit user alice 10M\n"
        "rate-limit bob 1g\n",
        users_file);
    struct loaded r = load_text(dir, text, path, sizeof path);
    expect_ok(&r);
    assert_int_equal(config_rate_limit(r.c, "alice"), 10ull * 1024 * 1024);
    assert_int_equal(config_rate_limit(r.c, "bob"), 1ull << 30);
    assert_int_equal(config_rate_limit(r.c, "carol"), 0);
    assert_int_equal(config_rate_limit(r.c, "alic"), 0);
    assert_int_equal(config_rate_limit(r.c, NULL), 0);
    loaded_free(&r);

    fmt(text, sizeof text, "users %s\nrate-limit alice 1000\nrate-limit user bob 64K\n",
        users_file);
    r = load_text(dir, text, path, sizeof path);
    expect_ok(&r);
    assert_int_equal(config_rate_limit(r.c, "alice"), 1000);
    assert_int_equal(config_rate_limit(r.c, "bob"), 65536);
    loaded_free(&r);
}

TEST(include_is_relative_to_the_including_file)
{
    /* main.conf includes sub/a.conf, which includes "b.conf": that is
     * sub/b.conf, not the b.conf next to main.conf (nor in the cwd). */
    char dir[PATH_MAX], sub[PATH_MAX], p[PATH_MAX], path[PATH_MAX];
    test_dir("include-rel", dir, sizeof dir);
    test_dir("include-rel/sub", sub, sizeof sub);
    write_file(in_dir(sub, "a.conf", p, sizeof p), "timeout-idle 11s\ninclude b.conf\n");
    write_file(in_dir(sub, "b.conf", p, sizeof p), "timeout-connect 22s\n");
    write_file(in_dir(dir, "b.conf", p, sizeof p), "timeout-connect 99s\n");
    struct loaded r = load_text(dir, "include sub/a.conf\ntimeout-bind 33s\n", path, sizeof path);
    expect_ok(&r);
    assert_int_equal(r.c->timeout_idle_ms, 11000);
    assert_int_equal(r.c->timeout_connect_ms, 22000);
    assert_int_equal(r.c->timeout_bind_ms, 33000);
    loaded_free(&r);
}

TEST(include_by_absolute_path_and_later_lines_override_earlier)
{
    char dir[PATH_MAX], inc[PATH_MAX], path[PATH_MAX], text[1024];
    test_dir("include-abs", dir, sizeof dir);
    write_file(in_dir(dir, "inc.conf", inc, sizeof inc), "timeout-idle 11s\nworkers 2\n");
    fmt(text, sizeof text, "workers 1\ninclude %s\ntimeout-idle 12s\n", inc);
    struct loaded r = load_text(dir, text, path, sizeof path);
    expect_ok(&r);
    assert_int_equal(r.c->workers, 2);
    assert_int_equal(r.c->timeout_idle_ms, 12000);
    loaded_free(&r);
}

TEST(includes_nest_eight_deep_but_not_nine)
{
    char dir[PATH_MAX], p[PATH_MAX], name[32], text[64];
    test_dir("include-depth", dir, sizeof dir);
    /* f0 includes f1 ... includes f9; f8 is depth 8, f9 depth 9. */
    for (int i = 0; i <= 9; i++) {
        fmt(name, sizeof name, "f%d.conf", i);
        if (i < 9)
            fmt(text, sizeof text, "include f%d.conf\n", i + 1);
        else
            fmt(text, sizeof text, "workers 9\n");
        write_file(in_dir(dir, name, p, sizeof p), text);
    }
    /* Depth 8 reached from f1: allowed. */
    struct loaded r = LOAD("-c", in_dir(dir, "f1.conf", p, sizeof p));
    expect_ok(&r);
    assert_int_equal(r.c->workers, 9);
    loaded_free(&r);
    /* From f0 it takes nine levels: refused, at f8's include line. */
    char f8[PATH_MAX];
    in_dir(dir, "f8.conf", f8, sizeof f8);
    r = LOAD("-c", in_dir(dir, "f0.conf", p, sizeof p));
    expect_located(&r, f8, 1, 9, "nested more than 8 deep");
    loaded_free(&r);
}

/* ---------------------------------------------------------------------------
 * The command line */

TEST(command_line_replaces_listeners_and_rules_and_wins_for_values)
{
    char dir[PATH_MAX], path[PATH_MAX];
    test_dir("cli-override", dir, sizeof dir);
    in_dir(dir, "socks5d.conf", path, sizeof path);
    write_file(path, "listen 127.0.0.1:19010\n"
                     "listen 127.0.0.1:19011\n"
                     "timeout idle 1s\n"
                     "timeout connect 4s\n"
                     "workers 3\n"
                     "deny to 127.0.0.1 port 80\n"
                     "allow\n");
    struct loaded r = LOAD("-l", "127.0.0.1:19012", "-c", path, "--timeout-idle", "30s", "--rule",
                           "allow from 127.0.0.0/8", "--workers", "2", "--listen",
                           "[::1]:19013 proxy-protocol", "--proxy-protocol-from", "10.0.0.1");
    expect_ok(&r);
    const struct config *c = r.c;
    assert_int_equal(c->nlisten, 2);
    assert_addr(&c->listen[0].addr, "127.0.0.1:19012");
    assert_addr(&c->listen[1].addr, "[::1]:19013");
    assert_int_equal(c->listen[1].proxy_protocol, 1);
    assert_int_equal(c->timeout_idle_ms, 30000);
    assert_int_equal(c->timeout_connect_ms, 4000); /* the file's, not overridden */
    assert_int_equal(c->workers, 2);
    assert_int_equal(rules_count(c->rules), 1); /* the file's two rules replaced */
    loaded_free(&r);
}

TEST(command_line_flags_verbose_quiet_and_proxy_protocol)
{
    char dir[PATH_MAX], path[PATH_MAX];
    test_dir("cli-flags", dir, sizeof dir);
    in_dir(dir, "socks5d.conf", path, sizeof path);
    write_file(path, "listen 127.0.0.1:19014\nlisten 127.0.0.1:19015\nlog-level error\n");
    struct loaded r =
        LOAD("-c", path, "--verbose", "--proxy-protocol", "--proxy-protocol-from", "10.0.0.1");
    expect_ok(&r);
    assert_int_equal(r.c->log.level, LOG_LVL_DEBUG);
    assert_int_equal(r.c->proxy_protocol_all, 1);
    assert_int_equal(r.c->listen[0].proxy_protocol, 1);
    assert_int_equal(r.c->listen[1].proxy_protocol, 1);
    loaded_free(&r);
    r = LOAD("-c", path, "-q");
    expect_ok(&r);
    assert_int_equal(r.c->log.level, LOG_LVL_WARN);
    assert_int_equal(r.c->log.access_sink, SINK_OFF);
    loaded_free(&r);
}

TEST(check_flag_sets_check_only)
{
    char dir[PATH_MAX], path[PATH_MAX];
    test_dir("check", dir, sizeof dir);
    in_dir(dir, "socks5d.conf", path, sizeof path);
    write_file(path, "listen 127.0.0.1:19016\n");
    struct loaded r = LOAD("-t", "-c", path);
    expect_ok(&r);
    assert_int_equal(r.check, 1);
    loaded_free(&r);
    r = LOAD("--check", "-c", path);
    expect_ok(&r);
    assert_int_equal(r.check, 1);
    loaded_free(&r);
    r = LOAD("-c", path);
    expect_ok(&r);
    assert_int_equal(r.check, 0);
    loaded_free(&r);
    /* A bad file under -t is still an error. */
    write_file(path, "listen nowhere\n");
    r = LOAD("-t", "-c", path);
    expect_error(&r);
    assert_int_equal(r.check, 1);
    loaded_free(&r);
}

/* Runs config_load with stdout captured into out (NUL-terminated). */
static struct loaded load_capturing_stdout(const char *arg, char *out, size_t outlen)
{
    char path[PATH_MAX];
    fmt(path, sizeof path, "%s/stdout.txt", root);
    fflush(stdout);
    int saved = dup(STDOUT_FILENO);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(saved >= 0 && fd >= 0);
    assert_true(dup2(fd, STDOUT_FILENO) >= 0);
    close(fd);
    struct loaded r = LOAD(arg);
    fflush(stdout);
    assert_true(dup2(saved, STDOUT_FILENO) >= 0);
    close(saved);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    size_t n = fread(out, 1, outlen - 1, f);
    out[n] = '\0';
    fclose(f);
    return r;
}

TEST(help_and_version_exit_0_without_a_config)
{
    char out[8192];
    struct loaded r = load_capturing_stdout("--help", out, sizeof out);
    assert_null(r.c);
    assert_int_equal(r.code, 0);
    assert_non_null(strstr(out, "usage: socks5d"));
    assert_non_null(strstr(out, "--timeout-idle"));
    loaded_free(&r);
    r = load_capturing_stdout("-h", out, sizeof out);
    assert_null(r.c);
    assert_int_equal(r.code, 0);
    loaded_free(&r);
    r = load_capturing_stdout("--version", out, sizeof out);
    assert_null(r.c);
    assert_int_equal(r.code, 0);
    assert_string_equal(out, "socks5d " SOCKS5D_VERSION "\n");
    loaded_free(&r);
}

TEST(bad_option_value_stray_argument_and_unknown_option_are_errors)
{
    char dir[PATH_MAX], path[PATH_MAX];
    test_dir("cli-bad", dir, sizeof dir);
    in_dir(dir, "socks5d.conf", path, sizeof path);
    write_file(path, "listen 127.0.0.1:19017\n");
    struct loaded r = LOAD("-c", path, "--timeout-idle", "5x");
    expect_message(&r, "--timeout-idle: '5x'");
    loaded_free(&r);
    r = LOAD("-c", path, "stray");
    expect_message(&r, "unexpected argument 'stray'");
    loaded_free(&r);
    /* getopt itself complains on stderr about an unknown option; keep the
     * test output clean. */
    fflush(stderr);
    int saved = dup(STDERR_FILENO), null = open("/dev/null", O_WRONLY);
    assert_true(saved >= 0 && null >= 0);
    assert_true(dup2(null, STDERR_FILENO) >= 0);
    close(null);
    r = LOAD("-c", path, "--frobnicate");
    assert_true(dup2(saved, STDERR_FILENO) >= 0);
    close(saved);
    expect_message(&r, "Try 'socks5d --help'");
    loaded_free(&r);
    /* A valid load afterwards is unaffected by getopt's leftover state. */
    r = LOAD("-c", path, "-w", "4");
    expect_ok(&r);
    assert_int_equal(r.c->workers, 4);
    loaded_free(&r);
}

TEST(short_options_parse_after_a_call_whose_argv_changed)
{
    /* config_load is called again (reload, tests, fuzzing), possibly with
     * another argv, and the caller may reuse the old one's memory: getopt's
     * state from the previous scan must not leak into the next. */
    char dir[PATH_MAX], path[PATH_MAX];
    test_dir("getopt-state", dir, sizeof dir);
    in_dir(dir, "socks5d.conf", path, sizeof path);
    write_file(path, "listen 127.0.0.1:19018\n");
    char cluster[32] = "-q";
    char *argv1[] = {(char *)"socks5d", (char *)"-c", path, cluster, NULL};
    int code, check;
    FILE *err = fopen("/dev/null", "w");
    assert_non_null(err);
    struct config *c = config_load(4, argv1, err, &code, &check);
    assert_non_null(c);
    assert_int_equal(c->log.level, LOG_LVL_WARN);
    config_unref(c);
    /* The caller reuses its buffer (it owns it once the call returned). */
    memset(cluster, 'q', sizeof cluster - 1);
    cluster[sizeof cluster - 1] = '\0';
    char *argv2[] = {(char *)"socks5d", (char *)"-t", (char *)"-c", path, NULL};
    c = config_load(4, argv2, err, &code, &check);
    assert_non_null(c);
    assert_int_equal(check, 1);
    assert_int_equal(c->log.level, LOG_LVL_INFO); /* no -q this time */
    config_unref(c);
    fclose(err);
}

/* ---------------------------------------------------------------------------
 * Errors: file:line:column */

TEST(unknown_directive_is_located_at_its_name)
{
    char dir[PATH_MAX], path[PATH_MAX];
    test_dir("err-unknown", dir, sizeof dir);
    struct loaded r =
        load_text(dir, "# listeners\nlisten 127.0.0.1:19020\n  frobnicate on\n", path, sizeof path);
    expect_located(&r, path, 3, 3, "unknown directive 'frobnicate'");
    loaded_free(&r);
    r = load_text(dir, "frobnicate\n", path, sizeof path);
    expect_located(&r, path, 1, 1, "unknown directive 'frobnicate'");
    loaded_free(&r);
    /* Command-line-only options are not directives. */
    r = load_text(dir, "config /etc/other.conf\n", path, sizeof path);
    expect_located(&r, path, 1, 1, "unknown directive 'config'");
    loaded_free(&r);
}

TEST(bad_duration_is_located_at_the_value_in_both_spellings)
{
    char dir[PATH_MAX], path[PATH_MAX];
    test_dir("err-duration", dir, sizeof dir);
    struct loaded r =
        load_text(dir, "listen 127.0.0.1:19021\ntimeout-idle 5x\n", path, sizeof path);
    expect_located(&r, path, 2, 14, "5x");
    loaded_free(&r);
    r = load_text(dir, "listen 127.0.0.1:19021\ntimeout idle 5x\n", path, sizeof path);
    expect_located(&r, path, 2, 14, "5x");
    loaded_free(&r);
    r = load_text(dir, "listen 127.0.0.1:19021\n\nshutdown-grace 0\n", path, sizeof path);
    expect_located(&r, path, 3, 16, "greater than zero");
    loaded_free(&r);
    r = load_text(dir, "timeout-idle 5000000h\n", path, sizeof path); /* overflows 32 bits */
    expect_located(&r, path, 1, 14, "5000000h");
    loaded_free(&r);
    r = load_text(dir, "timeout-idle -5s\n", path, sizeof path);
    expect_located(&r, path, 1, 14, "-5s");
    loaded_free(&r);
}

TEST(bad_listen_is_located_at_the_address)
{
    char dir[PATH_MAX], path[PATH_MAX];
    test_dir("err-listen", dir, sizeof dir);
    struct loaded r = load_text(dir, "auth none\nlisten 127.0.0.1:19022\nlisten 127.0.0.1:99999\n",
                                path, sizeof path);
    expect_located(&r, path, 3, 8, "127.0.0.1:99999");
    loaded_free(&r);
    r = load_text(dir, "listen 127.0.0.1:19022\nlisten    localhost:1080\n", path, sizeof path);
    expect_located(&r, path, 2, 11, "localhost:1080");
    loaded_free(&r);
    r = load_text(dir, "listen 127.0.0.1:19022 frobnicate\n", path, sizeof path);
    expect_located(&r, path, 1, 8, "frobnicate");
    loaded_free(&r);
}

TEST(duplicate_listener_is_refused_naming_the_address)
{
    char dir[PATH_MAX], path[PATH_MAX];
    test_dir("err-dup", dir, sizeof dir);
    struct loaded r = load_text(dir, "listen 127.0.0.1:19023\nauth none\nlisten 127.0.0.1:19023\n",
                                path, sizeof path);
    expect_located(&r, path, 3, 8, "127.0.0.1:19023 given twice");
    expect_message(&r, "first at");
    loaded_free(&r);
    /* The IPv4-mapped spelling is the same listener. */
    r = load_text(dir, "listen 127.0.0.1:19023\nlisten [::ffff:127.0.0.1]:19023\n", path,
                  sizeof path);
    expect_message(&r, "19023");
    assert_non_null(strstr(r.err, "twice"));
    loaded_free(&r);
    /* Same address, other port: two listeners. */
    r = load_text(dir, "listen 127.0.0.1:19023\nlisten 127.0.0.1:19024\n", path, sizeof path);
    expect_ok(&r);
    assert_int_equal(r.c->nlisten, 2);
    loaded_free(&r);
}

TEST(bad_rule_is_located_at_the_offending_text)
{
    char dir[PATH_MAX], path[PATH_MAX];
    test_dir("err-rule", dir, sizeof dir);
    struct loaded r = load_text(dir, "listen 127.0.0.1:19025\nauth none\nallow to 10.0.0.0/33\n",
                                path, sizeof path);
    expect_located(&r, path, 3, 10, "10.0.0.0/33");
    loaded_free(&r);
}

TEST(bad_rule_on_an_indented_line_is_located_at_the_offending_text)
{
    char dir[PATH_MAX], path[PATH_MAX];
    test_dir("err-rule-indent", dir, sizeof dir);
    /* "10.1.2.3/8" starts at byte 13 of the line. */
    struct loaded r = load_text(dir, "   deny  to 10.1.2.3/8\n", path, sizeof path);
    expect_located(&r, path, 1, 13, "10.1.2.3/8");
    loaded_free(&r);
}

TEST(include_of_a_missing_file_is_located_at_the_include)
{
    char dir[PATH_MAX], path[PATH_MAX];
    test_dir("err-include-missing", dir, sizeof dir);
    struct loaded r =
        load_text(dir, "listen 127.0.0.1:19026\ninclude missing.conf\n", path, sizeof path);
    expect_located(&r, path, 2, 9, "missing.conf");
    loaded_free(&r);
}

TEST(error_in_an_included_file_names_that_file)
{
    char dir[PATH_MAX], path[PATH_MAX], extra[PATH_MAX];
    test_dir("err-in-include", dir, sizeof dir);
    write_file(in_dir(dir, "extra.conf", extra, sizeof extra), "auth none\nmax-sessions lots\n");
    struct loaded r =
        load_text(dir, "listen 127.0.0.1:19027\ninclude extra.conf\n", path, sizeof path);
    expect_located(&r, extra, 2, 14, "lots");
    assert_int_equal(count_lines(r.err), 1); /* reported once, not again at the include */
    loaded_free(&r);
}

TEST(include_loop_stops_at_the_depth_limit_with_one_message)
{
    char dir[PATH_MAX], path[PATH_MAX];
    test_dir("err-include-loop", dir, sizeof dir);
    struct loaded r =
        load_text(dir, "listen 127.0.0.1:19028\ninclude socks5d.conf\n", path, sizeof path);
    expect_located(&r, path, 2, 9, "nested more than 8 deep");
    assert_int_equal(count_lines(r.err), 1);
    loaded_free(&r);
}

TEST(line_too_long_is_refused_with_its_line_number)
{
    char dir[PATH_MAX], path[PATH_MAX];
    char *text = malloc(10000);
    assert_non_null(text);
    test_dir("err-long", dir, sizeof dir);
    /* 4094 bytes before the newline fit; 4095 do not. */
    int n = sprintf(text, "listen 127.0.0.1:19029\n#");
    memset(text + n, 'x', 4093);
    n += 4093;
    n += sprintf(text + n, "\nworkers 2\n");
    struct loaded r = load_text(dir, text, path, sizeof path);
    expect_ok(&r);
    assert_int_equal(r.c->workers, 2);
    loaded_free(&r);

    n = sprintf(text, "listen 127.0.0.1:19029\n\n#");
    memset(text + n, 'x', 4094);
    n += 4094;
    sprintf(text + n, "\nworkers 2\n");
    r = load_text(dir, text, path, sizeof path);
    expect_located(&r, path, 3, 1, "line longer than 4094 bytes");
    loaded_free(&r);
    free(text);
}

TEST(every_problem_in_a_file_is_reported_at_once)
{
    char dir[PATH_MAX], path[PATH_MAX];
    test_dir("err-many", dir, sizeof dir);
    struct loaded r = load_text(dir,
                                "listen 127.0.0.1:99999\n"
                                "workers 2\n"
                                "workers lots\n"
                                "access-log-format xml\n",
                                path, sizeof path);
    expect_located(&r, path, 1, 8, "99999");
    expect_located(&r, path, 3, 9, "lots");
    expect_located(&r, path, 4, 19, "xml");
    assert_int_equal(count_lines(r.err), 3);
    loaded_free(&r);
}

TEST(missing_config_file_is_an_error)
{
    char dir[PATH_MAX], path[PATH_MAX];
    test_dir("err-no-file", dir, sizeof dir);
    struct loaded r = LOAD("-c", in_dir(dir, "nope.conf", path, sizeof path));
    expect_message(&r, "nope.conf");
    loaded_free(&r);
}

/* ---------------------------------------------------------------------------
 * Cross-option validation */

TEST(missing_users_file_is_refused_naming_it)
{
    char dir[PATH_MAX], path[PATH_MAX], text[1024], users[PATH_MAX];
    test_dir("err-users", dir, sizeof dir);
    in_dir(dir, "no-such-users", users, sizeof users);
    fmt(text, sizeof text, "listen 127.0.0.1:19031\nusers %s\n", users);
    struct loaded r = load_text(dir, text, path, sizeof path);
    expect_located(&r, path, 2, 7, users);
    loaded_free(&r);
}

TEST(userpass_without_users_file_is_refused)
{
    char dir[PATH_MAX], path[PATH_MAX];
    test_dir("err-userpass", dir, sizeof dir);
    struct loaded r = load_text(dir, "listen 127.0.0.1:19032\nauth userpass\n", path, sizeof path);
    expect_message(&r, "users file");
    loaded_free(&r);
}

TEST(users_file_alone_selects_userpass)
{
    char dir[PATH_MAX], path[PATH_MAX], text[1024];
    test_dir("users-default", dir, sizeof dir);
    fmt(text, sizeof text, "listen 0.0.0.0:19033\nusers %s\n", users_file);
    struct loaded r = load_text(dir, text, path, sizeof path);
    expect_ok(&r);
    assert_int_equal(r.c->nmethods, 1);
    assert_int_equal(r.c->methods[0], SOCKS5_METHOD_USERPASS);
    loaded_free(&r);
}

TEST(rate_limit_for_an_unknown_user_is_refused)
{
    char dir[PATH_MAX], path[PATH_MAX], text[1024];
    test_dir("err-rate-user", dir, sizeof dir);
    fmt(text, sizeof text, "users %s\n\nrate-limit user carol 1M\n", users_file);
    struct loaded r = load_text(dir, text, path, sizeof path);
    expect_located(&r, path, 3, 12, "no user 'carol'");
    loaded_free(&r);
    r = load_text(dir, "rate-limit user carol 1M\n", path, sizeof path);
    expect_located(&r, path, 1, 12, "there is no users file");
    loaded_free(&r);
}

/* Every directive given a value it cannot take says why, after the
 * location, not just where. */
TEST(every_directive_names_the_cause_of_a_bad_value)
{
    char dir[PATH_MAX], path[PATH_MAX], text[256];
    test_dir("err-cause", dir, sizeof dir);
    for (size_t i = 0; i < options_count; i++) {
        const struct options_def *d = &options_table[i];
        if (!(d->where & OPTIONS_FILE) || d->set == options_directive("include")->set)
            continue;
        fmt(text, sizeof text, "%s maybe\n", d->name);
        struct loaded r = load_text(dir, text, path, sizeof path);
        if (r.c) {
            loaded_free(&r);
            continue;
        }
        char prefix[PATH_MAX + 32];
        int n = snprintf(prefix, sizeof prefix, "%s:1:", path);
        const char *why = strstr(r.err, prefix) ? strchr(r.err + n, ' ') : NULL;
        if (!why || strlen(why) < 12)
            fail_msg("'%s maybe' gives no reason: %s", d->name, r.err);
        loaded_free(&r);
    }
    struct loaded r = load_text(dir, "no-udp maybe\n", path, sizeof path);
    expect_located(&r, path, 1, 8, "'maybe': expected yes or no");
    loaded_free(&r);
}

TEST(a_mistyped_directive_or_option_gets_did_you_mean)
{
    char dir[PATH_MAX], path[PATH_MAX];
    test_dir("err-typo", dir, sizeof dir);
    struct loaded r = load_text(dir, "timout-idle 5m\n", path, sizeof path);
    expect_located(&r, path, 1, 1, "did you mean 'timeout-idle'?");
    loaded_free(&r);
    r = load_text(dir, "timeout idel 5m\n", path, sizeof path);
    expect_located(&r, path, 1, 9, "unknown timeout 'idel'; did you mean 'timeout-idle'?");
    loaded_free(&r);
    r = load_text(dir, "listen 127.0.0.1:19050\n", path, sizeof path);
    loaded_free(&r);
    r = LOAD("-c", path, "--timeout-idel", "5m");
    expect_message(&r, "unknown option 'timeout-idel'; did you mean 'timeout-idle'?");
    loaded_free(&r);
    r = LOAD("-c", path, "--no-udp=yes");
    expect_message(&r, "--no-udp takes no value");
    loaded_free(&r);
    r = LOAD("-c", path, "--users");
    expect_message(&r, "--users needs a value");
    loaded_free(&r);
}

/* Directive names are case-insensitive, like the keywords of rules that
 * --rule takes. */
TEST(directives_are_case_insensitive_as_rule_keywords_are)
{
    char dir[PATH_MAX], path[PATH_MAX];
    test_dir("case", dir, sizeof dir);
    struct loaded r = load_text(
        dir, "Listen 127.0.0.1:19051\nTIMEOUT Idle 7s\nALLOW from 10.0.0.0/8\nNo-UDP YES\n", path,
        sizeof path);
    expect_ok(&r);
    assert_int_equal(r.c->timeout_idle_ms, 7000);
    assert_int_equal(r.c->no_udp, 1);
    assert_int_equal(rules_count(r.c->rules), 1);
    loaded_free(&r);
    r = LOAD("-c", path, "--rule", "ALLOW FROM 10.0.0.0/8");
    expect_ok(&r);
    assert_int_equal(rules_count(r.c->rules), 1);
    loaded_free(&r);
}

/* -c or include naming a directory reads nothing: it is an error. */
TEST(a_directory_as_config_or_include_is_an_error)
{
    char dir[PATH_MAX], path[PATH_MAX];
    test_dir("dir-conf", dir, sizeof dir);
    struct loaded r = LOAD("-c", dir);
    expect_message(&r, "is a directory");
    loaded_free(&r);
    r = load_text(dir, "listen 127.0.0.1:19052\ninclude .\n", path, sizeof path);
    expect_located(&r, path, 2, 9, "is a directory");
    loaded_free(&r);
}

TEST(open_proxy_beyond_loopback_without_auth_is_refused)
{
    char dir[PATH_MAX], path[PATH_MAX];
    test_dir("protected", dir, sizeof dir);
    struct loaded r = load_text(dir, "listen 0.0.0.0:19034\n", path, sizeof path);
    expect_message(&r, "open proxy");
    assert_non_null(strstr(r.err, "0.0.0.0:19034"));
    loaded_free(&r);
    r = load_text(dir, "listen [::]:19034\nauth none\n", path, sizeof path);
    expect_message(&r, "open proxy");
    loaded_free(&r);
    /* One loopback and one public listener: still refused. */
    r = load_text(dir, "listen 127.0.0.1:19034\nlisten 192.0.2.1:19034\n", path, sizeof path);
    expect_message(&r, "192.0.2.1:19034");
    loaded_free(&r);
    /* An unrestricted allow rule is no check at all. */
    r = load_text(dir, "listen 0.0.0.0:19034\nallow from 0.0.0.0/0\n", path, sizeof path);
    expect_message(&r, "open proxy");
    loaded_free(&r);
    /* none offered alongside userpass is still open. */
    char text[1024];
    fmt(text, sizeof text, "listen 0.0.0.0:19034\nusers %s\nauth userpass,none\n", users_file);
    r = load_text(dir, text, path, sizeof path);
    expect_message(&r, "open proxy");
    loaded_free(&r);
}

TEST(open_proxy_is_accepted_when_asked_for_or_restricted)
{
    char dir[PATH_MAX], path[PATH_MAX];
    test_dir("protected-ok", dir, sizeof dir);
    struct loaded r = load_text(dir, "listen 0.0.0.0:19035\n", path, sizeof path);
    expect_error(&r);
    loaded_free(&r);
    r = LOAD("-c", path, "--open-proxy");
    expect_ok(&r);
    assert_int_equal(r.c->open_proxy, 1);
    loaded_free(&r);
    r = load_text(dir, "listen 0.0.0.0:19035\nopen-proxy\n", path, sizeof path);
    expect_ok(&r);
    loaded_free(&r);
    r = load_text(dir, "listen 0.0.0.0:19035\nallow from 192.0.2.0/24\n", path, sizeof path);
    expect_ok(&r);
    loaded_free(&r);
    r = load_text(dir, "listen 127.0.0.1:19035\nlisten [::1]:19035\nauth none\n", path,
                  sizeof path);
    expect_ok(&r);
    loaded_free(&r);
    char text[1024];
    fmt(text, sizeof text, "listen 0.0.0.0:19035\nusers %s\nauth userpass\n", users_file);
    r = load_text(dir, text, path, sizeof path);
    expect_ok(&r);
    loaded_free(&r);
}

TEST(check_open_proxy_on_given_listeners_refuses_only_public_ones)
{
    /* The check main runs on socket-activated listeners. */
    char dir[PATH_MAX], path[PATH_MAX];
    test_dir("check-open", dir, sizeof dir);
    in_dir(dir, "socks5d.conf", path, sizeof path);
    write_file(path, "listen 127.0.0.1:19038\nauth none\n");
    char *argv[] = {(char *)"socks5d", (char *)"-c", path, NULL};
    char *text = NULL;
    size_t len = 0;
    int code, check;
    /* Kept open for the whole test: messages may go to it. */
    FILE *err = open_memstream(&text, &len);
    assert_non_null(err);
    struct config *c = config_load(3, argv, err, &code, &check);
    assert_non_null(c);
    struct listen_spec ls[3];
    memset(ls, 0, sizeof ls);
    ls[0].addr = parse("127.0.0.1:1080");
    ls[1].addr = parse("[::1]:1080");
    ls[2].addr = parse("192.0.2.1:1080");
    assert_int_equal(config_check_open_proxy(c, ls, 2, err), 0);
    assert_int_equal(config_check_open_proxy(c, ls, 3, err), -1);
    c->open_proxy = 1;
    assert_int_equal(config_check_open_proxy(c, ls, 3, err), 0);
    config_unref(c);
    fclose(err);
    assert_non_null(strstr(text, "192.0.2.1:1080"));
    free(text);
}

TEST(proxy_listener_without_trusted_sources_is_refused_at_the_listener)
{
    char dir[PATH_MAX], path[PATH_MAX];
    test_dir("pp-trust", dir, sizeof dir);
    /* The open proxy of issue 10: anyone could claim 10.9.9.9. */
    struct loaded r = load_text(dir,
                                "allow from 10.0.0.0/8\n"
                                "deny\n"
                                "listen 127.0.0.1:19040\n"
                                "  listen 0.0.0.0:19041 proxy-protocol\n",
                                path, sizeof path);
    expect_located(&r, path, 4, 10, "0.0.0.0:19041");
    assert_non_null(strstr(r.err, "proxy-protocol-from"));
    assert_null(strstr(r.err, "19040"));
    loaded_free(&r);
    /* Every listener of a global proxy-protocol, each at its own line. */
    r = load_text(dir, "listen 127.0.0.1:19040\nlisten 127.0.0.1:19041\nproxy-protocol\n", path,
                  sizeof path);
    expect_located(&r, path, 1, 8, "127.0.0.1:19040");
    expect_located(&r, path, 2, 8, "127.0.0.1:19041");
    loaded_free(&r);
    /* From the command line: named, and the same exit code. */
    r = LOAD("-c", path, "-l", "0.0.0.0:19042 proxy-protocol", "--rule", "allow from 10.0.0.0/8");
    expect_message(&r, "listen 0.0.0.0:19042: proxy-protocol needs proxy-protocol-from");
    loaded_free(&r);
    r = LOAD("-c", path, "--proxy-protocol-from", "");
    expect_error(&r);
    loaded_free(&r);
    r = LOAD("-c", path, "--proxy-protocol-from", "127.0.0.1");
    expect_ok(&r);
    loaded_free(&r);
}

TEST(allow_from_is_no_protection_behind_an_open_proxy_trust_list)
{
    char dir[PATH_MAX], path[PATH_MAX];
    test_dir("pp-protected", dir, sizeof dir);
    struct loaded r = load_text(dir,
                                "listen 0.0.0.0:19043 proxy-protocol\n"
                                "proxy-protocol-from 0.0.0.0/1,128.0.0.0/1\n"
                                "allow from 10.0.0.0/8\n",
                                path, sizeof path);
    expect_message(&r, "open proxy on 0.0.0.0:19043");
    loaded_free(&r);
    r = load_text(dir,
                  "listen 0.0.0.0:19043 proxy-protocol\n"
                  "proxy-protocol-from 192.0.2.7\n"
                  "allow from 10.0.0.0/8\n",
                  path, sizeof path);
    expect_ok(&r);
    loaded_free(&r);
}

TEST(protected_mode_judges_the_union_of_allow_sources)
{
    char dir[PATH_MAX], path[PATH_MAX];
    test_dir("protected-union", dir, sizeof dir);
    static const char *const open[] = {
        "allow from 0.0.0.0/1,128.0.0.0/1\n",
        "allow from 0.0.0.0/1\nallow from 128.0.0.0/1 cmd connect\n",
        "allow from 0.0.0.0/2\ndeny from 10.0.0.0/8\nallow from 64.0.0.0/2,128.0.0.0/1\n",
        "allow from 16.0.0.0/4\n",
        "allow from 2000::/4,3000::/4\n",
    };
    char text[256];
    for (size_t i = 0; i < sizeof open / sizeof open[0]; i++) {
        fmt(text, sizeof text, "listen 0.0.0.0:19044\n%s", open[i]);
        struct loaded r = load_text(dir, text, path, sizeof path);
        if (r.c)
            fail_msg("accepted as restricted: %s", open[i]);
        expect_message(&r, "open proxy");
        loaded_free(&r);
    }
    struct loaded r = load_text(
        dir, "listen 0.0.0.0:19044\nallow from 10.0.0.0/8,192.0.2.0/24\nallow from 2001:db8::/32\n",
        path, sizeof path);
    expect_ok(&r);
    loaded_free(&r);
}

TEST(max_sessions_per_user_needs_a_users_file)
{
    char dir[PATH_MAX], path[PATH_MAX];
    test_dir("err-per-user", dir, sizeof dir);
    struct loaded r = load_text(dir, "max-sessions-per-user 3\n", path, sizeof path);
    expect_message(&r, "max-sessions-per-user");
    loaded_free(&r);
}

/* ---------------------------------------------------------------------------
 * Snapshot helpers */

/* A hand-built snapshot: only the fields the helpers read. */
static struct config *bare_config(void)
{
    struct config *c = calloc(1, sizeof *c);
    assert_non_null(c);
    atomic_init(&c->refs, 1);
    return c;
}

static void add_listener(struct config *c, const char *addr, const char *advertise)
{
    struct listen_spec *l = &c->listen[c->nlisten++];
    l->addr = parse(addr);
    if (advertise)
        l->advertise = parse(advertise);
}

TEST(advertise_prefers_exact_listener_then_wildcard_then_global)
{
    struct config *c = bare_config();
    add_listener(c, "192.0.2.1:1080", "198.51.100.1:1");
    add_listener(c, "0.0.0.0:1081", "198.51.100.2:1");
    add_listener(c, "127.0.0.1:1082", NULL);
    add_listener(c, "[::]:1083", "[2001:db8::1]:1");
    add_listener(c, "[2001:db8::10]:1083", "[2001:db8::2]:1");
    union addr_any local;

    /* No global advertise yet. */
    local = parse("192.0.2.1:1080");
    assert_addr(config_advertise(c, &local.sa), "198.51.100.1:1");
    local = parse("[::ffff:192.0.2.1]:1080"); /* the same address, v4-mapped */
    assert_addr(config_advertise(c, &local.sa), "198.51.100.1:1");
    local = parse("10.9.9.9:1081"); /* arrived on the wildcard listener */
    assert_addr(config_advertise(c, &local.sa), "198.51.100.2:1");
    local = parse("[2001:db8::10]:1083"); /* exact beats the [::] wildcard */
    assert_addr(config_advertise(c, &local.sa), "[2001:db8::2]:1");
    local = parse("[2001:db8::77]:1083");
    assert_addr(config_advertise(c, &local.sa), "[2001:db8::1]:1");
    local = parse("127.0.0.1:1082"); /* its listener has none */
    assert_null(config_advertise(c, &local.sa));
    local = parse("10.9.9.9:1080"); /* no wildcard on 1080 */
    assert_null(config_advertise(c, &local.sa));

    /* With a global advertise, that fills the gaps only. */
    c->advertise = parse("203.0.113.9:1");
    local = parse("127.0.0.1:1082");
    assert_addr(config_advertise(c, &local.sa), "203.0.113.9:1");
    local = parse("10.9.9.9:1080");
    assert_addr(config_advertise(c, &local.sa), "203.0.113.9:1");
    local = parse("192.0.2.1:1080");
    assert_addr(config_advertise(c, &local.sa), "198.51.100.1:1");
    local = parse("10.9.9.9:1081");
    assert_addr(config_advertise(c, &local.sa), "198.51.100.2:1");
    config_unref(c);
}

TEST(advertise_parsed_from_listen_lines_and_global_directive)
{
    char dir[PATH_MAX], path[PATH_MAX];
    test_dir("advertise", dir, sizeof dir);
    struct loaded r = load_text(dir,
                                "open-proxy\n"
                                "listen 0.0.0.0:19036 advertise 198.51.100.7\n"
                                "listen 127.0.0.1:19037\n"
                                "advertise [2001:db8::9]\n",
                                path, sizeof path);
    expect_ok(&r);
    union addr_any local = parse("10.1.1.1:19036");
    const union addr_any *a = config_advertise(r.c, &local.sa);
    assert_non_null(a);
    assert_int_equal(a->sa.sa_family, AF_INET);
    assert_int_equal(a->in4.sin_addr.s_addr, inet_addr("198.51.100.7"));
    local = parse("127.0.0.1:19037");
    a = config_advertise(r.c, &local.sa);
    assert_non_null(a);
    assert_int_equal(a->sa.sa_family, AF_INET6);
    assert_ptr_equal(a, &r.c->advertise);
    loaded_free(&r);
}

TEST(same_listen_compares_address_and_port_with_v4_mapped_equal)
{
    struct listen_spec a, b;
    memset(&a, 0, sizeof a);
    memset(&b, 0, sizeof b);
    a.addr = parse("127.0.0.1:80");
    b.addr = parse("[::ffff:127.0.0.1]:80");
    assert_int_equal(config_same_listen(&a, &b), 1);
    assert_int_equal(config_same_listen(&b, &a), 1);
    assert_int_equal(config_same_listen(&a, &a), 1);
    b.addr = parse("127.0.0.1:81");
    assert_int_equal(config_same_listen(&a, &b), 0);
    b.addr = parse("127.0.0.2:80");
    assert_int_equal(config_same_listen(&a, &b), 0);
    b.addr = parse("[::1]:80");
    assert_int_equal(config_same_listen(&a, &b), 0);
    a.addr = parse("[::]:80");
    b.addr = parse("0.0.0.0:80");
    assert_int_equal(config_same_listen(&a, &b), 0); /* two sockets, two families */
    /* Options do not make a listener different. */
    a.addr = parse("[::1]:80");
    b.addr = parse("[::1]:80");
    b.proxy_protocol = 1;
    assert_int_equal(config_same_listen(&a, &b), 1);
}

TEST(ref_and_unref_free_on_the_last_reference)
{
    char dir[PATH_MAX], path[PATH_MAX], text[1024];
    test_dir("refs", dir, sizeof dir);
    fmt(text, sizeof text, "users %s\nallow user alice\nrate-limit alice 1M\n", users_file);
    struct loaded r = load_text(dir, text, path, sizeof path);
    expect_ok(&r);
    struct config *c = config_ref(r.c);
    assert_ptr_equal(c, r.c);
    assert_int_equal(atomic_load(&c->refs), 2);
    config_unref(c);
    assert_int_equal(atomic_load(&r.c->refs), 1);
    assert_int_equal(config_rate_limit(r.c, "alice"), 1u << 20); /* still alive */
    loaded_free(&r); /* the last one: freed (ASan/LSan would see a leak or double free) */
    config_unref(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(valid_file_with_every_directive_kind_fills_the_struct),
        cmocka_unit_test(minimal_file_keeps_documented_defaults),
        cmocka_unit_test(durations_take_ms_s_m_h_or_bare_seconds),
        cmocka_unit_test(both_timeout_spellings_set_the_same_field),
        cmocka_unit_test(rate_limits_take_powers_of_1024_and_config_rate_limit_finds_them),
        cmocka_unit_test(include_is_relative_to_the_including_file),
        cmocka_unit_test(include_by_absolute_path_and_later_lines_override_earlier),
        cmocka_unit_test(includes_nest_eight_deep_but_not_nine),
        cmocka_unit_test(command_line_replaces_listeners_and_rules_and_wins_for_values),
        cmocka_unit_test(command_line_flags_verbose_quiet_and_proxy_protocol),
        cmocka_unit_test(check_flag_sets_check_only),
        cmocka_unit_test(help_and_version_exit_0_without_a_config),
        cmocka_unit_test(bad_option_value_stray_argument_and_unknown_option_are_errors),
        cmocka_unit_test(short_options_parse_after_a_call_whose_argv_changed),
        cmocka_unit_test(unknown_directive_is_located_at_its_name),
        cmocka_unit_test(bad_duration_is_located_at_the_value_in_both_spellings),
        cmocka_unit_test(bad_listen_is_located_at_the_address),
        cmocka_unit_test(duplicate_listener_is_refused_naming_the_address),
        cmocka_unit_test(bad_rule_is_located_at_the_offending_text),
        cmocka_unit_test(bad_rule_on_an_indented_line_is_located_at_the_offending_text),
        cmocka_unit_test(include_of_a_missing_file_is_located_at_the_include),
        cmocka_unit_test(error_in_an_included_file_names_that_file),
        cmocka_unit_test(include_loop_stops_at_the_depth_limit_with_one_message),
        cmocka_unit_test(line_too_long_is_refused_with_its_line_number),
        cmocka_unit_test(every_problem_in_a_file_is_reported_at_once),
        cmocka_unit_test(missing_config_file_is_an_error),
        cmocka_unit_test(missing_users_file_is_refused_naming_it),
        cmocka_unit_test(userpass_without_users_file_is_refused),
        cmocka_unit_test(users_file_alone_selects_userpass),
        cmocka_unit_test(rate_limit_for_an_unknown_user_is_refused),
        cmocka_unit_test(every_directive_names_the_cause_of_a_bad_value),
        cmocka_unit_test(a_mistyped_directive_or_option_gets_did_you_mean),
        cmocka_unit_test(directives_are_case_insensitive_as_rule_keywords_are),
        cmocka_unit_test(a_directory_as_config_or_include_is_an_error),
        cmocka_unit_test(open_proxy_beyond_loopback_without_auth_is_refused),
        cmocka_unit_test(open_proxy_is_accepted_when_asked_for_or_restricted),
        cmocka_unit_test(check_open_proxy_on_given_listeners_refuses_only_public_ones),
        cmocka_unit_test(proxy_listener_without_trusted_sources_is_refused_at_the_listener),
        cmocka_unit_test(allow_from_is_no_protection_behind_an_open_proxy_trust_list),
        cmocka_unit_test(protected_mode_judges_the_union_of_allow_sources),
        cmocka_unit_test(max_sessions_per_user_needs_a_users_file),
        cmocka_unit_test(advertise_prefers_exact_listener_then_wildcard_then_global),
        cmocka_unit_test(advertise_parsed_from_listen_lines_and_global_directive),
        cmocka_unit_test(same_listen_compares_address_and_port_with_v4_mapped_equal),
        cmocka_unit_test(ref_and_unref_free_on_the_last_reference),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
