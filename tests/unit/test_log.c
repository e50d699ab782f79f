/* Unit tests for src/log.c: the access log in logfmt and JSON, level
 * filtering of the error log, reopening after rotation, syslog and off
 * sinks, a failed reconfiguration, a link at the log path; the per-thread
 * ring (src/logring.c): order, wrap-around, drops counted; the log thread:
 * order, reopen, flush on stop, exact drop accounting behind a stuck pipe.
 *
 * Both logs are pointed at files in a temporary directory through a minimal
 * struct log_settings and log_configure; the files are read back and checked.
 * JSON lines are checked with a small strict parser written here (objects
 * of string values, UTF-8 text, escapes decoded), so "parseable" means what
 * a JSON consumer would accept. */
#include "unit_support.h"

#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <sys/stat.h>

#include "config.h"
#include "log.h"
#include "logring.h"

static char dir[PATH_MAX];

static void path_of(const char *name, char *buf, size_t len)
{
    int n = snprintf(buf, len, "%s/%s", dir, name);
    assert_true(n > 0 && (size_t)n < len);
}

/* The whole file as a NUL-terminated string ("" when it does not exist). */
static char *slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    char *buf = calloc(1, 65536);
    assert_non_null(buf);
    if (!f)
        return buf;
    size_t n = fread(buf, 1, 65535, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static size_t count_lines(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

/* Points the logs at the given sinks (paths may be NULL). */
static void configure(int err_kind, const char *err_path, int acc_kind, const char *acc_path,
                      int json, int level)
{
    struct log_settings *c = calloc(1, sizeof *c);
    char msg[512];
    assert_non_null(c);
    c->error_sink = err_kind;
    c->error_log_path = err_path ? strdup(err_path) : NULL;
    c->access_sink = acc_kind;
    c->access_log_path = acc_path ? strdup(acc_path) : NULL;
    c->access_json = json;
    c->level = level;
    if (log_configure(c, msg, sizeof msg) < 0)
        fail_msg("log_configure: %s", msg);
    free(c->error_log_path);
    free(c->access_log_path);
    free(c);
}

/* "2026-11-22T01:17:13.489Z": 24 characters. */
static void assert_timestamp(const char *s)
{
    static const char pat[] = "dddd-dd-ddTdd:dd:dd.dddZ";
    for (size_t i = 0; i < sizeof pat - 1; i++) {
        if (pat[i] == 'd' ? !(s[i] >= '0' && s[i] <= '9') : s[i] != pat[i])
            fail_msg("not a timestamp at byte %zu: '%.24s'", i, s);
    }
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int group_setup(void **state)
{
    (void)state;
    unsetenv("JOURNAL_STREAM");
    snprintf(dir, sizeof dir, "/tmp/socks5d-test-log-XXXXXX");
    if (!mkdtemp(dir))
        return -1;
    return log_init();
}

static int group_teardown(void **state)
{
    (void)state;
    /* Leave the logs somewhere harmless before the files go. */
    struct log_settings c;
    char msg[256];
    memset(&c, 0, sizeof c);
    c.error_sink = SINK_STDERR;
    c.access_sink = SINK_OFF;
    c.level = LOG_LVL_INFO;
    log_configure(&c, msg, sizeof msg);
    nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    return 0;
}

/* ---------------------------------------------------------------------------
 * A strict little JSON reader: one object, string keys, string values. */

struct jpair {
    char key[64];
    char val[1024];
    size_t vlen;
};

static void put_utf8(char *out, size_t *n, size_t cap, unsigned cp)
{
    assert_true(*n + 4 < cap);
    if (cp < 0x80) {
        out[(*n)++] = (char)cp;
    } else if (cp < 0x800) {
        out[(*n)++] = (char)(0xc0 | cp >> 6);
        out[(*n)++] = (char)(0x80 | (cp & 0x3f));
    } else if (cp < 0x10000) {
        out[(*n)++] = (char)(0xe0 | cp >> 12);
        out[(*n)++] = (char)(0x80 | ((cp >> 6) & 0x3f));
        out[(*n)++] = (char)(0x80 | (cp & 0x3f));
    } else {
        out[(*n)++] = (char)(0xf0 | cp >> 18);
        out[(*n)++] = (char)(0x80 | ((cp >> 12) & 0x3f));
        out[(*n)++] = (char)(0x80 | ((cp >> 6) & 0x3f));
        out[(*n)++] = (char)(0x80 | (cp & 0x3f));
    }
}

/* Length of a valid UTF-8 sequence at p (1..4), 0 if invalid. */
static size_t utf8_len(const unsigned char *p)
{
    if (p[0] < 0x80)
        return 1;
    size_t n = p[0] >= 0xf0 && p[0] <= 0xf4 ? 4 : p[0] >= 0xe0 ? 3 : p[0] >= 0xc2 ? 2 : 0;
    if (p[0] >= 0xf5)
        return 0;
    for (size_t i = 1; i < n; i++)
        if ((p[i] & 0xc0) != 0x80)
            return 0;
    if (n == 3 && p[0] == 0xe0 && p[1] < 0xa0)
        return 0; /* overlong */
    if (n == 3 && p[0] == 0xed && p[1] >= 0xa0)
        return 0; /* surrogate */
    if (n == 4 && p[0] == 0xf0 && p[1] < 0x90)
        return 0;
    if (n == 4 && p[0] == 0xf4 && p[1] >= 0x90)
        return 0;
    return n;
}

static unsigned hex4(const char *p)
{
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        char ch = p[i];
        unsigned d = ch >= '0' && ch <= '9'   ? (unsigned)(ch - '0')
                     : ch >= 'a' && ch <= 'f' ? (unsigned)(ch - 'a' + 10)
                     : ch >= 'A' && ch <= 'F' ? (unsigned)(ch - 'A' + 10)
                                              : 16;
        if (d == 16)
            fail_msg("bad \\u escape: '%.6s'", p - 2);
        v = v * 16 + d;
    }
    return v;
}

/* Parses a JSON string at *pp (at the opening quote) into out. */
static size_t json_string(const char **pp, char *out, size_t cap)
{
    const char *p = *pp;
    size_t n = 0;
    if (*p != '"')
        fail_msg("expected '\"' at '%.20s'", p);
    p++;
    while (*p != '"') {
        unsigned char ch = (unsigned char)*p;
        if (ch == '\0' || ch == '\n')
            fail_msg("unterminated string");
        if (ch < 0x20)
            fail_msg("raw control byte 0x%02x in a JSON string", ch);
        if (ch == '\\') {
            p++;
            unsigned cp;
            switch (*p) {
            case '"':
                cp = '"';
                break;
            case '\\':
                cp = '\\';
                break;
            case '/':
                cp = '/';
                break;
            case 'b':
                cp = '\b';
                break;
            case 'f':
                cp = '\f';
                break;
            case 'n':
                cp = '\n';
                break;
            case 'r':
                cp = '\r';
                break;
            case 't':
                cp = '\t';
                break;
            case 'u':
                cp = hex4(p + 1);
                p += 4;
                if (cp >= 0xd800 && cp < 0xdc00) {
                    if (p[1] != '\\' || p[2] != 'u')
                        fail_msg("lone high surrogate");
                    unsigned lo = hex4(p + 3);
                    if (lo < 0xdc00 || lo >= 0xe000)
                        fail_msg("bad low surrogate");
                    cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                    p += 6;
                } else if (cp >= 0xdc00 && cp < 0xe000) {
                    fail_msg("lone low surrogate");
                }
                break;
            default:
                fail_msg("bad escape '\\%c'", *p);
                return 0;
            }
            put_utf8(out, &n, cap, cp);
            p++;
            continue;
        }
        size_t l = utf8_len((const unsigned char *)p);
        if (l == 0)
            fail_msg("invalid UTF-8 (byte 0x%02x) in a JSON string", ch);
        assert_true(n + l < cap);
        memcpy(out + n, p, l);
        n += l;
        p += l;
    }
    out[n] = '\0';
    *pp = p + 1;
    return n;
}

/* Parses one line "{...}\n"; returns the number of pairs. */
static size_t json_object(const char *line, struct jpair *pairs, size_t max)
{
    const char *p = line;
    size_t n = 0;
    if (*p++ != '{')
        fail_msg("not an object: '%.40s'", line);
    if (*p == '}') {
        p++;
    } else {
        for (;;) {
            assert_true(n < max);
            json_string(&p, pairs[n].key, sizeof pairs[n].key);
            if (*p++ != ':')
                fail_msg("expected ':' in '%s'", line);
            pairs[n].vlen = json_string(&p, pairs[n].val, sizeof pairs[n].val);
            n++;
            if (*p == ',') {
                p++;
                continue;
            }
            if (*p++ != '}')
                fail_msg("expected ',' or '}' in '%s'", line);
            break;
        }
    }
    if (strcmp(p, "\n") != 0)
        fail_msg("trailing bytes after the object: '%s'", p);
    return n;
}

/* ---------------------------------------------------------------------------
 * Access log: logfmt */

TEST(access_logfmt_starts_with_time_and_quotes_values_that_need_it)
{
    char path[PATH_MAX];
    path_of("logfmt.log", path, sizeof path);
    configure(SINK_OFF, NULL, SINK_FILE, path, 0, LOG_LVL_INFO);
    assert_true(log_access_enabled());
    const char *kv[] = {
        "client", "192.0.2.10:60726",
        "user",   "alice",
        "dst",    "example.com:443",
        "error",  "connection refused", /* space */
        "q",      "say \"hi\"",         /* quotes */
        "eq",     "a=b",                /* = */
        "bs",     "c:\\dir",            /* backslash */
        "tab",    "a\tb",               /* tab */
        "empty",  "",                   /* nothing at all */
        "dash",   "-",
    };
    log_access(kv, sizeof kv / sizeof kv[0] / 2);
    char *got = slurp(path);
    assert_int_equal(count_lines(got), 1);
    assert_memory_equal(got, "time=", 5);
    assert_timestamp(got + 5);
    assert_string_equal(got + 5 + 24,
                        " client=192.0.2.10:60726 user=alice dst=example.com:443"
                        " error=\"connection refused\" q=\"say \\\"hi\\\"\" eq=\"a=b\""
                        " bs=\"c:\\\\dir\" tab=\"a\\u0009b\" empty=\"\" dash=-\n");
    free(got);
}

TEST(access_logfmt_escapes_control_bytes_so_a_record_stays_one_line)
{
    char path[PATH_MAX];
    path_of("logfmt-ctl.log", path, sizeof path);
    configure(SINK_OFF, NULL, SINK_FILE, path, 0, LOG_LVL_INFO);
    /* A hostile destination name trying to forge a second record. */
    const char *kv[] = {"dst", "evil\ntime=2000-01-01T00:00:00.000Z user=root\r", "rep", "0"};
    log_access(kv, 2);
    char *got = slurp(path);
    assert_int_equal(count_lines(got), 1);
    assert_null(strchr(got, '\r'));
    assert_non_null(strstr(got, "\\u000a"));
    assert_non_null(strstr(got, "\\u000d"));
    assert_non_null(strstr(got, " rep=0\n"));
    free(got);
}

TEST(access_records_append_one_line_each)
{
    char path[PATH_MAX];
    path_of("append.log", path, sizeof path);
    configure(SINK_OFF, NULL, SINK_FILE, path, 0, LOG_LVL_INFO);
    for (int i = 0; i < 5; i++) {
        char n[8];
        snprintf(n, sizeof n, "%d", i);
        const char *kv[] = {"n", n};
        log_access(kv, 1);
    }
    char *got = slurp(path);
    assert_int_equal(count_lines(got), 5);
    char *p = got;
    for (int i = 0; i < 5; i++) {
        char want[16];
        snprintf(want, sizeof want, " n=%d\n", i);
        char *nl = strchr(p, '\n');
        assert_non_null(nl);
        assert_memory_equal(nl + 1 - strlen(want), want, strlen(want));
        p = nl + 1;
    }
    free(got);
}

/* ---------------------------------------------------------------------------
 * Access log: JSON */

TEST(access_json_is_one_object_per_line_and_values_round_trip)
{
    char path[PATH_MAX];
    path_of("json.log", path, sizeof path);
    configure(SINK_OFF, NULL, SINK_FILE, path, 1, LOG_LVL_INFO);
    const char *kv[] = {
        "client", "[2001:db8::1]:5000",
        "user",   "-",
        "dst",    "a\"b\\c\x01\x1f\x7f.example:9",
        "error",  "line one\nline two\ttabbed",
        "eq",     "k=v with spaces",
        "empty",  "",
        "utf8",   "caf\xc3\xa9 \xe2\x82\xac",
        "up",     "1000",
    };
    size_t n = sizeof kv / sizeof kv[0] / 2;
    log_access(kv, n);
    char *got = slurp(path);
    assert_int_equal(count_lines(got), 1);
    struct jpair pairs[16];
    size_t np = json_object(got, pairs, 16);
    assert_int_equal(np, n + 1);
    assert_string_equal(pairs[0].key, "time");
    assert_int_equal(strlen(pairs[0].val), 24);
    assert_timestamp(pairs[0].val);
    for (size_t i = 0; i < n; i++) {
        assert_string_equal(pairs[i + 1].key, kv[2 * i]);
        assert_string_equal(pairs[i + 1].val, kv[2 * i + 1]);
    }
    free(got);
}

/* Logs one error-log line as JSON to a fresh file and parses it. */
static size_t json_error_line(const char *name, enum log_level level, const char *text,
                              struct jpair *pairs, size_t max)
{
    char path[PATH_MAX], msg[512];
    struct log_settings c = {.level = LOG_LVL_INFO, .error_sink = SINK_FILE, .error_json = 1};
    path_of(name, path, sizeof path);
    c.error_log_path = path;
    if (log_configure(&c, msg, sizeof msg) < 0)
        fail_msg("log_configure: %s", msg);
    log_msg(level, "%s", text);
    configure(SINK_STDERR, NULL, SINK_OFF, NULL, 0, LOG_LVL_INFO);
    char *got = slurp(path);
    assert_int_equal(count_lines(got), 1);
    size_t n = json_object(got, pairs, max);
    free(got);
    return n;
}

TEST(error_log_json_is_one_object_per_line_with_time_level_and_msg)
{
    struct jpair p[8];
    const char *text = "bad.conf:1:8: \"maybe\"\nis not\\ a value";
    assert_int_equal(json_error_line("error-json.log", LOG_LVL_ERROR, text, p, 8), 3);
    assert_string_equal(p[0].key, "time");
    assert_timestamp(p[0].val);
    assert_string_equal(p[1].key, "level");
    assert_string_equal(p[1].val, "error");
    assert_string_equal(p[2].key, "msg");
    assert_string_equal(p[2].val, text);
    assert_int_equal(json_error_line("warn-json.log", LOG_LVL_WARN, "caf\xc3\xa9", p, 8), 3);
    assert_string_equal(p[1].val, "warn");
    assert_string_equal(p[2].val, "caf\xc3\xa9");
}

TEST(access_json_with_bytes_that_are_not_utf8_is_still_valid_json)
{
    /* Names and user names come from clients as arbitrary bytes; JSON text
     * must be UTF-8 (RFC 8259), or consumers reject the whole line. */
    char path[PATH_MAX];
    path_of("json-bytes.log", path, sizeof path);
    configure(SINK_OFF, NULL, SINK_FILE, path, 1, LOG_LVL_INFO);
    const char *kv[] = {"user", "ab\xff\376cd", "dst", "x\xc3(y.example:80", "rep", "2"};
    log_access(kv, 3);
    char *got = slurp(path);
    assert_int_equal(count_lines(got), 1);
    struct jpair pairs[8];
    size_t np = json_object(got, pairs, 8);
    assert_int_equal(np, 4);
    /* The valid parts survive around whatever stands for the bad bytes. */
    assert_memory_equal(pairs[1].val, "ab", 2);
    assert_string_equal(pairs[1].val + pairs[1].vlen - 2, "cd");
    assert_memory_equal(pairs[2].val, "x", 1);
    assert_string_equal(pairs[2].val + pairs[2].vlen - 13, "(y.example:80");
    assert_string_equal(pairs[3].val, "2");
    free(got);
}

TEST(access_off_writes_nothing)
{
    char path[PATH_MAX];
    path_of("off.log", path, sizeof path);
    configure(SINK_OFF, NULL, SINK_FILE, path, 0, LOG_LVL_INFO);
    const char *kv[] = {"n", "1"};
    log_access(kv, 1);
    configure(SINK_OFF, NULL, SINK_OFF, NULL, 0, LOG_LVL_INFO);
    assert_false(log_access_enabled());
    log_access(kv, 1);
    char *got = slurp(path);
    assert_int_equal(count_lines(got), 1);
    free(got);
}

/* ---------------------------------------------------------------------------
 * Error log levels */

TEST(error_log_filters_by_level_debug_suppressed_at_info)
{
    char path[PATH_MAX];
    path_of("levels.log", path, sizeof path);
    configure(SINK_FILE, path, SINK_OFF, NULL, 0, LOG_LVL_INFO);
    assert_true(log_enabled(LOG_LVL_ERROR));
    assert_true(log_enabled(LOG_LVL_WARN));
    assert_true(log_enabled(LOG_LVL_INFO));
    assert_false(log_enabled(LOG_LVL_DEBUG));
    log_error("e%d", 1);
    log_warn("w%d", 1);
    log_info("i%d", 1);
    log_debug("d%d", 1);
    log_msg(LOG_LVL_DEBUG, "d%d", 2); /* filtered by log_msg itself too */
    char *got = slurp(path);
    assert_int_equal(count_lines(got), 3);
    /* "<time> level: message", in order. */
    char *l1 = got, *l2 = strchr(l1, '\n') + 1, *l3 = strchr(l2, '\n') + 1;
    assert_timestamp(l1);
    assert_memory_equal(l1 + 24, " error: e1\n", 11);
    assert_timestamp(l2);
    assert_memory_equal(l2 + 24, " warn: w1\n", 10);
    assert_timestamp(l3);
    assert_memory_equal(l3 + 24, " info: i1\n", 10);
    assert_null(strstr(got, "debug"));
    free(got);
}

TEST(error_log_level_warn_drops_info_and_debug_level_keeps_all)
{
    char path[PATH_MAX];
    path_of("levels2.log", path, sizeof path);
    configure(SINK_FILE, path, SINK_OFF, NULL, 0, LOG_LVL_WARN);
    log_info("dropped");
    log_warn("kept-warn");
    configure(SINK_FILE, path, SINK_OFF, NULL, 0, LOG_LVL_DEBUG);
    assert_true(log_enabled(LOG_LVL_DEBUG));
    log_debug("kept-debug %s", "x");
    configure(SINK_FILE, path, SINK_OFF, NULL, 0, LOG_LVL_ERROR);
    log_warn("dropped too");
    log_error("kept-error");
    char *got = slurp(path);
    assert_int_equal(count_lines(got), 3);
    assert_null(strstr(got, "dropped"));
    assert_non_null(strstr(got, " warn: kept-warn\n"));
    assert_non_null(strstr(got, " debug: kept-debug x\n"));
    assert_non_null(strstr(got, " error: kept-error\n"));
    free(got);
}

/* ---------------------------------------------------------------------------
 * Rotation, syslog, failures */

TEST(reopen_after_rename_writes_to_a_new_file_at_the_old_path)
{
    char acc[PATH_MAX], acc_old[PATH_MAX], err[PATH_MAX], err_old[PATH_MAX];
    path_of("rot-access.log", acc, sizeof acc);
    path_of("rot-access.log.1", acc_old, sizeof acc_old);
    path_of("rot-error.log", err, sizeof err);
    path_of("rot-error.log.1", err_old, sizeof err_old);
    configure(SINK_FILE, err, SINK_FILE, acc, 0, LOG_LVL_INFO);
    const char *a[] = {"n", "before"}, *b[] = {"n", "between"}, *c[] = {"n", "after"};
    log_access(a, 1);
    log_error("err-before");
    /* logrotate renames; until told, lines still go to the renamed file. */
    assert_int_equal(rename(acc, acc_old), 0);
    assert_int_equal(rename(err, err_old), 0);
    log_access(b, 1);
    log_error("err-between");
    assert_int_equal(log_reopen(), 0);
    log_access(c, 1);
    log_error("err-after");

    char *old = slurp(acc_old), *now = slurp(acc);
    assert_int_equal(count_lines(old), 2);
    assert_non_null(strstr(old, " n=before\n"));
    assert_non_null(strstr(old, " n=between\n"));
    assert_int_equal(count_lines(now), 1);
    assert_non_null(strstr(now, " n=after\n"));
    free(old);
    free(now);
    old = slurp(err_old);
    now = slurp(err);
    assert_int_equal(count_lines(old), 2);
    assert_non_null(strstr(old, "err-between"));
    assert_int_equal(count_lines(now), 1);
    assert_non_null(strstr(now, "err-after"));
    free(old);
    free(now);

    /* The new file is created with mode 0640 (less what the umask takes). */
    struct stat st;
    mode_t um = umask(0);
    umask(um);
    assert_int_equal(stat(acc, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0640 & ~um);
}

TEST(syslog_sink_does_not_write_to_the_file)
{
    char acc[PATH_MAX], err[PATH_MAX];
    path_of("sys-access.log", acc, sizeof acc);
    path_of("sys-error.log", err, sizeof err);
    configure(SINK_FILE, err, SINK_FILE, acc, 0, LOG_LVL_INFO);
    const char *kv[] = {"n", "file"};
    log_access(kv, 1);
    log_error("to the file");
    configure(SINK_SYSLOG, NULL, SINK_SYSLOG, NULL, 0, LOG_LVL_INFO);
    assert_true(log_access_enabled());
    const char *kv2[] = {"n", "syslog"};
    log_access(kv2, 1);
    log_error("to syslog");
    /* A reopen with no file sink touches nothing. */
    assert_int_equal(log_reopen(), 0);
    char *a = slurp(acc), *e = slurp(err);
    assert_int_equal(count_lines(a), 1);
    assert_null(strstr(a, "syslog"));
    assert_int_equal(count_lines(e), 1);
    assert_null(strstr(e, "syslog"));
    free(a);
    free(e);
}

TEST(failed_configure_keeps_both_previous_targets)
{
    char acc[PATH_MAX], err[PATH_MAX], err2[PATH_MAX], bad[PATH_MAX];
    path_of("keep-access.log", acc, sizeof acc);
    path_of("keep-error.log", err, sizeof err);
    path_of("keep-error-new.log", err2, sizeof err2);
    path_of("no-such-dir/access.log", bad, sizeof bad);
    configure(SINK_FILE, err, SINK_FILE, acc, 0, LOG_LVL_INFO);

    /* New targets: a fine error log, an access log that cannot be opened. */
    struct log_settings *c = calloc(1, sizeof *c);
    char msg[512] = "";
    assert_non_null(c);
    c->error_sink = SINK_FILE;
    c->error_log_path = err2;
    c->access_sink = SINK_FILE;
    c->access_log_path = bad;
    c->access_json = 1;
    c->level = LOG_LVL_DEBUG;
    assert_int_equal(log_configure(c, msg, sizeof msg), -1);
    free(c);
    assert_non_null(strstr(msg, bad));

    /* Everything as before: level, format and both files. */
    assert_false(log_enabled(LOG_LVL_DEBUG));
    log_error("still here");
    const char *kv[] = {"n", "1"};
    log_access(kv, 1);
    char *e = slurp(err), *e2 = slurp(err2), *a = slurp(acc);
    assert_non_null(strstr(e, "still here"));
    assert_null(strstr(e2, "still here"));
    assert_non_null(strstr(a, " n=1\n")); /* logfmt, not JSON */
    free(e);
    free(e2);
    free(a);
}

/* ---------------------------------------------------------------------------
 * The ring between a thread that logs and the log thread. */

TEST(ring_returns_lines_in_order_with_their_tags)
{
    struct logring *r = logring_new(1024);
    char buf[64];
    uint8_t tag;
    assert_non_null(r);
    assert_int_equal(logring_push(r, 1, "first", 5), 0);
    assert_int_equal(logring_push(r, 0x80, "second line", 11), 0);
    assert_int_equal(logring_pop(r, &tag, buf, sizeof buf), 5);
    assert_int_equal(tag, 1);
    assert_memory_equal(buf, "first", 5);
    assert_int_equal(logring_pop(r, &tag, buf, sizeof buf), 11);
    assert_int_equal(tag, 0x80);
    assert_memory_equal(buf, "second line", 11);
    assert_int_equal(logring_pop(r, &tag, buf, sizeof buf), -1);
    assert_int_equal(logring_dropped(r), 0);
    logring_free(r);
}

TEST(ring_size_must_be_a_power_of_two)
{
    assert_null(logring_new(1000));
    assert_null(logring_new(0));
}

TEST(ring_full_drops_the_line_counts_it_and_takes_lines_again_once_read)
{
    /* 64 bytes: three 16-byte lines with their 4-byte headers fill 60. */
    struct logring *r = logring_new(64);
    char buf[64];
    uint8_t tag;
    assert_non_null(r);
    for (int i = 0; i < 3; i++)
        assert_int_equal(logring_push(r, (uint8_t)i, "0123456789abcdef", 16), 0);
    assert_int_equal(logring_push(r, 9, "0123456789abcdef", 16), -1);
    assert_int_equal(logring_push(r, 9, "x", 1), -1); /* 4 + 1 bytes in 4 */
    assert_int_equal(logring_push(r, 9, "", 0), 0);   /* a bare header fits */
    assert_int_equal(logring_dropped(r), 2);
    assert_int_equal(logring_pop(r, &tag, buf, sizeof buf), 16);
    assert_int_equal(tag, 0);
    assert_int_equal(logring_push(r, 3, "0123456789abcdef", 16), 0);
    for (int want = 1; want <= 3; want++) {
        assert_int_equal(logring_pop(r, &tag, buf, sizeof buf), want == 3 ? 0 : 16);
        assert_int_equal(tag, want == 3 ? 9 : want);
    }
    assert_int_equal(logring_pop(r, &tag, buf, sizeof buf), 16);
    assert_int_equal(tag, 3);
    assert_int_equal(logring_dropped(r), 2);
    logring_free(r);
}

TEST(ring_lines_across_the_end_come_out_whole)
{
    struct logring *r = logring_new(128);
    char line[40], buf[64];
    uint8_t tag;
    assert_non_null(r);
    /* Lengths prime to the size, so headers and bodies land on the wrap. */
    for (int i = 0; i < 500; i++) {
        size_t n = 1 + (size_t)(i * 7) % 37;
        for (size_t k = 0; k < n; k++)
            line[k] = (char)('a' + (i + (int)k) % 26);
        assert_int_equal(logring_push(r, (uint8_t)i, line, n), 0);
        assert_int_equal(logring_pop(r, &tag, buf, sizeof buf), (ssize_t)n);
        assert_int_equal(tag, (uint8_t)i);
        assert_memory_equal(buf, line, n);
    }
    assert_int_equal(logring_dropped(r), 0);
    logring_free(r);
}

TEST(ring_pop_cuts_a_line_longer_than_the_buffer)
{
    struct logring *r = logring_new(256);
    char buf[4];
    uint8_t tag;
    assert_non_null(r);
    assert_int_equal(logring_push(r, 0, "abcdefgh", 8), 0);
    assert_int_equal(logring_push(r, 0, "ij", 2), 0);
    assert_int_equal(logring_pop(r, &tag, buf, sizeof buf), 4);
    assert_memory_equal(buf, "abcd", 4);
    assert_int_equal(logring_pop(r, &tag, buf, sizeof buf), 2);
    assert_memory_equal(buf, "ij", 2);
    logring_free(r);
}

/* ---------------------------------------------------------------------------
 * Opening files, and the log thread. */

TEST(symlink_at_the_log_path_is_refused_and_its_target_untouched)
{
    char target[PATH_MAX], link_[PATH_MAX], msg[512];
    struct log_settings c;
    path_of("precious", target, sizeof target);
    path_of("link.log", link_, sizeof link_);
    FILE *f = fopen(target, "w");
    assert_non_null(f);
    fputs("keep\n", f);
    fclose(f);
    assert_int_equal(symlink(target, link_), 0);
    memset(&c, 0, sizeof c);
    c.error_sink = SINK_FILE;
    c.error_log_path = link_;
    c.access_sink = SINK_OFF;
    assert_int_equal(log_configure(&c, msg, sizeof msg), -1);
    assert_non_null(strstr(msg, link_));
    assert_non_null(strstr(msg, "symbolic link"));
    char *t = slurp(target);
    assert_string_equal(t, "keep\n");
    free(t);
}

TEST(log_thread_keeps_order_reopens_and_stop_writes_everything)
{
    char err[PATH_MAX], acc[PATH_MAX], old[PATH_MAX];
    path_of("thread-error.log", err, sizeof err);
    path_of("thread-access.log", acc, sizeof acc);
    path_of("thread-error.log.1", old, sizeof old);
    configure(SINK_FILE, err, SINK_FILE, acc, 0, LOG_LVL_INFO);
    uint64_t dropped = log_dropped();
    assert_int_equal(log_start(), 0);
    /* 1200 lines of at most 48 bytes with their headers fit one 64 KiB
     * ring even if the thread never ran: none may be dropped. */
    for (int i = 0; i < 600; i++) {
        char v[16];
        snprintf(v, sizeof v, "%d", i);
        const char *kv[] = {"n", v};
        log_info("line %d", i);
        log_access(kv, 1);
    }
    assert_int_equal(rename(err, old), 0);
    assert_int_equal(log_reopen(), 0);
    /* The log thread reopens: wait for the new file. */
    uint64_t until = now_ms() + WAIT_MS;
    while (access(err, F_OK) != 0 && now_ms() < until)
        usleep(1000);
    log_info("after reopen");
    log_stop();
    assert_int_equal(log_dropped(), dropped);
    /* Lines queued before the reopen may land on either side of it; in
     * order, the two files hold them all. */
    char *a = slurp(acc), *e = slurp(old), *e2 = slurp(err);
    char *both = malloc(strlen(e) + strlen(e2) + 1);
    assert_non_null(both);
    strcpy(stpcpy(both, e), e2);
    const char *pa = a, *pe = both;
    for (int i = 0; i < 600; i++) {
        char want[32];
        snprintf(want, sizeof want, " n=%d\n", i);
        assert_non_null(pa = strstr(pa, want));
        snprintf(want, sizeof want, "info: line %d\n", i);
        assert_non_null(pe = strstr(pe, want));
    }
    assert_non_null(strstr(pe, "info: after reopen\n"));
    assert_non_null(strstr(e2, "info: after reopen\n"));
    assert_int_equal(count_lines(a), 600);
    assert_int_equal(count_lines(both), 601);
    free(a);
    free(e);
    free(e2);
    free(both);
}

/* Reads the FIFO until n lines came or WAIT_MS passed; returns the count. */
static size_t read_lines(int fd, size_t n)
{
    char buf[65536];
    size_t got = 0;
    uint64_t until = now_ms() + WAIT_MS;
    while (got < n && now_ms() < until) {
        ssize_t r = read(fd, buf, sizeof buf);
        if (r < 0 && errno != EAGAIN)
            fail_msg("read: %s", strerror(errno));
        for (ssize_t i = 0; i < r; i++)
            got += buf[i] == '\n';
        if (r <= 0)
            usleep(1000);
    }
    return got;
}

TEST(stuck_pipe_drops_lines_without_blocking_and_every_line_is_written_or_counted)
{
    char fifo[PATH_MAX];
    path_of("stuck.fifo", fifo, sizeof fifo);
    assert_int_equal(mkfifo(fifo, 0600), 0);
    int rd = open(fifo, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    assert_true(rd >= 0);
    assert_true(fcntl(rd, F_SETPIPE_SZ, 4096) >= 0);
    configure(SINK_FILE, fifo, SINK_OFF, NULL, 0, LOG_LVL_INFO);
    uint64_t before = log_dropped();
    assert_int_equal(log_start(), 0);
    /* 3000 lines of about 150 bytes: 450 KB against 4 KiB of pipe and a
     * 64 KiB ring. Nobody reads yet; the calls must return all the same. */
    enum { LINES = 3000 };
    for (int i = 0; i < LINES; i++)
        log_warn("line %04d %0100d", i, 0);
    uint64_t dropped = log_dropped() - before;
    assert_true(dropped > 0);
    assert_true(dropped < LINES);
    /* Reading now lets every line that was not counted come out. */
    assert_int_equal(read_lines(rd, LINES - dropped), LINES - dropped);
    log_stop();
    assert_int_equal(log_dropped() - before, dropped);
    configure(SINK_STDERR, NULL, SINK_OFF, NULL, 0, LOG_LVL_INFO);
    close(rd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(access_logfmt_starts_with_time_and_quotes_values_that_need_it),
        cmocka_unit_test(access_logfmt_escapes_control_bytes_so_a_record_stays_one_line),
        cmocka_unit_test(access_records_append_one_line_each),
        cmocka_unit_test(access_json_is_one_object_per_line_and_values_round_trip),
        cmocka_unit_test(access_json_with_bytes_that_are_not_utf8_is_still_valid_json),
        cmocka_unit_test(error_log_json_is_one_object_per_line_with_time_level_and_msg),
        cmocka_unit_test(access_off_writes_nothing),
        cmocka_unit_test(error_log_filters_by_level_debug_suppressed_at_info),
        cmocka_unit_test(error_log_level_warn_drops_info_and_debug_level_keeps_all),
        cmocka_unit_test(reopen_after_rename_writes_to_a_new_file_at_the_old_path),
        cmocka_unit_test(syslog_sink_does_not_write_to_the_file),
        cmocka_unit_test(failed_configure_keeps_both_previous_targets),
        cmocka_unit_test(ring_returns_lines_in_order_with_their_tags),
        cmocka_unit_test(ring_size_must_be_a_power_of_two),
        cmocka_unit_test(ring_full_drops_the_line_counts_it_and_takes_lines_again_once_read),
        cmocka_unit_test(ring_lines_across_the_end_come_out_whole),
        cmocka_unit_test(ring_pop_cuts_a_line_longer_than_the_buffer),
        cmocka_unit_test(symlink_at_the_log_path_is_refused_and_its_target_untouched),
        cmocka_unit_test(log_thread_keeps_order_reopens_and_stop_writes_everything),
        cmocka_unit_test(
            stuck_pipe_drops_lines_without_blocking_and_every_line_is_written_or_counted),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
