/* rules.h - access rules: which clients may ask the proxy to reach what.
 *
 * A rule set is an ordered list of allow/deny rules, built once from the
 * configuration with rules_add() and then only read. Matching is pure (no I/O,
 * no allocation, no global state), so a built set may be shared by any number
 * of threads as long as nobody calls rules_add() on it any more.
 *
 * Grammar (one rule per rules_add call; see docs/rules.md):
 *   allow|deny [from CIDR[,CIDR...]] [user NAME[,NAME...]] [cmd connect|bind|udp[,...]]
 *              [to CIDR|DOMAIN-PATTERN[,...]] [port N|N-M[,...]]
 *   deny-private   (every address that is not globally reachable, and the host's own)
 * First match wins; with no match the answer is deny if any rule exists, and
 * allow if the set is empty.
 */
#ifndef SOCKS5D_RULES_H
#define SOCKS5D_RULES_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "addr.h"

struct rules;

/* Same values as the SOCKS5 CMD field, so the request byte can be passed as is. */
enum rules_cmd { RULES_CMD_CONNECT = 1, RULES_CMD_BIND = 2, RULES_CMD_UDP = 3 };

struct rules_request {
    const struct sockaddr *client; /* AF_INET or AF_INET6; other families match no `from` */
    const char *user;              /* NULL unless the session authenticated */
    int cmd;                       /* enum rules_cmd */
    const struct sockaddr *dst;    /* NULL while only a name is known; its port is ignored */
    const char *dst_name;          /* NULL if none; need not be NUL-terminated */
    size_t dst_name_len;
    uint16_t dst_port;            /* host order */
    const struct addr_list *self; /* the host's own addresses, for deny-private; may be NULL */
};

struct rules_verdict {
    int allow;        /* 1 allow, 0 deny */
    int need_addr;    /* 1: undecided until the name is resolved (allow is 0 then) */
    const char *file; /* the deciding rule's file and line; NULL and 0 for the default */
    int line;
    int index; /* rules_match: the deciding rule's 0-based position, -1 for the default */
};

/* Returns an empty rule set, or NULL when out of memory. */
struct rules *rules_new(void);

/* Frees the set and everything it owns; NULL is accepted. Verdicts that point
 * at its file names must not be used afterwards. */
void rules_free(struct rules *rs);

/* Parses one rule and appends it. `text` is one line (a trailing newline and a
 * `#` comment starting a word are ignored). `file` (copied; NULL is stored as
 * "(command line)") and `line` are reported back in verdicts for logs.
 * Returns 0 on success. Returns -1 when the text is not a valid rule, when an
 * argument is NULL, or when out of memory; the set is then unchanged and, if
 * err is not NULL and errlen > 0, err holds a NUL-terminated message naming the
 * 1-based byte column and a hint, e.g.
 *   "column 12: bad CIDR '10.0.0.0/33' (prefix must be 0..32)". */
int rules_add(struct rules *rs, const char *text, const char *file, int line, char *err,
              size_t errlen);

/* Returns the number of rules added so far (0 for NULL). */
size_t rules_count(const struct rules *rs);

/* Calls fn for each name a `user` clause lists, in rule order, with the
 * rule's file and line; once with name NULL for `user any`. For checking
 * the names against the users file (socks5d -t). */
typedef void rules_user_fn(void *arg, const char *name, const char *file, int line);
void rules_each_user(const struct rules *rs, rules_user_fn *fn, void *arg);

/* Decides a request; always fills *out (out must not be NULL). Fails closed:
 * a NULL rs or req gives deny with file NULL.
 * When req->dst is NULL and req->dst_name is not an IP literal, rules whose
 * `to` clause lists CIDRs cannot be decided yet: if such a rule is reached
 * before any rule matches, out->need_addr is 1, out->allow 0 and file/line name
 * that rule; the caller must resolve the name and call again with dst set. With
 * need_addr 0 the verdict is final, before or after resolution. */
void rules_match(const struct rules *rs, const struct rules_request *req,
                 struct rules_verdict *out);

/* Decides a request whose destinations are not known yet and may vary
 * (UDP ASSOCIATE: every datagram names its own). Clauses other than `to`
 * and `port` are checked; a matching rule without `to`/`port` decides; the
 * first matching allow with them gives need_addr 1 (decide per destination
 * with rules_match); a matching deny with them is passed over. */
void rules_match_any_destination(const struct rules *rs, const struct rules_request *rq,
                                 struct rules_verdict *out);

/* Accept-time check when only the client address is known. Returns 0 when every
 * request this client could make would be denied: the first rule that can match
 * it and is not a conditional deny is a deny with no clause but `from` (file
 * and line name it), or no allow rule can match it and the default is deny
 * (file NULL). Returns 1 when the client cannot be refused yet (an allow rule
 * may match it - file and line name the first such rule - or the set is empty).
 * out may be NULL; rs NULL gives 0 (fail closed). */
int rules_check_client(const struct rules *rs, const struct sockaddr *client,
                       struct rules_verdict *out);

/* Returns 1 if the set has at least one rule, every `allow` rule has a `from`
 * clause, and together those clauses admit less than a sixteenth of the
 * Internet: fewer globally reachable addresses than a /4 holds in IPv4 and a
 * /7 in IPv6 (the union counts, so 0.0.0.0/1,128.0.0.0/1 is as open as
 * 0.0.0.0/0; ranges that are not globally reachable count for nothing).
 * Returns 0 otherwise, and for NULL. Protected mode uses it to accept a
 * non-loopback listener without auth. */
int rules_allow_restricted_by_client(const struct rules *rs);

#endif
