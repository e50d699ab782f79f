/* Route parsing, matching and outbound address choice. See route.h. */
#include "route.h"

#include <arpa/inet.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "auth_secret.h"
#include "hash.h"
#include "words.h"

struct routes {
    struct rules *match; /* route i is rule i: "allow CLAUSES" */
    struct route *v;
    size_t n, cap;
};

struct parser {
    struct words w;
    unsigned flags;
    size_t nsecrets; /* byte ranges of the passwords in text */
    size_t secret_at[ROUTE_MAX_ALTS * ROUTE_MAX_HOPS], secret_len[ROUTE_MAX_ALTS * ROUTE_MAX_HOPS];
};

static const char *shown(const struct word *t, char *buf, size_t len)
{
    return words_quote(buf, len, t->s, t->len);
}

/* ------------------------------------------------------------ hops */

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Copies s[0..len) into dst (256 bytes) decoding %XX; 0 when it does not
 * fit in 255 bytes, has a bad escape, or decodes to an empty string or NUL. */
static int unescape(char *dst, const char *s, size_t len)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        int c = (unsigned char)s[i];
        if (c == '%') {
            int hi = i + 2 < len ? hexval(s[i + 1]) : -1, lo = i + 2 < len ? hexval(s[i + 2]) : -1;
            if (hi < 0 || lo < 0)
                return 0;
            c = hi << 4 | lo;
            i += 2;
        }
        if (c == 0 || n >= 255)
            return 0;
        dst[n++] = (char)c;
    }
    dst[n] = '\0';
    return n > 0;
}

static int parse_port(const char *s, size_t len, uint16_t *port)
{
    unsigned long v = 0;
    if (len == 0 || len > 5)
        return 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return 0;
        v = v * 10 + (unsigned long)(s[i] - '0');
    }
    if (v == 0 || v > 65535)
        return 0;
    *port = (uint16_t)v;
    return 1;
}

static int parse_hostport(struct parser *p, const struct word *t, const char *s, size_t len,
                          struct upstream_hop *h)
{
    const char *colon, *host = s;
    size_t hlen;
    if (len > 0 && s[0] == '[') {
        const char *close = memchr(s, ']', len);
        if (close == NULL || close + 1 >= s + len || close[1] != ':')
            return words_fail(&p->w, t->col, "IPv6 hop address needs the form [ADDR]:PORT");
        host = s + 1;
        hlen = (size_t)(close - host);
        colon = close + 1;
        char ip[64];
        struct in6_addr a6;
        if (hlen >= sizeof ip)
            return words_fail(&p->w, t->col, "bad IPv6 address in hop");
        memcpy(ip, host, hlen);
        ip[hlen] = '\0';
        if (inet_pton(AF_INET6, ip, &a6) != 1)
            return words_fail(&p->w, t->col, "bad IPv6 address in hop");
    } else {
        colon = memrchr(s, ':', len);
        if (colon == NULL)
            return words_fail(&p->w, t->col + t->len, "hop needs a port (HOST:PORT)");
        hlen = (size_t)(colon - s);
        if (memchr(s, ':', hlen) != NULL)
            return words_fail(&p->w, t->col, "IPv6 hop address must be in brackets");
    }
    if (hlen == 0 || hlen > 255)
        return words_fail(&p->w, t->col, "hop host must be 1 to 255 bytes");
    for (size_t i = 0; i < hlen; i++)
        if ((unsigned char)host[i] <= 0x20 || host[i] == '@' || host[i] == '/' || host[i] >= 0x7f)
            return words_fail(&p->w, t->col, "bad character in hop host");
    memcpy(h->host, host, hlen);
    h->host[hlen] = '\0';
    if (!parse_port(colon + 1, (size_t)(s + len - colon - 1), &h->port))
        return words_fail(&p->w, t->col, "hop port must be 1..65535");
    return 0;
}

/* USER:PASS (a password: only from a file), or USER alone: the password
 * then comes from the upstream credentials file (routes_set_passwords). */
