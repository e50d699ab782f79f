/* Unit tests for src/hops.c: a chain of upstream handshakes driven on a real
 * loop. One end of a socketpair is the connection to the first hop; the test
 * plays every hop on the other end, in order, as the bytes would arrive
 * through the tunnels of the hops before it. */
#include "unit_support.h"

#include <poll.h>
#include <stdio.h>
#include <sys/socket.h>

#include "fdbudget.h"
#include "hops.h"

struct outcome {
    struct loop *loop;
    int calls, bound;
    enum hops_stage stage;
    uint8_t rep;
    char early[64];
    size_t early_len;
    int kept_fd;
    const char *why; /* static strings, or why_buf: the hops' own is freed */
    char why_buf[512];
    struct hops *h; /* set by the test: hops_at() from the callback */
    size_t at;
};

static void on_hops(void *owner, enum hops_stage stage, struct loop_io *io, uint8_t rep,
                    const struct proto_addr *bnd, const uint8_t *early, size_t early_len,
                    const char *why)
{
    struct outcome *r = owner;
    (void)bnd;
    if (stage == HOPS_BOUND) {
        r->bound++;
        return;
    }
    r->calls++;
    r->stage = stage;
    r->rep = rep;
    r->why = why;
    if (why) {
        snprintf(r->why_buf, sizeof r->why_buf, "%s", why);
        r->why = r->why_buf;
    }
    if (r->h)
        r->at = hops_at(r->h);
    memcpy(r->early, early, early_len < sizeof r->early ? early_len : sizeof r->early);
    r->early_len = early_len;
    if (stage == HOPS_DONE) {
        r->kept_fd = io->fd; /* taken over: the hops must not close it */
        loop_io_del(r->loop, io);
    }
}

struct rig {
    struct loop *loop;
    struct loop_io from;
    int peer; /* the hops' side as the test sees it */
    struct outcome r;
};

static void ignore(struct loop_io *io, unsigned events)
{
    (void)io;
    (void)events;
}

static void rig_open(struct rig *g)
{
    int sv[2];
    memset(g, 0, sizeof *g);
    g->loop = loop_new();
    assert_non_null(g->loop);
    nb_socketpair(sv);
    assert_true(fdbudget_take(1, FDB_EXTRA));
    g->from.fd = -1;
    assert_int_equal(loop_io_add(g->loop, &g->from, sv[0], LOOP_READ | LOOP_WRITE, ignore), 0);
    g->peer = sv[1];
    g->r.kept_fd = -1;
    g->r.loop = g->loop;
}

static void rig_close(struct rig *g)
{
    if (g->r.kept_fd >= 0) {
        close(g->r.kept_fd);
        fdbudget_give(1);
    }
    close(g->peer);
    loop_free(g->loop);
}

/* Runs the loop until `n` bytes arrived on the peer (or the result came). */
static size_t expect(struct rig *g, const void *want, size_t n)
{
    uint8_t buf[1024];
    size_t have = 0;
    uint64_t end = now_ms() + WAIT_MS;
    while (have < n && now_ms() < end && g->r.calls == 0) {
        loop_run_once(g->loop, 10);
        ssize_t k = recv(g->peer, buf + have, sizeof buf - have, 0);
        if (k > 0)
            have += (size_t)k;
    }
    assert_int_equal(have, n);
    assert_memory_equal(buf, want, n);
    return have;
}

static void answer(struct rig *g, const void *msg, size_t n)
{
    assert_int_equal(send(g->peer, msg, n, 0), (ssize_t)n);
}

static void wait_result(struct rig *g)
{
    uint64_t end = now_ms() + WAIT_MS;
    while (g->r.calls == 0 && now_ms() < end)
        loop_run_once(g->loop, 10);
    assert_int_equal(g->r.calls, 1);
}

static struct route_chain chain_of(struct upstream_hop *hops, size_t n)
{
    struct route_chain c = {n, hops, NULL}; /* the hops keep no hold */
    return c;
}

static struct upstream_hop hop(enum upstream_kind k, const char *host, uint16_t port,
                               const char *user, const char *pass)
{
    struct upstream_hop h;
    memset(&h, 0, sizeof h);
    h.kind = k;
    strcpy(h.host, host);
    h.port = port;
    strcpy(h.user, user);
    strcpy(h.pass, pass);
    return h;
}

static struct proto_addr target(void)
{
    struct proto_addr d;
    memset(&d, 0, sizeof d);
    d.atyp = SOCKS5_ATYP_DOMAIN;
    strcpy(d.u.name, "t.example");
    d.name_len = 9;
    d.port = 80;
    return d;
}

