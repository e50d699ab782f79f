/* Prometheus text exposition over a minimal, read-only HTTP/1.0 server. */
#include "metrics.h"

#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "fdbudget.h"
#include "log.h"
#include "loop.h"
#include "net.h"
#include "sessq.h"
#include "stats.h"
#include "userstats.h"
#include "version.h"
#include "wenv.h"
#include "worker.h"

/* Connections served at once. Past it, the oldest one still waiting for
 * its request makes room: idle connections cannot lock a load balancer's
 * health check out. */
#define MAX_SCRAPES 256
#define REQUEST_MAX 4096
#define REQUEST_TIMEOUT_MS 2000 /* from accept to a complete request head */
#define SCRAPE_TIMEOUT_MS 5000  /* then to the last byte of the answer */
#define SESSQ_TIMEOUT_MS 2000   /* for every worker to answer about its sessions */
#define SESSQ_POLL_MS 2

const uint32_t stats_bucket_ms[STATS_BUCKETS - 1] = {1,   2,   5,    10,   25,   50,
                                                     100, 250, 1000, 2500, 10000};

void stats_observe(struct histogram *h, uint64_t ms)
{
    int i = 0;
    while (i < STATS_BUCKETS - 1 && ms > stats_bucket_ms[i])
        i++;
    stat_inc(&h->bucket[i]);
    stat_add(&h->sum_ms, ms);
    stat_inc(&h->count);
}

struct scrape {
    struct scrape *prev, *next; /* oldest first */
    struct loop_io io;
    struct loop_timer timer;
    char req[REQUEST_MAX];
    size_t len;
    char *out;
    size_t out_len, out_off;
    int head_only; /* HEAD: the answer's head without its body */
    union addr_any peer;
    struct sessq *q;  /* a question to the workers, not yet answered */
    uint64_t q_until; /* when to stop waiting for it */
};

static struct {
    struct loop *loop;
    struct loop_io listener;
    pthread_t thread;
    int running;
    atomic_int stop;
    struct worker **w; /* published once, read by the metrics thread */
    _Atomic int nworkers;
    atomic_int draining;
    int sessions_access; /* enum metrics_sessions */
    atomic_ulong reloads;
    atomic_int last_reload_ok;
    _Atomic double last_load_ok_at; /* Unix time of the last configuration that loaded */
    int active;
    struct scrape *head, *tail; /* open connections, oldest first */
} m = {.last_reload_ok = 1};

void metrics_set_workers(struct worker **w, int n)
{
    m.w = w;
    atomic_store(&m.nworkers, n);
}

void metrics_set_draining(void)
{
    atomic_store(&m.draining, 1);
}

