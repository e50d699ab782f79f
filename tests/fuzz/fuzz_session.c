/* libFuzzer target for the session state machine (src/session.c and what it
 * drives: proto, proxyproto, policy, rules, auth, resolve, dial, relay, udp,
 * bind), end to end through the real event loop.
 *
 * Input: [mode][seg1][seg2][seg3] then the bytes a client sends.
 *   mode bit 0  methods: userpass (else none)
 *        bit 1  the listener expects a PROXY header (trusted from 127.0.0.0/8)
 *        bit 2  rules: only 127.0.0.0/8 and ::1 port 9, then deny; ::1 is
 *               routed through the target as an upstream SOCKS5 hop
 *        SOCKS4/4a is served whenever bit 0 is off
 *        bit 3  alice is rate limited (with bit 0 off: methods none,userpass)
 *        bit 4  the client appears to come from 192.0.2.1 (untrusted for PROXY)
 *        bit 5  end with shutdown(SHUT_WR) and let the server finish, else close
 *        bit 6  close without letting the server read the last segment first
 *   segN: the client's bytes go out in segments of seg1, seg2, seg3, seg1, ...
 *        bytes (0: all the rest), so parsers see every split and early data.
 * After each segment the worker's loop runs a bounded number of rounds.
 *
 * Nothing leaves loopback: the process moves into its own network namespace
 * at start (only `lo`, brought up here), so dials to anything else fail at
 * once and c-ares never reaches a real DNS server. A target on 127.0.0.1:9
 * greets and echoes, so CONNECT reaches the relay. The users file has alice
 * with password "secret" (a cheap sha256crypt); the auth cache is off so an
 * input does not depend on the ones before it.
 *
 * Whatever is still open when the input ends (a tunnel, a throttled one, a
 * pending dial or lookup) is closed with session_close, which must cancel it
 * all: ASan/UBSan/LSan report the rest, and a broken session count traps. */
#include <arpa/inet.h>
#include <errno.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sched.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <ares.h>

#include "auth_pool.h"
#include "config.h"
#include "log.h"
#include "quota.h"
#include "session.h"
#include "wenv.h"
#include "worker.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_session: %s failed at line %d\n", #cond, __LINE__);              \
            __builtin_trap();                                                                      \
        }                                                                                          \
    } while (0)

enum {
    M_AUTH = 1,
    M_PROXY = 2,
    M_RULES = 4,
    M_RATE = 8,
    M_UNTRUSTED = 16,
    M_HALFCLOSE = 32,
    M_ABANDON = 64,
    NCONFIGS = 16, /* the bits that choose a configuration */
    TARGET_PORT = 9,
    MAX_TARGETS = 8,
    ROUNDS = 8,         /* loop rounds after each segment */
    WAIT_ROUNDS = 2000, /* at most this many 1 ms rounds for a password check */
    FINISH_ROUNDS = 64, /* rounds for the server to end after the client did */
};

static struct worker *workers[NCONFIGS];
static int target_listener = -1;
static int targets[MAX_TARGETS];
static size_t ntargets;

/* A process of its own on the network: only loopback, up. */
static void isolate_network(void)
{
    struct ifreq ifr;
    if (unshare(CLONE_NEWNET) < 0 && unshare(CLONE_NEWUSER | CLONE_NEWNET) < 0) {
        perror("fuzz_session: unshare(CLONE_NEWNET) (needed so nothing leaves loopback)");
        abort();
    }
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    CHECK(fd >= 0);
    memset(&ifr, 0, sizeof ifr);
    snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "lo");
    CHECK(ioctl(fd, SIOCGIFFLAGS, &ifr) == 0);
    ifr.ifr_flags |= IFF_UP;
    CHECK(ioctl(fd, SIOCSIFFLAGS, &ifr) == 0);
    close(fd);
}

static void open_target_listener(void)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(TARGET_PORT)};
    int one = 1;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    target_listener = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    CHECK(target_listener >= 0);
    CHECK(setsockopt(target_listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) == 0);
    CHECK(bind(target_listener, (struct sockaddr *)&a, sizeof a) == 0);
    CHECK(listen(target_listener, 64) == 0);
}

