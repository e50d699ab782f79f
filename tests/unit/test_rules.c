/* Unit tests for src/rules.c: grammar, every parse error, and matching semantics. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include "rules.h"

#define FILE_NAME "test.conf"
#define DEFAULT_CLIENT "192.0.2.10"

/* ------------------------------------------------------------ helpers */

/* Fills ss with ip (IPv4 or IPv6 text); fails the test on a bad literal. */
static const struct sockaddr *addr(struct sockaddr_storage *ss, const char *ip)
{
    memset(ss, 0, sizeof *ss);
    struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET, ip, &s4->sin_addr) == 1) {
        s4->sin_family = AF_INET;
    } else {
        assert_int_equal(inet_pton(AF_INET6, ip, &s6->sin6_addr), 1);
        s6->sin6_family = AF_INET6;
    }
    return (const struct sockaddr *)ss;
}

/* Builds a set from lines that must all parse; line numbers start at 1. */
static struct rules *build_n(const char *const *lines, size_t n)
{
    struct rules *rs = rules_new();
    char err[256];
    assert_non_null(rs);
    for (size_t i = 0; i < n; i++) {
        int rc = rules_add(rs, lines[i], FILE_NAME, (int)i + 1, err, sizeof err);
        if (rc != 0)
            fail_msg("rule '%s' rejected: %s", lines[i], err);
    }
    assert_int_equal(rules_count(rs), n);
    return rs;
}

#define LINES(...) ((const char *const[]){__VA_ARGS__})
#define NLINES(...) (sizeof(LINES(__VA_ARGS__)) / sizeof(const char *))
#define BUILD(...) build_n(LINES(__VA_ARGS__), NLINES(__VA_ARGS__))

/* A request in text form; NULL client means DEFAULT_CLIENT, cmd 0 means CONNECT. */
struct q {
    const char *client, *user;
    int cmd;
    const char *dst, *name;
    uint16_t port;
    const struct addr_list *self;
};

static struct rules_verdict run(const struct rules *rs, struct q q)
{
    struct sockaddr_storage cs, ds;
    struct rules_request rq = {
        .client = addr(&cs, q.client ? q.client : DEFAULT_CLIENT),
        .user = q.user,
        .cmd = q.cmd ? q.cmd : RULES_CMD_CONNECT,
        .dst = q.dst ? addr(&ds, q.dst) : NULL,
        .dst_name = q.name,
        .dst_name_len = q.name ? strlen(q.name) : 0,
        .dst_port = q.port,
        .self = q.self,
    };
    struct rules_verdict v;
    memset(&v, 0x5a, sizeof v); /* prove rules_match fills every field */
    rules_match(rs, &rq, &v);
    return v;
}

/* 1 allow, 0 deny, and fails the test if the verdict is not final. */
static int allowed(const struct rules *rs, struct q q)
{
    struct rules_verdict v = run(rs, q);
    assert_int_equal(v.need_addr, 0);
    return v.allow;
}

/* Asserts that text is rejected with an error starting "column COL: " and containing want. */
static void expect_error(const char *text, int col, const char *want)
{
    struct rules *rs = rules_new();
    char err[256], prefix[32];
    assert_non_null(rs);
    assert_int_equal(rules_add(rs, text, FILE_NAME, 7, err, sizeof err), -1);
    assert_int_equal(rules_count(rs), 0);
    snprintf(prefix, sizeof prefix, "column %d: ", col);
    if (strncmp(err, prefix, strlen(prefix)) != 0 || strstr(err, want) == NULL)
        fail_msg("rule '%s': got error '%s', want '%s...%s'", text, err, prefix, want);
    rules_free(rs);
}

/* ------------------------------------------------------------ defaults and order */

static void empty_set_allows_everything(void **state)
{
    (void)state;
    struct rules *rs = rules_new();
    assert_non_null(rs);
    struct rules_verdict v = run(rs, (struct q){.dst = "10.0.0.1", .port = 22});
    assert_int_equal(v.allow, 1);
    assert_null(v.file);
    assert_int_equal(v.line, 0);
    rules_free(rs);
}

static void default_deny_when_rules_exist(void **state)
{
    (void)state;
    struct rules *rs = BUILD("allow to 198.51.100.0/24");
    struct rules_verdict v = run(rs, (struct q){.dst = "203.0.113.1", .port = 80});
    assert_int_equal(v.allow, 0);
    assert_int_equal(v.need_addr, 0);
    assert_null(v.file);
    assert_int_equal(v.line, 0);
    rules_free(rs);
}

static void first_match_wins(void **state)
{
    (void)state;
    struct rules *rs = BUILD("deny to 10.0.0.0/8 port 22", "allow to 10.0.0.0/8", "deny");
    struct rules_verdict v = run(rs, (struct q){.dst = "10.1.1.1", .port = 22});
    assert_int_equal(v.allow, 0);
    assert_int_equal(v.line, 1);
    v = run(rs, (struct q){.dst = "10.1.1.1", .port = 80});
    assert_int_equal(v.allow, 1);
    assert_int_equal(v.line, 2);
    v = run(rs, (struct q){.dst = "11.1.1.1", .port = 80});
    assert_int_equal(v.allow, 0);
    assert_int_equal(v.line, 3);
    assert_int_equal(v.index, 2);
    rules_free(rs);

    rs = BUILD("deny port 22", "allow to 10.0.0.0/8");
    assert_int_equal(run(rs, (struct q){.dst = "10.1.1.1", .port = 80}).index, 1);
    assert_int_equal(run(rs, (struct q){.name = "a.example", .port = 80}).index, 1); /* need_addr */
    assert_int_equal(run(rs, (struct q){.dst = "11.1.1.1", .port = 80}).index, -1);
    rules_free(rs);

    rs = BUILD("allow", "deny");
    assert_int_equal(allowed(rs, (struct q){.dst = "10.1.1.1"}), 1);
    rules_free(rs);
}

static void verdict_names_file_and_line(void **state)
{
    (void)state;
    struct rules *rs = rules_new();
    char err[128];
    assert_non_null(rs);
    assert_int_equal(rules_add(rs, "deny port 25", "/etc/socks5d.conf", 42, err, sizeof err), 0);
    struct rules_verdict v = run(rs, (struct q){.dst = "203.0.113.1", .port = 25});
    assert_int_equal(v.allow, 0);
    assert_string_equal(v.file, "/etc/socks5d.conf");
    assert_int_equal(v.line, 42);
    rules_free(rs);
}

static void null_file_is_reported_as_command_line(void **state)
{
    (void)state;
    struct rules *rs = rules_new();
    assert_non_null(rs);
    assert_int_equal(rules_add(rs, "allow", NULL, 0, NULL, 0), 0);
    struct rules_verdict v = run(rs, (struct q){.dst = "203.0.113.1"});
    assert_string_equal(v.file, "(command line)");
    rules_free(rs);
}

static void bare_allow_and_deny_match_everything(void **state)
{
    (void)state;
    struct rules *rs = BUILD("deny");
    assert_int_equal(allowed(rs, (struct q){.dst = "203.0.113.1"}), 0);
    assert_int_equal(allowed(rs, (struct q){.name = "example.com"}), 0);
    assert_int_equal(allowed(rs, (struct q){.user = "bob", .cmd = RULES_CMD_UDP}), 0);
    rules_free(rs);
    rs = BUILD("allow");
    assert_int_equal(allowed(rs, (struct q){.dst = "203.0.113.1"}), 1);
    assert_int_equal(allowed(rs, (struct q){.name = "example.com"}), 1);
    assert_int_equal(allowed(rs, (struct q){.cmd = RULES_CMD_BIND}), 1);
    rules_free(rs);
}