static int parse_userinfo(struct parser *p, const struct word *t, const char *s, size_t len,
                          struct upstream_hop *h)
{
    const char *colon = memchr(s, ':', len);
    size_t ulen = colon ? (size_t)(colon - s) : len, plen = colon ? len - ulen - 1 : 0;
    if (colon != NULL && !(p->flags & ROUTES_SECRETS_OK))
        return words_fail(&p->w, t->col,
                          "upstream credentials only in the configuration file (a command line is "
                          "visible to every user)");
    if (!unescape(h->user, s, ulen) || (colon != NULL && !unescape(h->pass, colon + 1, plen)))
        return words_fail(&p->w, t->col,
                          "hop user and password must be 1 to 255 bytes (%%XX escapes)");
    if (colon == NULL)
        return 0;
    p->secret_at[p->nsecrets] = (size_t)(colon + 1 - p->w.text);
    p->secret_len[p->nsecrets++] = plen;
    return 0;
}

static int parse_hop(struct parser *p, const struct word *t, struct upstream_hop *h)
{
    static const struct {
        const char *scheme;
        enum upstream_kind kind;
    } schemes[] = {
        {"socks5://", UPSTREAM_SOCKS5},
        {"socks4a://", UPSTREAM_SOCKS4A},
        {"http://", UPSTREAM_HTTP},
    };
    char q[WORDS_QUOTE_MAX + 1];
    memset(h, 0, sizeof *h);
    for (size_t i = 0; i < sizeof schemes / sizeof schemes[0]; i++) {
        size_t n = strlen(schemes[i].scheme);
        if (t->len <= n || strncasecmp(t->s, schemes[i].scheme, n) != 0)
            continue;
        h->kind = schemes[i].kind;
        const char *rest = t->s + n, *end = t->s + t->len;
        const char *at = memrchr(rest, '@', (size_t)(end - rest));
        if (at != NULL) {
            if (h->kind == UPSTREAM_SOCKS4A)
                return words_fail(&p->w, t->col, "SOCKS4a carries no password (no USER:PASS@)");
            if (parse_userinfo(p, t, rest, (size_t)(at - rest), h) < 0)
                return -1;
            rest = at + 1;
        }
        if (end > rest && end[-1] == '/')
            end--;
        return parse_hostport(p, t, rest, (size_t)(end - rest), h);
    }
    return words_fail(&p->w, t->col,
                      "unknown hop '%s' (expected direct, socks5://, socks4a:// or http://)",
                      shown(t, q, sizeof q));
}

/* ------------------------------------------------------------ out */

static int parse_prefix(struct parser *p, const struct word *t, struct route_src *src, int *v6)
{
    char buf[64], q[48];
    const char *slash = memchr(t->s, '/', t->len);
    size_t alen = slash ? (size_t)(slash - t->s) : t->len;
    if (alen >= sizeof buf)
        return words_fail(&p->w, t->col, "bad address '%s'", shown(t, q, sizeof q));
    memcpy(buf, t->s, alen);
    buf[alen] = '\0';
    memset(src->addr, 0, sizeof src->addr);
    *v6 = strchr(buf, ':') != NULL;
    if (inet_pton(*v6 ? AF_INET6 : AF_INET, buf, src->addr) != 1)
        return words_fail(&p->w, t->col, "bad address '%s'", shown(t, q, sizeof q));
    unsigned max = *v6 ? 128 : 32, plen = max;
    if (slash) {
        uint16_t v;
        size_t n = t->len - alen - 1;
        if (n == 1 && slash[1] == '0')
            plen = 0;
        else if (!parse_port(slash + 1, n, &v) || v > max)
            return words_fail(&p->w, t->col, "prefix length must be 0..%u", max);
        else
            plen = v;
    }
    src->plen = plen;
    return 0;
}

static int parse_src(struct parser *p, struct route_out *o, int mode, const struct word *t)
{
    struct route_src src = {0};
    int v6 = 0;
    char q[WORDS_QUOTE_MAX + 1];
    if (parse_prefix(p, t, &src, &v6) < 0)
        return -1;
    if (mode == ROUTE_SRC_FIXED && src.plen != (v6 ? 128u : 32u))
        return words_fail(&p->w, t->col,
                          "a fixed source is one address: 'random' or 'sticky' before '%s'?",
                          shown(t, q, sizeof q));
    if (o->src[v6].mode != ROUTE_SRC_NONE)
        return words_fail(&p->w, t->col, "second IPv%d source (one per family)", v6 ? 6 : 4);
    src.mode = mode;
    o->src[v6] = src;
    return 0;
}

