/* Prometheus text exposition over a minimal, read-only HTTP/1.0 server. */
#include "metrics.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fdbudget.h"
#include "log.h"
#include "loop.h"
#include "net.h"
#include "stats.h"
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
    atomic_ulong reloads;
    atomic_int last_reload_ok;
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

void metrics_reloaded(int ok)
{
    atomic_fetch_add(&m.reloads, 1);
    atomic_store(&m.last_reload_ok, ok);
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

static char *render(size_t *len)
{
    struct stats t;
    struct rlimit rl = {0, 0};
    char *buf = NULL;
    FILE *f = open_memstream(&buf, len);
    if (!f)
        return NULL;
    sum_stats(&t);
    getrlimit(RLIMIT_NOFILE, &rl);
    metric(f, "socks5d_build_info", "gauge", "Build information.");
    fprintf(f, "socks5d_build_info{version=\"%s\"} 1\n", SOCKS5D_VERSION);
    single(f, "socks5d_workers", "gauge", "Worker threads.", (uint64_t)atomic_load(&m.nworkers));
    single(f, "socks5d_sessions_active", "gauge", "Sessions open now.", stat_get(&t.active));
    sessions(f, &t);
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
    single(f, "socks5d_open_fds", "gauge", "File descriptors open.", fdbudget_count_open());
    single(f, "socks5d_max_fds", "gauge", "File descriptor limit.", (uint64_t)rl.rlim_cur);
    single(f, "socks5d_config_reloads_total", "counter", "Configuration reloads attempted.",
           atomic_load(&m.reloads));
    single(f, "socks5d_config_last_reload_success", "gauge", "1 if the last reload succeeded.",
           (uint64_t)atomic_load(&m.last_reload_ok));
    single(f, "socks5d_draining", "gauge", "1 while shutting down.",
           (uint64_t)atomic_load(&m.draining));
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
        fwrite(body, 1, blen, f);
        fclose(f);
    }
    free(body);
    s->out = out;
    s->out_len = out ? len : 0;
}

/* Decides the answer once the request head is in. */
static void route(struct scrape *s)
{
    char method[8], path[256];
    size_t len = 0;
    if (sscanf(s->req, "%7s %255s", method, path) != 2) {
        respond(s, "400 Bad Request", "text/plain", strdup("bad request\n"), 12);
    } else if (strcmp(method, "GET") != 0) {
        respond(s, "405 Method Not Allowed", "text/plain", strdup("GET only\n"), 9);
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
    while (!s->out) {
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
        if (!s->out && s->len == sizeof s->req - 1) {
            scrape_end(s); /* no memory for an answer */
            return -1;
        }
    }
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
    if (!s->out && read_request(s) < 0)
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
static void scrape_start(int fd)
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
    s->prev = m.tail;
    *(m.tail ? &m.tail->next : &m.head) = s;
    m.tail = s;
    m.active++;
}

static void on_accept(struct loop_io *io, unsigned events)
{
    (void)events;
    for (;;) {
        int fd = net_accept(io->fd, NULL);
        if (fd < 0)
            return;
        if (!fdbudget_take(1, FDB_CLIENT)) {
            close(fd);
            continue;
        }
        scrape_start(fd);
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

int metrics_start(const union addr_any *addr, int nworkers, char *err, size_t errlen)
{
    char name[ADDR_STRLEN], why[256];
    (void)nworkers;
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