static void comments_and_trailing_newline_are_ignored(void **state)
{
    (void)state;
    struct rules *rs = BUILD("  allow port 80 # web only\n", "\tdeny\r\n");
    assert_int_equal(allowed(rs, (struct q){.dst = "203.0.113.1", .port = 80}), 1);
    assert_int_equal(allowed(rs, (struct q){.dst = "203.0.113.1", .port = 81}), 0);
    rules_free(rs);
}

static void keywords_are_case_insensitive(void **state)
{
    (void)state;
    struct rules *rs = BUILD("ALLOW From 192.0.2.0/24 CMD Connect TO Example.COM PORT 443");
    assert_int_equal(allowed(rs, (struct q){.name = "example.com", .port = 443}), 1);
    rules_free(rs);
}

static void clauses_in_any_order(void **state)
{
    (void)state;
    struct rules *rs =
        BUILD("allow port 443 to example.com cmd connect user alice from 192.0.2.0/24");
    assert_int_equal(allowed(rs, (struct q){.user = "alice", .name = "example.com", .port = 443}),
                     1);
    assert_int_equal(allowed(rs, (struct q){.user = "alice", .name = "example.com", .port = 80}),
                     0);
    rules_free(rs);
}

static void any_stands_for_every_list(void **state)
{
    (void)state;
    struct rules *rs = BUILD("allow from any cmd any to any port any", "deny");
    assert_int_equal(allowed(rs, (struct q){.client = "2001:db8::9", .dst = "203.0.113.1"}), 1);
    assert_int_equal(allowed(rs, (struct q){.cmd = RULES_CMD_UDP, .name = "x.org", .port = 5}), 1);
    assert_int_equal(allowed(rs, (struct q){.cmd = RULES_CMD_BIND}), 1);
    rules_free(rs);
}

/* ------------------------------------------------------------ from */

static void from_matches_client_cidr(void **state)
{
    (void)state;
    struct rules *rs = BUILD("allow from 192.0.2.0/24,2001:db8::/32", "deny");
    assert_int_equal(allowed(rs, (struct q){.client = "192.0.2.200", .dst = "203.0.113.1"}), 1);
    assert_int_equal(allowed(rs, (struct q){.client = "192.0.3.1", .dst = "203.0.113.1"}), 0);
    assert_int_equal(allowed(rs, (struct q){.client = "2001:db8:ff::1", .dst = "203.0.113.1"}), 1);
    assert_int_equal(allowed(rs, (struct q){.client = "2001:db9::1", .dst = "203.0.113.1"}), 0);
    rules_free(rs);
}

static void bare_address_is_single_host(void **state)
{
    (void)state;
    struct rules *rs = BUILD("allow from 192.0.2.7,2001:db8::7", "deny");
    assert_int_equal(allowed(rs, (struct q){.client = "192.0.2.7"}), 1);
    assert_int_equal(allowed(rs, (struct q){.client = "192.0.2.6"}), 0);
    assert_int_equal(allowed(rs, (struct q){.client = "2001:db8::7"}), 1);
    assert_int_equal(allowed(rs, (struct q){.client = "2001:db8::8"}), 0);
    rules_free(rs);
}

static void mapped_client_matches_ipv4_from(void **state)
{
    (void)state;
    /* A dual-stack listener sees IPv4 clients as ::ffff:a.b.c.d. */
    struct rules *rs = BUILD("allow from 192.0.2.0/24", "deny");
    assert_int_equal(allowed(rs, (struct q){.client = "::ffff:192.0.2.9"}), 1);
    assert_int_equal(allowed(rs, (struct q){.client = "::ffff:192.0.3.9"}), 0);
    rules_free(rs);
}

static void non_ip_client_matches_no_from(void **state)
{
    (void)state;
    struct rules *rs = BUILD("allow from 0.0.0.0/0", "deny user bob", "allow port 1");
    struct sockaddr_un un = {.sun_family = AF_UNIX};
    struct rules_request rq = {.client = (const struct sockaddr *)&un, .cmd = 1, .dst_port = 1};
    struct rules_verdict v;
    rules_match(rs, &rq, &v);
    assert_int_equal(v.allow, 1);
    assert_int_equal(v.line, 3);
    rq.client = NULL; /* tolerated although the API says never NULL */
    rules_match(rs, &rq, &v);
    assert_int_equal(v.line, 3);
    rules_free(rs);
}

/* ------------------------------------------------------------ user */

static void user_matches_listed_names_case_sensitively(void **state)
{
    (void)state;
    struct rules *rs = BUILD("allow user alice,bob", "deny");
    assert_int_equal(allowed(rs, (struct q){.user = "alice"}), 1);
    assert_int_equal(allowed(rs, (struct q){.user = "bob"}), 1);
    assert_int_equal(allowed(rs, (struct q){.user = "Alice"}), 0);
    assert_int_equal(allowed(rs, (struct q){.user = "bobby"}), 0);
    assert_int_equal(allowed(rs, (struct q){.user = ""}), 0);
    rules_free(rs);
}

/* Dante CVE-2024-54662: a rule with a user clause must not match a session
 * that never authenticated, whichever way the rule points. */
static void deny_user_never_matches_unauthenticated(void **state)
{
    (void)state;
    struct rules *rs = BUILD("deny user bob", "allow");
    struct rules_verdict v = run(rs, (struct q){.user = NULL, .dst = "203.0.113.1"});
    assert_int_equal(v.allow, 1);
    assert_int_equal(v.line, 2); /* rule 1 was skipped, not matched */
    v = run(rs, (struct q){.user = "bob", .dst = "203.0.113.1"});
    assert_int_equal(v.allow, 0);
    assert_int_equal(v.line, 1);
    rules_free(rs);
}

static void allow_user_never_matches_unauthenticated(void **state)
{
    (void)state;
    struct rules *rs = BUILD("allow user alice");
    struct rules_verdict v = run(rs, (struct q){.user = NULL, .dst = "203.0.113.1"});
    assert_int_equal(v.allow, 0);
    assert_null(v.file); /* the default, not rule 1 */
    assert_int_equal(allowed(rs, (struct q){.user = "alice", .dst = "203.0.113.1"}), 1);
    rules_free(rs);
}

static void user_any_requires_authentication(void **state)
{
    (void)state;
    struct rules *rs = BUILD("allow user any", "deny");
    assert_int_equal(allowed(rs, (struct q){.user = "anyone"}), 1);
    assert_int_equal(allowed(rs, (struct q){.user = NULL}), 0);
    rules_free(rs);
    rs = BUILD("deny user any", "allow");
    assert_int_equal(allowed(rs, (struct q){.user = NULL}), 1);
    assert_int_equal(allowed(rs, (struct q){.user = "x"}), 0);
    rules_free(rs);
}

/* ------------------------------------------------------------ cmd and port */

static void cmd_matches_listed_commands(void **state)
{
    (void)state;
    struct rules *rs = BUILD("allow cmd connect,udp", "deny");
    assert_int_equal(allowed(rs, (struct q){.cmd = RULES_CMD_CONNECT}), 1);
    assert_int_equal(allowed(rs, (struct q){.cmd = RULES_CMD_UDP}), 1);
    assert_int_equal(allowed(rs, (struct q){.cmd = RULES_CMD_BIND}), 0);
    assert_int_equal(allowed(rs, (struct q){.cmd = 4}), 0);
    assert_int_equal(allowed(rs, (struct q){.cmd = -1}), 0);
    rules_free(rs);
    rs = BUILD("deny cmd bind", "allow");
    assert_int_equal(allowed(rs, (struct q){.cmd = RULES_CMD_BIND}), 0);
    assert_int_equal(allowed(rs, (struct q){.cmd = RULES_CMD_CONNECT}), 1);
    assert_int_equal(allowed(rs, (struct q){.cmd = 99}), 1); /* no cmd clause applies */
    rules_free(rs);
}