static const uint8_t OK5[] = {5, 0, 0, 1, 127, 0, 0, 1, 0x04, 0x38};

TEST(a_chain_of_three_asks_each_hop_for_the_next)
{
    struct rig g;
    struct upstream_hop hs[3] = {hop(UPSTREAM_SOCKS5, "10.0.0.1", 1080, "", ""),
                                 hop(UPSTREAM_SOCKS5, "b.example", 1081, "bob", "pw"),
                                 hop(UPSTREAM_HTTP, "::1", 3128, "", "")};
    struct route_chain c = chain_of(hs, 3);
    struct proto_addr d = target();
    rig_open(&g);
    assert_non_null(hops_start(g.loop, &g.from, &c, SOCKS5_CMD_CONNECT, &d, on_hops, &g.r));
    assert_int_equal(g.r.calls, 0);
    assert_int_equal(g.from.fd, -1);

    expect(&g, "\5\1\0", 3); /* hop 1 */
    answer(&g, "\5\0", 2);
    expect(&g, "\5\1\0\3\11b.example\4\71", 16);
    answer(&g, OK5, sizeof OK5);
    expect(&g, "\5\2\0\2", 4); /* hop 2, through hop 1 */
    answer(&g, "\5\2", 2);
    expect(&g, "\1\3bob\2pw", 8);
    answer(&g, "\1\0", 2);
    const uint8_t ask_v6[] = {5, 1, 0, 4, 0, 0, 0, 0, 0, 0,    0,
                              0, 0, 0, 0, 0, 0, 0, 0, 1, 0x0c, 0x38};
    expect(&g, ask_v6, sizeof ask_v6);
    answer(&g, OK5, sizeof OK5);
    const char http[] = "CONNECT t.example:80 HTTP/1.1\r\nHost: t.example:80\r\n\r\n";
    expect(&g, http, sizeof http - 1); /* hop 3, through both */
    const char ok[] = "HTTP/1.1 200 OK\r\n\r\nhello";
    answer(&g, ok, sizeof ok - 1);
    wait_result(&g);
    assert_int_equal(g.r.stage, HOPS_DONE);
    assert_int_equal(g.r.early_len, 5);
    assert_memory_equal(g.r.early, "hello", 5);
    assert_true(g.r.kept_fd >= 0);
    rig_close(&g);
}

TEST(a_refusal_of_the_last_hop_is_passed_on)
{
    struct rig g;
    struct upstream_hop hs[1] = {hop(UPSTREAM_SOCKS5, "10.0.0.1", 1080, "", "")};
    struct route_chain c = chain_of(hs, 1);
    struct proto_addr d = target();
    rig_open(&g);
    assert_non_null(hops_start(g.loop, &g.from, &c, SOCKS5_CMD_CONNECT, &d, on_hops, &g.r));
    expect(&g, "\5\1\0", 3);
    answer(&g, "\5\0", 2);
    expect(&g, "\5\1\0\3\11t.example\0\120", 16);
    uint8_t refused[sizeof OK5];
    memcpy(refused, OK5, sizeof refused);
    refused[1] = SOCKS5_REP_CONN_REFUSED;
    answer(&g, refused, sizeof refused);
    wait_result(&g);
    assert_int_equal(g.r.stage, HOPS_FAILED);
    assert_int_equal(g.r.rep, SOCKS5_REP_CONN_REFUSED);
    assert_non_null(g.r.why);
    rig_close(&g);
}

TEST(an_inner_hop_that_cannot_reach_the_next_breaks_the_chain_at_the_next)
{
    struct rig g;
    struct upstream_hop hs[2] = {hop(UPSTREAM_SOCKS5, "10.0.0.1", 1080, "", ""),
                                 hop(UPSTREAM_SOCKS5, "10.0.0.2", 1081, "", "")};
    struct route_chain c = chain_of(hs, 2);
    struct proto_addr d = target();
    rig_open(&g);
    g.r.h = hops_start(g.loop, &g.from, &c, SOCKS5_CMD_CONNECT, &d, on_hops, &g.r);
    assert_non_null(g.r.h);
    expect(&g, "\5\1\0", 3);
    answer(&g, "\5\0", 2);
    expect(&g, "\5\1\0\1\12\0\0\2\4\71", 10);
    uint8_t refused[sizeof OK5];
    memcpy(refused, OK5, sizeof refused);
    refused[1] = SOCKS5_REP_CONN_REFUSED;
    answer(&g, refused, sizeof refused);
    wait_result(&g);
    assert_int_equal(g.r.stage, HOPS_BROKEN);
    assert_int_equal(g.r.at, 1);
    assert_non_null(strstr(g.r.why, "socks5://10.0.0.2:1081: "));
    rig_close(&g);
}