static double now_unix(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

void metrics_reloaded(int ok)
{
    atomic_fetch_add(&m.reloads, 1);
    atomic_store(&m.last_reload_ok, ok);
    if (ok)
        atomic_store(&m.last_load_ok_at, now_unix());
}

/* ---------------- rendering ---------------- */

static void sum_stats(struct stats *t)
{
    const stat_t *src;
    stat_t *dst = (stat_t *)t;
    size_t n = sizeof *t / sizeof(stat_t);
    memset(t, 0, sizeof *t);
    for (int k = 0; k < atomic_load(&m.nworkers); k++) {
        src = (const stat_t *)&worker_env(m.w[k])->stats;
        for (size_t i = 0; i < n; i++)
            stat_add(&dst[i], stat_get(&src[i]));
    }
}

static void metric(FILE *f, const char *name, const char *type, const char *help)
{
    fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void histogram(FILE *f, const char *name, const char *help, const struct histogram *h)
{
    uint64_t cum = 0;
    metric(f, name, "histogram", help);
    for (int i = 0; i < STATS_BUCKETS; i++) {
        cum += stat_get(&h->bucket[i]);
        if (i < STATS_BUCKETS - 1)
            fprintf(f, "%s_bucket{le=\"%g\"} %llu\n", name, stats_bucket_ms[i] / 1000.0,
                    (unsigned long long)cum);
        else
            fprintf(f, "%s_bucket{le=\"+Inf\"} %llu\n", name, (unsigned long long)cum);
    }
    fprintf(f, "%s_sum %g\n%s_count %llu\n", name, stat_get(&h->sum_ms) / 1000.0, name,
            (unsigned long long)stat_get(&h->count));
}

static void sessions(FILE *f, const struct stats *t)
{
    static const char *const cmds[] = {"none", "connect", "bind", "udp"};
    metric(f, "socks5d_sessions_total", "counter", "Sessions ended, by command and reply code.");
    for (int c = 0; c < 4; c++)
        for (int r = 0; r < 10; r++) {
            uint64_t v = stat_get(&t->sessions[c][r]);
            if (v || (c == 1 && r == 0))
                fprintf(f, "socks5d_sessions_total{command=\"%s\",rep=\"%s\"} %llu\n", cmds[c],
                        r == 9 ? "none"
                               : (const char *[]){"0", "1", "2", "3", "4", "5", "6", "7", "8"}[r],
                        (unsigned long long)v);
        }
}

static void handshakes(FILE *f, const struct stats *t)
{
    static const char *const why[HSF_MAX] = {"timeout",   "protocol", "no_method",     "auth",
                                             "throttled", "closed",   "proxy_protocol"};
    metric(f, "socks5d_handshake_failures_total", "counter",
           "Connections that failed before a request was decided.");
    for (int i = 0; i < HSF_MAX; i++)
        fprintf(f, "socks5d_handshake_failures_total{reason=\"%s\"} %llu\n", why[i],
                (unsigned long long)stat_get(&t->handshake_fail[i]));
}

static void pair(FILE *f, const char *name, const char *type, const char *help, const char *label,
                 const char *a, uint64_t va, const char *b, uint64_t vb)
{
    metric(f, name, type, help);
    fprintf(f, "%s{%s=\"%s\"} %llu\n%s{%s=\"%s\"} %llu\n", name, label, a, (unsigned long long)va,
            name, label, b, (unsigned long long)vb);
}

static void single(FILE *f, const char *name, const char *type, const char *help, uint64_t v)
{
    metric(f, name, type, help);
    fprintf(f, "%s %llu\n", name, (unsigned long long)v);
}

/* The process's start (Unix seconds) and resident memory (bytes) from
 * /proc, as the Prometheus client libraries read them; 0 when unreadable. */
static double process_start_time(void)
{
    char buf[1024], line[256];
    double btime = 0;
    unsigned long long start = 0;
    FILE *f = fopen("/proc/stat", "re");
    if (!f)
        return 0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "btime %lf", &btime) == 1)
            break;
    fclose(f);
    f = fopen("/proc/self/stat", "re");
    size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
    if (f)
        fclose(f);
    buf[n] = '\0';
    /* Field 22 (starttime, clock ticks after boot) counts from after the
     * command name, which may hold spaces and parentheses. */
    const char *p = strrchr(buf, ')');
    if (!p || sscanf(p + 2,
                     "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %*u %*u %*d %*d %*d %*d "
                     "%*d %*d %llu",
                     &start) != 1)
        return 0;
    return btime + (double)start / (double)sysconf(_SC_CLK_TCK);
}

static uint64_t process_resident_bytes(void)
{
    unsigned long long size = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "re");
    if (!f)
        return 0;
    if (fscanf(f, "%llu %llu", &size, &resident) != 2)
        resident = 0;
    fclose(f);
    return resident * (uint64_t)sysconf(_SC_PAGESIZE);
}

static void single_real(FILE *f, const char *name, const char *type, const char *help, double v)
{
    metric(f, name, type, help);
    fprintf(f, "%s %.6f\n", name, v);
}