static void port_single_values_and_ranges(void **state)
{
    (void)state;
    struct rules *rs = BUILD("allow port 80,443,8000-8080,0,65535", "deny");
    static const struct {
        uint16_t port;
        int allow;
    } cases[] = {{80, 1},    {443, 1}, {8000, 1}, {8080, 1}, {8040, 1}, {0, 1},
                 {65535, 1}, {79, 0},  {81, 0},   {7999, 0}, {8081, 0}, {65534, 0}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        assert_int_equal(allowed(rs, (struct q){.dst = "203.0.113.1", .port = cases[i].port}),
                         cases[i].allow);
    rules_free(rs);
}

static void port_range_may_be_one_port(void **state)
{
    (void)state;
    struct rules *rs = BUILD("allow port 22-22", "deny");
    assert_int_equal(allowed(rs, (struct q){.port = 22}), 1);
    assert_int_equal(allowed(rs, (struct q){.port = 23}), 0);
    rules_free(rs);
}

/* ------------------------------------------------------------ to: addresses */

static void to_cidr_matches_address(void **state)
{
    (void)state;
    struct rules *rs = BUILD("allow to 198.51.100.0/24,2001:db8::/32", "deny");
    assert_int_equal(allowed(rs, (struct q){.dst = "198.51.100.77"}), 1);
    assert_int_equal(allowed(rs, (struct q){.dst = "198.51.101.1"}), 0);
    assert_int_equal(allowed(rs, (struct q){.dst = "2001:db8:1::1"}), 1);
    assert_int_equal(allowed(rs, (struct q){.dst = "2001:db9::1"}), 0);
    rules_free(rs);
}

static void mapped_ipv6_matches_ipv4_cidr(void **state)
{
    (void)state;
    struct rules *rs = BUILD("deny to 10.0.0.0/8", "allow");
    assert_int_equal(allowed(rs, (struct q){.dst = "::ffff:10.0.0.1"}), 0);
    assert_int_equal(allowed(rs, (struct q){.dst = "10.0.0.1"}), 0);
    assert_int_equal(allowed(rs, (struct q){.dst = "::ffff:11.0.0.1"}), 1);
    /* A literal name in mapped form is the same address too. */
    assert_int_equal(allowed(rs, (struct q){.name = "::ffff:10.0.0.1"}), 0);
    assert_int_equal(allowed(rs, (struct q){.name = "::FFFF:a00:1"}), 0);
    rules_free(rs);
}

static void mapped_cidr_rule_matches_plain_ipv4(void **state)
{
    (void)state;
    struct rules *rs = BUILD("deny to ::ffff:10.0.0.0/104", "allow");
    assert_int_equal(allowed(rs, (struct q){.dst = "10.9.9.9"}), 0);
    assert_int_equal(allowed(rs, (struct q){.dst = "11.9.9.9"}), 1);
    rules_free(rs);
}

static void ipv6_catch_all_includes_ipv4(void **state)
{
    (void)state;
    /* ::/0 contains ::ffff:0:0/96, i.e. every IPv4 address; 0.0.0.0/0 has no IPv6. */
    struct rules *rs = BUILD("deny to ::/0", "allow");
    assert_int_equal(allowed(rs, (struct q){.dst = "203.0.113.1"}), 0);
    rules_free(rs);
    rs = BUILD("deny to 0.0.0.0/0", "allow");
    assert_int_equal(allowed(rs, (struct q){.dst = "203.0.113.1"}), 0);
    assert_int_equal(allowed(rs, (struct q){.dst = "2001:db8::1"}), 1);
    rules_free(rs);
}

static void prefix_zero_and_full_length(void **state)
{
    (void)state;
    struct rules *rs = BUILD("deny to 203.0.113.9/32", "deny to 2001:db8::9/128",
                             "allow to 0.0.0.0/0", "allow to 2001:db8::/32");
    assert_int_equal(allowed(rs, (struct q){.dst = "203.0.113.9"}), 0);
    assert_int_equal(allowed(rs, (struct q){.dst = "203.0.113.8"}), 1);
    assert_int_equal(allowed(rs, (struct q){.dst = "2001:db8::9"}), 0);
    assert_int_equal(allowed(rs, (struct q){.dst = "2001:db8::a"}), 1);
    rules_free(rs);
}

static void ipv4_literal_name_is_matched_as_address(void **state)
{
    (void)state;
    struct rules *rs = BUILD("deny to 10.0.0.0/8,::1", "allow");
    struct rules_verdict v = run(rs, (struct q){.name = "10.0.0.1"});
    assert_int_equal(v.need_addr, 0);
    assert_int_equal(v.allow, 0);
    assert_int_equal(allowed(rs, (struct q){.name = "::1"}), 0);
    assert_int_equal(allowed(rs, (struct q){.name = "192.0.2.1"}), 1);
    rules_free(rs);
}

static void loose_literal_name_waits_for_resolution(void **state)
{
    (void)state;
    /* "127.1", "0x7f.1" and "10.0.0.1." are not literals to every resolver, so
     * the verdict must come from the address the resolver really returns. */
    struct rules *rs = BUILD("deny to 127.0.0.0/8,10.0.0.0/8", "allow");
    const char *names[] = {"127.1", "0x7f.0.0.1", "2130706433", "10.0.0.1.", "fe80::1%eth0"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        struct rules_verdict v = run(rs, (struct q){.name = names[i]});
        assert_int_equal(v.need_addr, 1);
        assert_int_equal(v.allow, 0);
        assert_int_equal(v.line, 1);
    }
    rules_free(rs);
}

/* ------------------------------------------------------------ to: names */

static void exact_pattern_matches_only_that_name(void **state)
{
    (void)state;
    struct rules *rs = BUILD("allow to example.com", "deny");
    assert_int_equal(allowed(rs, (struct q){.name = "example.com"}), 1);
    assert_int_equal(allowed(rs, (struct q){.name = "www.example.com"}), 0);
    assert_int_equal(allowed(rs, (struct q){.name = "badexample.com"}), 0);
    assert_int_equal(allowed(rs, (struct q){.name = "example.com.evil"}), 0);
    assert_int_equal(allowed(rs, (struct q){.name = "example.co"}), 0);
    rules_free(rs);
}

static void wildcard_matches_subdomains(void **state)
{
    (void)state;
    struct rules *rs = BUILD("allow to *.example.com", "deny");
    assert_int_equal(allowed(rs, (struct q){.name = "www.example.com"}), 1);
    assert_int_equal(allowed(rs, (struct q){.name = "a.b.c.example.com"}), 1);
    assert_int_equal(allowed(rs, (struct q){.name = "badexample.com"}), 0);
    assert_int_equal(allowed(rs, (struct q){.name = "www.example.com.evil"}), 0);
    rules_free(rs);
}

static void wildcard_does_not_match_apex(void **state)
{
    (void)state;
    struct rules *rs = BUILD("allow to *.example.com", "deny");
    assert_int_equal(allowed(rs, (struct q){.name = "example.com"}), 0);
    assert_int_equal(allowed(rs, (struct q){.name = "example.com."}), 0);
    assert_int_equal(allowed(rs, (struct q){.name = ".example.com"}), 0);
    rules_free(rs);
}

static void pattern_is_case_insensitive(void **state)
{
    (void)state;
    struct rules *rs = BUILD("deny to *.EXAMPLE.com,Evil.ORG", "allow");
    assert_int_equal(allowed(rs, (struct q){.name = "WWW.Example.COM"}), 0);
    assert_int_equal(allowed(rs, (struct q){.name = "eViL.oRg"}), 0);
    assert_int_equal(allowed(rs, (struct q){.name = "good.org"}), 1);
    rules_free(rs);
}

static void trailing_dot_in_request_name_is_ignored(void **state)
{
    (void)state;
    struct rules *rs = BUILD("deny to example.com,*.example.net", "allow");
    assert_int_equal(allowed(rs, (struct q){.name = "example.com."}), 0);
    assert_int_equal(allowed(rs, (struct q){.name = "example.com.."}), 0);
    assert_int_equal(allowed(rs, (struct q){.name = "a.example.net."}), 0);
    rules_free(rs);
}

static void pattern_with_trailing_dot_is_accepted(void **state)
{
    (void)state;
    struct rules *rs = BUILD("deny to example.com.,*.example.net.", "allow");
    assert_int_equal(allowed(rs, (struct q){.name = "example.com"}), 0);
    assert_int_equal(allowed(rs, (struct q){.name = "x.example.net"}), 0);
    rules_free(rs);
}

static void single_label_and_underscore_names(void **state)
{
    (void)state;
    struct rules *rs = BUILD("deny to localhost,_srv.example.com,xn--bcher-kva.example", "allow");
    assert_int_equal(allowed(rs, (struct q){.name = "LOCALHOST"}), 0);
    assert_int_equal(allowed(rs, (struct q){.name = "_srv.example.com"}), 0);
    assert_int_equal(allowed(rs, (struct q){.name = "xn--bcher-kva.example"}), 0);
    rules_free(rs);
}

static void name_is_cut_at_embedded_nul(void **state)
{
    (void)state;
    /* The resolver gets a C string, so it would look up "evil.com". */
    static const char name[] = "evil.com\0.example.com";
    struct rules *rs = BUILD("allow to *.example.com", "deny to evil.com", "allow");
    struct sockaddr_storage cs;
    struct rules_request rq = {.client = addr(&cs, DEFAULT_CLIENT),
                               .cmd = RULES_CMD_CONNECT,
                               .dst_name = name,
                               .dst_name_len = sizeof name - 1};
    struct rules_verdict v;
    rules_match(rs, &rq, &v);
    assert_int_equal(v.allow, 0);
    assert_int_equal(v.line, 2);
    rules_free(rs);
}

static void name_need_not_be_nul_terminated(void **state)
{
    (void)state;
    static const char buf[] = "example.comXYZ";
    struct rules *rs = BUILD("deny to example.com", "allow");
    struct sockaddr_storage cs;
    struct rules_request rq = {.client = addr(&cs, DEFAULT_CLIENT),
                               .cmd = RULES_CMD_CONNECT,
                               .dst_name = buf,
                               .dst_name_len = 11};
    struct rules_verdict v;
    rules_match(rs, &rq, &v);
    assert_int_equal(v.allow, 0);
    rq.dst_name_len = 12;
    rules_match(rs, &rq, &v);
    assert_int_equal(v.allow, 1);
    rules_free(rs);
}

static void pattern_never_matches_address_only_request(void **state)
{
    (void)state;
    struct rules *rs = BUILD("allow to *.example.com,example.com", "deny");
    assert_int_equal(allowed(rs, (struct q){.dst = "93.184.216.34"}), 0);
    rules_free(rs);
}

static void to_list_mixes_cidrs_and_patterns(void **state)
{
    (void)state;
    struct rules *rs = BUILD("allow to 198.51.100.0/24,*.example.com", "deny");
    /* After resolution the request carries both: either side may match. */
    assert_int_equal(allowed(rs, (struct q){.name = "www.example.com", .dst = "203.0.113.1"}), 1);
    assert_int_equal(allowed(rs, (struct q){.name = "other.org", .dst = "198.51.100.1"}), 1);
    assert_int_equal(allowed(rs, (struct q){.name = "other.org", .dst = "203.0.113.1"}), 0);
    assert_int_equal(allowed(rs, (struct q){.dst = "198.51.100.1"}), 1);
    rules_free(rs);
}

/* ------------------------------------------------------------ before resolution */

static void name_only_request_needs_address_for_cidr_rule(void **state)
{
    (void)state;
    struct rules *rs = BUILD("allow to *.example.com", "deny-private", "allow");
    struct rules_verdict v = run(rs, (struct q){.name = "www.example.com"});
    assert_int_equal(v.need_addr, 0); /* decided by rule 1 from the name alone */
    assert_int_equal(v.allow, 1);
    v = run(rs, (struct q){.name = "intranet.corp"});
    assert_int_equal(v.need_addr, 1); /* rule 2 depends on where it resolves */
    assert_int_equal(v.allow, 0);
    assert_int_equal(v.line, 2);
    v = run(rs, (struct q){.name = "intranet.corp", .dst = "10.0.0.5"});
    assert_int_equal(v.need_addr, 0);
    assert_int_equal(v.allow, 0);
    v = run(rs, (struct q){.name = "intranet.corp", .dst = "93.184.216.34"});
    assert_int_equal(v.allow, 1);
    assert_int_equal(v.line, 3);
    rules_free(rs);
}

static void clauses_before_to_decide_without_address(void **state)
{
    (void)state;
    /* Rule 1 cannot match port 80 whatever the address, so no need to wait. */
    struct rules *rs = BUILD("deny to 10.0.0.0/8 port 22", "deny to evil.com", "allow");
    struct rules_verdict v = run(rs, (struct q){.name = "good.com", .port = 80});
    assert_int_equal(v.need_addr, 0);
    assert_int_equal(v.allow, 1);
    v = run(rs, (struct q){.name = "good.com", .port = 22});
    assert_int_equal(v.need_addr, 1);
    rules_free(rs);
}

static void request_without_destination_matches_no_to(void **state)
{
    (void)state;
    struct rules *rs = BUILD("deny to 0.0.0.0/0,::/0,*.com", "allow");
    struct rules_verdict v = run(rs, (struct q){.cmd = RULES_CMD_UDP});
    assert_int_equal(v.need_addr, 0);
    assert_int_equal(v.allow, 1);
    rules_free(rs);
}

/* ------------------------------------------------------------ deny-private */

static void deny_private_covers_private_ranges(void **state)
{
    (void)state;
    struct rules *rs = BUILD("deny-private", "allow");
    const char *blocked[] = {
        "169.254.169.254",
        "10.1.2.3",
        "192.168.0.1",
        "::1",
        "fd00::1",
        "::ffff:127.0.0.1",
        "127.0.0.1",
        "172.16.0.1",
        "172.31.255.255",
        "100.64.0.1",
        "100.127.255.255",
        "169.254.0.1",
        "fe80::1",
        "febf::1",
        "fc00::1",
        "224.0.0.1",
        "239.255.255.255",
        "ff02::1",
        "0.0.0.0",
        "0.255.255.255",
        "::",
        "::ffff:10.0.0.1",
        "::ffff:169.254.169.254",
        "::ffff:192.168.1.1",
    };
    for (size_t i = 0; i < sizeof blocked / sizeof blocked[0]; i++) {
        struct rules_verdict v = run(rs, (struct q){.dst = blocked[i]});
        if (v.allow != 0 || v.line != 1)
            fail_msg("deny-private did not cover %s", blocked[i]);
    }
    rules_free(rs);
}

/* First and last address of every range deny-private names (docs/rules.md). */
static const char *const private_bounds[][2] = {
    {"0.0.0.0", "0.255.255.255"},
    {"10.0.0.0", "10.255.255.255"},
    {"100.64.0.0", "100.127.255.255"},
    {"127.0.0.0", "127.255.255.255"},
    {"169.254.0.0", "169.254.255.255"},
    {"172.16.0.0", "172.31.255.255"},
    {"192.0.0.0", "192.0.0.8"},
    {"192.0.0.11", "192.0.0.255"},
    {"192.0.2.0", "192.0.2.255"},
    {"192.168.0.0", "192.168.255.255"},
    {"198.18.0.0", "198.19.255.255"},
    {"198.51.100.0", "198.51.100.255"},
    {"203.0.113.0", "203.0.113.255"},
    {"224.0.0.0", "239.255.255.255"},
    {"240.0.0.0", "255.255.255.255"},
    {"168.63.129.16", "168.63.129.16"},
    {"::", "::"},
    {"::1", "::1"},
    {"64:ff9b:1::", "64:ff9b:1:ffff:ffff:ffff:ffff:ffff"},
    {"100::", "100::ffff:ffff:ffff:ffff"},
    {"100:0:0:1::", "100::1:ffff:ffff:ffff:ffff"},
    {"2001::", "2001:0:ffff:ffff:ffff:ffff:ffff:ffff"},
    {"2001:1::", "2001:1::0"},
    {"2001:1::4", "2001:2:ffff:ffff:ffff:ffff:ffff:ffff"},
    {"2001:4::", "2001:4:111:ffff:ffff:ffff:ffff:ffff"},
    {"2001:4:113::", "2001:1f:ffff:ffff:ffff:ffff:ffff:ffff"},
    {"2001:40::", "2001:1ff:ffff:ffff:ffff:ffff:ffff:ffff"},
    {"2001:db8::", "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff"},
    {"3fff::", "3fff:fff:ffff:ffff:ffff:ffff:ffff:ffff"},
    {"5f00::", "5f00:ffff:ffff:ffff:ffff:ffff:ffff:ffff"},
    {"fc00::", "fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"},
    {"fe80::", "febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff"},
    {"fec0::", "feff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"},
    {"ff00::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"},
};

/* IPv6 forms of an IPv4 address a.b.c.d that reach it, as text. */
static void v4_forms(const char *v4, char out[5][64])
{
    unsigned char b[4];
    assert_int_equal(inet_pton(AF_INET, v4, b), 1);
    unsigned hi = (unsigned)b[0] << 8 | b[1], lo = (unsigned)b[2] << 8 | b[3];
    snprintf(out[0], 64, "::ffff:%s", v4);          /* mapped */
    snprintf(out[1], 64, "::%x:%x", hi, lo);        /* compatible */
    snprintf(out[2], 64, "::ffff:0:%x:%x", hi, lo); /* SIIT translated */
    snprintf(out[3], 64, "64:ff9b::%x:%x", hi, lo); /* NAT64 */
    snprintf(out[4], 64, "2002:%x:%x::1", hi, lo);  /* 6to4 */
}

static void deny_private_covers_every_listed_range_and_its_ipv6_forms(void **state)
{
    (void)state;
    struct rules *rs = BUILD("deny-private", "allow");
    for (size_t i = 0; i < sizeof private_bounds / sizeof private_bounds[0]; i++)
        for (int k = 0; k < 2; k++) {
            const char *a = private_bounds[i][k];
            if (run(rs, (struct q){.dst = a}).allow != 0)
                fail_msg("deny-private did not cover %s", a);
            if (strchr(a, ':'))
                continue;
            char forms[5][64];
            v4_forms(a, forms);
            for (int f = 0; f < 5; f++)
                if (run(rs, (struct q){.dst = forms[f]}).allow != 0)
                    fail_msg("deny-private did not cover %s (%s)", forms[f], a);
        }
    rules_free(rs);
}

static void deny_private_keeps_the_registries_global_exceptions(void **state)
{
    (void)state;
    struct rules *rs = BUILD("deny-private", "allow");
    const char *global[] = {"192.0.0.9",  "192.0.0.10",    "2001:1::1",     "2001:1::2",
                            "2001:1::3",  "2001:3::1",     "2001:4:112::1", "2001:20::1",
                            "2001:3f::1", "168.63.129.15", "168.63.129.17", "::ffff:0:808:808",
                            "::808:808"};
    for (size_t i = 0; i < sizeof global / sizeof global[0]; i++)
        if (run(rs, (struct q){.dst = global[i]}).allow != 1)
            fail_msg("deny-private wrongly covered %s", global[i]);
    rules_free(rs);
}

static void deny_private_covers_cloud_metadata_services(void **state)
{
    (void)state;
    struct rules *rs = BUILD("deny-private", "allow");
    const char *meta[] = {"169.254.169.254", "169.254.170.2",     "168.63.129.16",
                          "100.100.100.200", "192.0.0.192",       "fd00:ec2::254",
                          "fd20:ce::254",    "64:ff9b::a9fe:a9fe"};
    for (size_t i = 0; i < sizeof meta / sizeof meta[0]; i++)
        if (run(rs, (struct q){.dst = meta[i]}).allow != 0)
            fail_msg("deny-private did not cover %s", meta[i]);
    rules_free(rs);
}

static void deny_private_denies_the_hosts_own_addresses_in_every_form(void **state)
{
    (void)state;
    struct sockaddr_storage a, b;
    const struct sockaddr *own[] = {addr(&a, "1.2.3.4"), addr(&b, "2a00:1450::5")};
    struct addr_list *self = addr_list_new(own, 2);
    assert_non_null(self);
    struct rules *rs = BUILD("deny-private", "allow");
    char forms[5][64];
    v4_forms("1.2.3.4", forms);
    const char *denied[] = {"1.2.3.4", "2a00:1450::5", forms[0], forms[1],
                            forms[2],  forms[3],       forms[4]};
    for (size_t i = 0; i < sizeof denied / sizeof denied[0]; i++) {
        if (run(rs, (struct q){.dst = denied[i], .self = self}).allow != 0)
            fail_msg("deny-private did not cover the host's own %s", denied[i]);
        if (run(rs, (struct q){.dst = denied[i]}).allow != 1)
            fail_msg("%s denied without being the host's", denied[i]);
    }
    assert_int_equal(allowed(rs, (struct q){.name = "1.2.3.4", .self = self}), 0);
    assert_int_equal(allowed(rs, (struct q){.dst = "1.2.3.5", .self = self}), 1);
    assert_int_equal(allowed(rs, (struct q){.dst = "2a00:1450::6", .self = self}), 1);
    rules_free(rs);
    /* Only deny-private consults the list: other rules are about what they name. */
    rs = BUILD("deny to 10.0.0.0/8", "allow");
    assert_int_equal(allowed(rs, (struct q){.dst = "1.2.3.4", .self = self}), 1);
    rules_free(rs);
    addr_list_unref(self);
}

static void deny_private_does_not_cover_public_addresses(void **state)
{
    (void)state;
    struct rules *rs = BUILD("deny-private", "allow");
    const char *open[] = {
        "8.8.8.8",         "1.1.1.1",         "100.63.255.255",       "100.128.0.0",
        "172.15.255.255",  "172.32.0.0",      "192.167.255.255",      "169.253.255.255",
        "223.255.255.255", "223.0.0.1",       "2001:4860:4860::8888", "::ffff:8.8.8.8",
        "192.0.1.255",     "192.0.3.0",       "198.17.255.255",       "198.20.0.0",
        "198.51.99.255",   "203.0.114.0",     "2001:200::1",          "2001:dba::1",
        "3fff:1000::1",    "2002:808:808::1", "64:ff9b::808:808"};
    for (size_t i = 0; i < sizeof open / sizeof open[0]; i++)
        if (run(rs, (struct q){.dst = open[i]}).allow != 1)
            fail_msg("deny-private wrongly covered %s", open[i]);
    rules_free(rs);
}

static void deny_private_matches_literal_names(void **state)
{
    (void)state;
    struct rules *rs = BUILD("deny-private", "allow");
    assert_int_equal(allowed(rs, (struct q){.name = "169.254.169.254"}), 0);
    assert_int_equal(run(rs, (struct q){.name = "metadata.google.internal"}).need_addr, 1);
    rules_free(rs);
}

/* ------------------------------------------------------------ rules_check_client */

static int check(const struct rules *rs, const char *ip, struct rules_verdict *v)
{
    struct sockaddr_storage ss;
    return rules_check_client(rs, addr(&ss, ip), v);
}

static void check_client_refuses_unconditional_deny(void **state)
{
    (void)state;
    struct rules *rs = BUILD("deny from 203.0.113.0/24", "allow");
    struct rules_verdict v;
    assert_int_equal(check(rs, "203.0.113.9", &v), 0);
    assert_int_equal(v.allow, 0);
    assert_int_equal(v.line, 1);
    assert_int_equal(check(rs, "::ffff:203.0.113.9", &v), 0);
    assert_int_equal(check(rs, "198.51.100.1", &v), 1);
    assert_int_equal(v.allow, 1);
    assert_int_equal(v.line, 2);
    rules_free(rs);
}

static void check_client_waits_when_allow_may_match(void **state)
{
    (void)state;
    struct rules *rs = BUILD("allow user alice", "deny");
    struct rules_verdict v;
    assert_int_equal(check(rs, "203.0.113.9", &v), 1);
    assert_int_equal(v.line, 1);
    rules_free(rs);
}

static void check_client_skips_conditional_denies(void **state)
{
    (void)state;
    /* Neither deny can refuse everything, but no allow rule exists for this
     * client, so every request it could make ends denied. */
    struct rules *rs = BUILD("deny user bob", "deny-private", "allow from 192.0.2.0/24");
    struct rules_verdict v;
    assert_int_equal(check(rs, "203.0.113.9", &v), 0);
    assert_null(v.file); /* the default decided */
    assert_int_equal(check(rs, "192.0.2.1", &v), 1);
    assert_int_equal(v.line, 3);
    rules_free(rs);
}

static void check_client_on_empty_and_null(void **state)
{
    (void)state;
    struct rules *rs = rules_new();
    struct rules_verdict v;
    assert_non_null(rs);
    assert_int_equal(check(rs, "203.0.113.9", &v), 1);
    assert_int_equal(v.allow, 1);
    assert_null(v.file);
    assert_int_equal(check(NULL, "203.0.113.9", &v), 0);
    assert_int_equal(check(rs, "203.0.113.9", NULL), 1);
    rules_free(rs);
    rs = BUILD("deny");
    assert_int_equal(check(rs, "203.0.113.9", &v), 0);
    assert_int_equal(v.line, 1);
    rules_free(rs);
}

/* ------------------------------------------------------------ rules_allow_restricted_by_client */

/* Thousands of small networks (a country list) are measured quickly and
 * exactly: 8192 /24s are restricted; the same space as 4096 /16s plus the
 * /4 they fall short of is not. */
static void allow_restricted_by_client_measures_long_lists(void **state)
{
    (void)state;
    size_t cap = 8192 * 16 + 32;
    char *text = malloc(cap);
    assert_non_null(text);
    size_t n = (size_t)snprintf(text, cap, "allow from ");
    for (unsigned i = 0; i < 8192; i++)
        n += (size_t)snprintf(text + n, cap - n, "%s%u.%u.%u.0/24", i ? "," : "", 32 + i / 4096,
                              (i / 16) % 256, (i % 16) * 16);
    struct rules *rs = BUILD(text);
    assert_int_equal(rules_allow_restricted_by_client(rs), 1);
    rules_free(rs);
    n = (size_t)snprintf(text, cap, "allow from ");
    for (unsigned i = 0; i < 4096; i++)
        n += (size_t)snprintf(text + n, cap - n, "%s%u.%u.0.0/16", i ? "," : "", 16 + i / 256,
                              i % 256);
    rs = BUILD(text);
    assert_int_equal(rules_allow_restricted_by_client(rs), 0); /* 16.0.0.0/4 in pieces */
    rules_free(rs);
    free(text);
}

static void allow_restricted_by_client_cases(void **state)
{
    (void)state;
    static const struct {
        const char *rules[3];
        int want;
    } cases[] = {
        {{"allow from 192.0.2.0/24", "deny", NULL}, 1},
        {{"deny-private", "allow from 10.0.0.0/8,fd00::/8 user any", NULL}, 1},
        {{"deny", NULL, NULL}, 1}, /* nothing is allowed at all */
        {{"allow from 192.0.2.0/24", "allow user alice", NULL}, 0},
        {{"allow", NULL, NULL}, 0},
        {{"allow from any", NULL, NULL}, 0},
        {{"allow from 0.0.0.0/0", NULL, NULL}, 0},
        {{"allow from 10.0.0.0/8,::/0", NULL, NULL}, 0},
        {{"allow from ::ffff:0:0/96", NULL, NULL}, 0},
        {{"allow from 2000::/3", NULL, NULL}, 0},
        {{"allow from 2001:db8::/32", NULL, NULL}, 1},
        {{"allow from 0.0.0.0/1", NULL, NULL}, 0}, /* half of the Internet */
        {{"allow from 0.0.0.0/1,128.0.0.0/1", NULL, NULL}, 0},
        {{"allow from 0.0.0.0/1", "allow from 128.0.0.0/1 user any", NULL}, 0},
        {{"allow from 16.0.0.0/4", NULL, NULL}, 0}, /* a sixteenth, all global */
        {{"allow from 0.0.0.0/4", NULL, NULL}, 1},  /* 0/8 and 10/8 do not count */
        {{"allow from 10.0.0.0/8,172.16.0.0/12,192.168.0.0/16", "allow from fc00::/7", NULL}, 1},
        {{"allow from 2000::/4,3000::/5", NULL, NULL}, 0},
        {{"allow from 2000::/8", NULL, NULL}, 1},
        {{NULL, NULL, NULL}, 0}, /* empty set allows everyone */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t n = 0;
        while (n < 3 && cases[i].rules[n])
            n++;
        struct rules *rs = build_n(cases[i].rules, n);
        if (rules_allow_restricted_by_client(rs) != cases[i].want)
            fail_msg("case %zu ('%s'): want %d", i, n ? cases[i].rules[0] : "", cases[i].want);
        rules_free(rs);
    }
    assert_int_equal(rules_allow_restricted_by_client(NULL), 0);
}

/* ------------------------------------------------------------ parse errors */

static void bad_cidr_error_names_column(void **state)
{
    (void)state;
    struct rules *rs = rules_new();
    char err[256];
    assert_non_null(rs);
    assert_int_equal(rules_add(rs, "allow from 10.0.0.0/33", FILE_NAME, 1, err, sizeof err), -1);
    assert_string_equal(err, "column 12: bad CIDR '10.0.0.0/33' (prefix must be 0..32)");
    rules_free(rs);
    expect_error("allow from 192.0.2.0/24,10.0.0.0/33", 25, "prefix must be 0..32");
}

static void bad_cidr_address_is_rejected(void **state)
{
    (void)state;
    expect_error("allow from 10.0.0.256", 12, "bad CIDR '10.0.0.256' (expected an IPv4");
    expect_error("allow from 10.1.2", 12, "bad CIDR '10.1.2'");
    expect_error("allow from example.com", 12, "bad CIDR 'example.com'");
    expect_error("allow from fe80::1%eth0", 12, "bad CIDR");
    expect_error("allow from /8", 12, "bad CIDR '/8'");
    expect_error("allow to 1:2:3:4:5:6:7:8:9", 10, "bad CIDR");
    expect_error("allow to 0x7f.1", 10, "bad CIDR '0x7f.1'");
    expect_error("allow to 127.1", 10, "bad CIDR '127.1'");
    expect_error("allow to 1234", 10, "bad CIDR '1234'");
}

static void bad_cidr_prefix_is_rejected(void **state)
{
    (void)state;
    expect_error("deny to 2001:db8::/129", 9, "prefix must be 0..128");
    expect_error("deny to 10.0.0.0/", 9, "prefix must be 0..32");
    expect_error("deny to 10.0.0.0/x", 9, "prefix must be 0..32");
    expect_error("deny to 10.0.0.0/-1", 9, "prefix must be 0..32");
    expect_error("deny to 10.0.0.0/+8", 9, "prefix must be 0..32");
    expect_error("deny to 10.0.0.0/0008", 9, "prefix must be 0..32");
    expect_error("deny to 10.0.0.0/8/8", 9, "prefix must be 0..32");
}

static void cidr_host_bits_error_suggests_network(void **state)
{
    (void)state;
    expect_error("deny to 10.1.2.3/8", 9, "host bits set; did you mean 10.0.0.0/8?");
    expect_error("deny to 2001:db8::1/32", 9, "did you mean 2001:db8::/32?");
    expect_error("deny to ::ffff:10.1.0.0/104", 9, "did you mean ::ffff:10.0.0.0/104?");
}

static void empty_rule_is_rejected(void **state)
{
    (void)state;
    expect_error("", 1, "empty rule");
    expect_error("   ", 4, "empty rule");
    expect_error("  # just a comment", 3, "empty rule");
}

static void unknown_action_is_rejected(void **state)
{
    (void)state;
    expect_error("permit from 10.0.0.0/8", 1, "unknown action 'permit' (expected 'allow'");
    expect_error("  allowed", 3, "unknown action 'allowed'");
    expect_error("deny-privat", 1, "unknown action");
}

static void unknown_clause_is_rejected(void **state)
{
    (void)state;
    expect_error("allow dest 10.0.0.0/8", 7, "unknown clause 'dest' (expected from, user");
    expect_error("allow to example.com, port 80", 22, "empty item in 'to' list");
    expect_error("allow to example.com ,port 80", 22, "unknown clause ',port'");
}

static void duplicate_clause_is_rejected(void **state)
{
    (void)state;
    expect_error("allow port 80 to x.com port 443", 24, "duplicate 'port' clause");
    expect_error("allow from any from 10.0.0.0/8", 16, "duplicate 'from' clause");
    expect_error("deny user a USER b", 13, "duplicate 'user' clause");
}

static void missing_list_is_rejected(void **state)
{
    (void)state;
    expect_error("allow from", 11, "'from' needs a list");
    expect_error("allow to  # nothing", 9, "'to' needs a list");
    expect_error("allow to port 80", 10, "'to' needs a list (or 'any') before 'port'");
    expect_error("allow user cmd connect", 12, "'user' needs a list");
}

static void empty_list_item_is_rejected(void **state)
{
    (void)state;
    expect_error("allow port 80,,443", 15, "empty item in 'port' list");
    expect_error("allow port 80,", 15, "empty item");
    expect_error("allow port ,80", 12, "empty item");
    expect_error("allow user alice, bob", 18, "no spaces");
}

static void any_cannot_be_combined(void **state)
{
    (void)state;
    expect_error("allow from any,10.0.0.0/8", 12, "'any' cannot be combined");
    expect_error("allow port 80,ANY", 15, "'any' cannot be combined");
}

static void deny_private_takes_no_clauses(void **state)
{
    (void)state;
    expect_error("deny-private from 10.0.0.0/8", 14, "'deny-private' takes no clauses");
    /* A comment is not a clause. */
    struct rules *rs = BUILD("deny-private # metadata too");
    rules_free(rs);
}

static void bad_user_name_is_rejected(void **state)
{
    (void)state;
    char text[300];
    memcpy(text, "allow user ", 11);
    memset(text + 11, 'u', 256);
    text[11 + 256] = '\0';
    expect_error(text, 12, "longer than 255 bytes");
    text[11 + 255] = '\0';
    struct rules *rs = build_n(LINES(text), 1);
    rules_free(rs);
}

static void unknown_cmd_is_rejected(void **state)
{
    (void)state;
    expect_error("allow cmd connect,associate", 19,
                 "unknown command 'associate' (expected connect, bind or udp)");
    expect_error("allow cmd 1", 11, "unknown command '1'");
}

static void bad_port_is_rejected(void **state)
{
    (void)state;
    expect_error("allow port 65536", 12, "bad port '65536' (expected a number 0..65535");
    expect_error("allow port http", 12, "bad port 'http'");
    expect_error("allow port 80-", 12, "bad port '80-'");
    expect_error("allow port -80", 12, "bad port '-80'");
    expect_error("allow port 1-2-3", 12, "bad port '1-2-3'");
    expect_error("allow port 000080", 12, "bad port");
    expect_error("allow port 80-90000", 12, "bad port");
}

static void port_range_reversed_is_rejected(void **state)
{
    (void)state;
    expect_error("allow port 90-80", 12, "bad port range '90-80' (start must not exceed end)");
}

static void bad_domain_pattern_is_rejected(void **state)
{
    (void)state;
    char text[400];
    expect_error("allow to *", 10, "use 'any'");
    expect_error("allow to *example.com", 10, "'*' is only allowed as the whole first label");
    expect_error("allow to www.*.com", 10, "'*' is only allowed");
    expect_error("allow to *.*.com", 10, "'*' is only allowed");
    expect_error("allow to a..b", 10, "empty label");
    expect_error("allow to .example.com", 10, "empty label");
    expect_error("allow to *.", 10, "empty name");
    expect_error("allow to exa$mple.com", 10, "invalid character");
    expect_error("allow to exämple.com", 10, "invalid character");

    snprintf(text, sizeof text, "allow to %064d.com", 0);
    expect_error(text, 10, "label longer than 63 characters");
    snprintf(text, sizeof text, "allow to %063d.com", 0);
    rules_free(build_n(LINES(text), 1));

    /* 4 labels of 63 plus 3 dots = 255 > 253 */
    char name[300];
    memset(name, 'a', 255);
    name[63] = name[127] = name[191] = '.';
    name[255] = '\0';
    snprintf(text, sizeof text, "allow to %s", name);
    expect_error(text, 10, "name longer than 253 characters");
    name[253] = '\0';
    snprintf(text, sizeof text, "allow to %s", name);
    rules_free(build_n(LINES(text), 1));
}

static void failed_add_leaves_set_unchanged(void **state)
{
    (void)state;
    struct rules *rs = BUILD("deny to 10.0.0.0/8");
    char err[128];
    assert_int_equal(rules_add(rs, "allow user a,b to x.com,10.0.0.0/33", "f", 2, err, sizeof err),
                     -1);
    assert_int_equal(rules_count(rs), 1);
    assert_int_equal(allowed(rs, (struct q){.user = "a", .name = "x.com", .dst = "1.2.3.4"}), 0);
    rules_free(rs);
}

static void error_buffer_is_always_terminated(void **state)
{
    (void)state;
    struct rules *rs = rules_new();
    char err[8];
    assert_non_null(rs);
    memset(err, 'x', sizeof err);
    assert_int_equal(rules_add(rs, "allow port 99999", NULL, 1, err, 5), -1);
    assert_string_equal(err, "colu");
    memset(err, 'x', sizeof err);
    assert_int_equal(rules_add(rs, "allow port 99999", NULL, 1, err, sizeof err), -1);
    assert_string_equal(err, "column ");
    assert_int_equal(rules_add(rs, "allow port 99999", NULL, 1, NULL, 100), -1);
    assert_int_equal(rules_add(rs, "allow port 99999", NULL, 1, err, 0), -1);
    assert_int_equal(rules_add(rs, "allow", NULL, 1, err, 1), 0);
    assert_string_equal(err, "");
    rules_free(rs);
}

static void error_quotes_control_bytes_safely(void **state)
{
    (void)state;
    expect_error("allow to a\033[31mb", 10, "bad domain pattern 'a?[31mb'");
    char text[200];
    snprintf(text, sizeof text, "allow cmd %0100d", 7);
    expect_error(text, 11, "...' (expected connect");
}

static void null_arguments_fail_safely(void **state)
{
    (void)state;
    char err[128];
    struct rules *rs = rules_new();
    assert_non_null(rs);
    assert_int_equal(rules_add(NULL, "allow", "f", 1, err, sizeof err), -1);
    assert_non_null(strstr(err, "internal error"));
    assert_int_equal(rules_add(rs, NULL, "f", 1, err, sizeof err), -1);
    assert_int_equal(rules_count(NULL), 0);
    rules_free(NULL);

    struct rules_verdict v;
    rules_match(NULL, NULL, &v);
    assert_int_equal(v.allow, 0);
    assert_null(v.file);
    rules_match(rs, NULL, &v);
    assert_int_equal(v.allow, 0);
    rules_free(rs);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(empty_set_allows_everything),
        cmocka_unit_test(default_deny_when_rules_exist),
        cmocka_unit_test(first_match_wins),
        cmocka_unit_test(verdict_names_file_and_line),
        cmocka_unit_test(null_file_is_reported_as_command_line),
        cmocka_unit_test(bare_allow_and_deny_match_everything),
        cmocka_unit_test(comments_and_trailing_newline_are_ignored),
        cmocka_unit_test(keywords_are_case_insensitive),
        cmocka_unit_test(clauses_in_any_order),
        cmocka_unit_test(any_stands_for_every_list),
        cmocka_unit_test(from_matches_client_cidr),
        cmocka_unit_test(bare_address_is_single_host),
        cmocka_unit_test(mapped_client_matches_ipv4_from),
        cmocka_unit_test(non_ip_client_matches_no_from),
        cmocka_unit_test(user_matches_listed_names_case_sensitively),
        cmocka_unit_test(deny_user_never_matches_unauthenticated),
        cmocka_unit_test(allow_user_never_matches_unauthenticated),
        cmocka_unit_test(user_any_requires_authentication),
        cmocka_unit_test(cmd_matches_listed_commands),
        cmocka_unit_test(port_single_values_and_ranges),
        cmocka_unit_test(port_range_may_be_one_port),
        cmocka_unit_test(to_cidr_matches_address),
        cmocka_unit_test(mapped_ipv6_matches_ipv4_cidr),
        cmocka_unit_test(mapped_cidr_rule_matches_plain_ipv4),
        cmocka_unit_test(ipv6_catch_all_includes_ipv4),
        cmocka_unit_test(prefix_zero_and_full_length),
        cmocka_unit_test(ipv4_literal_name_is_matched_as_address),
        cmocka_unit_test(loose_literal_name_waits_for_resolution),
        cmocka_unit_test(exact_pattern_matches_only_that_name),
        cmocka_unit_test(wildcard_matches_subdomains),
        cmocka_unit_test(wildcard_does_not_match_apex),
        cmocka_unit_test(pattern_is_case_insensitive),
        cmocka_unit_test(trailing_dot_in_request_name_is_ignored),
        cmocka_unit_test(pattern_with_trailing_dot_is_accepted),
        cmocka_unit_test(single_label_and_underscore_names),
        cmocka_unit_test(name_is_cut_at_embedded_nul),
        cmocka_unit_test(name_need_not_be_nul_terminated),
        cmocka_unit_test(pattern_never_matches_address_only_request),
        cmocka_unit_test(to_list_mixes_cidrs_and_patterns),
        cmocka_unit_test(name_only_request_needs_address_for_cidr_rule),
        cmocka_unit_test(clauses_before_to_decide_without_address),
        cmocka_unit_test(request_without_destination_matches_no_to),
        cmocka_unit_test(deny_private_covers_private_ranges),
        cmocka_unit_test(deny_private_does_not_cover_public_addresses),
        cmocka_unit_test(deny_private_covers_every_listed_range_and_its_ipv6_forms),
        cmocka_unit_test(deny_private_keeps_the_registries_global_exceptions),
        cmocka_unit_test(deny_private_covers_cloud_metadata_services),
        cmocka_unit_test(deny_private_denies_the_hosts_own_addresses_in_every_form),
        cmocka_unit_test(deny_private_matches_literal_names),
        cmocka_unit_test(check_client_refuses_unconditional_deny),
        cmocka_unit_test(check_client_waits_when_allow_may_match),
        cmocka_unit_test(check_client_skips_conditional_denies),
        cmocka_unit_test(check_client_on_empty_and_null),
        cmocka_unit_test(allow_restricted_by_client_cases),
        cmocka_unit_test(allow_restricted_by_client_measures_long_lists),
        cmocka_unit_test(bad_cidr_error_names_column),
        cmocka_unit_test(bad_cidr_address_is_rejected),
        cmocka_unit_test(bad_cidr_prefix_is_rejected),
        cmocka_unit_test(cidr_host_bits_error_suggests_network),
        cmocka_unit_test(empty_rule_is_rejected),
        cmocka_unit_test(unknown_action_is_rejected),
        cmocka_unit_test(unknown_clause_is_rejected),
        cmocka_unit_test(duplicate_clause_is_rejected),
        cmocka_unit_test(missing_list_is_rejected),
        cmocka_unit_test(empty_list_item_is_rejected),
        cmocka_unit_test(any_cannot_be_combined),
        cmocka_unit_test(deny_private_takes_no_clauses),
        cmocka_unit_test(bad_user_name_is_rejected),
        cmocka_unit_test(unknown_cmd_is_rejected),
        cmocka_unit_test(bad_port_is_rejected),
        cmocka_unit_test(port_range_reversed_is_rejected),
        cmocka_unit_test(bad_domain_pattern_is_rejected),
        cmocka_unit_test(failed_add_leaves_set_unchanged),
        cmocka_unit_test(error_buffer_is_always_terminated),
        cmocka_unit_test(error_quotes_control_bytes_safely),
        cmocka_unit_test(null_arguments_fail_safely),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
