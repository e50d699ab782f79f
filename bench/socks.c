#include "socks.h"

#include "loop.h"
#include "net.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

enum { ST_CONNECTING, ST_METHOD, ST_AUTH, ST_REPLY, ST_DONE };

static const char *const state_name[] = {"connect", "method reply", "auth reply", "request reply",
                                         "done"};

static enum tun_status fail(struct tunnel *t, const char *what, int err)
{
    if (err)
        snprintf(t->err, sizeof(t->err), "%s: %s: %s", state_name[t->state], what, strerror(err));
    else
        snprintf(t->err, sizeof(t->err), "%s: %s", state_name[t->state], what);
    return TUN_ERROR;
}

static void expect(struct tunnel *t, int state, size_t need)
{
    t->state = state;
    t->in_have = 0;
    t->in_need = need;
}

static void send_greeting(struct tunnel *t)
{
    t->out[0] = 5;
    t->out[1] = 1;
    t->out[2] = t->proxy->user ? 2 : 0;
    t->out_len = 3;
    t->out_off = 0;
    expect(t, ST_METHOD, 2);
}

static void send_auth(struct tunnel *t)
{
    size_t ulen = strnlen(t->proxy->user, 255), plen = strnlen(t->proxy->pass, 255);
    t->out[0] = 1;
    t->out[1] = (uint8_t)ulen;
    memcpy(t->out + 2, t->proxy->user, ulen);
    t->out[2 + ulen] = (uint8_t)plen;
    memcpy(t->out + 3 + ulen, t->proxy->pass, plen);
    t->out_len = 3 + ulen + plen;
    t->out_off = 0;
    expect(t, ST_AUTH, 2);
}

static void send_request(struct tunnel *t)
{
    size_t n = 3;
    t->out[0] = 5;
    t->out[1] = t->cmd;
    t->out[2] = 0;
    if (t->dest->domain) {
        size_t len = strnlen(t->dest->domain, 255);
        t->out[n++] = 3;
        t->out[n++] = (uint8_t)len;
        memcpy(t->out + n, t->dest->domain, len);
        n += len;
    } else {
        t->out[n++] = 1;
        memcpy(t->out + n, &t->dest->addr.sin_addr, 4);
        n += 4;
    }
    memcpy(t->out + n, &t->dest->addr.sin_port, 2);
    t->out_len = n + 2;
    t->out_off = 0;
    /* Read the fixed part plus the first address byte, which tells the rest. */
    expect(t, ST_REPLY, 5);
}

static enum tun_status on_method(struct tunnel *t)
{
    uint8_t want = t->proxy->user ? 2 : 0;
    if (t->in[0] != 5)
        return fail(t, "bad version byte", 0);
    if (t->in[1] == 0xff)
        return fail(t, "no acceptable method", 0);
    if (t->in[1] != want)
        return fail(t, "unexpected method", 0);
    if (want == 2)
        send_auth(t);
    else
        send_request(t);
    return TUN_WANT_WRITE;
}

static enum tun_status on_auth(struct tunnel *t)
{
    if (t->in[0] != 1 || t->in[1] != 0)
        return fail(t, "credentials rejected", 0);
    send_request(t);
    return TUN_WANT_WRITE;
}

static size_t reply_len(const uint8_t *in)
{
    switch (in[3]) {
    case 1:
        return 10;
    case 3:
        return 7 + (size_t)in[4];
    case 4:
        return 22;
    default:
        return 0;
    }
}

static enum tun_status on_reply(struct tunnel *t)
{
    if (t->in_need == 5) {
        char what[48];
        if (t->in[0] != 5)
            return fail(t, "bad version byte", 0);
        if (t->in[1] != 0) {
            snprintf(what, sizeof(what), "failure code %u", t->in[1]);
            return fail(t, what, 0);
        }
        t->in_need = reply_len(t->in);
        if (t->in_need == 0)
            return fail(t, "bad address type", 0);
        return TUN_WANT_READ;
    }
    memset(&t->bound, 0, sizeof(t->bound));
    t->bound.sin_family = AF_INET;
    if (t->in[3] == 1) {
        memcpy(&t->bound.sin_addr, t->in + 4, 4);
        memcpy(&t->bound.sin_port, t->in + 8, 2);
    }
    t->state = ST_DONE;
    return TUN_DONE;
}