/* The standard process_* metrics every Prometheus client exports. */
static void process_metrics(FILE *f)
{
    struct rlimit rl = {0, 0};
    struct rusage ru;
    double cpu = 0;
    if (getrusage(RUSAGE_SELF, &ru) == 0)
        cpu = (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
              ru.ru_stime.tv_usec / 1e6;
    getrlimit(RLIMIT_NOFILE, &rl);
    single_real(f, "process_cpu_seconds_total", "counter",
                "Total user and system CPU time spent in seconds.", cpu);
    single_real(f, "process_start_time_seconds", "gauge",
                "Start time of the process since unix epoch in seconds.", process_start_time());
    single(f, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.",
           process_resident_bytes());
    single(f, "process_open_fds", "gauge", "Number of open file descriptors.",
           fdbudget_count_open());
    single(f, "process_max_fds", "gauge", "Maximum number of open file descriptors.",
           (uint64_t)rl.rlim_cur);
}

/* One series per listening address ever used: v is indexed by slot. */
static void per_listener(FILE *f, const char *name, const char *type, const char *help,
                         const stat_t *v)
{
    metric(f, name, type, help);
    for (unsigned i = 0; i < lslots_count(); i++)
        fprintf(f, "%s{listener=\"%s\"} %llu\n", name, lslots_name(i),
                (unsigned long long)stat_get(&v[i]));
}

static void listeners(FILE *f, const struct stats *t)
{
    per_listener(f, "socks5d_listener_connections_total", "counter",
                 "Connections accepted, by listening address.", t->listener_conns);
    per_listener(f, "socks5d_listener_sessions_active", "gauge",
                 "Sessions open now, by the listening address that accepted them.",
                 t->listener_active);
    per_listener(f, "socks5d_listener_handshake_failures_total", "counter",
                 "Connections that failed before a request was decided, by listening address.",
                 t->listener_hs_fail);
}

/* How evenly sessions are spread over the workers (worker.c balances
 * where they start). */
static void workers(FILE *f, const struct stats *t)
{
    int n = atomic_load(&m.nworkers);
    single(f, "socks5d_workers", "gauge", "Worker threads.", (uint64_t)n);
    metric(f, "socks5d_worker_sessions_active", "gauge", "Sessions open now, by worker thread.");
    for (int k = 0; k < n; k++)
        fprintf(f, "socks5d_worker_sessions_active{worker=\"%d\"} %llu\n", k,
                (unsigned long long)stat_get(&worker_env(m.w[k])->stats.active));
    single(f, "socks5d_connections_handed_off_total", "counter",
           "Connections accepted by one worker and started by a less busy one.",
           stat_get(&t->handed_off));
}

static char *render(size_t *len)
{
    struct stats t;
    char *buf = NULL;
    FILE *f = open_memstream(&buf, len);
    if (!f)
        return NULL;
    sum_stats(&t);
    process_metrics(f);
    metric(f, "socks5d_build_info", "gauge", "Build information.");
    fprintf(f, "socks5d_build_info{version=\"%s\"} 1\n", SOCKS5D_VERSION);
    workers(f, &t);
    single(f, "socks5d_sessions_active", "gauge", "Sessions open now.", stat_get(&t.active));
    sessions(f, &t);
    listeners(f, &t);
    handshakes(f, &t);
    single(f, "socks5d_probes_total", "counter",
           "Connections closed without sending a byte (health checks).", stat_get(&t.probes));
    pair(f, "socks5d_auth_total", "counter", "Username/password verifications.", "result",
         "success", stat_get(&t.auth_ok), "failure", stat_get(&t.auth_fail));
    single(f, "socks5d_auth_rejected_busy_total", "counter",
           "Logins refused at once because the password verification queue was full.",
           stat_get(&t.auth_busy));
    pair(f, "socks5d_gssapi_auth_total", "counter", "GSS-API (Kerberos) authentications.", "result",
         "success", stat_get(&t.gss_ok), "failure", stat_get(&t.gss_fail));
    single(
        f, "socks5d_gssapi_bad_messages_total", "counter",
        "GSS-API sessions ended by a message that failed its integrity, replay or framing check.",
        stat_get(&t.gss_bad));
    pair(f, "socks5d_refused_total", "counter",
         "Requests refused by access rules or session limits.", "reason", "rule",
         stat_get(&t.refused_rule), "limit", stat_get(&t.refused_limit));
    pair(f, "socks5d_bytes_total", "counter", "Bytes relayed (up: client to target).", "direction",
         "up", stat_get(&t.bytes_up), "down", stat_get(&t.bytes_down));
    pair(f, "socks5d_udp_datagrams_total", "counter", "UDP datagrams relayed.", "direction", "up",
         stat_get(&t.dgrams_up), "down", stat_get(&t.dgrams_down));
    single(f, "socks5d_udp_datagrams_dropped_total", "counter",
           "UDP datagrams dropped (foreign source, malformed, fragmented, unsolicited).",
           stat_get(&t.dgrams_dropped));
    histogram(f, "socks5d_dns_lookup_duration_seconds", "Asynchronous DNS lookups.", &t.dns);
    single(f, "socks5d_dns_failures_total", "counter", "DNS lookups that found no address.",
           stat_get(&t.dns_failures));
    histogram(f, "socks5d_connect_duration_seconds", "Outbound connects, first attempt to success.",
              &t.connect);
    single(f, "socks5d_log_lines_dropped_total", "counter",
           "Log lines dropped because the log sink could not keep up.", log_dropped());
    single(f, "socks5d_config_reloads_total", "counter", "Configuration reloads attempted.",
           atomic_load(&m.reloads));
    single(f, "socks5d_config_last_reload_success", "gauge", "1 if the last reload succeeded.",
           (uint64_t)atomic_load(&m.last_reload_ok));
    single_real(f, "socks5d_config_last_reload_success_timestamp_seconds", "gauge",
                "When the configuration last loaded (start or reload), in Unix seconds.",
                atomic_load(&m.last_load_ok_at));
    single(f, "socks5d_draining", "gauge", "1 while shutting down.",
           (uint64_t)atomic_load(&m.draining));
    userstats_render(f);
    if (fclose(f) != 0) {
        free(buf);
        return NULL;
    }
    return buf;
}

/* ---------------- HTTP ---------------- */

static void scrape_end(struct scrape *s)
{
    loop_io_close(m.loop, &s->io);
    fdbudget_give(1);
    loop_timer_cancel(m.loop, &s->timer);
    *(s->prev ? &s->prev->next : &m.head) = s->next;
    *(s->next ? &s->next->prev : &m.tail) = s->prev;
    m.active--;
    sessq_unref(s->q);
    free(s->out);
    free(s);
}

static void respond(struct scrape *s, const char *status, const char *type, char *body, size_t blen)
{
    char *out = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&out, &len);
    if (f) {
        fprintf(
            f,
            "HTTP/1.0 %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n",
            status, type, blen);
        if (!s->head_only)
            fwrite(body, 1, blen, f);
        fclose(f);
    }
    free(body);
    s->out = out;
    s->out_len = out ? len : 0;
}

