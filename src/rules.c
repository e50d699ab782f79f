/* rules.c - parse and match access rules (see rules.h and docs/rules.md).
 *
 * Addresses live in one 128-bit space: IPv4 a.b.c.d is stored as the
 * IPv4-mapped ::ffff:a.b.c.d. An IPv4 CIDR a.b.c.d/n is thus ::ffff:a.b.c.d/96+n,
 * and a request for ::ffff:10.0.0.1 is the same number as one for 10.0.0.1, so
 * no rule can be bypassed by spelling an IPv4 address the IPv6 way.
 */
#include "rules.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hostname.h"
#include "result.h"
#include "words.h"

#define MAX_USER_LEN 255 /* RFC 1929 */
#define QUOTE_MAX WORDS_QUOTE_MAX

struct addr128 {
    uint64_t hi, lo;
};

/* Network (host bits already zero) and mask, precomputed for matching. */
struct cidr {
    uint64_t hi, lo, mhi, mlo;
};

/* Lower case, no trailing dot. A wildcard keeps its leading dot (".example.com"
 * for "*.example.com") so matching is a plain suffix compare. */
struct pattern {
    char *text;
    size_t len;
    int wildcard;
};

struct port_range {
    uint16_t lo, hi;
};

/* A growable array; `items` is cast to the element type at each use. */
struct vec {
    void *items;
    size_t n, cap;
};

enum clause { C_FROM, C_USER, C_CMD, C_TO, C_PORT, C_COUNT };
#define BIT(c) (1u << (c))

struct rule {
    int allow;
    int deny_private;   /* `to` lists the private ranges; `except` and the host's own apply */
    unsigned written;   /* clauses present in the text, even as `any`: duplicates check */
    unsigned restricts; /* clauses that restrict, i.e. present and not `any` */
    unsigned cmds;      /* BIT(RULES_CMD_x) */
    struct vec from;    /* struct cidr */
    struct vec users;   /* char * (`user any` leaves it empty: any authenticated user) */
    struct vec to;      /* struct cidr */
    struct vec pats;    /* struct pattern */
    struct vec ports;   /* struct port_range */
    struct vec except;  /* struct cidr: deny-private's globally reachable exceptions */
    char *file;
    int line;
};

struct rules {
    struct vec rules; /* struct rule */
};

/* ---------------------------------------------------------------- helpers */

static char lower(char c)
{
    return (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
}

static int is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* Appends one zeroed element of `size` bytes; returns it, or NULL when out of memory. */
static void *vec_push(struct vec *v, size_t size)
{
    if (v->n == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 4;
        if (cap < v->cap || cap > SIZE_MAX / size)
            return NULL;
        void *items = realloc(v->items, cap * size);
        if (items == NULL)
            return NULL;
        v->items = items;
        v->cap = cap;
    }
    char *slot = (char *)v->items + v->n * size;
    memset(slot, 0, size);
    v->n++;
    return slot;
}

static char *dup_mem(const char *s, size_t len)
{
    char *d = malloc(len + 1);
    if (d == NULL)
        return NULL;
    memcpy(d, s, len);
    d[len] = '\0';
    return d;
}

static void rule_clear(struct rule *r)
{
    char **users = r->users.items;
    for (size_t i = 0; i < r->users.n; i++)
        free(users[i]);
    struct pattern *pats = r->pats.items;
    for (size_t i = 0; i < r->pats.n; i++)
        free(pats[i].text);
    free(r->from.items);
    free(r->users.items);
    free(r->to.items);
    free(r->pats.items);
    free(r->ports.items);
    free(r->except.items);
    free(r->file);
    memset(r, 0, sizeof *r);
}

/* ---------------------------------------------------------------- addresses */

static void mask_for(unsigned prefix, struct cidr *c)
{
    c->mhi = prefix >= 64 ? UINT64_MAX : prefix == 0 ? 0 : UINT64_MAX << (64 - prefix);
    c->mlo = prefix <= 64 ? 0 : prefix == 128 ? UINT64_MAX : UINT64_MAX << (128 - prefix);
}

static uint64_t load_be64(const unsigned char *b)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = (v << 8) | b[i];
    return v;
}

static void from_in6(const struct in6_addr *a6, struct addr128 *out)
{
    out->hi = load_be64(a6->s6_addr);
    out->lo = load_be64(a6->s6_addr + 8);
}

static void from_in4(const struct in_addr *a4, struct addr128 *out)
{
    out->hi = 0;
    out->lo = 0x0000ffff00000000ULL | ntohl(a4->s_addr);
}