static int parse_mark(struct parser *p, const struct word *t, uint32_t *mark)
{
    char buf[16], *end;
    if (t->len == 0 || t->len >= sizeof buf)
        return words_fail(&p->w, t->col, "mark must be a 32-bit number");
    memcpy(buf, t->s, t->len);
    buf[t->len] = '\0';
    unsigned long long v = strtoull(buf, &end, 0);
    if (*end != '\0' || buf[0] == '-' || v > UINT32_MAX)
        return words_fail(&p->w, t->col, "mark must be a 32-bit number");
    *mark = (uint32_t)v;
    return 0;
}

static int parse_out(struct parser *p, struct route *r, const struct word *kw)
{
    struct word t, arg;
    size_t items = 0;
    r->has_out = 1;
    while (words_next(&p->w, &t)) {
        if (words_is(&t, "out"))
            continue;
        items++;
        int mode = words_is(&t, "random")   ? ROUTE_SRC_RANDOM
                   : words_is(&t, "sticky") ? ROUTE_SRC_STICKY
                                            : ROUTE_SRC_NONE;
        int takes = mode != ROUTE_SRC_NONE || words_is(&t, "dev") || words_is(&t, "mark");
        if (!takes) {
            if (parse_src(p, &r->out, ROUTE_SRC_FIXED, &t) < 0)
                return -1;
            continue;
        }
        if (!words_next(&p->w, &arg))
            return words_fail(&p->w, t.col + t.len, "'%.*s' needs a value", (int)t.len, t.s);
        if (mode != ROUTE_SRC_NONE) {
            if (parse_src(p, &r->out, mode, &arg) < 0)
                return -1;
        } else if (words_is(&t, "dev")) {
            if (arg.len >= sizeof r->out.dev)
                return words_fail(&p->w, arg.col, "interface name longer than %zu bytes",
                                  sizeof r->out.dev - 1);
            /* The kernel's own rule (dev_valid_name): SO_BINDTODEVICE
             * would fail on every connection instead of here. */
            if (memchr(arg.s, '/', arg.len) || memchr(arg.s, ':', arg.len) ||
                (arg.s[0] == '.' && (arg.len == 1 || (arg.len == 2 && arg.s[1] == '.'))))
                return words_fail(&p->w, arg.col, "'%.*s' is not an interface name", (int)arg.len,
                                  arg.s);
            memcpy(r->out.dev, arg.s, arg.len);
            r->out.dev[arg.len] = '\0';
        } else {
            if (parse_mark(p, &arg, &r->out.mark) < 0)
                return -1;
            r->out.has_mark = 1;
        }
    }
    if (items == 0)
        return words_fail(&p->w, kw->col + kw->len,
                          "'out' needs an address, random, sticky, dev or mark");
    return 0;
}

/* ------------------------------------------------------------ holds */

struct route_hold {
    struct route_hold *next;
    size_t refs; /* under holds_lock */
    atomic_llong down_until_ms;
    atomic_llong udp_down_until_ms; /* it refused a UDP association */
    char key[300];                  /* route_hop_str: kind, host and port */
};

/* Every hop some snapshot names. Taken at parse and free time only (the
 * main thread, or a worker freeing its last old snapshot), never per
 * connection. */
static pthread_mutex_t holds_lock = PTHREAD_MUTEX_INITIALIZER;
static struct route_hold *holds;

/* The process's hold for hop h, with one more reference; NULL when out of
 * memory. */
static struct route_hold *hold_get(const struct upstream_hop *h)
{
    char key[sizeof holds->key];
    struct route_hold *e;
    route_hop_str(h, key, sizeof key);
    pthread_mutex_lock(&holds_lock);
    for (e = holds; e != NULL && strcmp(e->key, key) != 0; e = e->next)
        ;
    if (e == NULL && (e = calloc(1, sizeof *e)) != NULL) {
        memcpy(e->key, key, sizeof key);
        atomic_init(&e->down_until_ms, 0);
        e->next = holds;
        holds = e;
    }
    if (e != NULL)
        e->refs++;
    pthread_mutex_unlock(&holds_lock);
    return e;
}