static void scrape_timeout(struct loop_timer *t);

/* ---------------- the session list ---------------- */

static int hexval(char c)
{
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                  : -1;
}

/* The value of key in the query string qs ("a=1&b=x%20y"), decoded into
 * out. Returns 1 when present, 0 when absent, -1 when malformed. */
static int query_value(const char *qs, const char *key, char *out, size_t outlen)
{
    size_t klen = strlen(key);
    for (const char *p = qs; p && *p; p = strchr(p, '&') ? strchr(p, '&') + 1 : NULL) {
        if (strncmp(p, key, klen) != 0 || p[klen] != '=')
            continue;
        size_t n = 0;
        for (p += klen + 1; *p && *p != '&'; p++) {
            int c = *p == '+' ? ' ' : (unsigned char)*p;
            if (*p == '%') {
                int hi = hexval(p[1]), lo = hi < 0 ? -1 : hexval(p[2]);
                if (lo < 0)
                    return -1;
                c = hi * 16 + lo;
                p += 2;
            }
            if (c == 0 || n + 1 >= outlen)
                return -1;
            out[n++] = (char)c;
        }
        out[n] = '\0';
        return 1;
    }
    return 0;
}

/* The answer once every worker has answered: the sessions, or how many
 * were closed. */
static void answer_sessq(struct scrape *s)
{
    struct sessq *q = s->q;
    char *body = NULL, peer[ADDR_STRLEN];
    size_t len = 0;
    unsigned closed = 0;
    FILE *f = open_memstream(&body, &len);
    for (int k = 0; k < q->nparts; k++)
        closed += q->part[k].closed;
    if (f) {
        if (q->close) {
            fprintf(f, "{\"closed\":%u}\n", closed);
        } else {
            int first = 1;
            fputs("{\"sessions\":[", f);
            for (int k = 0; k < q->nparts; k++)
                if (q->part[k].len) {
                    fputs(first ? "" : ",", f);
                    fwrite(q->part[k].json, 1, q->part[k].len, f);
                    first = 0;
                }
            fputs("]}\n", f);
        }
        if (fclose(f) != 0) {
            free(body);
            body = NULL;
        }
    }
    if (q->close) {
        char what[300];
        if (q->user)
            snprintf(what, sizeof what, "user %s", q->user);
        else
            snprintf(what, sizeof what, "id %llu", (unsigned long long)q->id);
        log_info("metrics: %u session%s of %s closed at the request of %s", closed,
                 closed == 1 ? "" : "s", what, addr_str(&s->peer.sa, peer, sizeof peer));
    }
    s->q = NULL;
    sessq_unref(q);
    if (body)
        respond(s, "200 OK", "application/json", body, len);
    else
        respond(s, "500 Internal Server Error", "text/plain", strdup("out of memory\n"), 14);
}