/* Normalises a socket address into the 128-bit space; returns 0 for non-IP or NULL. */
static int sockaddr_to_128(const struct sockaddr *sa, struct addr128 *out)
{
    if (sa == NULL)
        return 0;
    if (sa->sa_family == AF_INET) {
        from_in4(&((const struct sockaddr_in *)(const void *)sa)->sin_addr, out);
        return 1;
    }
    if (sa->sa_family == AF_INET6) {
        from_in6(&((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr, out);
        return 1;
    }
    return 0;
}

static int cidr_has(const struct cidr *c, const struct addr128 *a)
{
    return (a->hi & c->mhi) == c->hi && (a->lo & c->mlo) == c->lo;
}

static int cidrs_have(const struct vec *v, const struct addr128 *a)
{
    const struct cidr *c = v->items;
    for (size_t i = 0; i < v->n; i++)
        if (cidr_has(&c[i], a))
            return 1;
    return 0;
}

/* True if c contains every address of the network `net`/`prefix` (128-bit form). */
static int cidr_covers(const struct cidr *c, uint64_t hi, uint64_t lo, unsigned prefix)
{
    struct cidr n;
    mask_for(prefix, &n);
    struct addr128 a = {hi, lo};
    /* c covers n iff c's mask is no longer than n's and n's network lies in c. */
    return (c->mhi & ~n.mhi) == 0 && (c->mlo & ~n.mlo) == 0 && cidr_has(c, &a);
}

/* ---------------------------------------------------------------- parser */

#define QBUF (QUOTE_MAX + 1)

static int fail_oom(struct words *p, const struct word *t)
{
    return words_fail(p, t->col, "out of memory");
}

/* Parses an unsigned decimal of 1..digits digits spanning all of s[0..len). */
static int parse_uint(const char *s, size_t len, size_t digits, unsigned long max,
                      unsigned long *out)
{
    unsigned long v = 0;
    if (len == 0 || len > digits)
        return -1;
    for (size_t i = 0; i < len; i++) {
        if (!is_digit(s[i]))
            return -1;
        v = v * 10 + (unsigned long)(s[i] - '0');
    }
    if (v > max)
        return -1;
    *out = v;
    return 0;
}

/* Writes c's network address as text, in its own family; returns buf or NULL. */
static const char *net_text(const struct cidr *c, int v4, char *buf, size_t buflen)
{
    unsigned char b[16];
    for (int i = 0; i < 8; i++) {
        b[i] = (unsigned char)(c->hi >> (56 - 8 * i));
        b[8 + i] = (unsigned char)(c->lo >> (56 - 8 * i));
    }
    return inet_ntop(v4 ? AF_INET : AF_INET6, v4 ? b + 12 : b, buf, (socklen_t)buflen);
}

/* Parses "ADDR" or "ADDR/PREFIX" (IPv4 or IPv6) into c. Rejects host bits
 * below the prefix: "10.0.0.1/8" is more likely a typo than a wish. */
static int parse_cidr(struct words *p, const struct word *t, struct cidr *c)
{
    char q[QBUF], buf[INET6_ADDRSTRLEN];
    const char *slash = memchr(t->s, '/', t->len);
    size_t alen = slash ? (size_t)(slash - t->s) : t->len;
    struct addr128 a;
    unsigned max;

    words_quote(q, sizeof q, t->s, t->len);
    if (alen == 0 || alen >= sizeof buf)
        goto bad_addr;
    memcpy(buf, t->s, alen);
    buf[alen] = '\0';
    struct in_addr a4;
    struct in6_addr a6;
    if (inet_pton(AF_INET, buf, &a4) == 1) {
        from_in4(&a4, &a);
        max = 32;
    } else if (inet_pton(AF_INET6, buf, &a6) == 1) {
        from_in6(&a6, &a);
        max = 128;
    } else {
        goto bad_addr;
    }

    unsigned long prefix = max;
    if (slash && parse_uint(slash + 1, t->len - alen - 1, 3, max, &prefix) < 0)
        return words_fail(p, t->col, "bad CIDR '%s' (prefix must be 0..%u)", q, max);
    mask_for((unsigned)prefix + (128 - max), c);
    c->hi = a.hi & c->mhi;
    c->lo = a.lo & c->mlo;
    if (c->hi != a.hi || c->lo != a.lo) {
        char net[INET6_ADDRSTRLEN];
        if (net_text(c, max == 32, net, sizeof net) == NULL)
            return words_fail(p, t->col, "bad CIDR '%s' (host bits set below the prefix)", q);
        return words_fail(p, t->col, "bad CIDR '%s' (host bits set; did you mean %s/%lu?)", q, net,
                          prefix);
    }
    return 0;

bad_addr:
    return words_fail(p, t->col,
                      "bad CIDR '%s' (expected an IPv4 address a.b.c.d or an IPv6 address, "
                      "optionally followed by /prefix)",
                      q);
}

static int add_cidr(struct words *p, struct vec *v, const struct word *t)
{
    struct cidr c;
    if (parse_cidr(p, t, &c) < 0)
        return -1;
    struct cidr *slot = vec_push(v, sizeof c);
    if (slot == NULL)
        return fail_oom(p, t);
    *slot = c;
    return 0;
}

static int item_from(struct words *p, struct rule *r, const struct word *t)
{
    return add_cidr(p, &r->from, t);
}

static int item_user(struct words *p, struct rule *r, const struct word *t)
{
    char q[QBUF];
    if (t->len > MAX_USER_LEN)
        return words_fail(p, t->col, "bad user name '%s' (longer than %d bytes)",
                          words_quote(q, sizeof q, t->s, t->len), MAX_USER_LEN);
    char **slot = vec_push(&r->users, sizeof *slot);
    if (slot == NULL)
        return fail_oom(p, t);
    *slot = dup_mem(t->s, t->len);
    if (*slot == NULL) {
        r->users.n--; /* nothing to free in an empty slot */
        return fail_oom(p, t);
    }
    return 0;
}

static int item_cmd(struct words *p, struct rule *r, const struct word *t)
{
    char q[QBUF];
    if (words_is(t, "connect"))
        r->cmds |= BIT(RULES_CMD_CONNECT);
    else if (words_is(t, "bind"))
        r->cmds |= BIT(RULES_CMD_BIND);
    else if (words_is(t, "udp"))
        r->cmds |= BIT(RULES_CMD_UDP);
    else
        return words_fail(p, t->col, "unknown command '%s' (expected connect, bind or udp)",
                          words_quote(q, sizeof q, t->s, t->len));
    return 0;
}

static int item_port(struct words *p, struct rule *r, const struct word *t)
{
    char q[QBUF];
    const char *dash = memchr(t->s, '-', t->len);
    size_t n1 = dash ? (size_t)(dash - t->s) : t->len;
    unsigned long lo, hi;

    words_quote(q, sizeof q, t->s, t->len);
    if (parse_uint(t->s, n1, 5, 65535, &lo) < 0)
        goto bad;
    hi = lo;
    if (dash && parse_uint(dash + 1, t->len - n1 - 1, 5, 65535, &hi) < 0)
        goto bad;
    if (lo > hi)
        return words_fail(p, t->col, "bad port range '%s' (start must not exceed end)", q);
    struct port_range *slot = vec_push(&r->ports, sizeof *slot);
    if (slot == NULL)
        return fail_oom(p, t);
    slot->lo = (uint16_t)lo;
    slot->hi = (uint16_t)hi;
    return 0;
bad:
    return words_fail(p, t->col, "bad port '%s' (expected a number 0..65535 or a range N-M)", q);
}

/* Checks a host name (no wildcard, no trailing dot); returns NULL or why not.
 * The syntax is the one requests are held to (hostname.h). */
static const char *bad_name_reason(const char *s, size_t len)
{
    if (memchr(s, '*', len))
        return "'*' is only allowed as the whole first label, as in *.example.com";
    return hostname_problem(s, len);
}

static int add_pattern(struct words *p, struct rule *r, const struct word *t)
{
    char q[QBUF];
    const char *s = t->s;
    size_t len = t->len;
    int wildcard = 0;

    words_quote(q, sizeof q, t->s, t->len);
    if (len == 1 && s[0] == '*')
        return words_fail(
            p, t->col,
            "bad domain pattern '*' (use 'any' for every destination, or *.example.com)");
    if (len >= 2 && s[0] == '*' && s[1] == '.') {
        wildcard = 1;
        s += 2;
        len -= 2;
    }
    if (len > 0 && s[len - 1] == '.')
        len--; /* "example.com." is the same name, written fully qualified */
    const char *why = bad_name_reason(s, len);
    if (why != NULL)
        return words_fail(p, t->col, "bad domain pattern '%s' (%s)", q, why);

    struct pattern *slot = vec_push(&r->pats, sizeof *slot);
    if (slot == NULL)
        return fail_oom(p, t);
    slot->wildcard = wildcard;
    slot->len = len + (size_t)wildcard;
    slot->text = malloc(slot->len + 1);
    if (slot->text == NULL) {
        r->pats.n--;
        return fail_oom(p, t);
    }
    size_t o = 0;
    if (wildcard)
        slot->text[o++] = '.';
    for (size_t i = 0; i < len; i++)
        slot->text[o++] = lower(s[i]);
    slot->text[o] = '\0';
    return 0;
}

/* A `to` item is an address if it could only be one: it has ':' or '/', is
 * all digits and dots, or is a number in a form inet_aton() takes ("0x7f.1",
 * "2130706433"), which a resolver would also treat as an address. Such items
 * then get the strict CIDR check and its error message. */
static int looks_like_address(const struct word *t)
{
    int digits_dots = 1;
    for (size_t i = 0; i < t->len; i++) {
        if (t->s[i] == ':' || t->s[i] == '/')
            return 1;
        if (!is_digit(t->s[i]) && t->s[i] != '.')
            digits_dots = 0;
    }
    if (digits_dots)
        return 1;
    char buf[64];
    struct in_addr a4;
    if (t->len >= sizeof buf)
        return 0;
    memcpy(buf, t->s, t->len);
    buf[t->len] = '\0';
    return inet_aton(buf, &a4) != 0;
}

static int item_to(struct words *p, struct rule *r, const struct word *t)
{
    if (looks_like_address(t))
        return add_cidr(p, &r->to, t);
    return add_pattern(p, r, t);
}

static const struct clause_def {
    const char *keyword;
    int (*item)(struct words *, struct rule *, const struct word *);
} clauses[C_COUNT] = {
    [C_FROM] = {"from", item_from}, [C_USER] = {"user", item_user}, [C_CMD] = {"cmd", item_cmd},
    [C_TO] = {"to", item_to},       [C_PORT] = {"port", item_port},
};

static int find_clause(const struct word *t)
{
    for (int c = 0; c < C_COUNT; c++)
        if (words_is(t, clauses[c].keyword))
            return c;
    return -1;
}

/* Parses the comma-separated list after a clause keyword. Lists have no
 * spaces, so a lone keyword where the list belongs means it was forgotten:
 * "to port 80" is reported as such instead of allowing a host named "port". */
static int parse_list(struct words *p, struct rule *r, int c, const struct word *kw)
{
    const char *name = clauses[c].keyword;
    char q[QBUF];
    struct word list;

    if (!words_next(p, &list))
        return words_fail(p, kw->col + kw->len, "'%s' needs a list (or 'any') after it", name);
    if (find_clause(&list) >= 0)
        return words_fail(p, list.col, "'%s' needs a list (or 'any') before '%s'", name,
                          words_quote(q, sizeof q, list.s, list.len));
    r->written |= BIT(c);
    if (words_is(&list, "any")) {
        if (c == C_USER)
            r->restricts |= BIT(c); /* still requires authentication */
        return 0;
    }
    for (size_t i = 0;; i++) {
        struct word item = {list.s + i, 0, list.col + i};
        while (i < list.len && list.s[i] != ',')
            i++;
        item.len = (size_t)(list.s + i - item.s);
        if (item.len == 0)
            return words_fail(p, item.col,
                              "empty item in '%s' list (separate items by one ',' and no spaces)",
                              name);
        if (words_is(&item, "any"))
            return words_fail(p, item.col, "'any' cannot be combined with other items");
        if (clauses[c].item(p, r, &item) < 0)
            return -1;
        if (i == list.len)
            break;
    }
    r->restricts |= BIT(c);
    return 0;
}

/* What deny-private denies: the blocks the IANA IPv4 and IPv6 Special-Purpose
 * Address Registries mark as not globally reachable, multicast, and cloud
 * platform services outside them. IPv4-mapped forms (::ffff:10.0.0.1) are
 * covered by the IPv4 entries, being the same numbers here; other forms that
 * embed an IPv4 address are unwrapped by embedded_v4(). docs/rules.md lists
 * the same table. */
static const char *const private_nets[] = {
    "0.0.0.0/8",        /* "this network": connecting to 0.0.0.0 reaches the local host */
    "10.0.0.0/8",       /* private use, RFC 1918 */
    "100.64.0.0/10",    /* shared (CGNAT) space, RFC 6598; Alibaba metadata 100.100.100.200 */
    "127.0.0.0/8",      /* loopback */
    "169.254.0.0/16",   /* link-local; the metadata service 169.254.169.254 of most clouds */
    "172.16.0.0/12",    /* private use */
    "192.0.0.0/24",     /* IETF protocol assignments (Oracle metadata 192.0.0.192) */
    "192.0.2.0/24",     /* documentation */
    "192.168.0.0/16",   /* private use */
    "198.18.0.0/15",    /* benchmarking */
    "198.51.100.0/24",  /* documentation */
    "203.0.113.0/24",   /* documentation */
    "224.0.0.0/4",      /* multicast */
    "240.0.0.0/4",      /* reserved, and the limited broadcast 255.255.255.255 */
    "168.63.129.16/32", /* Azure platform (WireServer, DNS, health probes) */
    "::/128",           /* unspecified: likewise reaches the local host on Linux */
    "::1/128",          /* loopback */
    "64:ff9b:1::/48",   /* local-use IPv4/IPv6 translation */
    "100::/64",         /* discard-only */
    "100:0:0:1::/64",   /* dummy prefix */
    "2001::/23",        /* IETF protocol assignments, Teredo included; see below */
    "2001:db8::/32",    /* documentation */
    "3fff::/20",        /* documentation */
    "5f00::/16",        /* segment routing SIDs */
    "fc00::/7",         /* unique local (AWS metadata fd00:ec2::254, GCP fd20:ce::254) */
    "fe80::/10",        /* link-local */
    "fec0::/10",        /* deprecated site-local: still routed as local by some stacks */
    "ff00::/8",         /* multicast */
};

/* Globally reachable blocks inside the ones above, per the registries. */
static const char *const private_exceptions[] = {
    "192.0.0.9/32",    /* PCP anycast */
    "192.0.0.10/32",   /* TURN anycast */
    "2001:1::1/128",   /* PCP anycast */
    "2001:1::2/128",   /* TURN anycast */
    "2001:1::3/128",   /* DNS-SD SRP anycast */
    "2001:3::/32",     /* AMT */
    "2001:4:112::/48", /* AS112-v6 */
    "2001:20::/28",    /* ORCHIDv2 */
    "2001:30::/28",    /* drone remote ID */
};

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* Appends the CIDRs of a built-in table; errors are reported at column col. */
static int add_table(struct words *p, struct vec *v, const char *const *t, size_t n, size_t col)
{
    for (size_t i = 0; i < n; i++) {
        struct word tk = {t[i], strlen(t[i]), col};
        if (add_cidr(p, v, &tk) < 0)
            return -1;
    }
    return 0;
}

static int parse_deny_private(struct words *p, struct rule *r, const struct word *kw)
{
    struct word extra;
    if (words_next(p, &extra))
        return words_fail(p, extra.col, "'deny-private' takes no clauses (add a separate rule)");
    if (add_table(p, &r->to, private_nets, COUNT(private_nets), kw->col) < 0 ||
        add_table(p, &r->except, private_exceptions, COUNT(private_exceptions), kw->col) < 0)
        return -1;
    r->allow = 0;
    r->deny_private = 1;
    r->written = r->restricts = BIT(C_TO);
    return 0;
}

static int parse_rule(struct words *p, struct rule *r)
{
    char q[QBUF];
    struct word t;

    if (!words_next(p, &t))
        return words_fail(p, p->pos + 1, "empty rule (expected 'allow', 'deny' or 'deny-private')");
    if (words_is(&t, "deny-private"))
        return parse_deny_private(p, r, &t);
    if (words_is(&t, "allow"))
        r->allow = 1;
    else if (!words_is(&t, "deny"))
        return words_fail(p, t.col,
                          "unknown action '%s' (expected 'allow', 'deny' or 'deny-private')",
                          words_quote(q, sizeof q, t.s, t.len));
    while (words_next(p, &t)) {
        int c = find_clause(&t);
        if (c < 0)
            return words_fail(p, t.col,
                              "unknown clause '%s' (expected from, user, cmd, to or port)",
                              words_quote(q, sizeof q, t.s, t.len));
        if (r->written & BIT(c))
            return words_fail(p, t.col, "duplicate '%s' clause (list all values in one clause)",
                              clauses[c].keyword);
        if (parse_list(p, r, c, &t) < 0)
            return -1;
    }
    return 0;
}

/* ---------------------------------------------------------------- public: build */

struct rules *rules_new(void)
{
    return calloc(1, sizeof(struct rules));
}

void rules_free(struct rules *rs)
{
    if (rs == NULL)
        return;
    struct rule *v = rs->rules.items;
    for (size_t i = 0; i < rs->rules.n; i++)
        rule_clear(&v[i]);
    free(rs->rules.items);
    free(rs);
}

int rules_add(struct rules *rs, const char *text, const char *file, int line, char *err,
              size_t errlen)
{
    struct words p = {text, 0, err, errlen};
    struct rule r;
    memset(&r, 0, sizeof r);

    if (err != NULL && errlen > 0)
        err[0] = '\0';
    if (rs == NULL || text == NULL)
        return words_fail(&p, 1, "internal error: no rule set or no text");
    if (parse_rule(&p, &r) < 0)
        goto fail;
    if (file == NULL)
        file = "(command line)";
    r.file = dup_mem(file, strlen(file));
    r.line = line;
    struct rule *slot = r.file ? vec_push(&rs->rules, sizeof r) : NULL;
    if (slot == NULL) {
        words_fail(&p, 1, "out of memory");
        goto fail;
    }
    *slot = r; /* ownership of r's arrays moves into the set */
    return 0;
fail:
    rule_clear(&r);
    return -1;
}

size_t rules_count(const struct rules *rs)
{
    return rs ? rs->rules.n : 0;
}

void rules_each_user(const struct rules *rs, rules_user_fn *fn, void *arg)
{
    const struct rule *v = rs ? rs->rules.items : NULL;
    for (size_t i = 0; rs && i < rs->rules.n; i++) {
        char *const *names = v[i].users.items;
        if ((v[i].written & BIT(C_USER)) && v[i].users.n == 0)
            fn(arg, NULL, v[i].file, v[i].line);
        for (size_t k = 0; k < v[i].users.n; k++)
            fn(arg, names[k], v[i].file, v[i].line);
    }
}

/* ---------------------------------------------------------------- public: match */

/* A request brought into the form the rules use, once per match. */
struct req {
    int has_client, has_dst;
    struct addr128 client, dst;
    const char *user;
    int cmd;
    const char *name; /* up to the first NUL, trailing dots dropped; NULL if empty */
    size_t name_len;
    int addr_later; /* no address now, but resolving the name will give one */
    uint16_t port;
    const struct addr_list *self;
};

/* The name as the resolver will see it: C strings stop at the first NUL, so
 * "evil.com\0.example.com" is evil.com, not a subdomain of example.com. */
static size_t cut_at_nul(const char *s, size_t len)
{
    const char *nul = s ? memchr(s, '\0', len) : NULL;
    if (s == NULL)
        return 0;
    return nul ? (size_t)(nul - s) : len;
}

/* An IP literal sent as a name ("10.0.0.1", "::1") is an address to every
 * resolver, so it is matched as one at once. Looser forms that only some
 * resolvers take as addresses ("127.1", "0x7f.1", "fe80::1%eth0") are left as
 * names: rules on addresses then wait for the resolver's own answer. */
static int literal_addr(const char *name, size_t len, struct addr128 *out)
{
    char buf[INET6_ADDRSTRLEN];
    struct in_addr a4;
    struct in6_addr a6;
    if (name == NULL || len >= sizeof buf)
        return 0;
    memcpy(buf, name, len);
    buf[len] = '\0';
    if (inet_pton(AF_INET, buf, &a4) == 1) {
        from_in4(&a4, out);
        return 1;
    }
    if (inet_pton(AF_INET6, buf, &a6) == 1) {
        from_in6(&a6, out);
        return 1;
    }
    return 0;
}

static void prepare(const struct rules_request *rq, struct req *q)
{
    memset(q, 0, sizeof *q);
    q->has_client = sockaddr_to_128(rq->client, &q->client);
    q->user = rq->user;
    q->cmd = rq->cmd;
    q->port = rq->dst_port;
    q->self = rq->self;
    size_t raw = cut_at_nul(rq->dst_name, rq->dst_name_len), len = raw;
    while (len > 0 && rq->dst_name[len - 1] == '.')
        len--; /* "example.com." is example.com */
    q->name = len ? rq->dst_name : NULL;
    q->name_len = len;
    if (rq->dst != NULL)
        q->has_dst = sockaddr_to_128(rq->dst, &q->dst);
    else /* "10.0.0.1." is not a literal to resolvers, so the raw form is checked */
        q->has_dst = literal_addr(rq->dst_name, raw, &q->dst);
    q->addr_later = rq->dst == NULL && rq->dst_name != NULL && !q->has_dst;
}

/* Never true for an unauthenticated session: a `user` clause, even in a deny
 * rule, is about authenticated users only (cf. Dante CVE-2024-54662). */
static int user_matches(const struct rule *r, const char *user)
{
    if (user == NULL)
        return 0;
    char *const *names = r->users.items;
    if (r->users.n == 0)
        return 1; /* `user any` */
    for (size_t i = 0; i < r->users.n; i++)
        if (strcmp(names[i], user) == 0)
            return 1;
    return 0;
}

static int port_matches(const struct rule *r, uint16_t port)
{
    const struct port_range *pr = r->ports.items;
    for (size_t i = 0; i < r->ports.n; i++)
        if (port >= pr[i].lo && port <= pr[i].hi)
            return 1;
    return 0;
}

static int name_matches(const struct rule *r, const char *name, size_t len)
{
    const struct pattern *pt = r->pats.items;
    for (size_t i = 0; i < r->pats.n; i++) {
        const struct pattern *x = &pt[i];
        if (len < x->len || (len == x->len && x->wildcard) || (len != x->len && !x->wildcard))
            continue;
        const char *tail = name + (len - x->len);
        size_t k = 0;
        while (k < x->len && lower(tail[k]) == x->text[k])
            k++;
        if (k == x->len)
            return 1;
    }
    return 0;
}

/* The IPv4 address carried by an IPv6 form that reaches it: IPv4-compatible
 * ::a.b.c.d, SIIT ::ffff:0:a.b.c.d, NAT64 64:ff9b::a.b.c.d and 6to4
 * 2002:AABB:CCDD::. (IPv4-mapped is the IPv4 number itself here.) */
static int embedded_v4(const struct addr128 *a, struct addr128 *v4)
{
    uint32_t ip;
    if (a->hi == 0 && (a->lo >> 32) == 0)
        ip = (uint32_t)a->lo;
    else if (a->hi == 0 && (a->lo >> 32) == 0xffff0000ULL)
        ip = (uint32_t)a->lo;
    else if (a->hi == 0x0064ff9b00000000ULL && (a->lo >> 32) == 0)
        ip = (uint32_t)a->lo;
    else if ((a->hi >> 48) == 0x2002)
        ip = (uint32_t)(a->hi >> 16);
    else
        return 0;
    v4->hi = 0;
    v4->lo = 0x0000ffff00000000ULL | ip;
    return 1;
}

static int is_self(const struct addr_list *self, const struct addr128 *a)
{
    struct in6_addr a6;
    for (int i = 0; i < 8; i++) {
        a6.s6_addr[i] = (unsigned char)(a->hi >> (56 - 8 * i));
        a6.s6_addr[8 + i] = (unsigned char)(a->lo >> (56 - 8 * i));
    }
    return addr_list_has(self, &a6);
}

static int private_has(const struct rule *r, const struct addr128 *a, const struct addr_list *self)
{
    return (cidrs_have(&r->to, a) && !cidrs_have(&r->except, a)) || is_self(self, a);
}

static int to_has(const struct rule *r, const struct req *q)
{
    struct addr128 v4;
    if (!r->deny_private)
        return cidrs_have(&r->to, &q->dst);
    return private_has(r, &q->dst, q->self) ||
           (embedded_v4(&q->dst, &v4) && private_has(r, &v4, q->self));
}

static enum verdict to_matches(const struct rule *r, const struct req *q)
{
    if (q->name && name_matches(r, q->name, q->name_len))
        return VERDICT_YES;
    if (q->has_dst)
        return to_has(r, q) ? VERDICT_YES : VERDICT_NO;
    return (q->addr_later && r->to.n > 0) ? VERDICT_MAYBE : VERDICT_NO;
}

/* Returns VERDICT_YES, VERDICT_NO, or VERDICT_MAYBE when only the address still unknown can decide.
 */
static enum verdict rule_eval(const struct rule *r, const struct req *q)
{
    unsigned m = r->restricts;
    if ((m & BIT(C_FROM)) && !(q->has_client && cidrs_have(&r->from, &q->client)))
        return VERDICT_NO;
    if ((m & BIT(C_USER)) && !user_matches(r, q->user))
        return VERDICT_NO;
    if ((m & BIT(C_CMD)) && !(q->cmd >= 1 && q->cmd <= 3 && (r->cmds & BIT(q->cmd))))
        return VERDICT_NO;
    if ((m & BIT(C_PORT)) && !port_matches(r, q->port))
        return VERDICT_NO;
    return (m & BIT(C_TO)) ? to_matches(r, q) : VERDICT_YES;
}

static void verdict(struct rules_verdict *out, int allow, const struct rule *r)
{
    out->allow = allow;
    out->need_addr = 0;
    out->file = r ? r->file : NULL;
    out->line = r ? r->line : 0;
    out->index = -1;
}

void rules_match(const struct rules *rs, const struct rules_request *rq, struct rules_verdict *out)
{
    verdict(out, 0, NULL);
    if (rs == NULL || rq == NULL)
        return;
    struct req q;
    prepare(rq, &q);
    const struct rule *v = rs->rules.items;
    for (size_t i = 0; i < rs->rules.n; i++) {
        enum verdict e = rule_eval(&v[i], &q);
        if (e == VERDICT_YES) {
            verdict(out, v[i].allow, &v[i]);
            out->index = (int)i;
            return;
        }
        if (e == VERDICT_MAYBE) {
            verdict(out, 0, &v[i]);
            out->need_addr = 1;
            out->index = (int)i;
            return;
        }
    }
    out->allow = rs->rules.n == 0;
}

void rules_match_any_destination(const struct rules *rs, const struct rules_request *rq,
                                 struct rules_verdict *out)
{
    verdict(out, 0, NULL);
    if (rs == NULL || rq == NULL)
        return;
    struct req q;
    prepare(rq, &q);
    const unsigned dest = BIT(C_TO) | BIT(C_PORT);
    const struct rule *v = rs->rules.items;
    for (size_t i = 0; i < rs->rules.n; i++) {
        const struct rule *r = &v[i];
        struct rule head = *r;
        head.restricts &= ~dest; /* everything but the destination */
        if (rule_eval(&head, &q) != VERDICT_YES)
            continue;
        if (!(r->restricts & dest)) {
            verdict(out, r->allow, r);
            return;
        }
        if (r->allow) {
            verdict(out, 0, r);
            out->need_addr = 1;
            return;
        }
        /* A deny for some destinations: others may still be allowed below. */
    }
    out->allow = rs->rules.n == 0;
}

int rules_check_client(const struct rules *rs, const struct sockaddr *client,
                       struct rules_verdict *out)
{
    struct rules_verdict tmp;
    if (out == NULL)
        out = &tmp;
    verdict(out, 0, NULL);
    if (rs == NULL)
        return 0;
    struct addr128 a;
    int has = sockaddr_to_128(client, &a);
    const struct rule *v = rs->rules.items;
    for (size_t i = 0; i < rs->rules.n; i++) {
        const struct rule *r = &v[i];
        if ((r->restricts & BIT(C_FROM)) && !(has && cidrs_have(&r->from, &a)))
            continue;
        if (r->allow) {
            verdict(out, 1, r);
            return 1;
        }
        if ((r->restricts & ~BIT(C_FROM)) == 0) {
            verdict(out, 0, r);
            return 0;
        }
        /* A conditional deny: whether it matches or not, it allows nothing. */
    }
    out->allow = rs->rules.n == 0;
    return out->allow;
}

/* The CIDR for network hi:lo/prefix. */
static struct cidr cidr_of(uint64_t hi, uint64_t lo, unsigned prefix)
{
    struct cidr c;
    mask_for(prefix, &c);
    c.hi = hi & c.mhi;
    c.lo = lo & c.mlo;
    return c;
}

/* A run of CIDRs, as the union measure narrows it down. */
struct span {
    const struct cidr *c;
    size_t n;
};

static int span_covers(struct span s, const struct cidr *n, unsigned prefix)
{
    for (size_t i = 0; i < s.n; i++)
        if (cidr_covers(&s.c[i], n->hi, n->lo, prefix))
            return 1;
    return 0;
}

/* Two prefixes overlap iff one holds the other: compare under the shorter mask. */
static int cidr_overlaps(const struct cidr *c, const struct cidr *n)
{
    uint64_t mhi = c->mhi & n->mhi, mlo = c->mlo & n->mlo;
    return (c->hi & mhi) == (n->hi & mhi) && (c->lo & mlo) == (n->lo & mlo);
}

/* The CIDRs of s that overlap n, copied into out (room for s.n). */
static struct span span_within(struct span s, const struct cidr *n, struct cidr *out)
{
    struct span r = {out, 0};
    for (size_t i = 0; i < s.n; i++)
        if (cidr_overlaps(&s.c[i], n))
            out[r.n++] = s.c[i];
    return r;
}

/* 2^e as a double, for address counts beyond 64 bits (0 <= e <= 128). */
static double pow2(int e)
{
    double d = 1;
    for (; e >= 32; e -= 32)
        d *= 4294967296.0;
    return d * (double)(1ULL << e);
}

/* How many addresses of network n (of `prefix` bits) `allow` admits outside
 * `skip`. Each level keeps only the CIDRs that overlap its network, and
 * halves are visited only where a CIDR boundary lies inside, so the work is
 * about (number of CIDRs) x 128. Out of memory counts as everything. */
static double admitted(struct span allow, struct span skip, struct cidr n, unsigned prefix)
{
    double sum = pow2(128 - (int)prefix);
    struct cidr *buf = malloc((allow.n + skip.n) * sizeof *buf + 1);
    if (buf == NULL)
        return sum;
    allow = span_within(allow, &n, buf);
    skip = span_within(skip, &n, buf + allow.n);
    if (allow.n == 0 || span_covers(skip, &n, prefix))
        sum = 0;
    else if (!(skip.n == 0 && span_covers(allow, &n, prefix))) {
        struct cidr lo = cidr_of(n.hi, n.lo, prefix + 1), hi = lo;
        if (prefix < 64)
            hi.hi |= 1ULL << (63 - prefix);
        else
            hi.lo |= 1ULL << (127 - prefix);
        sum = admitted(allow, skip, lo, prefix + 1) + admitted(allow, skip, hi, prefix + 1);
    }
    free(buf);
    return sum;
}

/* Whether the `from` networks admit a sixteenth of global IPv4 or IPv6. */
static int union_is_open(const struct vec *from, const struct vec *skip)
{
    const uint64_t v4 = 0x0000ffff00000000ULL, unicast6 = 0x2000000000000000ULL;
    struct span a = {from->items, from->n}, s = {skip->items, skip->n};
    return admitted(a, s, cidr_of(0, v4, 96), 96) >= pow2(28) ||
           admitted(a, s, cidr_of(unicast6, 0, 3), 3) >= pow2(121);
}

/* Collects the `from` CIDRs of every allow rule; -1 when one has none. */
static int allow_sources(const struct rules *rs, struct vec *out)
{
    const struct rule *v = rs->rules.items;
    for (size_t i = 0; i < rs->rules.n; i++) {
        if (!v[i].allow)
            continue;
        if (!(v[i].restricts & BIT(C_FROM)))
            return -1;
        const struct cidr *c = v[i].from.items;
        for (size_t k = 0; k < v[i].from.n; k++) {
            struct cidr *slot = vec_push(out, sizeof *slot);
            if (slot == NULL)
                return -1; /* out of memory: fail closed, as if unrestricted */
            *slot = c[k];
        }
    }
    return 0;
}

int rules_allow_restricted_by_client(const struct rules *rs)
{
    struct words p = {"", 0, NULL, 0};
    struct vec from = {0}, skip = {0};
    int restricted = 0;
    if (rs == NULL || rs->rules.n == 0)
        return 0;
    if (allow_sources(rs, &from) == 0 &&
        add_table(&p, &skip, private_nets, COUNT(private_nets), 1) == 0)
        restricted = !union_is_open(&from, &skip);
    free(from.items);
    free(skip.items);
    return restricted;
}