static void hold_put(struct route_hold *e)
{
    if (e == NULL)
        return;
    pthread_mutex_lock(&holds_lock);
    if (--e->refs == 0) {
        struct route_hold **p = &holds;
        while (*p != e)
            p = &(*p)->next;
        *p = e->next;
        free(e);
    }
    pthread_mutex_unlock(&holds_lock);
}

/* ------------------------------------------------------------ via */

static void route_clear(struct route *r)
{
    for (size_t i = 0; i < r->nalts; i++) {
        struct route_chain *c = &r->alts[i];
        for (size_t j = 0; j < c->nhops; j++) {
            auth_wipe(c->hops[j].pass, sizeof c->hops[j].pass);
            if (c->holds != NULL)
                hold_put(c->holds[j]);
        }
        free(c->hops);
        free(c->holds);
    }
    free(r->alts);
    free(r->text);
    free(r->file);
    memset(r, 0, sizeof *r);
}

static int end_chain(struct parser *p, struct route *r, const struct word *t, int direct)
{
    struct route_chain *c = &r->alts[r->nalts - 1];
    if (c->nhops == 0 && !direct)
        return words_fail(&p->w, t->col, "empty alternative (a hop or 'direct' before '|')");
    return 0;
}

static int new_chain(struct parser *p, struct route *r, const struct word *t)
{
    if (r->nalts == ROUTE_MAX_ALTS)
        return words_fail(&p->w, t->col, "more than %d alternatives", ROUTE_MAX_ALTS);
    struct route_chain *c = &r->alts[r->nalts++];
    c->hops = calloc(ROUTE_MAX_HOPS, sizeof *c->hops);
    c->holds = calloc(ROUTE_MAX_HOPS, sizeof *c->holds);
    if (c->hops == NULL || c->holds == NULL)
        return words_fail(&p->w, t->col, "out of memory");
    return 0;
}

/* Parses the alternatives after `via`; stops at `out` (returned in *out_kw). */
static int parse_via(struct parser *p, struct route *r, const struct word *via, struct word *out_kw,
                     int *has_out)
{
    struct word t;
    int direct = 0;
    r->alts = calloc(ROUTE_MAX_ALTS, sizeof *r->alts);
    if (r->alts == NULL || new_chain(p, r, via) < 0)
        return words_fail(&p->w, via->col, "out of memory");
    *has_out = 0;
    while (words_next(&p->w, &t)) {
        struct route_chain *c = &r->alts[r->nalts - 1];
        if (words_is(&t, "out")) {
            *out_kw = t;
            *has_out = 1;
            break;
        }
        if (words_is(&t, "|")) {
            if (end_chain(p, r, &t, direct) < 0 || new_chain(p, r, &t) < 0)
                return -1;
            direct = 0;
            continue;
        }
        if (direct || (words_is(&t, "direct") && c->nhops > 0))
            return words_fail(&p->w, t.col, "'direct' stands alone in an alternative");
        if (words_is(&t, "direct")) {
            direct = 1;
            continue;
        }
        if (c->nhops == ROUTE_MAX_HOPS)
            return words_fail(&p->w, t.col, "more than %d hops in a chain", ROUTE_MAX_HOPS);
        if (parse_hop(p, &t, &c->hops[c->nhops]) < 0)
            return -1;
        c->nhops++; /* counted first: route_clear puts what was got */
        if ((c->holds[c->nhops - 1] = hold_get(&c->hops[c->nhops - 1])) == NULL)
            return words_fail(&p->w, t.col, "out of memory");
    }
    t = (struct word){p->w.text + p->w.pos, 0, p->w.pos + 1};
    if (end_chain(p, r, &t, direct) < 0)
        return -1;
    return 0;
}

/* Hands the clauses before `via` to rules.c as "allow CLAUSES"; its error
 * columns are moved back to columns of the route text. */
static int add_clauses(struct routes *rs, struct parser *p, size_t via_pos, const char *file,
                       int line)
{
    static const char head[] = "allow ";
    size_t hl = sizeof head - 1;
    char *rule = malloc(hl + via_pos + 1);
    char err[256];
    if (rule == NULL)
        return words_fail(&p->w, 1, "out of memory");
    memcpy(rule, head, hl);
    memcpy(rule + hl, p->w.text, via_pos);
    rule[hl + via_pos] = '\0';
    int rc = rules_add(rs->match, rule, file, line, err, sizeof err);
    free(rule);
    if (rc == 0)
        return 0;
    size_t col = 0;
    int used = 0;
    if (sscanf(err, "column %zu: %n", &col, &used) == 1 && used > 0 && col > hl)
        return words_fail(&p->w, col - hl, "%s", err + used);
    return words_fail(&p->w, 1, "%s", err);
}