static void send_answer(struct scrape *s);

static void sessq_poll(struct loop_timer *t)
{
    struct scrape *s = container_of(t, struct scrape, timer);
    if (sessq_answered(s->q)) {
        answer_sessq(s);
    } else if (loop_now(m.loop) < s->q_until) {
        loop_timer_arm(m.loop, &s->timer, SESSQ_POLL_MS, sessq_poll);
        return;
    } else {
        sessq_unref(s->q);
        s->q = NULL;
        respond(s, "503 Service Unavailable", "text/plain", strdup("workers did not answer\n"), 23);
    }
    loop_timer_arm(m.loop, &s->timer, SCRAPE_TIMEOUT_MS, scrape_timeout);
    send_answer(s);
}

/* Asks every worker about its sessions; the answer comes in sessq_poll. */
static void ask_workers(struct scrape *s, int close, uint64_t id, const char *user)
{
    int n = atomic_load(&m.nworkers);
    struct sessq *q = n > 0 ? sessq_new(n, close, id, user) : NULL;
    if (!q) {
        respond(s, "503 Service Unavailable", "text/plain", strdup("not ready\n"), 10);
        return;
    }
    s->q = q;
    s->q_until = loop_now(m.loop) + SESSQ_TIMEOUT_MS;
    for (int k = 0; k < n; k++)
        worker_sessq(m.w[k], &q->part[k]);
}

/* A session id: decimal digits only, not 0. Returns 0 or -1. */
static int parse_id(const char *v, uint64_t *id)
{
    char *end;
    if (!isdigit((unsigned char)v[0]))
        return -1;
    errno = 0;
    *id = strtoull(v, &end, 10);
    return *end || errno || *id == 0 ? -1 : 0;
}

/* GET /sessions lists the sessions; POST /sessions/close?id=N or ?user=NAME
 * ends them. They name users and destinations and can end tunnels: only
 * from loopback unless the configuration says otherwise. */