/* The users file, as a path config_load can open. */
static const char *users_path(void)
{
    static char path[64];
    static const char users[] =
        "alice:$5$rounds=1000$fuzzsalt$qGCc4JvvMNwwgoU2eJ4FMcZ.jSqNaOPBoUN0Jv2w9O2\n";
    int fd = memfd_create("users", MFD_CLOEXEC);
    CHECK(fd >= 0);
    CHECK(write(fd, users, sizeof users - 1) == (ssize_t)(sizeof users - 1));
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    return path;
}

static struct config *make_config(unsigned mode, const char *users)
{
    char *argv[32];
    int argc = 0, code = 0, check = 0;
#define ARG(x) (argv[argc++] = (char *)(x))
    ARG("socks5d");
    ARG("-l");
    ARG("127.0.0.1:1080");
    ARG("--access-log");
    ARG("/dev/null");
    ARG("--error-log");
    ARG("/dev/null");
    ARG("--auth-cache-ttl");
    ARG("0");
    ARG("--auth-fail-limit");
    ARG("0");
    ARG("--max-sessions"); /* main() derives it from the descriptor limit */
    ARG("1000");
    if (mode & (M_AUTH | M_RATE)) {
        ARG("--users");
        ARG(users);
        ARG("--auth");
        ARG((mode & M_AUTH) ? "userpass" : "none,userpass");
    }
    if (mode & M_RATE) {
        ARG("--rate-limit");
        ARG("alice 4k");
    }
    if (mode & M_PROXY) {
        ARG("--proxy-protocol");
        ARG("--proxy-protocol-from");
        ARG("127.0.0.0/8");
    }
    if (mode & M_RULES) {
        ARG("--rule");
        ARG("allow to 127.0.0.0/8,::1 port 9");
        ARG("--rule");
        ARG("deny");
        /* The target plays an upstream SOCKS5 hop: what it says (a greeting,
         * then the client's own bytes echoed) drives the hop handshake. */
        ARG("--route");
        ARG("to ::1 via socks5://127.0.0.1:9 | direct");
    }
    if (!(mode & M_AUTH))
        ARG("--socks4"); /* none is among the methods: SOCKS4 may be served */
    argv[argc] = NULL;
#undef ARG
    struct config *c = config_load(argc, argv, stderr, &code, &check);
    CHECK(c != NULL);
    return c;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    char err[256];
    (void)argc;
    (void)argv;
    isolate_network();
    open_target_listener();
    CHECK(log_init() == 0);
    CHECK(ares_library_init(ARES_LIB_INIT_ALL) == ARES_SUCCESS);
    CHECK(quota_init() == 0);
    CHECK(auth_pool_start(1) == 0);
    const char *users = users_path();
    for (unsigned m = 0; m < NCONFIGS; m++) {
        struct config *c = make_config(m, users);
        if (m == 0)
            CHECK(log_configure(&c->log, err, sizeof err) == 0);
        /* Workers live for the whole run: a password check abandoned by one
         * input still posts its answer to its worker's mailbox later. */
        workers[m] = worker_new((int)m, c, NULL, NULL, 0, err, sizeof err);
        CHECK(workers[m] != NULL);
        config_unref(c);
    }
    return 0;
}

/* Drops a target connection with a reset: no TIME_WAIT piles up over a run. */
static void reset_close(int fd)
{
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    close(fd);
}