/* The text up to its comment, with every password replaced by "***",
 * which says nothing of its length. A comment is not part of the route and
 * may say anything, a password too. NULL when out of memory. */
static char *masked_text(const struct parser *p)
{
    size_t len = p->w.pos, o = 0, from = 0; /* parsed to the end: at '#' or NUL */
    while (len > 0 && strchr(" \t\r\n", p->w.text[len - 1]))
        len--;
    char *m = malloc(len + 3 * p->nsecrets + 1);
    if (m == NULL)
        return NULL;
    for (size_t i = 0; i < p->nsecrets; i++) {
        memcpy(m + o, p->w.text + from, p->secret_at[i] - from);
        o += p->secret_at[i] - from;
        memcpy(m + o, "***", 3);
        o += 3;
        from = p->secret_at[i] + p->secret_len[i];
    }
    memcpy(m + o, p->w.text + from, len - from);
    m[o + len - from] = '\0';
    return m;
}

static int parse_route(struct routes *rs, struct parser *p, struct route *r, const char *file,
                       int line)
{
    struct word t, out_kw;
    int has_out = 0;
    size_t via_pos = 0;
    int found = 0;
    while (words_next(&p->w, &t))
        if (words_is(&t, "via")) {
            via_pos = (size_t)(t.s - p->w.text);
            found = 1;
            break;
        }
    if (!found)
        return words_fail(&p->w, p->w.pos + 1,
                          "route needs 'via' and a hop, 'direct' or alternatives");
    if (parse_via(p, r, &t, &out_kw, &has_out) < 0)
        return -1;
    if (has_out && parse_out(p, r, &out_kw) < 0)
        return -1;
    r->text = masked_text(p);
    if (r->text == NULL)
        return words_fail(&p->w, 1, "out of memory");
    return add_clauses(rs, p, via_pos, file, line); /* last: it appends to the matcher */
}

/* ------------------------------------------------------------ public */

struct routes *routes_new(void)
{
    struct routes *rs = calloc(1, sizeof *rs);
    if (rs == NULL)
        return NULL;
    rs->match = rules_new();
    if (rs->match == NULL) {
        free(rs);
        return NULL;
    }
    return rs;
}

void routes_free(struct routes *rs)
{
    if (rs == NULL)
        return;
    for (size_t i = 0; i < rs->n; i++)
        route_clear(&rs->v[i]);
    free(rs->v);
    rules_free(rs->match);
    free(rs);
}

int routes_add(struct routes *rs, const char *text, const char *file, int line, unsigned flags,
               char *err, size_t errlen)
{
    struct parser p = {.w = {.text = text, .err = err, .errlen = errlen}, .flags = flags};
    struct route r;
    memset(&r, 0, sizeof r);
    if (err != NULL && errlen > 0)
        err[0] = '\0';
    if (rs == NULL || text == NULL)
        return words_fail(&p.w, 1, "internal error: no route set or no text");
    if (rs->n == rs->cap) {
        size_t cap = rs->cap ? rs->cap * 2 : 8;
        struct route *v = realloc(rs->v, cap * sizeof *v);
        if (v == NULL)
            return words_fail(&p.w, 1, "out of memory");
        rs->v = v;
        rs->cap = cap;
    }
    r.file = strdup(file ? file : "(command line)");
    r.line = line;
    if (r.file == NULL) {
        words_fail(&p.w, 1, "out of memory");
        goto fail;
    }
    if (parse_route(rs, &p, &r, file, line) < 0)
        goto fail;
    rs->v[rs->n++] = r;
    return 0;
fail:
    route_clear(&r);
    return -1;
}

size_t routes_count(const struct routes *rs)
{
    return rs ? rs->n : 0;
}

const struct route *routes_get(const struct routes *rs, size_t i)
{
    return rs && i < rs->n ? &rs->v[i] : NULL;
}