TEST(a_hop_that_closes_mid_handshake_breaks_the_chain)
{
    struct rig g;
    struct upstream_hop hs[1] = {hop(UPSTREAM_SOCKS4A, "10.0.0.1", 1080, "", "")};
    struct route_chain c = chain_of(hs, 1);
    struct proto_addr d = target();
    rig_open(&g);
    assert_non_null(hops_start(g.loop, &g.from, &c, SOCKS5_CMD_CONNECT, &d, on_hops, &g.r));
    expect(&g, "\4\1\0\120\0\0\0\1\0t.example\0", 19);
    shutdown(g.peer, SHUT_WR);
    wait_result(&g);
    assert_int_equal(g.r.stage, HOPS_BROKEN);
    assert_int_equal(g.r.rep, SOCKS5_REP_GENERAL_FAILURE);
    assert_non_null(strstr(g.r.why, "socks4a://10.0.0.1:1080: "));
    rig_close(&g);
}

/* BIND through one hop: its first reply, then its second or (drop) the end
 * of the connection. Returns how the hops ended. */
static enum hops_stage bind_then(int drop)
{
    struct rig g;
    struct upstream_hop hs[1] = {hop(UPSTREAM_SOCKS5, "10.0.0.1", 1080, "", "")};
    struct route_chain c = chain_of(hs, 1);
    struct proto_addr d = target();
    rig_open(&g);
    assert_non_null(hops_start(g.loop, &g.from, &c, SOCKS5_CMD_BIND, &d, on_hops, &g.r));
    expect(&g, "\5\1\0", 3);
    answer(&g, "\5\0", 2);
    expect(&g, "\5\2\0\3\11t.example\0\120", 16);
    answer(&g, OK5, sizeof OK5);
    if (drop)
        shutdown(g.peer, SHUT_WR);
    else
        answer(&g, OK5, sizeof OK5);
    wait_result(&g);
    assert_int_equal(g.r.bound, 1);
    enum hops_stage stage = g.r.stage;
    rig_close(&g);
    return stage;
}

TEST(bind_through_a_hop_reports_both_replies)
{
    assert_int_equal(bind_then(0), HOPS_DONE);
}

TEST(a_drop_after_binds_first_reply_is_no_failover)
{
    /* The client has its first reply: another alternative cannot start over. */
    assert_int_equal(bind_then(1), HOPS_FAILED);
}

TEST(cancel_closes_the_connection_without_a_call)
{
    struct rig g;
    struct upstream_hop hs[1] = {hop(UPSTREAM_SOCKS5, "10.0.0.1", 1080, "", "")};
    struct route_chain c = chain_of(hs, 1);
    struct proto_addr d = target();
    rig_open(&g);
    struct hops *h = hops_start(g.loop, &g.from, &c, SOCKS5_CMD_CONNECT, &d, on_hops, &g.r);
    assert_non_null(h);
    hops_cancel(h);
    loop_run_once(g.loop, 10);
    uint8_t b;
    assert_int_equal(recv(g.peer, &b, 1, 0), 0); /* closed, nothing sent */
    assert_int_equal(g.r.calls, 0);
    rig_close(&g);
}

TEST(target_of_a_hop_is_ip_or_name)
{
    struct proto_addr a;
    struct upstream_hop h = hop(UPSTREAM_SOCKS5, "192.0.2.1", 1, "", "");
    hops_target(&h, &a);
    assert_int_equal(a.atyp, SOCKS5_ATYP_IPV4);
    h = hop(UPSTREAM_SOCKS5, "2001:db8::1", 1, "", "");
    hops_target(&h, &a);
    assert_int_equal(a.atyp, SOCKS5_ATYP_IPV6);
    h = hop(UPSTREAM_SOCKS5, "proxy.example", 7, "", "");
    hops_target(&h, &a);
    assert_int_equal(a.atyp, SOCKS5_ATYP_DOMAIN);
    assert_int_equal(a.name_len, 13);
    assert_int_equal(a.port, 7);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(a_chain_of_three_asks_each_hop_for_the_next),
        cmocka_unit_test(a_refusal_of_the_last_hop_is_passed_on),
        cmocka_unit_test(a_hop_that_closes_mid_handshake_breaks_the_chain),
        cmocka_unit_test(an_inner_hop_that_cannot_reach_the_next_breaks_the_chain_at_the_next),
        cmocka_unit_test(bind_through_a_hop_reports_both_replies),
        cmocka_unit_test(a_drop_after_binds_first_reply_is_no_failover),
        cmocka_unit_test(cancel_closes_the_connection_without_a_call),
        cmocka_unit_test(target_of_a_hop_is_ip_or_name),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