/* The target: greets each new connection, echoes, ends when its peer does. */
static void serve_targets(void)
{
    static const char hello[] = "hello from the target\n";
    uint8_t buf[4096];
    int fd;
    while ((fd = accept4(target_listener, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
        if (ntargets == MAX_TARGETS) {
            reset_close(fd);
            continue;
        }
        (void)!send(fd, hello, sizeof hello - 1, MSG_NOSIGNAL);
        targets[ntargets++] = fd;
    }
    for (size_t i = 0; i < ntargets; i++) {
        ssize_t n = read(targets[i], buf, sizeof buf);
        if (n > 0)
            (void)!send(targets[i], buf, (size_t)n, MSG_NOSIGNAL);
        else if (n == 0)
            shutdown(targets[i], SHUT_WR);
    }
}

static void close_targets(void)
{
    for (size_t i = 0; i < ntargets; i++)
        reset_close(targets[i]);
    ntargets = 0;
}

/* What the server sends the client is read and dropped. */
static void drain_client(int fd)
{
    uint8_t buf[4096];
    while (fd >= 0 && read(fd, buf, sizeof buf) > 0)
        ;
}

/* An operation of the session's is out (a password check on the pool
 * thread, above all): its answer comes without client input. */
static int waiting_for_password(const struct wenv *env)
{
    const struct session *s = env->sessions.head;
    return s && s->hs && s->hs->pending.op;
}

/* Runs the loop for at most `rounds` rounds, plus as long as a password
 * check is out; stops early once the session has ended or a round found
 * nothing to do (the next segment or the end of input comes then). */
static void run(struct wenv *env, int client, int rounds)
{
    int waited = 0;
    for (int i = 0; env->sessions.head && (i < rounds || waiting_for_password(env)); i++) {
        int wait = waiting_for_password(env);
        if (wait && ++waited > WAIT_ROUNDS)
            break;
        int events = loop_run_once(env->loop, wait);
        CHECK(events >= 0);
        serve_targets();
        drain_client(client);
        if (events == 0 && !wait)
            break;
    }
}

/* Sends buf[0..len) on the non-blocking client socket, running the loop
 * while the socket is full. Returns 0, or -1 when the server closed. */
static int send_all(struct wenv *env, int client, const uint8_t *buf, size_t len)
{
    for (int tries = 0; len > 0 && tries < 64; tries++) {
        ssize_t n = send(client, buf, len, MSG_NOSIGNAL);
        if (n < 0 && errno != EAGAIN)
            return -1;
        if (n > 0) {
            buf += n;
            len -= (size_t)n;
        }
        if (len)
            run(env, client, 1);
    }
    return len ? -1 : 0; /* still full after 64 rounds: the server stopped reading */
}

static void client_addr(unsigned mode, union addr_any *a)
{
    memset(a, 0, sizeof *a);
    a->in4.sin_family = AF_INET;
    a->in4.sin_port = htons(40000);
    inet_pton(AF_INET, (mode & M_UNTRUSTED) ? "192.0.2.1" : "127.0.0.1", &a->in4.sin_addr);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int sv[2];
    union addr_any peer;
    if (size < 4)
        return 0;
    unsigned mode = data[0];
    const uint8_t *seg = data + 1;
    struct worker *w = workers[mode % NCONFIGS];
    struct wenv *env = worker_env(w);
    data += 4;
    size -= 4;
    CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) == 0);
    client_addr(mode, &peer);
    CHECK(worker_admit(w)); /* what the worker's accept does */
    session_start(env, sv[0], &peer, &env->cfg->listen[0], 0);
    int client = sv[1];

    for (size_t off = 0, k = 0; off < size; k++) {
        size_t n = seg[k % 3] ? seg[k % 3] : size - off;
        if (n > size - off)
            n = size - off;
        if (send_all(env, client, data + off, n) < 0)
            break;
        off += n;
        if (off < size || !(mode & M_ABANDON))
            run(env, client, ROUNDS);
    }
    if (mode & M_HALFCLOSE) {
        shutdown(client, SHUT_WR);
        run(env, client, FINISH_ROUNDS);
    }
    close(client);
    run(env, -1, FINISH_ROUNDS);
    /* A tunnel to the target, a throttled one, a pending dial or lookup may
     * still be open: closing must cancel all of it. */
    while (env->sessions.head)
        session_close(env->sessions.head);
    close_targets();
    CHECK(loop_run_once(env->loop, 0) >= 0);
    CHECK(env->sessions.n == 0);
    CHECK(worker_sessions(w) == 0); /* every slot taken was given back once */
    return 0;
}