const struct route *routes_match(const struct routes *rs, const struct rules_request *rq,
                                 int *need_addr)
{
    struct rules_verdict v;
    *need_addr = 0;
    if (rs == NULL || rs->n == 0)
        return NULL;
    rules_match(rs->match, rq, &v);
    if (v.need_addr) {
        *need_addr = 1;
        return NULL;
    }
    return v.allow && v.index >= 0 ? &rs->v[v.index] : NULL;
}

static int held(const atomic_llong *until, int64_t now_ms)
{
    return atomic_load_explicit(until, memory_order_relaxed) > now_ms;
}

static int chain_up(const struct route_chain *c, int64_t now_ms, uint8_t cmd)
{
    for (size_t i = 0; i < c->nhops; i++)
        if (held(&c->holds[i]->down_until_ms, now_ms) ||
            (cmd == SOCKS5_CMD_UDP && held(&c->holds[i]->udp_down_until_ms, now_ms)))
            return 0;
    return 1;
}

int route_chain_carries(const struct route_chain *c, uint8_t cmd)
{
    if (c->nhops > 0 && cmd == SOCKS5_CMD_BIND)
        return c->hops[c->nhops - 1].kind != UPSTREAM_HTTP;
    for (size_t i = 0; cmd == SOCKS5_CMD_UDP && i < c->nhops; i++)
        if (c->hops[i].kind != UPSTREAM_SOCKS5)
            return 0;
    return 1;
}

size_t route_pick(const struct route *r, size_t from, int64_t now_ms, uint8_t cmd)
{
    size_t first = r->nalts;
    for (size_t i = from; i < r->nalts; i++) {
        if (!route_chain_carries(&r->alts[i], cmd))
            continue;
        if (chain_up(&r->alts[i], now_ms, cmd))
            return i;
        if (first == r->nalts)
            first = i;
    }
    return first;
}

void route_hop_failed(const struct route_chain *c, size_t hop, int64_t now_ms, int udp_only)
{
    if (hop < c->nhops)
        atomic_store_explicit(udp_only ? &c->holds[hop]->udp_down_until_ms
                                       : &c->holds[hop]->down_until_ms,
                              now_ms + ROUTE_HOLDDOWN_MS, memory_order_relaxed);
}

void route_chain_worked(const struct route_chain *c)
{
    for (size_t i = 0; i < c->nhops; i++)
        if (atomic_load_explicit(&c->holds[i]->down_until_ms, memory_order_relaxed) != 0)
            atomic_store_explicit(&c->holds[i]->down_until_ms, 0, memory_order_relaxed);
}

static uint64_t sticky_key[2];
static pthread_once_t sticky_once = PTHREAD_ONCE_INIT;

static void make_sticky_key(void)
{
    if (hash_random_key(sticky_key) < 0) {
        /* No randomness: a fixed key still gives one address per user, only
         * one an outsider could compute from the name. */
        sticky_key[0] = 0x736f636b73356421ull;
        sticky_key[1] = 0x737469636b79ull;
    }
}

const uint64_t *route_sticky_key(void)
{
    pthread_once(&sticky_once, make_sticky_key);
    return sticky_key;
}

/* Per thread: a random key, and a counter it hashes. */
static _Thread_local uint64_t random_key[2], random_count;
static _Thread_local int random_keyed;

void route_random(uint64_t rnd[2])
{
    if (!random_keyed) {
        if (hash_random_key(random_key) < 0) {
            /* No randomness at all: still a different source per connection. */
            random_key[0] = (uint64_t)(uintptr_t)&random_count;
            random_key[1] = 0x72616e646f6dull;
        }
        random_keyed = 1;
    }
    random_count++;
    rnd[0] = hash_sip(random_key, &random_count, sizeof random_count);
    random_count++;
    rnd[1] = hash_sip(random_key, &random_count, sizeof random_count);
}

/* addr with its host bits (after plen) replaced by those of bits[]. */
static void fill_host(uint8_t *addr, size_t alen, unsigned plen, const uint8_t *bits)
{
    for (size_t i = 0; i < alen; i++) {
        unsigned first = (unsigned)i * 8;
        uint8_t keep = plen >= first + 8 ? 0xff
                       : plen <= first   ? 0
                                         : (uint8_t)(0xff << (8 - (plen - first)));
        addr[i] = (uint8_t)((addr[i] & keep) | (bits[i] & ~keep));
    }
}