static void sessions_route(struct scrape *s, const char *method, const char *path, const char *qs)
{
    char user[256], idbuf[24];
    int close = strcmp(path, "/sessions/close") == 0;
    if (m.sessions_access == METRICS_SESSIONS_OFF) {
        respond(s, "404 Not Found", "text/plain", strdup("sessions are off\n"), 17);
    } else if (m.sessions_access == METRICS_SESSIONS_LOOPBACK && !addr_is_loopback(&s->peer.sa)) {
        respond(s, "403 Forbidden", "text/plain", strdup("loopback only\n"), 14);
    } else if (close ? strcmp(method, "POST") != 0 : !!strcmp(method, "GET") && !s->head_only) {
        respond(s, "405 Method Not Allowed", "text/plain",
                strdup(close ? "POST only\n" : "GET or HEAD only\n"), close ? 10 : 17);
    } else if (!close) {
        ask_workers(s, 0, 0, NULL);
    } else {
        int has_user = query_value(qs, "user", user, sizeof user);
        int has_id = query_value(qs, "id", idbuf, sizeof idbuf);
        uint64_t id = 0;
        if (has_user < 0 || has_id < 0 || has_user + has_id != 1 ||
            (has_id && parse_id(idbuf, &id) < 0))
            respond(s, "400 Bad Request", "text/plain",
                    strdup("give one of id=SESSION or user=NAME\n"), 36);
        else
            ask_workers(s, 1, id, has_user ? user : NULL);
    }
}

/* Decides the answer once the request head is in. */
static void route(struct scrape *s)
{
    /* Room for a user name of 255 bytes, each percent-encoded. */
    char method[8], path[1024], *qs;
    size_t len = 0, plen;
    int off = 0;
    if (sscanf(s->req, "%7s %n", method, &off) != 1 || off == 0 ||
        (plen = strcspn(s->req + off, " \r\n")) == 0) {
        respond(s, "400 Bad Request", "text/plain", strdup("bad request\n"), 12);
        return;
    }
    if (plen >= sizeof path) {
        respond(s, "414 URI Too Long", "text/plain", strdup("too long\n"), 9);
        return;
    }
    memcpy(path, s->req + off, plen);
    path[plen] = '\0';
    /* Scrapers and probes may add a query string (a cache buster, Prometheus
     * params): it selects nothing but the sessions to close. */
    qs = strchr(path, '?');
    if (qs)
        *qs++ = '\0';
    s->head_only = strcmp(method, "HEAD") == 0;
    if (strcmp(path, "/sessions") == 0 || strcmp(path, "/sessions/close") == 0) {
        sessions_route(s, method, path, qs);
    } else if (strcmp(method, "GET") != 0 && !s->head_only) {
        respond(s, "405 Method Not Allowed", "text/plain", strdup("GET or HEAD only\n"), 17);
    } else if (strcmp(path, "/metrics") == 0) {
        char *body = render(&len);
        if (body)
            respond(s, "200 OK", "text/plain; version=0.0.4; charset=utf-8", body, len);
        else
            respond(s, "500 Internal Server Error", "text/plain", strdup("out of memory\n"), 14);
    } else if (strcmp(path, "/healthz") == 0) {
        if (atomic_load(&m.draining))
            respond(s, "503 Service Unavailable", "text/plain", strdup("draining\n"), 9);
        else
            respond(s, "200 OK", "text/plain", strdup("ok\n"), 3);
    } else {
        respond(s, "404 Not Found", "text/plain", strdup("try /metrics or /healthz\n"), 25);
    }
}

static void scrape_timeout(struct loop_timer *t)
{
    scrape_end(container_of(t, struct scrape, timer));
}

/* Reads until the request head is in, then decides the answer. Returns 0,
 * or -1 when the connection was ended. */
