/* libFuzzer target for src/rules.c: the input is rule text, one rule per line.
 * Every line goes to rules_add; then fixed requests (plus one whose name is
 * the raw input) are matched against whatever parsed. Besides crashes, leaks
 * and UB, it traps on broken invariants of the API contract. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "rules.h"

#define MAX_LINES 64
#define MAX_NAME 300
#define CANARY 0xA5

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            __builtin_trap();                                                                      \
    } while (0)

static const char *const clients[] = {"192.0.2.10", "10.1.2.3", "::ffff:10.1.2.3", "2001:db8::1",
                                      "127.0.0.1"};
static const char *const dsts[] = {"10.0.0.1", "::ffff:169.254.169.254", "8.8.8.8", "::1",
                                   "2001:db8::5"};
static const char *const names[] = {"www.example.com", "example.com.", "10.0.0.1", "EXAMPLE.COM",
                                    "a.b"};
static const char *const users[] = {"alice", "bob"};

static void make_addr(struct sockaddr_storage *ss, const char *ip)
{
    memset(ss, 0, sizeof *ss);
    struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET, ip, &s4->sin_addr) == 1) {
        s4->sin_family = AF_INET;
        return;
    }
    CHECK(inet_pton(AF_INET6, ip, &s6->sin6_addr) == 1);
    s6->sin6_family = AF_INET6;
}

static void check_verdict(const struct rules_verdict *v, size_t nrules)
{
    CHECK(v->allow == 0 || v->allow == 1);
    CHECK(v->need_addr == 0 || v->need_addr == 1);
    CHECK(!(v->need_addr && v->allow));
    CHECK((v->file == NULL) == (v->line == 0)); /* lines are numbered from 1 here */
    CHECK(v->line >= 0 && (size_t)v->line <= nrules);
    if (v->file == NULL && !v->need_addr)
        CHECK(v->allow == (nrules == 0)); /* the default */
}

/* Adds each line; checks the error contract and that failures change nothing. */
static void add_lines(struct rules *rs, const uint8_t *data, size_t size, size_t errlen)
{
    char err[200];
    size_t start = 0, nlines = 0;
    while (start <= size && nlines++ < MAX_LINES) {
        const uint8_t *nl = memchr(data + start, '\n', size - start);
        size_t len = nl ? (size_t)(nl - (data + start)) : size - start;
        char *line = malloc(len + 1); /* exact size, so ASan sees any over-read */
        if (line == NULL)
            return;
        memcpy(line, data + start, len);
        line[len] = '\0';
        size_t before = rules_count(rs);
        memset(err, CANARY, sizeof err);
        int rc = rules_add(rs, line, "fuzz.conf", (int)rules_count(rs) + 1, err, errlen);
        CHECK(rc == 0 || rc == -1);
        CHECK(rules_count(rs) == before + (rc == 0));
        CHECK(err[errlen] == (char)CANARY);
        CHECK(memchr(err, '\0', errlen) != NULL);
        if (rc == -1 && errlen > 8)
            CHECK(strncmp(err, "column ", 7) == 0);
        if (rc == 0)
            CHECK(err[0] == '\0');
        free(line);
        if (nl == NULL)
            break;
        start += len + 1;
    }
}

static void match_one(const struct rules *rs, const struct rules_request *rq, int client_refused)
{
    struct rules_verdict v;
    rules_match(rs, rq, &v);
    check_verdict(&v, rules_count(rs));
    /* rules_check_client promised that nothing from this client is allowed. */
    if (client_refused)
        CHECK(v.allow == 0);
}

static void match_all(const struct rules *rs, const uint8_t *data, size_t size)
{
    size_t nlen = size < MAX_NAME ? size : MAX_NAME;
    char *raw_name = malloc(nlen ? nlen : 1);
    if (raw_name == NULL)
        return;
    memcpy(raw_name, data, nlen);

    for (size_t c = 0; c < sizeof clients / sizeof clients[0]; c++) {
        struct sockaddr_storage cs, ds;
        struct rules_verdict cv;
        make_addr(&cs, clients[c]);
        int ok = rules_check_client(rs, (const struct sockaddr *)&cs, &cv);
        CHECK(ok == cv.allow);
        check_verdict(&cv, rules_count(rs));
        for (size_t i = 0; i < 12; i++) {
            size_t k = (c + i) % 5;
            struct rules_request rq = {
                .client = (const struct sockaddr *)&cs,
                .user = (i % 3) ? users[i % 2] : NULL,
                .cmd = (int)(i % 5), /* includes the invalid 0 and 4 */
                .dst = NULL,
                .dst_port = (uint16_t)(i * 7919u),
            };
            if (i & 1) {
                make_addr(&ds, dsts[k]);
                rq.dst = (const struct sockaddr *)&ds;
            }
            if (i & 2) {
                rq.dst_name = names[k];
                rq.dst_name_len = strlen(names[k]);
            }
            match_one(rs, &rq, !ok);
            rq.dst_name = raw_name; /* arbitrary bytes, not NUL-terminated */
            rq.dst_name_len = nlen;
            match_one(rs, &rq, !ok);
        }
    }
    free(raw_name);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct rules *rs = rules_new();
    if (rs == NULL)
        return 0;
    size_t errlen = 1 + (size ? data[0] % 160 : 159); /* exercise truncated messages too */
    add_lines(rs, data, size, errlen);
    match_all(rs, data, size);
    int r = rules_allow_restricted_by_client(rs);
    CHECK(r == 0 || r == 1);
    if (rules_count(rs) == 0)
        CHECK(r == 0);
    rules_free(rs);
    return 0;
}