void route_out_for(const struct route *r, const uint64_t key[2], const void *id, size_t idlen,
                   const uint64_t rnd[2], struct net_out *out)
{
    memset(out, 0, sizeof *out);
    if (r == NULL || !r->has_out)
        return;
    for (int v6 = 0; v6 < 2; v6++) {
        const struct route_src *s = &r->out.src[v6];
        uint8_t addr[16], bits[16] = {0};
        if (s->mode == ROUTE_SRC_NONE)
            continue;
        memcpy(addr, s->addr, sizeof addr);
        if (s->mode == ROUTE_SRC_RANDOM) {
            memcpy(bits, rnd, sizeof bits);
        } else if (s->mode == ROUTE_SRC_STICKY) {
            uint64_t k2[2] = {key[0] ^ 0x5354494b, key[1]}, h[2];
            h[0] = hash_sip(key, id, idlen);
            h[1] = hash_sip(k2, id, idlen);
            memcpy(bits, h, sizeof bits);
        }
        if (s->mode != ROUTE_SRC_FIXED)
            fill_host(addr, v6 ? 16 : 4, s->plen, bits);
        union addr_any *a = &out->src[out->nsrc++];
        if (v6) {
            a->in6.sin6_family = AF_INET6;
            memcpy(&a->in6.sin6_addr, addr, 16);
        } else {
            a->in4.sin_family = AF_INET;
            memcpy(&a->in4.sin_addr, addr, 4);
        }
    }
    memcpy(out->dev, r->out.dev, sizeof out->dev);
    out->has_mark = r->out.has_mark;
    out->mark = r->out.mark;
}

/* "socks5://host:port", or with_user "socks5://alice@host:port". */
static const char *hop_str(const struct upstream_hop *h, int with_user, char *buf, size_t len)
{
    int v6 = strchr(h->host, ':') != NULL;
    snprintf(buf, len, v6 ? "%s://%s%s[%s]:%u" : "%s://%s%s%s:%u", upstream_kind_str(h->kind),
             with_user ? h->user : "", with_user ? "@" : "", h->host, h->port);
    return buf;
}

const char *route_hop_str(const struct upstream_hop *h, char *buf, size_t len)
{
    return hop_str(h, 0, buf, len);
}

const char *route_via_str(const struct route *r, size_t alt, char *buf, size_t len)
{
    size_t o = 0;
    char hop[300];
    snprintf(buf, len, "direct");
    if (alt >= r->nalts || r->alts[alt].nhops == 0)
        return buf;
    for (size_t i = 0; i < r->alts[alt].nhops && o + 1 < len; i++) {
        int n = snprintf(buf + o, len - o, "%s%s", i ? " " : "",
                         route_hop_str(&r->alts[alt].hops[i], hop, sizeof hop));
        if (n < 0)
            break;
        o += (size_t)n;
    }
    return buf;
}

int route_hop_parse(const char *text, size_t len, struct upstream_hop *h, char *err, size_t errlen)
{
    struct parser p = {.w = {.text = text, .err = err, .errlen = errlen},
                       .flags = ROUTES_SECRETS_OK};
    struct word t = {text, len, 1};
    return parse_hop(&p, &t, h);
}

int routes_set_passwords(struct routes *rs, route_pass_fn pass_for, void *arg, char *err,
                         size_t errlen)
{
    char hop[300];
    for (size_t i = 0; rs != NULL && i < rs->n; i++)
        for (size_t a = 0; a < rs->v[i].nalts; a++)
            for (size_t j = 0; j < rs->v[i].alts[a].nhops; j++) {
                struct upstream_hop *h = &rs->v[i].alts[a].hops[j];
                const char *pass = h->user[0] && !h->pass[0] ? pass_for(arg, h) : NULL;
                if (pass != NULL) {
                    snprintf(h->pass, sizeof h->pass, "%s", pass);
                } else if (h->user[0] && !h->pass[0]) {
                    char where[300];
                    snprintf(where, sizeof where, rs->v[i].line ? "%s:%d" : "socks5d: --route",
                             rs->v[i].file, rs->v[i].line);
                    snprintf(err, errlen, "%s: route hop %s has no password", where,
                             hop_str(h, 1, hop, sizeof hop));
                    return -1;
                }
            }
    return 0;
}
