/* libFuzzer target for src/route.c: the input is route text, one route per
 * line, given to routes_add with credentials allowed and refused. Then one
 * request is matched and the outbound choice made for every route. Traps
 * on: a count that does not follow the answers, a route whose masked text
 * shows a password as often as the line did, a password accepted without ROUTES_SECRETS_OK, a
 * failed add without a message, a source outside its prefix family, and
 * more alternatives or hops than the limits. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "route.h"

#define MAX_LINES 32

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            __builtin_trap();                                                                      \
    } while (0)

/* The part of a route's text after its `via` word: hops and out items. */
static const char *after_via(const char *t)
{
    for (const char *p = t; *p; p++) {
        int start = p == t || *(p - 1) == ' ' || *(p - 1) == '\t';
        if (start && strncasecmp(p, "via", 3) == 0 && (p[3] == ' ' || p[3] == '\t' || !p[3]))
            return p;
    }
    return t;
}

/* Occurrences of needle in hay, overlapping ones too. */
static size_t count(const char *hay, const char *needle)
{
    size_t n = 0;
    for (const char *p = strstr(hay, needle); p; p = strstr(p + 1, needle))
        n++;
    return n;
}

/* line: the text the route was parsed from. */
static void check_route(const struct route *r, const char *line, int secrets_ok)
{
    static const uint64_t key[2] = {7, 9}, rnd[2] = {~0ull, 0x0123456789abcdefull};
    struct net_out o;
    CHECK(r->nalts >= 1 && r->nalts <= ROUTE_MAX_ALTS);
    for (size_t i = 0; i < r->nalts; i++) {
        CHECK(r->alts[i].nhops <= ROUTE_MAX_HOPS);
        for (size_t j = 0; j < r->alts[i].nhops; j++) {
            const struct upstream_hop *h = &r->alts[i].hops[j];
            CHECK(h->port != 0 && h->host[0] != '\0');
            CHECK(secrets_ok || h->pass[0] == '\0'); /* a user alone is no secret */
            /* Masking takes away at least the password's own ":PASS@"
             * (when written without %XX, and not made of '*' itself). */
            if (h->pass[0] != 0 && strchr(h->pass, '*') == NULL) {
                char needle[260];
                snprintf(needle, sizeof needle, ":%s@", h->pass);
                size_t before = count(after_via(line), needle);
                CHECK(before == 0 || count(after_via(r->text), needle) < before);
            }
        }
    }
    route_out_for(r, key, "alice", 5, rnd, &o);
    CHECK(o.nsrc <= 2);
    for (size_t i = 0; i < o.nsrc; i++)
        CHECK(o.src[i].sa.sa_family == (r->out.src[0].mode && i == 0 ? AF_INET : AF_INET6));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    CHECK(text != NULL);
    memcpy(text, data, size);
    text[size] = '\0';
    for (unsigned secrets = 0; secrets < 2; secrets++) {
        struct routes *rs = routes_new();
        CHECK(rs != NULL);
        char *save = NULL, *copy = strdup(text);
        CHECK(copy != NULL);
        size_t lines = 0, added = 0;
        const char *lines_ok[MAX_LINES];
        for (char *line = strtok_r(copy, "\n", &save); line && lines < MAX_LINES;
             line = strtok_r(NULL, "\n", &save), lines++) {
            char err[200] = "";
            int rc = routes_add(rs, line, "f", (int)lines, secrets ? ROUTES_SECRETS_OK : 0, err,
                                sizeof err);
            CHECK(rc == 0 || err[0] != '\0');
            if (rc == 0)
                lines_ok[added++] = line;
            CHECK(routes_count(rs) == added);
        }
        for (size_t i = 0; i < routes_count(rs); i++)
            check_route(routes_get(rs, i), lines_ok[i], (int)secrets);
        struct sockaddr_in c = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(0x0a010203)};
        struct rules_request rq = {.client = (struct sockaddr *)&c,
                                   .user = "alice",
                                   .cmd = 1,
                                   .dst_name = "www.example.com",
                                   .dst_name_len = 15,
                                   .dst_port = 443};
        int need;
        const struct route *r = routes_match(rs, &rq, &need);
        CHECK(r == NULL || need == 0);
        free(copy);
        routes_free(rs);
    }
    free(text);
    return 0;
}