static int read_request(struct scrape *s)
{
    while (!s->out && !s->q) {
        ssize_t n = read(s->io.fd, s->req + s->len, sizeof s->req - 1 - s->len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return 0;
        if (n <= 0) {
            scrape_end(s);
            return -1;
        }
        s->len += (size_t)n;
        s->req[s->len] = '\0';
        if (strstr(s->req, "\r\n\r\n") || strstr(s->req, "\n\n"))
            route(s);
        else if (s->len == sizeof s->req - 1)
            respond(s, "431 Request Header Fields Too Large", "text/plain", strdup("too large\n"),
                    10);
        if (!s->out && !s->q && s->len == sizeof s->req - 1) {
            scrape_end(s); /* no memory for an answer */
            return -1;
        }
    }
    if (s->q) /* the workers answer on their loops */
        return loop_timer_arm(m.loop, &s->timer, SESSQ_POLL_MS, sessq_poll) < 0 ? -1 : 0;
    /* Answered: the reader gets its own deadline to take the answer. */
    loop_timer_arm(m.loop, &s->timer, SCRAPE_TIMEOUT_MS, scrape_timeout);
    return 0;
}

static void send_answer(struct scrape *s)
{
    while (s->out_off < s->out_len) {
        ssize_t n = send(s->io.fd, s->out + s->out_off, s->out_len - s->out_off, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return;
        if (n <= 0)
            break;
        s->out_off += (size_t)n;
    }
    scrape_end(s);
}

static void scrape_io(struct loop_io *io, unsigned events)
{
    struct scrape *s = container_of(io, struct scrape, io);
    (void)events;
    if (!s->out && !s->q && read_request(s) < 0)
        return;
    if (s->out)
        send_answer(s);
}

/* At the cap, ends the oldest connection that has not sent its request.
 * Returns 0 when there is room for one more. */
static int make_room(void)
{
    struct scrape *s = m.head;
    if (m.active < MAX_SCRAPES)
        return 0;
    while (s && s->out)
        s = s->next;
    if (!s)
        return -1;
    scrape_end(s);
    return 0;
}

/* Takes over an accepted connection (charged to the budget). */
static void scrape_start(int fd, const union addr_any *peer)
{
    struct scrape *s = make_room() == 0 ? calloc(1, sizeof *s) : NULL;
    if (!s || loop_io_add(m.loop, &s->io, fd, LOOP_READ | LOOP_WRITE, scrape_io) < 0 ||
        loop_timer_arm(m.loop, &s->timer, REQUEST_TIMEOUT_MS, scrape_timeout) < 0) {
        if (s && s->io.fd >= 0)
            loop_io_del(m.loop, &s->io);
        free(s); /* too many scrapes at once: the client retries */
        close(fd);
        fdbudget_give(1);
        return;
    }
    s->peer = *peer;
    s->prev = m.tail;
    *(m.tail ? &m.tail->next : &m.head) = s;
    m.tail = s;
    m.active++;
}

static void on_accept(struct loop_io *io, unsigned events)
{
    (void)events;
    for (;;) {
        union addr_any peer;
        int fd = net_accept(io->fd, &peer);
        if (fd < 0)
            return;
        if (!fdbudget_take(1, FDB_CLIENT)) {
            close(fd);
            continue;
        }
        scrape_start(fd, &peer);
    }
}

static void *metrics_main(void *arg)
{
    (void)arg;
    while (!atomic_load(&m.stop))
        if (loop_run_once(m.loop, 200) < 0)
            break;
    return NULL;
}

int metrics_start(const union addr_any *addr, int nworkers, int sessions, char *err, size_t errlen)
{
    char name[ADDR_STRLEN], why[256];
    (void)nworkers;
    m.sessions_access = sessions;
    atomic_store(&m.last_load_ok_at, now_unix());
    if (addr->sa.sa_family == 0)
        return 0;
    addr_str(&addr->sa, name, sizeof name);
    int fd = net_listen_tcp(addr, 128, NET_REUSEADDR, why, sizeof why);
    if (fd < 0) {
        snprintf(err, errlen, "metrics: %s", why);
        return -1;
    }
    if (!(m.loop = loop_new()) || loop_io_add(m.loop, &m.listener, fd, LOOP_READ, on_accept) < 0) {
        snprintf(err, errlen, "metrics %s: %s", name, strerror(errno));
        close(fd);
        return -1;
    }
    if (pthread_create(&m.thread, NULL, metrics_main, NULL) != 0) {
        snprintf(err, errlen, "metrics: cannot start its thread");
        return -1;
    }
    m.running = 1;
    log_info("metrics on http://%s/metrics", name);
    return 0;
}

void metrics_stop(void)
{
    if (!m.running)
        return;
    atomic_store(&m.stop, 1);
    pthread_join(m.thread, NULL);
    while (m.head)
        scrape_end(m.head);
    int fd = m.listener.fd;
    loop_io_del(m.loop, &m.listener);
    close(fd);
    loop_free(m.loop);
    m.running = 0;
}