static enum tun_status on_connected(struct tunnel *t)
{
    int err = net_connect_error(t->fd);
    if (err)
        return fail(t, "connect failed", err);
    if (t->proxy->direct || t->proxy->forward) {
        t->state = ST_DONE;
        return TUN_DONE;
    }
    send_greeting(t);
    return TUN_WANT_WRITE;
}

static enum tun_status on_message(struct tunnel *t)
{
    switch (t->state) {
    case ST_METHOD:
        return on_method(t);
    case ST_AUTH:
        return on_auth(t);
    default:
        return on_reply(t);
    }
}

/* One I/O attempt: TUN_DONE means "made progress", WANT_* means "would block". */
static enum tun_status do_io(struct tunnel *t)
{
    ssize_t n;
    if (t->out_off < t->out_len) {
        n = send(t->fd, t->out + t->out_off, t->out_len - t->out_off, MSG_NOSIGNAL);
        if (n < 0)
            return errno == EAGAIN ? TUN_WANT_WRITE : fail(t, "send", errno);
        t->out_off += (size_t)n;
        return TUN_DONE;
    }
    /* Read no further than the current message: whatever follows the reply
     * belongs to the tunnelled stream. */
    n = recv(t->fd, t->in + t->in_have, t->in_need - t->in_have, 0);
    if (n < 0)
        return errno == EAGAIN ? TUN_WANT_READ : fail(t, "recv", errno);
    if (n == 0)
        return fail(t, "proxy closed the connection", 0);
    t->in_have += (size_t)n;
    return TUN_DONE;
}

enum tun_status tunnel_step(struct tunnel *t)
{
    enum tun_status st;
    if (t->state == ST_CONNECTING) {
        st = on_connected(t);
        if (st != TUN_WANT_WRITE)
            return st;
    }
    /* Each message takes a few I/O calls at most; the bound only guards
     * against a peer trickling bytes one at a time forever. */
    for (int i = 0; i < 64 && t->state != ST_DONE; i++) {
        if (t->out_off < t->out_len || t->in_have < t->in_need) {
            st = do_io(t);
            if (st != TUN_DONE)
                return st;
            continue;
        }
        st = on_message(t);
        if (st == TUN_DONE || st == TUN_ERROR)
            return st;
    }
    return t->state == ST_DONE ? TUN_DONE : TUN_WANT_READ;
}

/* Where the client connects: the destination itself, the SOCKS proxy, or
 * the forwarder's port that leads to the destination. */
static struct sockaddr_in first_hop(const struct proxy_cfg *p, const struct dest *d)
{
    struct sockaddr_in a = p->direct ? d->addr : p->addr;
    if (p->forward)
        a.sin_port = htons((uint16_t)(ntohs(d->addr.sin_port) + p->port_shift));
    return a;
}

int tunnel_open(struct tunnel *t, const struct proxy_cfg *p, const struct dest *d, uint8_t cmd,
                const struct in_addr *src)
{
    struct sockaddr_in hop = first_hop(p, d);
    memset(t, 0, sizeof(*t));
    t->proxy = p;
    t->dest = d;
    t->cmd = cmd;
    t->state = ST_CONNECTING;
    t->fd = net_connect(&hop, src);
    if (t->fd < 0) {
        fail(t, "socket/connect", errno);
        return -1;
    }
    return 0;
}

int tunnel_open_wait(struct tunnel *t, const struct proxy_cfg *p, const struct dest *d, uint8_t cmd,
                     const struct in_addr *src, double deadline)
{
    enum tun_status st = TUN_WANT_WRITE;
    if (tunnel_open(t, p, d, cmd, src) < 0)
        return -1;
    while (st != TUN_DONE) {
        struct pollfd pfd = {.fd = t->fd, .events = st == TUN_WANT_READ ? POLLIN : POLLOUT};
        int left_ms = (int)((deadline - now_s()) * 1000);
        int r = left_ms > 0 ? poll(&pfd, 1, left_ms) : 0;
        if (r == 0) {
            fail(t, "timed out", 0);
            break;
        }
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            fail(t, "poll", errno);
            st = TUN_ERROR;
            break;
        }
        st = tunnel_step(t);
        if (st == TUN_ERROR)
            break;
    }
    if (st == TUN_DONE)
        return 0;
    close(t->fd);
    t->fd = -1;
    return -1;
}
